"""Results layer: atomic Parquet parts, resume keys, MLflow mirror, deterministic reports."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time

import numpy as np
import pandas as pd
import pytest

from bench.report import files as report_files
from bench.report.files import write_text
from bench.report.leaderboard import leaderboard
from bench.report.long_frames import curves_long
from bench.report.render import markdown
from bench.store.provenance import environment
from bench.store.results import ResultStore, unit_key
from methods import normalise_spec


def _row(key, variant="naive", zoo="z", protocol="pairs", unit="pair=0-1", loss=0.1, acc=0.01, error=None, **extra):
    row = {"key": key, "run_id": "r1", "method": variant.split("[")[0], "variant": variant, "zoo": zoo,
           "zoo_hash": "abc", "protocol": protocol, "unit": unit, "seed": 0, "loss_barrier": loss, "acc_barrier": acc,
           "deviation": 1e-7, "align_s": 0.5, "lambdas": [0.0, 0.5, 1.0], "curve_loss": [1.0, 1.0 + loss, 1.0],
           "error": error}
    row.update(extra)
    return row


def _writer(root, tag, n_parts, rows_per_part):
    store = ResultStore(root)
    for i in range(n_parts):
        store.append([_row(f"{tag}-{i}-{j}", unit=f"pair={i}-{j}") for j in range(rows_per_part)])


def test_unit_key_is_canonical():
    """Independent of argument and dict order; callers pass method specs in normal form (`normalise_spec`),
    so two spellings of one spec give one key."""
    a = unit_key(method="git-rebasin[max_sweeps=10,seed=1]", hyper={"a": 1, "b": 2.5}, zoo_hash="h", seed=3)
    b = unit_key(seed=3, zoo_hash="h", hyper={"b": 2.5, "a": 1},
                 method=normalise_spec("git-rebasin[ seed=1, max_sweeps=10 ]"))
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    assert a != unit_key(method="git-rebasin[max_sweeps=10,seed=1]", hyper={"a": 1, "b": 2.5}, zoo_hash="h", seed=4)
    assert unit_key(x=np.int64(3), y=(1, 2)) == unit_key(x=3, y=[1, 2])


def test_environment_columns():
    env = environment()
    assert set(env) >= {"env_python", "env_torch", "env_numpy", "env_threads", "env_git", "env_hostname",
                        "env_platform"}
    assert isinstance(env["env_threads"], int) and env["env_threads"] >= 1
    assert env["env_git"] == "unknown" or len(env["env_git"]) == 40


def test_append_roundtrip_lists_and_union_of_columns(tmp_path):
    store = ResultStore(tmp_path)
    p1 = store.append([_row("k1"), _row("k2", loss=0.3)])
    # another protocol: different columns (action, eps, psnr, no acc), one list column longer
    orbit = _row("k3", protocol="orbit", unit="net=5 action=PS eps=0.01", action="PS", eps=0.01, psnr_barrier=2.0)
    del orbit["acc_barrier"]
    orbit["lambdas"], orbit["curve_loss"] = [0.0, 0.25, 0.5, 0.75, 1.0], [0.1, 0.2, 0.3, 0.2, 0.1]
    store.append([orbit])
    assert p1.exists() and p1.parent == tmp_path / "rows" and not list((tmp_path / "rows").glob(".tmp-*"))
    t = store.table()
    assert list(t["key"]) == ["k3", "k1", "k2"]  # sorted by zoo, protocol ("orbit" < "pairs"), ...
    assert t.loc[t["key"] == "k3", "curve_loss"].iloc[0] == [0.1, 0.2, 0.3, 0.2, 0.1]
    assert t.loc[t["key"] == "k2", "curve_loss"].iloc[0] == [1.0, 1.3, 1.0]
    assert isinstance(t.loc[0, "lambdas"], list)
    assert math.isnan(t.loc[t["key"] == "k1", "psnr_barrier"].iloc[0])
    assert math.isnan(t.loc[t["key"] == "k3", "acc_barrier"].iloc[0])
    assert t["time"].notna().all()  # stamped on append


def test_dedupe_latest_wins_and_done_keys_skip_errors(tmp_path):
    store = ResultStore(tmp_path)
    store.append([_row("a", loss=1.0), _row("b", error="RuntimeError: boom", loss=float("nan"))])
    store.append([_row("a", loss=2.0), _row("c")])
    t = store.table()
    assert sorted(t["key"]) == ["a", "b", "c"]
    assert t.loc[t["key"] == "a", "loss_barrier"].item() == 2.0
    assert store.done_keys() == {"a", "c"}
    store.append([_row("b")])  # the retry succeeded
    assert store.done_keys() == {"a", "b", "c"}
    before = store.table()
    merged = store.compact()
    assert store.parts() == [merged]
    pd.testing.assert_frame_equal(store.table(), before)


def test_stale_temp_file_is_ignored_and_cleaned(tmp_path):
    store = ResultStore(tmp_path)
    store.append([_row("a")])
    # a writer killed mid-write leaves a truncated temp file
    good = store.parts()[0].read_bytes()
    tmp = tmp_path / "rows" / ".tmp-part-20000101T000000000000Z-1-000000.parquet.1"
    tmp.write_bytes(good[: len(good) // 2])
    assert list(store.table()["key"]) == ["a"] and store.done_keys() == {"a"}
    assert store.clean_stale() == 0 and tmp.exists()  # fresh: might belong to a live writer
    old = time.time() - 2 * 3600
    os.utime(tmp, (old, old))
    ResultStore(tmp_path)  # opening a store cleans stale temp files
    assert not tmp.exists()


def test_concurrent_appends_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 15, 4)) for tag in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResultStore(tmp_path)
    assert len(store.parts()) == 30
    expected = {f"{tag}-{i}-{j}" for tag in ("x", "y") for i in range(15) for j in range(4)}
    assert set(store.table()["key"]) == expected and store.done_keys() == expected
    assert not list((tmp_path / "rows").glob(".tmp-*"))


def _tiny_table():
    rows = [_row("k1", variant="git-rebasin", loss=0.1, acc=0.01, unit="pair=0-1"),
            _row("k2", variant="git-rebasin", loss=0.3, acc=0.03, unit="pair=2-3"),
            _row("k3", variant="naive", loss=0.5, acc=0.2, unit="pair=0-1"),
            _row("k4", variant="naive", loss=0.9, acc=0.4, unit="pair=2-3"),
            _row("k5", variant="naive", loss=float("nan"), acc=float("nan"), unit="pair=4-5", error="boom")]
    return pd.DataFrame(rows)


def test_leaderboard_and_markdown(tmp_path):
    table = _tiny_table()
    board = leaderboard(table)
    assert list(board["variant"]) == ["git-rebasin", "naive"] and list(board["rank"]) == [1, 2]
    naive = board[board["variant"] == "naive"].iloc[0]
    assert naive["n"] == 2 and naive["n_errors"] == 1
    assert naive["loss_barrier_mean"] == pytest.approx(0.7)
    assert naive["loss_barrier_std"] == pytest.approx(math.sqrt(0.08))  # sample std of {0.5, 0.9}
    header = ["# Leaderboard", "command: make run"]
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    write_text(a, markdown(table, header))
    write_text(b, markdown(table.sample(frac=1.0, random_state=0), header))  # row order must not matter
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text(encoding="utf-8")
    assert text.startswith("# Leaderboard\ncommand: make run\n") and "## z / pairs" in text
    # git-rebasin: loss {0.1, 0.3} -> 0.2, acc {0.01, 0.03} -> 0.02 (two distinct units: a bootstrap CI, which with
    # two values spans them; too few for a paired test)
    assert "| 1 | git-rebasin | 2 | 0.2 [0.1, 0.3] | 0.02 [0.01, 0.03] | best |" in text
    assert "| 2 | naive | 2 | 0.7 [0.5, 0.9] | 0.3 [0.2, 0.4] | n/a (2 shared) |" in text
    assert "Ranked by mean loss barrier (lower is better)" in text


def test_orbit_leaderboard_ranks_within_action_eps():
    rows = [_row(f"o{i}", variant=v, protocol="orbit", action=act, eps=eps, loss=loss)
            for i, (v, act, eps, loss) in enumerate([("a", "P", 0.0, 0.1), ("b", "P", 0.0, 0.2),
                                                     ("a", "PS", 0.1, 0.5), ("b", "PS", 0.1, 0.4)])]
    board = leaderboard(pd.DataFrame(rows))
    ranks = {(r.action, r.variant): r.rank for r in board.itertuples()}
    assert ranks == {("P", "a"): 1, ("P", "b"): 2, ("PS", "a"): 2, ("PS", "b"): 1}


def test_plot_and_write_report(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_tiny_table().to_dict("records"))
    md, png = report_files.write_report(tmp_path, ["# Leaderboard"])
    assert md == tmp_path / "leaderboard.md" and "git-rebasin" in md.read_text(encoding="utf-8")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    long = curves_long(store.table())
    assert len(long) == 4 * 3 and set(long["panel"]) == {"z · pairs"}  # the errored unit is left out


def test_mirror_is_idempotent(tmp_path):
    from bench.store.tracking import mirror

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = _tiny_table()
    first = mirror(table, tracking_uri=uri, experiment="t")
    assert len(first) == 2  # groups: (r1, git-rebasin, z, pairs), (r1, naive, z, pairs)
    assert mirror(table, tracking_uri=uri, experiment="t") == []

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    assert exp.artifact_location == (tmp_path / "mlruns").resolve().as_uri()
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    run = next(r for r in runs if r.data.params["variant"] == "naive")
    assert run.data.metrics["loss_barrier_mean"] == pytest.approx(0.7)
    assert run.data.metrics["loss_barrier_std"] == pytest.approx(math.sqrt(0.08))
    assert run.data.metrics["n_errors"] == 1
    assert (tmp_path / "mlruns").is_dir() and list((tmp_path / "mlruns").rglob("rows.parquet"))
    # a resumed run adds a unit to one group: that group is re-logged, its old run deleted
    grown = pd.concat([table, pd.DataFrame([_row("k6", variant="naive", loss=0.7, unit="pair=6-7")])])
    assert len(mirror(grown, tracking_uri=uri, experiment="t")) == 1
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    assert next(r for r in runs if r.data.params["variant"] == "naive").data.metrics["n_units"] == 3


def test_group_metrics_log_declared_metrics_per_section():
    """With the protocols' declarations: only declared metrics (and `i_*` diagnostics) are logged, and orbit
    rows are summarised per (action, eps) only, never averaged across them."""
    from bench.protocols import PROTOCOLS
    from bench.store.tracking import group_metrics

    rows = pd.DataFrame([_row(f"o{i}", protocol="orbit", action=act, eps=eps, loss=loss, stray=1.0, i_sweeps=2.0)
                         for i, (act, eps, loss) in enumerate([("P", 1e-3, 0.1), ("P", 1e-3, 0.3),
                                                               ("PS", 0.0, 0.5)])])
    orbit = PROTOCOLS["orbit"]
    out = group_metrics(rows, [m.name for m in orbit.metrics], orbit.sections)
    assert "loss_barrier_mean" not in out and out["n_units"] == 3  # no pooled mean over actions and noise
    assert out["action_P/eps_0.001/loss_barrier_mean"] == pytest.approx(0.2)
    assert out["action_PS/eps_0/loss_barrier_mean"] == pytest.approx(0.5)
    assert "action_P/eps_0.001/i_sweeps_mean" in out and not any("stray" in k for k in out)


def test_gaps_are_kept_per_zoo_and_protocol_and_replaced_by_the_next_run(tmp_path):
    store = ResultStore(tmp_path)
    assert store.gaps() == []
    store.record_gaps("z", "orbit", ["action PS: no group"])
    store.record_gaps("z", "merge", ["n=8: no group of 8 networks"])
    assert ResultStore(tmp_path).gaps() == [("z", "merge", "n=8: no group of 8 networks"),
                                            ("z", "orbit", "action PS: no group")]
    store.record_gaps("z", "orbit", [])  # a later run measured everything it asked for
    assert store.gaps() == [("z", "merge", "n=8: no group of 8 networks")]


def test_a_damaged_gaps_file_is_one_clear_error(tmp_path):
    store = ResultStore(tmp_path)
    (tmp_path / "gaps.json").write_text("{not json")
    with pytest.raises(ValueError, match="gaps.json: not a gaps file"):
        store.gaps()


def test_runs_under_other_pairs_options_into_one_folder_never_merge(tiny_inr_zoo, tmp_path):
    """Three `pairs` runs into one results folder (the default, fewer interpolation points, the training
    split): each is its own section titled by the options that differ, with its own n; no cell pools them,
    also where the same unit was measured under two options (issue 32)."""
    from bench.execution.plan import RunOptions
    from bench.execution.presets import Benchmark, ZooRecipe
    from bench.execution.runner import run_benchmark
    from bench.store.results import current_code

    zoo = (ZooRecipe("path", {"path": str(tiny_inr_zoo)}),)
    opts = RunOptions(results=tmp_path, progress=False, mirror=False, report=False)
    for options in (dict(n_pairs=2, lambdas=5), dict(n_pairs=2, lambdas=3), dict(n_pairs=3, lambdas=5, split="train")):
        run_benchmark(Benchmark("b", zoo, {"pairs": options}), ["naive"], opts)
    table = current_code(ResultStore(tmp_path).table())
    assert len(table) == 2 + 2 + 3 and table["protocol_options"].nunique() == 3
    board = leaderboard(table)
    cells = {o: int(n) for o, n in zip(board["options"], board["n"], strict=True)}
    assert cells == {"lambdas=5, n_pairs=2, split=test": 2, "lambdas=3, n_pairs=2, split=test": 2,
                     "lambdas=5, n_pairs=3, split=train": 3}
    text = markdown(table)
    assert "/ pairs [lambdas=3, n_pairs=2, split=test]\n" in text and text.count(" / pairs [") == 3
