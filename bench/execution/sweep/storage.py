"""Where a sweep's study lives: a journal file (repaired after a cut write) or an RDB URL, checked to be the
sweep's before anything is written, and the study opened on it."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileSymlinkLock

from bench.execution.sweep.config import SWEEPS_DIR, SweepConfig, SweepError, direction


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
def sigint_deferred():
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
        with sigint_deferred():
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

