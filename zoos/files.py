"""Atomic file writes and the clean-up of killed writers' temp files (every layer writes through here).

A file is written to a hidden temp sibling named `.tmp-<name>.<host>.<pid>`, fsynced and renamed
into place, so readers see the old file or the new one, never half of one. A temp file whose
writer has died (same host, pid gone) or that is older than any live writer could be is the
writer's leftover and may be removed.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

TMP_PREFIX = ".tmp-"  # readers glob for real names (e.g. `part-*.parquet`), so temp files are never seen


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def tmp_owner_dead(path: Path) -> bool:
    """A temp name `<...>.<host>.<pid>` written on this machine by a process that is gone."""
    host, _, pid = path.name.rpartition(".")
    return pid.isdigit() and host.endswith("." + socket.gethostname()) and not pid_alive(int(pid))


def tmp_suffix() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


def clean_temp_files(directory: Path, max_age_s: float = math.inf) -> int:
    """Remove the temp files of writers killed before their rename: dead on this machine, or older
    than `max_age_s` (a writer elsewhere; a live one renames within seconds). Returns how many."""
    removed, now = 0, time.time()
    for tmp in Path(directory).glob(f"{TMP_PREFIX}*"):
        try:
            if tmp_owner_dead(tmp) or now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:  # another process cleaned or renamed it
            pass
    return removed


def write_bytes_atomic(path: str | os.PathLike, write, durable: bool = False) -> Path:
    """Call `write(file)` on a temp sibling of `path`, fsync, rename: readers see the old or the new file.

    `durable`: fsync the directory too, so that the rename itself survives a power cut."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{tmp_suffix()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    try:  # not every platform lets us open a directory
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
