"""Git Re-Basin's straight-through estimator (`ste`): exact, better than naive averaging on a planted pair,
seeded, and specified like every other method."""

import pytest
import torch

from bench.evaluation.curves import curve_summary, curves, deviation
from methods import format_spec, make_method, normalise_spec
from methods.ste import StraightThrough
from tests.conftest import random_params
from zoos.data import load_images
from zoos.space import cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import add_noise, random_action, sq_distance, stack
from zoos.tasks import ClassifierTask, InrTask

MLP = mlp_space([784, 32, 32, 10])
FAST = "ste[steps=12,batch=128]"


class _Zoo:
    """What `Aligner.setup` reads."""

    def __init__(self, space, kind):
        self.space, self.task = space, {"kind": kind}


def _method(spec, space, task, seed=0):
    method = make_method(spec, seed=seed)
    method.setup(_Zoo(space, task.kind), task)
    return method


def _trained(task, seed, steps=150):
    """An MLP fitted for a few Adam steps on the digits training images (enough for a real barrier)."""
    params = {k: v.requires_grad_() for k, v in random_params(MLP, seed=seed, scale=0.05).items()}
    x, y = task.train_batch(1024, seed=seed)
    opt = torch.optim.Adam(params.values(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (128,), generator=g)
        loss = torch.nn.functional.cross_entropy(MLP.forward(params, x[idx])[0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


@pytest.fixture(scope="module")
def digits():
    task = ClassifierTask(MLP, "digits", n_eval=300)
    a, b = _trained(task, 1), _trained(task, 2)
    planted, _, _ = random_action(MLP, a, "P", torch.Generator().manual_seed(3))
    planted = add_noise(planted, 2e-3, torch.Generator().manual_seed(4))
    return task, a, b, planted


def _exact(method, a, others, target=None):
    """The alignment's networks compute `others`' functions, and its transform is what took them there."""
    out = method.align(a, others, target)
    task = method.task
    assert (deviation(task, out.others, others) < 1e-5).all()
    moved = out.transform.apply(method.space, others)
    assert all(torch.equal(moved[k], out.others[k]) for k in others)
    for p, v in out.transform.perms.items():  # hard permutations, one per network
        assert v.shape == (len(v), method.space.perm_sizes[p])
        assert (v.sort(-1).values == torch.arange(v.shape[1])).all()
    assert out.ref is a and out.ref_transform is None
    return out


def test_exact_on_a_trained_mlp_classifier(digits):
    task, a, b, planted = digits
    others = stack([b, planted])
    out = _exact(_method(FAST, MLP, task), a, others)
    assert (sq_distance(out.others, others) > 0).all()  # it moved both
    assert (sq_distance(a, out.others) < sq_distance(a, others)).all()  # ... towards A
    assert out.info["objective"] <= out.info["first_objective"] and out.info["steps"] == 12


def test_exact_on_a_cnn_and_an_inr():
    cnn = cnn_zoo_space("relu", channels=4)
    _exact(_method("ste[steps=4,batch=64]", cnn, ClassifierTask(cnn, "digits", n_eval=100)),
           random_params(cnn, seed=5), random_params(cnn, 2, seed=6))
    siren = siren_space(16)
    images, _ = load_images("digits", "test")
    out = _exact(_method("ste[steps=8,lr=0.05]", siren, InrTask(siren, images[:3])),
                 random_params(siren, seed=7), random_params(siren, 1, seed=8), target=2)
    assert out.info["objective"] < float("inf")


def test_inr_objective_is_the_kept_permutations_midpoint_loss():
    """On an INR every step sees the whole image, so the reported objective is the returned pair's exact
    midpoint loss, and the kept permutation is the best of the run; here the proxy's training found a better
    one than the first projection (weight matching of B to A)."""
    siren = siren_space(16)
    images, _ = load_images("digits", "test")
    task = InrTask(siren, images[:3])
    a, b = random_params(siren, seed=9), random_params(siren, 1, seed=10)
    out = _method("ste[steps=20,lr=0.05]", siren, task).align(a, b, 1)
    mid = task.task_loss({k: (a[k] + out.others[k]) / 2 for k in a}, torch.tensor([1])).item()
    assert mid == pytest.approx(out.info["objective"], rel=1e-5)
    assert out.info["objective"] < out.info["first_objective"] and out.info["best_step"] > 1


def test_one_step_is_weight_matching(digits):
    """The proxy starts at A, so the first projection is git-rebasin's matching of B to A (same seed, init)."""
    task, a, b, _ = digits
    for init in ("forward", "identity"):
        ste = _method(f"ste[steps=1,batch=64,init={init}]", MLP, task).align(a, b)
        wm = make_method(f"git-rebasin[init={init}]")
        wm.space = MLP
        rebasin = wm.align(a, b)
        assert all(torch.equal(ste.transform.perms[p], rebasin.transform.perms[p]) for p in MLP.perm_sizes)


def test_planted_pair_barrier_below_naive_averaging(digits):
    task, a, _, planted = digits
    lambdas = torch.linspace(0, 1, 9)
    out = _method(FAST, MLP, task).align(a, planted)
    aligned = curve_summary(task, curves(task, a, out.others, lambdas), lambdas)
    naive = curve_summary(task, curves(task, a, planted, lambdas), lambdas)
    assert naive["loss_barrier"].item() > 0.05  # the unaligned pair has a real barrier
    assert aligned["loss_barrier"].item() < 0.2 * naive["loss_barrier"].item()
    assert aligned["loss_mid"].item() < naive["loss_mid"].item()


def test_deterministic_for_a_seed(digits):
    task, a, b, planted = digits
    others = stack([b, planted])
    spec = "ste[steps=6,batch=64,lr=0.5]"  # a large step: the permutation changes along the run
    first, again = (_method(spec, MLP, task, seed=3).align(a, others) for _ in range(2))
    assert all(torch.equal(first.transform.perms[p], again.transform.perms[p]) for p in MLP.perm_sizes)
    assert first.info == again.info
    assert all(torch.equal(first.others[k], again.others[k]) for k in a)
    start = _method("ste[steps=1,batch=64]", MLP, task, seed=3).align(a, others)  # the first projection
    assert any(not torch.equal(first.transform.perms[p], start.transform.perms[p]) for p in MLP.perm_sizes)


def test_spec_round_trip_and_errors():
    spec = "ste[batch=64,init=identity,lr=0.05,max_sweeps=3,momentum=0.5,steps=7]"
    method = make_method(spec)
    assert isinstance(method, StraightThrough) and method.exact and method.needs == "labels"
    assert method.hp == {"steps": 7, "lr": 0.05, "momentum": 0.5, "batch": 64, "max_sweeps": 3, "init": "identity"}
    assert format_spec("ste", method.hp) == spec == normalise_spec("ste[ steps=+7,lr=5e-2,batch=64,momentum=0.5,"
                                                                    "max_sweeps=3,init=identity ]")
    assert make_method(format_spec("ste", method.hp)).hp == method.hp
    defaults = make_method("ste").hp  # the reference's optimiser, batch and inner matching budget
    assert (defaults["lr"], defaults["momentum"], defaults["batch"], defaults["max_sweeps"]) == (1e-2, 0.9, 1000, 100)
    for bad in ("ste[init=random]", "ste[steps=0]", "ste[lr=nan]", "ste[tau=1]"):
        with pytest.raises(ValueError):
            make_method(bad)
    siren = siren_space(8)
    a, b = random_params(siren, seed=1), random_params(siren, seed=2)
    bare = make_method("ste[steps=2]")
    bare.space = siren
    with pytest.raises(ValueError, match="needs a task"):
        bare.align(a, b)
    images, _ = load_images("digits", "test")
    with pytest.raises(ValueError, match="target"):
        _method("ste[steps=2]", siren, InrTask(siren, images[:2])).align(a, b)
