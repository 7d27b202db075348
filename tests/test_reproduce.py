"""`bench reproduce`: a killed reproduction resumes where it stopped; the report reads what was measured."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store.results import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def _reproduce(results, *extra, **kw):
    return subprocess.Popen([sys.executable, "-m", "tests.harness.tiny_reproduction", "--results", str(results),
                             "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def test_a_killed_reproduction_resumes_and_reports(tmp_path):
    proc = _reproduce(tmp_path, env={**os.environ, "TINY_PAUSE_S": "2"})  # the kill lands between two parts
    rows, deadline = tmp_path / "rows", time.time() + 240
    while time.time() < deadline and not (rows.is_dir() and any(rows.rglob("*.parquet"))):
        time.sleep(0.1)
        if proc.poll() is not None:
            break
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = ResultStore(tmp_path).table() if rows.is_dir() else None
    again = _reproduce(tmp_path)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    table = ResultStore(tmp_path).table()
    assert len(table) == 6 and table.key.is_unique and table.error.isna().all()  # 2 pairs x 3 methods, once each
    assert set(table.variant) == {"naive", "git-rebasin", "ste[batch=64,steps=3]"}
    assert killed and first is not None and 0 < len(first) < 6, "the kill did not land mid-run"
    assert f"{len(first)} already done" in out
    assert set(first.key) <= set(table.key)  # nothing measured before the kill was lost or rerun
    report = (tmp_path / "reproductions.md").read_text()
    assert "## tiny" in report and "| wm | loss_barrier | ~0 |" in report and "(n = 2)" in report
    assert "| inconclusive |" in report  # two pairs: too few units for a verdict, however small the barrier
    assert (tmp_path / "reproduction_tiny.png").is_file()
    assert "Wall time of `bench reproduce tiny`" in report


def test_unknown_paper_is_refused_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.cli", "reproduce", "git-rebasn", "--results", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "git-rebasin" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "rows").exists()


@pytest.mark.parametrize("paper", ["git-rebasin", "sinkhorn-rebasin", "c2m3", "cnn-zoo", "resnet20"])
def test_every_reproduction_names_runnable_methods_and_its_deviations(paper):
    from bench import reproduce
    from bench.execution.reproductions import get
    from methods import make_method

    spec = get(paper)
    assert spec.deviations and spec.paper and (spec.benchmarks or spec.not_runnable)
    for bench in spec.benchmarks:
        for method in bench.methods:
            make_method(method)
    names = {b.name for b in spec.benchmarks}
    for label, (bench, index) in reproduce.REPORTS[paper].zoos.items():
        assert bench in names and index < len(next(b for b in spec.benchmarks if b.name == bench).zoos), label
