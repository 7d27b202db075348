"""The device flag on a CPU: every device-aware path, asked for `device="cpu"` explicitly, is the path
that runs without the flag (same bits), and CUDA where torch has none is refused in one line. The
accelerator itself is measured by `bench perf --suites gpu` (results/perf_gpu.md), never in CI."""

from __future__ import annotations

import pytest
import torch

from bench.execution.plan import _on_device, method_specs
from bench.execution.presets import PRESETS, ZooRecipe
from bench.execution.zoo_cache import recipe_id
from methods.sinkhorn import SinkhornRebasin
from zoos.devices import DeviceError, resolve_device
from zoos.inr import dwsnets_init, fit_inrs
from zoos.space import siren_space
from zoos.tasks import InrTask

NO_CUDA = not torch.cuda.is_available()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")
    if NO_CUDA:
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def _images(n):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 28, 28, generator=g)


def test_fitting_and_scoring_on_an_explicit_cpu_are_the_default_path():
    space = siren_space()
    init, images = dwsnets_init(space, list(range(6))), _images(6)
    plain, mse = fit_inrs(space, init, images, steps=20)
    on_cpu, mse_cpu = fit_inrs(space, init, images, steps=20, device="cpu")
    assert torch.equal(mse, mse_cpu) and all(torch.equal(plain[k], on_cpu[k]) for k in plain)
    target = torch.arange(6)
    default = InrTask(space, images).evaluate(plain, target)
    moved = InrTask(space, images).to("cpu").evaluate(plain, target)
    assert all(torch.equal(default[k], moved[k]) for k in default)


@pytest.mark.parametrize("objective", ["l2", "mid"])
def test_sinkhorn_on_an_explicit_cpu_is_the_default_path(objective):
    space = siren_space(8)
    task = InrTask(space, _images(1))
    ref, others = dwsnets_init(space, [0]), dwsnets_init(space, [1, 2])
    results = []
    for extra in ({}, {"device": "cpu"}):
        method = SinkhornRebasin(objective=objective, steps=12, **extra)
        method.space, method.task = space, task
        results.append(method.align(ref, others, target=0))
    a, b = results
    assert all(torch.equal(a.transform.perms[p], b.transform.perms[p]) for p in a.transform.perms)
    assert a.info["objective"] == b.info["objective"]


def test_device_reaches_device_aware_methods_only():
    assert _on_device("sinkhorn-rebasin", "cuda") == "sinkhorn-rebasin[device=cuda]"
    assert _on_device("scalegmn-ae[hidden=8]", "cuda") == "scalegmn-ae[device=cuda,hidden=8]"
    assert _on_device("scalegmn-ae[device=cpu]", "cuda") == "scalegmn-ae[device=cpu]"  # the spec says
    assert _on_device("git-rebasin", "cuda") == "git-rebasin"  # LAP on the CPU: no device hyperparameter
    bench = PRESETS["smoke"]
    assert method_specs(bench, None, "cpu") == method_specs(bench, None)  # the CPU changes no spec, no key


def test_a_zoo_fitted_on_an_accelerator_is_cached_apart():
    inr, cnn = ZooRecipe("inr", dict(n_images=4)), ZooRecipe("cnn", dict(n_nets=4))
    assert recipe_id(inr, "digits", "cpu") == recipe_id(inr, "digits")
    assert recipe_id(inr, "digits", "cuda") != recipe_id(inr, "digits")
    assert recipe_id(cnn, "digits", "cuda") == recipe_id(cnn, "digits")  # CNN zoos train on the CPU


def test_a_method_version_keys_its_units():
    from methods import METHODS
    from methods.scalegmn_ae import VERSION

    assert METHODS["naive"].key_parts() == {}  # version 1: keys of every existing row stay as they are
    assert METHODS["scalegmn-ae"].key_parts() == {"method_version": VERSION} and VERSION >= 2
    assert METHODS["gnn-ae"].key_parts() == METHODS["scalegmn-ae"].key_parts()


def test_reports_count_only_the_newest_code_of_each_method():
    import pandas as pd

    from bench.store.results import current_code

    table = pd.DataFrame({"method": ["ae", "ae", "ae", "naive"], "unit": ["u1", "u2", "u1", "u1"],
                          "method_version": [None, None, 2, None]})
    kept = current_code(table)
    assert kept.method.tolist() == ["ae", "naive"] and kept.method_version.fillna(1).tolist() == [2, 1]
    assert current_code(table.drop(columns="method_version")).equals(table.drop(columns="method_version"))


def test_a_unit_measured_twice_counts_once_with_its_newest_row():
    import pandas as pd

    from bench.store.results import current_code

    base = {"zoo_hash": "z", "protocol": "pairs", "variant": "naive", "method": "naive", "seed": 0}
    table = pd.DataFrame([
        {**base, "unit": "pair=1-2", "lambdas": 7, "time": pd.Timestamp("2026-01-01"), "loss_excess": 1.0},
        {**base, "unit": "pair=3-4", "lambdas": 7, "time": pd.Timestamp("2026-01-01"), "loss_excess": 2.0},
        {**base, "unit": "pair=1-2", "lambdas": 25, "time": pd.Timestamp("2026-02-01"), "loss_excess": 1.5},
        {**base, "unit": "pair=1-2", "seed": 1, "time": pd.Timestamp("2026-01-01"), "loss_excess": 9.0},
    ])
    kept = current_code(table)
    got = sorted(zip(kept.unit, kept.seed, kept.loss_excess, strict=True))
    assert got == [("pair=1-2", 0, 1.5), ("pair=1-2", 1, 9.0), ("pair=3-4", 0, 2.0)]


def test_the_gpu_script_runs_its_cases_on_the_cpu(tmp_path):
    from bench.perf import gpu

    table = gpu.run(tmp_path, device="cpu", repeats=1, threads=1, scale=0.02)
    assert set(table.case) == {"inr-fit", "evaluation", "sinkhorn-l2", "sinkhorn-mid", "ae-train fp32", "ae-train bf16"}
    assert (table.device == "cpu").all() and (table.per_unit > 0).all()  # no accelerator here: the CPU side only
    text = (tmp_path / "perf_gpu.md").read_text()
    assert "| inr-fit |" in text and "| ae-train bf16 |" in text
