"""Methods that read data or transport plans: activation matching, OTFusion (POT), CCA Merge."""

import numpy as np
import pytest
import torch

from methods import METHODS, make_method
from methods.activations import method_inputs
from methods.weight_matching import _Costs, forward_init
from tests.conftest import random_params
from zoos.space import cnn_zoo_space, mlp_space
from zoos.symmetry import random_action, sq_distance
from zoos.tasks import ClassifierTask


class _Zoo:
    def __init__(self, space):
        self.space = space


class _Inputs:
    """A classifier task stand-in for MLPs on random inputs (method_inputs is all a data method reads)."""

    kind = "classifier"

    def __init__(self, dim):
        self.dim = dim

    def method_inputs(self, n=512, seed=0):
        return torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed))


def _method(spec, space, task=None):
    m = make_method(spec)
    m.setup(_Zoo(space), task if task is not None else _Inputs(space.input_shape[0]))
    return m


MLP, TANH = mlp_space([6, 16, 12, 4], "relu"), mlp_space([6, 16, 12, 4], "tanh")


def _outputs(space, params, seed=3):
    x = torch.randn(64, *space.input_shape, generator=torch.Generator().manual_seed(seed))
    return space.forward(params, x)


@pytest.mark.parametrize("spec", ["activation-matching", "otfusion", "otfusion[cost=activations]"])
@pytest.mark.parametrize("space", [MLP, TANH, cnn_zoo_space("relu", 6)], ids=lambda s: s.name)
def test_planted_permutation_is_recovered(spec, space):
    task = ClassifierTask(space, "digits") if space.layers[0].kind == "conv" else None
    params = random_params(space, seed=1)
    moved, _, _ = random_action(space, params, "P", torch.Generator().manual_seed(2))
    out = _method(spec, space, task).align(params, moved)
    assert sq_distance(params, out.others).item() < 1e-8
    assert out.transform is not None


def test_signed_activation_matching_undoes_sign_flips_and_the_unsigned_one_cannot():
    params = random_params(TANH, seed=4)
    moved, _, _ = random_action(TANH, params, "PS", torch.Generator().manual_seed(5))
    signed = _method("activation-matching[signed=true]", TANH).align(params, moved)
    assert sq_distance(params, signed.others).item() < 1e-8
    plain = _method("activation-matching", TANH).align(params, moved)
    assert sq_distance(params, plain.others).item() > 1e-2


@pytest.mark.parametrize("spec", ["activation-matching[signed=true]", "otfusion", "otfusion[cost=activations]"])
@pytest.mark.parametrize("space", [MLP, TANH, cnn_zoo_space("tanh", 6)], ids=lambda s: s.name)
def test_exact_data_methods_preserve_the_function(spec, space):
    task = ClassifierTask(space, "digits") if space.layers[0].kind == "conv" else None
    a, b = random_params(space, seed=6), random_params(space, n=2, seed=7)
    out = _method(spec, space, task).align(a, b)
    torch.testing.assert_close(_outputs(space, out.others), _outputs(space, b), rtol=1e-4, atol=1e-5)


def test_exact_otfusion_on_weights_is_the_greedy_forward_matching():
    """With uniform marginals the squared-distance transport cost differs from the negated inner
    product by terms every plan pays alike: exact OTFusion on weights = weight matching's forward pass."""
    a, b = random_params(MLP, seed=8), random_params(MLP, seed=9)
    out = _method("otfusion", MLP).align(a, b)
    assert out.info["marginal_error"] < 1e-9  # an exact plan meets its marginals
    greedy = forward_init(MLP, _Costs(MLP, {k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()}), {})
    for p, perm in greedy.items():
        assert out.transform.perms[p][0].tolist() == perm.tolist()


def test_entropic_otfusion_is_soft_and_approaches_the_exact_plan():
    a, b = random_params(MLP, seed=10), random_params(MLP, seed=11)
    exact = _method("otfusion", MLP).align(a, b).others
    assert not METHODS["otfusion-sinkhorn"].exact
    sharp = _method("otfusion-sinkhorn[reg=0.001]", MLP).align(a, b)
    assert 0 <= sharp.info["marginal_error"] < 0.5  # not converged at this small reg in 1000 iterations; close
    sharp = sharp.others
    blurred = _method("otfusion-sinkhorn[reg=1.0]", MLP).align(a, b).others
    assert sq_distance(exact, sharp).item() < 0.1 * sq_distance(exact, blurred).item()


@pytest.mark.parametrize("space", [MLP, TANH, cnn_zoo_space("relu", 6)], ids=lambda s: s.name)
def test_cca_merge_of_two_copies_is_that_network(space):
    task = ClassifierTask(space, "digits") if space.layers[0].kind == "conv" else None
    net = random_params(space, seed=12)
    method = _method("cca-merge", space, task)
    merged = method.merge({k: torch.cat([v, v]) for k, v in net.items()}).merged
    torch.testing.assert_close(_outputs(space, merged), _outputs(space, net), rtol=1e-4, atol=1e-5)
    # a permuted copy: M = P^T (the ReLU MLP has a dead unit, which a sign-ambiguous SVD direction once revived)
    moved, _, _ = random_action(space, net, "P", torch.Generator().manual_seed(13))
    assert sq_distance(net, method.align(net, moved).others).item() < 1e-8


def test_cca_merge_changes_an_unrelated_network_and_says_it_is_inexact():
    a, b = random_params(MLP, seed=14), random_params(MLP, seed=15)
    out = _method("cca-merge", MLP).align(a, b)
    assert out.transform is None and not METHODS["cca-merge"].exact
    assert (_outputs(MLP, out.others) - _outputs(MLP, b)).abs().max() > 1e-3


def test_data_methods_read_training_images_never_the_evaluation_set():
    space = cnn_zoo_space("relu", 4)
    task = ClassifierTask(space, "digits", n_eval=200)
    x = method_inputs(task, 64)
    assert torch.equal(x, task.train_batch(64)[0])
    evaluation = task.inputs().flatten(1)
    assert not (torch.cdist(x.flatten(1), evaluation).min(1).values < 1e-9).any()
    declared = {name: cls.needs for name, cls in METHODS.items()}
    assert declared["activation-matching"] == "activations" and declared["cca-merge"] == "activations"
    assert make_method("otfusion").needs == "data-free"
    assert make_method("otfusion[cost=activations]").needs == "activations"
    with pytest.raises(ValueError, match="needs the zoo's task"):
        method_inputs(None, 8)
    assert np.isfinite(x.numpy()).all()


@pytest.mark.parametrize("space", [MLP, TANH, cnn_zoo_space("relu", 6)], ids=lambda s: s.name)
def test_zipit_of_two_copies_is_that_network_even_when_permuted(space):
    task = ClassifierTask(space, "digits") if space.layers[0].kind == "conv" else None
    net = random_params(space, seed=16)
    method = _method("zipit", space, task)
    moved, _, _ = random_action(space, net, "P", torch.Generator().manual_seed(17))
    for other in (net, moved):
        merged = method.merge({k: torch.cat([v, w]) for (k, v), w in zip(net.items(), other.values(), strict=True)})
        torch.testing.assert_close(_outputs(space, merged.merged), _outputs(space, net), rtol=1e-4, atol=1e-5)


def test_zipit_halves_average_to_the_zipped_network_and_cross_only_zipping_is_exact():
    a, b = random_params(MLP, seed=18), random_params(MLP, seed=19)
    zipped = _method("zipit", MLP).align(a, b)
    assert zipped.transform is None and not METHODS["zipit"].exact
    assert (_outputs(MLP, zipped.ref) - _outputs(MLP, a)).abs().max() > 1e-3  # same-model pairs change A
    cross = _method("zipit[same_model=false]", MLP).align(a, b)
    assert sq_distance(cross.ref, a).item() < 1e-12  # one of each model per pair: A stays, B is permuted
    torch.testing.assert_close(_outputs(MLP, cross.others), _outputs(MLP, b), rtol=1e-4, atol=1e-5)
    three = random_params(MLP, n=3, seed=20)
    merged = _method("zipit", MLP).merge(three)
    torch.testing.assert_close(merged.merged["seq.0.weight"], merged.frame["seq.0.weight"].mean(0, keepdim=True))
    net = random_params(MLP, seed=21)  # three copies, two of them permuted: that network again
    copies = [net] + [random_action(MLP, net, "P", torch.Generator().manual_seed(s))[0] for s in (22, 23)]
    merged = _method("zipit", MLP).merge({k: torch.cat([c[k] for c in copies]) for k in net}).merged
    torch.testing.assert_close(_outputs(MLP, merged), _outputs(MLP, net), rtol=1e-4, atol=1e-5)


def test_zipit_groups_partition_the_features_into_pairs_for_two_models():
    from methods.zipit import greedy_groups

    for models in (2, 3):
        f = torch.randn(200, models * 6, generator=torch.Generator().manual_seed(models))
        for same_model in (False, True):
            groups = greedy_groups(f, models, same_model)
            assert len(groups) == 6 and sorted(sum(groups, [])) == list(range(models * 6))
            if models == 2:
                assert all(len(g) == 2 for g in groups)
                assert same_model or all(g[0] < 6 <= g[1] for g in groups)  # one feature of each model
    f = torch.randn(200, 12, generator=torch.Generator().manual_seed(9))
    f[:, 1] = f[:, 0]  # model 0's units 0 and 1 are duplicates: zipped together only when same_model allows
    assert [0, 1] in greedy_groups(f, 2, True) and [0, 1] not in greedy_groups(f, 2, False)
