"""Protocols on real computations: orbit recovery, pairs of fits, merge rows and cycle errors."""

import pandas as pd
import pytest
import torch

from bench.protocols import make_protocol
from tests.conftest import random_params, run_protocol
from zoos.space import cnn_zoo_space
from zoos.zoo import Zoo, load_zoo


@pytest.fixture(scope="module")
def cnn_zoo():
    space = cnn_zoo_space("tanh")
    params = random_params(space, n=8, seed=0, scale=0.4)
    meta = pd.DataFrame({"id": range(8), "split": ["test"] * 8})
    return Zoo("random-tanh-cnn", space, params, meta, {"kind": "classifier", "dataset": "digits", "n_eval": 200})




def test_orbit_recovery_separates_signed_from_plain_matching(cnn_zoo):
    orbit = make_protocol("orbit", n_nets=2, actions=("P", "PS"), eps=(0.0, 0.01), lambdas=5)
    signed = run_protocol("sign-rebasin", cnn_zoo, orbit)
    plain = run_protocol("git-rebasin", cnn_zoo, orbit)
    assert (signed.recovered == 1).all()  # the planted signed permutation, noise or not
    assert (plain[plain.action == "P"].recovered == 1).all()
    assert (plain[plain.action == "PS"].recovered == 0).all()
    assert (signed[signed.eps == 0].loss_barrier.abs() < 1e-6).all()
    assert (signed.deviation < 1e-4).all() and (plain.deviation < 1e-4).all()


def test_pairs_are_independent_fits_of_one_image(tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    units = make_protocol("pairs", n_pairs=5).units(zoo)
    assert units and all(zoo.meta.target[u.a] == zoo.meta.target[u.b] and u.a != u.b for u in units)
    assert all(zoo.meta.split[u.a] == "test" for u in units)


def test_merge_rows_and_cycle_consistency(cnn_zoo):
    merge = make_protocol("merge", sizes=(3,), n_groups=1, max_triples=1)
    c2m3 = run_protocol("c2m3[max_iter=30]", cnn_zoo, merge)
    pairwise = run_protocol("git-rebasin", cnn_zoo, merge)
    assert c2m3.cycle_error.iloc[0] == 0.0  # universe maps compose to the identity by construction
    assert pairwise.cycle_error.iloc[0] > 0.0  # pairwise matchings of unrelated nets do not
    for rows in (c2m3, pairwise):
        assert rows.loss_gap.iloc[0] == pytest.approx(rows.loss_merged.iloc[0] - rows.loss_endpoints.iloc[0])
        assert torch.isfinite(torch.tensor(rows.loss_merged_repair.to_numpy())).all()


def test_merge_of_permuted_copies_is_the_network(cnn_zoo):
    from zoos.symmetry import random_action, select, stack

    base = select(cnn_zoo.params, 0)
    copies = stack([base] + [random_action(cnn_zoo.space, base, "P", torch.Generator().manual_seed(i))[0]
                             for i in range(3)])
    zoo = Zoo("copies", cnn_zoo.space, copies, pd.DataFrame({"id": range(4), "split": ["test"] * 4}), cnn_zoo.task)
    rows = run_protocol("git-rebasin", zoo, make_protocol("merge", sizes=(4,), n_groups=1))
    assert rows.loss_gap.abs().iloc[0] < 1e-5 and rows.cycle_error.iloc[0] == 0.0
