"""Methods from outside the repository (issue 35): an installed package's entry point (group
`rebasin_bench.methods`) and a directory of method files (`--include PATH`) join the registry, run when named,
and never join a preset's run on their own; a name registered twice is refused."""

from __future__ import annotations

import importlib
import textwrap

import pytest

import methods
from bench.execution.plan import RunOptions, method_specs
from bench.execution.presets import PRESETS, Benchmark, ZooRecipe
from bench.execution.runner import run_benchmark
from bench.store.results import ResultStore

PLUGIN = textwrap.dedent('''
    from methods.base import Aligner, unchanged

    class Toy(Aligner):
        name = "{name}"
        display_name = "Toy plugin"
        description = "moves nothing, says so"

        def align(self, ref, others, target=None):
            return unchanged(self.space, ref, others, {{"plugin": 1.0}})
''')


def _install(root, name: str, package: str = "toy_rebasin_plugin"):
    """A package with an entry point, as `pip install` leaves it: the module and a dist-info on sys.path."""
    (root / f"{package}.py").write_text(PLUGIN.format(name=name))
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{methods.ENTRY_POINTS}]\ntoy = {package}:Toy\n")


@pytest.fixture
def registry(monkeypatch):
    """METHODS and ORIGINS (the same dicts every module imported) and $REBASIN_INCLUDE restored after the test."""
    saved = dict(methods.METHODS), dict(methods.ORIGINS)
    monkeypatch.delenv(methods.INCLUDE_ENV, raising=False)
    yield methods.METHODS
    for live, old in zip((methods.METHODS, methods.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


def test_an_entry_point_method_is_discovered_and_runs(tmp_path, monkeypatch, registry, tiny_inr_zoo):
    _install(tmp_path, "toy-plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    found = methods._discover()
    assert "toy-plugin" in found and methods.ORIGINS["toy-plugin"].startswith("entry point toy")
    registry.update(found)
    assert "toy-plugin" not in [s.name for s in method_specs(PRESETS["smoke"], None)]  # a preset runs what it declares
    bench = Benchmark("t", zoos=(ZooRecipe("path", {"path": str(tiny_inr_zoo)}),), protocols={"pairs": {"n_pairs": 2}})
    summary = run_benchmark(bench, ["toy-plugin"], RunOptions(results=tmp_path / "r", progress=False, mirror=False,
                                                             report=False))
    table = ResultStore(tmp_path / "r").table()
    assert summary.failed == 0 and summary.done == 2
    assert set(table["variant"]) == {"toy-plugin"} and (table["i_plugin"] == 1.0).all()


def test_a_duplicate_name_is_refused(tmp_path, monkeypatch, registry):
    _install(tmp_path, "naive", package="dup_rebasin_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(methods.DuplicateMethod, match="'naive' from entry point.*already registered.*methods.naive"):
        methods._discover()


def test_include_a_directory(tmp_path, registry):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "toy.py").write_text(PLUGIN.format(name="toy-file"))
    assert methods.include(tmp_path / "mine") == ["toy-file"]
    assert methods.make_method("toy-file").label() == "Toy plugin"
    assert methods.include(tmp_path / "mine") == []  # twice: the same classes, nothing new, no error
    assert str((tmp_path / "mine").resolve()) in methods.os.environ[methods.INCLUDE_ENV]  # for worker processes
    assert "toy-file" not in [s.name for s in method_specs(PRESETS["default"], None)]
    assert [str(s) for s in method_specs(PRESETS["default"], ["toy-file"])] == ["toy-file"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "clash.py").write_text(PLUGIN.format(name="git-rebasin"))
    with pytest.raises(methods.DuplicateMethod, match="git-rebasin"):
        methods.include(tmp_path / "other")


def test_presets_declare_todays_methods():
    """The default benchmark runs exactly the methods it ran when the default was 'every registered method'."""
    todays = ("naive", "activation-matching", "c2m3", "canonical", "cca-merge", "constant", "git-rebasin",
              "mergemany", "otfusion", "otfusion-sinkhorn", "sign-rebasin", "sinkhorn-rebasin", "ste", "zipit",
              "gnn-ae", "scalegmn-ae")
    for name in ("default", "full"):
        assert PRESETS[name].methods == todays
    # the smoke benchmark: one method of each family, so that it finishes in seconds
    assert PRESETS["smoke"].methods == ("naive", "git-rebasin", "sign-rebasin", "sinkhorn-rebasin", "c2m3",
                                        "scalegmn-ae")
    assert [s.name for s in method_specs(PRESETS["default"], None)] == [*todays, "scalegmn-ae"]


def test_every_method_declares_its_metadata():
    for name, cls in methods.METHODS.items():
        assert cls.display_name and cls.description, name
        assert not cls.arxiv or cls.reference_text().endswith(f"arXiv:{cls.arxiv}")
