"""`bench perf`: speed and scaling measured side by side in one run, threads pinned, repeated.

One module per suite (all run in one process, torch pinned to `threads`, 1 by default): `inr-fit`
(stacked vs one-at-a-time SIREN fitting), `zoo-fit` (a zoo's fitting on 2 cores, threads vs worker
processes), `evaluation` (batched vs per-network curves), `memory` (peak RSS of those, each in a fresh
process), `align` (alignment time per pair vs width and depth, beside the PyPI peers and, with
`--baseline REV`, this project at an earlier commit), `lap-share` (weight matching vs its own LAP
solves), `autoencoder` (encode + decode vs signed matching), `ae-train` (autoencoder training
throughput) and `smoke` (`bench run --preset smoke` end to end, wall time).

Timing (`bench.perf.timing`). Every case runs `repeats` times, cases interleaved within each repetition
so that machine noise hits all alike; we keep CPU time (`time.process_time`, the process's own time:
with one thread it is the work done, and it does not count the waits of a loaded machine) and wall
time. Ratios are of CPU-time medians. Results: `results/perf.parquet`, `results/perf.md`
(`bench.perf.markdown`), `results/perf.png` (`bench.perf.figure`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from bench.perf.baseline import checkout
from bench.perf.peer_runs import peer_available
from bench.perf.suites import (
    ae_train,
    alignment,
    autoencoder,
    evaluation,
    inr_fit,
    lap_share,
    memory,
    smoke_run,
    zoo_fit,
)
from bench.store.provenance import environment

# suite name -> the function measuring it (one module each in this package)
SUITES = {"inr-fit": inr_fit.inr_fitting, "zoo-fit": zoo_fit.zoo_fitting, "evaluation": evaluation.evaluation,
          "memory": memory.memory, "align": alignment.alignment, "lap-share": lap_share.lap_share,
          "autoencoder": autoencoder.autoencoder, "ae-train": ae_train.autoencoder_training,
          "smoke": smoke_run.smoke_run}


def run_perf(results: Path = Path("results"), suites: list[str] | None = None, threads: int = 1,
             repeats: int = 3, widths: tuple[int, ...] | None = None, peer_rebasin: str | None = None,
             peer_sinkhorn: str | None = None, budget_s: float = 30.0, baseline: str | None = None) -> pd.DataFrame:
    unknown = set(suites or []) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown perf suite(s) {', '.join(sorted(unknown))} (known: {', '.join(SUITES)})")
    torch.set_num_threads(threads)
    peers = {}
    for flag, python in (("rebasin", peer_rebasin), ("sinkhorn", peer_sinkhorn)):
        why = peer_available(python)
        peers[flag] = python if why is None else None
        if python and why:
            print(f"perf: peer {flag} skipped ({why})", flush=True)
    tree = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    try:
        base = (checkout(baseline, tree), tree) if baseline else None  # a bad revision fails before any suite
        table = _run_suites(suites, repeats, widths, peers, budget_s, base)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    table["peer_rebasin"] = peer_rebasin if peers["rebasin"] else ""
    table["peer_sinkhorn"] = peer_sinkhorn if peers["sinkhorn"] else ""
    table = _keep_other_suites(results / "perf.parquet", table)
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / "perf.parquet.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(results / "perf.parquet")
    write_perf_report(table, results)
    return table


def write_perf_report(table: pd.DataFrame, out: Path) -> list[Path]:
    """perf.md and perf.png from the perf table (as measured, or read back from perf.parquet)."""
    from bench.perf.figure import perf_figure
    from bench.perf.markdown import perf_markdown  # it reads the suites' targets: importing it above is a cycle

    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.md").write_text(perf_markdown(table))
    perf_figure(table, out / "perf.png")
    return [out / "perf.md", out / "perf.png"]


def _run_suites(suites, repeats, widths, peers, budget_s, base) -> pd.DataFrame:
    load = [os.getloadavg()[0]]
    rows = []
    for name in suites or list(SUITES):
        print(f"perf: {name} ...", flush=True)
        if name == "align":
            kwargs = {"repeats": repeats, "peers": peers, "budget_s": budget_s}
            if base:
                kwargs["baseline"] = base
            rows += alignment.alignment(**kwargs, **({"widths": widths} if widths else {}))
        elif name == "autoencoder":
            rows += autoencoder.autoencoder(**({"widths": widths} if widths else {}), repeats=repeats)
        elif name == "memory":
            rows += memory.memory()
        else:
            rows += SUITES[name](repeats=repeats)
        load.append(os.getloadavg()[0])
    return pd.DataFrame(rows).assign(**environment(), load_min=min(load), load_max=max(load))


def _keep_other_suites(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Rows of suites not run now stay from an earlier perf.parquet (each row keeps its own commit and
    load columns), so measuring one suite does not erase the others."""
    if not path.is_file() or table.empty:
        return table
    try:
        from zoos.files import check_parquet

        old = pd.read_parquet(check_parquet(path))
    except Exception as error:  # noqa: BLE001 - an unreadable old table is replaced, not fatal
        print(f"perf: {path} unreadable ({type(error).__name__}); writing this run's suites only", flush=True)
        return table
    if "group" not in old:
        return table
    kept = old[~old.group.isin(set(table.group))]
    return pd.concat([kept, table], ignore_index=True) if len(kept) else table
