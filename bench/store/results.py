"""The results table: long-format rows in Parquet parts, appended atomically, read back as one DataFrame.

Every unit of work (one pair, one orbit sample, one merge) becomes one row dict. A `ResultStore` keeps
them under `<root>/rows/` as immutable part files; each `append` writes exactly one new part to a
hidden temp name in the same directory, fsyncs it and renames it into place, so concurrent writers
(several processes or machines on one filesystem) never collide and a killed writer never leaves a
half-written part where readers look. Reading unions the parts' columns (protocols produce
different column sets; missing cells are NaN/None) and keeps the latest row of each unit key, which
is also what a resumed run uses to skip finished units (`done_keys`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.store.provenance import utc_now
from zoos.files import check_parquet, clean_temp_files, write_bytes_atomic

PART_PREFIX = "part-"
STALE_TMP_S = 3600.0  # a temp file this old belongs to a dead writer (a live one renames within seconds)
QUARANTINE = "quarantine"  # unreadable parts are moved here (under rows/), out of the glob
CLAIMS_DIR = ".claims"  # per-batch lock files of concurrent `bench run`s on one results directory
ZOOS_FILE = "zoos.json"  # zoo content hash -> how its networks were made (`record_zoo`), for reports
PEERS_FILE = "reproductions/peers.parquet"  # reference implementations' scores on our units (`bench reproduce`)
TIMES_FILE = "reproductions/times.json"  # the wall time `bench reproduce` spent per benchmark
MEASUREMENTS_FILE = "measurements.parquet"  # `bench ae study`: decoded networks' scores, training records
GAPS_FILE = "gaps.json"  # what each (zoo, protocol) last asked for could not measure (`record_gaps`)

# Leading columns of `table()`, in this order; the rest follow alphabetically.
ID_COLUMNS = ("key", "run_id", "method", "variant", "zoo", "zoo_hash", "protocol", "unit", "action", "eps", "seed")
SORT_COLUMNS = ("zoo", "protocol", "action", "eps", "variant", "unit", "seed", "run_id", "key")
# what every part writes these columns as: a part holding them as other types is not one of ours
TEXT_COLUMNS = ("key", "run_id", "method", "variant", "zoo", "zoo_hash", "protocol", "unit", "action", "error")
NUMBER_COLUMNS = ("eps", "seed")

_counter = itertools.count()


def _jsonable(value):
    """Plain JSON values for hashing: numpy/torch scalars and arrays, tuples, sets, paths."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def unit_key(**parts) -> str:
    """Stable 16-hex key of a unit of work (method spec, hyperparameters, zoo hash, protocol, unit, seed...).

    The hash is over canonical JSON (sorted keys, fixed separators), so it does not depend on
    argument order or dict order. Pass method specs in normal form (`str(methods.MethodSpec)`).
    """
    canon = _jsonable(parts)
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


UNIT_IDENTITY = ("zoo_hash", "protocol", "variant", "unit", "seed", "protocol_options")


def current_code(table: pd.DataFrame) -> pd.DataFrame:
    """The rows reports count: each method's newest code version only (`method_version`, 1 where absent),
    and of a unit measured more than once (the same zoo, protocol, options, variant, unit and seed) only its
    newest row, so that no unit counts twice in a cell. Rows made under other protocol options (recorded in
    `protocol_options`) are all kept: reports show them as their own sections. Older rows stay in the store."""
    if table.empty or "method" not in table.columns:
        return table
    version = table["method_version"].fillna(1) if "method_version" in table.columns else pd.Series(1, table.index)
    newest = version.groupby(table["method"]).transform("max")
    return newest_per_unit(table[version == newest])


def newest_per_unit(table: pd.DataFrame) -> pd.DataFrame:
    """The newest row of each unit (zoo, protocol, variant, unit, seed, protocol options), in the table's order."""
    identity = [c for c in UNIT_IDENTITY if c in table.columns]
    if len(identity) < 4 or "time" not in table.columns:
        return table
    order = table.sort_values("time", kind="mergesort")
    return order[~order.duplicated(identity, keep="last")].sort_index()


def claim_name(keys: Iterable[str]) -> str:
    """Name of the lock on a batch of units (`ResultStore.claim`): a hash of their keys."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]


def is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """DataFrame -> Arrow; a column of mixed Python types (rare: a hyperparameter that is an int in one
    row and a string in another) is stored as strings rather than failing the whole append."""
    arrays, names = [], []
    for col in frame.columns:
        values = frame[col]
        try:
            arr = pa.Array.from_pandas(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            arr = pa.array([None if is_missing(v) else str(v) for v in values], type=pa.string())
        arrays.append(arr)
        names.append(str(col))
    return pa.Table.from_arrays(arrays, names=names)


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """Arrow -> DataFrame with list columns as Python lists (Arrow hands back numpy arrays)."""
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[field.name] = pd.Series(table.column(field.name).to_pylist(), index=frame.index, dtype=object)
    return frame


def _check_schema(schema: pa.Schema) -> None:
    """ValueError unless `schema` is a results part's: a 'key' column, and the identity columns it holds of
    the types `append` writes (text; numbers for eps and seed; text or a timestamp for time), so that one
    foreign or damaged part cannot make every read fail (it is quarantined instead)."""
    if "key" not in schema.names:
        raise ValueError("a Parquet file without a 'key' column: not a results part")
    for field in schema:
        t = field.type
        ok = (pa.types.is_null(t)
              or (field.name in TEXT_COLUMNS and (pa.types.is_string(t) or pa.types.is_large_string(t)))
              or (field.name in NUMBER_COLUMNS and (pa.types.is_integer(t) or pa.types.is_floating(t)))
              or (field.name == "time" and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                            or pa.types.is_timestamp(t)))
              or field.name not in (*TEXT_COLUMNS, *NUMBER_COLUMNS, "time"))
        if not ok:
            raise ValueError(f"column {field.name!r} holds {t}, not what a results part holds there")


def _write_atomic(table: pa.Table, final: Path) -> None:
    """A part appears whole or not at all; the rename itself is made durable too."""
    write_bytes_atomic(final, lambda fh: pq.write_table(table, fh), durable=True)


def _dedupe_and_sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the last row of each key (rows are in part order, so the latest write wins), sort stably."""
    if "key" in frame.columns:
        keyed = frame["key"].notna()
        latest = ~frame.duplicated("key", keep="last") | ~keyed
        frame = frame[latest]
    by = [c for c in SORT_COLUMNS if c in frame.columns]
    if by and len(frame):
        frame = frame.sort_values(by, kind="mergesort", na_position="last")
    return frame.reset_index(drop=True)


class ResultStore:
    """Append-only Parquet parts under `<root>/rows/`; `table()` reads them as one deduplicated DataFrame."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.rows_dir = self.root / "rows"
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        self._keys_read: dict[Path, pd.DataFrame] = {}  # part -> its key/error columns (parts are immutable)
        self.clean_stale()

    def parts(self) -> list[Path]:
        """Finished part files, oldest first (names start with a UTC timestamp)."""
        return sorted(self.rows_dir.glob(f"{PART_PREFIX}*.parquet"))

    def clean_stale(self, max_age_s: float = STALE_TMP_S) -> int:
        """Remove temp parts left by killed writers (`clean_temp_files`); returns how many."""
        return clean_temp_files(self.rows_dir, max_age_s)

    def _new_part_name(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.rows_dir / f"{PART_PREFIX}{stamp}-{os.getpid()}-{next(_counter):06d}.parquet"

    def append(self, rows: Iterable[Mapping] | pd.DataFrame) -> Path | None:
        """Write `rows` as one new part (atomically). Rows lacking `time` get the current UTC time."""
        frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame([dict(r) for r in rows])
        if frame.empty:
            return None
        if "time" not in frame.columns:
            frame["time"] = utc_now()
        else:
            frame["time"] = frame["time"].where(frame["time"].notna(), utc_now())
        path = self._new_part_name()
        _write_atomic(to_arrow(frame.reset_index(drop=True)), path)
        return path

    def _read(self, parts: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
        tables = []
        for part in parts:
            try:
                check_parquet(part)  # a FIFO would block the read, a bomb exhaust memory: set aside first
                _check_schema(pq.read_schema(part))
                if columns is None:
                    tables.append(pq.read_table(part))
                else:
                    present = set(pq.read_schema(part).names)
                    tables.append(pq.read_table(part, columns=[c for c in columns if c in present]))
            except FileNotFoundError:  # removed by a concurrent compact(); its rows are in the merged part
                continue
            except (pa.ArrowException, OSError, ValueError) as error:  # truncated, empty or foreign file
                self._quarantine(part, error)
                continue
        if not tables:
            return pd.DataFrame()
        try:
            merged = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # incompatible types for one column across parts (e.g. bool vs string): let pandas take objects
            return pd.concat([from_arrow(t) for t in tables], ignore_index=True)
        return from_arrow(merged)

    def _quarantine(self, part: Path, error: BaseException) -> None:
        """Move an unreadable part aside (never delete it) so that one bad file cannot poison every run."""
        target = self.rows_dir / QUARANTINE / part.name
        target.parent.mkdir(exist_ok=True)
        try:
            os.replace(part, target)
        except FileNotFoundError:  # another process moved it first
            return
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:160]
        print(f"bench: warning: {part}: unreadable results part ({reason}); moved to {target}", file=sys.stderr)

    def table(self, parts: list[Path] | None = None) -> pd.DataFrame:
        """All rows (of `parts` only, if given): columns unioned, one row per key (the latest), deterministically
        ordered."""
        frame = _dedupe_and_sort(self._read(self.parts() if parts is None else parts))
        lead = [c for c in ID_COLUMNS if c in frame.columns]
        rest = sorted(c for c in frame.columns if c not in lead)
        return frame[lead + rest]

    def commits(self) -> list[str]:
        """The commits that made the rows (`env_git`), sorted."""
        frame = self._read(self.parts(), columns=["env_git"])
        return sorted(set(frame["env_git"].dropna().astype(str))) if "env_git" in frame.columns else []

    def done_keys(self) -> set[str]:
        """Keys whose latest row recorded no error: a resumed run skips these units.

        Parts are immutable, so each is read once per store object: polling this between batches
        (as concurrent runs do) costs only the parts written since the last call.
        """
        parts = self.parts()
        for part in parts:
            if part not in self._keys_read:
                self._keys_read[part] = self._read([part], columns=["key", "error"])
        self._keys_read = {p: self._keys_read[p] for p in parts}  # forget parts a compact() removed
        frames = [f for f in self._keys_read.values() if not f.empty]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if "key" not in frame.columns:
            return set()
        frame = _dedupe_and_sort(frame[frame["key"].notna()])
        ok = frame["error"].map(is_missing) if "error" in frame.columns else pd.Series(True, index=frame.index)
        return set(frame.loc[ok, "key"].astype(str))

    @contextlib.contextmanager
    def claim(self, name: str, wait: bool = False):
        """Lock a batch of units against other processes running on this results directory.

        Yields True when this process holds the batch (it should run the units the table does not
        have yet), False when another process holds it (`wait=False`). The lock is an OS file lock
        (`filelock`), so it is released even when its holder is killed.
        """
        from filelock import FileLock, Timeout

        lock_dir = self.root / CLAIMS_DIR
        lock_dir.mkdir(exist_ok=True)
        lock = FileLock(lock_dir / f"{name}.lock", timeout=-1 if wait else 0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def record_gaps(self, zoo: str, protocol: str, reasons: list[str]) -> None:
        """Keep what a run's protocol could not measure on a zoo (`Protocol.gaps`), replacing what an earlier
        run recorded for that zoo and protocol, so that reports written later still say why a section or a
        cell is missing."""
        from filelock import FileLock

        lock_dir = self.root / CLAIMS_DIR
        lock_dir.mkdir(exist_ok=True)
        with FileLock(lock_dir / f"{GAPS_FILE}.lock"):
            gaps = self._read_gaps()
            if gaps.get(zoo, {}).get(protocol, []) == list(reasons):
                return
            gaps.setdefault(zoo, {})[protocol] = list(reasons)
            text = json.dumps(gaps, indent=1, sort_keys=True).encode()
            write_bytes_atomic(self.root / GAPS_FILE, lambda fh: fh.write(text))

    def record_zoo(self, zoo_hash: str, description: str) -> None:
        """Keep how a zoo's networks were made (its recipe, in words), so that every report describes it."""
        from filelock import FileLock

        lock_dir = self.root / CLAIMS_DIR
        lock_dir.mkdir(exist_ok=True)
        with FileLock(lock_dir / f"{ZOOS_FILE}.lock"):
            zoos = self.zoo_descriptions()
            if zoos.get(zoo_hash) == description:
                return
            zoos[zoo_hash] = description
            text = json.dumps(zoos, indent=1, sort_keys=True).encode()
            write_bytes_atomic(self.root / ZOOS_FILE, lambda fh: fh.write(text))

    def zoo_descriptions(self) -> dict[str, str]:
        """zoo content hash -> description, as the runs recorded them ({} for a damaged or foreign file)."""
        path = self.root / ZOOS_FILE
        try:
            zoos = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}  # descriptions only: a report goes on without them
        return {str(k): str(v) for k, v in zoos.items()} if isinstance(zoos, dict) else {}

    def gaps(self) -> list[tuple[str, str, str]]:
        """(zoo, protocol, reason) for everything the latest runs recorded as not measurable."""
        return [(zoo, protocol, why) for zoo, by_protocol in sorted(self._read_gaps().items())
                for protocol, reasons in sorted(by_protocol.items()) for why in reasons]

    def _read_gaps(self) -> dict:
        path = self.root / GAPS_FILE
        if not path.is_file():
            return {}
        try:
            gaps = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a gaps file written by bench run ({e})") from None
        if not isinstance(gaps, dict) or not all(isinstance(v, dict) for v in gaps.values()):
            raise ValueError(f"{path}: not a gaps file written by bench run (expected zoo -> protocol -> reasons)")
        return gaps

    def compact(self) -> Path | None:
        """Merge the current parts into one (atomically), then delete them.

        The merged part takes the newest merged part's name plus a suffix, so it sorts before any
        part appended meanwhile: "latest wins" still holds for concurrent appends. Readers racing
        with the deletions see duplicates, which `table()` drops.
        """
        parts = self.parts()
        if len(parts) <= 1:
            return parts[0] if parts else None
        frame = self._read(parts)
        if "key" in frame.columns:
            frame = frame[~frame.duplicated("key", keep="last") | frame["key"].isna()]
        merged = parts[-1].with_name(parts[-1].stem + "-c.parquet")
        _write_atomic(to_arrow(frame.reset_index(drop=True)), merged)
        for part in parts:
            if part != merged:
                part.unlink(missing_ok=True)
        return merged
