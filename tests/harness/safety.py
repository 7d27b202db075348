"""Data-safety scenarios that end in success rather than a refusal: each injects one failure of a
class (keys that miss an input, a sweep trial that raises, a poisoned results folder or MLflow
backend, numbers that are not numbers, report injection) into a real run and measures what it cost.

`SCENARIOS[name](good_zoo, work)` returns a `Check`; `python -m tests.harness.reliability` puts them
beside the hostile catalogue in its per-class table, and tests/test_safety_inputs.py asserts they pass.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pandas as pd

CLASSES = {"keys": "2. hashes that miss inputs",
           "sweep": "3. a failing sweep trial",
           "poisoned": "4. one bad file in the results folder or tracking backend",
           "numbers": "6. numbers that are not numbers",
           "injection": "7. report injection"}


@dataclass
class Check:
    klass: str  # a key of CLASSES
    case: str
    runs: int = 1
    rows_expected: int = 0
    rows_lost: int = 0
    files_lost: int = 0
    passed: bool = False
    seen: str = ""  # what the run printed or did, in one line


def _bench(argv, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _run_argv(zoo: Path, results: Path, *extra) -> list:
    return ["run", "--preset", "smoke", "--zoo", zoo, "--results", results, "--methods", "naive", "--quiet", *extra]


def _first(text: str, prefix: str = "") -> str:
    return next((line for line in text.splitlines() if line.startswith(prefix)), "")


# ---- 2: keys ------------------------------------------------------------------------------------
def _keys(zoo_dir: Path, results: Path, spec: str = "naive") -> set[str]:
    from bench.execution.plan import RunOptions, plan
    from bench.execution.presets import Benchmark, ZooRecipe

    bench = Benchmark("t", zoos=(ZooRecipe("path", {"path": str(zoo_dir)}),), protocols={"pairs": {"n_pairs": 2}})
    groups = plan(bench, [spec], RunOptions(results=results, progress=False), set(), "r", {"skipped": 0})
    return {k for g in groups for b in g.batches for k in b.keys}


def _edited(change: Callable) -> Callable[[Path, Path], Check]:
    def scenario(good: Path, work: Path) -> Check:
        from zoos.zoo import load_zoo, save_zoo

        zoo = load_zoo(good)
        what = change(zoo, work)
        edited = save_zoo(zoo, work / "edited") if what is None else what
        before, after = _keys(good, work / "r"), _keys(edited, work / "r")
        reused = len(before & after)
        return Check("keys", scenario.__doc__, rows_expected=len(after), passed=reused == 0 and len(after) > 0,
                     seen=f"{reused} of {len(after)} unit keys reused")
    return scenario


def _spec_edit(zoo, work):
    from zoos.zoo import save_zoo

    out = save_zoo(zoo, work / "edited")
    spec = out / "spec.json"
    spec.write_text(spec.read_text().replace('"output_offset": 0.5', '"output_offset": 0.25'))
    return out


def _targets_edit(zoo, work):
    zoo.targets = zoo.targets.flip(-1)


def _splits_edit(zoo, work):
    zoo.meta["split"] = zoo.meta["split"].iloc[::-1].to_numpy()


spec_edit = _edited(_spec_edit)
spec_edit.__doc__ = "spec.json output offset edited (same weights)"
targets_edit = _edited(_targets_edit)
targets_edit.__doc__ = "INR target images changed (same weights)"
splits_edit = _edited(_splits_edit)
splits_edit.__doc__ = "network splits reassigned (same weights)"


def equivalent_specs(good: Path, work: Path) -> Check:
    specs = ["git-rebasin[max_sweeps=10]", "git-rebasin[max_sweeps=+10]", "git-rebasin[max_sweeps=1_0]"]
    keys = [_keys(good, work / "r", s) for s in specs]
    same = all(k == keys[0] for k in keys) and keys[0] != _keys(good, work / "r", "git-rebasin[max_sweeps=11]")
    return Check("keys", "`max_sweeps=10`, `=+10`, `=1_0`: one key", passed=same,
                 seen="one key set" if same else "different keys")


# ---- 3: sweeps -----------------------------------------------------------------------------------
def sweep_trial_raises(good: Path, work: Path) -> Check:
    import optuna
    from optuna.trial import TrialState

    from bench.execution import sweep
    from bench.store.results import ResultStore

    real, calls = sweep.Objective.__call__, {"n": 0}

    def flaky(self, trial):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure")
        return real(self, trial)

    cfg = sweep.SweepConfig("git-rebasin", str(good), "pairs[n_pairs=2,lambdas=3]", trials=3, results=work,
                            progress=False, mlflow=False)
    with mock.patch.object(sweep.Objective, "__call__", flaky):
        out = sweep.run_sweep(cfg)
    trials = optuna.load_study(study_name=out["study"], storage=sweep.make_storage(None, work)).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    from bench.protocols import make_protocol
    from zoos.zoo import load_zoo

    rows = ResultStore(work / "sweeps").table()
    ok_rows = rows[rows.error.isna()]
    expected = 3 * len(make_protocol("pairs", n_pairs=2, lambdas=3).units(load_zoo(good)))  # per complete trial
    passed = bool(out["complete"] == 3 and len(failed) == 1 and "injected failure" in failed[0].user_attrs["error"]
              and (rows.error.notna() & (rows.trial == failed[0].number)).sum() == 1)
    return Check("sweep", "an exception inside trial 1 of 3", runs=1, rows_expected=expected,
                 rows_lost=max(0, expected - len(ok_rows)), passed=passed,
                 seen=f"{out['complete']} complete, {out['failed']} failed: {failed[0].user_attrs.get('error', '')}"
                 if failed else "no failed trial")


# ---- 4: a poisoned results folder ---------------------------------------------------------------------
def poisoned_parts(good: Path, work: Path) -> Check:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.store.results import QUARANTINE, ResultStore

    store = ResultStore(work)
    store.append([{"key": f"k{i}", "unit": f"u{i}", "loss_barrier": 0.1 * i, "error": None} for i in range(5)])
    bad = {"truncated": b"PAR1\x15\x00", "empty": b""}
    for i, (name, data) in enumerate(bad.items()):
        (store.rows_dir / f"part-20990101T000000000000Z-1-00000{i}.parquet").write_bytes(data)
    pq.write_table(pa.table({"x": [1, 2]}), store.rows_dir / "part-20990101T000000000000Z-1-000008.parquet")
    os.mkfifo(store.rows_dir / "part-20990101T000000000000Z-1-000009.parquet")
    names = sorted(p.name for p in store.parts())[1:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        table = ResultStore(work).table()
    kept = sum((store.rows_dir / QUARANTINE / n).exists() for n in names)
    lost = 5 - len(table)
    return Check("poisoned", "truncated, empty, foreign and FIFO Parquet parts", rows_expected=5, rows_lost=lost,
                 files_lost=len(names) - kept, passed=lost == 0 and kept == len(names),
                 seen=f"{kept} parts moved to rows/{QUARANTINE}/, {len(table)} rows read")


def mlflow_db_garbage(good: Path, work: Path) -> Check:
    results = work / "results"
    results.mkdir(parents=True)
    (results / "mlflow.db").write_text("not a database")
    proc = _bench(_run_argv(good, results, "--no-report"))
    from bench.store.results import ResultStore

    rows = ResultStore(results).table()
    mirror = _bench(["mirror", "--results", results])  # the mirror command itself: one line, exit 2
    mirror_lines = mirror.stderr.strip().splitlines()
    kept = (results / "mlflow.db").read_text() == "not a database"
    line = _first(proc.stderr, "mlflow:")
    return Check("poisoned", "mlflow.db that is not a database", rows_expected=len(rows),
                 rows_lost=int(rows.error.notna().sum()) if len(rows) else 1, files_lost=int(not kept),
                 passed=proc.returncode == 0 and kept and "not an SQLite database" in line and mirror.returncode == 2
                 and len(mirror_lines) == 1
                 and mirror_lines[0].startswith(f"bench: error: {results / 'mlflow.db'}: not an SQLite"),
                 seen=line[:200])


def tracking_unreachable(good: Path, work: Path) -> Check:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    argv = _run_argv(good, work / "results", "--no-report")
    first = _bench(argv, env)
    start = time.perf_counter()
    again = _bench(argv, env)  # nothing left to do: only the mirror
    took = time.perf_counter() - start
    return Check("poisoned", "tracking server unreachable (run with nothing to do)", runs=2,
                 passed=first.returncode == 0 and again.returncode == 0 and took < 60,
                 seen=f"{took:.1f} s; {_first(again.stderr, 'mlflow:')[:120]}")


# ---- 6: numbers that are not numbers -----------------------------------------------------------------
def huge_weights(good: Path, work: Path) -> Check:
    from bench.store.results import ResultStore
    from zoos.zoo import load_zoo, save_zoo

    zoo = load_zoo(good)
    last = zoo.space.layers[-1].weight
    zoo.params[last] = zoo.params[last] * 1e30
    zoo.meta.attrs.pop("content_hash", None)
    bad = save_zoo(zoo, work / "huge")
    proc = _bench(_run_argv(bad, work / "results", "--no-report", "--no-mlflow"))
    rows = ResultStore(work / "results").table()
    failed = rows[rows.error.notna()]
    listed = [line for line in proc.stdout.splitlines() if line.strip().startswith("failed:")]
    ok = rows[rows.error.isna()] if len(rows) else rows
    nan_shown = bool(len(ok)) and bool(ok.get("loss_barrier", pd.Series(dtype=float)).isna().any())
    return Check("numbers", "last-layer weights x 1e30 (outputs overflow float32)", rows_expected=len(rows),
                 passed=proc.returncode == 1 and len(failed) > 0 and bool(listed) and not nan_shown
                 and failed.error.str.contains("non-finite").all(),
                 seen=f"exit {proc.returncode}; {_first(proc.stdout, 'units:')}; {(listed or [''])[0].strip()[:120]}")


def cli_ranges(good: Path, work: Path) -> Check:
    cases = [(["run", "--threads", "0"], "--threads"), (["run", "--seed", str(2**64)], "--seed"),
             (["zoo", "build", "inr", "--images", "0", "--out", work / "x"], "--images"),
             (["zoo", "build", "cnn", "--channels", "0", "--out", work / "x"], "--channels")]
    bad = []
    for argv, option in cases:
        proc = _bench(argv)
        if proc.returncode != 2 or f"argument {option}" not in proc.stderr.strip().splitlines()[-1]:
            bad.append(option)
    return Check("numbers", "--threads 0, a 2^64 seed, --images 0, --channels 0", runs=len(cases), passed=not bad,
                 seen="each named its option" if not bad else f"not named: {', '.join(bad)}")


# ---- 7: report injection -----------------------------------------------------------------------------
def zoo_name_markdown(good: Path, work: Path) -> Check:
    from zoos.zoo import load_zoo, save_zoo

    zoo = load_zoo(good)
    zoo.name = "evil\n## Forged section\n<script>alert(1)</script> \\input{/etc/passwd}"
    evil = save_zoo(zoo, work / "evil")
    results = work / "results"
    proc = _bench(_run_argv(evil, results, "--no-mlflow"))
    md = (results / "leaderboard.md").read_text() if (results / "leaderboard.md").exists() else ""
    html = (results / "leaderboard.html").read_text() if (results / "leaderboard.html").exists() else ""
    tex = (results / "leaderboard.tex").read_text() if (results / "leaderboard.tex").exists() else ""
    live_tex = [line for line in tex.splitlines() if not line.startswith("%")]  # comments are inert
    forged = ("\n## Forged" in md or "<script>alert" in html or any("\\input{/etc" in line for line in live_tex))
    return Check("injection", "zoo name with a newline, a Markdown heading, <script> and \\input",
                 passed=proc.returncode == 0 and bool(md and html and tex) and not forged,
                 seen="report files written, nothing forged" if not forged else "forged text in the report")


SCENARIOS: dict[str, Callable[[Path, Path], Check]] = {
    "spec-edit": spec_edit, "targets-edit": targets_edit, "splits-edit": splits_edit,
    "equivalent-specs": equivalent_specs, "sweep-trial-raises": sweep_trial_raises,
    "poisoned-parts": poisoned_parts, "mlflow-db-garbage": mlflow_db_garbage,
    "tracking-unreachable": tracking_unreachable, "huge-weights": huge_weights, "cli-ranges": cli_ranges,
    "zoo-name-markdown": zoo_name_markdown}


def run_all(good: Path, work: Path, progress: bool = True) -> list[Check]:
    checks = []
    for name, scenario in SCENARIOS.items():
        where = Path(work) / name
        where.mkdir(parents=True, exist_ok=True)
        try:
            check = scenario(Path(good), where)
        except Exception as e:  # noqa: BLE001 - a crash is a result here
            check = Check("?", name, seen=f"crashed: {type(e).__name__}: {e}".splitlines()[0])
        checks.append(check)
        if progress:
            print(f"{'ok  ' if check.passed else 'FAIL'} {check.case}: {check.seen}", flush=True)
    return checks


def class_table(hostile_rows: list[dict], checks: list[Check]) -> pd.DataFrame:
    """One row per class of failure: cases, runs, rows lost, files lost, verdict."""
    from tests.harness import hostile

    names = {**hostile.CLASSES, **CLASSES}
    rows = [{"class": names[r["klass"]], "case": r["case"], "runs": r["runs"], "rows_lost": 0,
             "files_lost": r["files_lost"], "passed": r["passed"]} for r in hostile_rows]
    rows += [{"class": names.get(c.klass, c.klass), "case": c.case, "runs": c.runs, "rows_lost": c.rows_lost,
              "files_lost": c.files_lost, "passed": c.passed} for c in checks]
    frame = pd.DataFrame(rows)
    out = frame.groupby("class", sort=True).agg(cases=("case", "nunique"), runs=("runs", "sum"),
                                                rows_lost=("rows_lost", "sum"), files_lost=("files_lost", "sum"),
                                                failed=("passed", lambda p: int((~p.astype(bool)).sum())))
    out["verdict"] = ["pass" if f == 0 and r == 0 and fl == 0 else
                      "FAIL (" + ", ".join(f"{n} {what}" for n, what in ((f, "case(s) failed"), (r, "row(s) lost"),
                                                                         (fl, "file(s) lost")) if n) + ")"
                      for f, r, fl in zip(out.failed, out.rows_lost, out.files_lost, strict=True)]
    return out.drop(columns="failed").reset_index()
