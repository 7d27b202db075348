"""Timing: CPU and wall seconds of a call, cases repeated side by side (interleaved), and their rows.

CPU time is `time.process_time`, the process's own time: with one thread it is the work done, and it
does not count the waits of a loaded machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(cpu seconds, wall seconds, result) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, out


def side_by_side(cases: dict[str, Callable[[], object]], repeats: int, warmup: bool = True) -> dict[str, dict]:
    """Interleaved repetitions of each case (after one warm-up call each): {name: {"cpu": [...], "wall": [...]}}."""
    if warmup:
        for fn in cases.values():
            fn()
    times = {name: {"cpu": [], "wall": []} for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            cpu, wall, _ = measure(fn)
            times[name]["cpu"].append(cpu)
            times[name]["wall"].append(wall)
    return times


def stats(t: dict) -> dict:
    cpu = t["cpu"]
    return {"median_s": statistics.median(cpu), "min_s": min(cpu), "max_s": max(cpu),
            "wall_median_s": statistics.median(t["wall"]), "repeats": len(cpu)}


def timing_rows(group: str, times: dict[str, dict], per: dict[str, float], **extra) -> list[dict]:
    rows = []
    for name, t in times.items():
        s = stats(t)
        rows.append({"group": group, "case": name, **s, "per_item_s": s["median_s"] / per[name], **extra})
    return rows
