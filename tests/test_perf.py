"""`bench perf` and the fast paths it measures: smoke runs of every suite at tiny sizes, and checks that
each fast path computes what the plain one does (no timing assertions: the box is shared)."""

import json
import sys
import time

import pandas as pd
import pytest
import torch

import methods.sinkhorn as sinkhorn_module
from bench.cli import main
from bench.perf import suites
from bench.perf.baseline import BASELINE_METHODS, checkout
from bench.perf.figure import perf_figure
from bench.perf.markdown import perf_markdown
from bench.perf.peer_runs import PEERS_DIR, peer_available, run_peer, write_job
from bench.perf.suites.ae_train import AE_CASES, autoencoder_training
from bench.perf.suites.alignment import alignment, make_pair
from bench.perf.suites.autoencoder import autoencoder
from bench.perf.suites.evaluation import evaluation
from bench.perf.suites.inr_fit import inr_fitting
from bench.perf.suites.lap_share import LAP_SHARE_METHODS, lap_share
from bench.perf.suites.memory import _peak_rss_during, memory, memory_case
from bench.perf.suites.zoo_fit import zoo_fitting
from bench.perf.timing import side_by_side, stats
from bench.store.provenance import environment
from methods.sinkhorn import _ScaledSinkhorn, log_sinkhorn, sinkhorn
from tests.conftest import random_params
from zoos import inr
from zoos.data import load_images
from zoos.inr import dwsnets_init, fit_inrs, fit_inrs_autograd
from zoos.space import mlp_space, siren_space
from zoos.tasks import InrTask, grid_forward, inr_grid


# ---- fast paths compute the same thing ------------------------------------------------------------
@pytest.mark.parametrize("chunk_floats", [1, 1 << 18], ids=["one-net-chunks", "default-chunks"])
def test_hand_written_siren_fitting_equals_autograd_reference(monkeypatch, chunk_floats):
    monkeypatch.setattr(inr._SirenKernel, "CACHE_FLOATS", chunk_floats)
    space = siren_space(8, 3)
    images = load_images("digits")[0][:3]
    init = dwsnets_init(space, [1, 2, 3])
    fast, mse = fit_inrs(space, init, images, steps=15)
    ref, mse_ref = fit_inrs_autograd(space, init, images, steps=15)
    for k in ref:
        assert torch.allclose(fast[k], ref[k], atol=2e-5), k
    assert torch.allclose(mse, mse_ref, rtol=1e-4)
    assert (mse < ((images.flatten(1) - 0.5) ** 2).mean(1)).all()  # it did fit


def test_fitting_in_worker_processes_gives_the_same_networks_bit_for_bit():
    space = siren_space(8, 2)
    images = load_images("digits")[0][:5]
    init = dwsnets_init(space, list(range(5)))
    one, mse_one = fit_inrs(space, init, images, steps=6)
    ticks = []
    bar = type("Bar", (), {"update": lambda self, n=1: ticks.append(n)})()
    split, mse_split = fit_inrs(space, init, images, steps=6, workers=2, progress=bar)
    assert all(torch.equal(one[k], split[k]) for k in one) and torch.equal(mse_one, mse_split)
    assert sum(ticks) == 6  # the bar counts the steps of the slowest part


def test_a_failing_fitting_worker_is_reported_in_one_line(monkeypatch):
    import os

    space = siren_space(8, 2)
    images, init = load_images("digits")[0][:4], dwsnets_init(space, list(range(4)))
    monkeypatch.setattr(inr, "_fit_part", lambda *args: os._exit(3))
    with pytest.raises(RuntimeError, match="worker process died \\(exit code 3"):
        fit_inrs(space, init, images, steps=2, workers=2)

    def failing(space, init, images, steps, lr, queue, index):
        queue.put(("error", index, "ValueError: a bad image"))

    monkeypatch.setattr(inr, "_fit_part", failing)
    with pytest.raises(RuntimeError, match="INR fitting worker: ValueError: a bad image"):
        fit_inrs(space, init, images, steps=2, workers=2)


def test_fitting_other_spaces_falls_back_to_autograd():
    space = mlp_space([2, 6, 1], "relu")
    assert not inr._SirenKernel.supports(space)
    params, mse = fit_inrs(space, random_params(space, 2, seed=1), load_images("digits")[0][:2], steps=5)
    assert params["seq.0.weight"].shape == (2, 6, 2) and torch.isfinite(mse).all()


def test_grid_forward_and_chunked_evaluation_match_the_plain_forward():
    space = siren_space(8, 3)
    params = dwsnets_init(space, list(range(6)))
    assert torch.allclose(grid_forward(space, params, 28), space.forward(params, inr_grid(28)), atol=1e-5)
    task = InrTask(space, load_images("digits")[0][:6])
    target = torch.arange(6)
    batched = task.evaluate(params, target)
    for i in range(6):
        one = task.evaluate({k: v[i : i + 1] for k, v in params.items()}, target[i : i + 1])
        assert torch.allclose(batched["loss"][i], one["loss"][0], rtol=1e-4)


def test_scaled_sinkhorn_is_the_log_domain_sinkhorn(monkeypatch):
    g = torch.Generator().manual_seed(0)
    xd = torch.randn(2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _ScaledSinkhorn.apply(t, 0.7, 10), (xd,))
    monkeypatch.setattr(sinkhorn_module, "SCALED_FROM", 1)
    x = (2 * torch.randn(3, 2, 9, 9, generator=g)).requires_grad_()
    w = torch.randn(3, 2, 9, 9, generator=g)
    p = sinkhorn(x, 0.5, 15)
    (p * w).sum().backward()
    grad, x.grad = x.grad.clone(), None
    q = log_sinkhorn(x, 0.5, 15).exp()
    (q * w).sum().backward()
    assert torch.allclose(p, q, atol=1e-5) and torch.allclose(grad, x.grad, atol=1e-4)
    # a column far below every row maximum underflows in the scaling form: the log domain takes over
    far = torch.zeros(1, 5, 5)
    far[..., 2] = -200.0
    assert torch.allclose(sinkhorn(far, 0.5, 30), log_sinkhorn(far, 0.5, 30).exp(), atol=1e-6)
    assert torch.allclose(sinkhorn(far, 0.5, 30).sum(-2), torch.ones(1, 5), atol=1e-5)


# ---- the perf harness ---------------------------------------------------------------------------------
def test_side_by_side_interleaves_and_reports_cpu_and_wall():
    calls = []
    times = side_by_side({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]  # warm-up, then interleaved repetitions
    s = stats(times["a"])
    assert s["repeats"] == 2 and s["min_s"] <= s["median_s"] <= s["max_s"]


def test_suites_at_tiny_sizes_and_report(tmp_path):
    rows = inr_fitting(n=4, steps=2, repeats=1, singles=2)
    zoo = zoo_fitting(n=4, steps=2, repeats=1)
    assert [r["case"] for r in zoo] == ["2 worker processes", "1 process, 2 threads"]
    assert all(r["per_item_s"] > 0 for r in zoo) and torch.get_num_threads() == 1  # threads put back
    rows += zoo
    rows += evaluation(pairs=3, points=3, repeats=1)
    align = alignment(specs=(("mlp", 2), ("cnn", 3)), widths=(4, 8), repeats=1,
                           methods=("git-rebasin", "sign-rebasin", "sinkhorn-l2", "sinkhorn-mid"), fit_steps=5)
    rows += align + autoencoder(widths=(4,), networks=2, repeats=1)
    ae = autoencoder_training(hidden=4, n_layers=1, batches=(3,), repeats=1)
    assert [r["case"] for r in ae] == [c[0] for c in AE_CASES] and all(r["per_item_s"] > 0 for r in ae)
    rows += ae
    cases = {(r["spec"], r["width"], r["case"]) for r in align}
    assert ("mlp", 8, "sinkhorn-mid") in cases and ("cnn", 8, "git-rebasin") in cases
    assert ("cnn", 8, "sinkhorn-mid") not in cases  # task objectives only where a task is cheap (INRs)
    for r in align:  # exact methods: the aligned network computes the same function
        assert r["deviation_after"] < 1e-4, r
        assert (r["barrier_after"] is not None) == (r["spec"] == "mlp")
    table = pd.DataFrame(rows).assign(**environment(), load_min=0.0, load_max=1.0)
    text = perf_markdown(table)
    assert "## alignment per pair vs width" in text and "## targets" in text and "| batched |" in text
    assert "autoencoder training throughput, dense bf16, chunked vs before" in text and "## ae-train" in text
    assert "## zoo-fit (WALL seconds" in text and "INR zoo fitting on 2 cores" in text
    assert perf_figure(table, tmp_path / "perf.png").stat().st_size > 0


def test_peer_protocol_with_an_identity_peer(tmp_path):
    """A stand-in peer (returns B unchanged) exercises job writing, the subprocess, the budget and reading back."""
    script = tmp_path / "identity_peer.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(PEERS_DIR)!r})\n"
                      "from _common import load_pair, run\n"
                      "run(lambda spec, settings, case, job_dir: (load_pair(job_dir, case)[1], {}))\n")
    pairs = {f"w{w}": make_pair("mlp", w, 2, fit_steps=2) for w in (4, 6)}
    write_job(tmp_path / "job", pairs, {"budget_s": -1.0})  # every case is over budget
    got = run_peer(sys.executable, str(script), tmp_path / "job", tmp_path / "out")
    assert set(got) == {"w4", "w6"} and got["w6"] == {"skipped": True} and got["w4"]["cpu_seconds"] >= 0
    from safetensors.torch import load_file

    back = load_file(str(tmp_path / "out" / "w4.safetensors"))
    assert all(torch.equal(back[k], pairs["w4"][2][k][0]) for k in back)
    assert json.loads((tmp_path / "job" / "job.json").read_text())["cases"][0]["data"] == "w4.data.safetensors"
    assert "_error" in run_peer(sys.executable, str(tmp_path / "missing.py"), tmp_path / "job", tmp_path / "o2")


def test_baseline_runs_the_project_as_it_was_at_a_commit(tmp_path):
    """`--baseline REV`: the methods of a `git archive` of REV, side by side with the current code, on the
    same pairs; the targets table compares them. HEAD's matching gives the same objective as ours."""
    base = (checkout("HEAD", tmp_path / "tree"), tmp_path / "tree")
    assert (tmp_path / "tree" / "methods" / "c2m3.py").is_file()
    rows = alignment(specs=(("mlp", 2),), widths=(6,), repeats=1, methods=("git-rebasin", "c2m3"),
                          fit_steps=5, baseline=base)
    by_case = {r["case"]: r for r in rows}
    for method in BASELINE_METHODS:
        before = by_case[f"{method} @ {base[0]}"]
        assert before["peer_of"] == method and before["median_s"] > 0
        assert before["l2_after"] == pytest.approx(by_case[method]["l2_after"], rel=1e-6)
    table = pd.DataFrame(rows).assign(**environment(), load_min=0.0, load_max=1.0)
    text = perf_markdown(table)
    assert f"c2m3 vs itself at {base[0]}, width 512" in text  # not measured at 512 here: reported as not met
    with pytest.raises(ValueError, match="not a commit"):
        checkout("no-such-revision", tmp_path / "other")


def test_lap_share_times_the_solves_inside_a_matching(tmp_path):
    rows = lap_share(widths=(8,), repeats=1, steps=2)
    assert [r["case"] for r in rows] == list(LAP_SHARE_METHODS)
    for r in rows:
        assert 0 < r["lap_s"] <= r["median_s"] and r["lap_ratio"] >= 1
    text = perf_markdown(pd.DataFrame(rows).assign(**environment(), load_min=0.0, load_max=1.0))
    assert "## weight matching vs its own assignment solves" in text and "<= 1.2x" in text
    import methods.assignment

    assert methods.assignment.linear_sum_assignment.__module__.startswith("scipy")  # the clock put it back


def test_missing_peers_are_skipped_gracefully(tmp_path):
    assert peer_available(None) == "not given"
    assert "does not exist" in peer_available(str(tmp_path / "nowhere" / "python"))
    assert peer_available(sys.executable, "json") is None
    assert peer_available(sys.executable, "no_such_module_here") is not None


def test_memory_case_reports_a_peak():
    rows = memory(cases=("eval per-network",))  # the suite's own fresh process (python -m bench.perf)
    assert rows[0]["case"] == "eval per-network" and rows[0]["rss_before_mb"] > 0
    out = memory_case("eval batched", n=4)
    assert out["peak_mb"] >= 0 and out["rss_before_mb"] > 0
    def hold_64_mb():  # held long enough for the sampling thread to see it, however loaded the machine
        tensor = torch.ones(64 * 2**20 // 4)
        time.sleep(0.5)
        return tensor.sum()

    before, peak = _peak_rss_during(hold_64_mb)
    assert peak - before > 32


def test_cli_perf_writes_table_markdown_and_figure(tmp_path, capsys):
    code = main(["perf", "--results", str(tmp_path), "--suites", "align", "--repeats", "1", "--widths", "4",
                 "--peer-rebasin", str(tmp_path / "absent" / "python")])
    assert code == 0
    assert (tmp_path / "perf.parquet").is_file() and (tmp_path / "perf.png").is_file()
    assert "alignment per pair" in (tmp_path / "perf.md").read_text()
    assert "peer rebasin skipped" in capsys.readouterr().out
    assert main(["perf", "--results", str(tmp_path), "--suites", "nonsense"]) == 2
    # measuring one suite later keeps the rows of the others (each with its own commit and load)
    new = pd.DataFrame([{"group": "ae-train", "case": "x", "env_git": "later", "load_min": 0.0, "load_max": 0.0}])
    merged = suites._keep_other_suites(tmp_path / "perf.parquet", new)
    assert set(merged.group) == {"align", "ae-train"} and set(merged[merged.group == "align"].env_git) != {"later"}
    align_again = merged[merged.group == "align"].assign(env_git="later")
    rerun = suites._keep_other_suites(tmp_path / "perf.parquet", align_again)
    assert set(rerun.env_git) == {"later"}  # a suite measured again replaces its old rows


def test_the_smoke_suite_times_the_whole_command_against_its_target():
    from bench.perf.suites.smoke_run import SMOKE_TARGET_S, smoke_run

    rows = smoke_run(repeats=1)
    assert [r["case"] for r in rows] == ["bench run --preset smoke"] and rows[0]["median_s"] > 0
    table = pd.DataFrame(rows).assign(**environment(), load_min=0.0, load_max=1.0)
    text = perf_markdown(table)
    assert "## smoke (WALL seconds" in text
    assert "`bench run --preset smoke` end to end" in text and f"<= {SMOKE_TARGET_S:g} s" in text
    with pytest.raises(RuntimeError, match="bench run --preset nonsense failed"):
        smoke_run(repeats=1, preset="nonsense")
