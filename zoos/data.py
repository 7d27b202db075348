"""Image data the zoos are built from and evaluated on: IDX files and scikit-learn's digits.

Sources, by name: "fashion-mnist" (Debian's dataset-fashion-mnist IDX files), "digits"
(scikit-learn's 8x8 digits, bilinearly upsampled to 28x28 so every zoo keeps the 28x28
architectures), or a directory / file path holding MNIST-format IDX files (gzipped or not), CIFAR-10 batches
(binary or python) or SVHN `.mat` files (`zoos.colour`: 32x32, converted to grey as the CNN Zoo).
"auto" takes Fashion-MNIST when installed and falls back to digits.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoos.colour import ColourDataError, find_colour_dataset, load_colour
from zoos.files import InputError, ResourceError, check_input, check_memory, too_large

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A dataset that is missing or malformed; the message names the path."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX array; the header is checked (magic, and the size its shape promises, in exact integers)
    before the payload is read, and no more than that size is ever inflated."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such IDX file")
    try:
        check_input(path)
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            shape_bytes = f.read(4 * head[3])
            if len(shape_bytes) != 4 * head[3]:
                raise DataError(f"{path}: truncated IDX header")
            dims = tuple(int(d) for d in np.frombuffer(shape_bytes, ">u4"))
            dtype = np.dtype(IDX_DTYPES[head[2]])
            size = math.prod(dims) * dtype.itemsize  # Python integers: a product cannot overflow
            error = too_large(path, f"header promises shape {dims}:", size)
            if error:
                raise DataError(str(error))
            payload = f.read(size + 1)
    except InputError as e:
        raise DataError(str(e)) from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if len(payload) != size:
        raise DataError(f"{path}: truncated or oversized IDX file (header says shape {dims})")
    return np.frombuffer(payload, dtype).reshape(dims)


def _idx_pair(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    stem = "train" if split == "train" else "t10k"
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for name in (f"{stem}-{kind}.gz", f"{stem}-{kind}"):
            if (directory / name).exists():  # a FIFO of that name is found here, then refused by name
                found[kind] = directory / name
                break
        else:
            raise DataError(f"{directory}: no {stem}-{kind}[.gz] file (expected MNIST-format IDX files)")
    images, labels = read_idx(found["images-idx3-ubyte"]), read_idx(found["labels-idx1-ubyte"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def fashion_mnist_available() -> bool:
    return (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


_warned_fallback = False


def resolve_source(source: str) -> str:
    """"auto" -> "fashion-mnist" when installed, else "digits" (with a one-time warning: results on
    digits are not comparable with results on Fashion-MNIST, and the result keys say so)."""
    global _warned_fallback
    if source != "auto":
        return source
    if fashion_mnist_available():
        return "fashion-mnist"
    if not _warned_fallback:
        _warned_fallback = True
        print(f"bench: warning: Fashion-MNIST not found under {FASHION_MNIST_DIR} (apt-get install "
              f"dataset-fashion-mnist); using scikit-learn's digits instead", file=sys.stderr)
    return "digits"


_LOADED: dict = {}  # (source, split, files' names, sizes and mtimes) -> (images, labels): one read per process


def _signature(source: str) -> tuple:
    """What the files behind `source` are now (an edited or replaced file reads afresh)."""
    directory = FASHION_MNIST_DIR if source == "fashion-mnist" else Path(source)
    if source == "digits" or not directory.is_dir():
        return ()
    return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory)
                        if e.is_file()))


def load_images(source: str = "auto", split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images in [0, 1] as [n, H, W] float32 (28x28; 32x32 for CIFAR-10 and SVHN) and labels [n] int64.
    Read once per process while the files stay as they are (data-reading methods draw a batch per call);
    callers must not modify the tensors in place."""
    source = resolve_source(source)
    key = (source, split, _signature(source))
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = _load_images(source, split)
    return _LOADED[key]


def _load_images(source: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32) / 16.0
        y = torch.tensor(d.target, dtype=torch.long)
        # a fixed split so train/test never overlap: every 5th image is test
        keep = (torch.arange(len(x)) % 5 == 0) == (split != "train")
        x = F.interpolate(x[keep, None], size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
        return x.clamp(0, 1), y[keep]
    directory = FASHION_MNIST_DIR if source == "fashion-mnist" else Path(source)
    if not directory.exists():
        hint = " (apt-get install dataset-fashion-mnist, or use --data digits)" if source == "fashion-mnist" else ""
        raise DataError(f"{directory}: dataset path does not exist{hint}")
    if directory.is_file():
        directory = directory.parent
    kind = find_colour_dataset(directory)
    if kind is not None:
        try:
            images, labels = load_colour(directory, kind, split)
        except ColourDataError as e:
            raise DataError(str(e)) from None
        return torch.from_numpy(images), torch.from_numpy(labels)
    images, labels = _idx_pair(directory, split)
    try:  # the float copy is 4x the bytes read: refuse it here, in one line, rather than as a MemoryError
        check_memory(f"{directory}: {len(images)} {split} images as float32", 2 * images.size * 4)
    except ResourceError as e:
        raise DataError(str(e)) from None
    scaled = images.astype(np.float32)
    np.divide(scaled, 255.0, out=scaled)  # in place: the floats of `/ 255.0` without a second copy
    return torch.from_numpy(scaled), torch.from_numpy(labels.astype(np.int64))


def check_classifier_data(source: str, images: torch.Tensor, labels: torch.Tensor, input_hw: tuple[int, int],
                          classes: int, split: str = "train") -> None:
    """DataError (one line, naming the data) unless the images are `input_hw` and every label is a class of
    `classes`: checked before workers start, so that a wrong data set is one message, not a worker's crash."""
    where = FASHION_MNIST_DIR if source == "fashion-mnist" else source
    if len(images) == 0:
        raise DataError(f"{where}: the {split} split holds no images")
    if tuple(images.shape[-2:]) != tuple(input_hw):
        raise DataError(f"{where}: {split} images are {tuple(images.shape[-2:])} pixels, the networks read "
                        f"{tuple(input_hw)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise DataError(f"{where}: {split} labels range over [{low}, {high}], the networks have {classes} classes "
                        f"(labels 0 to {classes - 1})")
