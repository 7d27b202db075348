"""Fuzzing the readers of untrusted input: zoo files and configuration text.

Every property has the same shape: the reader either returns something valid (and usable: a
zoo that loads must evaluate) or raises the documented error type (ZooError, SpecError,
UnknownMethod / ValueError) - never IndexError, KeyError, TypeError, OverflowError and the like.
Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.execution.specs import protocol_options
from methods import METHODS, make_method, parse_method
from tests.harness.hostile import write_cnn_format
from zoos.formats import _DWS_KEYS, _load_state_dict, _read_splits, _take_weights, load_cnn_zoo
from zoos.space import SpecError, WeightSpace, cnn_zoo_space, mlp_space, siren_space
from zoos.tasks import make_task
from zoos.zoo import Zoo, ZooError, load_zoo

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# JSON as Python's json module reads it (NaN and Infinity included), nested a little
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)

# one edit of a file's bytes; offsets are taken modulo the length, small ones often (headers)
OFFSET = st.one_of(st.integers(0, 1024), st.integers(0, 1 << 24))
BYTE_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(OFFSET, st.integers(1, 255)), min_size=1, max_size=6)),
    st.tuples(st.just("truncate"), OFFSET),
    st.tuples(st.just("insert"), OFFSET, st.binary(min_size=1, max_size=12)),
)


def edit_bytes(data: bytes, edit) -> bytes:
    if not data:
        return data
    if edit[0] == "flip":
        out = bytearray(data)
        for offset, mask in edit[1]:
            out[offset % len(out)] ^= mask
        return bytes(out)
    if edit[0] == "truncate":
        return data[: edit[1] % len(data)]
    at = edit[1] % len(data)
    return data[:at] + edit[2] + data[at:]


def paths(tree, prefix=()):
    """Every key path into nested dicts and lists."""
    yield prefix
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield from paths(v, (*prefix, k))


def replace_at(tree, path, value):
    if not path:
        return value
    tree = json.loads(json.dumps(tree))
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return tree


class Files(dict):
    """Fixture state; a short repr keeps Hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get('dir', '')}>"


def assert_usable(zoo: Zoo) -> None:
    """A zoo that loads holds together and its task scores its networks."""
    n = len(zoo)
    assert n > 0 and zoo.space.check(zoo.params) == n and len(zoo.meta) == n
    assert set(zoo.meta["split"]) <= {"train", "val", "test"}
    two = {k: v[:2] for k, v in zoo.params.items()}
    if zoo.task["kind"] == "inr":
        target = torch.tensor(zoo.meta["target"].to_numpy()[:2])
        assert make_task(zoo).evaluate(two, target)["loss"].shape == (min(n, 2),)
    else:
        x = torch.zeros(1, *zoo.space.input_shape)
        assert zoo.space.forward(two, x).shape[:2] == (min(n, 2), 1)


# ---- stored zoos ----------------------------------------------------------------------------------
FILES = ("spec.json", "weights.safetensors", "metadata.parquet")


@pytest.fixture(scope="module")
def stored(tiny_inr_zoo, tmp_path_factory):
    """The pristine files, and a scratch zoo directory every example rewrites."""
    scratch = tmp_path_factory.mktemp("fuzz") / "zoo"
    shutil.copytree(tiny_inr_zoo, scratch)
    return Files(pristine={f: (tiny_inr_zoo / f).read_bytes() for f in FILES}, dir=scratch)


def write_zoo(stored, changed: dict[str, bytes]) -> Path:
    for f in FILES:
        (stored["dir"] / f).write_bytes(changed.get(f, stored["pristine"][f]))
    return stored["dir"]


def load_or_zoo_error(directory: Path) -> None:
    try:
        zoo = load_zoo(directory)
    except ZooError as e:
        assert "\n" not in str(e) and str(directory) in str(e), str(e)
        return
    assert_usable(zoo)


@FUZZ
@given(file=st.sampled_from(FILES), edits=st.lists(BYTE_EDIT, min_size=1, max_size=3))
def test_load_zoo_on_damaged_bytes(stored, file, edits):
    data = stored["pristine"][file]
    for edit in edits:
        data = edit_bytes(data, edit)
    load_or_zoo_error(write_zoo(stored, {file: data}))


@FUZZ
@given(data=st.data(), value=JSON)
def test_load_zoo_on_random_spec_values(stored, data, value):
    spec = json.loads(stored["pristine"]["spec.json"])
    path = data.draw(st.sampled_from(list(paths(spec))), label="path")
    load_or_zoo_error(write_zoo(stored, {"spec.json": json.dumps(replace_at(spec, path, value)).encode()}))


@FUZZ
@given(column=st.sampled_from(["split", "target", "id", "psnr"]), value=st.one_of(
    st.none(), st.integers(-(1 << 40), 1 << 40), st.floats(), st.text(max_size=6), st.booleans()),
    row=st.integers(0, 19))
def test_load_zoo_on_random_metadata_cells(stored, column, value, row):
    meta = pd.read_parquet(io.BytesIO(stored["pristine"]["metadata.parquet"]))
    meta[column] = meta[column].astype(object)
    meta.loc[row % len(meta), column] = value
    out = io.BytesIO()
    try:
        meta.to_parquet(out, index=False)
    except Exception:  # noqa: BLE001 - pyarrow refuses some mixed-type columns: nothing to load then
        return
    load_or_zoo_error(write_zoo(stored, {"metadata.parquet": out.getvalue()}))


def test_load_zoo_on_deeply_nested_spec(stored):
    """json.loads raises RecursionError (not a ValueError) on deep nesting."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ZooError, match="spec.json"):
        load_zoo(write_zoo(stored, {"spec.json": deep}))


# ---- published formats ----------------------------------------------------------------------------
CNN_FILES = ("layout.csv", "metrics.csv", "weights.npy")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    base = tmp_path_factory.mktemp("cnnfuzz")
    write_cnn_format(base / "good", runs=3)
    shutil.copytree(base / "good", base / "scratch")
    return Files(pristine={f: (base / "good" / f).read_bytes() for f in CNN_FILES}, dir=base / "scratch")


def load_cnn_or_error(cnn, changed: dict[str, bytes], activation) -> None:
    for f in CNN_FILES:
        (cnn["dir"] / f).write_bytes(changed.get(f, cnn["pristine"][f]))
    try:
        zoo = load_cnn_zoo(cnn["dir"], activation=activation)
    except ZooError as e:
        assert "\n" not in str(e) and str(cnn["dir"]) in str(e), str(e)
        return
    assert_usable(zoo)


def test_cnn_format_writer_is_valid(cnn):
    zoo = load_cnn_zoo(cnn["dir"], activation="relu")
    assert len(zoo) == 3 and zoo.space == cnn_zoo_space("relu", channels=4)


@FUZZ
@given(file=st.sampled_from(CNN_FILES), edits=st.lists(BYTE_EDIT, min_size=1, max_size=3),
       activation=st.sampled_from([None, "relu", "tanh"]))
def test_load_cnn_zoo_on_damaged_bytes(cnn, file, edits, activation):
    data = cnn["pristine"][file]
    for edit in edits:
        data = edit_bytes(data, edit)
    load_cnn_or_error(cnn, {file: data}, activation)


CELL = st.one_of(st.integers(-(1 << 70), 1 << 70), st.floats(), st.text(max_size=12),
                 st.sampled_from(["(3, 3, 1, 4)", "(0,)", "(-1, -36)", "(1e400,)", "()", "[[[1]]]", "1j", "nan",
                                  "inf", "x/kernel:0", "run0", "relu", "tanh"]))


@FUZZ
@given(file=st.sampled_from(["layout.csv", "metrics.csv"]), data=st.data(), value=CELL)
def test_load_cnn_zoo_on_random_csv_cells(cnn, file, data, value):
    table = pd.read_csv(io.BytesIO(cnn["pristine"][file]))
    row = data.draw(st.integers(0, len(table) - 1), label="row")
    column = data.draw(st.sampled_from(list(table.columns)), label="column")
    table[column] = table[column].astype(object)
    table.loc[row, column] = value
    load_cnn_or_error(cnn, {file: table.to_csv(index=False).encode()}, "relu")


@FUZZ
@given(dtype=st.sampled_from(["f2", "f4", "f8", "i4", "u1", "c8", "?", "V4", "U3", "M8[s]"]),
       shape=st.lists(st.integers(0, 4), min_size=0, max_size=3))
def test_load_cnn_zoo_on_other_npy_arrays(cnn, dtype, shape):
    out = io.BytesIO()
    np.save(out, np.zeros(shape, dtype=dtype), allow_pickle=False)
    load_cnn_or_error(cnn, {"weights.npy": out.getvalue()}, "relu")


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("pth") / "model_final.pth"
    buffer = io.BytesIO()
    torch.save({"seq.0.weight": torch.ones(32, 2), "label": torch.tensor(3)}, buffer)
    return Files(path=path, good=buffer.getvalue())


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.lists(BYTE_EDIT, min_size=1, max_size=3)))
def test_load_state_dict_on_random_bytes(pth, data):
    if isinstance(data, list):
        raw = pth["good"]
        for edit in data:
            raw = edit_bytes(raw, edit)
        data = raw
    pth["path"].write_bytes(data)
    try:
        sd = _load_state_dict(pth["path"])
    except ZooError as e:
        assert "\n" not in str(e) and str(pth["path"]) in str(e)
        return
    assert isinstance(sd, dict)


ENTRY = st.one_of(
    st.builds(lambda dtype, shape: torch.zeros(shape, dtype=dtype),
              st.sampled_from([torch.float32, torch.float16, torch.float64, torch.int64, torch.bool, torch.complex64]),
              st.sampled_from([(), (1,), (32,), (32, 2), (32, 32), (1, 32), (2, 32)])),
    st.sampled_from([torch.tensor(float("inf")), torch.tensor(float("nan")), torch.tensor([3, 4]), torch.tensor(3)]),
    st.integers(), st.floats(), st.text(max_size=4), st.none(),
)


@FUZZ
@given(sd=st.dictionaries(st.one_of(st.sampled_from([*_DWS_KEYS, "label"]), st.text(max_size=4)), ENTRY, max_size=8),
       label=st.one_of(st.none(), st.integers(0, 9)))
def test_take_weights_on_random_state_dicts(sd, label):
    try:
        weights = _take_weights(sd, Path("x.pth"), {k: k for k in _DWS_KEYS}, label)
    except ZooError as e:
        assert str(e).startswith("x.pth: ") and "\n" not in str(e)
        return
    assert siren_space().check({k: v[None] for k, v in weights.items()}) == 1


@FUZZ
@given(splits=JSON)
@example(splits={"train": {"path": ["a/b_1_2/c.pth"], "label": 5}})
@example(splits={"train": ["/etc/passwd", "../../x_1_2/model.pth", "a\0b"]})
def test_read_splits_on_random_json(splits, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "splits"
    root.mkdir(exist_ok=True)
    (root / "splits.json").write_text(json.dumps(splits))
    try:
        entries = _read_splits(root / "splits.json", root)
    except ZooError as e:
        assert "splits.json" in str(e) and "\n" not in str(e)
        return
    assert entries == []  # nothing under root to find


# ---- configuration text ---------------------------------------------------------------------------
VALUES = st.one_of(st.text(max_size=8), st.integers(-(1 << 70), 1 << 70).map(str), st.floats().map(str),
                   st.sampled_from(["true", "no", "maybe", "1e400", "-0", "nan", "inf", "-inf", "mid", "identity",
                                    "", "0x10", "1_000", " 5 "]))


@st.composite
def method_specs(draw):
    """name[key=value,...] with the method's own keys mostly, so values reach the typed parsers."""
    name = draw(st.one_of(st.sampled_from(sorted(METHODS)), st.text(max_size=10)))
    known = sorted(METHODS[name].search_space) if name in METHODS else []
    keys = st.one_of(st.sampled_from(known), st.text(max_size=6)) if known else st.text(max_size=6)
    items = draw(st.lists(st.tuples(keys, VALUES), max_size=4))
    sep = draw(st.sampled_from([",", ", ", ";"]))
    return name + "[" + sep.join(f"{k}={v}" for k, v in items) + "]"


SPECS = st.one_of(st.text(max_size=40), method_specs())


@FUZZ
@given(spec=SPECS)
@example(spec="sinkhorn-rebasin[tau=nan]")
@example(spec="sign-rebasin[scale_canonical=maybe]")
@example(spec="c2m3[init=identity,init=barycentre]")
def test_method_specs_parse_or_raise_value_error(spec):
    try:
        name, params = parse_method(spec)
    except ValueError:
        return
    assert isinstance(name, str) and all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    try:
        method = make_method(spec)
    except ValueError:  # UnknownMethod is one
        return
    assert method.name == name and set(method.hp) == set(method.search_space)
    for key, value in method.hp.items():  # whatever got through is in range, and booleans were spelled as such
        h = method.search_space[key]
        if h.kind in ("int", "float"):
            assert np.isfinite(value) and (h.low is None or value >= h.low) and (h.high is None or value <= h.high)
        if h.kind == "bool" and key in params:
            assert params[key].lower() in ("1", "true", "yes", "0", "false", "no")
            assert value == (params[key].lower() in ("1", "true", "yes"))


@pytest.mark.parametrize("spec", ["c2m3[init=identity,init=barycentre]", "sinkhorn-rebasin[tau=nan]",
                                  "sinkhorn-rebasin[lr=-inf]", "sign-rebasin[scale_canonical=maybe]"])
def test_ambiguous_or_non_finite_method_options_are_refused(spec):
    with pytest.raises(ValueError, match="twice|finite|boolean"):
        make_method(spec)


def test_boolean_spellings_still_read():
    assert make_method("sign-rebasin[scale_canonical=No]").hp["scale_canonical"] is False
    assert make_method("c2m3[signed=TRUE,anchor=0]").hp == {**make_method("c2m3").hp, "signed": True, "anchor": False}


@FUZZ
@given(spec=st.one_of(st.text(max_size=40), st.builds(
    lambda n, kv: n + "[" + ",".join(f"{k}={v}" for k, v in kv) + "]",
    st.sampled_from(["pairs", "orbit", "merge", "nope"]),
    st.lists(st.tuples(st.sampled_from(["n_pairs", "lambdas", "sizes", "eps", "actions", "seed", "split", "x"]),
                       VALUES), max_size=3))))
def test_protocol_specs_parse_or_raise_value_error(spec):
    try:
        name, options = protocol_options(spec, "smoke")
    except ValueError:
        return
    assert isinstance(name, str) and isinstance(options, dict)


SPACES = [siren_space(), mlp_space([3, 5, 2], "tanh"), cnn_zoo_space("relu", channels=4)]


@FUZZ
@given(data=st.data(), base=st.sampled_from(SPACES), value=st.one_of(JSON, st.integers(-3, 40)))
def test_space_from_json_on_random_fields(data, base, value):
    spec = json.loads(base.to_json())
    path = data.draw(st.sampled_from(list(paths(spec))), label="path")
    try:
        space = WeightSpace.from_json(json.dumps(replace_at(spec, path, value)))
    except SpecError:
        return
    # what the parser accepts runs: one network on one input
    if space.n_params <= 1 << 16 and np.prod(space.input_shape) <= 1 << 14:
        params = {k: torch.zeros(1, *s) for k, s in space.shapes().items()}
        out = space.forward(params, torch.zeros(1, *space.input_shape))
        assert out.shape == (1, 1, space.layers[-1].n_out)


@FUZZ
@given(text=st.one_of(st.text(max_size=60), JSON.map(json.dumps)))
def test_space_from_json_on_random_text(text):
    try:
        WeightSpace.from_json(text)
    except SpecError:
        pass
