"""Readers for the model zoos other papers published, turned into our `Zoo`.

- `load_dwsnets_inrs`: DWSNets' MNIST-INR / FMNIST-INR SIRENs (also what NFN, ScaleGMN use).
- `load_nfn_sirens`: NFN's own SIREN zoos (`siren_{mnist,fashion}_wts`), converted to our SIREN.
- `load_cnn_zoo`: Unterthiner et al.'s Small CNN Zoo (`weights.npy`, `layout.csv`, `metrics.csv.gz`).

Safety: `.pth` files are read with `torch.load(weights_only=True)` (tensors and plain containers
only, never arbitrary pickled objects) and `.npy` files with `allow_pickle=False`. Every malformed
input raises `ZooError` with a one-line message that names the file and the problem.
"""

from __future__ import annotations

import ast
import io
import json
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zoos.data import DataError, load_images
from zoos.files import InputError, check_input, load_tensors, read_input
from zoos.space import Params, SpecError, cnn_zoo_space, siren_space
from zoos.zoo import SPLITS, Zoo, ZooError

# DWSNets: one directory per image, its name ending "_{label}_{index}" (mnist_png_training_3_123)
_DWS_DIR = re.compile(r"^.*_(\d+)_(\d+)$")
_DWS_KEYS = ("seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias")
# NFN SIRENs: net.{0,1}.linear.* are sine layers, net.2.* the linear output layer
_NFN_KEYS = {"net.0.linear.weight": "seq.0.weight", "net.0.linear.bias": "seq.0.bias",
             "net.1.linear.weight": "seq.1.weight", "net.1.linear.bias": "seq.1.bias",
             "net.2.weight": "seq.2.weight", "net.2.bias": "seq.2.bias"}
_CNN_ACTIVATIONS = ("relu", "tanh")
# one SIREN state dict is ~5 KB in 6 tensors: generous caps that no real checkpoint reaches
STATE_DICT_LIMIT, STATE_DICT_MEMBERS = 64 * 2**20, 1000
JSON_LIMIT = 256 * 2**20


def _fail(path, problem) -> ZooError:
    # one line whatever the nested error says (torch's and pandas' messages span several lines)
    return ZooError(f"{path}: {' '.join(str(problem).split())}")


# ---- safe .pth reading -------------------------------------------------------------------------
def _load_state_dict(path: Path) -> dict:
    """A `.pth` state dict, read without unpickling anything but tensors and plain containers.

    Sizes are checked first (`zoos.files.load_tensors`, the reader every importer shares): the file, and
    for a zip archive (torch's format) the sizes its members promise once inflated and their number, so
    no archive can expand past what a SIREN needs."""
    try:
        obj = load_tensors(path, STATE_DICT_LIMIT, STATE_DICT_MEMBERS)
    except InputError as e:
        raise ZooError(str(e)) from None
    if not isinstance(obj, dict):
        raise _fail(path, f"holds a {type(obj).__name__}, expected a state dict")
    return obj


def _take_weights(sd: dict, path: Path, names: dict[str, str], label: int | None) -> dict[str, torch.Tensor]:
    """Check a state dict's keys, shapes and values against the SIREN space; rename to our names."""
    sd = dict(sd)
    if "label" in sd:  # the FMNIST variant stores its class label beside the weights
        raw = sd.pop("label")
        try:
            value = raw.item() if isinstance(raw, torch.Tensor) else raw
            stored = int(value)
            if isinstance(value, float) and value != stored:  # 3.5 is no class label
                raise ValueError(value)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise _fail(path, f"key 'label' holds {type(raw).__name__} {str(raw)[:40]!r}, "
                              f"expected an integer") from None
        if label is not None and stored != label:
            raise _fail(path, f"stored label {stored} disagrees with label {label} from its directory name")
    missing = [k for k in names if k not in sd]
    unknown = [k for k in sd if k not in names]
    if missing or unknown:
        raise _fail(path, f"not a SIREN state dict: missing keys {missing or 'none'}, "
                          f"unexpected keys {unknown or 'none'}")
    shapes = siren_space().shapes()
    out = {}
    for key, ours in names.items():
        t = sd[key]
        if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t):
            raise _fail(path, f"{key} is {type(t).__name__} {getattr(t, 'dtype', '')}, expected a float tensor")
        if tuple(t.shape) != shapes[ours]:
            raise _fail(path, f"{key} has shape {tuple(t.shape)}, expected {shapes[ours]} (SIREN 2-32-32-1)")
        if not torch.isfinite(t).all():
            raise _fail(path, f"{key} contains NaN or inf weights")
        out[ours] = t.detach().float()
    return out


def _stack(rows: list[dict[str, torch.Tensor]]) -> Params:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _need_images(images, root: Path) -> None:
    if images is None:
        raise ZooError(f"{root}: an INR zoo is scored against its source images: give --images <directory with "
                       f"MNIST-format train-*/t10k-* IDX files> (images= in Python; MNIST for MNIST zoos, "
                       f"Fashion-MNIST for FMNIST)")


def _load_idx(images, which: str):
    try:
        return load_images(str(images), which)
    except DataError as e:
        raise ZooError(" ".join(str(e).split())) from None


def _source_images(images, root: Path, needed: list[tuple[str, int, int, str]]):
    """Targets for (set, index, label, file) rows: a [K, 28, 28] stack and each row's position in it.

    `set` is "train" or "test" (which IDX pair the index points into). The label read from the
    zoo's file names must match the IDX label: a mismatch means `images` is the wrong data set.
    """
    _need_images(images, root)
    pool = {}
    for which in sorted({n[0] for n in needed}):
        pool[which] = _load_idx(images, which)
    keys = sorted({(w, i) for w, i, _, _ in needed})
    position = {k: p for p, k in enumerate(keys)}
    for which, index, label, where in needed:
        x, y = pool[which]
        if not 0 <= index < len(x):
            raise _fail(where, f"image index {index} is outside the {len(x)} {which} images of {images}")
        if int(y[index]) != label:
            raise _fail(where, f"label {label} but {which} image {index} of {images} has label {int(y[index])} "
                               f"(wrong data set for this zoo?)")
    targets = torch.stack([pool[w][0][i] for w, i in keys]).float()
    return targets, [position[(w, i)] for w, i, _, _ in needed]


# ---- DWSNets INRs ------------------------------------------------------------------------------
def _dws_entry(path: Path, root: Path) -> dict | None:
    """Label, image index and source set from the nearest "..._{label}_{index}" directory."""
    for parent in path.relative_to(root).parents:
        m = _DWS_DIR.match(parent.name)
        if m:
            name = parent.name
            if "train" in name:
                source = "training"
            elif "test" in name:
                source = "testing"
            else:
                raise _fail(root / parent, "directory name says neither 'train' nor 'test': cannot tell "
                                           "which image set its index refers to")
            return {"id": name, "path": str(path), "label": int(m.group(1)), "image_index": int(m.group(2)),
                    "source_split": source}
    return None


def _resolve(listed: str, root: Path, splits_json: Path) -> Path:
    """A path from the splits JSON (absolute, or relative to some other checkout) found under root."""
    parts = Path(listed).relative_to(Path(listed).anchor).parts if "\0" not in listed else ()
    for k in range(2, len(parts) + 1):  # shortest suffix first: ".../<image dir>/checkpoints/model_final.pth"
        if ".." in parts[-k:]:  # never outside root
            break
        candidate = root.joinpath(*parts[-k:])
        if candidate.exists():  # a FIFO or directory of that name is refused by name when read
            return candidate
    raise _fail(splits_json, f"lists {listed}, which is not found under {root}")


def _read_splits(splits_json: Path, root: Path) -> list[tuple[Path, str, int | None]]:
    if not splits_json.exists():
        raise _fail(splits_json, "no such splits file")
    try:
        data = json.loads(read_input(splits_json, JSON_LIMIT))
    except InputError as e:
        raise ZooError(str(e)) from None
    except (ValueError, OSError, RecursionError) as e:
        raise _fail(splits_json, f"not valid JSON ({e})") from None
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise _fail(splits_json, f"expected an object with keys {', '.join(SPLITS)}")
    entries = []
    for split in SPLITS:
        part = data.get(split, [])
        # DWSNets: {"path": [...], "label": [...]}; ScaleGMN's FMNIST file: a plain list of paths
        paths = part.get("path", []) if isinstance(part, dict) else part
        labels = part.get("label") if isinstance(part, dict) else None
        if not isinstance(paths, list) or (labels is not None and (not isinstance(labels, list)
                                                                   or len(labels) != len(paths))):
            raise _fail(splits_json, f"split {split!r}: expected a list of paths (and as many labels)")
        for i, listed in enumerate(paths):
            try:
                label = None if labels is None else int(labels[i])
            except (TypeError, ValueError):
                raise _fail(splits_json, f"split {split!r}: label {labels[i]!r} is not an integer") from None
            entries.append((_resolve(str(listed), root, splits_json), split, label))
    return entries


def load_dwsnets_inrs(root, splits_json=None, images=None, split: str | None = None) -> Zoo:
    """DWSNets' MNIST/FMNIST INR zoo: `root/<..._{label}_{index}>/checkpoints/model_final.pth`.

    Each file is a SIREN 2-32-32-1 state dict (`seq.{0,1,2}.{weight,bias}`, PyTorch [out, in]),
    plus `label` in the FMNIST variant; the weights are used as they are, since our `siren_space`
    is DWSNets' network ('xy' grid, w0 = 30, +0.5 on the output). The directory name gives the
    label and the index into the MNIST training or test set ("train"/"test" in the name).

    splits_json: DWSNets' `{"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}`
    (paths may be absolute paths of another machine: they are matched by their tail under
    `root`); the JSON then decides which networks are loaded and the `split` column. Without it
    every checkpoint under root is loaded and splits are drawn by `Zoo` (seeded, by network).
    images: a directory with the source IDX files (`train-*`, `t10k-*`), required: an INR's loss
    is measured against its image. split: load only "train", "val" or "test" (needs splits_json).

    Meta columns: id (directory name), path, label, image_index, source_split
    ("training"/"testing"), split, target (row of `zoo.targets`).
    """
    root = Path(root)
    if not root.is_dir():
        raise _fail(root, "no such INR zoo directory")
    _need_images(images, root)
    if split is not None and (split not in SPLITS or splits_json is None):
        raise _fail(root, f"split={split!r}: choose one of {', '.join(SPLITS)}, and pass splits_json to select by it")
    if splits_json is not None:
        entries = [(p, s, lab) for p, s, lab in _read_splits(Path(splits_json), root) if split in (None, s)]
    else:
        entries = [(p, None, None) for p in sorted(root.rglob("*.pth"))]
    rows, weights = [], []
    for path, part, listed_label in entries:
        entry = _dws_entry(path, root)
        if entry is None:
            if splits_json is not None:
                raise _fail(path, "no '<name>_{label}_{index}' directory above it to find its source image")
            continue  # e.g. DWSNets' dataset/statistics.pth beside the INR directories
        if listed_label is not None and listed_label != entry["label"]:
            raise _fail(splits_json, f"lists {path.name} in {entry['id']} with label {listed_label}, "
                                     f"its directory says {entry['label']}")
        weights.append(_take_weights(_load_state_dict(path), path, {k: k for k in _DWS_KEYS}, entry["label"]))
        if part is not None:
            entry["split"] = part
        rows.append(entry)
    if not rows:
        raise _fail(root, "no INR checkpoints found (expected <name>_{label}_{index}/checkpoints/model_final.pth)")
    needed = [("train" if r["source_split"] == "training" else "test", r["image_index"], r["label"], r["path"])
              for r in rows]
    targets, target = _source_images(images, root, needed)
    meta = pd.DataFrame(rows).assign(target=target)
    zoo = _make_zoo(root, f"dwsnets-{root.name}", siren_space(), _stack(weights), meta, {"kind": "inr"}, targets)
    if splits_json is None:  # said once everything loaded: a refusal stays one line
        print(f"bench: warning: {root}: no splits JSON given: every checkpoint found was loaded and the harness "
              f"drew the splits (give --splits FILE, or splits_json= in Python, for the published ones)",
              file=sys.stderr)
    return zoo


# ---- NFN SIRENs --------------------------------------------------------------------------------
def load_nfn_sirens(root, images=None, prefix: str = "randinit_smaller", value_range=(-1.0, 1.0),
                    split_points=(45_000, 50_000)) -> Zoo:
    """NFN's grey SIREN zoos: `root/{prefix}_{label}s/net{idx}.pth` (keys net.0.linear.*, net.1.linear.*, net.2.*).

    NFN's SIREN is ours up to two conventions, both folded exactly into the weights:
    - grid: NFN builds it with meshgrid 'ij', so pixel (row i, col j) gets input (row_i, col_j);
      ours ('xy') gives (col_j, row_i). Swapping the two input columns of the first weight makes
      the network compute the same image on our grid.
    - output: NFN adds no +0.5 and fits images normalised to `value_range` (NFN's data code uses
      Normalize(0.5, 0.5), i.e. [-1, 1]); ours renders grey levels in [0, 1] and adds 0.5. With
      lo, hi = value_range: W2' = W2 / (hi - lo), b2' = (b2 - lo) / (hi - lo) - 0.5. For zoos
      fitted to raw [0, 1] pixels pass value_range=(0, 1): that is the plain b2' = b2 - 0.5.

    idx indexes the concatenation (training set, then test set) of the source images, as NFN's
    `SirenAndOriginalDataset` does; `images` (a directory of MNIST-format IDX files) is required
    and the label in the directory name must match the image's. Splits follow NFN: idx below
    split_points[0] train, below split_points[1] val, the rest test. Only the grey 28x28
    (MNIST/Fashion-MNIST) zoos fit our SIREN; the CIFAR one (3 outputs) is refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise _fail(root, "no such NFN SIREN directory")
    _need_images(images, root)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range {value_range}: need lo < hi")
    dir_re, file_re = re.compile(rf"^{re.escape(prefix)}_(\d+)s$"), re.compile(r"^net(\d+)\.pth$")
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and dir_re.match(p.name)):
        label = int(dir_re.match(d.name).group(1))
        found += [(int(file_re.match(f.name).group(1)), label, f) for f in d.iterdir() if file_re.match(f.name)]
    if not found:
        raise _fail(root, f"no NFN SIRENs found (expected {prefix}_{{label}}s/net{{idx}}.pth)")
    found.sort()
    dup = next((b for a, b in zip(found, found[1:], strict=False) if a[0] == b[0]), None)
    if dup:
        raise _fail(dup[2], f"net index {dup[0]} appears in two directories (one image, one SIREN expected)")
    n_train = len(_load_idx(images, "train")[0])  # NFN's idx runs over the training set, then the test set
    rows, weights, needed = [], [], []
    for idx, label, path in found:
        w = _take_weights(_load_state_dict(path), path, _NFN_KEYS, label)
        w["seq.0.weight"] = w["seq.0.weight"][:, [1, 0]].contiguous()  # 'ij' (row, col) -> our 'xy' (col, row)
        w["seq.2.weight"] = w["seq.2.weight"] / (hi - lo)
        w["seq.2.bias"] = (w["seq.2.bias"] - lo) / (hi - lo) - 0.5
        weights.append(w)
        which, index = ("train", idx) if idx < n_train else ("test", idx - n_train)
        needed.append((which, index, label, str(path)))
        split = "train" if idx < split_points[0] else "val" if idx < split_points[1] else "test"
        rows.append({"id": f"{path.parent.name}/{path.name}", "path": str(path), "label": label, "nfn_index": idx,
                     "image_index": index, "source_split": "training" if which == "train" else "testing",
                     "split": split})
    targets, target = _source_images(images, root, needed)
    meta = pd.DataFrame(rows).assign(target=target)
    return _make_zoo(root, f"nfn-{root.name}", siren_space(), _stack(weights), meta, {"kind": "inr"}, targets)


# ---- Unterthiner et al.'s CNN zoo ----------------------------------------------------------------
def _read_layout(path: Path, row_length: int) -> list[dict]:
    """layout.csv rows as {var, layer, kind, start, end, shape}, checked against the weight rows."""
    try:
        table = pd.read_csv(io.BytesIO(read_input(path)))
    except InputError as e:
        raise ZooError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - pandas raises several parser error types
        raise _fail(path, f"unreadable CSV ({e})") from None
    cols = {"varname", "start_idx", "end_idx", "size", "shape"}
    if not cols <= set(table.columns):
        raise _fail(path, f"missing column(s) {', '.join(sorted(cols - set(table.columns)))}")
    out = []
    for r in table.itertuples(index=False):
        m = re.match(r"^(.+)/(bias|kernel):0$", str(r.varname))
        if not m:
            raise _fail(path, f"variable {r.varname!r} is neither '<layer>/bias:0' nor '<layer>/kernel:0'")
        try:
            shape = tuple(int(s) for s in ast.literal_eval(str(r.shape)))  # literal_eval: data, never code
            start, end, size = int(r.start_idx), int(r.end_idx), int(r.size)
        except (ValueError, SyntaxError, TypeError, OverflowError, MemoryError, RecursionError):
            raise _fail(path, f"{r.varname}: unreadable position or shape {r.shape!r}") from None
        if not shape or min(shape) < 1 or not (0 <= start <= end and end - start == size == math.prod(shape)):
            raise _fail(path, f"{r.varname}: [{start}, {end}) size {size} shape {shape} do not agree")
        if end > row_length:
            raise _fail(path, f"{r.varname}: ends at {end}, beyond the weight rows' length {row_length}")
        out.append({"var": r.varname, "layer": m.group(1), "kind": m.group(2), "start": start, "end": end,
                    "shape": shape})
    spans = sorted((v["start"], v["end"]) for v in out)
    if [s for s, _ in spans] != [0] + [e for _, e in spans[:-1]] or (spans and spans[-1][1] != row_length):
        raise _fail(path, f"variables do not tile the {row_length} values of a weight row exactly")
    return out


def _cnn_layers(layout: list[dict], path: Path) -> list[tuple[str, dict, dict]]:
    """(our layer name, bias var, kernel var) for conv, conv, conv, dense in the row's order."""
    layers: dict[str, dict] = {}
    for v in layout:
        layers.setdefault(v["layer"], {})[v["kind"]] = v
    ordered = sorted(layers.items(), key=lambda kv: min(v["start"] for v in kv[1].values()))
    kinds = [len(vs.get("kernel", {}).get("shape", ())) for _, vs in ordered]
    if kinds != [4, 4, 4, 2] or any(set(vs) != {"bias", "kernel"} for _, vs in ordered):
        raise _fail(path, f"expected 3 conv layers then 1 dense layer, each with bias and kernel; "
                          f"found {[name for name, _ in ordered]}")
    names = ("conv1", "conv2", "conv3", "fc")
    return [(ours, vs["bias"], vs["kernel"]) for ours, (_, vs) in zip(names, ordered, strict=True)]


# TF variable scopes of the zoo CNN's layers, in row order
CNN_ZOO_TF_NAMES = {"conv1": "sequential/conv2d", "conv2": "sequential/conv2d_1", "conv3": "sequential/conv2d_2",
                    "fc": "sequential/dense"}


def to_cnn_zoo_row(params: Params, n: int) -> tuple[np.ndarray, list[dict]]:
    """Network `n` of `params` (our `cnn_zoo_space`) as one flat CNN Zoo weight row and its layout.csv
    rows: the inverse of what `load_cnn_zoo` reads (bias before kernel; kernels HWIO and [in, out])."""
    parts, layout, pos = [], [], 0
    for ours, tf in CNN_ZOO_TF_NAMES.items():
        w = params[f"{ours}.weight"][n]
        kernel = w.permute(2, 3, 1, 0) if w.dim() == 4 else w.T  # OIHW -> HWIO; [out, in] -> [in, out]
        for var, arr in ((f"{tf}/bias:0", params[f"{ours}.bias"][n]), (f"{tf}/kernel:0", kernel)):
            arr = arr.detach().contiguous().numpy()
            layout.append({"varname": var, "start_idx": pos, "end_idx": pos + arr.size, "size": arr.size,
                           "shape": str(tuple(arr.shape))})
            parts.append(arr.ravel())
            pos += arr.size
    return np.concatenate(parts).astype(np.float32), layout


def _cnn_splits(meta: pd.DataFrame) -> pd.Series:
    """ScaleGMN's split, per run: final-step rows in file order, second half test, first half
    shuffled by random.Random(0) and cut 80/20 into train/val (before filtering by activation)."""
    final = meta.loc[meta.groupby("modeldir", sort=False)["step"].idxmax()].sort_index()
    runs = final["modeldir"].tolist()
    half = int(0.5 * len(runs))
    first = list(range(half))
    random.Random(0).shuffle(first)
    cut = int(0.8 * len(first))
    split = {runs[i]: "test" for i in range(half, len(runs))}
    split.update({runs[i]: "train" for i in first[:cut]})
    split.update({runs[i]: "val" for i in first[cut:]})
    return meta["modeldir"].map(split)


def _check_metrics(meta: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Columns the loader computes with: a name per run, an integer step, an activation name."""
    step = pd.to_numeric(meta["step"], errors="coerce")
    bad = step.isna() | (step != step.round()) | step.abs().ge(2**53)
    for col in ("modeldir", "config.activation"):
        if col in meta:
            bad |= meta[col].isna()
    if bad.any():
        raise _fail(path, f"row {int(bad.to_numpy().argmax())}: needs a 'modeldir', an integer 'step' and "
                          f"(if present) a 'config.activation'")
    meta = meta.assign(step=step.astype(np.int64), modeldir=meta["modeldir"].map(str))
    if "config.activation" in meta:
        meta["config.activation"] = meta["config.activation"].map(str)
    return meta


def load_cnn_zoo(directory, activation: str | None = None, step="final", order=None, dataset=None) -> Zoo:
    """Unterthiner et al.'s Small CNN Zoo directory: weights.npy, layout.csv, metrics.csv[.gz].

    weights.npy holds one flat TensorFlow parameter vector per row (4970 values: bias before
    kernel per layer, conv kernels HWIO, dense [in, out]); positions come from layout.csv and are
    converted to our `cnn_zoo_space` (conv1..conv3 OIHW, fc [out, in]); in_channels, width and
    classes are read from the kernel shapes. metrics has one row per weight row (config.*,
    modeldir, step, test_accuracy, ...); all its columns go into the zoo's metadata.

    activation: the zoo mixes relu and tanh runs and a Zoo holds one weight space, so choose one
    (may be omitted when the file holds only one). step: "final" keeps each run's last checkpoint,
    an int keeps that step, None keeps every row. order: optional headerless CSV of row indices
    (NFN's `cifar10_split.csv`) applied first, as NFN/ScaleGMN do, to reproduce their split.
    Splits are ScaleGMN's (see `_cnn_splits`), assigned per run so every step of a run shares one.

    dataset: the images the zoo was trained on, scored on their full test split: "fashion-mnist", or
    a folder of MNIST-format IDX files, CIFAR-10 batches (binary or python) or SVHN `.mat` files
    (grey, [-1, 1], as the zoo saw them; 32x32 for CIFAR-10 and SVHN, recorded in the input shape).
    Without it, metrics.csv's `config.dataset` decides (fashion_mnist is found here; mnist, cifar10
    and svhn_cropped need their folder); a zoo naming none is scored on "auto", with a warning.
    A data set whose image size disagrees with `config.dataset`, or with more classes than the
    zoo's outputs, is refused.
    """
    directory = Path(directory)
    flat, layers, meta, (weights_path, layout_path, metrics_path) = _read_cnn_zoo_files(directory)
    meta = _ordered(meta, order)
    meta = meta.assign(split=_cnn_splits(meta))
    meta, act = _select_runs(meta, step, activation, metrics_path)
    params = _cnn_params(flat, meta, layers, weights_path)
    first = layers[0][2]["shape"]  # (3, 3, in_channels, channels)
    classes = layers[3][2]["shape"][1]
    source, image = _cnn_dataset(dataset, meta, metrics_path, classes, first[2])
    try:
        space = cnn_zoo_space(act, channels=first[3], image=image, in_channels=first[2], classes=classes)
    except SpecError as e:
        raise _fail(layout_path, e) from None
    meta.insert(0, "id", [f"{d}@{s}" for d, s in zip(meta["modeldir"], meta["step"], strict=True)])
    # imported zoos are scored on the whole test split, so their published test_accuracy can be reproduced
    task = {"kind": "classifier", "dataset": source, "n_eval": None if source != "auto" else 2000}
    zoo = _make_zoo(layout_path, f"cnnzoo-{directory.name}-{act}", space, params, meta, task, None)
    if source == "auto":  # said once everything loaded: a refusal stays one line
        print(f"bench: warning: {metrics_path}: no config.dataset and no --dataset: the zoo is scored on 'auto' "
              f"(Fashion-MNIST or digits); give --dataset if it was trained on other images", file=sys.stderr)
    return zoo


def _read_cnn_zoo_files(directory: Path):
    """weights.npy (memory-mapped), its layers from layout.csv, and metrics checked row for row against it."""
    if not directory.is_dir():
        raise _fail(directory, "no such CNN zoo directory")
    weights_path, layout_path = directory / "weights.npy", directory / "layout.csv"
    metrics_path = next((directory / f for f in ("metrics.csv.gz", "metrics.csv") if (directory / f).exists()), None)
    for path in (weights_path, layout_path):
        if not path.exists():
            raise _fail(path, "missing (a CNN zoo directory holds weights.npy, layout.csv, metrics.csv[.gz])")
    if metrics_path is None:
        raise _fail(directory / "metrics.csv.gz", "missing (neither metrics.csv.gz nor metrics.csv)")
    try:
        check_input(weights_path, math.inf)  # memory-mapped below: its size is no concern, a FIFO is
    except InputError as e:
        raise ZooError(str(e)) from None
    try:  # memory-mapped: the full zoo is GBs and we keep a fraction of its rows
        flat = np.load(weights_path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError (object arrays), OSError, EOFError...
        raise _fail(weights_path, f"unreadable .npy without pickle ({e})") from None
    if flat.ndim != 2 or flat.dtype.kind != "f":
        raise _fail(weights_path, f"holds {flat.dtype} {flat.shape}, expected a 2-D float array (rows x params)")
    layers = _cnn_layers(_read_layout(layout_path, flat.shape[1]), layout_path)
    try:
        meta = pd.read_csv(io.BytesIO(read_input(metrics_path)))
    except InputError as e:
        raise ZooError(str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise _fail(metrics_path, f"unreadable CSV ({e})") from None
    if len(meta) != flat.shape[0]:
        raise _fail(metrics_path, f"has {len(meta)} rows but {weights_path.name} has {flat.shape[0]}")
    for col in ("modeldir", "step"):
        if col not in meta:
            raise _fail(metrics_path, f"no column {col!r}")
    meta = _check_metrics(meta, metrics_path).assign(row=np.arange(len(meta)))
    return flat, layers, meta, (weights_path, layout_path, metrics_path)


def _ordered(meta: pd.DataFrame, order) -> pd.DataFrame:
    """The rows in the order of a headerless CSV of row indices (NFN's `cifar10_split.csv`), if one is given."""
    if order is None:
        return meta
    try:
        perm = pd.read_csv(io.BytesIO(read_input(order)), header=None).to_numpy().ravel().astype(np.int64)
    except InputError as e:
        raise ZooError(str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise _fail(order, f"unreadable row order ({e})") from None
    if perm.size and (perm.min() < 0 or perm.max() >= len(meta)):
        raise _fail(order, f"row indices outside 0..{len(meta) - 1}")
    return meta.iloc[perm].reset_index(drop=True)


def _select_runs(meta: pd.DataFrame, step, activation: str | None, metrics_path: Path) -> tuple[pd.DataFrame, str]:
    """The rows at `step` ("final": each run's last) of one activation (a Zoo holds one weight space)."""
    if step == "final":
        meta = meta[meta["step"] == meta.groupby("modeldir")["step"].transform("max")]
    elif step is not None:
        meta = meta[meta["step"] == int(step)]
    if "config.activation" in meta:
        found = sorted(meta["config.activation"].astype(str).unique())
        if activation is None and len(found) > 1:
            raise _fail(metrics_path, f"mixes activations {', '.join(found)}: a zoo holds one weight space, "
                                      f"choose one with --activation (activation= in Python)")
        act = activation or (found[0] if found else None)
        if act not in found:
            raise _fail(metrics_path, f"no runs with activation {act!r} (found: {', '.join(found) or 'none'})")
        meta = meta[meta["config.activation"].astype(str) == act]
    elif activation is None:
        raise _fail(metrics_path, "no column 'config.activation': give --activation (activation= in Python)")
    else:
        act = activation
    if act not in _CNN_ACTIVATIONS:
        raise _fail(metrics_path, f"unknown activation {act!r} (supported: {', '.join(_CNN_ACTIVATIONS)})")
    if meta.empty:
        raise _fail(metrics_path, f"no rows at step={step!r} with activation {act!r}")
    return meta.reset_index(drop=True), act


def _cnn_params(flat: np.ndarray, meta: pd.DataFrame, layers, weights_path: Path) -> dict:
    """The selected rows' parameters in our layout: TF HWIO kernels -> OIHW, dense [in, out] -> [out, in]."""
    data = np.asarray(flat[np.sort(meta["row"].to_numpy())], dtype=np.float32)
    data = data[np.argsort(np.argsort(meta["row"].to_numpy()))]  # back into meta's order
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        raise _fail(weights_path, f"{int(bad.sum())} selected row(s) hold NaN or inf weights "
                                  f"(first: row {int(meta['row'][bad.argmax()])})")
    params = {}
    for ours, bias, kernel in layers:
        k = data[:, kernel["start"]:kernel["end"]].reshape(len(data), *kernel["shape"])
        k = k.transpose(0, 4, 3, 1, 2) if k.ndim == 5 else k.transpose(0, 2, 1)  # the leading axis is the network
        params[f"{ours}.weight"] = torch.from_numpy(np.ascontiguousarray(k))
        params[f"{ours}.bias"] = torch.from_numpy(np.ascontiguousarray(data[:, bias["start"]:bias["end"]]))
    return params


# the CNN Zoo's `config.dataset` (TFDS names) -> our source name (None: the user must give the folder), image size
_CNN_DATASETS = {"mnist": (None, 28), "fashion_mnist": ("fashion-mnist", 28), "cifar10": (None, 32),
                 "svhn_cropped": (None, 32)}


def _cnn_dataset(dataset, meta: pd.DataFrame, metrics_path: Path, classes: int, in_channels: int) -> tuple[str, int]:
    """(source for `load_images`, image size) of a CNN Zoo, checked against its metrics and its shape."""
    named = sorted(meta["config.dataset"].astype(str).unique()) if "config.dataset" in meta else []
    if len(named) > 1:
        raise _fail(metrics_path, f"mixes data sets {', '.join(named)}: one zoo, one data set")
    declared = named[0] if named else None
    if dataset is None:
        if declared is None:
            return "auto", 28
        if declared not in _CNN_DATASETS or _CNN_DATASETS[declared][0] is None:
            raise _fail(metrics_path, f"config.dataset is {declared!r}: give --dataset <its folder> (MNIST-format "
                                      f"IDX files, cifar-10-batches-bin or -py, or SVHN's *_32x32.mat)")
        dataset = _CNN_DATASETS[declared][0]
    try:
        images, labels = load_images(str(dataset), "test")
    except DataError as e:
        raise ZooError(" ".join(str(e).split())) from None
    if in_channels != 1:
        raise _fail(metrics_path, f"the zoo's first layer takes {in_channels} channels; the data here is grey (1)")
    size = images.shape[-1]
    if declared in _CNN_DATASETS and _CNN_DATASETS[declared][1] != size:
        raise _fail(dataset, f"{size}x{size} images, but config.dataset {declared!r} has "
                             f"{_CNN_DATASETS[declared][1]}x{_CNN_DATASETS[declared][1]}: wrong data set for this zoo")
    if int(labels.max()) >= classes:
        raise _fail(dataset, f"labels up to {int(labels.max())}, but the zoo has {classes} outputs")
    return str(dataset), size


def _make_zoo(where, name, space, params, meta, task, targets) -> Zoo:
    try:
        return Zoo(name, space, params, meta.reset_index(drop=True), task, targets)
    except (SpecError, ZooError) as e:
        raise _fail(where, e) from None


__all__ = ["load_cnn_zoo", "load_dwsnets_inrs", "load_nfn_sirens"]
