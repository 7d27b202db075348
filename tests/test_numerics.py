"""Numerical robustness of the alignment methods: extreme weight scales, dead units, ties.

Weights ~1e-6 give cost matrices ~1e-12 and weights ~1e6 costs ~1e12 (and, after the ReLU scale
canonical form, last layers ~1e25): nothing may threshold absolute values, overflow or divide by ~0.
Tied assignment problems (duplicated units, all-zero or constant weights) must give the identity
wherever it is optimal, the same on every call and thread count.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from methods import make_method
from methods.assignment import prefer_identity
from methods.c2m3 import c2m3
from methods.mergemany import merge_many
from methods.weight_matching import weight_matching
from tests.conftest import SPACES, random_params
from zoos.canonical import scale_canonical
from zoos.symmetry import random_action, select, sq_distance

ROOT = Path(__file__).resolve().parents[1]
ODD = ["siren", "mlp-tanh", "cnn-tanh"]  # sign groups
SINKHORN = "sinkhorn-rebasin[objective=l2,steps=30]"  # ends in a hard permutation; fewer steps: speed
EXACT = ["git-rebasin", "sign-rebasin", "canonical", SINKHORN, "c2m3", "c2m3[signed=true]", "mergemany"]


class _Zoo:
    """What `Aligner.setup` reads (Canonical.fit takes its reference from network 0)."""

    def __init__(self, space, params):
        self.space, self.params = space, params

    def indices(self, split=None):
        return [0]


def _method(spec, space, zoo_params):
    method = make_method(spec)
    method.setup(_Zoo(space, zoo_params), None)
    return method


def _scaled(space, params, scale):
    """All weights and biases times `scale`, or "mixed": layer 0 times 1e6 and layer 1's weight times 1e-6,
    which for ReLU is a pure rescaling symmetry (the function is unchanged)."""
    if scale != "mixed":
        return {k: v * scale for k, v in params.items()}
    first, second = space.layers[:2]
    out = dict(params)
    out[first.weight], out[first.bias] = params[first.weight] * 1e6, params[first.bias] * 1e6
    out[second.weight] = params[second.weight] * 1e-6
    return out


def _with_dead_units(space, params, all_zero=True):
    """Unit 0 of the first hidden layer dead (zero incoming weights, bias kept); unit 1 all zero (bias too)."""
    first = space.layers[0]
    out = {k: v.clone() for k, v in params.items()}
    out[first.weight][:, 0] = 0
    if all_zero:
        out[first.weight][:, 1] = 0
        out[first.bias][:, 1] = 0
    return out


def _outputs(space, params):
    """Float64 forward: aligned and original nets differ only in summation order (and, for ReLU scale
    canonical forms, float32 rounding of the rescaled weights), so the comparison is not drowned by
    float32 rounding of outputs ~1e24 (CNN at 1e6) or of sine arguments ~1e8 (SIREN at 1e6)."""
    x = torch.randn(4, *space.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return space.forward({k: v.double() for k, v in params.items()}, x)


def _assert_same_function(space, before, after):
    """Per network: max |f_after - f_before| <= 1e-4 max |f_before|.

    Permutations and sign flips only reorder float64 sums: ~1e-15 relative, ~1e-8 for the SIREN at 1e6
    (second-layer sine arguments ~1e8 carry absolute rounding ~1e-8; a third sine layer would multiply
    that by ~w0 * 1e6 * |W| and make even float64 outputs chaotic, so only this depth-2 SIREN is used).
    ReLU scale canonical forms round every rescaled weight to float32 (~6e-8 relative, compounded over
    four layers): ~1e-6. 1e-4 leaves margin for these and catches any real change of function.
    """
    y0, y1 = _outputs(space, before), _outputs(space, after)
    assert torch.isfinite(y0).all() and torch.isfinite(y1).all()
    err = (y1 - y0).flatten(1).abs().amax(1)
    scale = y0.flatten(1).abs().amax(1)
    assert (err <= 1e-4 * scale + 1e-300).all(), (err / scale).tolist()


def _finite(params):
    return all(bool(torch.isfinite(v).all()) for v in params.values())


def _norm2(params):
    return sum((v.double() ** 2).sum() for v in params.values()).item()


# ---- 1. function preservation at extreme scales ---------------------------------------------------------
@pytest.mark.parametrize("spec", EXACT)
@pytest.mark.parametrize("name", list(SPACES))
def test_exact_aligners_preserve_functions_at_extreme_scales(name, spec):
    """All weights x 1e-6, x 1e6, and layer 0 x 1e6 with layer 1 x 1e-6, networks with a dead and an all-zero
    unit: both endpoints of align are finite and compute the functions of the inputs. (Before the
    fixes: the dead unit's bias became ~1e29 and the CNN's costs overflowed, 'invalid numeric entries'.)"""
    space = SPACES[name]
    base_ref = _with_dead_units(space, random_params(space, 1, seed=0))
    base_others = _with_dead_units(space, random_params(space, 2, seed=1))
    for scale in (1e-6, 1e6, "mixed"):
        ref, others = _scaled(space, base_ref, scale), _scaled(space, base_others, scale)
        if scale == "mixed" and space.layers[0].act == "relu":  # the test's own premise: a pure symmetry
            _assert_same_function(space, base_others, others)
        res = _method(spec, space, ref).align(ref, others)
        ref_aligned, aligned = res.ref, res.others
        assert _finite(ref_aligned) and _finite(aligned), scale
        _assert_same_function(space, ref, ref_aligned)
        _assert_same_function(space, others, aligned)


# ---- 2. scale equivariance and planted symmetries at extreme scales ---------------------------------------
# Powers of two: scaling is then exact in floating point, so a method whose decisions depend only on
# ratios of costs returns exactly `scale` times its unscaled result. Any difference comes from an
# absolute threshold (a stopping tolerance, an optimiser's eps), not from rounding.
EQUIVARIANT = [(spec, name) for spec in ("git-rebasin", "git-rebasin[init=identity]", SINKHORN, "c2m3", "mergemany")
               for name in SPACES]
EQUIVARIANT += [(spec, name) for spec in ("sign-rebasin", "canonical", "c2m3[signed=true]") for name in ODD]


@pytest.mark.parametrize(("spec", "name"), EQUIVARIANT)
def test_alignment_commutes_with_global_scaling(spec, name):
    """align(s A, s B) == s align(A, B) at s = 2^-20 (~1e-6) and 2^20 (~1e6).

    Failed before the fixes: weight matching's absolute improvement threshold (1e-12) stopped the descent
    at ~1e-6 (init=identity), C2M3's absolute tol stopped Frank-Wolfe after `patience` steps, and
    Sinkhorn's gradients (~1e-12) fell below AdamW's eps so its matrices did not move.
    """
    space = SPACES[name]
    ref, others = random_params(space, 1, seed=2), random_params(space, 2, seed=3)
    expected = _method(spec, space, ref).align(ref, others).others
    for scale in (2.0**-20, 2.0**20):
        got = _method(spec, space, _scaled(space, ref, scale)).align(_scaled(space, ref, scale),
                                                                     _scaled(space, others, scale)).others
        for k in expected:
            assert torch.equal(got[k], expected[k] * scale), (scale, k)


PLANTED = [(spec, name, "P") for spec in ("git-rebasin", "sinkhorn-rebasin[objective=l2]", "c2m3", "mergemany")
           for name in SPACES]
PLANTED += [(spec, name, "PS") for spec in ("sign-rebasin", "canonical") for name in SPACES]
PLANTED += [("c2m3[signed=true]", name, "PS") for name in ODD]


@pytest.mark.parametrize(("spec", "name", "kind"), PLANTED)
def test_planted_symmetry_recovered_at_extreme_scales(spec, name, kind):
    """B = random group element applied to A, at scales 1e-6 and 1e6: aligned B is A again (relative distance ~0)."""
    space = SPACES[name]
    for scale in (1e-6, 1e6):
        ref = _scaled(space, random_params(space, 1, seed=4), scale)
        moved, _, _ = random_action(space, ref, kind, torch.Generator().manual_seed(5))
        res = _method(spec, space, ref).align(ref, moved)
        ref_aligned, aligned = res.ref, res.others
        assert sq_distance(ref_aligned, aligned).item() <= 1e-10 * _norm2(ref_aligned), scale
        _assert_same_function(space, moved, aligned)


def test_costs_beyond_float32_range():
    """Weights ~1e20 (what the ReLU scale canonical form puts in a CNN's last layer at scale 1e6): the cost
    products ~1e40 overflowed float32 and linear_sum_assignment raised 'invalid numeric entries'."""
    space = SPACES["cnn-relu"]
    ref = _scaled(space, random_params(space, 1, seed=6), 1e20)
    moved, _, _ = random_action(space, ref, "P", torch.Generator().manual_seed(7))
    aligned = _method("git-rebasin", space, ref).align(ref, moved).others
    assert sq_distance(ref, aligned).item() <= 1e-10 * _norm2(ref)


# ---- dead units in the ReLU scale canonical form ------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-relu", "cnn-relu"])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_scale_canonical_form_with_dead_units(name, scale):
    """A dead unit (zero incoming weights) used to get its bias multiplied by 1e30 (norm clamped to 1e-30):
    the costs then overflowed. Now its |bias| becomes 1, an all-zero unit is left alone, and the form is
    still finite, function-preserving, idempotent and (without all-zero units, whose outgoing weights keep
    their scale) one point per rescaling orbit."""
    space = SPACES[name]
    params = _scaled(space, _with_dead_units(space, random_params(space, 2, seed=8)), scale)
    canon = scale_canonical(space, params)
    assert _finite(canon)
    _assert_same_function(space, params, canon)
    first = space.layers[0]
    assert torch.allclose(canon[first.bias][:, 0].abs(), torch.ones(2))  # dead unit: |bias| = 1
    assert (canon[first.bias][:, 1] == 0).all() and (canon[first.weight][:, 1] == 0).all()  # all-zero unit
    again = scale_canonical(space, canon)
    assert sq_distance(canon, again).max() <= 1e-10 * _norm2(select(canon, 0))
    dead = _scaled(space, _with_dead_units(space, random_params(space, 2, seed=8), all_zero=False), scale)
    canon = scale_canonical(space, dead)
    moved, _, _ = random_action(space, dead, "S", torch.Generator().manual_seed(9))
    assert sq_distance(canon, scale_canonical(space, moved)).max() <= 1e-10 * _norm2(select(canon, 0))


def test_scale_canonical_norms_beyond_float32_range():
    """At scale 1e7 the first two ReLU layers push their norms (~1e7, ~1e14) into the third, whose incoming
    entries reach ~1e21: their squares overflowed float32, the norm became inf, the unit was zeroed and its
    outgoing weights became inf. (At 1e6 this happens for some orbit points only: see the planted tests.)"""
    space = SPACES["cnn-relu"]
    params = _scaled(space, random_params(space, 2, seed=10), 1e7)
    canon = scale_canonical(space, params)
    assert _finite(canon)
    _assert_same_function(space, params, canon)


def test_scale_canonical_form_with_denormal_incoming_weights():
    """A unit whose incoming weights weight decay drove to ~1e-39 (denormal) while its bias stayed ~0.1, as in
    network 13 of the CNN Zoo recipe's zoo: dividing by that norm overflowed float32, the bias became inf and
    sign-rebasin's costs NaN. Such a unit is dead: |bias| -> 1, finite, function-preserving, one point per
    orbit (the rule compares bias and norm, so rescaling the unit cannot move it across the threshold)."""
    space = SPACES["cnn-relu"]
    params = {k: v.clone() for k, v in random_params(space, 2, seed=11).items()}
    second = space.layers[1]
    params[second.weight][:, 3] = params[second.weight][:, 3].sign() * 1e-39
    params[second.bias][:, 3] = 0.1
    canon = scale_canonical(space, params)
    assert _finite(canon)
    _assert_same_function(space, params, canon)
    assert torch.allclose(canon[second.bias][:, 3], torch.ones(2))
    moved, _, _ = random_action(space, params, "S", torch.Generator().manual_seed(12))
    assert sq_distance(canon, scale_canonical(space, moved)).max() <= 1e-10 * _norm2(select(canon, 0))


# ---- 3. ties -------------------------------------------------------------------------------------------------
def _duplicated(space, params):
    """Hidden units 1-3 of every layer copies of unit 0 (incoming and outgoing): tied assignments."""
    out = {k: v.clone() for k, v in params.items()}
    for perm in space.perm_sizes:
        for name, axis in space.touches(perm):
            t = out[name].movedim(axis + 1, 1)  # a view: writes go to out[name]
            t[:, 1:4] = t[:, :1]
    return out


TIED = {
    "random": lambda space: random_params(space, 1, seed=11),
    "duplicated": lambda space: _duplicated(space, random_params(space, 1, seed=11)),
    "zero": lambda space: {k: torch.zeros(1, *s) for k, s in space.shapes().items()},  # all-zero costs
    "constant": lambda space: {k: torch.full((1, *s), 0.5) for k, s in space.shapes().items()},
}


def _is_identity(perms):
    return all(torch.equal(v.reshape(-1), torch.arange(len(v.reshape(-1)))) for v in perms.values())


@pytest.mark.parametrize("case", list(TIED))
@pytest.mark.parametrize("name", list(SPACES))
def test_matching_a_network_to_itself_gives_the_identity(name, case):
    """Every method's permutations are the identity (signs +1) for a self-match, also where ties allow others."""
    space = SPACES[name]
    ref = TIED[case](space)
    a = {k: v[0] for k, v in ref.items()}
    for signed in (False, True):
        for init in ("forward", "identity"):
            perms, signs, _ = weight_matching(space, a, a, signed=signed, init=init)
            assert _is_identity(perms) and all((s == 1).all() for s in signs.values()), (signed, init)
        pair = {k: torch.cat([v, v]) for k, v in ref.items()}
        res = c2m3(space, pair, signed=signed)
        assert all(_is_identity(p) for p in res.perms), ("c2m3", signed)
        assert all((s == 1).all() for signs in res.signs for s in signs.values())
        perms, signs, _ = merge_many(space, pair, signed=signed)
        assert all(_is_identity(p) for p in perms), ("mergemany", signed)
        assert all((s == 1).all() for ss in signs for s in ss.values())
    sinkhorn = _method("sinkhorn-rebasin[objective=l2,steps=20]", space, ref)
    assert _is_identity(sinkhorn.match(ref, ref)[0])


# Sinkhorn from the weight-matching start with few steps: 10 steps from the identity need not reach the
# planted permutation, and this keeps the two-thread run short
TIED_SPECS = [spec if spec != SINKHORN else "sinkhorn-rebasin[objective=l2,steps=10,init=weight-matching]"
              for spec in EXACT]


def tied_runs() -> dict:
    """(A', B') per space, method and case: duplicated units (B a planted permutation of such an A) and
    all-zero networks (all-zero costs)."""
    out = {}
    for name, space in SPACES.items():
        ref = _duplicated(space, random_params(space, 1, seed=12))
        moved, _, _ = random_action(space, ref, "P", torch.Generator().manual_seed(13))
        zero = {k: torch.zeros_like(v) for k, v in ref.items()}
        for spec in TIED_SPECS:
            for case, (a, b) in (("duplicated", (ref, moved)), ("zero", (zero, zero))):
                res = _method(spec, space, a).align(a, b)
                out[name, spec, case] = (b, res.ref, res.others)
    return out


@pytest.fixture(scope="module")
def tied():
    return tied_runs()


def test_tied_alignment_is_exact(tied):
    """Aligned B computes B's function and lands exactly on A (duplicated units: any tie-break would do)."""
    for (name, spec, case), (b, ref_aligned, aligned) in tied.items():
        _assert_same_function(SPACES[name], b, aligned)
        assert sq_distance(ref_aligned, aligned).item() <= 1e-10 * _norm2(ref_aligned), (name, spec, case)


def test_tied_alignment_is_the_same_on_every_call_and_thread_count(tied, tmp_path):
    """Bit-identical results on a repeated call and in a process with 2 torch threads.

    The 2-thread run is a subprocess with OMP_WAIT_POLICY=PASSIVE: in-process, OpenMP's spinning
    workers made Sinkhorn's many small ops ~30x slower on a busy 2-core box (the policy is read once,
    when OpenMP starts, and does not change any arithmetic)."""
    path = tmp_path / "two_threads.pt"
    code = ("import sys, torch; from tests.test_numerics import tied_runs; torch.set_num_threads(2); "
            "torch.save(tied_runs(), sys.argv[1])")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT, env=env, timeout=120)
    for other in (tied_runs(), torch.load(path)):
        assert other.keys() == tied.keys()
        for key, (_, ref_aligned, aligned) in tied.items():
            for k in aligned:
                assert torch.equal(other[key][1][k], ref_aligned[k]) and torch.equal(other[key][2][k], aligned[k]), key


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 7).flatmap(lambda n: st.lists(st.integers(-2, 2), min_size=n * n, max_size=n * n)))
def test_prefer_identity_keeps_the_optimum_and_takes_the_identity_when_tied(entries):
    """Small integer matrices (many exact ties): the tie-break returns a permutation with scipy's optimal
    value, at least as many fixed points as scipy's answer, and the identity whenever it is optimal."""
    n = int(round(len(entries) ** 0.5))
    score = np.array(entries, dtype=float).reshape(n, n)
    _, cols = linear_sum_assignment(score, maximize=True)
    rows = np.arange(n)
    got = prefer_identity(score, cols)
    assert sorted(got.tolist()) == rows.tolist()
    assert score[rows, got].sum() == score[rows, cols].sum()
    assert (got == rows).sum() >= (cols == rows).sum()
    if np.trace(score) == score[rows, cols].sum():
        assert (got == rows).all()
