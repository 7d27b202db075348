"""The MLflow store the mirror writes to: where it is, how a new one is made, and whether it can serve.

Default backend: `sqlite:///<results>/mlflow.db` with artifacts in `<results>/mlruns` (MLflow 3
refuses a plain file store unless forced); `MLFLOW_TRACKING_URI` points the mirror elsewhere.
mlflow is imported inside the functions: importing it takes seconds.

A backend that cannot serve is found before any work: `resolve_uri` refuses (TrackingError, one
line) an `mlflow.db` that is not an SQLite database, and a tracking server that does not accept a
connection within CONNECT_TIMEOUT_S; MLflow's own HTTP retries are capped (unless the user set
them), so a server that hangs costs seconds, not minutes. The run goes on without its mirror.

A new `mlflow.db` is a copy of an empty store MLflow built once per machine and MLflow version
(`_empty_store`, in `cache_dir()`): MLflow builds a store by running every schema migration it ever
had, seconds for each results folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from pathlib import Path

from zoos.files import TMP_PREFIX, InputError, check_input, tmp_suffix

LOCK = ".mlflow.lock"  # in the results directory: one process creates or writes the mirror at a time
SQLITE_MAGIC = b"SQLite format 3\x00"
CONNECT_TIMEOUT_S = 5.0
# MLflow retries a failed request 7 times with exponential backoff (minutes): a mirror gives up at once
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingError(ValueError):
    """An MLflow backend that cannot be used; the message names it (the database file or the URI)."""


@contextlib.contextmanager
def quiet_mlflow():
    """Silence MLflow's and alembic's INFO chatter and warnings while mirroring."""
    import mlflow  # noqa: F401  (importing mlflow configures its logger: adjust it afterwards)

    names = ("mlflow", "alembic", "sqlalchemy")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def resolve_uri(tracking_uri: str | None = None, results_dir: str | os.PathLike = "results") -> str:
    """Explicit URI, else `MLFLOW_TRACKING_URI`, else sqlite in the results directory."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        root = Path(results_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        db = root / "mlflow.db"
        if not db.exists():
            _create_db(db)
        uri = f"sqlite:///{db}"
    check_backend(uri)
    return uri


def check_backend(uri: str) -> None:
    """TrackingError unless `uri` is a usable SQLite file or a server accepting connections."""
    from urllib.parse import urlsplit

    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.exists():
            return
        try:
            check_input(db, math.inf)
            with open(db, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except (InputError, OSError) as e:
            raise TrackingError(f"{e}: the MLflow mirror is skipped") from None
        if head and head != SQLITE_MAGIC:
            raise TrackingError(f"{db}: not an SQLite database, so not an MLflow store: the mirror is skipped "
                                f"(move the file aside to start a new one, or pass --no-mlflow)")
        if head and not MLFLOW_TABLES <= _sqlite_tables(db):  # a user's own database: never migrate it
            raise TrackingError(f"{db}: an SQLite database without MLflow's tables, so not an MLflow store: the "
                                f"mirror is skipped (move the file aside to start a new one, or pass --no-mlflow)")
        return
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        import socket

        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((parts.hostname or "localhost", port), timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as e:
            raise TrackingError(f"{uri}: MLflow tracking server unreachable within {CONNECT_TIMEOUT_S:g} s "
                                f"({e}): the mirror is skipped") from None


MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}  # what marks an MLflow store (ours: `_create_db`)


def _sqlite_tables(db: Path) -> set[str]:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return set()


def _create_db(db: Path) -> None:
    """Create MLflow's schema under a temp name, then rename: a process killed while MLflow creates its
    dozens of tables would otherwise leave a database that every later run fails to open."""
    from filelock import FileLock

    with FileLock(db.parent / LOCK):
        if db.exists():  # another process made it meanwhile
            return
        for leftover in db.parent.glob(f"{TMP_PREFIX}{db.name}.*"):  # of a killed creator (we hold the lock)
            leftover.unlink(missing_ok=True)
        tmp = db.with_name(f"{TMP_PREFIX}{db.name}.{tmp_suffix()}")
        try:
            template = _empty_store()
            if template is not None:
                _copy_empty_store(template, tmp, db.parent / "mlruns")
            else:
                _new_store(tmp)
            os.replace(tmp, db)
        finally:
            tmp.unlink(missing_ok=True)


def _new_store(db: Path) -> None:
    with quiet_mlflow():
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()


CACHE_ENV = "REBASIN_CACHE"  # the per-user cache (default: $XDG_CACHE_HOME/rebasin-bench, else ~/.cache/...)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rebasin-bench"


def _empty_store() -> Path | None:
    """An empty MLflow store of the installed MLflow version, made once per machine (None when no cache
    directory is writable). MLflow builds a new store by running every schema migration since its first
    release, seconds per results folder; a copy of one it built is the same database (`_copy_empty_store`)."""
    import mlflow
    from filelock import FileLock

    try:
        cache = cache_dir()
        template = cache / f"mlflow-{mlflow.__version__}-empty.db"
        if not template.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            with FileLock(cache / f"{template.name}.lock"):
                if not template.is_file():
                    tmp = template.with_name(f"{TMP_PREFIX}{template.name}.{tmp_suffix()}")
                    try:
                        _new_store(tmp)
                        os.replace(tmp, template)
                    finally:
                        tmp.unlink(missing_ok=True)
        if MLFLOW_TABLES <= _sqlite_tables(template):
            return template
    except (OSError, RuntimeError):  # RuntimeError: no home directory
        pass
    return None


def _copy_empty_store(template: Path, db: Path, artifacts: Path) -> None:
    """Copy the empty store; its one row, MLflow's Default experiment, gets this store's artifact folder
    and creation time (MLflow writes the creating process's working directory and clock there)."""
    import shutil
    import sqlite3

    shutil.copyfile(template, db)
    now = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                    "WHERE experiment_id = 0", (str((artifacts / "0").resolve()), now, now))


def artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite backend go to `mlruns/` beside the database; a server picks its own."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / "mlruns").resolve().as_uri()
