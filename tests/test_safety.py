"""Data safety: the harness replaces only what it wrote, one bad file cannot poison a results folder,
numbers that are not numbers fail their unit, keys cover the spec, report text is inert."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch

from bench.execution.batch import UnitBatch, execute
from bench.execution.plan import RunOptions, plan
from bench.execution.presets import Benchmark, ZooRecipe
from bench.execution.tally import RunTally
from bench.protocols import make_protocol
from bench.report.render import html_page, latex, markdown
from bench.store.results import ResultStore
from methods import Aligner, Alignment, MethodSpec, normalise_spec
from zoos.files import TMP_PREFIX
from zoos.tasks import make_task
from zoos.zoo import ZooError, load_zoo, save_zoo


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_save_zoo_refuses_a_folder_it_did_not_write(tiny_inr_zoo, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(ZooError, match="not a zoo this harness wrote"):
        save_zoo(load_zoo(tiny_inr_zoo), user)
    assert (user / "thesis.tex").read_text() == "years of work"
    # a folder holding our files plus one of the user's is not ours either
    out = save_zoo(load_zoo(tiny_inr_zoo), tmp_path / "zoo")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ZooError):
        save_zoo(load_zoo(tiny_inr_zoo), out)
    assert (out / "notes.txt").exists()


def test_the_cli_refuses_and_exits_2(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "data.csv").write_text("1,2,3")
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "zoo", "build", "inr", "--images", "1", "--steps", "2",
                           "--data", "digits", "--quiet", "--out", str(user)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a zoo this harness wrote" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and (user / "data.csv").read_text() == "1,2,3"


def test_a_saved_zoo_is_replaced_and_an_interrupted_swap_is_undone(tiny_inr_zoo, tmp_path):
    zoo = load_zoo(tiny_inr_zoo)
    out = save_zoo(zoo, tmp_path / "zoo")
    save_zoo(zoo, out)  # ours: replaced
    assert load_zoo(out).content_hash() == zoo.content_hash()
    # a replacement killed between its two renames: the old zoo sits under a dead writer's temp name
    moved = out.with_name(f"{TMP_PREFIX}{out.name}.old.{socket.gethostname()}.{_dead_pid()}")
    os.rename(out, moved)
    assert load_zoo(out).content_hash() == zoo.content_hash() and not moved.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_zoo(save_zoo(zoo, empty)).content_hash() == zoo.content_hash()  # an empty folder loses nothing


def test_an_unreadable_part_is_quarantined_not_fatal(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.append([{"key": "k1", "unit": "u", "loss_barrier": 0.1, "error": None}])
    bad = store.rows_dir / "part-20990101T000000000000Z-1-000000.parquet"
    bad.write_bytes(b"PAR1 truncated")
    empty = store.rows_dir / "part-20990101T000000000000Z-1-000001.parquet"
    empty.write_bytes(b"")
    table = ResultStore(tmp_path).table()
    assert list(table["key"]) == ["k1"]
    assert not bad.exists() and (store.rows_dir / "quarantine" / bad.name).read_bytes() == b"PAR1 truncated"
    assert (store.rows_dir / "quarantine" / empty.name).exists()
    assert "unreadable results part" in capsys.readouterr().err
    assert ResultStore(tmp_path).done_keys() == {"k1"}


class Exploding(Aligner):
    name = "exploding"
    exact = False  # an exact method's non-finite output fails earlier, on its functional deviation

    def align(self, ref, others, target=None):
        return Alignment(ref, {k: v * float("inf") for k, v in others.items()})


def test_units_whose_metrics_are_not_numbers_fail(tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    task = make_task(zoo)
    method = Exploding()
    method.setup(zoo, task)
    protocol = make_protocol("pairs", n_pairs=2, lambdas=3)
    units = tuple(protocol.units(zoo))
    batch = UnitBatch("", zoo.name, "h", MethodSpec("naive"), 0, "pairs", {"n_pairs": 2, "lambdas": 3},
                      keys=tuple(f"k{i}" for i in range(len(units))), units=units)
    rows, failed = execute(batch, method, zoo, task, {})
    assert failed == len(units) and all("non-finite metric(s): loss_excess" in r["error"] for r in rows)


def test_equivalent_method_specs_give_one_key():
    specs = ["git-rebasin[max_sweeps=10]", "git-rebasin[max_sweeps=+10]", "git-rebasin[max_sweeps=1_0]",
             "git-rebasin[ max_sweeps = 10 ]"]
    assert {normalise_spec(s) for s in specs} == {"git-rebasin[max_sweeps=10]"}
    assert normalise_spec("sinkhorn-rebasin[tau=0.50]") == normalise_spec("sinkhorn-rebasin[tau=5e-1]")


def test_editing_the_spec_changes_the_keys(tiny_inr_zoo, tmp_path):
    zoo = load_zoo(tiny_inr_zoo)
    edited = save_zoo(zoo, tmp_path / "edited")
    spec = (edited / "spec.json").read_text().replace('"output_offset": 0.5', '"output_offset": 0.25')
    assert spec != (edited / "spec.json").read_text()
    (edited / "spec.json").write_text(spec)  # same weights, same content hash: a different function

    def keys(path):
        bench = Benchmark("t", zoos=(ZooRecipe("path", {"path": str(path)}),), protocols={"pairs": {"n_pairs": 2}})
        groups = plan(bench, [MethodSpec.parse("naive")], RunOptions(results=tmp_path / "r", progress=False),
                      set(), "r", RunTally())
        return {k for g in groups for b in g.batches for k in b.keys}

    assert load_zoo(edited).content_hash() == zoo.content_hash()
    assert keys(tiny_inr_zoo).isdisjoint(keys(edited))


def test_report_text_from_files_cannot_forge_sections():
    rows = [{"key": f"k{i}", "zoo": "evil\n## Forged section\n| a | b |", "zoo_hash": "h", "protocol": "pairs",
             "variant": "naive<script>", "method": "naive", "unit": f"pair={i}", "loss_barrier": 0.1 * i,
             "error": None} for i in range(3)]
    text = markdown(pd.DataFrame(rows))
    assert [line for line in text.splitlines() if line.startswith("## ")] == \
        ["## Read first", "## evil ## Forged section \\| a \\| b \\| / pairs"]  # 3 units: listed first
    assert "<script>" not in text and "\\<script\\>" in text
    page = html_page(pd.DataFrame(rows))  # our own sorting script aside, nothing from the rows runs
    assert "naive<script>" not in page and "naive&lt;script&gt;" in page
    assert "\n## Forged" not in latex(pd.DataFrame(rows))


@pytest.mark.parametrize("argv, option", [(["run", "--threads", "0"], "--threads"),
                                          (["run", "--seed", str(2**64)], "--seed"),
                                          (["zoo", "build", "cnn", "--channels", "0", "--out", "x"], "--channels"),
                                          (["zoo", "build", "cnn", "--train-fraction", "0", "--out", "x"],
                                           "--train-fraction")])
def test_out_of_range_numbers_name_their_option(argv, option):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and f"argument {option}" in proc.stderr.splitlines()[-1]


def test_a_path_needs_two_points():
    with pytest.raises(ValueError, match=r"lambdas=1 must be at least 2|lambdas: 1 is outside \[2,"):
        make_protocol("pairs", lambdas=1)
    assert math.isclose(make_protocol("pairs", lambdas=2).grid()[-1].item(), 1.0) and torch.is_tensor(
        make_protocol("pairs", lambdas=2).grid())


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_zoo_and_report_files_get_the_umask_mode(tiny_inr_zoo, tmp_path, mask):
    """Every file of a saved zoo (safetensors creates its file 0600) and every atomically written file is
    0666 less the umask: 0644 under umask 022, so other users' workers can read a shared zoo."""
    from zoos.files import current_umask, write_bytes_atomic

    old = os.umask(mask)
    try:
        assert current_umask() == mask
        out = save_zoo(load_zoo(tiny_inr_zoo), tmp_path / "zoo")
        written = write_bytes_atomic(tmp_path / "report.md", lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in [*out.iterdir(), written]}
    assert "weights.safetensors" in modes and set(modes.values()) == {0o666 & ~mask}, modes
