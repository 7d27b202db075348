"""The plan of a benchmark: which (zoo, method, protocol, unit) are still to do, cut into batches.

Units whose key is already in the table are skipped, so a killed run resumes where it stopped.
The units still to do are cut into `UnitBatch`es of a few units of one (zoo, method, protocol):
plain data that any process can execute, given the zoo and the set-up method. A (method, zoo)
the method cannot handle (`Aligner.skip`) is not planned: it is recorded with its reason in the
run's tally (`RunTally.skipped_pairs`), which the run's summary prints. Method specs are parsed once,
here (`method_specs`): groups, batches and rows carry the typed `MethodSpec`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.execution.batch import UnitBatch
from bench.execution.checkpoints import CheckpointStore
from bench.execution.presets import Benchmark
from bench.execution.tally import Gap, RunTally, SkippedPair
from bench.execution.zoo_cache import get_zoo, recipe_id
from bench.protocols import make_protocol
from bench.store.results import ResultStore, claim_name, unit_key
from methods import METHODS, MethodSpec, format_spec, parse_method
from zoos.devices import resolve_device
from zoos.tasks import make_task, task_class, zoo_fingerprint
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
    # where INR zoos are fitted, networks scored and device-aware methods run (cpu | cuda | auto);
    # on the CPU every path is the one without the flag, so rows and keys are the same
    device: str = "cpu"

    @property
    def device_type(self) -> str:
        return resolve_device(self.device).type


@dataclass
class Group:
    """Every batch still to do for one (zoo, method); the method is set up once for all of them."""

    zoo: Zoo
    task: object
    spec: MethodSpec
    batches: list[UnitBatch]

    @property
    def n_units(self) -> int:
        return sum(len(b.units) for b in self.batches)


def method_specs(bench: Benchmark, methods: list[str] | None, device: str = "cpu") -> list[MethodSpec]:
    """The specs to run (those given, else the preset's), with the preset's overrides and the device applied,
    parsed once; each method is built once here to refuse a bad spec before any zoo is built."""
    texts = methods or [*(bench.methods or METHODS), *bench.extra]
    texts = [format_spec(s, bench.overrides[s]) if s in bench.overrides else s for s in texts]
    if resolve_device(device).type != "cpu":  # methods that can use the device get it, unless the spec says
        texts = [_on_device(s, resolve_device(device).type) for s in texts]
    specs = [MethodSpec.parse(text) for text in texts]
    for spec in specs:
        spec.build()  # e.g. a device torch cannot use now
    return specs


def _on_device(spec: str, device: str) -> str:
    name, given = parse_method(spec)
    if "device" in METHODS[name].search_space and "device" not in given:
        return format_spec(name, {**given, "device": device})
    return spec


def zoo_description(zoo) -> str:
    """One line: what the zoo holds and how its networks were made (its recipe), for every report."""
    made = task_class(zoo).recipe(zoo)
    return f"{zoo.name}: {len(zoo)} networks of {zoo.space.name}" + (f"; trained with {made}" if made else "")


def zoo_directory(recipe, opts: RunOptions) -> Path:
    """Where `get_zoo` keeps (or finds) the recipe's zoo."""
    if recipe.kind == "path":
        return Path(recipe.options["path"]).resolve()
    return (Path(opts.results) / "zoos" / recipe_id(recipe, opts.data, opts.device_type)).resolve()


def plan(bench: Benchmark, specs: list[MethodSpec], opts: RunOptions, done: set[str], run_id: str,
         tally: RunTally) -> Iterator[Group]:
    """The work left, one (zoo, method) group at a time; zoos are built (and cached) on first use.

    Counts units already done into `tally.skipped`, (method, zoo) pairs the method cannot handle into
    `tally.skipped_pairs` (with the reason) and what a protocol cannot measure on a zoo into
    `tally.gaps`. Leaves torch at `opts.threads` threads.
    """
    checkpoints = str(CheckpointStore.for_results(opts.results).root)
    store = ResultStore(opts.results)
    for recipe in bench.zoos:
        torch.set_num_threads(opts.build_threads)
        zoo = get_zoo(recipe, opts.results / "zoos", opts.data, opts.build_workers, opts.progress,
                      opts.device_type)
        torch.set_num_threads(opts.threads)
        task = make_task(zoo).to(opts.device_type)
        zoo_hash = zoo.content_hash()
        zoo_spec = zoo_fingerprint(zoo, task)  # what changes a result besides the weights
        if opts.device_type != "cpu":  # scored on an accelerator: other float rounding, other keys
            zoo_spec += f"@{opts.device_type}"
        zoo_dir = str(zoo_directory(recipe, opts))
        store.record_zoo(zoo_hash, zoo_description(zoo))
        for proto_name, proto_options in bench.protocols.items():
            reasons = make_protocol(proto_name, seed=bench.seed, **proto_options).gaps(zoo)
            tally.gaps += [Gap(zoo.name, proto_name, why) for why in reasons]
            store.record_gaps(zoo.name, proto_name, reasons)  # reports written later say so too
        for spec in specs:
            reason = spec.build().skip(zoo)
            if reason:
                tally.skipped_pairs.append(SkippedPair(str(spec), zoo.name, reason))
                continue
            batches = []
            for proto_name, proto_options in bench.protocols.items():
                protocol = make_protocol(proto_name, seed=bench.seed, **proto_options)
                keyed = [(unit_key(variant=str(spec), **spec.key_parts(), zoo_hash=zoo_hash, zoo_spec=zoo_spec,
                                   protocol=proto_name, protocol_params=protocol.params(), unit=u.name,
                                   seed=bench.seed), u)
                         for u in protocol.units(zoo)]
                # batches are cut from all units, not from those left to do, so that concurrent runs
                # started at different moments agree on them (a batch's claim is its full key list)
                for start in range(0, len(keyed), BATCH):
                    chunk = keyed[start : start + BATCH]
                    todo = [(k, u) for k, u in chunk if k not in done]
                    tally.skipped += len(chunk) - len(todo)
                    if todo:
                        batches.append(UnitBatch(zoo_dir, zoo.name, zoo_hash, spec, bench.seed, proto_name,
                                                 dict(proto_options), tuple(k for k, _ in todo),
                                                 tuple(u for _, u in todo), run_id,
                                                 claim=claim_name(k for k, _ in chunk), checkpoints=checkpoints))
            if batches:  # fit only when there is work
                yield Group(zoo, task, spec, batches)
