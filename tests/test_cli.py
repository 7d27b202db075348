"""The CLI end to end on a tiny zoo: rows, resume after SIGKILL, clear errors on bad input."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from bench.store.results import ResultStore

VOLATILE = ["run_id", "time"]  # plus timings (*_s, *seconds) and env_* columns


def bench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, **kw)


def _rows(results):
    t = ResultStore(results).table()
    keep = [c for c in t.columns if c not in VOLATILE and not c.startswith("env_")
            and not c.endswith(("_s", "seconds"))]
    return t[keep].sort_values("key").reset_index(drop=True)


RUN = ["run", "--preset", "smoke", "--methods", "naive", "git-rebasin", "--no-mlflow", "--quiet"]


@pytest.fixture(scope="module")
def reference(tiny_inr_zoo, tmp_path_factory):
    results = tmp_path_factory.mktemp("ref")
    done = bench(*RUN, "--zoo", str(tiny_inr_zoo), "--results", str(results))
    assert done.returncode == 0, done.stderr
    return results


def test_run_writes_rows_and_report(reference):
    rows = _rows(reference)
    assert len(rows) == 2 * (2 + 2 + 2)  # 2 methods x (2 pairs + 2 nets x 1 action x 1 eps + 2 merges of 2 fits)
    assert rows.key.is_unique and rows.error.isna().all()
    planted = rows[(rows.protocol == "orbit") & (rows.variant == "git-rebasin") & (rows.action == "P")]
    exact = planted[planted.eps == 0]  # no noise: the planted permutation undone exactly
    assert len(exact) == 2 and (exact.loss_barrier.abs() < 1e-6).all() and (planted.recovered == 1).all()
    assert (rows.deviation.dropna() < 1e-4).all() and rows.deviation.notna().sum() == 8
    assert (reference / "leaderboard.md").read_text().count("git-rebasin") >= 2
    assert (reference / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_everything(reference, tiny_inr_zoo):
    before = len(ResultStore(reference).parts())
    again = bench(*RUN, "--zoo", str(tiny_inr_zoo), "--results", str(reference), "--no-report")
    assert again.returncode == 0 and "0 run, 12 already done" in again.stdout
    assert len(ResultStore(reference).parts()) == before


def test_killed_run_resumes_to_the_same_rows(reference, tiny_inr_zoo, tmp_path):
    rows_dir = tmp_path / "rows"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--zoo", str(tiny_inr_zoo),
                             "--results", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (rows_dir.exists() and any(rows_dir.glob("part-*.parquet"))):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(ResultStore(tmp_path).table())
    assert 0 < partial <= 12  # killed somewhere after the first part
    resumed = bench(*RUN, "--zoo", str(tiny_inr_zoo), "--results", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{partial} already done" in resumed.stdout
    pd.testing.assert_frame_equal(_rows(tmp_path), _rows(reference))


@pytest.mark.parametrize("args, needle", [
    (["run", "--methods", "no-such-method"], "unknown method 'no-such-method'"),
    (["run", "--methods", "git-rebasin[bogus=1]"], "unknown hyperparameter"),
    (["run", "--data", "/no/such/dir"], "/no/such/dir"),
    (["zoo", "build", "inr", "--data", "/no/such/idx", "--out", "x"], "/no/such/idx"),
    (["run", "--zoo", "/no/such/zoo"], "/no/such/zoo"),
    (["run", "--preset", "huge"], "unknown preset"),
    (["run", "--methods", "git-rebasn"], "did you mean 'git-rebasin'"),
    (["run", "--preset", "smok"], "unknown preset 'smok' (did you mean 'smoke'?"),
    (["run", "--protocols", "pair"], "unknown protocol 'pair' (did you mean 'pairs'?"),
    (["sweep", "git-rebasin", "--zoo", "default:0", "--protocol", "orbitt"], "did you mean 'orbit'?"),
    (["run", "--methods", "scalegmn-ae[device=cuda]"], "CUDA is not available"),
    (["run", "--device", "cuda", "--preset", "smoke"], "CUDA is not available"),
    (["run", "--methods", "sinkhorn-rebasin[device=cuda]"], "CUDA is not available"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    out = bench(*args, "--results", str(tmp_path)) if args[0] == "run" else bench(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not (tmp_path / "rows").exists() or not any((tmp_path / "rows").iterdir())


def test_nan_and_wrong_shape_zoos_are_refused(tiny_inr_zoo, tmp_path):
    from safetensors.torch import load_file, save_file

    for name, mutate in [("nan", lambda t: t["seq.0.weight"].__setitem__((0, 0, 0), float("nan"))),
                         ("shape", lambda t: t.__setitem__("seq.1.weight", torch.zeros(12, 5, 5)))]:
        bad = tmp_path / name
        subprocess.run(["cp", "-r", str(tiny_inr_zoo), str(bad)], check=True)
        tensors = load_file(bad / "weights.safetensors")
        mutate(tensors)
        save_file(tensors, bad / "weights.safetensors")
        out = bench("run", "--zoo", str(bad), "--results", str(tmp_path / "res"), "--quiet")
        assert out.returncode == 2 and "weights.safetensors" in out.stderr and len(out.stderr.splitlines()) == 1
        assert not (tmp_path / "res" / "rows").exists() or not any((tmp_path / "res" / "rows").iterdir())


def test_ae_eval_reports_reconstruction_and_invariance(tiny_inr_zoo, tmp_path):
    import json

    env = {k: v for k, v in os.environ.items() if k != "REBASIN_CHECKPOINTS"}  # the default store, under results/
    out = bench("ae", "eval", "--zoo", str(tiny_inr_zoo), "--method", "scalegmn-ae[epochs=2,hidden=8,latent=16]",
                cwd=tmp_path, env={**env, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout[out.stdout.rindex("{\n  \"networks\""):])
    assert report["psnr_original"] > report["psnr_reconstructed"]  # the decoder is lossy after 2 epochs
    for kind in ("P", "S", "PS"):
        assert report[f"latent_change_{kind}"] < 1e-4  # the encoder is invariant to the whole group
    # checkpoint kept in the harness's store for the next call (a finished one, not just its lock file)
    assert list((tmp_path / "results" / "cache" / "checkpoints").glob("scalegmn-ae-*/done.json"))
    # a split name that does not exist is refused in one line, before any training (never the whole zoo)
    typo = bench("ae", "eval", "--zoo", str(tiny_inr_zoo), "--split", "tset", cwd=tmp_path,
                 env={**env, "PYTHONPATH": os.getcwd()})
    assert typo.returncode == 2 and typo.stderr.strip().count("\n") == 0 and "'tset'" in typo.stderr, typo.stderr


def test_version_report_typo_and_subcommand_examples(tmp_path):
    out = bench("--version")
    assert out.returncode == 0 and out.stdout.startswith("bench ")
    typo = tmp_path / "resluts"
    out = bench("report", "--results", str(typo))
    assert out.returncode == 2 and "no results table here" in out.stderr and not typo.exists()
    for argv in (["run"], ["sweep"], ["zoo", "build", "inr"], ["zoo", "import"], ["report"], ["perf"], ["ae", "train"],
                 ["mirror"], ["methods"], ["zoo", "info"]):
        text = bench(*argv, "--help").stdout
        examples = text.split("examples:", 1)[-1].strip().splitlines()
        assert examples and all(line.split()[:len(argv) + 1] == ["bench", *argv] for line in examples), argv


def test_auto_data_without_fashion_mnist_warns_once(monkeypatch, capsys, tmp_path):
    from zoos import data

    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    monkeypatch.setattr(data, "_warned_fallback", False)
    assert data.resolve_source("auto") == data.resolve_source("auto") == "digits"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "Fashion-MNIST not found" in err[0] and str(tmp_path) in err[0]


def test_the_python_api_in_a_few_lines(tiny_inr_zoo):
    from bench.api import load_zoo, make_method, make_task, pair, score_path

    zoo = load_zoo(tiny_inr_zoo)
    task = make_task(zoo)
    method = make_method("git-rebasin")
    method.setup(zoo, task)
    same = zoo.meta.index[zoo.meta["target"] == zoo.meta["target"].iloc[0]][:2].tolist()  # two fits of one image
    a, b = pair(zoo, *same)
    target = int(zoo.meta["target"].iloc[same[0]])
    aligned = method.align(a, b, target).others
    before, after = score_path(task, a, b, 9, target), score_path(task, a, aligned, 9, target)
    assert len(before["curve_loss"]) == 9 and before["curve_loss"][0] == pytest.approx(after["curve_loss"][0])
    assert after["curve_loss"][-1] == pytest.approx(before["curve_loss"][-1], rel=1e-4)  # same function at b
    assert after["loss_barrier"] < before["loss_barrier"]
