"""`bench run`: every (zoo, method, protocol, unit) of a benchmark, resumable, into the results table.

Units whose key is already in the table are skipped, so a killed run resumes where it stopped.
The units still to do are cut into `UnitBatch`es of a few units of one (zoo, method, protocol):
plain data that any process can execute, given the zoo and the set-up method. Each batch becomes
one atomically appended Parquet part; a batch whose method raises becomes error rows (retried by
the next run) instead of ending the run.

Batches run either here, one after the other (the default), or on a Dask cluster
(`RunOptions.workers` / `.scheduler`, see `bench.distributed`). Both paths share the planning
(`plan`), the one fit per (method, zoo) on this process (`setup_method`) and the execution of a
batch (`execute`), so they produce the same rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.presets import Benchmark
from bench.protocols import Unit, make_protocol
from bench.results import ResultStore, claim_name, environment, unit_key, utc_now
from bench.zoo_cache import get_zoo, recipe_id
from methods import METHODS, make_method, parse_method
from zoos.tasks import make_task
from zoos.zoo import Zoo

BATCH = 8  # units per batch (one appended part, one Dask task): bounds what a kill can lose


@dataclass
class RunOptions:
    results: Path = Path("results")
    data: str = "auto"
    build_workers: int = 2  # zoo-building processes
    threads: int = 1  # torch threads while aligning and evaluating: timings stay comparable on a shared box
    build_threads: int = 2  # torch threads while fitting INR zoos
    progress: bool = True
    mirror: bool = True
    report: bool = True
    workers: int = 0  # > 0: run the units on a local Dask cluster of this many worker processes
    scheduler: str | None = None  # address of an existing Dask scheduler (tcp://host:port); wins over workers


@dataclass(frozen=True)
class UnitBatch:
    """A few units of one (zoo, method, protocol), with everything needed to run them elsewhere."""

    zoo_dir: str  # the stored zoo (absolute path): workers load it from there
    zoo_name: str
    zoo_hash: str
    spec: str  # method spec, preset overrides applied
    seed: int
    protocol: str
    protocol_options: dict = field(hash=False)
    keys: tuple[str, ...] = ()
    units: tuple[Unit, ...] = ()
    run_id: str = ""
    fit_s: float = 0.0  # the client's fit time of the method, filled in once it is set up
    claim: str = ""  # lock name shared by every process that plans this batch (see ResultStore.claim)
    checkpoints: str = ""  # where a learned method's checkpoint is (`checkpoint_dir`)


@dataclass
class Group:
    """Every batch still to do for one (zoo, method); the method is set up once for all of them."""

    zoo: Zoo
    task: object
    spec: str
    batches: list[UnitBatch]

    @property
    def n_units(self) -> int:
        return sum(len(b.units) for b in self.batches)


def method_specs(bench: Benchmark, methods: list[str] | None) -> list[str]:
    specs = methods or list(bench.methods or METHODS)
    specs = [f"{s}[{','.join(f'{k}={v}' for k, v in bench.overrides[s].items())}]" if s in bench.overrides else s
             for s in specs]
    for spec in specs:  # fail fast, before any zoo is built
        make_method(spec)
    return specs


def _variant(spec: str) -> str:
    name, params = parse_method(spec)
    return name + (f"[{','.join(f'{k}={params[k]}' for k in sorted(params))}]" if params else "")


def _failed_rows(units: list[Unit], error: Exception) -> list[dict]:
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    return [{"unit": u.name, "a": u.a, "b": u.b, "error": message} for u in units]


def zoo_directory(recipe, opts: RunOptions) -> Path:
    """Where `get_zoo` keeps (or finds) the recipe's zoo."""
    if recipe.kind == "path":
        return Path(recipe.options["path"]).resolve()
    return (Path(opts.results) / "zoos" / recipe_id(recipe, opts.data)).resolve()


def plan(bench: Benchmark, specs: list[str], opts: RunOptions, done: set[str], run_id: str,
         counts: dict) -> Iterator[Group]:
    """The work left, one (zoo, method) group at a time; zoos are built (and cached) on first use.

    Counts skipped units into `counts["skipped"]`. Leaves torch at `opts.threads` threads.
    """
    checkpoints = checkpoint_dir(opts.results)
    for recipe in bench.zoos:
        torch.set_num_threads(opts.build_threads)
        zoo = get_zoo(recipe, opts.results / "zoos", opts.data, opts.build_workers, opts.progress)
        torch.set_num_threads(opts.threads)
        task = make_task(zoo)
        zoo_hash = zoo.content_hash()
        zoo_dir = str(zoo_directory(recipe, opts))
        for spec in specs:
            batches = []
            for proto_name, proto_options in bench.protocols.items():
                protocol = make_protocol(proto_name, seed=bench.seed, **proto_options)
                keyed = [(unit_key(variant=spec, zoo_hash=zoo_hash, protocol=proto_name,
                                   protocol_params=protocol.params(), unit=u.name, seed=bench.seed), u)
                         for u in protocol.units(zoo)]
                # batches are cut from all units, not from those left to do, so that concurrent runs
                # started at different moments agree on them (a batch's claim is its full key list)
                for start in range(0, len(keyed), BATCH):
                    chunk = keyed[start : start + BATCH]
                    todo = [(k, u) for k, u in chunk if k not in done]
                    counts["skipped"] += len(chunk) - len(todo)
                    if todo:
                        batches.append(UnitBatch(zoo_dir, zoo.name, zoo_hash, spec, bench.seed, proto_name,
                                                 dict(proto_options), tuple(k for k, _ in todo),
                                                 tuple(u for _, u in todo), run_id,
                                                 claim=claim_name(k for k, _ in chunk), checkpoints=checkpoints))
            if batches:  # fit only when there is work
                yield Group(zoo, task, spec, batches)


def checkpoint_dir(results: Path) -> str:
    """Where learned methods keep their checkpoints: `REBASIN_AE_CACHE` (e.g. a shared cluster path), else
    `<results>/cache/ae`. Absolute, because batches carry it to workers that may run elsewhere."""
    from methods.scalegmn_ae import CACHE_ENV

    return os.environ.get(CACHE_ENV) or str((Path(results) / "cache" / "ae").resolve())


def setup_method(spec: str, seed: int, zoo: Zoo, task, progress: bool = True, checkpoints: str = ""):
    """A method bound to the zoo (learned ones train here, once, or load their checkpoint from
    `checkpoints`); returns (method, seconds)."""
    method = make_method(spec, seed=seed)
    if hasattr(method, "progress"):
        method.progress = progress
    if checkpoints and getattr(method, "cache_root", None) is not None:
        method.cache_root = Path(checkpoints)
    start = time.perf_counter()
    method.setup(zoo, task)
    return method, time.perf_counter() - start


def finish_rows(batch: UnitBatch, rows: list[dict], hp: dict, env: dict) -> list[dict]:
    """Protocol rows (or error rows) with the columns every row carries, keyed."""
    common = {"run_id": batch.run_id, "method": parse_method(batch.spec)[0], "variant": _variant(batch.spec),
              "zoo": batch.zoo_name, "zoo_hash": batch.zoo_hash, "protocol": batch.protocol, "seed": batch.seed,
              "fit_s": batch.fit_s, "time": utc_now(), "error": None, **{f"p_{k}": v for k, v in hp.items()}, **env}
    return [{**common, **row, "key": key} for key, row in zip(batch.keys, rows, strict=True)]


def execute(batch: UnitBatch, method, zoo: Zoo, task, env: dict) -> tuple[list[dict], int]:
    """Run one batch; returns its finished rows and how many of them are error rows."""
    protocol = make_protocol(batch.protocol, seed=batch.seed, **batch.protocol_options)
    units = list(batch.units)
    try:
        rows, failed = protocol.run(method, zoo, task, units), 0
    except Exception as error:  # one failing method must not end the benchmark
        rows = _failed_rows(units, error)
        failed = len(rows)
    return finish_rows(batch, rows, method.hp, env), failed


def run_benchmark(bench: Benchmark, methods: list[str] | None = None, opts: RunOptions = RunOptions(),
                  run_id: str | None = None) -> dict:
    """Run (or resume) `bench`; returns counts of units done, skipped and failed."""
    specs = method_specs(bench, methods)
    if opts.workers or opts.scheduler:
        from bench.distributed import run_distributed

        return run_distributed(bench, specs, opts, run_id)
    return _run_serial(bench, specs, opts, run_id)


def _run_serial(bench: Benchmark, specs: list[str], opts: RunOptions, run_id: str | None) -> dict:
    store = ResultStore(opts.results)
    done = store.done_keys()
    run_id = run_id or utc_now()
    env = environment()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = tqdm(total=0, unit="unit", disable=not opts.progress, leave=False)
    for group in plan(bench, specs, opts, done, run_id, counts):
        method, fit_s = setup_method(group.spec, bench.seed, group.zoo, group.task, opts.progress,
                                     checkpoint_dir(opts.results))
        bar.total += group.n_units
        bar.set_description(f"{group.zoo.name} {_variant(group.spec)}")
        # Another `bench run` on the same results directory may hold a batch: do the free ones first,
        # then wait for each held one, which by then is usually done (or free again: its holder died).
        held = [b for b in group.batches if not _run_claimed(b, False, store, method, group, fit_s, env, counts, bar)]
        for batch in held:
            _run_claimed(batch, True, store, method, group, fit_s, env, counts, bar)
    bar.close()
    return counts


def _run_claimed(batch: UnitBatch, wait: bool, store: ResultStore, method, group: Group, fit_s: float, env: dict,
                 counts: dict, bar) -> bool:
    """Run the units of `batch` that are not in the table yet, under its claim; False if another process holds it."""
    with store.claim(batch.claim, wait=wait) as mine:
        if not mine:
            return False
        done = store.done_keys()  # fresh: the other process may have finished some of these units
        todo = [i for i, key in enumerate(batch.keys) if key not in done]
        counts["skipped"] += len(batch.keys) - len(todo)
        bar.update(len(batch.keys))
        if todo:
            batch = replace(batch, keys=tuple(batch.keys[i] for i in todo), units=tuple(batch.units[i] for i in todo),
                            fit_s=fit_s)
            rows, failed = execute(batch, method, group.zoo, group.task, env)
            store.append(rows)
            counts["done"] += len(rows) - failed
            counts["failed"] += failed
    return True
