"""Readers of the published zoo formats, on small files written here in those formats."""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from zoos.data import load_images
from zoos.formats import CNN_ZOO_TF_NAMES as TF_NAMES
from zoos.formats import load_cnn_zoo, load_dwsnets_inrs, load_nfn_sirens
from zoos.formats import to_cnn_zoo_row as to_tf_row
from zoos.space import cnn_zoo_space, siren_space
from zoos.tasks import InrTask, inr_grid
from zoos.zoo import ZooError, load_zoo, save_zoo

N_IDX = 10  # images per IDX file written for the tests


class _Evil:
    """Pickles to a call of os.system: loading it unsafely would create `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST IDX file: magic 0x0000 08 ndim, big-endian dims, then the uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.tobytes())


def write_idx_pair(directory: Path, stem: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    write_idx(directory / f"{stem}-images-idx3-ubyte", (images * 255).round().numpy())
    write_idx(directory / f"{stem}-labels-idx1-ubyte", labels.numpy())


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ZooError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# ---- DWSNets INRs ----------------------------------------------------------------------------
def dwsnets_init(m: int, seed: int) -> dict[str, torch.Tensor]:
    """DWSNets' init: every sine layer U(+-sqrt(6/in)/30), zero biases; output layer torch's default."""
    g = torch.Generator().manual_seed(seed)
    space = siren_space()
    out = {}
    for i, layer in enumerate(space.layers):
        bound = math.sqrt(6 / layer.n_in) / 30 if i < 2 else 1 / math.sqrt(layer.n_in)
        out[layer.weight] = (torch.rand(m, layer.n_out, layer.n_in, generator=g) * 2 - 1) * bound
        out[layer.bias] = torch.zeros(m, layer.n_out) if i < 2 else (torch.rand(m, 1, generator=g) * 2 - 1) * bound
    return out


def fit_sirens(images: torch.Tensor, steps: int = 300, lr: float = 5e-3) -> dict[str, torch.Tensor]:
    """Full-batch Adam on all networks at once (the sum of per-network losses)."""
    space = siren_space()
    params = {k: v.requires_grad_() for k, v in dwsnets_init(len(images), seed=0).items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    grid, target = inr_grid(28), images.flatten(1)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((space.forward(params, grid)[..., 0] - target) ** 2).mean(1).sum()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


@pytest.fixture(scope="module")
def dws(tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("dws")
    images = base / "images"
    images.mkdir()
    x_tr, y_tr = load_images("digits", "train")
    x_te, y_te = load_images("digits", "test")
    write_idx_pair(images, "train", x_tr[:N_IDX], y_tr[:N_IDX])
    write_idx_pair(images, "t10k", x_te[:N_IDX], y_te[:N_IDX])
    x_tr, y_tr = load_images(str(images), "train")  # the quantised grey levels the loader will see
    x_te, y_te = load_images(str(images), "test")
    picks = [("training", 2, "train"), ("training", 5, "train"), ("training", 7, "val"),
             ("testing", 1, "test"), ("testing", 4, "test")]
    targets = torch.stack([(x_tr if s == "training" else x_te)[i] for s, i, _ in picks])
    fitted = fit_sirens(targets)
    root = base / "mnist-inrs"
    splits = {s: {"path": [], "label": []} for s in ("train", "val", "test")}
    truth = {}
    for n, (source, index, split) in enumerate(picks):
        label = int((y_tr if source == "training" else y_te)[index])
        name = f"mnist_png_{source}_{label}_{index}"
        (root / name / "checkpoints").mkdir(parents=True)
        torch.save({k: v[n].clone() for k, v in fitted.items()}, root / name / "checkpoints" / "model_final.pth")
        # DWSNets writes absolute paths of the machine that made the split: only the tail matches
        splits[split]["path"].append(f"/elsewhere/dataset/mnist-inrs/{name}/checkpoints/model_final.pth")
        splits[split]["label"].append(str(label))
        truth[name] = {"n": n, "label": label, "index": index, "source": source, "split": split}
    torch.save({"weights": {"mean": torch.zeros(3)}}, root / "statistics.pth")  # not an INR: skipped
    (base / "splits.json").write_text(json.dumps(splits))
    return {"root": root, "images": images, "splits": base / "splits.json", "fitted": fitted, "truth": truth,
            "targets": targets}


def test_dwsnets_loads_weights_labels_targets_and_fits_well(dws, tmp_path):
    zoo = load_dwsnets_inrs(dws["root"], dws["splits"], images=dws["images"])
    assert len(zoo) == 5 and zoo.task == {"kind": "inr"} and zoo.space == siren_space()
    order = []
    for row in zoo.meta.itertuples():
        t = dws["truth"][row.id]
        assert (row.label, row.image_index, row.source_split, row.split) == (t["label"], t["index"], t["source"],
                                                                             t["split"])
        assert torch.equal(zoo.targets[row.target], dws["targets"][t["n"]])
        order.append(t["n"])
    for k, v in dws["fitted"].items():
        assert torch.equal(zoo.params[k], v[order])  # bit-identical weights
    task = InrTask(zoo.space, zoo.targets)
    target = torch.tensor(zoo.meta["target"].to_numpy())
    fitted_psnr = task.evaluate(zoo.params, target)["psnr"]
    random_psnr = task.evaluate(dwsnets_init(len(zoo), seed=1), target)["psnr"]
    assert (fitted_psnr > random_psnr + 5).all(), (fitted_psnr, random_psnr)
    # the loaded zoo survives our own storage format unchanged
    again = load_zoo(save_zoo(zoo, tmp_path / "zoo"))
    assert all(torch.equal(again.params[k], zoo.params[k]) for k in zoo.params)
    assert torch.equal(again.targets, zoo.targets)


def test_dwsnets_split_selection_and_no_json(dws):
    test = load_dwsnets_inrs(dws["root"], dws["splits"], images=dws["images"], split="test")
    assert len(test) == 2 and set(test.meta["source_split"]) == {"testing"} and set(test.meta["split"]) == {"test"}
    every = load_dwsnets_inrs(dws["root"], images=dws["images"])  # statistics.pth is not taken for an INR
    assert sorted(every.meta["id"]) == sorted(dws["truth"]) and set(every.meta["split"]) <= {"train", "val", "test"}
    assert "splits_json" in error_of(load_dwsnets_inrs, dws["root"], images=dws["images"], split="test")


def test_dwsnets_fmnist_variant_label_key(dws, tmp_path):
    name = next(iter(dws["truth"]))
    sd = torch.load(dws["root"] / name / "checkpoints" / "model_final.pth", weights_only=True)
    path = tmp_path / name / "checkpoints" / "model_final.pth"
    path.parent.mkdir(parents=True)
    torch.save({**sd, "label": dws["truth"][name]["label"]}, path)
    (tmp_path / "splits.json").write_text(json.dumps({"train": [f"x/{name}/checkpoints/model_final.pth"]}))
    zoo = load_dwsnets_inrs(tmp_path, tmp_path / "splits.json", images=dws["images"])
    assert len(zoo) == 1 and zoo.meta["label"][0] == dws["truth"][name]["label"]
    torch.save({**sd, "label": torch.tensor(dws["truth"][name]["label"] + 1)}, path)
    assert str(path) in error_of(load_dwsnets_inrs, tmp_path, images=dws["images"])


def _one_inr_root(tmp_path: Path, dws, state) -> Path:
    root = tmp_path / "zoo"
    name = next(n for n, t in dws["truth"].items() if t["source"] == "training")
    path = root / name / "checkpoints" / "model_final.pth"
    path.parent.mkdir(parents=True)
    if isinstance(state, bytes):
        path.write_bytes(state)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("case", ["shape", "nan", "missing_key", "garbage", "not_a_dict"])
def test_dwsnets_malformed_checkpoints(dws, tmp_path, case):
    good = {k: v[0].clone() for k, v in dws["fitted"].items()}
    state = {
        "shape": {**good, "seq.1.weight": torch.zeros(32, 16)},
        "nan": {**good, "seq.0.bias": torch.full((32,), float("nan"))},
        "missing_key": {k: v for k, v in good.items() if k != "seq.2.bias"},
        "garbage": b"this is not a checkpoint",
        "not_a_dict": [torch.zeros(3)],
    }[case]
    path = _one_inr_root(tmp_path, dws, state)
    assert str(path) in error_of(load_dwsnets_inrs, tmp_path / "zoo", images=dws["images"])


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_dwsnets_refuses_pickled_code(dws, tmp_path, how):
    marker = tmp_path / "pwned"
    path = _one_inr_root(tmp_path, dws, b"")
    if how == "torch":
        torch.save({"seq.0.weight": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"seq.0.weight": _Evil(marker)}))
    msg = error_of(load_dwsnets_inrs, tmp_path / "zoo", images=dws["images"])
    assert str(path) in msg and "pickled" in msg
    assert not marker.exists()


def test_dwsnets_bad_inputs(dws, tmp_path):
    assert str(dws["root"]) in error_of(load_dwsnets_inrs, dws["root"])  # no images: the task cannot score
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty") in error_of(load_dwsnets_inrs, tmp_path / "empty", images=dws["images"])
    bad = tmp_path / "splits.json"
    bad.write_text("{not json")
    assert "splits.json" in error_of(load_dwsnets_inrs, dws["root"], bad, images=dws["images"])
    bad.write_text(json.dumps({"train": {"path": ["a/mnist_png_training_1_9/checkpoints/model_final.pth"],
                                         "label": ["1"]}}))
    assert "splits.json" in error_of(load_dwsnets_inrs, dws["root"], bad, images=dws["images"])
    # IDX files whose labels disagree with the zoo's directory names: the wrong data set
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for stem in ("train", "t10k"):
        shutil.copy(dws["images"] / f"{stem}-images-idx3-ubyte", wrong)
        write_idx(wrong / f"{stem}-labels-idx1-ubyte", (np.arange(N_IDX) + 1) % 10)
    assert "label" in error_of(load_dwsnets_inrs, dws["root"], images=wrong)


# ---- NFN SIRENs --------------------------------------------------------------------------------
def test_nfn_sirens_convert_grid_and_output_range(dws, tmp_path):
    """An NFN SIREN rendered NFN's way ('ij' grid, no offset, [-1, 1] pixels) equals the loaded one on ours."""
    _, y_tr = load_images(str(dws["images"]), "train")
    _, y_te = load_images(str(dws["images"]), "test")
    g = torch.Generator().manual_seed(3)
    nets = {3: int(y_tr[3]), N_IDX + 2: int(y_te[2])}  # idx 12 = test image 2 (train set first)
    lin = torch.linspace(-1, 1, 28)
    rows, cols = torch.meshgrid(lin, lin, indexing="ij")
    grid_ij = torch.stack([rows, cols], -1).reshape(-1, 2)
    expected = {}
    for idx, label in nets.items():
        sd = {"net.0.linear.weight": (torch.rand(32, 2, generator=g) * 2 - 1) / 2,  # NFN's first-layer init
              "net.0.linear.bias": torch.rand(32, generator=g) - 0.5,
              "net.1.linear.weight": (torch.rand(32, 32, generator=g) * 2 - 1) * math.sqrt(6 / 32) / 30,
              "net.1.linear.bias": torch.rand(32, generator=g) - 0.5,
              "net.2.weight": torch.randn(1, 32, generator=g) * 0.3, "net.2.bias": torch.randn(1, generator=g)}
        h = torch.sin(30 * (grid_ij @ sd["net.0.linear.weight"].T + sd["net.0.linear.bias"]))
        h = torch.sin(30 * (h @ sd["net.1.linear.weight"].T + sd["net.1.linear.bias"]))
        expected[idx] = (h @ sd["net.2.weight"].T + sd["net.2.bias"]).reshape(28, 28)
        path = tmp_path / f"randinit_smaller_{label}s" / f"net{idx}.pth"
        path.parent.mkdir(exist_ok=True)
        torch.save(sd, path)
    zoo = load_nfn_sirens(tmp_path, images=dws["images"])
    assert list(zoo.meta["nfn_index"]) == [3, N_IDX + 2]
    assert list(zoo.meta["source_split"]) == ["training", "testing"] and list(zoo.meta["image_index"]) == [3, 2]
    rendered = InrTask(zoo.space, zoo.targets).render(zoo.params)
    for n, idx in enumerate(zoo.meta["nfn_index"]):
        torch.testing.assert_close(rendered[n], (expected[idx] + 1) / 2, atol=1e-4, rtol=0)
    raw = InrTask(zoo.space, zoo.targets).render(load_nfn_sirens(tmp_path, dws["images"], value_range=(0, 1)).params)
    torch.testing.assert_close(raw[0], expected[3], atol=1e-4, rtol=0)
    assert not torch.allclose(rendered[0], (expected[3].T + 1) / 2, atol=1e-2)  # the grid swap matters
    assert str(tmp_path) in error_of(load_nfn_sirens, tmp_path)
    # the same through the command line, with the loader's options as flags
    from bench.cli import main

    out = tmp_path.parent / f"{tmp_path.name}-zoo"
    assert main(["zoo", "import", "nfn", str(tmp_path), "--images", str(dws["images"]), "--value-range", "0", "1",
                 "--out", str(out)]) == 0
    via_cli = InrTask(load_zoo(out).space, load_zoo(out).targets).render(load_zoo(out).params)
    torch.testing.assert_close(via_cli, raw)


# ---- CNN zoo -----------------------------------------------------------------------------------
def write_cnn_zoo(directory: Path, runs: int = 10, steps=(0, 86), in_channels: int = 1, seed: int = 0) -> dict:
    """runs x steps rows, run-major; even runs relu, odd runs tanh."""
    directory.mkdir(parents=True)
    space = cnn_zoo_space("relu", in_channels=in_channels)
    g = torch.Generator().manual_seed(seed)
    n = runs * len(steps)
    params = {k: torch.randn(n, *s, generator=g) * 0.3 for k, s in space.shapes().items()}
    rows, metrics = [], []
    for i in range(n):
        row, layout = to_tf_row(params, i)
        rows.append(row)
        run = i // len(steps)
        metrics.append({"config.activation": "relu" if run % 2 == 0 else "tanh", "config.dropout": 0.1 * (run % 3),
                        "modeldir": f"run{run:03d}", "step": steps[i % len(steps)], "test_accuracy": 0.5 + 0.01 * i})
    np.save(directory / "weights.npy", np.stack(rows))
    pd.DataFrame(layout).to_csv(directory / "layout.csv", index=False)
    pd.DataFrame(metrics).to_csv(directory / "metrics.csv.gz", index=False)
    return {"params": params, "metrics": pd.DataFrame(metrics), "rows": np.stack(rows)}


def tf_forward(row: np.ndarray, layout: pd.DataFrame, x: torch.Tensor, act) -> torch.Tensor:
    """The zoo CNN computed straight from TF arrays: patches (unfold) contracted with HWIO kernels."""
    var = {r.varname: torch.from_numpy(row[r.start_idx:r.end_idx].reshape(ast.literal_eval(r.shape)).copy())
           for r in layout.itertuples()}
    h = x
    for tf in list(TF_NAMES.values())[:3]:
        k, b = var[f"{tf}/kernel:0"], var[f"{tf}/bias:0"]  # k[h, w, in, out]
        size = (h.shape[-1] - 3) // 2 + 1
        patches = F.unfold(h, 3, stride=2).reshape(h.shape[0], h.shape[1], 3, 3, -1)  # [B, C, kh, kw, L]
        h = act(torch.einsum("bcijl,ijco->bol", patches, k) + b[:, None]).reshape(h.shape[0], -1, size, size)
    pooled = h.mean(dim=(-2, -1))
    return pooled @ var["sequential/dense/kernel:0"] + var["sequential/dense/bias:0"]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cnn") / "mnist"
    return {"dir": directory, **write_cnn_zoo(directory)}


def test_cnn_zoo_bit_identical_and_forward_matches_tf_arrays(cnn):
    torch.set_num_threads(1)
    zoo = load_cnn_zoo(cnn["dir"], activation="relu")
    assert len(zoo) == 5 and set(zoo.meta["step"]) == {86} and set(zoo.meta["config.activation"]) == {"relu"}
    assert zoo.space == cnn_zoo_space("relu") and zoo.task["kind"] == "classifier"
    rows = zoo.meta["row"].tolist()
    for k, v in cnn["params"].items():
        assert torch.equal(zoo.params[k], v[rows])  # bit-identical after the TF round trip
    layout = pd.read_csv(cnn["dir"] / "layout.csv")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ours = zoo.space.forward(zoo.params, x)
    for n, row in enumerate(rows):
        torch.testing.assert_close(ours[n], tf_forward(cnn["rows"][row], layout, x, torch.relu), atol=1e-5, rtol=1e-5)
    tanh = load_cnn_zoo(cnn["dir"], activation="tanh", step=0)
    assert zoo.space != tanh.space and set(tanh.meta["step"]) == {0} and len(tanh) == 5
    row = tanh.meta["row"][0]
    expected = tf_forward(cnn["rows"][row], layout, x, torch.tanh)
    torch.testing.assert_close(tanh.space.forward(tanh.params, x)[0], expected, atol=1e-5, rtol=1e-5)


def test_cnn_zoo_scalegmn_splits(cnn):
    both = pd.concat([load_cnn_zoo(cnn["dir"], a).meta for a in ("relu", "tanh")])
    split = dict(zip(both["modeldir"], both["split"], strict=True))
    runs = [f"run{i:03d}" for i in range(10)]
    assert [split[r] for r in runs[5:]] == ["test"] * 5  # the second half of the final rows
    first = list(range(5))
    random.Random(0).shuffle(first)  # ScaleGMN's seeded shuffle, then 80/20
    assert {runs[i] for i in first[:4]} == {r for r in runs[:5] if split[r] == "train"}
    assert [split[runs[i]] for i in first[4:]] == ["val"]
    early = load_cnn_zoo(cnn["dir"], "relu", step=0).meta  # every step of a run keeps the run's split
    assert all(split[d] == s for d, s in zip(early["modeldir"], early["split"], strict=True))
    # NFN/ScaleGMN first permute the rows by a fixed index file: reversed rows put the first runs in test
    order = cnn["dir"].parent / "order.csv"
    pd.Series(np.arange(20)[::-1]).to_csv(order, index=False, header=False)
    rev = pd.concat([load_cnn_zoo(cnn["dir"], a, order=order).meta for a in ("relu", "tanh")])
    assert set(rev.loc[rev["split"] == "test", "modeldir"]) == set(runs[:5])
    pd.Series([0, 99]).to_csv(order, index=False, header=False)
    assert "order.csv" in error_of(load_cnn_zoo, cnn["dir"], "relu", order=order)


def test_cnn_zoo_in_channels_from_kernel(tmp_path):
    write_cnn_zoo(tmp_path / "colour", runs=2, steps=(86,), in_channels=3)
    zoo = load_cnn_zoo(tmp_path / "colour", "relu")
    assert zoo.space.layers[0].n_in == 3 and zoo.space.input_shape[0] == 3


def _corrupt(directory: Path, case: str, marker: Path) -> str:
    """Break one thing; return the file name the error must mention."""
    layout = pd.read_csv(directory / "layout.csv")
    metrics = pd.read_csv(directory / "metrics.csv.gz")
    weights = np.load(directory / "weights.npy")
    if case in ("missing_weights", "missing_layout", "missing_metrics"):
        name = {"missing_weights": "weights.npy", "missing_layout": "layout.csv",
                "missing_metrics": "metrics.csv.gz"}[case]
        (directory / name).unlink()
        return name
    if case in ("layout_size", "layout_shape", "layout_end"):
        if case == "layout_size":
            layout.loc[1, "size"] += 1
        elif case == "layout_shape":
            layout.loc[1, "shape"] = "(3, 3, 2, 16)"
        else:
            np.save(directory / "weights.npy", weights[:, :-10])  # rows shorter than the layout says
        layout.to_csv(directory / "layout.csv", index=False)
        return "layout.csv"
    if case == "metrics_rows":
        metrics.iloc[:-1].to_csv(directory / "metrics.csv.gz", index=False)
        return "metrics.csv.gz"
    if case == "unknown_activation":
        metrics.assign(**{"config.activation": "sigmoid"}).to_csv(directory / "metrics.csv.gz", index=False)
        return "metrics.csv.gz"
    if case == "nan":
        weights[1, 100] = np.nan  # run000 at its final step, a relu run
        np.save(directory / "weights.npy", weights)
        return "weights.npy"
    if case == "pickled":
        np.save(directory / "weights.npy", np.array([_Evil(marker)], dtype=object), allow_pickle=True)
        return "weights.npy"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing_weights", "missing_layout", "missing_metrics", "layout_size",
                                  "layout_shape", "layout_end", "metrics_rows", "unknown_activation", "nan",
                                  "pickled"])
def test_cnn_zoo_malformed(cnn, tmp_path, case):
    directory = tmp_path / "zoo"
    shutil.copytree(cnn["dir"], directory)
    marker = tmp_path / "pwned"
    name = _corrupt(directory, case, marker)
    activation = None if case == "unknown_activation" else "relu"
    msg = error_of(load_cnn_zoo, directory, activation)
    assert name in msg, msg
    if case == "unknown_activation":
        assert "sigmoid" in msg
    assert not marker.exists()


def test_cnn_zoo_activation_choice_errors(cnn, tmp_path):
    msg = error_of(load_cnn_zoo, cnn["dir"])  # relu and tanh mixed: must choose
    assert "relu" in msg and "tanh" in msg and "metrics.csv.gz" in msg
    msg = error_of(load_cnn_zoo, cnn["dir"], "sigmoid")
    assert "sigmoid" in msg and "relu" in msg
    (tmp_path / "empty").mkdir()
    assert "weights.npy" in error_of(load_cnn_zoo, tmp_path / "empty")


def test_cli_import_takes_the_splits_file_and_names_its_flags(dws, tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "zoo"
    assert main(["zoo", "import", "dwsnets", str(dws["root"]), "--images", str(dws["images"]), "--splits",
                 str(dws["splits"]), "--out", str(out)]) == 0
    zoo = load_zoo(out)
    assert {r.id: r.split for r in zoo.meta.itertuples()} == {k: t["split"] for k, t in dws["truth"].items()}
    # a listed checkpoint that is missing: one line naming the splits file and the path
    broken = json.loads(dws["splits"].read_text())
    broken["test"]["path"].append("/elsewhere/dataset/mnist-inrs/mnist_png_testing_9_9/checkpoints/model_final.pth")
    broken["test"]["label"].append("9")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    capsys.readouterr()
    assert main(["zoo", "import", "dwsnets", str(dws["root"]), "--images", str(dws["images"]), "--splits",
                 str(tmp_path / "broken.json"), "--out", str(tmp_path / "z2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.json" in err[0] and "mnist_png_testing_9_9" in err[0]
    assert main(["zoo", "import", "dwsnets", str(dws["root"]), "--out", str(tmp_path / "z3")]) == 2
    assert "give --images" in capsys.readouterr().err


def test_cli_import_cnnzoo_step_and_order(cnn, tmp_path, capsys):
    from bench.cli import main

    order = tmp_path / "order.csv"
    pd.DataFrame(list(range(len(cnn["metrics"])))[::-1]).to_csv(order, header=False, index=False)
    assert main(["zoo", "import", "cnnzoo", str(cnn["dir"]), "--activation", "relu", "--step", "all", "--order",
                 str(order), "--out", str(tmp_path / "all")]) == 0
    assert main(["zoo", "import", "cnnzoo", str(cnn["dir"]), "--activation", "relu", "--step", "0",
                 "--out", str(tmp_path / "first")]) == 0
    every, first = load_zoo(tmp_path / "all"), load_zoo(tmp_path / "first")
    assert set(first.meta["step"]) == {0} and len(every) == 2 * len(first)
    assert list(every.meta["row"]) == sorted(every.meta["row"], reverse=True)  # the order file was applied
    capsys.readouterr()
    assert main(["zoo", "import", "cnnzoo", str(cnn["dir"]), "--step", "late", "--out", str(tmp_path / "x")]) == 2
    assert "--step 'late'" in capsys.readouterr().err
    assert main(["zoo", "import", "cnnzoo", str(cnn["dir"]), "--activation", "relu", "--n-eval", "64",
                 "--out", str(tmp_path / "sample")]) == 0
    assert load_zoo(tmp_path / "sample").task["n_eval"] == 64
    capsys.readouterr()
    assert main(["zoo", "import", "cnnzoo", str(cnn["dir"]), "--activation", "relu", "--n-eval", "0",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--n-eval '0'" in capsys.readouterr().err


# ---- colour data sets: CIFAR-10 (binary, python) and SVHN, with a zoo trained "on" them --------------------
def _rgb(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_colour(directory: Path, kind: str, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A tiny copy of CIFAR-10 (bin or py) or SVHN in its published file layout; returns the test split."""
    directory.mkdir(parents=True)
    train, test = _rgb(n, 0), _rgb(n, 1)
    if kind == "mnist-idx":  # grey 28x28: one channel, as MNIST's IDX files hold them
        rng = np.random.default_rng(2)
        train, test = [(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), y) for _, y in (train, test)]
        for stem, (x, y) in (("train", train), ("t10k", test)):
            write_idx(directory / f"{stem}-images-idx3-ubyte", x[:, 0])
            write_idx(directory / f"{stem}-labels-idx1-ubyte", y)
    elif kind == "cifar10-parquet":  # a Hugging Face export: PNG bytes and labels
        import io as io_

        import pyarrow as pa
        import pyarrow.parquet as pq
        from PIL import Image

        (directory / "plain_text").mkdir()
        for stem, (x, y) in (("train", train), ("test", test)):
            pngs = []
            for im in x:
                buf = io_.BytesIO()
                Image.fromarray(im.transpose(1, 2, 0)).save(buf, format="PNG")
                pngs.append({"bytes": buf.getvalue(), "path": None})
            pq.write_table(pa.table({"img": pngs, "label": y.astype(np.int64)}),
                           directory / "plain_text" / f"{stem}-00000-of-00001.parquet")
    elif kind == "cifar10-bin":
        for name, (x, y) in (("data_batch_1.bin", train), ("test_batch.bin", test)):
            (directory / name).write_bytes(np.concatenate([y[:, None], x.reshape(len(x), -1)], axis=1).tobytes())
    elif kind == "cifar10-py":
        for name, (x, y) in (("data_batch_1", train), ("test_batch", test)):
            (directory / name).write_bytes(pickle.dumps({b"batch_label": b"x", b"labels": [int(v) for v in y],
                                                         b"data": x.reshape(len(x), -1)}, protocol=2))
    else:
        from scipy.io import savemat

        for name, (x, y) in (("train_32x32.mat", train), ("test_32x32.mat", test)):
            savemat(directory / name, {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y)[:, None]})
    return test


@pytest.mark.parametrize("kind", ["cifar10-bin", "cifar10-py", "cifar10-parquet", "svhn", "mnist-idx"])
def test_colour_zoo_reproduces_its_published_accuracy(kind, tmp_path, capsys):
    """A CNN Zoo 'trained on' a colour data set: the published test_accuracy is computed here the CNN Zoo's
    way (RGB / 255 -> [-1, 1] -> channel mean, TF arrays); imported with --dataset and scored on the
    full test split, the harness gets the same accuracy for every network."""
    from bench.cli import main
    from zoos.tasks import make_task

    x_rgb, y = write_colour(tmp_path / "data", kind)
    write_cnn_zoo(tmp_path / "zoo", runs=6, steps=(86,))
    metrics = pd.read_csv(tmp_path / "zoo" / "metrics.csv.gz")
    layout, rows = pd.read_csv(tmp_path / "zoo" / "layout.csv"), np.load(tmp_path / "zoo" / "weights.npy")
    grey = torch.from_numpy((x_rgb.astype(np.float32) / 255 * 2 - 1).mean(axis=1, keepdims=True))
    acts = {"relu": torch.relu, "tanh": torch.tanh}
    metrics["test_accuracy"] = [float((tf_forward(rows[i], layout, grey, acts[a]).argmax(1).numpy() == y).mean())
                                for i, a in enumerate(metrics["config.activation"])]
    metrics["config.dataset"] = {"cifar10-bin": "cifar10", "cifar10-py": "cifar10", "cifar10-parquet": "cifar10",
                                 "svhn": "svhn_cropped",
                                 "mnist-idx": "mnist"}[kind]
    metrics.to_csv(tmp_path / "zoo" / "metrics.csv.gz", index=False)
    assert main(["zoo", "import", "cnnzoo", str(tmp_path / "zoo"), "--activation", "relu", "--dataset",
                 str(tmp_path / "data"), "--out", str(tmp_path / "ours")]) == 0
    zoo = load_zoo(tmp_path / "ours")
    size = 28 if kind == "mnist-idx" else 32
    assert zoo.space.input_shape == (1, size, size) and zoo.task["n_eval"] is None
    capsys.readouterr()
    assert main(["zoo", "info", str(tmp_path / "ours")]) == 0
    info = capsys.readouterr().out
    assert f"input [1, {size}, {size}]" in info and f"evaluated on: {tmp_path / 'data'}, the full test split" in info
    acc = make_task(zoo).evaluate(zoo.params)["acc"].numpy()
    assert acc.tolist() == pytest.approx(zoo.meta["test_accuracy"].tolist(), abs=1e-6)  # same count of 40 (float32)
    assert 0 < acc.mean() < 1


def test_cnn_zoo_dataset_is_checked(tmp_path, capsys):
    from bench.cli import main

    write_cnn_zoo(tmp_path / "zoo", runs=2, steps=(86,))
    metrics = pd.read_csv(tmp_path / "zoo" / "metrics.csv.gz").assign(**{"config.dataset": "cifar10"})
    metrics.to_csv(tmp_path / "zoo" / "metrics.csv.gz", index=False)
    argv = ["zoo", "import", "cnnzoo", str(tmp_path / "zoo"), "--activation", "relu", "--out", str(tmp_path / "o")]
    assert main(argv) == 2 and "config.dataset is 'cifar10': give --dataset" in capsys.readouterr().err
    assert main(argv + ["--dataset", "fashion-mnist"]) == 2  # 28x28 images for a 32x32 data set
    assert "wrong data set for this zoo" in capsys.readouterr().err
    assert main(argv + ["--images", str(tmp_path)]) == 2
    assert "takes --dataset" in capsys.readouterr().err


def test_cifar_python_batches_are_read_without_running_code(tmp_path):
    from zoos.data import DataError

    write_colour(tmp_path / "data", "cifar10-py")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "data" / "test_batch").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [1]}))
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch, refused without running it"):
        load_images(str(tmp_path / "data"), "test")
    assert not marker.exists()


def test_one_inr_per_image_gives_no_pairs_and_says_why(dws):
    from bench.protocols import make_protocol

    zoo = load_dwsnets_inrs(dws["root"], dws["splits"], images=dws["images"])  # one INR per image, no "fit"
    for name in ("pairs", "merge"):
        protocol = make_protocol(name, split="train")
        assert protocol.units(zoo) == []
        assert any("INR" in why for why in protocol.gaps(zoo)), protocol.gaps(zoo)


# ---- the README's schemas ----------------------------------------------------------------------
def _readme_schema(title: str) -> set[str]:
    """The `code` names listed under one importer's bold title in README's 'Format schemas' section."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Format schemas", 1)[1].split("\n## ", 1)[0]
    block = section.split(f"**{title}**", 1)[1].split("\n**", 1)[0]
    return set(re.findall(r"`([^`]+)`", block))


def test_readme_schemas_list_what_the_fixtures_write(dws, tmp_path):
    """Every file, column and key the format fixtures write (and the loaders require) is in the README."""
    from zoos.formats import _DWS_KEYS, _NFN_KEYS
    from zoos.models import VGG as ZooVGG
    from zoos.state_dicts import SUFFIXES

    cnn_dir = tmp_path / "cnn"
    written = write_cnn_zoo(cnn_dir, runs=2)
    cnn = _readme_schema("CNN Zoo")
    assert {p.name for p in cnn_dir.iterdir()} <= cnn
    assert set(pd.read_csv(cnn_dir / "layout.csv").columns) <= cnn
    assert set(written["metrics"].columns) <= cnn and {"config.dataset"} <= cnn
    dws_names = _readme_schema("DWSNets")
    assert set(dws["fitted"]) <= dws_names and set(_DWS_KEYS) <= dws_names and "label" in dws_names
    splits = json.loads(dws["splits"].read_text())
    assert set(splits) <= dws_names and {k for part in splits.values() for k in part} <= dws_names
    assert "model_final.pth" in " ".join(dws_names)
    assert set(_NFN_KEYS) <= _readme_schema("NFN SIRENs")
    state = _readme_schema("State dicts")
    assert {f"*{s}" for s in SUFFIXES} <= state and "state_dict" in state
    keys = list(ZooVGG(width=4).state_dict())  # the state-dicts import fixture's module (test_graph_space)
    assert {"features.0.weight", "features.1.running_mean"} <= set(keys) and "num_batches_tracked" in state
