"""The harness as a library: the names a notebook needs, from one place.

    from bench.api import load_zoo, make_task, make_method, pair, score_path

    zoo = load_zoo("default:1")                 # a preset's zoo (built once, cached), or a zoo directory
    task = make_task(zoo)                       # what scores a network of this zoo (loss, acc / psnr)
    method = make_method("git-rebasin")         # any spec `bench methods` lists, options in brackets
    method.setup(zoo, task)                     # learned methods train here (or load their checkpoint)
    a, b = pair(zoo, 0, 1)                      # two networks, as [1, ...] parameter stacks
    aligned = method.align(a, b).others         # b moved into a's basin
    print(score_path(task, a, b)["loss_barrier"], score_path(task, a, aligned)["loss_barrier"])

INR zoos score each network against its own image: pass `target=zoo.meta["target"][i]` to
`method.align` and `score_path` for the networks' target index (both networks of a pair share it).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bench.evaluation.curves import curve_summary, curves
from bench.execution.sweep import resolve_zoo
from methods import METHODS, make_method
from zoos.space import Params
from zoos.symmetry import select
from zoos.tasks import Task, make_task
from zoos.zoo import Zoo
from zoos.zoo import load_zoo as _load_stored


def load_zoo(name_or_path: str | os.PathLike, results: str | os.PathLike = "results", data: str = "auto") -> Zoo:
    """A stored zoo directory, or PRESET:INDEX (e.g. "default:1"), built into `<results>/zoos/` on first use."""
    path = Path(name_or_path)
    if path.is_dir():
        return _load_stored(path)
    return _load_stored(resolve_zoo(str(name_or_path), Path(results), data, progress=True))


def pair(zoo: Zoo, i: int, j: int) -> tuple[Params, Params]:
    """Networks i and j of the zoo, each as a stack of one."""
    return select(zoo.params, [i]), select(zoo.params, [j])


def score_path(task: Task, a: Params, b: Params, points: int = 25, target: int | None = None) -> dict:
    """The straight path a -> b (one network each) at `points` evenly spaced lambdas: each metric's curve
    (`curve_loss`, ...) and its barrier, area, midpoint and endpoints' mean (`loss_barrier`, ...), as floats."""
    lambdas = torch.linspace(0, 1, points)
    tgt = None if target is None else torch.tensor([int(target)])
    curve = curves(task, a, b, lambdas, tgt)
    out = {"lambdas": lambdas.tolist(), **{f"curve_{k}": v[0].tolist() for k, v in curve.items()}}
    out.update({k: float(v[0]) for k, v in curve_summary(task, curve, lambdas).items()})
    return out


__all__ = ["METHODS", "Zoo", "load_zoo", "make_method", "make_task", "pair", "score_path"]
