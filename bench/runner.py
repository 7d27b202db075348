"""`bench run`: every (zoo, method, protocol, unit) of a benchmark, resumable, into the results table.

Units whose key is already in the table are skipped, so a killed run resumes where it stopped.
Rows are appended in small batches (one atomic Parquet part each); a unit whose method raises
becomes an error row (retried by the next run) instead of ending the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.presets import Benchmark
from bench.protocols import Unit, make_protocol
from bench.results import ResultStore, environment, unit_key, utc_now
from bench.zoo_cache import get_zoo
from methods import METHODS, make_method, parse_method
from zoos.tasks import make_task

BATCH = 8  # units per appended part: bounds what a kill can lose


@dataclass
class RunOptions:
    results: Path = Path("results")
    data: str = "auto"
    workers: int = 2  # zoo-building processes
    threads: int = 1  # torch threads while aligning and evaluating: timings stay comparable on a shared box
    build_threads: int = 2  # torch threads while fitting INR zoos
    progress: bool = True
    mirror: bool = True
    report: bool = True


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


def run_benchmark(bench: Benchmark, methods: list[str] | None = None, opts: RunOptions = RunOptions(),
                  run_id: str | None = None) -> dict:
    """Run (or resume) `bench`; returns counts of units done, skipped and failed."""
    specs = method_specs(bench, methods)
    store = ResultStore(opts.results)
    done = store.done_keys()
    run_id = run_id or utc_now()
    env = environment()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for recipe in bench.zoos:
        torch.set_num_threads(opts.build_threads)
        zoo = get_zoo(recipe, opts.results / "zoos", opts.data, opts.workers, opts.progress)
        torch.set_num_threads(opts.threads)
        task = make_task(zoo)
        zoo_hash = zoo.content_hash()
        for spec in specs:
            method, fit_s = None, 0.0
            for proto_name, proto_options in bench.protocols.items():
                protocol = make_protocol(proto_name, seed=bench.seed, **proto_options)
                keyed = [(unit_key(variant=spec, zoo_hash=zoo_hash, protocol=proto_name,
                                   protocol_params=protocol.params(), unit=u.name, seed=bench.seed), u)
                         for u in protocol.units(zoo)]
                todo = [(k, u) for k, u in keyed if k not in done]
                counts["skipped"] += len(keyed) - len(todo)
                if not todo:
                    continue
                if method is None:  # fit once per (method, zoo), only when there is work
                    method = make_method(spec, seed=bench.seed)
                    start = time.perf_counter()
                    method.setup(zoo, task)
                    fit_s = time.perf_counter() - start
                bar = tqdm(total=len(todo), desc=f"{zoo.name} {_variant(spec)} {proto_name}", unit="unit",
                           disable=not opts.progress, leave=False)
                for start in range(0, len(todo), BATCH):
                    batch = todo[start : start + BATCH]
                    units = [u for _, u in batch]
                    try:
                        rows = protocol.run(method, zoo, task, units)
                        counts["done"] += len(rows)
                    except Exception as error:  # one failing method must not end the benchmark
                        rows = _failed_rows(units, error)
                        counts["failed"] += len(rows)
                    common = {"run_id": run_id, "method": parse_method(spec)[0], "variant": _variant(spec),
                              "zoo": zoo.name, "zoo_hash": zoo_hash, "protocol": proto_name, "seed": bench.seed,
                              "fit_s": fit_s, "time": utc_now(), "error": None,
                              **{f"p_{k}": v for k, v in method.hp.items()}, **env}
                    store.append([{**common, **row, "key": key} for (key, _), row in zip(batch, rows, strict=True)])
                    bar.update(len(batch))
                bar.close()
    return counts
