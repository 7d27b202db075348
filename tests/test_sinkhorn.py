"""Sinkhorn re-basin: exactness, planted-permutation recovery, the Sinkhorn operator, task objectives."""

import math

import pytest
import torch

from methods import make_method
from methods.sinkhorn import SinkhornRebasin, sinkhorn, soft_permute
from zoos.data import load_images
from zoos.space import cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import apply_perms, random_action, random_perms, sq_distance
from zoos.tasks import ClassifierTask, InrTask


def random_params(space, n, generator, sine_init=True):
    """n networks: DWSNets SIREN init for sine layers (U(+-sqrt(6/in)/w0)), PyTorch's default otherwise."""
    params = {}
    for layer in space.layers:
        fan_in = layer.n_in * layer.kernel * layer.kernel
        if layer.act == "sin" and sine_init:
            bound = math.sqrt(6 / fan_in) / space.w0
        else:
            bound = 1 / math.sqrt(fan_in)
        params[layer.weight] = (torch.rand(n, *layer.weight_shape(), generator=generator) * 2 - 1) * bound
        params[layer.bias] = (torch.rand(n, layer.n_out, generator=generator) * 2 - 1) * bound
    return params


def aligner(space, task=None, **hyper):
    method = SinkhornRebasin(seed=0, **hyper)
    method.space, method.task = space, task
    return method


def inputs(space, generator, batch=16):
    return torch.randn(batch, *space.input_shape, generator=generator)


# ---- the Sinkhorn operator and soft permutations ---------------------------------------------------
def test_sinkhorn_doubly_stochastic_and_differentiable():
    g = torch.Generator().manual_seed(0)
    x = (2 * torch.randn(4, 2, 7, 7, generator=g)).requires_grad_()
    p = sinkhorn(x, tau=1.0, n_iter=50)
    assert (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(4, 2, 7), atol=1e-4)
    assert torch.allclose(p.sum(-2), torch.ones(4, 2, 7), atol=1e-4)
    # gradients flow through the unrolled iterations and agree with finite differences
    w = torch.randn(7, 7, generator=g)
    (p * w).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    xd = torch.randn(2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sinkhorn(t, 0.7, 10), (xd,))
    # a large margin with small tau gives (nearly) the permutation itself
    perm = torch.randperm(6, generator=g)
    hard = sinkhorn(10 * torch.nn.functional.one_hot(perm, 6).float(), tau=0.1, n_iter=20)
    assert torch.equal(hard.argmax(-1), perm) and hard.max(-1).values.min() > 0.999


@pytest.mark.parametrize("space", [siren_space(8), mlp_space([8, 16, 16, 4]), cnn_zoo_space(channels=4)],
                         ids=lambda s: s.name)
def test_soft_permute_with_one_hot_matrices_is_apply_perms(space):
    g = torch.Generator().manual_seed(1)
    params = random_params(space, 3, g)
    perms = random_perms(space, 3, g)
    one_hot = {p: torch.nn.functional.one_hot(v, v.shape[-1]).float() for p, v in perms.items()}
    expected = apply_perms(space, params, perms)
    batched = soft_permute(space, params, one_hot)  # [N, n, n] matrices, one per network
    single = soft_permute(space, {k: v[1] for k, v in params.items()}, {p: m[1] for p, m in one_hot.items()})
    for k in params:
        assert torch.allclose(batched[k], expected[k], atol=1e-6), k
        assert torch.allclose(single[k], expected[k][1], atol=1e-6), k


# ---- exactness --------------------------------------------------------------------------------------
def _function_preserved(space, method, target=None):
    g = torch.Generator().manual_seed(2)
    ref, others = random_params(space, 1, g), random_params(space, 2, g)
    res = method.align(ref, others, target)
    aligned = res.others
    x = inputs(space, g)
    before, after = space.forward(others, x), space.forward(aligned, x)
    deviation = ((after - before).abs().amax() / before.abs().amax()).item()
    assert deviation < 1e-4
    # and it did move: the aligned networks are not the inputs
    assert (sq_distance(aligned, others) > 0).all()
    return res


def test_function_preserved_siren_mid():
    space = siren_space()
    images, _ = load_images("digits", "test")
    res = _function_preserved(space, aligner(space, InrTask(space, images[:4]), objective="mid", steps=20),
                              target=2)
    assert res.info["steps"] == 20 and math.isfinite(res.info["objective"])


def test_function_preserved_mlp_l2_weight_matching_init():
    space = mlp_space([8, 16, 16, 4])
    _function_preserved(space, aligner(space, objective="l2", init="weight-matching", steps=20))


def test_function_preserved_cnn_rnd():
    space = cnn_zoo_space()
    task = ClassifierTask(space, dataset="digits", n_eval=200)
    _function_preserved(space, aligner(space, task, objective="rnd", steps=10, batch=32))


# ---- planted permutations ------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [siren_space(), mlp_space([8, 16, 16, 4])], ids=lambda s: s.name)
def test_planted_permutation_recovered_with_defaults(space):
    """B = random permutation of A: the data-free L2 objective with default hyperparameters finds it."""
    g = torch.Generator().manual_seed(3)
    for seed in range(4):
        a = random_params(space, 1, g)
        copies = {k: v.expand(3, *v.shape[1:]) for k, v in a.items()}
        b, _, _ = random_action(space, copies, "P", g)  # three planted pairs, aligned in one batch
        method = make_method("sinkhorn-rebasin[objective=l2]", seed=seed)
        method.space = space
        res = method.align(a, b)
        aligned = res.others
        assert (sq_distance(aligned, a) <= 1e-8 * sq_distance(b, a)).all(), seed
        assert res.info["objective"] < 1e-8 * sq_distance(b, a).mean()


def test_weight_matching_init_starts_from_the_matching():
    """With init=weight-matching the planted permutation is the starting point: even 10 steps keep it."""
    space = mlp_space([8, 16, 16, 4])
    g = torch.Generator().manual_seed(4)
    a = random_params(space, 1, g)
    b, _, _ = random_action(space, a, "P", g)
    aligned = aligner(space, objective="l2", init="weight-matching", steps=10).align(a, b).others
    assert sq_distance(aligned, a).item() < 1e-10


# ---- task objectives -----------------------------------------------------------------------------------
def test_mid_objective_decreases_on_tiny_classifier():
    torch.manual_seed(0)
    space = cnn_zoo_space(channels=6)
    task = ClassifierTask(space, dataset="digits", n_eval=200)

    def train(seed):
        params = {k: v.requires_grad_() for k, v in
                  random_params(space, 1, torch.Generator().manual_seed(seed)).items()}
        opt = torch.optim.Adam(params.values(), lr=1e-2)
        for _ in range(80):
            loss = task.task_loss(params, n=128).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return {k: v.detach() for k, v in params.items()}

    a, b = train(0), train(1)
    method = aligner(space, task, objective="mid", steps=30, batch=128)
    res = method.align(a, b)
    aligned, history = res.others, res.info["history"]
    assert len(history) == 30 and history[-1] < 0.8 * history[0]

    def midpoint(x):
        return task.task_loss({k: (a[k] + x[k]) / 2 for k in a}, n=128).item()

    # the hard (exact) alignment beats naive averaging, and info reports its midpoint loss
    assert midpoint(aligned) < midpoint(b)
    assert res.info["objective"] == pytest.approx(midpoint(aligned), rel=1e-4)


# ---- configuration -------------------------------------------------------------------------------------
def test_hyperparameters_and_errors():
    method = make_method("sinkhorn-rebasin[tau=0.5,n_iter=30,steps=50,lr=0.05,objective=rnd,init=weight-matching]")
    assert method.hp == {"tau": 0.5, "n_iter": 30, "steps": 50, "lr": 0.05, "objective": "rnd",
                         "init": "weight-matching", "batch": 512, "device": "cpu"}
    assert make_method("sinkhorn-rebasin").hp["objective"] == "mid"
    with pytest.raises(ValueError):
        make_method("sinkhorn-rebasin[objective=kl]")
    with pytest.raises(ValueError):
        make_method("sinkhorn-rebasin[tau=0]")
    space = siren_space(8)
    g = torch.Generator().manual_seed(5)
    a, b = random_params(space, 1, g), random_params(space, 1, g)
    with pytest.raises(ValueError, match="needs a task"):
        aligner(space, objective="mid").align(a, b)
    images, _ = load_images("digits", "test")
    with pytest.raises(ValueError, match="target"):
        aligner(space, InrTask(space, images[:2]), objective="mid").align(a, b)
