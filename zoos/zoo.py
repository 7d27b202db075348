"""A zoo: N networks of one weight space, their metadata, and what evaluates them.

Stored as a directory holding `weights.safetensors` (one stacked tensor per parameter, plus the
INR target images under `__targets__`), `metadata.parquet` (one row per network) and
`spec.json` (the weight space and the task). No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zoos.space import Params, SpecError, WeightSpace

TARGETS_KEY = "__targets__"
SPLITS = ("train", "val", "test")


class ZooError(ValueError):
    """A zoo that cannot be read or does not hold together; the message names the file."""


@dataclass
class Zoo:
    name: str
    space: WeightSpace
    params: Params  # name -> [N, ...]
    meta: pd.DataFrame  # one row per network: id, split, and whatever the generator knows
    task: dict = field(default_factory=dict)  # {"kind": "inr"} or {"kind": "classifier", "dataset": ...}
    targets: torch.Tensor | None = None  # INR ground-truth images [n_images, H, W]; meta.target indexes it

    def __post_init__(self):
        n = self.space.check(self.params, where=f"zoo {self.name}")
        if n == 0:
            raise ZooError(f"zoo {self.name}: holds no networks")
        if len(self.meta) != n:
            raise ZooError(f"zoo {self.name}: metadata has {len(self.meta)} rows but the weights hold {n} networks")
        if "split" not in self.meta:
            self.meta = self.meta.assign(split=assign_splits(n))
        if self.task.get("kind") == "inr":
            if self.targets is None or "target" not in self.meta:
                raise ZooError(f"zoo {self.name}: an INR zoo needs target images and a metadata column 'target'")
            bad = ~self.meta["target"].between(0, len(self.targets) - 1)
            if bad.any():
                raise ZooError(f"zoo {self.name}: metadata 'target' indices outside the {len(self.targets)} images")

    def __len__(self) -> int:
        return len(self.meta)

    def indices(self, split: str | None = None) -> list[int]:
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


def save_zoo(zoo: Zoo, directory: str | os.PathLike) -> Path:
    """Write atomically: build in a sibling temp directory, then rename into place."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().float().contiguous() for k, v in zoo.params.items()}
    if zoo.targets is not None:
        tensors[TARGETS_KEY] = zoo.targets.float().contiguous()
    save_file(tensors, tmp / "weights.safetensors")
    zoo.meta.reset_index(drop=True).to_parquet(tmp / "metadata.parquet", index=False)
    spec = {"name": zoo.name, "space": json.loads(zoo.space.to_json()), "task": zoo.task,
            "content_hash": _hash_params(zoo.params)}
    (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def load_zoo(directory: str | os.PathLike) -> Zoo:
    directory = Path(directory)
    if not directory.is_dir():
        raise ZooError(f"{directory}: no such zoo directory")
    files = {f: directory / f for f in ("spec.json", "weights.safetensors", "metadata.parquet")}
    for f, path in files.items():
        if not path.is_file():
            raise ZooError(f"{path}: missing (a zoo directory holds spec.json, weights.safetensors, metadata.parquet)")
    try:
        spec = json.loads(files["spec.json"].read_text())
        space = WeightSpace.from_json(json.dumps(spec["space"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ZooError(f"{files['spec.json']}: not a valid zoo spec ({e})") from None
    try:
        tensors = load_file(files["weights.safetensors"])
    except (SafetensorError, OSError, ValueError) as e:
        raise ZooError(f"{files['weights.safetensors']}: unreadable safetensors file ({e})") from None
    try:
        meta = pd.read_parquet(files["metadata.parquet"])
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise ZooError(f"{files['metadata.parquet']}: unreadable parquet file ({e})") from None
    targets = tensors.pop(TARGETS_KEY, None)
    meta.attrs["content_hash"] = spec.get("content_hash")
    try:
        return Zoo(spec.get("name", directory.name), space, tensors, meta, spec.get("task", {}), targets)
    except (SpecError, ZooError) as e:
        raise ZooError(f"{files['weights.safetensors']}: {e}") from None
