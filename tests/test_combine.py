"""Mode-combinability probes: the samplers' laws, exact combinations, re-matching, and protocol rows."""

import math

import pandas as pd
import pytest
import torch

from bench.protocols import make_protocol
from bench.protocols.combine import (
    PROBES,
    bernoulli_coeffs,
    combine,
    derangement,
    matched_correlations,
    min_max,
    rematch,
    stitch_coeffs,
    subcube_coeffs,
    trunc_exp_coeffs,
    trunc_exp_mean,
    trunc_exp_rate,
    uniform_coeffs,
)
from tests.conftest import random_params, run_protocol
from zoos.space import cnn_zoo_space, mlp_space
from zoos.symmetry import random_action, stack
from zoos.zoo import Zoo


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5])
def test_uniform_cube_bounds_and_moments(s):
    v = uniform_coeffs(200, 1000, s, gen())
    assert v.min() >= 0.5 - s and v.max() <= 0.5 + s
    assert v.mean().item() == pytest.approx(0.5, abs=3e-3)
    assert v.var().item() == pytest.approx((2 * s) ** 2 / 12, rel=0.03, abs=1e-12)


@pytest.mark.parametrize("lam, lo, hi", [(0.0, 0.0, 0.0), (0.2, 0.0, 0.4), (0.5, 0.0, 1.0), (0.8, 0.6, 1.0),
                                         (1.0, 1.0, 1.0)])
def test_subcubes_slide_from_a_to_b(lam, lo, hi):
    v = subcube_coeffs(100, 1000, lam, gen())
    assert v.min() >= lo and v.max() <= hi
    assert v.mean().item() == pytest.approx((lo + hi) / 2, abs=3e-3)
    if hi > lo:
        assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo)  # fills its cube


def _second_moment(rate):
    """E[x^2] of the density r e^{rx} / (e^r - 1) on [0, 1]."""
    if rate == 0:
        return 1 / 3
    return (math.exp(rate) * (rate**2 - 2 * rate + 2) - 2) / (rate**2 * math.expm1(rate))


@pytest.mark.parametrize("alpha", [0.03, 0.2, 0.5, 0.7, 0.97])
def test_truncated_exponential_has_mean_alpha(alpha):
    rate = trunc_exp_rate(alpha)
    assert trunc_exp_mean(rate) == pytest.approx(alpha, abs=1e-9)
    assert (rate > 0) == (alpha > 0.5) and (rate == 0) == (alpha == 0.5)
    v = trunc_exp_coeffs(100, 2000, alpha, gen(1))
    assert v.min() >= 0 and v.max() <= 1
    assert v.mean().item() == pytest.approx(alpha, abs=2e-3)
    # the whole law, not only its mean: the second moment of the truncated exponential
    assert (v**2).mean().item() == pytest.approx(_second_moment(rate), abs=2e-3)


def test_truncated_exponential_limits():
    assert (trunc_exp_coeffs(3, 10, 0.0, gen()) == 0).all() and (trunc_exp_coeffs(3, 10, 1.0, gen()) == 1).all()
    v = trunc_exp_coeffs(100, 2000, 0.5, gen())  # rate 0: uniform on [0, 1]
    assert v.var().item() == pytest.approx(1 / 12, rel=0.02)
    with pytest.raises(ValueError):
        trunc_exp_rate(1.0)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
def test_bernoulli_vertices(p):
    v = bernoulli_coeffs(100, 2000, p, gen())
    assert set(v.unique().tolist()) <= {0.0, 1.0}
    assert v.mean().item() == pytest.approx(p, abs=3e-3)


def test_derangements_have_no_fixed_points_and_are_uniform():
    for k in range(2, 9):
        for seed in range(20):
            d = derangement(k, gen(seed))
            assert sorted(d.tolist()) == list(range(k)) and not (d == torch.arange(k)).any()
    assert derangement(1, gen()).tolist() == [0] and derangement(0, gen()).tolist() == []
    g = gen(3)  # the two derangements of 3 elements, about equally often
    first = sum(derangement(3, g).tolist() == [1, 2, 0] for _ in range(2000))
    assert 900 < first < 1100


def test_combinations_and_stitching_hit_the_endpoints():
    space = mlp_space([4, 6, 5, 3], "relu")
    a, b = random_params(space, seed=1), random_params(space, seed=2)
    d = space.n_params
    for v, want in ((torch.zeros(1, d), a), (torch.ones(1, d), b)):
        out = combine(space, a, b, v.double())
        assert all(torch.allclose(out[k], want[k]) for k in a)
    assert (stitch_coeffs(space, 0) == 1).all() and (stitch_coeffs(space, 3) == 0).all()
    one = space.unflatten(stitch_coeffs(space, 1).float())  # first layer from A, the rest from B
    assert (one["seq.0.weight"] == 0).all() and (one["seq.1.weight"] == 1).all() and (one["seq.2.bias"] == 1).all()
    lo, hi = min_max(a, b)
    for k in a:
        assert (lo[k].abs() <= torch.minimum(a[k].abs(), b[k].abs())).all()
        assert torch.equal(lo[k] + hi[k], a[k] + b[k])


def test_rematch_derangees_the_least_correlated_units_and_keeps_the_function():
    space = cnn_zoo_space("relu", channels=8)
    a = random_params(space, seed=0, scale=0.4)
    b, _, _ = random_action(space, a, "P", gen(5))
    b = {k: v + 0.3 * torch.randn(v.shape, generator=gen(6)) for k, v in b.items()}
    x = torch.rand(32, 1, 28, 28, generator=gen(7)) * 2 - 1
    corr = matched_correlations(space, a, b, x)
    assert set(corr) == set(space.perm_sizes) and all(c.abs().max() <= 1 + 1e-9 for c in corr.values())
    same = rematch(space, b, corr, 0.0, gen())
    assert all(torch.equal(same[k], b[k]) for k in b)
    moved = rematch(space, b, corr, 0.5, gen(8))
    assert torch.allclose(space.forward(moved, x), space.forward(b, x), atol=1e-5)  # a permutation of B
    for p, c in corr.items():  # a unit's bias moves with it (and only with it)
        bias = space.layers[int(p[1:])].bias
        changed = [(moved[bias][0, i] != b[bias][0, i]).item() for i in range(len(c))]
        least = set(torch.argsort(c, stable=True)[: round(0.5 * len(c))].tolist())
        assert {i for i, ch in enumerate(changed) if ch} == least  # exactly the chosen units, all moved


@pytest.fixture(scope="module")
def copies_zoo():
    """A tanh CNN and permuted copies of it: aligned, every combination is the network itself."""
    space = cnn_zoo_space("tanh", channels=8)
    base = random_params(space, seed=0, scale=0.4)
    nets = stack([base] + [random_action(space, base, "P", gen(i))[0] for i in range(1, 6)])
    meta = pd.DataFrame({"id": range(6), "split": ["test"] * 6})
    return Zoo("copies", space, nets, meta, {"kind": "classifier", "dataset": "digits", "n_eval": 100})




def test_combine_protocol_on_permuted_copies(copies_zoo):
    protocol = make_protocol("combine", n_pairs=1, n_triples=1, lambdas=5, samples=2)
    units = protocol.units(copies_zoo)
    assert len(units) == len(PROBES) and len({u.name for u in units}) == len(units)
    aligned = run_protocol("git-rebasin", copies_zoo, protocol).set_index("probe")
    naive = run_protocol("naive", copies_zoo, protocol).set_index("probe")
    assert set(aligned.index) == set(PROBES) and (aligned.width == 8).all()
    assert aligned.loc["transitivity", "c"] is not None and not math.isnan(aligned.loc["transitivity", "c"])
    for probe, row in aligned.iterrows():
        assert len(row.grid) == len(row.grid_loss) == len(row.grid_acc)
        assert row.loss_barrier == pytest.approx(max(row.grid_loss) - row.loss_endpoints)
        if probe != "robustness":  # every combination of a network with itself is the network
            assert abs(row.loss_barrier) < 1e-5 and abs(row.acc_barrier) < 1e-9, probe
    assert aligned.loc["uniform", "n_samples"] == 5 * 2 and aligned.loc["stitch", "n_samples"] == 5
    assert aligned.loc["robustness", "grid_loss"][0] == pytest.approx(aligned.loc["robustness", "loss_endpoints"])
    assert aligned.loc["robustness", "loss_barrier"] > 1e-3  # deranged matches break the basin
    # unaligned copies do not share a basin: the line and the cube probes see a barrier
    assert naive.loc["line", "loss_barrier"] > 1e-3 and naive.loc["bernoulli", "loss_barrier"] > 1e-3
    assert naive.loc["stitch", "grid_loss"][0] == pytest.approx(naive.loc["stitch", "loss_endpoints"], abs=1e-5)


def test_combine_protocol_is_deterministic_and_validates(copies_zoo):
    protocol = make_protocol("combine", n_pairs=1, n_triples=0, lambdas=3, samples=1, probes=("uniform",))
    first, again = run_protocol("naive", copies_zoo, protocol), run_protocol("naive", copies_zoo, protocol)
    assert first.grid_loss.tolist() == again.grid_loss.tolist()
    with pytest.raises(ValueError, match="unknown probe|not one of"):
        make_protocol("combine", probes=("nope",))
