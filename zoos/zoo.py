"""A zoo: N networks of one weight space, their metadata, and what evaluates them.

Stored as a directory holding `weights.safetensors` (one stacked tensor per parameter, plus the
INR target images under `__targets__`), `metadata.parquet` (one row per network) and
`spec.json` (the weight space and the task). No pickle anywhere.

`load_zoo` trusts nothing it reads: a file that is missing, unreadable or disagrees with the
others raises `ZooError` with one line naming that file, before anything else runs. Weights are
kept in float32, the dtype every method and task computes in: other floating point dtypes
(float16, bfloat16, float64) are converted on load, integer or boolean ones refused, and NaN/inf
refused by parameter name. A stored `content_hash` (written by `save_zoo`) must match the weights
read, so a file edited after saving is not mistaken for the zoo its results were keyed under.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from zoos.files import (
    TMP_PREFIX,
    InputError,
    check_input,
    check_parquet,
    read_input,
    share_as_created,
    tmp_owner_dead,
    tmp_suffix,
)
from zoos.graph_space import space_from_dict
from zoos.space import Params, SpecError, WeightSpace
from zoos.tasks import TARGETS_KEY, TASKS

SPLITS = ("train", "val", "test")
SPEC_LIMIT = 64 * 2**20  # a spec.json is a few KB; more is not a spec
FILES = {"spec": "spec.json", "weights": "weights.safetensors", "metadata": "metadata.parquet"}


class ZooError(ValueError):
    """A zoo that cannot be read or does not hold together; the message names the file.

    `part` ("spec", "weights", "metadata": a key of FILES) says which stored file holds the problem,
    when a check knows it; `detail` is the message without its prefix.
    """

    def __init__(self, message: str, part: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.part, self.detail = part, detail or message


@dataclass
class Zoo:
    name: str
    space: WeightSpace
    params: Params  # name -> [N, ...]
    meta: pd.DataFrame  # one row per network: id, split, and whatever the generator knows
    task: dict = field(default_factory=dict)  # {"kind": "inr"} or {"kind": "classifier", "dataset": ...}
    targets: torch.Tensor | None = None  # INR ground-truth images [n_images, H, W]; meta.target indexes it

    def __post_init__(self):
        def bad(part: str, detail: str) -> ZooError:
            return ZooError(f"zoo {self.name}: {detail}", part, detail)

        if not isinstance(self.name, str) or not self.name:
            raise bad("spec", f"name {self.name!r} must be a non-empty string")
        try:
            n = self.space.check(self.params, where="")
        except SpecError as e:
            raise bad("weights", str(e)) from None
        if n == 0:
            raise bad("weights", "holds no networks")
        if len(self.meta) != n:
            raise bad("metadata", f"metadata has {len(self.meta)} rows but the weights hold {n} networks")
        if not self.meta.columns.is_unique:
            raise bad("metadata", "repeats column names")
        if "split" not in self.meta:
            self.meta = self.meta.assign(split=assign_splits(n))
        elif not all(isinstance(s, str) and s in SPLITS for s in self.meta["split"]):
            found = sorted({repr(s) for s in self.meta["split"]} - {repr(s) for s in SPLITS})
            raise bad("metadata", f"column 'split' holds {', '.join(found)}; expected {', '.join(SPLITS)}")
        self._check_task(bad)

    def _check_task(self, bad) -> None:
        """What `make_task` and the protocols need, so a zoo that loads also runs."""
        kind = self.task.get("kind") if isinstance(self.task, dict) else None
        if not isinstance(kind, str) or kind not in TASKS:
            raise bad("spec", f"task {self.task!r}: expected an object with kind {' or '.join(TASKS)}")
        TASKS[kind].check_zoo(self, bad)

    def __len__(self) -> int:
        return len(self.meta)

    def indices(self, split: str | None = None) -> list[int]:
        """The networks of `split` (every network when None); an empty split gives none, an unknown name is an
        error (never every network)."""
        if split and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        mask = self.meta["split"] == split if split else slice(None)
        return list(self.meta.index[mask]) if split else list(range(len(self)))

    def content_hash(self) -> str:
        """Identifies the zoo's content (used in result keys and caches)."""
        return self.meta.attrs.get("content_hash") or _hash_params(self.params)


def assign_splits(n: int, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> list[str]:
    """Train/val/test by network, shuffled with a fixed seed."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    split = [""] * n
    for rank, i in enumerate(order):
        split[i] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return split


def _hash_params(params: Params) -> str:
    import hashlib

    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode())
        h.update(params[k].detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def is_saved_zoo(directory: Path) -> bool:
    """Whether `directory` holds exactly a zoo as `save_zoo` writes it (its three files, our spec.json):
    the only kind of directory the harness may replace."""
    try:
        names = {p.name for p in directory.iterdir()}
        if not names or not names <= set(FILES.values()) or FILES["spec"] not in names:
            return False
        if not all((directory / n).is_file() for n in names):  # a subdirectory or FIFO: not something we wrote
            return False
        spec = json.loads(read_input(directory / FILES["spec"], SPEC_LIMIT))
    except (OSError, ValueError):
        return False
    return isinstance(spec, dict) and {"name", "space", "task", "content_hash"} <= set(spec)


def check_replaceable(directory: str | os.PathLike) -> Path:
    """`directory`, if the harness may write a zoo there: absent, empty, or a zoo it saved; else ZooError.
    A symlink is followed: the zoo goes where it points (the link stays), never replacing the link itself."""
    directory = Path(directory)
    if directory.is_symlink():
        directory = Path(os.path.realpath(directory))
    if directory.exists() and not (directory.is_dir() and (is_saved_zoo(directory) or not any(directory.iterdir()))):
        raise ZooError(f"{directory}: exists and is not a zoo this harness wrote; refusing to replace it"
                       " (choose another output directory)")
    return directory


def _restore_interrupted(directory: Path) -> None:
    """A replacement killed between its two renames left the old zoo under a temp name and nothing at
    `directory`: put the old zoo back. Temp directories of other dead writers of this zoo are removed."""
    for leftover in sorted(directory.parent.glob(f"{TMP_PREFIX}{directory.name}.*")):
        if not leftover.is_dir() or not tmp_owner_dead(leftover):
            continue
        if leftover.name.startswith(f"{TMP_PREFIX}{directory.name}.old.") and not directory.exists() \
                and is_saved_zoo(leftover):
            os.rename(leftover, directory)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def save_zoo(zoo: Zoo, directory: str | os.PathLike) -> Path:
    """Write atomically: build in a sibling temp directory, then swap it into place.

    The harness replaces only what it provably wrote: an existing `directory` must be a zoo saved
    here (`is_saved_zoo`) or empty; anything else is refused. A kill at any moment leaves the old
    zoo or the new one: a swap interrupted between its renames is undone by the next save or load.
    """
    directory = check_replaceable(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _restore_interrupted(directory)
    tmp = directory.with_name(f"{TMP_PREFIX}{directory.name}.{tmp_suffix()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().float().contiguous() for k, v in zoo.params.items()}
    if zoo.targets is not None:
        tensors[TARGETS_KEY] = zoo.targets.float().contiguous()
    save_file(tensors, tmp / "weights.safetensors")
    share_as_created(tmp / "weights.safetensors")  # safetensors creates it 0600
    zoo.meta.reset_index(drop=True).to_parquet(tmp / "metadata.parquet", index=False)
    spec = {"name": zoo.name, "space": json.loads(zoo.space.to_json()), "task": zoo.task,
            "content_hash": _hash_params(zoo.params)}
    (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
    if directory.exists():
        old = directory.with_name(f"{TMP_PREFIX}{directory.name}.old.{tmp_suffix()}")
        os.rename(directory, old)
        os.rename(tmp, directory)
        shutil.rmtree(old)
    else:
        os.rename(tmp, directory)
    return directory


def load_zoo(directory: str | os.PathLike) -> Zoo:
    directory = Path(directory)
    if not directory.exists() and directory.parent.is_dir():
        _restore_interrupted(directory)
    if not directory.is_dir():
        raise ZooError(f"{directory}: no such zoo directory")
    files = {part: directory / name for part, name in FILES.items()}
    for part, path in files.items():
        try:
            check_input(path, SPEC_LIMIT if part == "spec" else None)
        except InputError as e:
            hint = f" (a zoo directory holds {', '.join(FILES.values())})" if not path.exists() else ""
            raise ZooError(f"{e}{hint}", part) from None

    def fail(part: str, detail) -> ZooError:
        detail = " ".join(str(detail).split())  # one line, whatever a library's message spans
        return ZooError(f"{files[part]}: {detail}", part, detail)

    name, space, task, stored_hash = _read_spec(files["spec"], directory.name, fail)
    try:
        tensors = load_file(files["weights"])
    except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for corrupt files
        raise fail("weights", f"unreadable safetensors file ({type(e).__name__}: {e})") from None
    meta = _read_metadata(files["metadata"], fail)
    for k, t in tensors.items():
        if torch.is_floating_point(t) and t.dtype != torch.float32:
            tensors[k] = t.float()  # the dtype every method computes in; integer dtypes are refused below
    targets = tensors.pop(TARGETS_KEY, None)
    meta.attrs["content_hash"] = stored_hash
    try:
        zoo = Zoo(name, space, tensors, meta, task, targets)
    except ZooError as e:
        raise fail(e.part or "weights", e.detail) from None
    if stored_hash is not None and stored_hash != _hash_params(zoo.params):
        raise fail("weights", f"weights differ from those saved (content_hash {stored_hash} in {FILES['spec']}): "
                              f"edited or corrupted after saving")
    return zoo


@dataclass(frozen=True)
class ZooCard:
    """What a stored zoo says about itself without its weights: enough for a report to describe it."""

    name: str
    meta: pd.DataFrame
    task: dict
    stored_hash: str

    def __len__(self) -> int:
        return len(self.meta)

    def content_hash(self) -> str:
        return self.stored_hash


def load_zoo_card(directory: str | os.PathLike) -> ZooCard:
    """A stored zoo's spec and metadata (weights.safetensors may be absent: an archive can leave them out)."""
    directory = Path(directory)
    files = {part: directory / FILES[part] for part in ("spec", "metadata")}

    def fail(part: str, detail) -> ZooError:
        return ZooError(f"{files[part]}: {' '.join(str(detail).split())}", part, detail)

    name, _, task, stored_hash = _read_spec(files["spec"], directory.name, fail)
    meta = _read_metadata(files["metadata"], fail)
    if stored_hash is None:
        raise fail("spec", "no content_hash recorded (a zoo saved before hashes were stored): load it with its weights")
    return ZooCard(name, meta, task, stored_hash)


def _read_metadata(path: Path, fail) -> pd.DataFrame:
    """metadata.parquet, guarded (`check_parquet`) and read with a fresh index."""
    try:
        check_parquet(path)
        return pd.read_parquet(path).reset_index(drop=True)
    except InputError as e:
        raise ZooError(str(e), "metadata") from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise fail("metadata", f"unreadable parquet file ({type(e).__name__}: {e})") from None


def _read_spec(path: Path, default_name: str, fail) -> tuple:
    """(name, space, task, content_hash) from spec.json, every field checked."""
    try:
        spec = json.loads(read_input(path, SPEC_LIMIT))
    except InputError as e:
        raise ZooError(str(e), "spec") from None
    except (ValueError, OSError, RecursionError) as e:
        raise fail("spec", f"not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(spec, dict) or "space" not in spec:
        raise fail("spec", "not a zoo spec: expected an object with 'space', 'task', 'name'")
    try:
        space = space_from_dict(spec["space"])
    except SpecError as e:
        raise fail("spec", e) from None
    stored_hash = spec.get("content_hash")
    if stored_hash is not None and not isinstance(stored_hash, str):
        raise fail("spec", f"content_hash {stored_hash!r} must be a string")
    return spec.get("name", default_name), space, spec.get("task"), stored_hash
