"""Hostile inputs: broken zoo files, and the `bench` command that must refuse each one.

Each `Case.make(good_zoo, work)` writes one hostile input under `work` (a damaged copy of the good
stored INR zoo `good_zoo`, or published-format files written from scratch) and returns the argv of
the `bench` command that reads it. The contract, checked by tests/test_hostile.py and `run_case`:
exit code 2; exactly one stderr line, `bench: error: ...`, naming the offending file (`work /
case.file`) and containing `case.expect`; no traceback; nothing left under the results or output
directory; and no pickled payload run (the `MARKER` file never appears).

Stored-zoo cases write the zoo to `work / ZOO` and return a `bench run` argv, the command that must
refuse the zoo before it writes any result; `info_argv(work)` is the same zoo through `bench zoo info`.

Each case names the class of failure it belongs to (`CLASSES`): malformed files, the user's data
under an output path (the user's files, `Case.user_files`, must survive unchanged: they are not
leftovers), and inputs that would hang or exhaust memory (FIFOs, devices, headers and archives
promising more than `zoos.files.input_limit()`; `Case.env` lowers that limit for a case, so a
bomb need not be gigabytes to test).

Dtypes: weights are float32 in every method, so a stored zoo in another floating point dtype
(float16, bfloat16, float64) is converted on load (not a case here), while integer weights are refused.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import pickle
import random
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from zoos.formats import to_cnn_zoo_row

ZOO, RESULTS, OUT, MARKER = "zoo", "results", "out", "payload-ran"
PREFIX = "bench: error: "


@dataclass(frozen=True)
class Case:
    name: str
    description: str  # one short phrase, for a report table
    make: Callable[[Path, Path], list[str]]
    expect: str  # a fragment the error line must contain
    file: str  # the offending file, relative to the work directory
    stored: bool = True  # a stored-zoo case (bench run / bench zoo info), else an import
    klass: str = "malformed"  # a key of CLASSES
    user_files: tuple[str, ...] = ()  # the user's files (relative to the work directory) that must survive
    env: tuple[tuple[str, str], ...] = ()  # environment variables set while the command runs


CLASSES = {"malformed": "malformed or inconsistent files (earlier catalogue)",
           "user-data": "1. the user's data under an output path",
           "hang-or-memory": "5. inputs that hang or exhaust memory",
           # issue 34 (refusals; its other cases are scenarios in tests/harness/safety.py)
           "importers": "III.3 importers without the input guards",
           "workers": "III.6 errors lost in worker processes"}


@contextlib.contextmanager
def case_env(case: Case):
    saved = {k: os.environ.get(k) for k, _ in case.env}
    os.environ.update(dict(case.env))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


USER_TEXT = "the user's own notes: not the harness's to delete"


def files_lost(case: Case, work: Path) -> int:
    """How many of the case's user files are gone or changed."""
    return sum(not (Path(work) / f).is_file() or (Path(work) / f).read_text() != USER_TEXT for f in case.user_files)


class _Payload:
    """Unpickling this calls open(marker, "w"): a file that runs code when loaded unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def run_argv(work: Path) -> list[str]:
    return ["run", "--preset", "smoke", "--zoo", str(work / ZOO), "--results", str(work / RESULTS),
            "--methods", "naive", "--no-mlflow", "--no-report", "--quiet"]


def info_argv(work: Path) -> list[str]:
    return ["zoo", "info", str(work / ZOO)]


def leftovers(work: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Files a failed command left where it writes (results, import output and its temp siblings),
    other than the user's own files `keep` (relative to `work`)."""
    roots = [work / RESULTS, work / OUT, *work.glob(f"{OUT}.tmp-*"), *work.glob(f".tmp-{OUT}*")]
    kept = {str(work / k) for k in keep}
    return sorted(str(p) for root in roots if root.exists() for p in [root, *root.rglob("*")]
                  if p.is_file() and str(p) not in kept)


# ---- stored zoo edits ----------------------------------------------------------------------------
def _copy(good: Path, work: Path) -> Path:
    shutil.copytree(good, work / ZOO)
    return work / ZOO


def _weights(edit: Callable[[dict], None]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / "weights.safetensors"
        tensors = load_file(path)
        edit(tensors)
        save_file(tensors, path)
        return run_argv(work)
    return make


def _meta(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / "metadata.parquet"
        edit(pd.read_parquet(path)).to_parquet(path, index=False)
        return run_argv(work)
    return make


def _spec(edit: Callable[[dict], None]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / "spec.json"
        spec = json.loads(path.read_text())
        edit(spec)
        path.write_text(json.dumps(spec))
        return run_argv(work)
    return make


def _bytes(name: str, edit: Callable[[bytes], bytes]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / name
        path.write_bytes(edit(path.read_bytes()))
        return run_argv(work)
    return make


def _delete(name: str) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        (_copy(good, work) / name).unlink()
        return run_argv(work)
    return make


def _set(key: str, index: tuple, value: float) -> Callable[[dict], None]:
    def edit(tensors):
        tensors[key] = tensors[key].clone()
        tensors[key][index] = value
    return edit


def _garbage(_: bytes) -> bytes:
    return random.Random(0).randbytes(4096)


def _empty(good: Path, work: Path) -> list[str]:
    """Every parameter with 0 networks, and 0 metadata rows to match."""
    def edit(tensors):
        for k in tensors:
            if k != "__targets__":
                tensors[k] = tensors[k][:0].contiguous()
    argv = _weights(edit)(good, work)
    path = work / ZOO / "metadata.parquet"
    pd.read_parquet(path).iloc[:0].to_parquet(path, index=False)
    return argv


def _layer(spec: dict, i: int, **change) -> None:
    spec["space"]["layers"][i].update(change)


# ---- published formats, written from scratch ------------------------------------------------------
def _write_idx(directory: Path, stem: str, label: int) -> None:
    """One black 28x28 image with `label`, as MNIST IDX files (the INR importers need source images)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + np.array([1, 28, 28], ">u4").tobytes()
                                                          + bytes(28 * 28))
    (directory / f"{stem}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + np.array([1], ">u4").tobytes()
                                                          + bytes([label]))


def _inr_import(fmt: str, raw_pickle: bool = False) -> Callable[[Path, Path], list[str]]:
    """A DWSNets / NFN checkpoint whose only 'tensor' unpickles into a call of open()."""
    def make(good, work):
        images = work / "images"
        for stem in ("train", "t10k"):
            _write_idx(images, stem, 3)
        root = work / fmt
        path = root / (_DWS_PTH if fmt == "dwsnets" else _NFN_PTH)
        path.parent.mkdir(parents=True)
        state = {"seq.0.weight": _Payload(work / MARKER)}
        if raw_pickle:
            path.write_bytes(pickle.dumps(state))
        else:
            torch.save(state, path)
        return ["zoo", "import", fmt, str(root), "--images", str(images), "--out", str(work / OUT)]
    return make


_DWS_PTH = "mnist_png_training_3_0/checkpoints/model_final.pth"
_NFN_PTH = "randinit_smaller_3s/net0.pth"


def write_cnn_format(directory: Path, runs: int = 2, channels: int = 4, seed: int = 0) -> None:
    """A small, valid Small-CNN-Zoo directory: weights.npy (flat TF rows), layout.csv, metrics.csv."""
    from zoos.space import cnn_zoo_space

    space = cnn_zoo_space("relu", channels=channels)
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(runs, *s, generator=g) * 0.3 for k, s in space.shapes().items()}
    rows, layout = [], []
    for n in range(runs):
        row, layout = to_cnn_zoo_row(params, n)
        rows.append(row)
    directory.mkdir(parents=True)
    np.save(directory / "weights.npy", np.stack(rows).astype(np.float32))
    pd.DataFrame(layout).to_csv(directory / "layout.csv", index=False)
    pd.DataFrame({"config.activation": "relu", "modeldir": [f"run{i}" for i in range(runs)], "step": 86,
                  "test_accuracy": 0.5}).to_csv(directory / "metrics.csv", index=False)


def cnn_import_argv(work: Path) -> list[str]:
    return ["zoo", "import", "cnnzoo", str(work / "cnn"), "--activation", "relu", "--out", str(work / OUT)]


def _cnn(edit: Callable[[Path, Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        write_cnn_format(work / "cnn")
        edit(work / "cnn", work)
        return cnn_import_argv(work)
    return make


def _layout(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path, Path], None]:
    def change(directory, work):
        path = directory / "layout.csv"
        edit(pd.read_csv(path)).to_csv(path, index=False)
    return change


def _npy(edit: Callable[[np.ndarray, Path], np.ndarray]) -> Callable[[Path, Path], None]:
    def change(directory, work):
        path = directory / "weights.npy"
        np.save(path, edit(np.load(path), work), allow_pickle=True)
    return change


def _nan_row(w, work):
    w[0, -1] = np.nan
    return w


def _fewer_metric_rows(directory, work):
    path = directory / "metrics.csv"
    pd.read_csv(path).iloc[:-1].to_csv(path, index=False)


# ---- the user's data under an output path, and inputs that hang or exhaust memory ----------------
def _user_folder(work: Path) -> Path:
    (work / OUT).mkdir(parents=True, exist_ok=True)
    (work / OUT / "notes.txt").write_text(USER_TEXT)
    return work / OUT


def _import_over_user_folder(good, work):
    write_cnn_format(work / "cnn")
    _user_folder(work)
    return cnn_import_argv(work)


def _build_over_user_folder(good, work):
    _user_folder(work)
    return ["zoo", "build", "inr", "--images", "1", "--steps", "2", "--data", "digits", "--quiet", "--out",
            str(work / OUT)]


def _fifo(name: str) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / name
        path.unlink()
        os.mkfifo(path)  # opening it for reading blocks until a writer comes: forever
        return run_argv(work)
    return make


def _device(name: str) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        path = _copy(good, work) / name
        path.unlink()
        path.symlink_to("/dev/zero")  # endless zeros
        return run_argv(work)
    return make


def _idx_header(dims, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _idx_build(header: bytes, gz: bool) -> Callable[[Path, Path], list[str]]:
    """`zoo build inr` on an IDX directory whose images file carries `header` (and a little payload)."""
    def make(good, work):
        images = work / "images"
        for stem in ("train", "t10k"):
            _write_idx(images, stem, 3)
        path = images / "train-images-idx3-ubyte"
        path.unlink()
        payload = header + bytes(4096)
        if gz:
            with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
                fh.write(payload)
        else:
            path.write_bytes(payload)
        return ["zoo", "build", "inr", "--images", "1", "--steps", "2", "--data", str(images), "--quiet", "--out",
                str(work / OUT)]
    return make


def _pth_archive(sizes: dict[str, int]) -> Callable[[Path, Path], list[str]]:
    """A DWSNets import whose one checkpoint is a zip archive of members of zeros, {name: size} (deflated)."""
    def make(good, work):
        images = work / "images"
        for stem in ("train", "t10k"):
            _write_idx(images, stem, 3)
        path = work / "dwsnets" / _DWS_PTH
        path.parent.mkdir(parents=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, size in sizes.items():
                with archive.open(name, "w") as member:
                    for start in range(0, size, 2**20):
                        member.write(bytes(min(2**20, size - start)))
        return ["zoo", "import", "dwsnets", str(work / "dwsnets"), "--images", str(images), "--out", str(work / OUT)]
    return make


def _metrics_gzip_bomb(directory, work):
    (directory / "metrics.csv").unlink()
    with gzip.open(directory / "metrics.csv.gz", "wb") as fh:  # ~4 MB inflated from a few KB
        fh.write(b"config.activation,modeldir,step,test_accuracy\n" + b"relu,run0,86,0.5\n" * 250_000)


def _metadata_bomb(good, work):
    path = _copy(good, work) / "metadata.parquet"
    meta = pd.read_parquet(path)
    meta["padding"] = [chr(65 + i % 26) * 200_000 for i in range(len(meta))]  # compresses to ~nothing
    meta.to_parquet(path, index=False)
    return run_argv(work)


_SMALL_LIMIT = (("REBASIN_MAX_INPUT_BYTES", str(2 * 2**20)),)


# ---- issue 34: the state-dicts importer, and zoo builds whose workers would fail ----------------------
def state_dicts_argv(work: Path) -> list[str]:
    return ["zoo", "import", "state-dicts", str(work / "ckpt"), "--module", "zoos.models:VGG", "--kwargs",
            '{"width": 4}', "--dataset", "digits", "--out", str(work / OUT)]


def _vgg_state() -> dict:
    from zoos.models import VGG

    torch.manual_seed(0)
    return VGG(width=4).state_dict()


def _state_dicts(write: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(good, work):
        (work / "ckpt").mkdir(parents=True)
        write(work / "ckpt")
        return state_dicts_argv(work)
    return make


def _fifo_named(name: str) -> Callable[[Path], None]:
    return lambda folder: os.mkfifo(folder / name)


def _deflated_pt(folder: Path) -> None:
    """A torch-style zip archive whose one member is 64 MiB of zeros, deflated to ~64 KB."""
    with zipfile.ZipFile(folder / "net0.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w") as member:
            for _ in range(64):
                member.write(bytes(2**20))


def _int_tensors(folder: Path) -> None:
    state = _vgg_state()
    key = next(k for k in state if k.endswith("weight"))
    torch.save({**state, key: state[key].round().long()}, folder / "net0.pt")


def _idx_dir(hw: int, label: int) -> Callable[[Path, Path], list[str]]:
    """`zoo build cnn` on an IDX directory of `hw` x `hw` images labelled `label`."""
    def make(good, work):
        images = work / "images"
        images.mkdir(parents=True)
        for stem in ("train", "t10k"):
            (images / f"{stem}-images-idx3-ubyte").write_bytes(_idx_header((50, hw, hw)) + bytes(50 * hw * hw))
            (images / f"{stem}-labels-idx1-ubyte").write_bytes(_idx_header((50,)) + bytes([label]) * 50)
        return ["zoo", "build", "cnn", "--nets", "2", "--epochs", "1", "--workers", "2", "--data", str(images),
                "--quiet", "--out", str(work / OUT)]
    return make


def _missing_data(good, work):
    return ["zoo", "build", "cnn", "--nets", "2", "--epochs", "1", "--workers", "2", "--data", str(work / "nodata"),
            "--quiet", "--out", str(work / OUT)]  # 2 MiB: bombs of a few MB test the same code


# ---- the catalogue ----------------------------------------------------------------------------------
_W, _M, _S = f"{ZOO}/weights.safetensors", f"{ZOO}/metadata.parquet", f"{ZOO}/spec.json"
CASES: dict[str, Case] = {c.name: c for c in (
    Case("safetensors-truncated", "weights.safetensors cut in half",
         _bytes("weights.safetensors", lambda b: b[: len(b) // 2]), "unreadable safetensors file", _W),
    Case("safetensors-garbage", "weights.safetensors replaced by random bytes",
         _bytes("weights.safetensors", _garbage), "unreadable safetensors file", _W),
    Case("weights-wrong-shape", "a weight with half its input columns",
         _weights(lambda t: t.update({"seq.1.weight": t["seq.1.weight"][..., ::2].contiguous()})),
         "seq.1.weight has shape", _W),
    Case("weights-int64", "a bias stored as int64",
         _weights(lambda t: t.update({"seq.0.bias": t["seq.0.bias"].round().long()})),
         "seq.0.bias has dtype torch.int64", _W),
    Case("weights-nan", "one NaN weight", _weights(_set("seq.1.weight", (-1, 0, 0), math.nan)),
         "seq.1.weight contains NaN or inf", _W),
    Case("weights-inf", "one inf bias", _weights(_set("seq.2.bias", (0, 0), math.inf)),
         "seq.2.bias contains NaN or inf", _W),
    Case("targets-nan", "a NaN pixel in the INR target images", _weights(_set("__targets__", (0, 0, 0), math.nan)),
         "__targets__ contains NaN or inf", _W),
    Case("weights-missing-param", "a parameter absent", _weights(lambda t: t.pop("seq.2.bias")),
         "missing parameter(s) seq.2.bias", _W),
    Case("weights-ragged", "one parameter holds fewer networks",
         _weights(lambda t: t.update({"seq.0.bias": t["seq.0.bias"][1:].contiguous()})), "networks, others", _W),
    Case("weights-edited", "weights changed after saving (stale content hash)",
         _weights(lambda t: t.update({"seq.2.bias": t["seq.2.bias"] + 1})), "weights differ from those saved", _W),
    Case("zoo-empty", "zero networks (and zero metadata rows)", _empty, "holds no networks", _W),
    Case("weights-missing", "weights.safetensors absent", _delete("weights.safetensors"), "missing", _W),
    Case("metadata-fewer-rows", "metadata one row short", _meta(lambda m: m.iloc[:-1]),
         "rows but the weights hold", _M),
    Case("metadata-more-rows", "metadata one row too many", _meta(lambda m: pd.concat([m, m.iloc[:1]])),
         "rows but the weights hold", _M),
    Case("metadata-bad-target", "INR target indices past the images",
         _meta(lambda m: m.assign(target=m.target + 10**6)), "'target' indices outside", _M),
    Case("metadata-bad-split", "an unknown split name", _meta(lambda m: m.assign(split="holdout")),
         "column 'split' holds 'holdout'", _M),
    Case("metadata-garbage", "metadata.parquet replaced by random bytes", _bytes("metadata.parquet", _garbage),
         "unreadable parquet file", _M),
    Case("spec-unknown-activation", "spec.json names activation 'gelu'",
         _spec(lambda s: _layer(s, 0, act="gelu")), "unknown activation 'gelu'", _S),
    Case("spec-not-json", "spec.json is not JSON", _bytes("spec.json", lambda b: b[: len(b) // 2]),
         "not valid JSON", _S),
    Case("spec-width-string", "a layer width given as a string", _spec(lambda s: _layer(s, 1, n_in="32")),
         "n_in '32' must be a positive integer", _S),
    Case("spec-unknown-task", "an unknown task kind", _spec(lambda s: s.update(task={"kind": "regression"})),
         "expected an object with kind", _S),
    Case("spec-missing", "spec.json absent", _delete("spec.json"), "missing", _S),
    Case("dwsnets-pickle-code", "DWSNets .pth whose pickle calls open()", _inr_import("dwsnets"),
         "refused: the file holds pickled Python objects", f"dwsnets/{_DWS_PTH}", stored=False),
    Case("dwsnets-raw-pickle", "DWSNets .pth as a plain pickle calling open()", _inr_import("dwsnets", True),
         "pickled Python objects", f"dwsnets/{_DWS_PTH}", stored=False),
    Case("nfn-pickle-code", "NFN .pth whose pickle calls open()", _inr_import("nfn"),
         "refused: the file holds pickled Python objects", f"nfn/{_NFN_PTH}", stored=False),
    Case("cnnzoo-layout-shape", "layout.csv shape disagrees with its size",
         _cnn(_layout(lambda t: t.assign(shape=t["shape"].where(t.index != 1, "(3, 3, 2, 4)")))),
         "do not agree", "cnn/layout.csv", stored=False),
    Case("cnnzoo-layout-gap", "layout.csv leaves weight values uncovered",
         _cnn(_layout(lambda t: t.drop(index=0))), "do not tile", "cnn/layout.csv", stored=False),
    Case("cnnzoo-layout-beyond", "weights.npy rows shorter than layout.csv",
         _cnn(_npy(lambda w, work: w[:, :-5])), "beyond the weight rows", "cnn/layout.csv", stored=False),
    Case("cnnzoo-npy-object", "weights.npy of pickled objects calling open()",
         _cnn(_npy(lambda w, work: np.array([_Payload(work / MARKER)], dtype=object))),
         "unreadable .npy without pickle", "cnn/weights.npy", stored=False),
    Case("cnnzoo-npy-int", "weights.npy of integers", _cnn(_npy(lambda w, work: w.astype(np.int64))),
         "expected a 2-D float array", "cnn/weights.npy", stored=False),
    Case("cnnzoo-nan", "a NaN in weights.npy", _cnn(_npy(_nan_row)), "NaN or inf", "cnn/weights.npy",
         stored=False),
    Case("cnnzoo-metrics-rows", "metrics.csv one row short", _cnn(_fewer_metric_rows), "rows but weights.npy has",
         "cnn/metrics.csv", stored=False),
    Case("import-over-user-folder", "`zoo import --out` a folder of the user's files", _import_over_user_folder,
         "not a zoo this harness wrote", OUT, stored=False, klass="user-data", user_files=(f"{OUT}/notes.txt",)),
    Case("build-over-user-folder", "`zoo build --out` a folder of the user's files", _build_over_user_folder,
         "not a zoo this harness wrote", OUT, stored=False, klass="user-data", user_files=(f"{OUT}/notes.txt",)),
    Case("weights-fifo", "weights.safetensors is a FIFO", _fifo("weights.safetensors"), "a FIFO, not a regular file",
         _W, klass="hang-or-memory"),
    Case("metadata-fifo", "metadata.parquet is a FIFO", _fifo("metadata.parquet"), "a FIFO, not a regular file",
         _M, klass="hang-or-memory"),
    Case("spec-device", "spec.json links to /dev/zero", _device("spec.json"), "a device, not a regular file", _S,
         klass="hang-or-memory"),
    Case("idx-gzip-bomb", "gzipped IDX header promising 25 TB", _idx_build(_idx_header((2**32 - 1, 28, 28), 0x0E),
                                                                          gz=True),
         "header promises shape", "images/train-images-idx3-ubyte.gz", stored=False, klass="hang-or-memory"),
    Case("idx-overflow", "IDX shape whose product overflows int64", _idx_build(_idx_header((2**32 - 1,) * 4), False),
         "header promises shape", "images/train-images-idx3-ubyte", stored=False, klass="hang-or-memory"),
    Case("pth-zip-bomb", ".pth archive inflating to 200 MiB", _pth_archive({"archive/data/0": 200 * 2**20}),
         "zip members inflate to 200 MiB", f"dwsnets/{_DWS_PTH}", stored=False, klass="hang-or-memory"),
    Case("pth-many-tensors", ".pth archive of 5000 tensors", _pth_archive(dict.fromkeys(map(str, range(5000)), 0)),
         "a zip archive of 5000 members", f"dwsnets/{_DWS_PTH}", stored=False, klass="hang-or-memory"),
    Case("metrics-gzip-bomb", "metrics.csv.gz inflating past the input limit", _cnn(_metrics_gzip_bomb),
         "decompresses to more than 2 MiB", "cnn/metrics.csv.gz", stored=False, klass="hang-or-memory",
         env=_SMALL_LIMIT),
    Case("metadata-footer-bomb", "metadata.parquet row groups promising past the limit", _metadata_bomb,
         "row groups promise", _M, klass="hang-or-memory", env=_SMALL_LIMIT),
    Case("state-dicts-fifo-pt", "state-dicts: a FIFO named net0.pt", _state_dicts(_fifo_named("net0.pt")),
         "a FIFO, not a regular file", "ckpt/net0.pt", stored=False, klass="importers"),
    Case("state-dicts-fifo-safetensors", "state-dicts: a FIFO named net0.safetensors",
         _state_dicts(_fifo_named("net0.safetensors")), "a FIFO, not a regular file", "ckpt/net0.safetensors",
         stored=False, klass="importers"),
    Case("state-dicts-zip-bomb", "state-dicts: a 64 KB .pt whose member inflates to 64 MiB",
         _state_dicts(_deflated_pt), "zip bomb", "ckpt/net0.pt", stored=False, klass="importers"),
    Case("state-dicts-int-tensors", "state-dicts: a weight stored as int64", _state_dicts(_int_tensors),
         "has dtype torch.int64, expected a floating point tensor", "ckpt/net0.pt", stored=False, klass="importers"),
    Case("build-data-missing", "`zoo build cnn --data` a path that does not exist (2 workers)", _missing_data,
         "dataset path does not exist", "nodata", stored=False, klass="workers"),
    Case("build-idx-labels", "`zoo build cnn` on IDX labels outside the 10 classes", _idx_dir(28, 12),
         "labels range over [12, 12]", "images", stored=False, klass="workers"),
    Case("build-idx-size", "`zoo build cnn` on 20x20 IDX images", _idx_dir(20, 3),
         "images are (20, 20) pixels", "images", stored=False, klass="workers"),
)}


def run_case(case: Case, good_zoo: Path, work: Path, argv: list[str] | None = None) -> dict:
    """Run one case in-process (or `argv` on its input, e.g. `info_argv(work)`); a report row."""
    from bench.cli import main

    argv = argv or case.make(Path(good_zoo), Path(work))
    err = io.StringIO()
    with case_env(case), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 - a crash is a result here, reported as such
            code, err = None, io.StringIO(f"crashed: {type(e).__name__}: {e}")
    lines = err.getvalue().splitlines()
    line = lines[0] if lines else ""
    row = {"case": case.name, "description": case.description, "command": " ".join(argv[:3]), "exit": code,
           "message": line, "one_line": len(lines) == 1 and line.startswith(PREFIX),
           "names_file": str(Path(work) / case.file) in line, "expected": case.expect in line,
           "clean": not leftovers(Path(work), case.user_files), "payload_ran": (Path(work) / MARKER).exists(),
           "files_lost": files_lost(case, Path(work))}
    row["passed"] = (code == 2 and row["one_line"] and row["names_file"] and row["expected"] and row["clean"]
                     and not row["payload_ran"] and not row["files_lost"])
    return row
