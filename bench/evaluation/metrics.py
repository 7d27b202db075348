"""Every metric the harness reports, defined once.

Curves are `[P, K]` tensors: P paths (pairs), K interpolation points on `lambdas` (ascending,
first 0 and last 1). For a loss the barrier is the largest excess over the straight line between
the endpoints; for a score where higher is better (accuracy, PSNR) it is the largest drop below it.
"""

from __future__ import annotations

import torch


def excess_over_line(curve: torch.Tensor, lambdas: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """curve(l) minus the endpoints' linear interpolation, signed so that worse is positive."""
    line = (1 - lambdas) * curve[..., :1] + lambdas * curve[..., -1:]
    return line - curve if higher_is_better else curve - line


def barrier(curve: torch.Tensor, lambdas: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """max_l [L(l) - ((1-l) L(0) + l L(1))]; accuracy: largest drop below the line. Shape [P]."""
    return excess_over_line(curve, lambdas, higher_is_better).amax(dim=-1)


def barrier_area(curve: torch.Tensor, lambdas: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """Area between the curve and the endpoints' line (trapezoid rule), worse positive. Shape [P]."""
    return torch.trapezoid(excess_over_line(curve, lambdas, higher_is_better), lambdas, dim=-1)


def functional_deviation(out_aligned: torch.Tensor, out_original: torch.Tensor) -> torch.Tensor:
    """Max |f(aligned) - f(original)| per network, relative to the original's largest output. [M]."""
    diff = (out_aligned - out_original).abs().flatten(1).amax(1)
    return diff / out_original.abs().flatten(1).amax(1).clamp_min(1e-12)


def path_excess(curve: torch.Tensor, originals_mean: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """Worst point of the path against the ORIGINAL endpoints' mean: max_l L(l) - (L(A) + L(B)) / 2
    (scores: the mean minus the lowest score). [P].

    Unlike the barrier, which is measured against the path's own endpoints, this charges a method
    for whatever it did to the endpoints: for an exact method (and endpoints of equal loss) it is
    the barrier; for a method that returns one fixed network it is that network's excess loss."""
    return originals_mean - curve.amin(dim=-1) if higher_is_better else curve.amax(dim=-1) - originals_mean
