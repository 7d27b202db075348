"""Atomic file writes, the clean-up of killed writers' temp files, and bounded reads of inputs.

Every layer writes through here, and reads user-supplied files through `check_input` /
`read_input`: a FIFO or device where a file is expected is refused before it is opened (reading
one would block forever), and no input may expand in memory past `input_limit()` bytes, whatever
its header or its compression promises (a gzip bomb stops at the limit, it is not read whole).

A file is written to a hidden temp sibling named `.tmp-<name>.<host>.<pid>`, fsynced and renamed
into place, so readers see the old file or the new one, never half of one. A temp file whose
writer has died (same host, pid gone) or that is older than any live writer could be is the
writer's leftover and may be removed.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import socket
import stat
import time
from pathlib import Path

INPUT_LIMIT_ENV = "REBASIN_MAX_INPUT_BYTES"
DEFAULT_INPUT_LIMIT = 4 * 2**30  # the largest real input read whole (an MNIST IDX pair) is ~55 MB
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


class OutputError(ValueError):
    """An output path the harness will not write to (a directory, socket or block device, a FIFO nobody
    reads); the message names it."""


def _kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")


def _stream(path: Path, write) -> Path:
    """Write into a FIFO or character device as a stream: never renamed over, never truncated away."""
    try:  # a FIFO nobody reads would block forever: refuse it instead
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        reason = "a FIFO with no reader" if e.errno == errno.ENXIO else e.strerror
        raise OutputError(f"{path}: cannot be written ({reason})") from None
    os.set_blocking(fd, True)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
    except OSError as e:  # /dev/full: ENOSPC, a reader gone: EPIPE
        raise OutputError(f"{path}: writing failed ({e.strerror or e})") from None
    return path


def current_umask() -> int:
    """The process's umask (read from /proc where there is one: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_as_created(path: str | os.PathLike) -> None:
    """Give a file the mode a plain `open` would (0666 less the umask: 0644 under umask 022), whatever made
    it: writers that create files 0600 (safetensors, mkstemp) would otherwise hide a zoo from other users'
    workers."""
    os.chmod(path, 0o666 & ~current_umask())


def write_bytes_atomic(path: str | os.PathLike, write, durable: bool = False) -> Path:
    """Call `write(file)` on a temp sibling of `path`, fsync, rename: readers see the old or the new file.

    Only an absent path or a regular file is replaced (a symlink's target, never the link itself); a FIFO
    or a character device (/dev/stdout, /dev/null) is written as a stream, never renamed over; a directory,
    socket or block device is refused (OutputError).

    `durable`: fsync the directory too, so that the rename itself survives a power cut."""
    path = Path(path)
    if path.is_symlink():  # write where the link points, keep the link
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            return _stream(path, write)
        raise OutputError(f"{path}: {_kind(mode)}, not a regular file: refused (the harness replaces only "
                          f"regular files, and writes to FIFOs and character devices as streams)")
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{tmp_suffix()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        share_as_created(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)
    return path


MARKER_HEAD = 4096  # bytes of a file searched for the marker of the harness that wrote it


def check_ours(path: str | os.PathLike, marker: str, force: bool = False, how: str = "") -> None:
    """Refuse (OutputError) to replace an existing non-empty regular file at `path` (a symlink's target)
    unless its first `MARKER_HEAD` bytes carry `marker`, the line the harness writes into every such file:
    the harness replaces only regular files it wrote, absent paths, or (nothing to lose) empty files.
    `force`: replace anyway. FIFOs and devices pass (written as streams); `write_bytes_atomic` refuses the rest.
    `how`: what writes the file, for the message."""
    if force:
        return
    path = Path(os.path.realpath(path))
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(MARKER_HEAD)
    except OSError as e:
        raise OutputError(f"{path}: cannot be read to check who wrote it ({e.strerror or e})") from None
    if marker.encode() not in head:
        raise OutputError(f"{path}: an existing file that {how or 'the harness'} did not write (no marker "
                          f"{marker!r} in its first lines): refused; pass --force to replace it, or choose "
                          f"another path")


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


# ---- bounded reads of user-supplied files ------------------------------------------------------
class InputError(ValueError):
    """An input file refused before (or while) reading it; the message names the file."""


def input_limit() -> int:
    """Bytes one input may take in memory: $REBASIN_MAX_INPUT_BYTES, else 4 GiB or half the RAM, and at most
    half of what the address-space limit (`ulimit -v`, RLIMIT_AS) leaves this process."""
    if os.environ.get(INPUT_LIMIT_ENV):
        return int(os.environ[INPUT_LIMIT_ENV])
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 2 * DEFAULT_INPUT_LIMIT
    headroom = _address_space_left()
    return min(DEFAULT_INPUT_LIMIT, ram // 2, headroom // 2 if headroom is not None else ram)


def _address_space_left() -> int | None:
    """Bytes RLIMIT_AS still lets this process map (None: no limit)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return max(0, soft - mapped)


def available_memory() -> int:
    """Bytes this process can still allocate: the system's available memory (MemAvailable), and no more
    than the address-space limit (RLIMIT_AS) leaves it."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = 2 * DEFAULT_INPUT_LIMIT
    headroom = _address_space_left()
    return available if headroom is None else min(available, headroom)


class ResourceError(ValueError):
    """Work refused before it starts because it would not fit in memory; the message says what and how much."""


class WorkerError(RuntimeError):
    """A worker process failed; the message is its error in one line (the CLI prints it without a traceback)."""


def interrupted(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt (Ctrl-C), or was raised while one was being handled: a library's
    cleanup that fails under the interrupt (optuna's journal lock release: FileNotFoundError, RuntimeError)
    must not turn a Ctrl-C into an error message or a traceback."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__context__
    return False


def check_memory(what: str, needed: int, share: float = 0.9) -> None:
    """ResourceError when `needed` bytes (an estimate made before any work) exceed `share` of the memory
    available (`available_memory`: RAM and RLIMIT_AS)."""
    available = available_memory()
    if needed > share * available:
        raise ResourceError(f"{what}: needs about {_size(needed)} of memory, more than the {_size(available)} "
                            f"available (RAM and ulimit -v): refused before starting")


def _size(n: int) -> str:
    if n >= 2**40:
        return f"{n / 2**40:,.0f} TiB"
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n} bytes"


def too_large(path, what: str, n: int, limit: int | None = None) -> InputError | None:
    """An error when `n` bytes (a size a header promises, say) exceeds the input limit, else None."""
    limit = input_limit() if limit is None else limit
    if n <= limit:
        return None
    return InputError(f"{path}: {what} {_size(n)}, more than the {_size(limit)} an input may take in memory "
                      f"(raise {INPUT_LIMIT_ENV} if this is really meant)")


def check_input(path: str | os.PathLike, limit: int | None = None) -> Path:
    """`path` if it is a regular file (after symlinks) of at most `limit` bytes; else InputError."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        raise InputError(f"{path}: {kind}, not a regular file: refused (reading it could block or never end)")
    error = too_large(path, "holds", info.st_size, limit)
    if error:
        raise error
    return path


def read_input(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """A regular file's bytes, gunzipped if it ends in .gz, refused past `limit` bytes (checked while
    decompressing: only limit + 1 bytes are ever inflated)."""
    path = check_input(path, limit)
    limit = input_limit() if limit is None else limit
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) and EOFError when truncated
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if len(raw) > limit:
        raise InputError(f"{path}: decompresses to more than {_size(limit)}, the most an input may take in memory "
                         f"(raise {INPUT_LIMIT_ENV} if this is really meant)")
    return raw


def check_parquet(path: str | os.PathLike, limit: int | None = None) -> Path:
    """`check_input`, and the uncompressed size the Parquet footer promises within `limit`."""
    import pyarrow.parquet as pq

    path = check_input(path, limit)
    meta = pq.ParquetFile(path).metadata  # the footer only (its length is bounded by the file's)
    error = too_large(path, "row groups promise", sum(meta.row_group(i).total_byte_size
                                                      for i in range(meta.num_row_groups)), limit)
    if error:
        raise error
    return path


# ---- the one guarded reader of tensor files (.pt / .pth / .safetensors) ---------------------------
TENSOR_FILE_MEMBERS = 100_000  # torch writes one zip member per storage: no real checkpoint nears this
ZIP_SLACK = 2**20  # bytes a torch archive's members may promise beyond the archive's own size (headers)


def check_zip(path: str | os.PathLike, limit: int | None = None, max_members: int = TENSOR_FILE_MEMBERS) -> None:
    """For a zip archive (torch's format): refuse more than `max_members` members, members promising more
    than `limit` bytes once inflated, or more than the archive itself holds (torch stores tensors
    uncompressed, so an archive that inflates past its own size is a zip bomb), before anything is inflated."""
    import zipfile

    path = Path(path)
    limit = input_limit() if limit is None else limit
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable zip archive ({type(e).__name__}: {e})") from None
    if len(members) > max_members:
        raise InputError(f"{path}: a zip archive of {len(members)} members, more than a state dict of "
                         f"{max_members} tensors")
    inflated = sum(m.file_size for m in members)
    error = too_large(path, "zip members inflate to", inflated, limit)
    if error:
        raise error
    if inflated > os.stat(path).st_size + ZIP_SLACK:
        raise InputError(f"{path}: zip members inflate to {_size(inflated)} from a {_size(os.stat(path).st_size)} "
                         f"file: refused (torch stores tensors uncompressed; this is a zip bomb)")


def load_tensors(path: str | os.PathLike, limit: int | None = None, max_members: int = TENSOR_FILE_MEMBERS,
                 floats: bool = False) -> dict:
    """A `.safetensors`, `.pt` or `.pth` file's contents, guarded: a regular file (`check_input`: no FIFO,
    device or directory) of at most `limit` bytes, zip members sized first (`check_zip`), `.pt`/`.pth`
    read with `torch.load(weights_only=True)` (tensors and plain containers, never pickled code). With
    `floats`, every tensor of the (top-level) dict must be a floating point one. InputError names the file."""
    import warnings

    import torch

    path = check_input(path, limit)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{path}: unreadable safetensors file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())})") from None
    else:
        check_zip(path, limit, max_members)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols; the error is what counts
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - garbage raises KeyError, EOFError, RuntimeError, UnpicklingError...
            if type(e).__name__ == "UnpicklingError":
                detail = next((line for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                              "unsupported pickle content")
                raise InputError(f"{path}: refused: the file holds pickled Python objects, not only tensors "
                                 f"(torch.load weights_only=True: {' '.join(detail.split())})") from None
            raise InputError(f"{path}: unreadable as a PyTorch state dict ({type(e).__name__}: "
                             f"{' '.join(str(e).split())})") from None
    if floats and isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, torch.Tensor) and not torch.is_floating_point(value) \
                    and not str(key).endswith("num_batches_tracked"):
                raise InputError(f"{path}: {key} has dtype {value.dtype}, expected a floating point tensor")
    return obj
