"""Git Re-Basin weight matching: planted permutations recovered exactly, functions preserved."""

import pytest
import torch

from bench.evaluation.curves import curve_summary, curves
from methods import make_method
from tests.conftest import random_params
from zoos.space import cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import random_action, select, sq_distance
from zoos.tasks import make_task
from zoos.zoo import load_zoo


class _Zoo:
    def __init__(self, space):
        self.space = space


def _method(space, spec="git-rebasin"):
    m = make_method(spec)
    m.setup(_Zoo(space), None)
    return m


PLANTED = [siren_space()] + [mlp_space([5] + [12] * depth + [3], act) for depth in (2, 3, 4, 5)
                             for act in ("relu", "tanh")] + [cnn_zoo_space("relu"), cnn_zoo_space("tanh")]


@pytest.mark.parametrize("space", PLANTED, ids=lambda s: s.name)
def test_recovers_planted_permutation(space):
    params = random_params(space, seed=3)
    for seed in range(3):
        moved, perms, _ = random_action(space, params, "P", torch.Generator().manual_seed(seed))
        aligned = _method(space).align(params, moved).others
        assert sq_distance(params, aligned).item() < 1e-10


def test_aligned_network_computes_the_same_function(space):
    a, b = random_params(space, seed=1), random_params(space, seed=2)
    aligned = _method(space).align(a, b).others
    assert sq_distance(aligned, b).item() > 1e-3  # it did permute
    assert sq_distance(a, aligned) < sq_distance(a, b)  # ... towards a
    x = torch.randn(8, *space.input_shape)
    y = space.forward(b, x)
    assert ((space.forward(aligned, x) - y).abs().max() / y.abs().max()).item() < 1e-4


def test_planted_barrier_is_zero_on_fitted_inrs(tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    task = make_task(zoo)
    lambdas = torch.linspace(0, 1, 9)
    for i in range(3):
        a = select(zoo.params, i)
        target = torch.tensor([int(zoo.meta.target[i])])
        moved, _, _ = random_action(zoo.space, a, "P", torch.Generator().manual_seed(i))
        aligned = _method(zoo.space).align(a, moved).others
        summary = curve_summary(task, curves(task, a, aligned, lambdas, target), lambdas)
        naive = curve_summary(task, curves(task, a, moved, lambdas, target), lambdas)
        assert abs(summary["loss_barrier"].item()) < 1e-6
        assert naive["loss_barrier"].item() > 1e-2  # the planted permutation does create a barrier


def test_identity_init_is_the_reference_and_can_stall():
    # the reference starts at the identity; the greedy forward start must be at least as good
    space = siren_space()
    a = random_params(space, seed=5, scale=0.05)
    moved, perms, _ = random_action(space, a, "P", torch.Generator().manual_seed(1))
    fwd = _method(space, "git-rebasin[init=forward]").align(a, moved).others
    ident = _method(space, "git-rebasin[init=identity]").align(a, moved).others
    assert sq_distance(a, fwd) <= sq_distance(a, ident) + 1e-9


def test_permutation_matching_cannot_undo_sign_flips():
    space = mlp_space([5, 12, 12, 3], "tanh")
    a = random_params(space, seed=6)
    moved, _, _ = random_action(space, a, "PS", torch.Generator().manual_seed(2))
    assert sq_distance(a, _method(space).align(a, moved).others).item() > 1e-2


@pytest.mark.parametrize("space", [mlp_space([6, 24, 24, 24, 3], "tanh"), cnn_zoo_space("tanh", 12),
                                   siren_space(24, 3)], ids=lambda s: s.name)
def test_updated_cost_matrices_equal_the_definition(space, monkeypatch):
    """The rank-k updated cost matrices agree with C_p computed from scratch at every step of a
    descent long enough to take both update paths (few and many changed units)."""
    import numpy as np

    from methods import weight_matching as wm

    a, b = random_params(space, seed=5), random_params(space, seed=6)
    a, b = {k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()}
    checked, matrix = [], wm._Costs.matrix

    def checked_matrix(self, p, perms, signs, incoming_only=False):
        c = matrix(self, p, perms, signs, incoming_only)
        reference = wm.cost_matrix(space, a, b, p, {q: torch.from_numpy(v) for q, v in perms.items()},
                                   {q: torch.from_numpy(v) for q, v in signs.items()}, incoming_only).numpy()
        assert np.abs(c - reference).max() <= 1e-12 * np.abs(reference).max()
        checked.append(p)
        return c

    monkeypatch.setattr(wm._Costs, "matrix", checked_matrix)
    for signed in (False, True):
        perms, signs, sweeps = wm.weight_matching(space, a, b, signed=signed, init="identity")
        assert sweeps > 2
    assert len(checked) > 3 * len(space.perm_sizes)
