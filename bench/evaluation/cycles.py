"""Cycle consistency of a method's pairwise maps: does a <- b <- c <- a give the identity?"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch

from zoos.symmetry import GroupElement


def cycle_error(maps: list[GroupElement]) -> float:
    """Fraction of hidden units not sent back to themselves (with a positive factor) by a cycle of maps.

    `maps` are single-network maps around a cycle in composition order, e.g. [a <- b, b <- c, c <- a].
    """
    total = maps[0]
    for m in maps[1:]:
        total = total.compose(m)
    perms = {p: v[0] for p, v in total.perms.items()}
    fixed = {p: v == torch.arange(len(v)) for p, v in perms.items()}
    wrong = sum(int((~f).sum()) for f in fixed.values())
    wrong += sum(int(((s[0] < 0) & fixed[p]).sum()) for p, s in total.scales.items() if p in fixed)
    return wrong / sum(len(v) for v in perms.values())


def mean_cycle_error(pair: Callable[[int, int], GroupElement], triples: list[tuple[int, int, int]]) -> float:
    """Mean over the given triples (a, b, c) of `cycle_error([a <- b, b <- c, c <- a])`."""
    return float(sum(cycle_error([pair(a, b), pair(b, c), pair(c, a)]) for a, b, c in triples) / len(triples))


def all_triples(n: int) -> list[tuple[int, int, int]]:
    return list(combinations(range(n), 3))
