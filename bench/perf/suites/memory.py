"""`memory`: peak resident memory of batched vs one-at-a-time fitting and evaluation, each case in a fresh
subprocess (`python -m bench.perf --memory-case NAME`; RSS sampled while the case runs: torch's
allocations are invisible to tracemalloc, and ru_maxrss keeps the set-up's peak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from bench.perf.suites.evaluation import LAMBDAS, eval_loop, eval_setup

MEMORY_CASES = ("fit batched", "fit one-at-a-time", "eval batched", "eval per-network")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_during(fn: Callable[[], object], every_s: float = 2e-4) -> tuple[float, float]:
    """(resident MB before, peak resident MB while fn runs), sampled by a thread. ru_maxrss cannot
    isolate a case (it keeps the set-up's peak, e.g. the data set as loaded), and tracemalloc does
    not see torch's allocations; freed large blocks go back to the OS, so RSS follows the working set."""
    import threading

    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(every_s)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return before, max(peak[0], _rss_mb())


def memory_case(name: str, n: int = 64, steps: int = 20) -> dict:
    """Run one case in this (fresh) process; the peak of its resident memory above what was resident before."""
    torch.set_num_threads(1)
    from bench.evaluation.curves import curves
    from zoos.data import load_images
    from zoos.inr import dwsnets_init, fit_inrs
    from zoos.space import siren_space
    from zoos.symmetry import select

    if name.startswith("fit"):
        space = siren_space()
        images = load_images("auto")[0][:n].clone()
        init = dwsnets_init(space, list(range(n)))
        fit_inrs(space, select(init, 0), images[:1], 1)  # imports and allocator warm-up before the baseline
        if name == "fit batched":
            def case():
                fit_inrs(space, init, images, steps)
        else:
            def case():
                for i in range(n):
                    fit_inrs(space, select(init, i), images[i : i + 1], steps)
    else:
        task, a, b, lambdas, target = eval_setup(n, LAMBDAS)
        task.evaluate(select(a, 0), target[:1])
        if name == "eval batched":
            def case():
                curves(task, a, b, lambdas, target)
        else:
            def case():
                eval_loop(task, a, b, lambdas, target)
    import gc

    gc.collect()
    before, peak = _peak_rss_during(case)
    return {"peak_mb": peak - before, "rss_before_mb": before}


def memory(cases=MEMORY_CASES) -> list[dict]:
    """Peak memory of batched vs one-at-a-time fitting and evaluation, each case in a fresh process."""
    rows = []
    for name in cases:
        out = subprocess.run([sys.executable, "-m", "bench.perf", "--memory-case", name], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"memory case {name!r} failed: {out.stderr.strip().splitlines()[-1:]}")
        rows.append({"group": "memory", "case": name, **json.loads(out.stdout.strip().splitlines()[-1])})
    return rows
