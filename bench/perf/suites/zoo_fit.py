"""`zoo-fit`: fitting a zoo's SIRENs on 2 cores, in one two-threaded process vs two single-threaded worker
processes (wall time)."""

from __future__ import annotations

import statistics

import torch

from bench.perf.timing import side_by_side, stats

ZOO_FIT_TARGET = 0.1  # wall seconds per SIREN per 1000 steps on the machine's cores, at most


def zoo_fitting(n: int = 128, steps: int = 200, repeats: int = 3, cores: int = 2) -> list[dict]:
    """How a zoo is fitted on `cores` cores: the stacked kernel in one process with `cores` threads vs
    split over `cores` single-threaded processes (what `build_inr_zoo` does). Wall time: the work of
    the worker processes is not the parent's CPU time. Reported per SIREN per 1000 steps."""
    from zoos.data import load_images
    from zoos.inr import dwsnets_init, fit_inrs
    from zoos.space import siren_space

    space = siren_space()
    images = load_images("auto")[0][:n]
    init = dwsnets_init(space, list(range(n)))
    threads = torch.get_num_threads()

    def threaded():
        torch.set_num_threads(cores)
        try:
            fit_inrs(space, init, images, steps)
        finally:
            torch.set_num_threads(threads)

    cases = {f"{cores} worker processes": lambda: fit_inrs(space, init, images, steps, workers=cores),
             f"1 process, {cores} threads": threaded}
    times = side_by_side(cases, repeats)
    rows = []
    for name, t in times.items():
        wall = {"cpu": t["wall"], "wall": t["wall"]}  # stats over wall times (the cpu column repeats them)
        rows.append({"group": "zoo-fit", "case": name, **stats(wall), "networks": n, "steps": steps,
                     "per_item_s": statistics.median(t["wall"]) / n * 1000 / steps, "cores": cores})
    return rows
