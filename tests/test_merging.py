"""Multi-model merging: C2M3 (cycle-consistent), MergeMany, and REPAIR."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.evaluation.cycles import cycle_error as group_cycle_error
from bench.evaluation.repair import goal_stats, repair, unit_stats
from methods import make_method
from methods.c2m3 import (
    _best_step,
    _Frames,
    _gradients,
    _lap,
    _objective,
    _sinkhorn,
    _to_universe,
    c2m3,
    cycle_error,
    pairwise,
    to_universe,
)
from methods.weight_matching import apply_matching, weight_matching
from tests.conftest import random_params
from zoos.data import load_images
from zoos.space import WeightSpace, cnn_zoo_space, mlp_space
from zoos.symmetry import random_action, select, sq_distance, stack
from zoos.tasks import classifier_inputs


class _Zoo:
    def __init__(self, space):
        self.space = space


def _method(space, spec):
    m = make_method(spec)
    m.setup(_Zoo(space), None)
    return m


def _single(params):
    return {k: v[0] for k, v in params.items()}


def _per_model(transform, n):
    """A batched GroupElement as per-model (perms, signs) lists, as `apply_matching` and `pairwise` take them."""
    perms = [{p: v[0] for p, v in transform.select(m).perms.items()} for m in range(n)]
    signs = [{p: v[0] for p, v in transform.select(m).scales.items()} for m in range(n)]
    return perms, signs


def _inputs(space, n=64, seed=0):
    return torch.randn(n, *space.input_shape, generator=torch.Generator().manual_seed(seed))


# ---- C2M3 internals ------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [mlp_space([5, 7, 6, 3]), cnn_zoo_space(channels=4)], ids=lambda s: s.name)
def test_c2m3_objective_and_gradient_match_the_pairwise_definition(space):
    """The O(N) universe form equals sum_{a<b} <W_a, P_a P_b^T . W_b>, and its gradient equals autograd's."""
    n = 4
    g = torch.Generator().manual_seed(0)
    W = {k: torch.randn(n, *s, generator=g, dtype=torch.float64) for k, s in space.shapes().items()}
    P = {p: _sinkhorn(torch.rand(n, k, k, generator=g, dtype=torch.float64)).requires_grad_()
         for p, k in space.perm_sizes.items()}
    pairs = 0
    for name in space.axes:
        u = _to_universe(space, name, W[name], P)
        pairs = pairs + sum((u[a] * u[b]).sum() for a in range(n) for b in range(a + 1, n))
    pairs.backward()
    soft = {p: v.detach() for p, v in P.items()}
    assert _objective(space, W, soft) == pytest.approx(pairs.item(), rel=1e-12)
    grads = _gradients(space, W, soft)
    for p in P:
        torch.testing.assert_close(grads[p], P[p].grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("space", [mlp_space([5, 7, 6, 3], "tanh"), cnn_zoo_space("tanh", channels=4)],
                         ids=lambda s: s.name)
def test_c2m3_frames_follow_frank_wolfe_exactly(space, signed):
    """The gather-updated universe frames, their gradient and the line-search polynomial equal the
    definitions recomputed from the dense P at every step (anchored and free)."""
    n = 3
    g = torch.Generator().manual_seed(1)
    W = {k: torch.randn(n, *s, generator=g, dtype=torch.float64) for k, s in space.shapes().items()}
    for first in (0, 1):
        P = {p: _sinkhorn(torch.rand(n, k, k, generator=g, dtype=torch.float64)) for p, k in space.perm_sizes.items()}
        if first:
            for p, k in space.perm_sizes.items():
                P[p][0] = torch.eye(k, dtype=torch.float64)
        frames = _Frames(space, W, P, first)
        for _ in range(6):
            for name in space.axes:
                torch.testing.assert_close(frames.U[name], _to_universe(space, name, W[name], P),
                                           rtol=1e-12, atol=1e-12)
            grads, reference = frames.gradients(space.perm_sizes), _gradients(space, W, P)
            vertices, dense = {}, {}
            for p, k in space.perm_sizes.items():
                torch.testing.assert_close(grads[p], reference[p][first:], rtol=1e-12, atol=1e-12)
                laps = [(np.arange(k), np.ones(k))] * first + [_lap(grads[p][m].numpy(), signed)
                                                              for m in range(n - first)]
                cols, signs = (torch.from_numpy(np.stack(x)) for x in zip(*laps, strict=True))
                vertices[p] = (cols, signs if signed else None)
                dense[p] = torch.zeros_like(P[p])
                for m in range(n):
                    dense[p][m, torch.arange(k), cols[m]] = signs[m]
            poly, moves = frames.segment(vertices)
            for t in (0.0, 0.37, 1.0):
                along = {p: P[p] + t * (dense[p] - P[p]) for p in P}
                assert poly(t) == pytest.approx(_objective(space, W, along), rel=1e-12, abs=1e-12)
            t = _best_step(poly, float(poly(0)))
            assert 0 <= t <= 1 and poly(t) >= max(poly(s) for s in np.linspace(0, 1, 101)) - 1e-9
            frames.step(t, moves)
            P = {p: P[p] + t * (dense[p] - P[p]) for p in P}


def test_c2m3_step_finds_the_interior_maximum_of_a_nearly_quadratic_objective():
    """Rounding-level cubic and quartic coefficients (as a quadratic objective produces) must not hide the
    genuine root of the derivative: the maximum at t = 0.625 was once missed for t = 1."""
    poly = np.polynomial.Polynomial([104.77, 7.795, -6.235, -7.1e-17, 4.4e-33])
    assert _best_step(poly, 104.77) == pytest.approx(7.795 / (2 * 6.235), rel=1e-9)


# ---- cycle consistency -----------------------------------------------------------------------------
@pytest.mark.parametrize("space", [mlp_space([6, 16, 16, 4]), cnn_zoo_space(channels=8)], ids=lambda s: s.name)
def test_c2m3_cycles_compose_to_identity_while_pairwise_rebasin_cycles_do_not(space):
    a, b, c = (random_params(space, seed=s) for s in (1, 2, 3))
    models = stack([a, b, c])
    x = _inputs(space)

    for spec in ("c2m3", "mergemany"):
        method = _method(space, spec)
        to_frame = method.merge(models).transform
        perms, signs = _per_model(to_frame, 3)
        maps = [pairwise(perms, signs, 0, 1), pairwise(perms, signs, 1, 2), pairwise(perms, signs, 2, 0)]
        assert cycle_error(maps) == 0.0
        # the same through group elements (what the merge protocol measures): a <- b = to_frame[a]^-1 . to_frame[b]
        elements = [to_frame.select(i).inverse().compose(to_frame.select(j)) for i, j in ((0, 1), (1, 2), (2, 0))]
        assert group_cycle_error(elements) == 0.0
        assert all(torch.equal(e.perms[p][0], m[0][p]) for e, m in zip(elements, maps, strict=True) for p in m[0])
        cycled = a
        for m in reversed(maps):  # a -> c's frame -> b's frame -> a's frame
            cycled = apply_matching(space, cycled, *m)
        assert sq_distance(cycled, a).item() == 0.0
        # the pairwise maps are exact symmetries: b brought into a's frame computes b's function
        moved = apply_matching(space, b, *maps[0])
        assert (space.forward(moved, x) - space.forward(b, x)).abs().max() < 1e-4

    # pairwise git re-basin on the same nets: a <- b, b <- c, c <- a chosen independently
    ab, bc, ca = [weight_matching(space, _single(p), _single(q))[:2] for p, q in ((a, b), (b, c), (c, a))]
    assert cycle_error([ab, bc, ca]) > 0.1
    rebasin = _method(space, "git-rebasin")
    elements = [rebasin.align(p, q).maps() for p, q in ((a, b), (b, c), (c, a))]
    assert group_cycle_error(elements) == cycle_error([ab, bc, ca])
    cycled = apply_matching(space, apply_matching(space, apply_matching(space, a, *ca), *bc), *ab)
    assert sq_distance(cycled, a).item() > 1.0


# ---- planted: permuted copies of one network merge back to it --------------------------------------
PLANTED = [("c2m3", "P", cnn_zoo_space()), ("c2m3", "P", mlp_space([6, 16, 12, 4])),
           ("mergemany", "P", cnn_zoo_space()), ("mergemany", "P", mlp_space([6, 16, 12, 4])),
           ("c2m3[signed=true]", "PS", mlp_space([6, 16, 12, 4], "tanh")),
           ("mergemany[signed=true]", "PS", cnn_zoo_space("tanh"))]


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("spec,action,space", PLANTED, ids=lambda v: getattr(v, "name", v))
def test_merging_permuted_copies_gives_back_the_original(spec, action, space, n):
    base = random_params(space, seed=3)
    models, _, _ = random_action(space, stack([base] * n), action, torch.Generator().manual_seed(n))
    method = _method(space, spec)
    res = method.merge(models)
    merged = res.merged
    x = _inputs(space)
    assert (space.forward(merged, x) - space.forward(base, x)).abs().max() < 1e-4
    # the merged weights are the original up to one global permutation (and signs)
    perms, signs, _ = weight_matching(space, _single(base), _single(merged), signed=action == "PS")
    assert sq_distance(base, apply_matching(space, merged, perms, signs)).item() < 1e-10
    # and every model sits on the same point of the orbit
    perms, signs = _per_model(res.transform, n)
    aligned = stack([apply_matching(space, select(models, m), perms[m], signs[m]) for m in range(n)])
    assert max((aligned[k] - aligned[k][:1]).abs().max().item() for k in aligned) == 0.0
    # `frame` holds exactly those models, and the batched element applies as the per-model maps do
    assert all(torch.equal(res.frame[k], aligned[k]) for k in aligned)
    assert all(torch.equal(res.transform.apply(space, models)[k], aligned[k]) for k in aligned)


@pytest.mark.parametrize("spec", ["c2m3", "mergemany"])
def test_align_brings_copies_onto_the_reference_and_preserves_functions(spec):
    space = cnn_zoo_space(channels=8)
    ref = random_params(space, seed=1)
    copies, _, _ = random_action(space, stack([ref] * 2), "P", torch.Generator().manual_seed(0))
    others = stack([copies, random_params(space, n=2, seed=5)])
    aligned = _method(space, spec).align(ref, others).others
    assert sq_distance(stack([ref, ref]), select(aligned, slice(0, 2))).max().item() < 1e-10
    x = _inputs(space)
    assert (space.forward(aligned, x) - space.forward(others, x)).abs().max() < 1e-4


def test_c2m3_result_is_reported():
    space = mlp_space([6, 16, 16, 4])
    models = random_params(space, n=4, seed=0)
    res = c2m3(space, models, max_iter=50)
    assert 1 <= res.iterations <= 50
    universe = to_universe(space, models, res.perms, res.signs)
    # the hard objective is the sum of pairwise inner products in the universe
    flat = space.flatten({k: v.double() for k, v in universe.items()})
    gram = flat @ flat.T
    assert res.objective_hard == pytest.approx(((gram.sum() - gram.trace()) / 2).item(), rel=1e-9)
    assert res.objective_hard > _objective(space, {k: v.double() for k, v in models.items()},
                                           {p: torch.eye(k, dtype=torch.float64).expand(4, k, k)
                                            for p, k in space.perm_sizes.items()})


# ---- REPAIR ----------------------------------------------------------------------------------------
def test_repair_of_an_endpoint_against_itself_is_a_no_op(space):
    net = random_params(space, seed=4)
    x = _inputs(space, 128)
    repaired = repair(space, net, net, x)
    assert (space.forward(repaired, x) - space.forward(net, x)).abs().max() < 1e-5


@pytest.mark.parametrize("space", [cnn_zoo_space(channels=8), mlp_space([6, 16, 12, 4], "tanh")], ids=lambda s: s.name)
def test_repaired_merge_has_the_goal_statistics(space):
    endpoints = random_params(space, n=3, seed=7)
    merged = {k: v.mean(0, keepdim=True) for k, v in endpoints.items()}
    x = _inputs(space, 128)
    goals = goal_stats(space, endpoints, x)
    assert set(goals) == set(range(len(space.layers) - 1))
    repaired = repair(space, merged, endpoints, x)
    h = x.unsqueeze(0)
    for i, layer in enumerate(space.layers[:-1]):
        z = WeightSpace.preactivation(layer, repaired[layer.weight], repaired[layer.bias], h)
        mean, std = unit_stats(z)
        before = None
        if i == 0:
            before = unit_stats(WeightSpace.preactivation(layer, merged[layer.weight], merged[layer.bias], h))[1]
        torch.testing.assert_close(mean[0], goals[i][0].float(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(std[0], goals[i][1].float(), rtol=1e-4, atol=1e-4)
        if before is not None:  # averaging shrank the first layer's spread (variance collapse); REPAIR undid it
            assert (before[0] < goals[i][1].float()).float().mean() > 0.5
        h = space.postactivation(layer, z)


def _train_mlps(space, x, y, n, steps, seed):
    g = torch.Generator().manual_seed(seed)
    p = {}
    for layer in space.layers:
        w = torch.randn(n, *layer.weight_shape(), generator=g) * (2 / layer.n_in) ** 0.5
        p[layer.weight] = w.requires_grad_()
        p[layer.bias] = torch.zeros(n, layer.n_out).requires_grad_()
    opt = torch.optim.Adam(p.values(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(space.forward(p, x[idx]).reshape(-1, 10), y[idx].repeat(n))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in p.items()}


def test_repair_lowers_the_loss_of_a_naive_merge_of_trained_networks():
    torch.set_num_threads(1)
    space = mlp_space([784, 128, 128, 10])
    images, labels = load_images("digits", "train")
    x = classifier_inputs(images).flatten(1)
    test_images, test_labels = load_images("digits", "test")
    xt = classifier_inputs(test_images).flatten(1)

    def loss(params):
        out = space.forward(params, xt)
        return F.cross_entropy(out.reshape(-1, 10), test_labels.repeat(out.shape[0]), reduction="none").mean().item()

    endpoints = _train_mlps(space, x, labels, 2, 300, seed=0)
    assert max(loss(select(endpoints, i)) for i in range(2)) < 0.4  # they did learn
    naive = {k: v.mean(0, keepdim=True) for k, v in endpoints.items()}
    repaired = repair(space, naive, endpoints, x[:512])
    assert loss(repaired) < 0.8 * loss(naive)


def test_merge_on_a_zoo_with_a_small_test_split_draws_no_group_across_splits():
    """A classifier zoo with 2 test networks: merges of 2 draw only those two; 3 and 5 are named gaps, never
    groups filled up with training networks (issue 32). An unknown split name is refused in one line."""
    import pandas as pd

    from bench.protocols import make_protocol
    from zoos.zoo import Zoo

    space = cnn_zoo_space("relu")
    meta = pd.DataFrame({"id": range(8), "split": ["train"] * 5 + ["val"] + ["test"] * 2})
    zoo = Zoo("small-test", space, random_params(space, n=8), meta, {"kind": "classifier", "dataset": "digits"})
    merge = make_protocol("merge", sizes=(2, 3, 5), n_groups=3)
    units = merge.units(zoo)
    test = set(zoo.indices("test"))
    assert units and all(set(u.nets) <= test for u in units)
    assert {u.name.split(" ")[0] for u in units} == {"n=2"}
    assert merge.gaps(zoo) == ["n=3: no group of 3 networks (split 'test' holds 2 network(s))",
                               "n=5: no group of 5 networks (split 'test' holds 2 network(s))"]
    with pytest.raises(ValueError, match="split: 'tset' is not one of train, val, test"):
        make_protocol("merge", split="tset").units(zoo)


def test_repair_images_keys_rows_only_away_from_the_value_earlier_rows_used():
    """`repair_images` came after merge rows were stored with REPAIR on 512 images: at 512 the key is the old one
    (those rows stay valid), any other value is part of the key; REPAIR then measures that many images."""
    from bench.protocols import make_protocol
    from zoos.tasks import STATISTICS_BATCH, ClassifierTask

    assert STATISTICS_BATCH == 512 and "repair_images" not in make_protocol("merge").params()
    assert make_protocol("merge", repair_images=512).params() == make_protocol("merge").params()
    assert make_protocol("merge", repair_images=64).params()["repair_images"] == 64
    with pytest.raises(ValueError, match="repair_images"):
        make_protocol("merge", repair_images=1)
    task = ClassifierTask(cnn_zoo_space("relu"), dataset="digits", n_eval=64)
    small, default = task.statistics_inputs(64), task.statistics_inputs()
    assert small.shape[0] == 64 and default.shape[0] == STATISTICS_BATCH
    assert task.statistics_inputs(64) is small  # drawn once per size, kept
