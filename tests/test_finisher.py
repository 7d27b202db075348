"""The end of a run off its critical path: MLflow stores copied from an empty one made once, a mirror that
follows the run group by group (in a second process) and ends where one pass would, a report error raised
once the mirror is saved, and a mirror process whose death costs a line, never a hang."""

from __future__ import annotations

import sqlite3

import pytest

from bench.store import mlflow_backend as backend
from bench.store import tracking
from bench.store.results import ResultStore
from tests.test_tracking_views import _rows


def _schema(db) -> set[frozenset]:
    """Each table's and index's definition as a set of lines (MLflow emits a table's constraints in any order)."""
    with sqlite3.connect(db) as con:
        sql = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    return {frozenset(line.strip().rstrip(",") for line in s.splitlines()) for s in sql}


def _default_experiment(db) -> tuple:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT name, artifact_location FROM experiments WHERE experiment_id = 0").fetchone()


def test_a_new_store_is_a_copy_of_the_empty_one_mlflow_made(tmp_path, monkeypatch):
    monkeypatch.setenv(backend.CACHE_ENV, str(tmp_path / "cache"))
    first, second = tmp_path / "a", tmp_path / "b"
    backend.resolve_uri(None, first)
    templates = list((tmp_path / "cache").glob("mlflow-*-empty.db"))
    assert len(templates) == 1
    backend.resolve_uri(None, second)  # from the template
    direct = tmp_path / "direct.db"
    backend._new_store(direct)  # what MLflow itself builds
    for results in (first, second):
        db = results / "mlflow.db"
        assert _schema(db) == _schema(direct)  # the same tables, indexes and alembic head
        # MLflow's Default experiment keeps its artifacts in this store's folder, not in the template maker's
        assert _default_experiment(db) == ("Default", str((results / "mlruns" / "0").resolve()))
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=backend.resolve_uri(None, second))
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert tracking.mirror(_rows(), results_dir=second)  # a working store


def test_an_unwritable_cache_falls_back_to_mlflow(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(backend.CACHE_ENV, str(blocker / "cache"))
    backend.resolve_uri(None, tmp_path / "r")
    assert backend.MLFLOW_TABLES <= backend._sqlite_tables(tmp_path / "r" / "mlflow.db")


def test_a_mirror_that_follows_the_run_ends_where_one_pass_does(tmp_path):
    table = _rows()
    follower = tracking.Mirror(tmp_path)
    by_method = [rows for _, rows in table.groupby("method")]
    new = [run for rows in by_method for run in follower.log(rows)]
    assert len(new) == 2
    assert follower.log(table, fresh=True) == []  # nothing left for the final pass
    assert tracking.check(table, results_dir=tmp_path) == []
    # the same runs as one pass over the whole table makes elsewhere
    assert tracking.mirror(table, results_dir=tmp_path / "one")
    assert tracking.check(table, results_dir=tmp_path / "one") == []


def test_a_group_that_grows_while_followed_is_replaced(tmp_path):
    table = _rows()
    follower = tracking.Mirror(tmp_path)
    follower.log(table.iloc[:4])
    follower.log(table)  # the groups grew: their runs are logged again and the old ones deleted
    assert tracking.check(table, results_dir=tmp_path) == []


def _results_with_rows(tmp_path):
    ResultStore(tmp_path).append(_rows())
    return tmp_path


def test_the_run_end_writes_the_report_and_mirrors_it(tmp_path, capsys):
    from bench.commands.finisher import finish

    results = _results_with_rows(tmp_path)
    finish(results, ["run"])
    out = capsys.readouterr().out
    assert "wrote" in out and "mlflow: 3 new run(s) mirrored" in out  # two groups and the report run
    assert (results / "leaderboard.md").is_file()
    assert tracking.check(ResultStore(results).table(), results_dir=results) == []


def test_a_report_error_is_raised_after_the_mirror_is_saved(tmp_path, capsys):
    from bench.commands.finisher import finish

    results = _results_with_rows(tmp_path)
    into = tmp_path / "a-file"
    into.write_text("the report cannot go into a file")
    with pytest.raises(OSError):
        finish(results, ["run"], into=into)
    assert "mlflow: 2 new run(s) mirrored" in capsys.readouterr().out  # the groups; no report to mirror
    assert tracking.check(ResultStore(results).table(), results_dir=results) == []


def test_a_mirror_process_that_dies_costs_a_line_not_the_run(tmp_path, capsys):
    from bench.commands.finisher import MirrorProcess, finish

    follower = MirrorProcess(_results_with_rows(tmp_path))
    follower._process.kill()
    finish(tmp_path, ["run"], follower=follower)
    assert (tmp_path / "leaderboard.md").is_file()
    assert "mlflow: mirror skipped (its process died" in capsys.readouterr().err


def test_a_mirror_process_ends_when_its_run_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    script = ("import sys, time\nfrom bench.commands.finisher import MirrorProcess\n"
              "f = MirrorProcess(sys.argv[1])\nprint(f._process.pid, flush=True)\ntime.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    pid = int(run.stdout.readline())
    run.kill()
    run.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":  # exited, not yet reaped (its parent is gone)
                    return
        except FileNotFoundError:
            return
        time.sleep(0.2)
    pytest.fail(f"the mirror process {pid} outlived its killed run")
