"""The harness-owned store where learned methods keep what `fit` produced.

`<results>/cache/checkpoints/` by default, or `$REBASIN_CHECKPOINTS` (e.g. a path every node of a
cluster mounts, so Dask workers load what the client trained). A method asks for a directory by
name (it hashes everything that changes its fit into the name) and takes the store's lock on that
name while it trains or loads, so concurrent runs train each model once.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

CHECKPOINTS_ENV = "REBASIN_CHECKPOINTS"


class CheckpointStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()  # absolute: batches carry it to workers that may run elsewhere

    @classmethod
    def for_results(cls, results: str | os.PathLike) -> CheckpointStore:
        return cls(os.environ.get(CHECKPOINTS_ENV) or Path(results) / "cache" / "checkpoints")

    def directory(self, name: str) -> Path:
        return self.root / name

    def lock(self, name: str) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / f"{name}.lock")

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r})"
