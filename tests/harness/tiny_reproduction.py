"""A reproduction small enough for tests (`python -m tests.harness.tiny_reproduction ARGS...` runs
`bench reproduce tiny ARGS...` with it registered): Git Re-Basin's MLP recipe at width 8, one epoch.
With TINY_PAUSE_S set, the run pauses that long after each results part it writes, so that a test's kill
lands between two parts (the whole run takes less time than a test can poll for its first part)."""

import os
import sys
import time

from bench import reproduce
from bench.execution import reproductions
from bench.execution.presets import Benchmark, ZooRecipe
from bench.report.reproductions import Setting

TINY = reproductions.Reproduction(
    paper="a test", deviations=("tiny",), budget="seconds",
    benchmarks=(Benchmark("tiny-pairs", zoos=(ZooRecipe("mlp", dict(recipe="git-rebasin-mlp", widths=(8,), n_nets=4,
                                                                     epochs=1, n_eval=256, splits=(0.0, 0.0, 1.0))),),
                          protocols={"pairs": dict(n_pairs=2, lambdas=5)},
                          methods=("naive", "git-rebasin", "ste[batch=64,steps=3]")),))
TINY_REPORT = reproduce.Report(title="tiny", zoos={"mlp-8": ("tiny-pairs", 0)},
                               settings=(Setting("wm", "mlp-8", "git-rebasin", "loss_barrier", "~0", at_most=10.0),),
                               trends={"width": ({"mlp-8": 8}, "width", ("naive", "git-rebasin"))})


def register() -> None:
    reproductions.REPRODUCTIONS["tiny"] = TINY
    reproduce.REPORTS["tiny"] = TINY_REPORT


def pause_after_each_part(seconds: float) -> None:
    from bench.store.results import ResultStore

    append = ResultStore.append

    def append_then_pause(self, rows):
        path = append(self, rows)
        time.sleep(seconds)
        return path

    ResultStore.append = append_then_pause


if __name__ == "__main__":
    register()
    if os.environ.get("TINY_PAUSE_S"):
        pause_after_each_part(float(os.environ["TINY_PAUSE_S"]))
    from bench.cli import main

    sys.exit(main(["reproduce", "tiny", *sys.argv[1:]]))
