"""`bench run`: every (zoo, method, protocol, unit) of a benchmark, resumable, into the results table.

The work left (`plan`) is cut into batches of a few units; each batch becomes
one atomically appended Parquet part; a batch whose method raises becomes error rows (retried by
the next run) instead of ending the run.

Batches run either here, one after the other (the default), or on a Dask cluster
(`RunOptions.workers` / `.scheduler`, see `bench.execution.distributed`). Both paths share the
planning (`plan`), the one fit per (method, zoo) on this process (`prepare_method`) and the
execution of a batch (`execute`, `bench.execution.batch`), so they produce the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from bench.execution.batch import UnitBatch, execute, prepare_method
from bench.execution.checkpoints import CheckpointStore
from bench.execution.distributed import run_distributed
from bench.execution.plan import Group, RunOptions, method_specs, plan
from bench.execution.presets import Benchmark
from bench.execution.tally import RunSummary, RunTally
from bench.store.provenance import environment, utc_now
from bench.store.results import ResultStore
from methods import MethodSpec


def run_benchmark(bench: Benchmark, methods: list[str] | None = None, opts: RunOptions = RunOptions(),
                  run_id: str | None = None, on_group: Callable[[list[Path]], None] | None = None) -> RunSummary:
    """Run (or resume) `bench`; returns how many units were run, found done and failed, and why some were not.
    `on_group` is called with the Parquet parts this run wrote for each (zoo, method) once all of its units
    are written (a serial run; e.g. to mirror them while the run goes on)."""
    specs = method_specs(bench, methods, opts.device)
    if opts.workers or opts.scheduler:
        if opts.device_type != "cpu":
            raise ValueError(f"device {opts.device}: runs on a Dask cluster use the CPU (each worker scores on its "
                             "own); run without --workers/--scheduler to use the accelerator")
        return run_distributed(bench, specs, opts, run_id)
    return _run_serial(bench, specs, opts, run_id, on_group)


def _run_serial(bench: Benchmark, specs: list[MethodSpec], opts: RunOptions, run_id: str | None,
                on_group: Callable[[list[Path]], None] | None) -> RunSummary:
    store = ResultStore(opts.results)
    done = store.done_keys()
    run_id = run_id or utc_now()
    env = environment()
    tally = RunTally()
    bar = tqdm(total=0, unit="unit", disable=not opts.progress, leave=False)
    for group in plan(bench, specs, opts, done, run_id, tally):
        method, fit_s = prepare_method(group.spec, bench.seed, group.zoo, group.task,
                                       CheckpointStore(group.batches[0].checkpoints), opts.progress)
        bar.total += group.n_units
        bar.set_description(f"{group.zoo.name} {group.spec}")
        # Another `bench run` on the same results directory may hold a batch: do the free ones first,
        # then wait for each held one, which by then is usually done (or free again: its holder died).
        parts = []
        held = [b for b in group.batches
                if not _run_claimed(b, False, store, method, group, fit_s, env, tally, bar, parts)]
        for batch in held:
            _run_claimed(batch, True, store, method, group, fit_s, env, tally, bar, parts)
        if on_group is not None and parts:
            on_group(parts)
    bar.close()
    return tally.summary()


def _run_claimed(batch: UnitBatch, wait: bool, store: ResultStore, method, group: Group, fit_s: float, env: dict,
                 tally: RunTally, bar, parts: list[Path]) -> bool:
    """Run the units of `batch` that are not in the table yet, under its claim (the part written goes to
    `parts`); False if another process holds it."""
    with store.claim(batch.claim, wait=wait) as mine:
        if not mine:
            return False
        done = store.done_keys()  # fresh: the other process may have finished some of these units
        todo = [i for i, key in enumerate(batch.keys) if key not in done]
        tally.skipped += len(batch.keys) - len(todo)
        bar.update(len(batch.keys))
        if todo:
            batch = replace(batch, keys=tuple(batch.keys[i] for i in todo), units=tuple(batch.units[i] for i in todo),
                            fit_s=fit_s)
            rows, failed = execute(batch, method, group.zoo, group.task, env)
            parts.append(store.append(rows))
            tally.add_rows(rows, failed)
    return True
