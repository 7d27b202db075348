"""Barrier math against hand-computed curves."""

import torch

from bench.evaluation import metrics
from bench.evaluation.curves import interpolate
from zoos.tasks import psnr


def test_barrier_of_hand_computed_loss_curve():
    lambdas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    curve = torch.tensor([[1.0, 2.0, 3.0, 2.5, 2.0]])
    # line: 1, 1.25, 1.5, 1.75, 2 -> excess 0, 0.75, 1.5, 0.75, 0
    assert torch.allclose(metrics.barrier(curve, lambdas), torch.tensor([1.5]))
    # trapezoid of (0, .75, 1.5, .75, 0) with step .25 = .25 * (.75 + 1.5 + .75) = 0.75
    assert torch.allclose(metrics.barrier_area(curve, lambdas), torch.tensor([0.75]))


def test_accuracy_barrier_counts_drops():
    lambdas = torch.tensor([0.0, 0.5, 1.0])
    acc = torch.tensor([[0.9, 0.5, 0.8], [0.9, 0.95, 0.8]])
    # line at 0.5: 0.85 -> drop 0.35; second curve above the line -> max(0, ...) at endpoints = 0
    assert torch.allclose(metrics.barrier(acc, lambdas, higher_is_better=True), torch.tensor([0.35, 0.0]), atol=1e-6)


def test_convex_curve_has_zero_barrier():
    lambdas = torch.linspace(0, 1, 11)
    curve = (lambdas - 0.5) ** 2
    assert metrics.barrier(curve[None], lambdas).item() == 0.0


def test_psnr_and_deviation():
    assert torch.allclose(psnr(torch.tensor([0.01])), torch.tensor([20.0]))
    dev = metrics.functional_deviation(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]]))
    assert torch.allclose(dev, torch.tensor([0.5]))


def test_interpolate_endpoints_and_layout():
    a = {"w": torch.zeros(2, 3)}
    b = {"w": torch.ones(2, 3) * torch.tensor([[1.0], [2.0]])}
    out = interpolate(a, b, torch.tensor([0.0, 0.5, 1.0]))["w"]
    assert out.shape == (6, 3)  # pair-major: pair 0's three points, then pair 1's
    assert torch.allclose(out[:, 0], torch.tensor([0.0, 0.5, 1.0, 0.0, 1.0, 2.0]))
