"""Data-safety scenarios that end in success rather than a refusal: each injects one failure of a
class (keys that miss an input, a sweep trial that raises, a poisoned results folder or MLflow
backend, numbers that are not numbers, report injection) into a real run and measures what it cost.

`SCENARIOS[name](good_zoo, work)` returns a `Check`; `python -m tests.harness.reliability` puts them
beside the hostile catalogue in its per-class table, and tests/test_safety_inputs.py asserts they pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
           "injection": "7. report injection",
           # issue 34 ("Data safety III"); its refusals of inputs are in tests/harness/hostile.py
           "outputs": "III.1 output paths that are not ours",
           "options": "III.2 options accepted without validation",
           "state": "III.4 state that breaks for good",
           "services": "III.5 services that are not what they claim",
           "resources": "III.6 resource bombs"}


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
    from bench.execution.tally import RunTally
    from methods import MethodSpec

    bench = Benchmark("t", zoos=(ZooRecipe("path", {"path": str(zoo_dir)}),), protocols={"pairs": {"n_pairs": 2}})
    groups = plan(bench, [MethodSpec.parse(spec)], RunOptions(results=results, progress=False), set(), "r",
                  RunTally())
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


# ---- issue 34: Data safety III ---------------------------------------------------------------------------
USER_TEXT = "the user's own notes: not the harness's to touch\n"


def _cli(argv, env: dict | None = None) -> tuple[int, str, str]:
    """`bench ARGV` in this process: (exit code, stdout, stderr); a traceback counts as exit None."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse refused an argument (its usage line, then its error line)
            code = e.code
        except BaseException as e:  # noqa: BLE001 - a crash is a result here
            code, err = None, io.StringIO(f"crashed: {type(e).__name__}: {e}")
    return code, out.getvalue(), err.getvalue()


def _one_line(code, err: str, *fragments) -> bool:
    lines = err.strip().splitlines()
    return code == 2 and len(lines) == 1 and lines[0].startswith("bench: error: ") and all(
        str(f) in lines[0] for f in fragments)


def _small_results(good: Path, results: Path) -> int:
    return _cli(_run_argv(good, results, "--no-report", "--no-mlflow", "--protocols", "pairs[n_pairs=2,lambdas=3]"))[0]


# ---- III.1 output paths ------------------------------------------------------------------------------
def report_out_special(good: Path, work: Path) -> Check:
    """`bench report --out` a FIFO (with and without a reader), /dev/full and -: streamed or refused, never
    replaced by a regular file."""
    import stat
    import threading

    results = work / "results"
    if _small_results(good, results) != 0:
        return Check("outputs", "report --out a FIFO, /dev/full, -", seen="could not write the results to report")
    argv = ["report", "--results", results, "--metric", "loss_barrier", "--out"]
    fifo = work / "table.md"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo, "rb") as fh:
            got["text"] = fh.read().decode()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)
    streamed, _, _ = _cli([*argv, fifo])
    reader.join(30)
    no_reader = _cli([*argv, fifo])
    full = _cli([*argv, "/dev/full"]) if os.path.exists("/dev/full") else (2, "", "bench: error: /dev/full: x")
    stdout = _cli([*argv, "-"])
    still_fifo = stat.S_ISFIFO(os.stat(fifo).st_mode)
    full_kept = not os.path.exists("/dev/full") or stat.S_ISCHR(os.stat("/dev/full").st_mode)
    checks = {"FIFO streamed": streamed == 0 and "loss" in got.get("text", ""),
              "FIFO with no reader refused": _one_line(no_reader[0], no_reader[2], fifo, "no reader"),
              "/dev/full refused": _one_line(full[0], full[2], "/dev/full"),
              "- to stdout": stdout[0] == 0 and "loss" in stdout[1],
              "FIFO and device kept": still_fifo and full_kept}
    failed = [k for k, ok in checks.items() if not ok]
    return Check("outputs", "`report --out` a FIFO (read / unread), /dev/full, -", runs=4,
                 files_lost=int(not (still_fifo and full_kept)), passed=not failed,
                 seen="streamed or refused in one line; FIFO and device kept" if not failed
                 else f"failed: {', '.join(failed)}")


def sweep_storage_user_files(good: Path, work: Path) -> Check:
    """`bench sweep --storage` the user's text file or SQLite database: refused, untouched."""
    import sqlite3

    notes = work / "notes.txt"
    notes.write_text(USER_TEXT)
    db = work / "mine.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (text)")
        con.execute("INSERT INTO notes VALUES ('mine')")
        con.commit()
    before = db.read_bytes()
    argv = ["sweep", "git-rebasin", "--zoo", good, "--protocol", "pairs[n_pairs=2,lambdas=3]", "--trials", "1",
            "--no-mlflow", "--quiet", "--results", work / "results", "--storage"]
    text = _cli([*argv, notes])
    sql = _cli([*argv, f"sqlite:///{db}"])
    kept = int(notes.read_text() == USER_TEXT) + int(db.read_bytes() == before)
    ok = _one_line(text[0], text[2], notes, "not an Optuna journal") and _one_line(sql[0], sql[2], db,
                                                                                   "not an Optuna database")
    return Check("outputs", "`sweep --storage` the user's notes.txt / own SQLite file", runs=2, files_lost=2 - kept,
                 passed=ok and kept == 2, seen=(text[2].strip() or text[1].strip())[:160])


def mlflow_db_user_sqlite(good: Path, work: Path) -> Check:
    """results/mlflow.db is the user's own SQLite database: the run goes on, the mirror is skipped, the
    database is not migrated."""
    import sqlite3

    results = work / "results"
    results.mkdir()
    db = results / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (text)")
        con.commit()
    before = db.read_bytes()
    code, _, err = _cli(_run_argv(good, results, "--no-report", "--protocols", "pairs[n_pairs=2,lambdas=3]"))
    mirror = _cli(["mirror", "--results", results])
    kept = db.read_bytes() == before
    line = _first(err, "mlflow:")
    return Check("outputs", "results/mlflow.db is the user's own SQLite file", runs=2, files_lost=int(not kept),
                 passed=code == 0 and kept and "without MLflow's tables" in line
                 and _one_line(mirror[0], mirror[2], db, "without MLflow's tables"), seen=line[:160])


def mirror_rebuild_shared_uri(good: Path, work: Path) -> Check:
    """Two results folders mirrored to one tracking URI, and a run made by hand: `bench mirror --rebuild` of
    one folder deletes only its own runs."""
    from bench.store import mlflow_backend, tracking
    from bench.store.results import ResultStore

    uri = f"sqlite:///{work / 'shared.db'}"
    folders = {}
    for name in ("a", "b"):
        store = ResultStore(work / name)
        store.append([{"run_id": name, "zoo": "z", "zoo_hash": "h", "protocol": "pairs", "unit": f"pair={i}",
                       "key": f"{name}{i}", "method": "naive", "variant": "naive", "error": None,
                       "loss_barrier": 0.1 * i} for i in range(2)])
        folders[name] = store
    env = {"MLFLOW_TRACKING_URI": uri}
    for name in folders:
        if _cli(["mirror", "--results", work / name], env)[0] != 0:
            return Check("outputs", "mirror --rebuild on a shared tracking URI", seen=f"mirror of {name} failed")
    with mlflow_backend.quiet_mlflow():
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(tracking.EXPERIMENT)
        hand = client.create_run(exp.experiment_id, run_name="my own notes").info.run_id
        client.set_terminated(hand)
    rebuilt = _cli(["mirror", "--rebuild", "--results", work / "a"], env)
    with mlflow_backend.quiet_mlflow():
        active = {r.info.run_id: r for r in tracking.all_runs(client, exp.experiment_id)}
    b_runs = [r for r in active.values() if r.data.tags.get(tracking.RESULTS_TAG) == tracking.results_id(work / "b")]
    check_a, check_b = (_cli(["mirror", "--check", "--results", work / n], env)[0] for n in ("a", "b"))
    lost = int(hand not in active) + int(not b_runs)
    return Check("outputs", "`mirror --rebuild` on a tracking URI shared by two results folders and a hand-made run",
                 runs=3, files_lost=lost, passed=rebuilt[0] == 0 and lost == 0 and check_a == 0 and check_b == 0,
                 seen=f"hand-made run {'kept' if hand in active else 'DELETED'}, {len(b_runs)} run(s) of the other "
                      f"folder kept; --check: a {check_a}, b {check_b}")


def zoo_out_symlink(good: Path, work: Path) -> Check:
    """`bench zoo build --out` a symlink to an empty folder, twice: the zoo goes where the link points."""
    (work / "real").mkdir()
    (work / "link").symlink_to("real")
    argv = ["zoo", "build", "inr", "--images", "1", "--steps", "2", "--data", "digits", "--quiet", "--out",
            work / "link"]
    codes = [_cli(argv)[0] for _ in range(2)]
    from zoos.zoo import is_saved_zoo

    leftovers = [p.name for p in work.iterdir() if p.name.startswith(".tmp-")]
    ok = codes == [0, 0] and (work / "link").is_symlink() and is_saved_zoo(work / "real") and not leftovers
    return Check("outputs", "`zoo build --out` through a symlink (twice)", runs=2, passed=ok,
                 seen=f"exit {codes}; link kept: {(work / 'link').is_symlink()}; temp leftovers: {leftovers}")


# ---- III.2 options -----------------------------------------------------------------------------------
BAD_OPTIONS = {"merge[repair=ture]": "not a boolean", "pairs[n_pairs=-1]": "outside", "merge[sizes=1000]": "outside",
               "orbit[eps=nan]": "not a finite number", "pairs[split=holdout]": "not one of",
               "orbit[actions=Q]": "not one of", "pairs[lambdas=1e9]": "not an integer",
               "orbit[eps=0;0]": "twice"}


def protocol_options_refused(good: Path, work: Path) -> Check:
    """Ill-typed, out-of-range, unknown and duplicate protocol options and absurd --threads: one line each,
    before any work (no results folder appears)."""
    results = work / "results"
    base = ["run", "--zoo", good, "--methods", "naive", "--no-mlflow", "--no-report", "--quiet", "--results", results]
    cases = [([*base, "--protocols", spec], spec, want) for spec, want in BAD_OPTIONS.items()]
    cases += [([*base, "--protocols", "pairs", "pairs[n_pairs=2]"], "pairs twice", "more than once"),
              ([*base, "--threads", "100000"], "--threads 100000", "argument --threads"),
              (["sweep", "git-rebasin", "--zoo", good, "--protocol", "merge[repair=ture]", "--no-mlflow", "--quiet",
                "--results", results], "sweep merge[repair=ture]", "not a boolean")]
    bad = []
    for argv, name, want in cases:
        code, _, err = _cli(argv)
        lines = err.strip().splitlines()  # argparse: its usage line, then the error naming the option
        if code != 2 or not lines or want not in lines[-1] or (not want.startswith("argument") and len(lines) != 1):
            bad.append(name)
    bad += ["results written"] if (results / "rows").exists() and any((results / "rows").iterdir()) else []
    return Check("options", "bad protocol options, a protocol twice, --threads 100000", runs=len(cases),
                 passed=not bad, seen="each refused in one line before any work" if not bad
                 else f"not refused: {', '.join(bad)}")


def default_spec_one_key(good: Path, work: Path) -> Check:
    from methods import METHODS

    default = METHODS["git-rebasin"].search_space["max_sweeps"].default
    plain, spelled = _keys(good, work / "r", "git-rebasin"), _keys(good, work / "r",
                                                                  f"git-rebasin[max_sweeps={default}]")
    other = _keys(good, work / "r", f"git-rebasin[max_sweeps={default - 1}]")
    ok = plain == spelled and plain.isdisjoint(other)
    return Check("options", f"`git-rebasin` and `git-rebasin[max_sweeps={default}]`: one key", passed=ok,
                 seen="one key set" if ok else "different keys")


# ---- III.4 state that breaks for good -------------------------------------------------------------------
def journal_cut_line(good: Path, work: Path) -> Check:
    """A sweep journal whose last record a full disk cut, then continued by the next write: the rerun repairs
    it (the original kept aside, one warning naming the file) and reaches its trials."""
    import optuna

    from bench.execution import sweep

    cfg = sweep.SweepConfig("git-rebasin", str(good), "pairs[n_pairs=2,lambdas=3]", trials=2, results=work,
                            progress=False, mlflow=False)
    first = sweep.run_sweep(cfg)
    journal = work / sweep.SWEEPS_DIR / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2] + lines[-1])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        again = sweep.run_sweep(dataclasses.replace(cfg, trials=3))
    study = optuna.load_study(study_name=again["study"], storage=sweep.make_storage(None, work))
    aside = list((journal.parent / sweep.JOURNAL_QUARANTINE).glob("optuna.journal.*"))
    warning = _first(err.getvalue(), f"bench: warning: {journal}")
    ok = first["complete"] == 2 and again["complete"] == 3 and len(study.trials) >= 3 and len(aside) == 1 \
        and str(journal) in warning
    return Check("state", "sweep journal with a cut record continued on the same line", runs=2, passed=ok,
                 files_lost=int(not aside), seen=warning[:160] or f"{again['complete']} complete")


def part_key_wrong_types(good: Path, work: Path) -> Check:
    """A results part with a `key` column of integers (and other identity columns of foreign types): set
    aside, and every run and report goes on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.store.results import QUARANTINE, ResultStore

    results = work / "results"
    if _small_results(good, results) != 0:
        return Check("state", "a part with a key column of wrong types", seen="could not write results")
    rows = len(ResultStore(results).table())
    bad = results / "rows" / "part-20990101T000000000000Z-1-000001.parquet"
    pq.write_table(pa.table({"key": [1, 2], "variant": [True, False], "error": [5.0, 6.0], "time": [1, 2]}), bad)
    report = _cli(["report", "--results", results])
    run = _cli(_run_argv(good, results, "--no-mlflow", "--protocols", "pairs[n_pairs=2,lambdas=3]"))
    kept = (results / "rows" / QUARANTINE / bad.name).exists()
    now = len(ResultStore(results).table())
    return Check("state", "a results part with a `key` column of integers", runs=2, rows_expected=rows,
                 rows_lost=max(0, rows - now), files_lost=int(not kept),
                 passed=report[0] == 0 and run[0] == 0 and kept and now == rows,
                 seen=_first(report[2], "bench: warning")[:160])


# ---- III.5 services ---------------------------------------------------------------------------------------
def scheduler_not_dask(good: Path, work: Path) -> Check:
    """`--scheduler` at an HTTP server and at a service greeting with a huge length: one line in seconds."""
    import http.server
    import threading

    http_server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    junk = socket.socket()
    junk.bind(("127.0.0.1", 0))
    junk.listen()

    def greet():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = junk.accept()
                conn.sendall(b"\xff" * 16)
                time.sleep(0.5)
                conn.close()
    threading.Thread(target=greet, daemon=True).start()
    seen, ok, took = [], True, 0.0
    try:
        for port in (http_server.server_address[1], junk.getsockname()[1]):
            address = f"tcp://127.0.0.1:{port}"
            start = time.perf_counter()
            code, _, err = _cli(["run", "--zoo", good, "--methods", "naive", "--protocols", "pairs[n_pairs=2]",
                                 "--no-mlflow", "--no-report", "--quiet", "--results", work / "results",
                                 "--scheduler", address])
            took = max(took, time.perf_counter() - start)
            ok &= _one_line(code, err, address, "not a Dask scheduler") and took < 30
            seen.append(err.strip()[:100])
    finally:
        http_server.shutdown()
        junk.close()
    return Check("services", "--scheduler at an HTTP server / a service sending garbage", runs=2, passed=ok,
                 seen=f"{took:.1f} s; {seen[0]}")


# ---- III.6 resource bombs -----------------------------------------------------------------------------------
def build_bombs(good: Path, work: Path) -> Check:
    """Absurd widths, channels and fits per image: refused in one line before any work."""
    cases = [["mlp", "--widths", "100000", "100000"], ["vgg", "--channels", "100000"], ["cnn", "--channels", "100000"],
             ["inr", "--fits-per-image", "100000"], ["inr", "--hidden", "100000"]]
    bad = []
    for extra in cases:
        start = time.perf_counter()
        code, _, err = _cli(["zoo", "build", *extra, "--data", "digits", "--quiet", "--out", work / "out"])
        if not _one_line(code, err, "of memory") or time.perf_counter() - start > 30 or (work / "out").exists():
            bad.append(" ".join(extra))
    return Check("resources", "zoo build: widths / channels / hidden 100000, 100000 fits per image", runs=len(cases),
                 passed=not bad, seen="each refused in one line before any work" if not bad
                 else f"not refused: {'; '.join(bad)}")


def idx_bomb_under_ulimit(good: Path, work: Path) -> Check:
    """Under `ulimit -v 3000000`, a gzipped IDX (5 MB) whose header promises 1.5M images: one line."""
    import gzip
    import resource
    import struct

    images = work / "images"
    images.mkdir()
    n = 1_500_000
    with gzip.open(images / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28))
        block = bytes(784 * 10_000)
        for _ in range(n // 10_000):
            fh.write(block)
    with gzip.open(images / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(n))
    limit = 3_000_000 * 1024

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "zoo", "build", "inr", "--images", "1", "--steps", "2",
                           "--data", str(images), "--quiet", "--out", str(work / "out")], capture_output=True,
                          text=True, timeout=300, preexec_fn=cap, env={**os.environ})
    lines = proc.stderr.strip().splitlines()
    ok = proc.returncode == 2 and len(lines) == 1 and str(images) in lines[0] and "Traceback" not in proc.stderr
    return Check("resources", "gzipped IDX promising 1.5M images under ulimit -v 3000000", passed=ok,
                 seen=(lines[-1] if lines else f"exit {proc.returncode}")[:160])


SCENARIOS.update({
    "report-out-special": report_out_special, "sweep-storage-user-files": sweep_storage_user_files,
    "mlflow-db-user-sqlite": mlflow_db_user_sqlite, "mirror-rebuild-shared-uri": mirror_rebuild_shared_uri,
    "zoo-out-symlink": zoo_out_symlink, "protocol-options-refused": protocol_options_refused,
    "default-spec-one-key": default_spec_one_key, "journal-cut-line": journal_cut_line,
    "part-key-wrong-types": part_key_wrong_types, "scheduler-not-dask": scheduler_not_dask,
    "build-bombs": build_bombs, "idx-bomb-under-ulimit": idx_bomb_under_ulimit})


# ---- III.1: `report --out` onto the user's own file ----------------------------------------------------
def report_out_user_file(good: Path, work: Path) -> Check:
    """`bench report --out` an existing file the harness did not write: refused in one line, the file kept;
    its own earlier output, an absent path and an empty file are replaced; `--force` replaces the user's."""
    from bench.report.comparison import OUT_MARKER

    results = work / "results"
    if _small_results(good, results) != 0:
        return Check("outputs", "report --out the user's own file", seen="could not write the results to report")
    argv = ["report", "--results", results, "--metric", "loss_barrier", "--out"]
    notes, ours, empty, forced = work / "notes.md", work / "table.md", work / "empty.tex", work / "mine.csv"
    notes.write_text(USER_TEXT)
    forced.write_text(USER_TEXT)
    empty.touch()
    refused = _cli([*argv, notes])
    first, again = _cli([*argv, ours]), _cli([*argv, ours])
    emptied = _cli([*argv, empty])
    force = _cli([*argv, forced, "--force"])
    kept = notes.read_text() == USER_TEXT
    checks = {"user's file refused": _one_line(refused[0], refused[2], notes, "did not write", "--force"),
              "user's file kept": kept,
              "own output replaced": first[0] == 0 and again[0] == 0 and OUT_MARKER in ours.read_text(),
              "empty file written": emptied[0] == 0 and OUT_MARKER in empty.read_text(),
              "--force replaces": force[0] == 0 and OUT_MARKER in forced.read_text()}
    failed = [k for k, ok in checks.items() if not ok]
    return Check("outputs", "`report --out` the user's own file (and its own, an empty one, --force)", runs=5,
                 files_lost=int(not kept), passed=not failed,
                 seen=refused[2].strip()[:160] if not failed else f"failed: {', '.join(failed)}")


# ---- III.7: the campaign's remaining low cases -----------------------------------------------------------
CLASSES["low"] = "III.7 the campaign's remaining low cases"
INTERRUPTED = "bench: interrupted; rerun the same command to resume"


def _sweep_state(results: Path):
    """(the study, its rows without error rows) of the one sweep under `results`."""
    import optuna

    from bench.execution import sweep
    from bench.store.results import ResultStore

    storage = sweep.make_storage(None, results)
    (name,) = optuna.get_all_study_names(storage)
    rows = ResultStore(results / sweep.SWEEPS_DIR).table()
    return optuna.load_study(study_name=name, storage=storage), rows[rows["error"].isna()]


def sweep_ctrl_c(good: Path, work: Path, trials: int = 8, interrupts: tuple[int, ...] = (1, 2)) -> Check:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during `bench sweep`, just after the
    k-th new trial's rows land, for each k in `interrupts`; then the same command to the end. Each
    interrupt: exit 130, the one line saying to rerun, no traceback, no trial left RUNNING. At the end:
    `trials` complete trials, each with its units' rows once and its objective their mean, no rows of a
    trial that did not complete, every interrupted trial retried."""
    import math
    import signal

    from optuna.trial import TrialState

    from bench.execution.sweep import first_attempt, trial_params

    results = work / "results"
    parts = results / "sweeps" / "rows"
    argv = [sys.executable, "-m", "bench.cli", "sweep", "git-rebasin", "--zoo", str(good), "--protocol",
            "pairs[n_pairs=2,lambdas=3]", "--trials", str(trials), "--no-mlflow", "--quiet", "--results", str(results)]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    problems, seen, stale = [], [], 0

    def attempt(i: int, after: int | None) -> tuple[int, str]:
        log = work / f"attempt-{i}.log"
        n_parts = lambda: len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0  # noqa: E731
        before = n_parts()
        with open(log, "wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=repo,
                                    start_new_session=True)
            deadline = time.monotonic() + 300
            try:
                while after is not None and proc.poll() is None and time.monotonic() < deadline:
                    if n_parts() >= before + after:
                        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
                        break
                    time.sleep(0.01)
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = -9
        return code, log.read_text(errors="replace")

    for i, after in enumerate(interrupts):
        code, text = attempt(i, after)
        lines = [line for line in text.splitlines() if line.strip()]
        if code == 0:  # it finished before the interrupt landed: nothing to check for this one
            seen.append("finished first")
            continue
        seen.append(f"exit {code}")
        if code != 130 or not lines or lines[-1] != INTERRUPTED or "Traceback" in text:
            problems.append(f"interrupt {i}: exit {code}, last line {lines[-1][:100] if lines else ''!r}")
        study, _ = _sweep_state(results)
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        problems += [f"interrupt {i}: trial(s) {running} left RUNNING"] if running else []
        stale = sum("stale" in t.user_attrs for t in study.get_trials(deepcopy=False))
    code, text = attempt(len(interrupts), None)
    if code != 0 or "Traceback" in text:
        problems.append(f"rerun: exit {code}")
    study, rows = _sweep_state(results)
    trials_now = study.get_trials(deepcopy=False)
    complete = {t.number: t for t in trials_now if t.state == TrialState.COMPLETE}
    per_trial = rows.groupby("trial").size().to_dict()
    n_units = max(per_trial.values(), default=0)
    lost = sum(n_units - per_trial.get(t, 0) for t in complete)
    problems += [f"{len(complete)} complete trials, expected {trials}"] if len(complete) != trials else []
    problems += [f"trial {t}: rows but not complete" for t in per_trial if t not in complete]
    problems += [f"{int(rows['key'].duplicated().sum())} duplicate keys"] if rows["key"].duplicated().any() else []
    for number, trial in complete.items():
        mine = rows[rows["trial"] == number]
        metric = str(mine["objective_metric"].iloc[0]) if len(mine) else ""
        if len(mine) and not math.isclose(float(mine[metric].mean()), trial.values[0], rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"trial {number}: objective != mean of its rows")
    retried = {first_attempt(t) for t in complete.values()}  # one drawing nothing yet lost nothing: not retried
    problems += [f"interrupted trial {t.number} not retried" for t in trials_now if "stale" in t.user_attrs
                 and (trial_params(t) or t.user_attrs.get("default")) and first_attempt(t) not in retried]
    return Check("low", f"Ctrl-C (SIGINT) during `bench sweep` x{len(interrupts)}, then rerun",
                 runs=len(interrupts) + 1, rows_expected=len(complete) * n_units, rows_lost=lost,
                 passed=not problems and n_units > 0,
                 seen="; ".join(problems)[:200] if problems else
                 f"{', '.join(seen)}; {stale} interrupted trial(s) retried; {len(complete)} complete, "
                 f"{n_units} rows each")


def ae_train_plain_method(good: Path, work: Path) -> Check:
    """`bench ae train|eval --method` a method that is not an autoencoder: one line, exit 2, before any zoo is
    read or results folder written."""
    results = work / "results"
    cases = [["ae", "train", "--zoo", good, "--method", "naive", "--results", results],
             ["ae", "eval", "--zoo", good, "--method", "git-rebasin[max_sweeps=10]", "--results", results],
             ["ae", "train", "--zoo", work / "no-such-zoo", "--method", "constant", "--results", results]]
    got = [_cli(argv) for argv in cases]
    ok = [_one_line(code, err, argv[5].split("[")[0], "not an autoencoder", "scalegmn-ae")
          for argv, (code, _, err) in zip(cases, got, strict=True)]
    written = results.exists()
    return Check("low", "`ae train --method naive` (and eval git-rebasin, constant)", runs=len(cases),
                 passed=all(ok) and not written,
                 seen=got[0][2].strip()[:160] if all(ok) and not written else
                 f"not one line: {[c[5] for c, o in zip(cases, ok, strict=True) if not o]}; results written: {written}")


def constant_without_train_split(good: Path, work: Path) -> Check:
    """`constant` (the training split's best network) on a zoo whose networks are all in val / test: skipped
    with its reason, the other methods run, the report written."""
    from bench.store.results import ResultStore
    from zoos.zoo import load_zoo, save_zoo

    zoo = load_zoo(good)
    zoo.meta["split"] = zoo.meta["split"].replace("train", "test").to_numpy()
    zoo.meta.attrs.pop("content_hash", None)
    no_train = save_zoo(zoo, work / "no-train")
    results = work / "results"
    code, out, err = _cli(["run", "--zoo", no_train, "--methods", "constant", "naive", "--protocols",
                           "pairs[n_pairs=2,lambdas=3]", "--no-mlflow", "--quiet", "--results", results])
    rows = ResultStore(results).table() if (results / "rows").is_dir() else pd.DataFrame()
    skipped = _first(out, "Skipped `constant`")
    methods = set(rows["method"]) if len(rows) else set()
    errors = int(rows["error"].notna().sum()) if len(rows) else 0
    ok = code == 0 and "no training network" in skipped and methods == {"naive"} and not errors \
        and (results / "leaderboard.md").is_file() and "Traceback" not in err
    return Check("low", "`constant` on a zoo with no train split", rows_expected=len(rows), passed=ok,
                 seen=skipped[:160] if ok else f"exit {code}; methods {sorted(methods)}; {errors} error rows; "
                                              f"{err.strip()[-120:]}")


def renamed_zoo_copy(good: Path, work: Path) -> Check:
    """Copies of a zoo: a renamed directory (same name, same content), a copy renamed in its spec.json (same
    content) and an edited copy under the same name (other content), methods run on each. The report has
    one section per content, its label every name the content ran under, labels distinct (the edited copy's
    by its hash), and a selection by either name reaches the content's rows."""
    import json
    import shutil

    from bench.report.rows import with_zoo_labels
    from bench.store.results import ResultStore
    from zoos.zoo import load_zoo, save_zoo

    zoo = load_zoo(good)
    name, content = zoo.name, zoo.content_hash()
    copy = work / "renamed-directory"
    shutil.copytree(good, copy)
    respec = work / "renamed-spec"
    shutil.copytree(good, respec)
    spec = json.loads((respec / "spec.json").read_text())
    spec["name"] = f"{name}-renamed"
    (respec / "spec.json").write_text(json.dumps(spec))
    first = zoo.space.layers[0].weight
    zoo.params[first] = zoo.params[first] + 1e-3
    zoo.meta.attrs.pop("content_hash", None)
    edited = save_zoo(zoo, work / "edited")
    other = load_zoo(edited).content_hash()
    results = work / "results"
    base = ["--protocols", "pairs[n_pairs=2,lambdas=3]", "--no-mlflow", "--no-report", "--quiet", "--results",
            results]
    runs = [_cli(["run", "--zoo", z, "--methods", *m, *base]) for z, m in
            ((good, ["naive"]), (copy, ["naive"]), (respec, ["git-rebasin"]), (edited, ["naive", "git-rebasin"]))]
    report = _cli(["report", "--results", results])
    picked = _cli(["report", "--results", results, "--zoos", f"{name}-renamed", "--format", "csv", "--out", "-"])
    md = (results / "leaderboard.md").read_text() if (results / "leaderboard.md").is_file() else ""
    table = with_zoo_labels(ResultStore(results).table())
    labels = {h: set(part["zoo"]) for h, part in table.groupby("zoo_hash")}
    label = {h: next(iter(ls)) for h, ls in labels.items() if len(ls) == 1}
    variants = {h: set(part["variant"]) for h, part in table.groupby("zoo_hash")}
    picked_methods = set(pd.read_csv(io.StringIO(picked[1]))["method"]) if picked[0] == 0 else set()
    checks = {"every run": all(r[0] == 0 for r in runs) and report[0] == 0,
              "copy reused the rows": "0 run, 2 already done" in runs[1][1],
              "one label per content": set(labels) == {content, other} and len(label) == 2,
              "labels distinct": len(set(label.values())) == 2,
              "renamed copy named": name in label.get(content, "") and f"{name}-renamed" in label.get(content, ""),
              "edited copy by its hash": label.get(other) == f"{name} #{other[:6]}",
              "one section per content": all(f"## {label.get(h)} / pairs" in md for h in (content, other))
              and md.count(" / pairs\n") == 2,
              "methods together": variants.get(content) == {"naive", "git-rebasin"},
              "selection by the new name": picked_methods == {"naive", "git-rebasin"}}
    failed = [k for k, ok in checks.items() if not ok]
    return Check("low", "renamed copies of a zoo (directory, spec name, edited content): section names",
                 runs=len(runs) + 2, passed=not failed,
                 seen=" | ".join(sorted(label.values()))[:160] if not failed else f"failed: {', '.join(failed)}")


SCENARIOS.update({
    "report-out-user-file": report_out_user_file, "sweep-ctrl-c": sweep_ctrl_c,
    "ae-train-plain-method": ae_train_plain_method, "constant-without-train-split": constant_without_train_split,
    "renamed-zoo-copy": renamed_zoo_copy})
