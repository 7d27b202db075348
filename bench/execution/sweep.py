"""`bench sweep`: Optuna over a method's declared hyperparameters, minimising a protocol's metric.

Splits: a sweep scores on the zoo's validation networks unless the protocol spec names a split
(`pairs[split=test]` is allowed, with a warning: tuning on the numbers one reports inflates them);
the tuned specs are then compared on the test split (`bench sweep m1 m2 ...`, or the printed
`bench run` command). An objective resting on fewer than MIN_UNITS units is warned about. The
objective is by default the protocol's rank metric (what the leaderboard ranks by: the path excess
for interpolation protocols, the merged loss for merges). Several methods swept for a comparison end
with the same number of complete trials (`run_sweeps` tops a smaller study up, or refuses).

A trial builds the method with the trial's hyperparameters (`make_method("name[k=v,...]")`), fits
it on the zoo, runs every unit of the protocol and returns the mean of the metric over the units
(optionally also the method's seconds: multi-objective). Its rows go to a `ResultStore` under
`<results>/sweeps/` (kept apart from `bench run`'s table, so sweep trials neither crowd the
leaderboard nor get mirrored as benchmark runs) with `study`, `trial` and `p_*` columns.

Storage: a journal file (`<results>/sweeps/optuna.journal` by default, or any path) or any RDB
URL, so several processes and machines can work on one study. `--workers W` starts W local
worker processes on the same study. Every worker asks for a trial only while fewer than N trials
are complete or running, and gives a trial up (state FAIL, user attr `surplus`) when it finds N
such trials ahead of it: the study ends with exactly N complete trials, none run twice.

Resuming: a worker stamps its trials with host, pid and a heartbeat (a user attr renewed every
HEARTBEAT_S). A RUNNING trial whose process is gone (same host) or whose heartbeat is older than
GRACE_S is failed (user attr `stale`) by whichever worker sees it first and its parameters are
queued again, so a killed sweep resumes by rerunning the same command. The guarantee: a reclaimed
trial that was queued (the defaults, a retry) or had drawn its parameters is queued again with those
parameters, whenever the kill came; a sampled trial killed before its objective drew anything is not
(nothing of it existed). A queued trial holds its parameters only in `fixed_params` until its
objective suggests them, so a kill in that window must read them there (`trial_params`).

MLflow: one parent run per study, one nested run per finished trial, written by one process only
(the single worker, or the parent of several workers while it waits for them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import TrialState

from methods import format_spec
from zoos.files import interrupted, pid_alive

SWEEPS_DIR = "sweeps"
HEARTBEAT_S = 30.0
GRACE_S = 300.0
POLL_S = 1.0
UNSWEPT = {"device"}  # declared hyperparameters that choose hardware, not a result
MIN_UNITS = 8  # an objective over fewer units is mostly noise: warn
BATCH = 8  # units per protocol.run call (the runner's batch)
# trials holding one of the N slots; a queued (WAITING) trial takes one only once a worker pops it
TAKEN = (TrialState.COMPLETE, TrialState.RUNNING)


class SweepError(ValueError):
    """A sweep that cannot run as configured (the CLI prints it as one line)."""


@dataclass
class SweepConfig:
    method: str  # spec; hyperparameters given in brackets are fixed, not searched
    zoo: str  # a stored zoo directory, or PRESET:INDEX (a preset's zoo recipe, built and cached)
    protocol: str = "pairs"  # name, optionally with options: "pairs[n_pairs=8,lambdas=11]"
    trials: int = 20
    workers: int = 1
    storage: str | None = None  # RDB URL or journal file path; default <results>/sweeps/optuna.journal
    metric: str | None = None  # None: the protocol's rank metric, the one the leaderboard ranks by (`rank_metric`)
    multi_objective: bool = False  # also minimise the method's seconds (fit + align/merge)
    study: str | None = None
    results: Path = Path("results")
    preset: str = "default"  # protocol options start from this preset's
    params: tuple[str, ...] | None = None  # search only these hyperparameters (others at default)
    seed: int = 0
    data: str = "auto"
    threads: int = 1
    mlflow: bool = True
    tracking_uri: str | None = None
    max_failures: int | None = None  # stop after this many failed trials (default: trials)
    progress: bool = True
    zoo_path: str | None = field(default=None, repr=False)  # resolved by `prepare`


# ---- configuration ------------------------------------------------------------------------------
def rank_metric(protocol: str) -> str:
    """The metric the leaderboard ranks `protocol`'s sections by (its first declared rank metric)."""
    from bench.protocols import PROTOCOLS
    from zoos.names import unknown_name

    proto = protocol_name(protocol)
    if proto not in PROTOCOLS:
        raise SweepError(unknown_name("protocol", proto, sorted(PROTOCOLS)))
    return next(m.name for m in PROTOCOLS[proto].metrics if m.role == "rank")


def direction(metric: str, protocol: str = "pairs") -> str:
    """The optimisation direction of a protocol's metric, from the protocol's own declaration."""
    from bench.protocols import PROTOCOLS

    proto = protocol_name(protocol)
    declared = {m.name: m for m in PROTOCOLS[proto].metrics} if proto in PROTOCOLS else {}
    if metric not in declared:
        raise SweepError(f"protocol {proto} has no metric {metric!r} (declared: {', '.join(declared) or 'none'})")
    return declared[metric].direction


def protocol_name(spec: str) -> str:
    from methods import parse_method

    return parse_method(spec)[0]


def protocol_options(spec: str, preset: str = "default") -> tuple[str, dict]:
    """'pairs[n_pairs=8]' -> ('pairs', preset options updated with n_pairs=8). Tuples: 'probes=line;minmax'.
    Each option is read by its declared type and range (`bench.protocols.base.Option`): an unknown, ill-typed
    or out-of-range option is refused here, in one line, before any work."""
    from bench.execution.presets import PRESETS
    from bench.protocols import PROTOCOLS, OptionError
    from methods import parse_method, unknown_name

    name, given = parse_method(spec)
    if name not in PROTOCOLS:
        raise SweepError(unknown_name("protocol", name, PROTOCOLS))
    if preset not in PRESETS:
        raise SweepError(unknown_name("preset", preset, PRESETS))
    options = dict(PRESETS[preset].protocols.get(name, {}))
    declared = PROTOCOLS[name].declared()
    for key, text in given.items():
        if key not in declared or key == "seed":
            known = ", ".join(sorted(k for k in declared if k != "seed"))
            raise SweepError(f"protocol {name}: unknown option {key!r} (known: {known})")
        try:
            options[key] = declared[key].parse(f"protocol {name}: option {key}", text)
        except OptionError as error:
            raise SweepError(str(error)) from None
    return name, options


def resolve_zoo(zoo: str, results: Path, data: str = "auto", progress: bool = True) -> Path:
    """A stored zoo directory as given, or PRESET:INDEX built (once) into the zoo cache."""
    path = Path(zoo)
    if path.is_dir():
        return path
    match = re.fullmatch(r"(\w+):(\d+)", zoo)
    if not match:
        raise SweepError(f"{zoo}: no such zoo directory (or give PRESET:INDEX, e.g. default:1)")
    from bench.execution.presets import PRESETS
    from bench.execution.zoo_cache import get_zoo, recipe_id

    preset, index = match.group(1), int(match.group(2))
    if preset not in PRESETS or index >= len(PRESETS[preset].zoos):
        raise SweepError(f"{zoo}: no zoo {index} in preset {preset!r}")
    recipe = PRESETS[preset].zoos[index]
    get_zoo(recipe, results / "zoos", data, progress=progress)
    return results / "zoos" / recipe_id(recipe, data)


def searched(method: str, only: tuple[str, ...] | None = None):
    """(method name, fixed hyperparameters {name: text}, searched {name: Hyper})."""
    from methods import METHODS, UnknownMethod, parse_method, unknown_name

    name, fixed = parse_method(method)
    if name not in METHODS:
        raise UnknownMethod(unknown_name("method", name, METHODS))
    space = METHODS[name].search_space
    unknown = set(fixed) - set(space)
    if unknown:
        raise SweepError(f"method {name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}")
    if only:
        bad = set(only) - set(space)
        if bad:
            raise SweepError(f"method {name}: --params {', '.join(sorted(bad))} not among its hyperparameters"
                             f" ({', '.join(space) or 'none'})")
    hypers = {k: h for k, h in space.items() if k not in fixed and k not in UNSWEPT and (not only or k in only)
              and (h.kind in ("bool", "cat") or (h.low is not None and h.high is not None and h.low < h.high))}
    if not hypers:
        raise SweepError(f"method {name}: nothing to search (declared: {', '.join(space) or 'none'})")
    return name, fixed, hypers


SIGNIFICANT = 4  # digits a suggested float keeps: tuned specs read `lr=0.001235`, not 17 digits


def suggest(trial, name: str, hyper):
    """The trial's value of one hyperparameter; a float rounded to SIGNIFICANT digits (within its bounds), so
    the spec the trial runs, prints and records is the short one a user would type."""
    if hyper.kind == "int":
        return trial.suggest_int(name, int(hyper.low), int(hyper.high), log=hyper.log and hyper.low > 0)
    if hyper.kind == "float":
        low, high = float(hyper.low), float(hyper.high)
        value = trial.suggest_float(name, low, high, log=hyper.log and hyper.low > 0)
        return min(max(float(f"{value:.{SIGNIFICANT}g}"), low), high)
    if hyper.kind == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, list(hyper.choices))


def make_storage(storage: str | None, results: Path):
    """An RDB URL as is; anything else is a journal file path (default under <results>/sweeps/).

    A store is the sweep's only if it is one: an existing journal file must hold Optuna journal records (an
    empty one is fine), an existing `sqlite:///` database Optuna's tables; anything else (the user's notes,
    another program's database) is refused in one line, never appended to. A journal whose records were cut
    (a full disk, a kill mid-write) is repaired: the unreadable lines are set aside, the rest resumes."""
    if storage and "://" in storage:
        if storage.startswith("sqlite:///"):
            check_optuna_sqlite(Path(storage.removeprefix("sqlite:///")))
        return storage
    path = Path(storage) if storage else results / SWEEPS_DIR / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    repair_journal(path)
    return JournalStorage(JournalFileBackend(str(path), JournalLock(str(path))))


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C (SIGINT) until the block ends, then deliver it as it would have been (main thread only:
    Python runs signal handlers there; elsewhere nothing to defer)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


class JournalLock(JournalFileSymlinkLock):
    """Optuna's symlink lock, whose release a Ctrl-C cannot cut: interrupted between its rename and unlink, or
    before the rename, optuna's own release raises FileNotFoundError in place of the KeyboardInterrupt and
    may leave the lock behind (the rerun then waits its grace period)."""

    def release(self) -> None:
        with _sigint_deferred():
            super().release()


def check_storage(storage: str | None, results: Path) -> None:
    """`make_storage`'s checks (and journal repair) alone: nothing is created."""
    if storage and "://" in storage:
        if storage.startswith("sqlite:///"):
            check_optuna_sqlite(Path(storage.removeprefix("sqlite:///")))
        return
    repair_journal(Path(storage) if storage else results / SWEEPS_DIR / "optuna.journal")


JOURNAL_QUARANTINE = "quarantine"  # beside the journal: the original of a repaired journal


def _record(line: bytes) -> dict | None:
    import json

    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "op_code" in record else None


def _journal_lines(path: Path) -> tuple[list[bytes], list[int]]:
    """(the journal's lines, indices of those that are not whole records: a line cut short, or a cut
    record that a later write continued on the same line)."""
    from zoos.files import InputError, check_input

    try:
        check_input(path)
        data = path.read_bytes()
    except InputError as e:
        raise SweepError(f"{e}: not an Optuna journal (--storage)") from None
    lines = data.splitlines(keepends=True)
    bad = [i for i, line in enumerate(lines) if not line.endswith(b"\n") or _record(line) is None]
    return lines, bad


def repair_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal; set aside the unreadable lines of one that is."""
    if not path.exists() and not path.is_symlink():
        return
    lines, bad = _journal_lines(path)
    if not lines:
        return
    if len(bad) == len(lines):
        raise SweepError(f"{path}: exists and is not an Optuna journal (no line is a journal record); refusing to "
                         f"write sweep records into it (choose another --storage)")
    if not bad:
        return
    from datetime import UTC, datetime

    from optuna.storages.journal._file import get_lock_file

    from zoos.files import write_bytes_atomic

    with get_lock_file(JournalLock(str(path))):  # no sweep appends meanwhile
        lines, bad = _journal_lines(path)
        if not bad:
            return
        keep = []
        for i, line in enumerate(lines):
            if i not in bad:
                keep.append(line)
                continue
            tail = line[line.rfind(b'{"op_code"'):] if b'{"op_code"' in line else b""
            if tail.endswith(b"\n") and _record(tail) is not None:  # a whole record written after a cut one
                keep.append(tail)
        aside = path.parent / JOURNAL_QUARANTINE / f"{path.name}.{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        aside.parent.mkdir(exist_ok=True)
        write_bytes_atomic(aside, lambda fh: fh.write(b"".join(lines)))
        write_bytes_atomic(path, lambda fh: fh.write(b"".join(keep)), durable=True)
    print(f"bench: warning: {path}: {len(bad)} cut journal line(s) (a full disk or a kill mid-write) left out; "
          f"the original is kept as {aside}", file=sys.stderr)


OPTUNA_TABLES = {"studies", "trials", "version_info"}


def check_optuna_sqlite(db: Path) -> None:
    """SweepError unless `db` is absent, empty, or an SQLite database holding Optuna's tables."""
    import sqlite3

    from zoos.files import InputError, check_input

    if not db.exists():
        return
    try:
        check_input(db, math.inf)
        with open(db, "rb") as fh:
            head = fh.read(16)
    except (InputError, OSError) as e:
        raise SweepError(f"{e}: not an Optuna database (--storage)") from None
    if not head:
        return
    tables: set[str] = set()
    if head == b"SQLite format 3\x00":
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error:
            tables = set()
    if not OPTUNA_TABLES <= tables:
        raise SweepError(f"{db}: exists and is not an Optuna database (no Optuna tables); refusing to write sweep "
                         f"records into it (choose another --storage)")


def with_split(protocol: str) -> str:
    """The protocol spec with `split=val` added unless it names a split; warns when that is test."""
    from methods import parse_method

    name, given = parse_method(protocol)
    if given.get("split", "").strip() == "test":
        print("bench: warning: this sweep scores trials on the TEST split: the tuned numbers will be optimistic "
              "(the default is split=val)", file=sys.stderr)
    if "split" in given:
        return protocol
    return format_spec(name, {**given, "split": "val"})


def default_study_name(cfg: SweepConfig, zoo) -> str:
    from methods import normalise_spec

    objective = cfg.metric + ("+seconds" if cfg.multi_objective else "")
    return f"{normalise_spec(cfg.method)}@{zoo.name}-{zoo.content_hash()[:8]}@{cfg.protocol}@{objective}"


def _directions(cfg: SweepConfig) -> list[str]:
    return [direction(cfg.metric, cfg.protocol)] + (["minimize"] if cfg.multi_objective else [])


def open_study(cfg: SweepConfig, name: str, worker: int = 0) -> optuna.Study:
    n_startup = min(10, max(3, cfg.trials // 3))
    sampler = optuna.samplers.TPESampler(seed=cfg.seed * 1000 + worker, n_startup_trials=n_startup,
                                         constant_liar=True)  # liar: parallel workers do not pile up
    study = optuna.create_study(storage=make_storage(cfg.storage, cfg.results), study_name=name,
                                directions=_directions(cfg), sampler=sampler, load_if_exists=True)
    if study.metric_names is None:  # named objectives, as optuna-dashboard shows them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([cfg.metric] + (["seconds"] if cfg.multi_objective else []))
    return study


# ---- trial bookkeeping ----------------------------------------------------------------------------
def _is_stale(trial, now: float, grace: float) -> bool:
    attrs = trial.user_attrs
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    if "host" not in attrs and now - start > HEARTBEAT_S:  # a worker stamps its trial right after `ask`: one
        return True  # never stamped was interrupted there (a Ctrl-C inside `ask` itself)
    if attrs.get("host") == socket.gethostname() and "pid" in attrs and not pid_alive(int(attrs["pid"])):
        return True
    return now - float(attrs.get("heartbeat", start)) > grace


def reclaim_stale(study: optuna.Study, grace: float = GRACE_S) -> list[int]:
    """Fail RUNNING trials whose worker is gone and queue their parameters again; returns their numbers."""
    reclaimed, now = [], time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(trial, now, grace):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception:  # another worker failed it first (or it just finished): it is theirs
            continue
        if trial_params(trial) or trial.user_attrs.get("default"):
            retry(study, trial)  # a sampled trial killed before it drew its parameters lost nothing
        reclaimed.append(trial.number)
    return reclaimed


def first_attempt(trial) -> int:
    """Number of the trial that a chain of retries started from (the trial itself if not a retry)."""
    return int(trial.user_attrs.get("retry_of", trial.number))


def trial_params(trial) -> dict:
    """The parameters a trial runs: those it suggested, else those it was queued with (a queued trial,
    defaults or a retry, holds them in `fixed_params` until its objective suggests them)."""
    return dict(trial.params or trial.system_attrs.get("fixed_params") or {})


def retry(study: optuna.Study, trial) -> None:
    """Queue the parameters of a trial that was killed or interrupted again, remembering its first attempt."""
    study.enqueue_trial(trial_params(trial), user_attrs={"retry_of": first_attempt(trial),
                                                         "default": trial.user_attrs.get("default", False)})


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    return {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "taken": sum(t.state in TAKEN for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "failed": len(failed)}


class _Heartbeat:
    """Renews the trial's `heartbeat` user attr from a background thread while the trial runs."""

    def __init__(self, study: optuna.Study, trial_id: int, interval: float = HEARTBEAT_S):
        self.study, self.trial_id, self.interval = study, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.interval):
            try:
                self.study._storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished (or was reclaimed) meanwhile
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# ---- one trial ----------------------------------------------------------------------------------
class Objective:
    """Runs trials of one sweep in this process: zoo, task and units loaded once."""

    def __init__(self, cfg: SweepConfig, study_name: str):
        import torch

        from bench.protocols import make_protocol
        from bench.store.provenance import environment
        from bench.store.results import ResultStore
        from zoos.tasks import make_task, zoo_fingerprint
        from zoos.zoo import load_zoo

        torch.set_num_threads(cfg.threads)
        cfg = dataclasses.replace(cfg, metric=cfg.metric or rank_metric(cfg.protocol))  # as `prepare` resolves it
        self.cfg, self.study_name = cfg, study_name
        self.zoo = load_zoo(cfg.zoo_path)
        self.task = make_task(self.zoo)
        self.zoo_hash = self.zoo.content_hash()
        self.zoo_spec = zoo_fingerprint(self.zoo, self.task)
        self.name, self.fixed, self.hypers = searched(cfg.method, cfg.params)
        self.proto_name, self.proto_options = protocol_options(cfg.protocol, cfg.preset)
        self.units = make_protocol(self.proto_name, seed=cfg.seed, **self.proto_options).units(self.zoo)
        if not self.units:
            raise SweepError(f"protocol {cfg.protocol} has no units on zoo {self.zoo.name}")
        self.store = ResultStore(cfg.results / SWEEPS_DIR)
        self.env = environment()

    def defaults(self) -> dict:
        return {k: h.default for k, h in self.hypers.items()}

    def __call__(self, trial) -> tuple[list[float], str]:
        """Run one trial: append its rows, return (objective values, spec)."""
        from bench.execution.batch import UnitBatch, execute, prepare_method
        from bench.execution.checkpoints import CheckpointStore
        from bench.protocols import PROTOCOLS

        params = {**self.fixed, **{k: suggest(trial, k, h) for k, h in self.hypers.items()}}
        spec = format_spec(self.name, params)
        trial.set_user_attr("spec", spec)
        store = CheckpointStore.for_results(self.cfg.results)
        method, fit_s = prepare_method(spec, self.cfg.seed, self.zoo, self.task, store)
        runtimes = [m.name for m in PROTOCOLS[self.proto_name].metrics if m.role == "runtime"]
        # keyed by the first attempt: a retry of a killed trial overwrites the rows the killed attempt
        # may have appended before it could report, so the table holds each trial's units once
        attempt = first_attempt(trial)
        columns = {"study": self.study_name, "trial": trial.number, "objective_metric": self.cfg.metric,
                   "objective_direction": direction(self.cfg.metric, self.cfg.protocol),
                   "is_default": bool(trial.user_attrs.get("default", False))}
        rows, failed = [], 0
        for i in range(0, len(self.units), BATCH):
            units = tuple(self.units[i : i + BATCH])
            batch = UnitBatch("", self.zoo.name, self.zoo_hash, spec, self.cfg.seed, self.proto_name,
                              self.proto_options, tuple(self._key(attempt, spec, u.name) for u in units), units,
                              self.study_name, fit_s, columns=columns)
            done, n_failed = execute(batch, method, self.zoo, self.task, self.env)
            rows += done
            failed += n_failed
        ok = [r for r in rows if r["error"] is None]
        values = [float(sum(r[self.cfg.metric] for r in ok) / len(ok))] if ok else [math.nan]
        seconds = fit_s + sum(float(r.get(runtimes[0], 0.0) or 0.0) for r in ok) if runtimes else fit_s
        if self.cfg.multi_objective:
            values.append(seconds)
        self.store.append([{**r, "objective": values[0], "method_s": seconds} for r in rows])
        if failed:
            raise RuntimeError(f"{failed} of {len(rows)} units failed: {next(r['error'] for r in rows if r['error'])}")
        return values, spec

    def _key(self, number: int, spec: str, unit: str) -> str:
        from bench.store.results import unit_key
        from methods import METHODS, parse_method

        version = METHODS[parse_method(spec)[0]].key_parts() if spec else {}  # "": a trial's error row
        return unit_key(study=self.study_name, trial=number, variant=spec, **version, zoo_hash=self.zoo_hash,
                        zoo_spec=self.zoo_spec, protocol=self.proto_name, protocol_params=self.proto_options,
                        unit=unit, seed=self.cfg.seed)

    def error_row(self, number: int, error: BaseException) -> None:
        from bench.store.provenance import utc_now

        message = f"{type(error).__name__}: {error}".splitlines()[0]
        self.store.append([{"run_id": self.study_name, "method": self.name, "zoo": self.zoo.name,
                            "zoo_hash": self.zoo_hash, "protocol": self.proto_name, "seed": self.cfg.seed,
                            "study": self.study_name, "trial": number, "unit": "trial", "time": utc_now(),
                            "error": message, "key": self._key(number, "", "trial"), **self.env}])


def _log(cfg: SweepConfig, text: str) -> None:
    if cfg.progress:
        print(text, flush=True)


def work(cfg: SweepConfig, study_name: str, worker: int = 0, callbacks=()) -> int:
    """One worker's loop on the study; returns how many trials it completed."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, study_name, worker)
    objective = Objective(cfg, study_name)
    max_failures = cfg.max_failures if cfg.max_failures is not None else cfg.trials
    done = 0
    while True:
        reclaim_stale(study)
        c = counts(study)
        if c["complete"] >= cfg.trials or c["failed"] >= max_failures:
            return done
        if c["taken"] >= cfg.trials:  # the rest is running elsewhere: wait in case some of it fails
            time.sleep(POLL_S)
            continue
        trial = None
        try:
            with _sigint_deferred():  # a Ctrl-C inside ask would leave a RUNNING trial nobody knows of
                trial = study.ask()  # pops a queued trial (defaults, retries) before sampling a new one
            ahead = [t for t in study.get_trials(deepcopy=False, states=TAKEN) if t.number < trial.number]
            if len(ahead) >= cfg.trials:  # another worker took the last slot at the same moment
                study._storage.set_trial_user_attr(trial._trial_id, "surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("heartbeat", time.time()),
                               ("worker", worker)):
                trial.set_user_attr(key, value)
            start = time.perf_counter()
            try:
                with _Heartbeat(study, trial._trial_id):
                    values, spec = objective(trial)
            except SweepError as error:  # a configuration error: every trial would fail the same way
                trial.set_user_attr("error", str(error))
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as error:
                objective.error_row(trial.number, error)
                trial.set_user_attr("error", f"{type(error).__name__}: {error}".splitlines()[0])
                frozen = study.tell(trial, state=TrialState.FAIL)
                _log(cfg, f"trial {trial.number} failed: {frozen.user_attrs['error']}")
            else:
                ok = all(math.isfinite(v) for v in values)
                if not ok:
                    trial.set_user_attr("error", "non-finite objective")
                frozen = study.tell(trial, values if ok else None, state=None if ok else TrialState.FAIL)
                done += ok
                shown = ", ".join(f"{v:.4g}" for v in values)
                _log(cfg, f"trial {trial.number} (worker {worker}): {cfg.metric}"
                          f"{'/seconds' if cfg.multi_objective else ''} = {shown} in "
                          f"{time.perf_counter() - start:.1f} s  {spec}")
        except BaseException as error:
            interrupt = not isinstance(error, Exception) or interrupted(error)  # Ctrl-C (or an exit)
            if interrupt and trial is not None:  # between ask and tell: the trial goes back to the study
                give_back(study, trial._trial_id)
            raise
        for callback in callbacks:
            callback(study, frozen)


def give_back(study: optuna.Study, trial_id: int) -> None:
    """A trial interrupted between `ask` and `tell` (Ctrl-C in the objective, in `tell`, in setting its
    attributes): failed as stale and its parameters queued again (when it holds any: drawn, or queued as
    the defaults or a retry), so that a rerun retries it at once instead of waiting GRACE_S for a RUNNING
    trial whose process is gone. A trial whose end was recorded already is left as it is."""
    try:
        trial = study._storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return
        study._storage.set_trial_user_attr(trial_id, "stale", True)
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except Exception:  # noqa: BLE001 - the storage refused (finished meanwhile): the rerun's reclaim decides
        return
    if trial_params(trial) or trial.user_attrs.get("default"):
        retry(study, trial)


def _worker_main(cfg: SweepConfig, study_name: str, worker: int) -> None:
    work(cfg, study_name, worker)


# ---- MLflow ------------------------------------------------------------------------------------
class MlflowSweepMirror:
    """Optuna callback mirroring finished trials as nested MLflow runs under one parent run per study.

    Idempotent (runs are tagged with the study key and trial number), so `sync` after workers, or
    a resumed sweep, logs each trial once. Only one process should call it.
    """

    EXPERIMENT = "rebasin-bench-sweeps"

    def __init__(self, study_name: str, results: Path, tracking_uri: str | None = None):
        self.study_name, self.results, self.tracking_uri = study_name, results, tracking_uri
        self.study_key = hashlib.sha256(study_name.encode()).hexdigest()[:16]
        self.client, self.off = None, False

    def _ready(self) -> bool:
        """Set up on first use; a backend that cannot serve turns the mirror off with one warning
        (the journal and the Parquet rows are the record: the sweep goes on)."""
        if self.client is None and not self.off:
            try:
                self._setup()
            except Exception as error:  # noqa: BLE001 - TrackingError, or whatever MLflow raises
                self.off = True
                print(f"mlflow: sweep mirror off ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)
        return not self.off

    def _setup(self):
        from bench.store.tracking import _experiment_id, _quiet, artifact_root, resolve_uri

        with _quiet():
            from mlflow import MlflowClient

            uri = resolve_uri(self.tracking_uri, self.results)
            self.client = MlflowClient(tracking_uri=uri)
            self.exp_id = _experiment_id(self.client, self.EXPERIMENT, artifact_root(uri))
            runs = self.client.search_runs([self.exp_id], f"tags.`bench.study_key` = '{self.study_key}'",
                                           max_results=50000)
        parents = [r for r in runs if r.data.tags.get("bench.role") == "study"]
        trial_runs = [r for r in runs if r.data.tags.get("bench.role") == "trial"]
        self.mirrored = {int(r.data.tags["bench.trial"]) for r in trial_runs if r.info.status != "RUNNING"}
        for r in trial_runs:  # a process killed while logging a trial left it half-written: log it again
            if r.info.status == "RUNNING":
                with _quiet():
                    self.client.delete_run(r.info.run_id)
        if parents:
            self.parent = parents[0].info.run_id
        else:
            with _quiet():
                run = self.client.create_run(self.exp_id, run_name=self.study_name[:250],
                                             tags={"bench.study_key": self.study_key, "bench.role": "study",
                                                   "bench.study": self.study_name[:5000]})
            self.parent = run.info.run_id

    def __call__(self, study: optuna.Study, trial) -> None:
        if trial.state not in (TrialState.COMPLETE, TrialState.FAIL) or {"surplus", "stale"} & set(trial.user_attrs):
            return
        from bench.store.tracking import _quiet

        if not self._ready() or trial.number in self.mirrored:
            return
        from mlflow.entities import Metric, Param

        names = ["objective"] if len(study.directions) == 1 else ["objective", "seconds"]
        with _quiet():
            run = self.client.create_run(self.exp_id, run_name=f"trial {trial.number}", tags={
                "mlflow.parentRunId": self.parent, "bench.study_key": self.study_key, "bench.role": "trial",
                "bench.trial": str(trial.number), "bench.spec": str(trial.user_attrs.get("spec", ""))[:5000]})
            now = int(time.time() * 1000)
            # floats as the trial ran them (`suggest` rounds to SIGNIFICANT digits)
            params = [Param(k, (f"{v:.{SIGNIFICANT}g}" if isinstance(v, float) else str(v))[:6000])
                      for k, v in sorted(trial.params.items())]
            metrics = [Metric(n, float(v), now, 0) for n, v in zip(names, trial.values or [], strict=False)]
            self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
            self.client.set_terminated(run.info.run_id, "FINISHED" if trial.state == TrialState.COMPLETE else "FAILED")
        self.mirrored.add(trial.number)

    def sync(self, study: optuna.Study) -> None:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            self(study, trial)

    def close(self, study: optuna.Study) -> None:
        from bench.store.tracking import _quiet

        self.sync(study)
        if not self._ready():
            return
        with _quiet():
            c = counts(study)
            self.client.log_metric(self.parent, "n_complete", c["complete"])
            if len(study.directions) == 1 and c["complete"]:
                self.client.log_metric(self.parent, "best_objective", study.best_value)
                self.client.set_tag(self.parent, "bench.best_spec", study.best_trial.user_attrs.get("spec", ""))
            self.client.set_terminated(self.parent, "FINISHED")


# ---- the whole sweep -------------------------------------------------------------------------------
def prepare(cfg: SweepConfig) -> tuple[SweepConfig, str]:
    """Validate, resolve the zoo, create (or load) the study and queue the defaults first; returns
    (the config with the zoo path, the study name)."""
    from bench.protocols import make_protocol
    from zoos.zoo import load_zoo

    if cfg.trials < 1 or cfg.workers < 1:
        raise SweepError("--trials and --workers must be at least 1")
    _, _, hypers = searched(cfg.method, cfg.params)
    cfg = dataclasses.replace(cfg, protocol=with_split(cfg.protocol))
    cfg = dataclasses.replace(cfg, metric=cfg.metric or rank_metric(cfg.protocol))  # what the leaderboard ranks
    proto_name, proto_options = protocol_options(cfg.protocol, cfg.preset)
    cfg = dataclasses.replace(cfg, zoo_path=str(resolve_zoo(cfg.zoo, cfg.results, cfg.data, cfg.progress)))
    zoo = load_zoo(cfg.zoo_path)
    n_units = len(make_protocol(proto_name, seed=cfg.seed, **proto_options).units(zoo))
    if 0 < n_units < MIN_UNITS:
        print(f"bench: warning: the objective rests on {n_units} unit(s) of {cfg.protocol} on {zoo.name} (fewer "
              f"than {MIN_UNITS}): noise may choose the winner; give the zoo more validation networks or the "
              f"protocol more units", file=sys.stderr)
    name = cfg.study or default_study_name(cfg, zoo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, name)
    if not study.get_trials(deepcopy=False):  # a new study: the method's defaults are trial 0
        study.enqueue_trial({k: h.default for k, h in hypers.items()}, user_attrs={"default": True})
    return cfg, name


def summary(study: optuna.Study) -> dict:
    """Counts, the default trial's values and the best trial(s) with ready-to-use specs."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out = {"study": study.study_name, **counts(study), "best": [], "default": None}
    defaults = [t for t in trials if t.user_attrs.get("default")]
    if defaults:
        out["default"] = {"trial": defaults[0].number, "values": defaults[0].values,
                          "spec": defaults[0].user_attrs.get("spec")}
    if trials:
        best = [study.best_trial] if len(study.directions) == 1 else study.best_trials
        out["best"] = [{"trial": t.number, "values": t.values, "spec": t.user_attrs.get("spec")}
                       for t in sorted(best, key=lambda t: t.number)]
    return out


def run_sweep(cfg: SweepConfig) -> dict:
    """Run (or resume) a sweep to `cfg.trials` complete trials; returns `summary`."""
    check_storage(cfg.storage, cfg.results)  # a storage that is not the sweep's: refused before any work
    cfg, name = prepare(cfg)
    mirror = MlflowSweepMirror(name, cfg.results, cfg.tracking_uri) if cfg.mlflow else None
    _log(cfg, f"study {name!r}: {cfg.trials} trials, {cfg.workers} worker(s), storage "
              f"{cfg.storage or cfg.results / SWEEPS_DIR / 'optuna.journal'}")
    if counts(open_study(cfg, name))["complete"] >= cfg.trials:
        _log(cfg, "already complete: nothing to run")
    elif cfg.workers == 1:
        work(cfg, name, 0, callbacks=[mirror] if mirror else [])
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fresh interpreters: no torch thread pools inherited over fork
        procs = [ctx.Process(target=_worker_main, args=(cfg, name, i), daemon=False) for i in range(cfg.workers)]
        for p in procs:
            p.start()
        study = open_study(cfg, name)
        try:
            while any(p.is_alive() for p in procs):
                time.sleep(2 * POLL_S)
                if mirror:  # the parent is the only MLflow writer
                    mirror.sync(study)
        except BaseException:
            for p in procs:
                p.join(30)
            raise
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise SweepError(f"{len(failed)} worker(s) failed (exit codes {failed}); rerun to resume")
    study = open_study(cfg, name)
    if mirror:
        try:
            mirror.close(study)
        except Exception as error:  # the journal/RDB study and the Parquet rows are the record
            print(f"mlflow: mirror skipped ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)
    return {**summary(study), "zoo_path": cfg.zoo_path, "protocol": cfg.protocol, "metric": cfg.metric}


def run_sweeps(cfgs: list[SweepConfig], log=print) -> list[dict]:
    """`run_sweep` for each config; several methods (compared afterwards) end with the same number of complete
    trials: a study that already held more (a reused study) tops the others up to its count. Raises SweepError
    when one of them cannot get there (failed trials), rather than compare unequal searches."""
    outs = [run_sweep(cfg) for cfg in cfgs]
    if len(cfgs) < 2:
        return outs
    target = max(out["complete"] for out in outs)
    for i, (cfg, out) in enumerate(zip(cfgs, outs, strict=True)):
        if out["complete"] < target:
            log(f"topping up study {out['study']!r} from {out['complete']} to {target} complete trials, as many as "
                f"the other methods' (a reused study held more)")
            outs[i] = run_sweep(dataclasses.replace(cfg, trials=target))
    short = [f"{out['study']!r} ({out['complete']})" for out in outs if out["complete"] != target]
    if short:
        raise SweepError(f"the methods' searches differ in size: {', '.join(short)} of {target} complete trials; "
                         f"rerun to retry the failed trials before comparing them")
    return outs


def test_protocol(protocol: str) -> str:
    """The sweep's protocol spec as `bench run --protocols` takes it: its options, scored on the test split."""
    from methods import parse_method

    name, given = parse_method(protocol)
    return format_spec(name, {k: v for k, v in given.items() if k != "split"})


def rerun_command(out: dict, cfg: SweepConfig, spec: str) -> str:
    """`bench run` scoring `spec` on the test split of the sweep's zoo, with its protocol options, preset,
    seed and results directory: the command that turns a tuned spec into a reported number."""
    import shlex

    argv = ["bench", "run", "--methods", spec, "--zoo", str(out["zoo_path"]), "--protocols",
            test_protocol(out["protocol"]), "--preset", cfg.preset, "--seed", str(cfg.seed), "--results",
            str(cfg.results)] + (["--data", cfg.data] if cfg.data != "auto" else [])
    return " ".join(shlex.quote(a) for a in argv)


__all__ = ["SweepConfig", "SweepError", "MlflowSweepMirror", "run_sweep", "run_sweeps", "rank_metric",
           "rerun_command", "test_protocol",
           "work", "prepare", "summary", "searched", "make_storage", "protocol_options", "resolve_zoo",
           "reclaim_stale", "direction", "trial_params"]
