"""`evaluation`: interpolation curves of 64 pairs x 25 points, batched vs a per-network loop."""

from __future__ import annotations

import torch

from bench.perf.timing import side_by_side, timing_rows

LAMBDAS = 25  # interpolation points of a barrier


def eval_setup(pairs: int, points: int):
    from zoos.data import load_images
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space
    from zoos.tasks import InrTask

    space = siren_space()
    images = load_images("auto")[0][:pairs]
    task = InrTask(space, images)
    a, b = dwsnets_init(space, list(range(pairs))), dwsnets_init(space, list(range(pairs, 2 * pairs)))
    return task, a, b, torch.linspace(0, 1, points), torch.arange(pairs)


def eval_loop(task, a, b, lambdas, target) -> None:
    for p in range(len(target)):
        for lam in lambdas.tolist():
            net = {k: (1 - lam) * a[k][p : p + 1] + lam * b[k][p : p + 1] for k in a}
            task.evaluate(net, target[p : p + 1])


def evaluation(pairs: int = 64, points: int = 25, repeats: int = 3) -> list[dict]:
    """Interpolation curves of `pairs` INR pairs x `points` lambdas: batched vs a per-network loop."""
    from bench.evaluation.curves import curves

    task, a, b, lambdas, target = eval_setup(pairs, points)
    cases = {"batched": lambda: curves(task, a, b, lambdas, target),
             "per-network": lambda: eval_loop(task, a, b, lambdas, target)}
    per = dict.fromkeys(cases, pairs * points)
    return timing_rows("evaluation", side_by_side(cases, repeats), per, pairs=pairs, points=points)
