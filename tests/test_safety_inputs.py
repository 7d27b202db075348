"""Data safety, part two: inputs that would hang or exhaust memory are refused by name before they
are read, a broken MLflow backend costs a warning (not the run), a failing sweep trial costs one
trial (not the sweep), and the evaluation data is part of every result key."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import struct
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.store.results import ResultStore
from tests.harness import hostile, safety
from zoos.data import DataError, read_idx
from zoos.files import INPUT_LIMIT_ENV, InputError, check_input, read_input
from zoos.formats import _load_state_dict
from zoos.tasks import ClassifierTask, make_task, zoo_fingerprint
from zoos.zoo import ZooError, load_zoo, save_zoo


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block blocks longer than `seconds`."""
    def fail(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _cli(argv) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue().splitlines()


# ---- class 5: inputs that hang or exhaust memory ----------------------------------------------------
def test_a_fifo_is_refused_before_it_is_opened(tiny_inr_zoo, tmp_path):
    zoo = save_zoo(load_zoo(tiny_inr_zoo), tmp_path / "zoo")
    (zoo / "weights.safetensors").unlink()
    os.mkfifo(zoo / "weights.safetensors")  # opening it for reading would block until a writer comes
    with deadline(30):
        with pytest.raises(ZooError, match="weights.safetensors: a FIFO, not a regular file"):
            load_zoo(zoo)
        code, err = _cli(["zoo", "info", zoo])
    assert code == 2 and len(err) == 1 and "a FIFO" in err[0]
    idx = tmp_path / "idx"
    idx.mkdir()
    os.mkfifo(idx / "t10k-images-idx3-ubyte")
    with deadline(30), pytest.raises(DataError, match="t10k-images-idx3-ubyte: a FIFO"):
        read_idx(idx / "t10k-images-idx3-ubyte")
    with pytest.raises(InputError, match="a directory, not a regular file"):
        check_input(tmp_path)


def _idx_header(dims, dtype=0x08) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def test_idx_headers_are_checked_before_the_payload(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as fh:  # promises 2^32 x 28 x 28 doubles: ~25 TB, in a few bytes
        fh.write(_idx_header((2**32 - 1, 28, 28), 0x0E) + bytes(1000))
    with deadline(10), pytest.raises(DataError, match="header promises shape .* more than"):
        read_idx(bomb)
    overflow = tmp_path / "overflow-idx"
    overflow.write_bytes(_idx_header((2**32 - 1,) * 4) + bytes(64))  # a product past int64 once
    with pytest.raises(DataError, match="header promises"):
        read_idx(overflow)
    ok = tmp_path / "ok-idx"
    ok.write_bytes(_idx_header((2, 3)) + bytes(range(6)))
    assert read_idx(ok).tolist() == [[0, 1, 2], [3, 4, 5]]
    ok.write_bytes(_idx_header((2, 3)) + bytes(range(5)))
    with pytest.raises(DataError, match="truncated"):
        read_idx(ok)


def test_gzip_bombs_stop_at_the_limit(tmp_path, monkeypatch):
    csv = tmp_path / "metrics.csv.gz"
    with gzip.open(csv, "wb") as fh:
        fh.write(b"a,b\n" + b"1,2\n" * 500_000)  # 2 MB inflated from a few KB
    assert len(read_input(csv)) == 2_000_004
    monkeypatch.setenv(INPUT_LIMIT_ENV, str(2**20))
    with pytest.raises(InputError, match="metrics.csv.gz: decompresses to more than 1 MiB"):
        read_input(csv)


def test_state_dict_archives_are_sized_before_torch_reads_them(tmp_path):
    path = tmp_path / "net0.pth"
    torch.save({"w": torch.zeros(3)}, path)
    assert _load_state_dict(path)["w"].shape == (3,)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:  # 200 MB of zeros in ~200 KB
        archive.writestr("archive/data/0", bytes(200 * 2**20))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(ZooError, match="bomb.pth: zip members inflate to 200 MiB"):
        _load_state_dict(bomb)
    many = tmp_path / "many.pth"
    with zipfile.ZipFile(many, "w") as archive:  # a 'state dict' of 5000 tensors
        for i in range(5000):
            archive.writestr(f"archive/data/{i}", b"")
    with pytest.raises(ZooError, match="many.pth: a zip archive of 5000 members"):
        _load_state_dict(many)


def test_a_metadata_table_promising_too_much_is_refused(tiny_inr_zoo, tmp_path, monkeypatch):
    zoo = save_zoo(load_zoo(tiny_inr_zoo), tmp_path / "zoo")
    meta = pd.read_parquet(zoo / "metadata.parquet")
    meta["padding"] = [chr(65 + i % 26) * 200_000 for i in range(len(meta))]  # compresses to nothing, inflates to 4 MB
    meta.to_parquet(zoo / "metadata.parquet", index=False)
    assert (zoo / "metadata.parquet").stat().st_size < 2**20
    monkeypatch.setenv(INPUT_LIMIT_ENV, str(2 * 2**20))
    with pytest.raises(ZooError, match="metadata.parquet: row groups promise .* more than the 2 MiB"):
        load_zoo(zoo)


def test_a_results_part_that_is_a_fifo_is_set_aside(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.append([{"key": "k1", "unit": "u", "error": None}])
    fifo = store.rows_dir / "part-20990101T000000000000Z-1-000000.parquet"
    os.mkfifo(fifo)
    with deadline(30):
        assert ResultStore(tmp_path).done_keys() == {"k1"}
    assert (store.rows_dir / "quarantine" / fifo.name).exists() and "a FIFO" in capsys.readouterr().err


# ---- classes 3 and 4 (a failing sweep trial, a broken MLflow backend): the scenarios below -------------
# ---- class 2: the evaluation data is in the key ----------------------------------------------------
def test_the_evaluation_data_changes_the_fingerprint(tiny_inr_zoo, tmp_path):
    zoo = load_zoo(tiny_inr_zoo)
    base = zoo_fingerprint(zoo, make_task(zoo))
    assert base == zoo_fingerprint(zoo, make_task(zoo))  # deterministic
    zoo.targets = zoo.targets.flip(-1)  # other images, same weights and spec
    assert zoo_fingerprint(zoo, make_task(zoo)) != base
    zoo = load_zoo(tiny_inr_zoo)
    zoo.meta["split"] = zoo.meta["split"].iloc[::-1].to_numpy()  # other units
    assert zoo_fingerprint(zoo, make_task(zoo)) != base
    # a classifier scored on "auto": digits and Fashion-MNIST give different keys
    from zoos.space import cnn_zoo_space

    space = cnn_zoo_space("relu", channels=2)
    digits, other = ClassifierTask(space, "digits", n_eval=64), ClassifierTask(space, "digits", n_eval=32)
    assert digits.fingerprint() != other.fingerprint()
    idx = tmp_path / "idx"
    idx.mkdir()
    for stem, n in (("train", 4), ("t10k", 3)):
        images = np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)
        (idx / f"{stem}-images-idx3-ubyte").write_bytes(_idx_header((n, 28, 28)) + images.tobytes())
        (idx / f"{stem}-labels-idx1-ubyte").write_bytes(_idx_header((n,)) + bytes(range(n)))
    mine = ClassifierTask(space, str(idx), n_eval=64).fingerprint()
    (idx / "t10k-labels-idx1-ubyte").write_bytes(_idx_header((3,)) + bytes([2, 1, 0]))
    assert mine not in (digits.fingerprint(), ClassifierTask(space, str(idx), n_eval=64).fingerprint())


# ---- every class, as `make reliability` measures it ----------------------------------------------------
@pytest.mark.parametrize("name", list(safety.SCENARIOS))
def test_safety_scenario_passes(name, tiny_inr_zoo, tmp_path):
    check = safety.SCENARIOS[name](tiny_inr_zoo, tmp_path)
    assert check.passed and check.rows_lost == 0 and check.files_lost == 0, check


def test_the_class_table_counts_a_failure():
    rows = [{"klass": "user-data", "case": "a", "runs": 1, "files_lost": 1, "passed": False},
            {"klass": "hang-or-memory", "case": "b", "runs": 2, "files_lost": 0, "passed": True}]
    checks = [safety.Check("sweep", "c", runs=1, rows_lost=0, passed=True)]
    table = safety.class_table(rows, checks).set_index("class")
    assert table.loc[hostile.CLASSES["user-data"], "verdict"].startswith("FAIL")
    assert table.loc[hostile.CLASSES["hang-or-memory"], "runs"] == 2
    assert table.loc[safety.CLASSES["sweep"], "verdict"] == "pass"


def test_every_protocol_option_has_a_declared_type_and_range():
    import dataclasses

    from bench.protocols import PROTOCOLS, OptionError, make_protocol

    for name, cls in PROTOCOLS.items():
        declared = cls.declared()
        assert {f.name for f in dataclasses.fields(cls)} <= set(declared), name
        make_protocol(name)  # the defaults are in range
        with pytest.raises(OptionError, match="unknown option"):
            make_protocol(name, bogus=1)
    with pytest.raises(OptionError, match="not a boolean"):
        make_protocol("merge", repair="ture")  # a Python value of the wrong type, not only spec text


# ---- issue 34, the campaign's low cases: Ctrl-C in a sweep, renamed zoo copies, --out, bench ae ---------------
@pytest.mark.parametrize("where", ["stamping", "after-tell"])
def test_ctrl_c_between_ask_and_tell_gives_the_trial_back(where, tiny_inr_zoo, tmp_path, monkeypatch):
    """A Ctrl-C while the worker stamps its trial (before the objective runs) used to leave it RUNNING, and
    the rerun waited GRACE_S (300 s) for it; now it is failed as stale and its parameters queued again. A
    Ctrl-C after the trial's `tell` leaves the complete trial alone."""
    import optuna
    from optuna.trial import Trial, TrialState

    from bench.execution import sweep

    cfg = sweep.SweepConfig("git-rebasin", str(tiny_inr_zoo), "pairs[n_pairs=2,lambdas=3]", trials=3,
                            results=tmp_path, progress=where == "after-tell", mlflow=False)
    with monkeypatch.context() as patch:
        if where == "stamping":
            real = Trial.set_user_attr

            def interrupted(self, key, value):
                if key == "pid":
                    raise KeyboardInterrupt
                return real(self, key, value)
            patch.setattr(Trial, "set_user_attr", interrupted)
        else:
            def interrupted_log(cfg, text):
                if text.startswith("trial 0 "):
                    raise KeyboardInterrupt
            patch.setattr(sweep.workers, "_log", interrupted_log)
        with pytest.raises(KeyboardInterrupt):
            sweep.run_sweep(cfg)
    study = optuna.load_study(study_name=optuna.get_all_study_names(sweep.make_storage(None, tmp_path))[0],
                              storage=sweep.make_storage(None, tmp_path))
    first = study.get_trials()[0]
    assert first.user_attrs["default"] and TrialState.RUNNING not in {t.state for t in study.get_trials()}
    if where == "stamping":
        assert first.state == TrialState.FAIL and first.user_attrs["stale"]
        assert [t.user_attrs.get("retry_of") for t in study.get_trials() if t.state == TrialState.WAITING] == [0]
    else:
        assert first.state == TrialState.COMPLETE and "stale" not in first.user_attrs
    start = time.perf_counter()
    out = sweep.run_sweep(cfg)
    assert out["complete"] == 3 and time.perf_counter() - start < 60  # no wait for a ghost trial
    done = [t for t in optuna.load_study(study_name=study.study_name, storage=sweep.make_storage(None, tmp_path))
            .get_trials() if t.state == TrialState.COMPLETE]
    assert sum(bool(t.user_attrs.get("default")) for t in done) == 1  # the defaults ran once, retried or not


def test_a_trial_never_stamped_is_reclaimed_after_a_heartbeat(tmp_path, monkeypatch):
    """Ctrl-C inside `ask` itself leaves a RUNNING trial without host or pid: reclaimed after HEARTBEAT_S, not
    GRACE_S."""
    import optuna

    from bench.execution import sweep

    study = optuna.create_study(storage=sweep.make_storage(None, tmp_path), study_name="s")
    ghost = study.ask()
    assert sweep.reclaim_stale(study) == []  # a worker stamps its trial right after ask: not yet
    later = time.time() + sweep.HEARTBEAT_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert sweep.reclaim_stale(study) == [ghost.number]


def test_a_zoo_content_run_under_two_names_is_one_section():
    from bench.report.comparison import select
    from bench.report.rows import with_zoo_labels

    rows = pd.DataFrame([{"zoo": z, "zoo_hash": h, "variant": v, "protocol": "pairs", "key": f"{z}{h}{v}"}
                         for z, h, v in (("inr", "aaaaaaaa", "naive"), ("inr-copy", "aaaaaaaa", "git-rebasin"),
                                         ("inr", "bbbbbbbb", "naive"), ("other", "cccccccc", "naive"))])
    labels = dict(zip(rows["key"], with_zoo_labels(rows)["zoo"], strict=True))
    assert labels == {"inraaaaaaaanaive": "inr = inr-copy #aaaaaa",
                      "inr-copyaaaaaaaagit-rebasin": "inr = inr-copy #aaaaaa",
                      "inrbbbbbbbbnaive": "inr #bbbbbb", "otherccccccccnaive": "other"}
    assert set(select(rows, zoos=["inr-copy"])["variant"]) == {"naive", "git-rebasin"}  # the content, any name
    assert set(select(rows, zoos=["other"])["zoo_hash"]) == {"cccccccc"}


def test_report_out_marks_its_files_and_refuses_the_users(tmp_path):
    from bench.report.comparison import FORMATS, OUT_MARKER, mark
    from zoos.files import OutputError, check_ours

    for fmt in FORMATS:
        head = mark("<!DOCTYPE html>\n<html>" if fmt == "html" else "body", fmt).splitlines()[:2]
        assert any(OUT_MARKER in line for line in head), fmt
    assert mark("<!DOCTYPE html>\n<html>", "html").startswith("<!DOCTYPE html>\n<!--")
    mine, ours, link = tmp_path / "mine.md", tmp_path / "ours.md", tmp_path / "link.md"
    mine.write_text("my notes\n")
    ours.write_text(mark("table", "md"))
    link.symlink_to(mine)
    check_ours(tmp_path / "absent.md", OUT_MARKER)
    check_ours(ours, OUT_MARKER)
    for path in (mine, link):
        with pytest.raises(OutputError, match="mine.md: an existing file that .* did not write"):
            check_ours(path, OUT_MARKER)
        check_ours(path, OUT_MARKER, force=True)
    (tmp_path / "empty.md").touch()
    check_ours(tmp_path / "empty.md", OUT_MARKER)  # nothing to lose
    os.mkfifo(tmp_path / "fifo")
    check_ours(tmp_path / "fifo", OUT_MARKER)  # streamed, never replaced (write_bytes_atomic)


def test_bench_ae_takes_only_autoencoders():
    from bench.autoencoder import autoencoders, check_autoencoder
    from methods import UnknownMethod

    assert {"scalegmn-ae", "gnn-ae"} <= set(autoencoders()) and "naive" not in autoencoders()
    assert check_autoencoder("scalegmn-ae[hidden=8]") == ("scalegmn-ae", {"hidden": "8"})
    with pytest.raises(ValueError, match="--method naive: not an autoencoder"):
        check_autoencoder("naive")
    with pytest.raises(UnknownMethod, match="unknown method 'scalegmn'"):
        check_autoencoder("scalegmn")
