"""Collapse diagnostics for methods that change the function (learned canonicalisers, baselines).

A decoder that maps every input to (nearly) one network scores a zero barrier between its own
outputs. Two questions expose it: does a decoded network still identify its source among the
originals (nearest by function), and do decoded networks differ from each other as much as their
sources do?

Function distance: INRs by their rendered images (Euclidean), classifiers by their predictions on
the evaluation images (disagreement rate).
"""

from __future__ import annotations

import torch

from zoos.space import Params
from zoos.tasks import Task


@torch.no_grad()
def signatures(task: Task, params: Params) -> torch.Tensor:
    """What a network computes, as one row per network (`Task.signature` of its outputs)."""
    return task.signature(task.outputs(params))


def identified(task: Task, decoded: torch.Tensor, sources: list[int], pool: torch.Tensor,
               pool_index: list[int]) -> torch.Tensor:
    """[M] 1.0 where the original nearest to decoded network m (by function) is its own source."""
    nearest = task.distances(decoded, pool).argmin(dim=1)
    index = torch.as_tensor(pool_index)
    return (index[nearest] == torch.as_tensor(sources)).double()


def pair_spread(task: Task, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[M] function distance between a[m] and b[m] (signatures)."""
    return torch.diagonal(task.distances(a, b))
