"""Failure injection (small): kill chains of `bench run` / `bench sweep`, concurrent runs, and the
checks themselves (they must see lost, duplicated, differing and half-written rows when there are).

`python -m tests.harness.reliability` runs the full version (10 kills each, the smoke benchmark, every method).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import pytest

from bench.store import mlflow_backend, tracking
from bench.store.results import ResultStore, claim_name
from tests.harness import reliability

KILLS = int(os.environ.get("REBASIN_TEST_KILLS", "3"))
METHODS = ("naive", "git-rebasin", "sign-rebasin", "canonical")


def _run_args(zoo):
    return ("run", "--preset", "smoke", "--zoo", str(zoo), "--methods", *METHODS, "--quiet")


@pytest.fixture(scope="module")
def reference(tiny_inr_zoo, tmp_path_factory):
    work = tmp_path_factory.mktemp("reliability")
    results, wall = reliability.reference_run(work, _run_args(tiny_inr_zoo))
    return work, results, wall, reliability.startup_seconds(work)


def test_killed_run_resumes_to_the_reference_rows(reference, tiny_inr_zoo):
    work, results, wall, startup = reference
    outcome = reliability.kill_run(work, results, wall, KILLS, random.Random(1), startup, _run_args(tiny_inr_zoo))
    assert outcome.times == KILLS, outcome.details  # every attempt but the last was really killed
    assert outcome.rows_expected > 0
    assert outcome.ok, outcome.details
    assert "units:" in outcome.message  # the last attempt finished (after a possible "N chains; " prefix)


def test_two_concurrent_runs_share_the_work(reference, tiny_inr_zoo):
    work, results, _, _ = reference
    outcome = reliability.concurrent_runs(work, results, _run_args(tiny_inr_zoo))
    assert outcome.ok, outcome.details  # no lost, duplicated (not even in the raw parts) or differing rows
    assert outcome.message.count("units:") == 2


def test_killed_sweep_resumes_with_every_trial_once(tiny_inr_zoo, tmp_path):
    args = ("sweep", "git-rebasin", "--protocol", "pairs[n_pairs=2,lambdas=5]", "--trials", "6", "--quiet")
    startup = reliability.startup_seconds(tmp_path)
    outcome, _ = reliability.kill_sweep(tmp_path, tiny_inr_zoo, 2, random.Random(2), startup, args)
    assert outcome.times == 2 and outcome.rows_expected > 0 and outcome.rows_expected % (6 * 2) == 0  # per chain
    assert outcome.ok, outcome.details


# ---- the checks see what they are meant to see ------------------------------------------------------
def test_compare_and_raw_duplicates_detect_damage(reference):
    _, results, _, _ = reference
    table = ResultStore(results).table()
    ref = reliability.comparable(table)
    assert reliability.compare(ref, ref) == (0, 0, 0)
    damaged = table.copy()
    i, j = damaged.index[damaged["loss_barrier"].notna()][:2]
    damaged.loc[i, "loss_barrier"] += 1e-12 * max(1.0, abs(damaged.loc[i, "loss_barrier"]))  # a last digit counts
    damaged.loc[j, "align_s"] = 123.0  # timings do not
    lost = damaged.drop(index=damaged.index.difference([i, j])[0])
    assert reliability.compare(ref, reliability.comparable(lost)) == (1, 0, 1)
    assert reliability.compare(reliability.comparable(lost), ref) == (0, 1, 1)
    store = ResultStore(results.parent / "dups")
    store.append(table.head(3))
    store.append(table.head(2))
    assert reliability.raw_duplicates(store) == 2 and len(store.table()) == 3


def test_half_written_detects_truncated_parts_temp_files_and_reports(reference, tmp_path):
    _, results, _, _ = reference
    assert reliability.half_written(results) == []
    store = ResultStore(tmp_path)
    part = store.append(ResultStore(results).table().head(4))
    part.write_bytes(part.read_bytes()[:-100])
    (tmp_path / "rows" / ".tmp-part-x.parquet.host.1").write_bytes(b"PAR1")
    (tmp_path / "leaderboard.md").write_text("# Leaderboard\n\n| a | b |\n|---|---|\n| 1 | 2")
    (tmp_path / "curves.png").write_bytes((results / "curves.png").read_bytes()[:500])
    found = reliability.half_written(tmp_path)
    assert len(found) == 4 and any("ArrowInvalid" in f for f in found), found


def test_mirror_check_sees_missing_and_stale_runs_and_rebuild_fixes_them(reference, tmp_path):
    _, results, _, _ = reference
    table = ResultStore(results).table()
    assert tracking.check(table, results_dir=results) == []
    # a copy of the mirror with one run deleted and the table grown by a unit
    import shutil

    shutil.copytree(results, tmp_path / "r")
    copy = tmp_path / "r"
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_backend.resolve_uri(None, copy))
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = [r for r in tracking.all_runs(client, exp.experiment_id) if tracking.GROUP_TAG in r.data.tags]
    client.delete_run(runs[0].info.run_id)
    grown = ResultStore(copy).table()
    extra = grown[grown["variant"] == runs[1].data.tags["bench.variant"]].head(1).copy()
    extra["key"], extra["unit"] = "0123456789abcdef", "pair=new"
    ResultStore(copy).append(extra)
    problems = tracking.check(ResultStore(copy).table(), results_dir=copy)
    assert sum("not mirrored" in p for p in problems) == 2  # the deleted group and the grown one
    assert sum("does not hold" in p for p in problems) == 1  # the grown group's old run
    from bench.cli import main

    assert main(["mirror", "--results", str(copy), "--check"]) == 1
    assert main(["mirror", "--results", str(copy), "--rebuild"]) == 0
    assert tracking.check(ResultStore(copy).table(), results_dir=copy) == []
    assert main(["mirror", "--results", str(copy), "--check"]) == 0


def _hold(root, name, ready):
    with ResultStore(root).claim(name) as mine:
        ready.put(mine)
        time.sleep(60)


def test_claim_is_exclusive_and_released_when_its_holder_is_killed(tmp_path):
    name = claim_name(["k1", "k2"])
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    holder = ctx.Process(target=_hold, args=(tmp_path, name, ready))
    holder.start()
    assert ready.get(timeout=60) is True
    with ResultStore(tmp_path).claim(name) as mine:
        assert mine is False
    with ResultStore(tmp_path).claim(claim_name(["k3"])) as other:
        assert other is True  # another batch is free
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with ResultStore(tmp_path).claim(name) as mine:
        assert mine is True
