"""Archives of results folders: the committed tables regenerate from the committed rows, byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.store.archive import MARKER, archive_results

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = "results/archive/default"  # the default benchmark's rows behind the committed tables
# the command the committed tables come from (README, `make tables`): run from the repository root
REGENERATE = ["report", "--results", ARCHIVE, "--into", "results"]
TABLES = ["leaderboard.md", "leaderboard.tex", "leaderboard.html",
          "comparison.md", "comparison.tex", "comparison.html", "comparison.csv"]


def test_committed_tables_regenerate_from_the_committed_archive(tmp_path, monkeypatch, capsys):
    """A fresh clone's `bench report --results results/archive/default --into results` writes the committed
    tables unchanged: every number in them comes from rows in the repository."""
    shutil.copytree(ROOT / ARCHIVE, tmp_path / ARCHIVE)
    monkeypatch.chdir(tmp_path)  # the same relative paths, so the header's command is the committed one
    assert main(REGENERATE) == 0
    for name in TABLES:
        assert (tmp_path / "results" / name).read_bytes() == (ROOT / "results" / name).read_bytes(), name


def _run(results: Path, zoo: Path) -> None:
    from bench.execution.plan import RunOptions
    from bench.execution.presets import Benchmark, ZooRecipe
    from bench.execution.runner import run_benchmark

    opts = RunOptions(results=results, progress=False, mirror=False, report=False)
    bench = Benchmark("b", (ZooRecipe("path", {"path": str(zoo)}),), {"pairs": dict(n_pairs=2, lambdas=3)})
    run_benchmark(bench, ["naive", "git-rebasin"], opts)
    run_benchmark(bench, ["git-rebasin[init=identity]"], opts)  # a second part: the archive holds one


def test_an_archive_reports_what_its_source_reports(tiny_inr_zoo, tmp_path, monkeypatch, capsys):
    results, archive = tmp_path / "results", tmp_path / "archive"
    _run(results, tiny_inr_zoo)
    manifest = archive_results(results, archive)
    assert manifest["rows"] == 3 * 2 and len(list((archive / "rows").glob("*.parquet"))) == 1
    monkeypatch.chdir(tmp_path)
    for source, into in (("results", "a"), ("archive", "b")):
        assert main(["report", "--results", source, "--into", into]) == 0
    for name in TABLES:  # the same but for the header's command
        a, b = ((tmp_path / d / name).read_text().splitlines() for d in "ab")
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1, name
    assert "from rows made at commit" in (tmp_path / "b" / "leaderboard.md").read_text().splitlines()[0]
    assert not (tmp_path / "archive" / "leaderboard.md").exists()  # --into: nothing written beside the rows


def test_archive_replaces_only_an_archive(tiny_inr_zoo, tmp_path):
    results = tmp_path / "results"
    _run(results, tiny_inr_zoo)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not an archive"):
        archive_results(results, mine)
    assert (mine / "notes.txt").read_text() == "keep"
    archive = tmp_path / "archive"
    archive_results(results, archive)
    (archive / "rows" / "extra.txt").write_text("x")  # replaced as a whole: nothing of the old one stays
    assert json.loads((archive / MARKER).read_text())["rows"] == archive_results(results, archive)["rows"]
    assert not (archive / "rows" / "extra.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_committed_reproductions_regenerate_from_their_archive(tmp_path, monkeypatch, capsys):
    """results/reproductions.md comes from results/archive/reproductions (rows, the reference packages' scores,
    wall times, and each zoo's spec and metadata: the MLP zoos' weights, 57 MB each, are left out)."""
    source = "results/archive/reproductions"
    shutil.copytree(ROOT / source, tmp_path / source)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--report-only", "--results", source, "--into", "results"]) == 0
    assert (tmp_path / "results/reproductions.md").read_bytes() == (ROOT / "results/reproductions.md").read_bytes()


def test_a_zoo_card_describes_a_zoo_without_its_weights(tiny_inr_zoo, tmp_path):
    from zoos.zoo import ZooError, load_zoo, load_zoo_card

    card_dir = tmp_path / "card"
    card_dir.mkdir()
    for name in ("spec.json", "metadata.parquet"):
        shutil.copy2(tiny_inr_zoo / name, card_dir / name)
    zoo, card = load_zoo(tiny_inr_zoo), load_zoo_card(card_dir)
    assert (card.name, len(card), card.content_hash(), card.task) == (zoo.name, len(zoo), zoo.content_hash(), zoo.task)
    (card_dir / "metadata.parquet").write_bytes(b"not parquet")
    with pytest.raises(ZooError, match="metadata.parquet"):
        load_zoo_card(card_dir)


def test_committed_perf_reports_regenerate_from_their_tables(tmp_path, capsys):
    """results/perf.md and perf_gpu.md are pure functions of the committed perf.parquet / perf_gpu.parquet."""
    assert main(["perf", "--report-only", "--results", str(ROOT / "results"), "--into", str(tmp_path)]) == 0
    for name in ("perf.md", "perf_gpu.md"):
        assert (tmp_path / name).read_bytes() == (ROOT / "results" / name).read_bytes(), name


def test_the_perf_report_module_imports_on_its_own():
    """bench.perf.markdown reads the suites' targets; the suites package once imported it back (a cycle that
    only an import of the suites first hid)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import bench.perf.markdown"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]


def test_committed_claims_regenerate_from_their_archive(tmp_path, monkeypatch, capsys):
    """results/claims.md comes from results/archive/claims: the claim runs' rows (the default benchmark's
    reused, plus the width-study zoos') and every claim zoo's card, whose hash keys the claims' rows."""
    source = "results/archive/claims"
    shutil.copytree(ROOT / source, tmp_path / source)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--claims", "--report-only", "--results", source, "--into", "results"]) == 0
    assert (tmp_path / "results/claims.md").read_bytes() == (ROOT / "results/claims.md").read_bytes()


def test_committed_autoencoder_study_regenerates_from_its_archive(tmp_path, monkeypatch, capsys):
    """results/autoencoder.md comes from results/archive/ae-study (the study's rows, measurements.parquet and zoo
    cards; no weights, no checkpoints) and the committed perf tables its paper-preset estimate reads."""
    shutil.copytree(ROOT / "results/archive/ae-study", tmp_path / "results/archive/ae-study")
    for name in ("perf.parquet", "perf_gpu.parquet"):
        shutil.copy(ROOT / "results" / name, tmp_path / "results" / name)
    monkeypatch.chdir(tmp_path)
    assert main(["ae", "study", "--report-only", "--results", "results/archive", "--into", "results"]) == 0
    assert (tmp_path / "results/autoencoder.md").read_bytes() == (ROOT / "results/autoencoder.md").read_bytes()


def test_claims_report_only_needs_the_claims_zoos(tmp_path, capsys):
    """`bench report --claims --report-only` runs nothing: without the claims' zoos it says so in one line."""
    assert main(["report", "--claims", "--report-only", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no zoo for claim zoo(s)" in err[0] and "bench report --claims" in err[0]
