"""CIFAR-10 and SVHN from their published files, in grey as the CNN Zoo saw them.

Folders recognised (`find_colour_dataset`):
- CIFAR-10 binary (`cifar-10-batches-bin`): `data_batch_{1..5}.bin`, `test_batch.bin`; records of
  1 label byte + 3 x 1024 bytes (R, G, B planes, row-major 32x32).
- CIFAR-10 python (`cifar-10-batches-py`): `data_batch_{1..5}`, `test_batch`, Python pickles of
  {b"data": uint8 [10000, 3072], b"labels": [...]}. They are read by a restricted unpickler that
  admits only numpy's array reconstruction, the latin-1 codec and plain containers: a file that
  names any other global (the way a pickle runs code) is refused, never executed.
- SVHN cropped digits: `train_32x32.mat`, `test_32x32.mat` (MATLAB v5: X [32, 32, 3, N] uint8,
  y [N, 1] with 10 meaning digit 0), read by scipy.io.
- A Hugging Face Parquet export of CIFAR-10: `train-*.parquet`, `test-*.parquet` (in the folder or
  its `plain_text/`), columns `img` (or `image`: {bytes: PNG}) and `label`; PNGs decoded by Pillow.

Grey conversion as Unterthiner et al.: pixels mapped to [-1, 1], then averaged over channels. Here
the channel mean is taken in [0, 1] and `tasks.classifier_inputs` maps it to [-1, 1] (both maps
are affine, so the result is the same).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from zoos.files import InputError, check_parquet, read_input

CIFAR_BIN = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_PY = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
SVHN = {"train": ["train_32x32.mat"], "test": ["test_32x32.mat"]}
RECORD = 1 + 3 * 32 * 32
# what a CIFAR python batch may name: numpy's array reconstruction and the latin-1 codec protocol 2
# writes bytes with (as torch's weights-only unpickler admits it), nothing else
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class ColourDataError(ValueError):
    """A colour dataset file that is missing or malformed; the message names the file."""


def find_colour_dataset(directory: Path) -> str | None:
    """'cifar10-bin', 'cifar10-py', 'svhn', 'cifar10-parquet' or None for a folder (its test file decides)."""
    for kind, files in (("cifar10-bin", CIFAR_BIN), ("cifar10-py", CIFAR_PY), ("svhn", SVHN)):
        if (directory / files["test"][0]).exists():
            return kind
    return "cifar10-parquet" if _parquet_parts(directory, "test") else None


def _parquet_parts(directory: Path, split: str) -> list[Path]:
    stem = "train" if split == "train" else "test"
    return sorted([*directory.glob(f"{stem}-*.parquet"), *directory.glob(f"plain_text/{stem}-*.parquet")])


def load_colour(directory: Path, kind: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Grey images in [0, 1] as float32 [n, 32, 32] and int64 labels [n] of one split."""
    if kind == "cifar10-parquet":
        parts = [_cifar_parquet(p) for p in _parquet_parts(directory, split)]
        if not parts:
            raise ColourDataError(f"{directory}: no {'train' if split == 'train' else 'test'}-*.parquet file")
        return _grey(parts)
    files = {"cifar10-bin": CIFAR_BIN, "cifar10-py": CIFAR_PY, "svhn": SVHN}[kind]["train" if split == "train"
                                                                                   else "test"]
    reader = {"cifar10-bin": _cifar_bin, "cifar10-py": _cifar_py, "svhn": _svhn}[kind]
    parts = [reader(directory / name) for name in files if split != "train" or (directory / name).exists()]
    if not parts:
        raise ColourDataError(f"{directory / files[0]}: missing ({kind} needs {', '.join(files)})")
    return _grey(parts)


def _grey(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.concatenate([p[0] for p in parts])  # [n, 3, 32, 32] uint8
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return (rgb.astype(np.float32) / 255.0).mean(axis=1), labels


def _cifar_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq
    from PIL import Image

    try:
        check_parquet(path)
        names = pq.read_schema(path).names
        column = next((c for c in ("img", "image") if c in names), None)
        if column is None or "label" not in names:
            raise ColourDataError(f"{path}: columns {names}, expected img (or image) and label")
        table = pq.read_table(path, columns=[column, "label"]).to_pydict()
        images = [np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")) for cell in table[column]]
    except (InputError, ColourDataError) as e:
        raise ColourDataError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - pyarrow and Pillow raise many types on foreign files
        detail = f"{type(e).__name__}: {e}".splitlines()[0]
        raise ColourDataError(f"{path}: unreadable CIFAR-10 parquet ({detail})") from None
    if not images or any(im.shape != (32, 32, 3) for im in images):
        raise ColourDataError(f"{path}: expected 32x32 RGB images")
    return np.stack(images).transpose(0, 3, 1, 2), np.asarray(table["label"])


def _cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read(path)
    if len(raw) == 0 or len(raw) % RECORD:
        raise ColourDataError(f"{path}: {len(raw)} bytes is not a whole number of {RECORD}-byte CIFAR records")
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        raise ColourDataError(f"{path}: label {int(labels.max())} outside 0..9: not a CIFAR-10 batch")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _cifar_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnly(io.BytesIO(_read(path)), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - pickle raises many types on foreign bytes
        raise ColourDataError(f"{path}: not a CIFAR python batch, refused without running it "
                              f"({type(e).__name__}: {e})".splitlines()[0]) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ColourDataError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ColourDataError(f"{path}: data {data.dtype} {data.shape} and {len(labels)} labels, expected uint8 "
                              f"[n, 3072] and n labels")
    return data.reshape(-1, 3, 32, 32), labels


def _svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(_read(path)))
    except Exception as e:  # noqa: BLE001 - scipy raises several types on foreign files
        raise ColourDataError(f"{path}: unreadable MATLAB file ({type(e).__name__}: {e})".splitlines()[0]) from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or len(y.ravel()) != x.shape[3]:
        raise ColourDataError(f"{path}: expected X [32, 32, 3, n] and y [n, 1]")
    labels = y.ravel().astype(np.int64) % 10  # SVHN writes digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), labels


def _read(path: Path) -> bytes:
    try:
        return read_input(path)
    except InputError as e:
        raise ColourDataError(str(e)) from None
