"""Methods declare what they can handle; the planner skips the rest with the reason, and runs the others."""

from __future__ import annotations

from bench.execution.plan import RunOptions, plan
from bench.execution.presets import Benchmark, ZooRecipe
from bench.execution.tally import RunTally
from methods import METHODS, Aligner, MethodSpec
from methods.base import unchanged


class ClassifiersOnly(Aligner):
    name = "classifiers-only"
    tasks = ("classifier",)

    def align(self, ref, others, target=None):
        return unchanged(self.space, ref, others)


def test_unsupported_pairs_are_skipped_with_their_reason(tiny_inr_zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, ClassifiersOnly.name, ClassifiersOnly)
    bench = Benchmark("t", zoos=(ZooRecipe("path", {"path": str(tiny_inr_zoo)}),), protocols={"pairs": {"n_pairs": 2}})
    tally = RunTally()
    specs = [MethodSpec.parse("classifiers-only"), MethodSpec.parse("naive")]
    groups = list(plan(bench, specs, RunOptions(results=tmp_path, progress=False), set(), "r", tally))
    assert [str(g.spec) for g in groups] == ["naive"]  # the supported method still runs
    [(spec, zoo, reason)] = tally.skipped_pairs
    assert spec == "classifiers-only" and "classifier" in reason and "inr" in reason
