"""Every hostile input of `tests.harness.hostile`, through the real command line, in-process.

Each must end with exit code 2 and exactly one stderr line `bench: error: ...` that names the
offending file and says what is wrong, with no traceback, nothing written under the results or
output directory, and no pickled payload run.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.cli import main
from tests.harness import hostile
from zoos.zoo import load_zoo


def assert_refused(capsys, argv, case, work):
    with hostile.case_env(case):
        code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and lines[0].startswith(hostile.PREFIX), err
    assert str(work / case.file) in lines[0], lines[0]
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert not hostile.leftovers(work, case.user_files), hostile.leftovers(work)  # nothing partial where results go
    assert hostile.files_lost(case, work) == 0  # the user's files, untouched
    assert not (work / hostile.MARKER).exists()  # no pickled payload ran


@pytest.mark.parametrize("name", list(hostile.CASES))
def test_hostile_input_is_refused(name, tiny_inr_zoo, tmp_path, capsys):
    case = hostile.CASES[name]
    argv = case.make(tiny_inr_zoo, tmp_path)
    assert_refused(capsys, argv, case, tmp_path)
    if case.stored:  # `bench run` refused it before writing anything; `bench zoo info` refuses it too
        assert argv[0] == "run" and not (tmp_path / hostile.RESULTS).exists()
        assert_refused(capsys, hostile.info_argv(tmp_path), case, tmp_path)


def test_run_case_reports_each_check(tiny_inr_zoo, tmp_path):
    row = hostile.run_case(hostile.CASES["weights-nan"], tiny_inr_zoo, tmp_path)
    assert row["passed"] and row["exit"] == 2 and "seq.1.weight" in row["message"]
    # the same checks flag a command that succeeds: the undamaged zoo
    shutil.rmtree(tmp_path / hostile.ZOO)
    shutil.copytree(tiny_inr_zoo, tmp_path / hostile.ZOO)
    row = hostile.run_case(hostile.CASES["weights-nan"], tiny_inr_zoo, tmp_path, hostile.info_argv(tmp_path))
    assert row["exit"] == 0 and not row["passed"]


# ---- the hostile inputs are hostile only where they were damaged ----------------------------------
def test_good_inputs_are_accepted(tiny_inr_zoo, tmp_path, capsys):
    assert main(["zoo", "info", str(tiny_inr_zoo)]) == 0
    hostile.write_cnn_format(tmp_path / "cnn")
    assert main(hostile.cnn_import_argv(tmp_path)) == 0
    assert len(load_zoo(tmp_path / hostile.OUT)) == 2
    capsys.readouterr()


@pytest.mark.parametrize("name", ["dwsnets-pickle-code", "dwsnets-raw-pickle", "cnnzoo-npy-object"])
def test_payload_runs_when_unpickled_unsafely(name, tiny_inr_zoo, tmp_path):
    """The marker check means something: loading the same file with pickle allowed runs the payload."""
    case = hostile.CASES[name]
    case.make(tiny_inr_zoo, tmp_path)
    path = tmp_path / case.file
    if path.suffix == ".npy":
        np.load(path, allow_pickle=True)
    elif name == "dwsnets-raw-pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert (tmp_path / hostile.MARKER).exists()


def test_half_precision_zoo_is_converted(tiny_inr_zoo, tmp_path):
    """float16 weights (a zoo written by another tool: no content hash) load as float32."""
    directory = shutil.copytree(tiny_inr_zoo, tmp_path / "half")
    tensors = load_file(directory / "weights.safetensors")
    save_file({k: v.half() for k, v in tensors.items()}, directory / "weights.safetensors")
    spec = json.loads((directory / "spec.json").read_text())
    del spec["content_hash"]
    (directory / "spec.json").write_text(json.dumps(spec))
    zoo = load_zoo(directory)
    for k, v in zoo.params.items():
        assert v.dtype == torch.float32 and torch.equal(v, tensors[k].half().float())
    assert zoo.targets.dtype == torch.float32
