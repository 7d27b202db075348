"""Weight spaces and group actions: every action leaves the function unchanged."""

import pytest
import torch

from tests.conftest import random_params
from zoos.space import SpecError, WeightSpace, cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import ACTIONS, apply_perms, apply_scales, invert, random_action, sq_distance


def _inputs(space, n=16, seed=1):
    return torch.randn(n, *space.input_shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ACTIONS)
def test_group_action_preserves_function(space, kind):
    params = random_params(space, n=3)
    x = _inputs(space)
    y = space.forward(params, x)
    moved, perms, scales = random_action(space, params, kind, torch.Generator().manual_seed(2))
    assert sq_distance(params, moved).min() > 1e-3  # the action really moved the weights
    deviation = (space.forward(moved, x) - y).abs().max() / y.abs().max()
    assert deviation < 1e-4


def test_actions_invert_exactly(space):
    params = random_params(space, n=2)
    moved, perms, scales = random_action(space, params, "PS", torch.Generator().manual_seed(3))
    back = apply_scales(space, apply_perms(space, moved, invert(perms)), {p: 1 / s for p, s in scales.items()})
    assert sq_distance(params, back).max() < 1e-10


def test_scale_action_breaks_function_when_group_is_wrong():
    # positive scaling is a symmetry of ReLU but not of tanh: the check must be able to fail
    space = mlp_space([4, 8, 3], "tanh")
    params = random_params(space)
    scaled = apply_scales(space, params, {"P0": torch.full((1, 8), 2.0)})
    x = _inputs(space)
    assert (space.forward(scaled, x) - space.forward(params, x)).abs().max() > 1e-2


def test_batched_forward_matches_modules(space):
    params = random_params(space, n=3)
    x = _inputs(space)
    y = space.forward(params, x)
    for i in range(3):
        assert torch.allclose(space.to_module(params, i)(x), y[i], atol=1e-5)


def test_per_network_inputs(space):
    params = random_params(space, n=2)
    x = torch.stack([_inputs(space, seed=4), _inputs(space, seed=5)])
    y = space.forward(params, x)
    assert torch.allclose(y[1], space.forward({k: v[1:] for k, v in params.items()}, x[1])[0], atol=1e-5)


def test_spec_shapes_and_counts():
    assert siren_space().n_params == 1185
    assert cnn_zoo_space().n_params == 4970
    space = cnn_zoo_space()
    assert space.axes["conv2.weight"] == ("P1", "P0", None, None)
    assert space.axes["fc.weight"] == (None, "P2")
    assert space.groups == {"P0": "scale", "P1": "scale", "P2": "scale"}
    assert siren_space().groups == {"P0": "sign", "P1": "sign"}


def test_flatten_roundtrip(space):
    params = random_params(space, n=2)
    flat = space.flatten(params)
    assert flat.shape == (2, space.n_params)
    back = space.unflatten(flat)
    assert all(torch.equal(back[k], params[k]) for k in params)


def test_json_roundtrip(space):
    again = WeightSpace.from_json(space.to_json())
    assert again == space and again.axes == space.axes


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("seq.1.bias"), "missing parameter"),
    (lambda p: p.__setitem__("extra.weight", torch.zeros(1, 3)), "not in weight space"),
    (lambda p: p.__setitem__("seq.0.weight", torch.zeros(1, 5, 2)), "has shape"),
    (lambda p: p["seq.0.weight"].__setitem__((0, 0, 0), float("nan")), "NaN"),
    (lambda p: p.__setitem__("seq.0.bias", torch.zeros(1, 32, dtype=torch.long)), "dtype"),
])
def test_check_rejects_bad_parameters(mutate, message):
    space = siren_space()
    params = random_params(space)
    mutate(params)
    with pytest.raises(SpecError, match=message):
        space.check(params)


def test_unknown_activation_is_an_error():
    with pytest.raises(SpecError, match="unknown activation"):
        mlp_space([2, 3, 1], "gelu")
