"""`bench perf`: speed measured side by side in one run, threads pinned, repeated (median/min/max).

Each case times a batched implementation against its one-at-a-time counterpart on the same
inputs, interleaving repetitions so machine noise hits both alike. Results go to
`results/perf.parquet` and `results/perf.md`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from bench.evaluate import curves
from bench.results import environment
from methods.weight_matching import weight_matching
from zoos.data import load_images
from zoos.inr import dwsnets_init, fit_inrs
from zoos.space import mlp_space, siren_space
from zoos.symmetry import select
from zoos.tasks import InrTask


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Interleaved repetitions of each case (after one warm-up call each)."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn))
    return times


def _rows(group: str, times: dict[str, list[float]], per: dict[str, float], **extra) -> list[dict]:
    return [{"group": group, "case": name, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
             "repeats": len(t), "per_item_s": statistics.median(t) / per[name], **extra} for name, t in times.items()]


def inr_fitting(n: int = 64, steps: int = 50, repeats: int = 3) -> list[dict]:
    """Stacked fitting of n SIRENs vs fitting them one after another (same steps, same images)."""
    space = siren_space()
    images = load_images("auto")[0][:n]
    init = dwsnets_init(space, list(range(n)))
    singles = min(n, 8)  # the loop's per-network time is flat: time a few networks, report per network

    def loop():
        for i in range(singles):
            fit_inrs(space, select(init, i), images[i : i + 1], steps)

    times = side_by_side({"batched": lambda: fit_inrs(space, init, images, steps), "one-at-a-time": loop}, repeats)
    return _rows("inr-fit", times, {"batched": n, "one-at-a-time": singles}, networks=n, steps=steps)


def evaluation(pairs: int = 64, points: int = 25, repeats: int = 3) -> list[dict]:
    """Interpolation curves of `pairs` INR pairs x `points` lambdas: batched vs a per-network loop."""
    space = siren_space()
    images = load_images("auto")[0][:pairs]
    task = InrTask(space, images)
    a, b = dwsnets_init(space, list(range(pairs))), dwsnets_init(space, list(range(pairs, 2 * pairs)))
    lambdas = torch.linspace(0, 1, points)
    target = torch.arange(pairs)

    def loop():
        for p in range(pairs):
            for lam in lambdas.tolist():
                net = {k: (1 - lam) * a[k][p : p + 1] + lam * b[k][p : p + 1] for k in a}
                task.evaluate(net, target[p : p + 1])

    times = side_by_side({"batched": lambda: curves(task, a, b, lambdas, target), "per-network": loop}, repeats)
    per = {"batched": pairs * points, "per-network": pairs * points}
    return _rows("evaluation", times, per, pairs=pairs, points=points)


def matching_width(widths=(32, 64, 128, 256, 512), depth: int = 3, repeats: int = 3) -> list[dict]:
    """Weight matching time per pair and objective (squared distance after alignment) vs width."""
    rows = []
    for width in widths:
        space = mlp_space([64] + [width] * depth + [10], "relu")
        g = torch.Generator().manual_seed(width)
        a = {k: torch.randn(*s, generator=g) for k, s in space.shapes().items()}
        b = {k: torch.randn(*s, generator=g) for k, s in space.shapes().items()}
        times = side_by_side({"git-rebasin": lambda s=space, a=a, b=b: weight_matching(s, a, b),
                              "sign-rebasin": lambda s=space, a=a, b=b: weight_matching(s, a, b, signed=True)},
                             repeats)
        rows += _rows("matching", times, {"git-rebasin": 1, "sign-rebasin": 1}, width=width, depth=depth)
    return rows


SUITES = {"inr-fit": inr_fitting, "evaluation": evaluation, "matching": matching_width}


def run_perf(results: Path = Path("results"), suites: list[str] | None = None, threads: int = 2) -> pd.DataFrame:
    torch.set_num_threads(threads)
    rows = []
    for name in suites or list(SUITES):
        print(f"perf: {name} ...", flush=True)
        rows += SUITES[name]()
    table = pd.DataFrame(rows).assign(**{k: v for k, v in environment().items()})
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / "perf.parquet.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(results / "perf.parquet")
    (results / "perf.md").write_text(perf_markdown(table))
    return table


SETTINGS = ("networks", "steps", "pairs", "points", "width", "depth")


def perf_markdown(table: pd.DataFrame) -> str:
    """One table per group; the ratio compares each case with the group's first case at equal settings."""
    lines = [f"# bench perf ({int(table.env_threads.iloc[0])} threads)", ""]
    for group, rows in table.groupby("group", sort=False):
        extra = [c for c in SETTINGS if c in rows and rows[c].notna().any()]
        header = extra + ["case", "median s", "min s", "max s", "per item s", "ratio to first"]
        lines += [f"## {group}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, sub in rows.groupby(extra, sort=False) if extra else [(None, rows)]:
            first = sub.per_item_s.iloc[0]
            for _, r in sub.iterrows():
                cells = [f"{r[c]:g}" for c in extra] + [r.case] + [f"{r[c]:.4g}" for c in
                                                                  ("median_s", "min_s", "max_s", "per_item_s")]
                lines.append("| " + " | ".join(cells + [f"{r.per_item_s / first:.3g}x"]) + " |")
        lines.append("")
    return "\n".join(lines)
