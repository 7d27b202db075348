"""Failure injection: `bench run` and `bench sweep` SIGKILLed at random moments, concurrent runs,
repeat runs and hostile input, each checked against an uninterrupted reference.

    python -m tests.harness.reliability [--kills 10] [--out results]     # writes <out>/reliability.md

A kill chain starts the command, kills its whole process group (SIGKILL: no handler runs) after a
drawn time, starts it again on the same results directory, and so on; then lets it finish. The
kill moments are stratified over the reference run's wall time, so they land in zoo building,
method fitting, unit batches, the MLflow mirror and the report alike; an attempt that wrote nothing
(killed inside a step longer than its life) gives the next one more time. The checks:

- rows: the final table has every key of the reference table (lost = 0), no others, one row per key
  (duplicates = 0), and the same values apart from timings (`comparable`);
- half-written files: every Parquet part reads, no temp file or partial zoo is left behind, the
  report files are whole;
- the MLflow mirror is consistent with the table (`bench.store.tracking.check`; for sweeps: one finished
  nested run per complete trial).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from bench.store.results import PART_PREFIX, ResultStore
from zoos.files import write_bytes_atomic

REPO = Path(__file__).resolve().parents[2]  # tests/harness/ -> the repository
VOLATILE = ("run_id", "time")  # besides timings (*_s, *seconds) and the env_* columns
SWEEP_VOLATILE = VOLATILE + ("key", "study", "trial", "is_default")  # what names a trial rather than measures it
# the default smoke benchmark, every method: about 1.5 minutes uninterrupted on 2 cores
RUN_ARGS = ("run", "--preset", "smoke", "--quiet")
# on the train split: the smoke INR zoo's test split holds a single pair
SWEEP_ARGS = ("sweep", "git-rebasin", "--protocol", "pairs[n_pairs=3,lambdas=5,split=train]", "--trials", "12",
              "--quiet")


@dataclass
class Outcome:
    """One line of the report: a failure injected, how often, and what it cost."""

    failure: str
    times: int
    rows_expected: int = 0
    rows_lost: int = 0
    duplicates: int = 0
    rows_differing: int = 0
    half_written: int = 0
    mirror_problems: int = 0
    message: str = ""
    details: list = field(default_factory=list)
    failed_checks: int = 0  # other broken promises (hostile input: exit code, message, payload)

    @property
    def ok(self) -> bool:
        return not (self.rows_lost or self.duplicates or self.rows_differing or self.half_written
                    or self.mirror_problems or self.failed_checks)


# ---- processes ------------------------------------------------------------------------------------
def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REBASIN_CHECKPOINTS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start(args, log: Path) -> subprocess.Popen:
    """`bench ARGS` in its own process group (so a kill takes its workers too), output to `log`."""
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "bench.cli", *map(str, args)], stdout=fh,
                                stderr=subprocess.STDOUT, env=_env(), cwd=REPO, start_new_session=True)


def run(args, log: Path, timeout: float = 1800) -> tuple[int, float]:
    """Run to completion; returns (exit code, wall seconds)."""
    t0 = time.perf_counter()
    proc = start(args, log)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = -9
    return rc, time.perf_counter() - t0


def kill_after(args, log: Path, seconds: float) -> bool:
    """Start, SIGKILL the process group after `seconds`; False if it finished first."""
    proc = start(args, log)
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def last_line(log: Path, prefix: str = "") -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip().startswith(prefix)]
    return lines[-1] if lines else ""


# ---- checks ---------------------------------------------------------------------------------------
def comparable(table: pd.DataFrame, volatile=VOLATILE) -> dict[str, str]:
    """key -> the row's JSON without timings: equal strings mean equal rows (NaN-aware, exact floats)."""
    keep = [c for c in table.columns if c not in volatile and c != "key" and not c.startswith("env_")
            and not c.endswith(("_s", "seconds"))]

    def plain(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if hasattr(v, "tolist"):
            return plain(v.tolist())
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return {str(k): json.dumps({c: plain(r[c]) for c in keep if plain(r[c]) is not None}, sort_keys=True,
                               default=str)
            for k, (_, r) in zip(table["key"], table.iterrows(), strict=True)}


def compare(reference: dict[str, str], got: dict[str, str]) -> tuple[int, int, int]:
    """(rows lost, rows extra, rows differing) of `got` against `reference`."""
    lost = len(reference.keys() - got.keys())
    extra = len(got.keys() - reference.keys())
    differing = sum(reference[k] != got[k] for k in reference.keys() & got.keys())
    return lost, extra, differing


def raw_duplicates(store: ResultStore) -> int:
    """Rows beyond the first per key over all parts (the table keeps one; work done twice shows here)."""
    keys = pd.concat([pq.read_table(p, columns=["key"]).to_pandas() for p in store.parts()], ignore_index=True)
    return int(keys["key"].duplicated().sum()) if len(keys) else 0


def half_written(results: Path, temp_files: bool = True) -> list[str]:
    """Unreadable parts, broken report files and (`temp_files`) temp files or partial zoo copies left
    behind. Right after a kill temp files are expected (hidden from readers; the next run removes them)."""
    bad = []
    for part in results.rglob("part-*.parquet"):
        try:
            pq.read_table(part)
        except Exception as error:  # noqa: BLE001 - any failure to read is what we look for
            bad.append(f"{part}: {type(error).__name__}")
    if temp_files:
        bad += [str(p) for p in results.rglob(".tmp-*")]
        bad += [str(p) for p in results.rglob("*.tmp-*")]
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.tex"):
        path = results / name
        if path.exists() and not path.read_text(errors="replace").rstrip().endswith(("|", ">", "}", ")", ".")):
            bad.append(f"{path}: truncated")
    for png in results.glob("*.png"):
        data = png.read_bytes()
        if not (data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")):
            bad.append(f"{png}: truncated PNG")
    return sorted(set(bad))


def broken_after_kills(events) -> list[str]:
    return [f"after kill {i}: {b}" for i, e in enumerate(events) if isinstance(e, dict)
            for b in e.get("broken_after_kill", [])]


def _stratified(total: float, kills: int, rng: random.Random, startup: float) -> list[float]:
    """Life of each attempt: cumulative kill moments spread evenly (one per stratum) over `total`."""
    moments = [total * (k + rng.random()) / kills for k in range(kills)]
    return [max(0.5, b - a) + startup for a, b in zip([0.0] + moments[:-1], moments, strict=True)]


def _n_parts(rows_root: Path) -> int:
    return len(list((rows_root / "rows").glob(f"{PART_PREFIX}*.parquet")))


def kill_chain(args, results: Path, rows_root: Path, log: Path, total: float, kills: int, rng: random.Random,
               startup: float) -> list[dict]:
    """Kill `bench ARGS` `kills` times (more attempts if one finishes first), then let it finish.
    After each kill every file a reader would open must still be whole."""
    events, lives = [], _stratified(total, kills, rng, startup)
    attempts, extra = 0, 0.0
    while sum(e["killed"] for e in events) < kills and attempts < 3 * kills:
        # an attempt that wrote no part was killed inside one batch (or one zoo build, or one fit) that
        # is longer than its life: give the next one more time, else the chain never gets past it
        life = lives[min(sum(e["killed"] for e in events), kills - 1)] + extra
        before = _n_parts(rows_root)
        killed = kill_after(args, log, life)
        events.append({"after_s": round(life, 2), "killed": killed, "parts_before": before,
                       "parts_after": _n_parts(rows_root), "broken_after_kill": half_written(results, False)})
        attempts += 1
        if not killed:  # it finished first (it went faster than the reference): nothing left to kill
            break
        extra = 0.0 if events[-1]["parts_after"] > before else max(2 * extra, startup)
    rc, wall = run(args, log)
    events.append({"final_rc": rc, "final_s": round(wall, 1)})
    return events


# ---- scenarios ------------------------------------------------------------------------------------
def startup_seconds(work: Path) -> float:
    """Wall time of a `bench` start that does nothing (imports): added to each attempt's life."""
    return run(["methods"], work / "startup.log")[1]


def reference_run(work: Path, args=RUN_ARGS) -> tuple[Path, float]:
    results = work / "reference"
    rc, wall = run([*args, "--results", results], work / "reference.log")
    if rc != 0:
        raise RuntimeError(f"reference run failed ({rc}): {last_line(work / 'reference.log')}")
    return results, wall


def check_run(name: str, times: int, reference: Path, results: Path, message: str, details=()) -> Outcome:
    from bench.store import tracking

    ref = comparable(ResultStore(reference).table())
    store = ResultStore(results)
    table = store.table()
    lost, extra, differing = compare(ref, comparable(table))
    mirror = tracking.check(table, results_dir=results) if (results / "mlflow.db").exists() else ["no mirror"]
    broken = half_written(results) + broken_after_kills(details)
    return Outcome(name, times, len(ref), lost, raw_duplicates(store) + extra, differing, len(broken), len(mirror),
                   message, list(details) + broken + mirror)


def merge(outcomes: list[Outcome]) -> Outcome:
    """One report line for several kill chains (a chain ends early when its job finishes first)."""
    total = lambda name: sum(getattr(o, name) for o in outcomes)  # noqa: E731
    chains = f"{len(outcomes)} chains; last: " if len(outcomes) > 1 else ""
    return Outcome(outcomes[0].failure, total("times"), total("rows_expected"), total("rows_lost"),
                   total("duplicates"), total("rows_differing"), total("half_written"), total("mirror_problems"),
                   chains + outcomes[-1].message, [d for o in outcomes for d in o.details], total("failed_checks"))


def kill_chains(chain, kills: int) -> Outcome:
    """`chain(index, kills, time_scale)` in fresh directories until `kills` kills have landed. A chain
    whose job finished before its next kill went faster than the reference: the next one kills sooner."""
    outcomes, scale = [], 1.0
    while sum(o.times for o in outcomes) < kills and len(outcomes) < kills + 3:
        outcomes.append(chain(len(outcomes), kills - sum(o.times for o in outcomes), scale))
        scale *= 0.6
    return merge(outcomes)


def kill_run(work: Path, reference: Path, ref_wall: float, kills: int, rng: random.Random, startup: float,
             args=RUN_ARGS) -> Outcome:
    def chain(i: int, n: int, scale: float) -> Outcome:
        results, log = work / f"killed-run-{i}", work / f"killed-run-{i}.log"
        events = kill_chain([*args, "--results", results], results, results, log, ref_wall * scale, n, rng, startup)
        return check_run("`bench run` SIGKILLed at a random moment, then rerun",
                         sum(e.get("killed", False) for e in events), reference, results,
                         last_line(log, "units:"), events)

    return kill_chains(chain, kills)


def concurrent_runs(work: Path, reference: Path, args=RUN_ARGS, n: int = 2) -> Outcome:
    """`n` identical `bench run`s on one results directory at once."""
    results = work / "concurrent"
    logs = [work / f"concurrent-{i}.log" for i in range(n)]
    procs = [start([*args, "--results", results], log) for log in logs]
    codes = [p.wait(1800) for p in procs]
    split = "; ".join(f"process {i}: {last_line(log, 'units:') or f'exit {c}'}"
                      for i, (log, c) in enumerate(zip(logs, codes, strict=True)))
    return check_run(f"{n} `bench run`s on one results directory at once", 1, reference, results, split)


def repeat_run(work: Path, reference: Path, args=RUN_ARGS) -> Outcome:
    """The same command again in a fresh directory (zoos rebuilt): determinism of the whole pipeline."""
    results = work / "repeat"
    rc, _ = run([*args, "--results", results], work / "repeat.log")
    return check_run("same seed, fresh directory (determinism)", 1, reference, results,
                     last_line(work / "repeat.log", "units:") or f"exit {rc}")


def _sweep_rows(results: Path) -> pd.DataFrame:
    table = ResultStore(results / "sweeps").table()
    return table[table["error"].isna()] if "error" in table.columns else table


def _study(results: Path):
    import optuna

    from bench.execution.sweep import make_storage

    storage = make_storage(None, results)
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def sweep_mirror_problems(results: Path, study) -> list[str]:
    """One finished nested MLflow run per complete trial, nothing else left running."""
    from optuna.trial import TrialState

    from bench.execution.sweep import MlflowSweepMirror
    from bench.store.mlflow_backend import quiet_mlflow, resolve_uri
    from bench.store.tracking import all_runs

    with quiet_mlflow():
        from mlflow import MlflowClient

        client = MlflowClient(resolve_uri(None, results))
        exp = client.get_experiment_by_name(MlflowSweepMirror.EXPERIMENT)
        runs = list(all_runs(client, exp.experiment_id)) if exp else []
    trials = [r for r in runs if r.data.tags.get("bench.role") == "trial"]
    finished = [int(r.data.tags["bench.trial"]) for r in trials if r.info.status == "FINISHED"]
    complete = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    problems = [f"trial {n}: mirrored {finished.count(n)} times" for n in set(finished) if finished.count(n) > 1]
    problems += [f"trial {n}: complete but not mirrored" for n in complete - set(finished)]
    problems += [f"run {r.info.run_id}: left RUNNING" for r in trials if r.info.status == "RUNNING"]
    return problems


def check_sweep(name: str, times: int, results: Path, reference: Path, zoo: Path, trials: int, message: str,
                details=(), sweep_args=SWEEP_ARGS) -> Outcome:
    """Exactly `trials` complete trials, each with its units' rows once, equal to a clean evaluation of
    its spec; the default trial's rows equal the uninterrupted sweep's."""
    from optuna.trial import FixedTrial, TrialState

    from bench.execution.sweep import Objective, SweepConfig, with_split

    study = _study(results)
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    rows = _sweep_rows(results)
    per_trial = rows.groupby("trial").size().to_dict()
    n_units = next(iter(per_trial.values()), 0)
    problems = [f"{len(complete)} complete trials, expected {trials}"] if len(complete) != trials else []
    problems += [f"trial {t}: rows but not complete" for t in per_trial if t not in complete]
    lost = sum(max(0, n_units - per_trial.get(t, 0)) for t in complete)
    for number, trial in complete.items():
        mine = rows[rows["trial"] == number]
        metric = str(mine["objective_metric"].iloc[0]) if len(mine) else "loss_barrier"
        if len(mine) and not math.isclose(mine[metric].mean(), trial.values[0], rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"trial {number}: objective {trial.values[0]} != mean of its rows")
    # a clean, in-process evaluation of every complete trial's parameters
    protocol = with_split(sweep_args[sweep_args.index("--protocol") + 1])  # as the sweep itself scores it
    cfg = SweepConfig(method=sweep_args[1], zoo=str(zoo), protocol=protocol, trials=1, zoo_path=str(zoo),
                      results=results.parent / f"{results.name}-clean", progress=False, mlflow=False)
    objective = Objective(cfg, "clean")
    for number, trial in complete.items():
        objective(FixedTrial(trial.params, number))
    clean = _sweep_rows(cfg.results)
    by_spec = lambda t: {f"{r['variant']} {r['unit']}": v  # noqa: E731
                         for (_, r), v in zip(t.iterrows(), comparable(t, SWEEP_VOLATILE).values(), strict=True)}
    _, extra, differing = compare(by_spec(clean), by_spec(rows))
    ref_rows = _sweep_rows(reference)
    default = lambda t: by_spec(t[t["is_default"].astype(bool)])  # noqa: E731
    _, _, default_diff = compare(default(ref_rows), default(rows))
    problems += [f"default trial: {default_diff} row(s) differ from the uninterrupted sweep"] if default_diff else []
    mirror = sweep_mirror_problems(results, study)
    broken = half_written(results) + broken_after_kills(details)
    store = ResultStore(results / "sweeps")
    superseded = raw_duplicates(store)
    note = f"{message}; {superseded} row(s) of killed attempts superseded by their retry" if superseded else message
    return Outcome(name, times, len(complete) * n_units, lost + len(problems), int(rows["key"].duplicated().sum())
                   + extra, differing, len(broken), len(mirror), note, list(details) + problems + broken + mirror)


def kill_sweep(work: Path, zoo: Path, kills: int, rng: random.Random, startup: float,
               sweep_args=SWEEP_ARGS) -> tuple[Outcome, float]:
    args = [*sweep_args, "--zoo", zoo]
    trials = int(sweep_args[sweep_args.index("--trials") + 1])
    reference = work / "sweep-reference"
    rc, wall = run([*args, "--results", reference], work / "sweep-reference.log")
    if rc != 0:
        raise RuntimeError(f"reference sweep failed ({rc}): {last_line(work / 'sweep-reference.log')}")

    def chain(i: int, n: int, scale: float) -> Outcome:
        results, log = work / f"killed-sweep-{i}", work / f"killed-sweep-{i}.log"
        events = kill_chain([*args, "--results", results], results, results / "sweeps", log, wall * scale, n, rng,
                            startup)
        return check_sweep("`bench sweep` SIGKILLed at a random moment, then rerun",
                           sum(e.get("killed", False) for e in events), results, reference, zoo, trials,
                           last_line(log, "study"), events, sweep_args)

    return kill_chains(chain, kills), wall


def hostile_inputs(work: Path, good_zoo: Path, per_case: list[dict] | None = None) -> list[Outcome]:
    """Every case of `tests.harness.hostile` (exit code 2, one line naming the file, nothing left in the results,
    the user's files untouched, no pickled payload run); stored-zoo cases also through `bench zoo info`.
    `per_case` collects one dict per case for the per-class table."""
    from tests.harness.hostile import CASES, info_argv, run_case

    outcomes = []
    for name, case in CASES.items():
        case_dir = work / "hostile" / name
        case_dir.mkdir(parents=True, exist_ok=True)
        rows = [run_case(case, good_zoo, case_dir)]
        if case.stored:
            rows.append(run_case(case, good_zoo, case_dir, info_argv(case_dir)))
        problems = [f"{r['command']}: {k}" for r in rows for k in ("one_line", "names_file", "expected", "clean")
                    if not r[k]]
        problems += [f"{r['command']}: exit {r['exit']}" for r in rows if r["exit"] != 2]
        problems += [f"{r['command']}: the pickled payload ran" for r in rows if r["payload_ran"]]
        problems += [f"{r['command']}: {r['files_lost']} of the user's files lost" for r in rows if r["files_lost"]]
        if per_case is not None:
            per_case.append({"klass": case.klass, "case": name, "runs": len(rows), "passed": not problems,
                             "files_lost": max(r["files_lost"] for r in rows)})
        message = rows[0]["message"].replace(str(case_dir) + "/", "")
        outcomes.append(Outcome(case.description, len(rows), message=message, details=problems,
                                half_written=sum(not r["clean"] for r in rows), failed_checks=len(problems)))
    return outcomes


# ---- report ---------------------------------------------------------------------------------------
def safety_outcomes(checks) -> list[Outcome]:
    """The data-safety scenarios (`tests.harness.safety`) as report lines."""
    return [Outcome(c.case, c.runs, rows_expected=c.rows_expected, rows_lost=c.rows_lost, message=c.seen,
                    failed_checks=int(not c.passed) + c.files_lost, details=[] if c.passed else [c.seen])
            for c in checks]


def class_markdown(classes: pd.DataFrame) -> list[str]:
    cols = ["class of failure", "cases", "runs", "rows lost", "files lost", "verdict"]
    out = ["## By class of failure (issue 16)", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in classes.itertuples(index=False):
        out.append(f"| {r[0]} | {r.cases} | {r.runs} | {r.rows_lost} | {r.files_lost} | {r.verdict} |")
    return out + [""]


def markdown(outcomes: list[Outcome], header: list[str], classes: pd.DataFrame | None = None) -> str:
    cols = ["failure injected", "times", "rows expected", "rows lost", "duplicates", "rows differing",
            "half-written files", "mirror problems", "other failed checks", "error message / outcome seen"]
    out = ["# Reliability: failures injected and what they cost", "", *header, ""]
    if classes is not None and len(classes):
        out += class_markdown(classes) + ["## Every failure injected", ""]
    out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for o in outcomes:
        cells = [o.failure, o.times, o.rows_expected or "-", o.rows_lost, o.duplicates, o.rows_differing,
                 o.half_written, o.mirror_problems, o.failed_checks, f"`{o.message}`" if o.message else ""]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    failed = [o for o in outcomes if not o.ok]
    out += ["", f"{len(outcomes) - len(failed)} of {len(outcomes)} checks clean."]
    for o in failed:
        out += ["", f"## {o.failure}", *[f"- {d}" for d in o.details if isinstance(d, str)]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.reliability", description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs per kill chain (default: 10)")
    p.add_argument("--work", type=Path, default=Path("results/cache/reliability"), help="scratch directory")
    p.add_argument("--out", type=Path, default=Path("results"), help="where reliability.{md,json} go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[],
                   help="scenarios to skip: run sweep concurrent repeat hostile safety")
    args = p.parse_args(argv)
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    work, rng = args.work.resolve(), random.Random(args.seed)
    startup = startup_seconds(work)
    reference, ref_wall = reference_run(work)
    print(f"reference run: {ref_wall:.1f} s; bench start-up {startup:.1f} s", flush=True)
    zoo = next(p for p in sorted((reference / "zoos").iterdir()) if p.name.startswith("inr-") and p.is_dir())
    outcomes, per_case, checks = [], [], []

    def safety():
        from tests.harness.safety import run_all

        checks.extend(run_all(zoo, work / "safety", progress=False))
        return safety_outcomes(checks)

    scenarios = {
        "run": lambda: kill_run(work, reference, ref_wall, args.kills, rng, startup),
        "sweep": lambda: kill_sweep(work, zoo, args.kills, rng, startup)[0],
        "concurrent": lambda: concurrent_runs(work, reference),
        "repeat": lambda: repeat_run(work, reference),
        "hostile": lambda: hostile_inputs(work, zoo, per_case),
        "safety": safety,
    }
    for name, scenario in scenarios.items():
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        got = scenario()
        for o in got if isinstance(got, list) else [got]:
            outcomes.append(o)
            print(f"{'ok  ' if o.ok else 'FAIL'} {o.failure}: x{o.times}, lost {o.rows_lost}, dup {o.duplicates},"
                  f" differing {o.rows_differing}, half-written {o.half_written}, mirror {o.mirror_problems}"
                  f"  [{o.message}]", flush=True)
        print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    from bench.store.provenance import git_commit

    header = [f"Produced by `python -m tests.harness.reliability --kills {args.kills} --seed {args.seed}` at commit "
              f"`{git_commit()[:12]}`; reference: `bench {' '.join(RUN_ARGS)}` ({ref_wall:.0f} s uninterrupted) "
              f"and `bench {' '.join(SWEEP_ARGS)}` on its INR zoo."]
    args.out.mkdir(parents=True, exist_ok=True)
    from tests.harness.safety import class_table

    classes = class_table(per_case, checks) if per_case or checks else None
    text = markdown(outcomes, header, classes)
    write_bytes_atomic(args.out / "reliability.md", lambda fh: fh.write(text.encode()))
    write_bytes_atomic(args.out / "reliability.json",
                       lambda fh: fh.write(json.dumps([asdict(o) for o in outcomes], indent=1, default=str).encode()))
    print(f"wrote {args.out / 'reliability.md'}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
