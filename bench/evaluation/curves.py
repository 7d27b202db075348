"""Batched interpolation: all pairs and all lambda points scored in a few forward passes."""

from __future__ import annotations

import torch

from bench.evaluation import metrics
from bench.evaluation.repair import recount_statistics
from zoos.space import Params
from zoos.tasks import Task


def interpolate(a: Params, b: Params, lambdas: torch.Tensor) -> Params:
    """theta_l = (1 - l) a + l b for P pairs x K lambdas, flattened to P*K networks (pair-major)."""
    out = {}
    for k in a:
        shape = (-1, len(lambdas)) + (1,) * (a[k].dim() - 1)
        lam = lambdas.to(a[k]).reshape(shape)
        out[k] = ((1 - lam) * a[k].unsqueeze(1) + lam * b[k].unsqueeze(1)).flatten(0, 1)
    return out


def curves(task: Task, a: Params, b: Params, lambdas: torch.Tensor,
           target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Metric curves [P, K] along the straight paths a[p] -> b[p]. `target[p]` is pair p's INR image.
    BatchNorm statistics of every network on a path, endpoints included, are recounted first."""
    n_pairs, k = next(iter(a.values())).shape[0], len(lambdas)
    path_target = None if target is None else target.repeat_interleave(k)
    scores = task.evaluate(recount_statistics(task, interpolate(a, b, lambdas)), path_target)
    return {name: v.reshape(n_pairs, k) for name, v in scores.items()}


def curve_summary(task: Task, curve: dict[str, torch.Tensor], lambdas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Barrier and area of every metric curve, per pair: {'loss_barrier': [P], ...}."""
    out = {}
    for name, c in curve.items():
        hib = task.higher_is_better[name]
        out[f"{name}_barrier"] = metrics.barrier(c, lambdas, hib)
        out[f"{name}_area"] = metrics.barrier_area(c, lambdas, hib)
        out[f"{name}_mid"] = c[:, len(lambdas) // 2]
        out[f"{name}_endpoints"] = (c[:, 0] + c[:, -1]) / 2
    return out


def deviation(task: Task, aligned: Params, original: Params) -> torch.Tensor:
    """Functional deviation of exact alignments on the task's inputs, per network."""
    return metrics.functional_deviation(task.outputs(aligned), task.outputs(original))
