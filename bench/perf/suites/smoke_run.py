"""`smoke`: `bench run --preset smoke` end to end, as a user runs it (a fresh results folder; zoos, units,
report and MLflow mirror), wall time of the whole command against the time the preset promises."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from bench.perf.timing import stats

SMOKE_TARGET_S = 30.0  # wall seconds on 2 cores, at most


def smoke_run(repeats: int = 3, preset: str = "smoke") -> list[dict]:
    """Wall seconds of `bench run --preset PRESET` in a new results folder each time, `repeats` times (the
    per-user cache, with its empty MLflow store, is warm after the first run on a machine)."""
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as results:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--preset", preset, "--results", results,
                                   "--quiet"], capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"bench run --preset {preset} failed (exit {done.returncode}): {last}")
    return [{"group": "smoke", "case": f"bench run --preset {preset}", **stats({"cpu": walls, "wall": walls}),
             "per_item_s": statistics.median(walls)}]
