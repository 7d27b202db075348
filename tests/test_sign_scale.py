"""Sign/scale-aware alignment: planted signed permutations, canonical forms, the canonical baseline."""

import pytest
import torch

from methods import make_method
from tests.conftest import SPACES, random_params
from zoos.canonical import canonical_form, scale_canonical, sign_canonical
from zoos.space import cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import random_action, sq_distance


class _Zoo:
    def __init__(self, space, params=None):
        self.space, self.params = space, params

    def indices(self, split=None):
        return [0]


def _method(spec, space, params=None):
    m = make_method(spec)
    m.setup(_Zoo(space, params), None)
    return m


def _deviation(space, a, b):
    x = torch.randn(8, *space.input_shape, generator=torch.Generator().manual_seed(9))
    y = space.forward(a, x)
    return ((space.forward(b, x) - y).abs().max() / y.abs().max()).item()


ODD = [siren_space()] + [mlp_space([5] + [12] * d + [3], "tanh") for d in (2, 3, 4, 5)] + [cnn_zoo_space("tanh")]


@pytest.mark.parametrize("space", ODD, ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["S", "PS"])
def test_signed_matching_recovers_planted_signed_permutation(space, kind):
    params = random_params(space, seed=1)
    for seed in range(3):
        moved, _, _ = random_action(space, params, kind, torch.Generator().manual_seed(seed))
        aligned = _method("sign-rebasin", space).align(params, moved).others
        assert sq_distance(params, aligned).item() < 1e-10  # distance 0: the planted element undone
        assert _deviation(space, moved, aligned) < 1e-4
        # permutation-only matching cannot: the gap the sign group makes
        plain = _method("git-rebasin", space).align(params, moved).others
        assert sq_distance(params, plain).item() > 1e-2


@pytest.mark.parametrize("space", [mlp_space([5, 12, 12, 3], "relu"), cnn_zoo_space("relu")], ids=lambda s: s.name)
def test_scale_rebasin_recovers_planted_scaled_permutation(space):
    params = random_params(space, seed=2)
    moved, _, _ = random_action(space, params, "PS", torch.Generator().manual_seed(0))
    res = _method("sign-rebasin", space).align(params, moved)
    ref, aligned = res.ref, res.others
    assert sq_distance(ref, aligned).item() < 1e-8
    assert _deviation(space, params, ref) < 1e-4 and _deviation(space, moved, aligned) < 1e-4
    plain = _method("git-rebasin", space).align(params, moved).others
    assert sq_distance(params, plain).item() > 1e-2


def test_scale_canonical_form(space):
    params = random_params(space, n=2, seed=3)
    canon = scale_canonical(space, params)
    assert _deviation(space, params, canon) < 1e-4
    assert sq_distance(canon, scale_canonical(space, canon)).max() < 1e-10  # idempotent
    if "scale" in space.groups.values():
        moved, _, _ = random_action(space, params, "S", torch.Generator().manual_seed(1))
        assert sq_distance(canon, scale_canonical(space, moved)).max() < 1e-8  # one orbit -> one point
        first = space.layers[0].weight
        assert torch.allclose(canon[first].flatten(2).norm(dim=-1), torch.ones(1))


def test_sign_canonical_form(space):
    params = random_params(space, n=2, seed=4)
    canon = sign_canonical(space, params)
    assert _deviation(space, params, canon) < 1e-4
    moved, _, _ = random_action(space, params, "S", torch.Generator().manual_seed(2))
    if "sign" in space.groups.values():
        assert sq_distance(canon, sign_canonical(space, moved)).max() < 1e-10
        assert (canon[space.layers[0].bias] > 0).all()


def test_canonical_baseline_maps_an_orbit_to_one_point():
    for space in (SPACES["mlp-tanh"], SPACES["cnn-relu"]):
        zoo_params = random_params(space, n=1, seed=5)
        method = _method("canonical", space, zoo_params)
        a = random_params(space, seed=6)
        moved, _, _ = random_action(space, a, "PS", torch.Generator().manual_seed(3))
        res = method.align(a, moved)
        ca, cb = res.ref, res.others
        assert sq_distance(ca, cb).item() < 1e-8
        assert _deviation(space, a, ca) < 1e-4 and _deviation(space, moved, cb) < 1e-4
        assert sq_distance(ca, canonical_form(space, ca)).item() < 1e-10
