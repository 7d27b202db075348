"""Recipes as data (zoos.recipes): what a recipe says reaches the trainer, is recorded in the zoo's key,
and is shown; snapshots of a longer run are the networks of a shorter one; the reproduction report."""

import math

import pandas as pd
import pytest
import torch

from bench.report.reproductions import REPRODUCED, UNDECIDED, Setting, settings_table, trend, verdict
from zoos import cnn
from zoos.cnn import CnnZooConfig, build_cnn_zoo
from zoos.recipes import RECIPES, describe, lr_factor
from zoos.tasks import ClassifierTask, make_task, zoo_fingerprint


def _recipe(**overrides):
    return CnnZooConfig.from_recipe("git-rebasin-mlp", **{"widths": (8,), "n_nets": 2, "epochs": 2,
                                                           "source": "digits", "n_eval": 64, **overrides})


def test_recipe_reaches_the_trainer(monkeypatch):
    """Input range, batch size, epochs and init of the recipe are what the trainer uses."""
    seen = []
    forward = cnn.CnnZooNet.forward

    def spy(self, x):
        if self.training:
            seen.append((len(x), float(x.min()), float(x.max())))
        return forward(self, x)

    monkeypatch.setattr(cnn.CnnZooNet, "forward", spy)
    config = _recipe(batch_size=100, epochs=3, n_nets=1)
    zoo = build_cnn_zoo(config, workers=1, progress=False)
    n_train = len(cnn._DATA["x"])
    per_epoch = math.ceil(n_train / 100)
    assert len(seen) == 3 * per_epoch  # epochs x batches
    assert max(b for b, _, _ in seen) == 100
    assert min(lo for _, lo, _ in seen) >= 0.0 and max(hi for _, _, hi in seen) <= 1.0  # pixels / 255, not [-1, 1]
    assert min(lo for _, lo, _ in seen) == 0.0
    rec = zoo.task["config"]
    assert rec["recipe"] == "git-rebasin-mlp" and rec["input_scaling"] == "unit" and rec["batch_size"] == 100
    assert zoo.task["input_scaling"] == "unit" and make_task(zoo).input_scaling == "unit"
    assert float(make_task(zoo).inputs().min()) >= 0.0  # scored on inputs scaled as trained
    # LeCun-normal: truncated at 2 std, std sqrt(1 / fan_in)
    g = torch.Generator().manual_seed(0)
    net = cnn.CnnZooNet(config.space())
    cnn._init(net, {"init": "lecun_normal"}, g)
    w = net.seq_0.weight.detach()
    assert w.abs().max() <= 2 * (1 / w.shape[1]) ** 0.5 / 0.87962566103423978 + 1e-6
    assert 0.8 < float(w.std() * w.shape[1] ** 0.5) < 1.2


def test_recipe_is_in_the_key_and_older_configs_keep_theirs():
    plain = CnnZooConfig(widths=(8,))
    assert set(plain.recorded()) == set(CnnZooConfig().recorded()) | {"widths"}  # no new field recorded
    recorded = _recipe().recorded()
    assert {"recipe", "input_scaling"} <= set(recorded) and "schedule" not in recorded
    assert _recipe().recorded() != _recipe(epochs=3).recorded()
    assert "git-rebasin-mlp recipe: adam lr 0.001" in describe(recorded)
    assert "inputs [0, 1]" in describe(recorded) and "batch 500" in describe(CnnZooConfig.from_recipe(
        "git-rebasin-mlp").recorded())
    assert "log-U[0.001, 0.005]" in describe(CnnZooConfig().recorded())
    assert RECIPES["git-rebasin-mlp"].reference.startswith("samuela/git-re-basin src/mnist_mlp_train.py")


def test_input_scaling_changes_the_task_fingerprint():
    zoo = build_cnn_zoo(_recipe(epochs=1), workers=1, progress=False)
    signed = ClassifierTask(zoo.space, "digits", 64)
    unit = make_task(zoo)
    assert not torch.equal(signed.inputs(), unit.inputs())
    assert torch.allclose(signed.inputs(), unit.inputs() * 2 - 1)
    assert zoo_fingerprint(zoo, unit) != zoo_fingerprint(zoo, signed)


def test_snapshot_of_a_longer_run_is_the_shorter_run(tmp_path):
    snaps = tmp_path / "snapshots"
    long = build_cnn_zoo(_recipe(epochs=3), workers=1, progress=False, checkpoints=tmp_path / "a",
                         snapshots=(1,), snapshot_dir=snaps)
    assert len(list(snaps.glob("*.safetensors"))) == 2
    reused = build_cnn_zoo(_recipe(epochs=1), workers=1, progress=False, snapshot_dir=snaps)
    direct = build_cnn_zoo(_recipe(epochs=1), workers=1, progress=False)
    for k in direct.params:
        assert torch.equal(reused.params[k], direct.params[k])
        assert not torch.equal(long.params[k], direct.params[k])
    pd.testing.assert_frame_equal(reused.meta, direct.meta)


def test_lr_schedules():
    assert lr_factor("constant", 5, 10, 0) == 1.0
    assert lr_factor("warmup_cosine", 0, 100, 10) == pytest.approx(0.1)
    assert lr_factor("warmup_cosine", 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor("warmup_cosine", 100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_reproduction_report_holds_numbers_to_the_rule():
    assert verdict(0.01, 0.0, 0.03, 8, 0.05) == REPRODUCED
    assert verdict(0.2, 0.1, 0.3, 8, 0.05) == "not reproduced"
    assert verdict(0.04, 0.02, 0.08, 8, 0.05) == UNDECIDED
    assert verdict(0.0, 0.0, 0.0, 1, 0.05) == UNDECIDED  # one unit decides nothing
    assert verdict(0.0, 0.0, 0.0, 2, 0.05) == UNDECIDED  # nor two
    assert verdict(0.0, 0.0, 0.0, 8, 0.05) == REPRODUCED  # eight exact zeros do
    rows = pd.DataFrame({"zoo_hash": "h", "protocol": "pairs", "variant": "git-rebasin", "unit": [f"u{i}" for i in
                                                                                                 range(8)],
                         "seed": 0, "loss_barrier": [0.0, 0.01, 0.02, 0.0, 0.01, 0.03, 0.0, 0.02],
                         "time": "t", "error": None})
    other = rows.assign(zoo_hash="other", loss_barrier=5.0)
    table = pd.concat([rows, other], ignore_index=True)
    peers = rows.assign(peer="rebasin", loss_barrier=1.0)
    out = settings_table(table, peers, {"z": "h"}, [Setting("wm", "z", "git-rebasin", "loss_barrier", "0", 0.05),
                                                    Setting("peer", "z", "peer:rebasin", "loss_barrier", "0", 0.05),
                                                    Setting("absent", "missing", "naive", "loss_barrier", "0", 0.05)])
    assert out[0][3].startswith("0.011 [") and out[0][3].endswith("(n = 8)") and out[0][4] == REPRODUCED
    assert out[1][3] == "1.000 (all 8 equal)" and out[1][4] == "not reproduced"
    assert out[2][3] == "not measured"
    curve = trend(table, {"z": "h"}, {"z": 512}, ["git-rebasin", "naive"], "loss_barrier")
    assert curve.set_index("variant").loc["git-rebasin", "n"] == 8 and curve.set_index("variant").loc["naive", "n"] == 0


def test_c2m3_recipe_standardises_inputs_clips_and_restarts(monkeypatch):
    seen, clipped = [], []
    forward = cnn.CnnZooNet.forward

    def spy(self, x):
        if self.training:
            seen.append(float(x.min()))
        return forward(self, x)

    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(cnn.CnnZooNet, "forward", spy)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m: clipped.append(m) or clip(p, m))
    config = CnnZooConfig.from_recipe("c2m3-mlp", widths=(8, 4), n_nets=1, epochs=1, source="digits", n_eval=64)
    zoo = build_cnn_zoo(config, workers=1, progress=False)
    assert min(seen) == pytest.approx(-0.1307 / 0.3081, rel=1e-5)  # a black pixel, standardised
    assert clipped and set(clipped) == {10.0}
    assert zoo.task["input_scaling"] == "mnist_standard" and "gradient norm clipped at 10" in describe(
        zoo.task["config"])
    # CosineAnnealingWarmRestarts(T_0=10 epochs, T_mult=2), stepped per epoch
    factors = [lr_factor("cosine_restarts", e * 5, 0, 0, 5, 10) for e in (0, 5, 10, 20, 30)]
    assert factors == pytest.approx([1.0, 0.5, 1.0, 0.5, 1.0])


def test_pytorch_default_init_is_torchs_own_distribution():
    layer = torch.nn.Linear(200, 50)
    cnn._init(layer, {"init": "pytorch_default"}, torch.Generator().manual_seed(0))
    bound = 1 / 200**0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.abs().max() > 0.9 * bound and layer.bias.abs().max() > 0.5 * bound  # uniform, not zero


def test_every_report_describes_how_its_zoos_were_made(tmp_path):
    from bench.execution.plan import RunOptions
    from bench.execution.presets import Benchmark, ZooRecipe
    from bench.execution.runner import run_benchmark
    from bench.report.files import write_report

    zoo = ZooRecipe("mlp", dict(recipe="git-rebasin-mlp", widths=(8,), n_nets=4, epochs=1, n_eval=64,
                                splits=(0.0, 0.0, 1.0)))
    opts = RunOptions(results=tmp_path, data="digits", progress=False)
    run_benchmark(Benchmark("t", (zoo,), {"pairs": dict(n_pairs=2, lambdas=3)}, methods=("naive",)), None, opts)
    board = write_report(tmp_path)[0].read_text()
    line = next(ln for ln in board.splitlines() if "Zoo #" in ln)
    assert "mlp-relu-8-digits: 4 networks" in line and "git-rebasin-mlp recipe: adam lr 0.001" in line
    assert "batch 500, 1 epoch," in line and "inputs [0, 1]" in line


def test_zoo_build_takes_a_recipe_and_overrides_only_what_is_given(tmp_path):
    from bench.cli import main
    from zoos.zoo import load_zoo

    assert main(["zoo", "build", "mlp", "--widths", "8", "--nets", "2", "--recipe", "git-rebasin-mlp", "--epochs", "1",
                 "--data", "digits", "--out", str(tmp_path / "z"), "--quiet"]) == 0
    config = load_zoo(tmp_path / "z").task["config"]
    assert config["recipe"] == "git-rebasin-mlp" and config["epochs"] == 1 and config["batch_size"] == 500
    assert tuple(config["train_fraction"]) == (1.0,)  # the recipe's, not the CLI's default
