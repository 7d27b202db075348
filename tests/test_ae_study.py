"""The autoencoder scaling study: zoos whose training split grows while val/test stay fixed, the study
run end to end on tiny recipes (resumable), and the reconstruction measurements it reports."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

import bench.ae_study as study
from bench.execution.presets import ZooRecipe
from bench.store.results import ResultStore
from zoos.inr import build_inr_zoo
from zoos.space import siren_space


def test_extra_training_images_leave_the_base_zoo_alone():
    base = build_inr_zoo(n_images=4, fits_per_image=2, steps=20, progress=False)
    more = build_inr_zoo(n_images=4, fits_per_image=2, steps=20, progress=False, extra_train_images=3)
    assert len(more.meta) == 8 + 3
    assert more.meta.split.tolist()[:8] == base.meta.split.tolist()
    assert more.meta.split.tolist()[8:] == ["train"] * 3 and more.meta.fit.tolist()[8:] == [0] * 3
    assert more.meta.target.tolist()[8:] == [4, 5, 6]  # new images, each fitted once
    assert torch.equal(more.targets[:4], base.targets)
    for k, v in base.params.items():
        assert torch.allclose(more.params[k][:8], v, atol=1e-5), k
    assert "extra_train_images" not in base.task["config"]  # existing zoos keep their config (and keys)
    with pytest.raises(ValueError, match="training images"):
        build_inr_zoo(n_images=4, extra_train_images=10**6, steps=1, progress=False)


TINY_MODEL = dict(hidden=4, n_layers=1, latent=8, batch_size=4, warmup=1, patience=100)


@pytest.fixture
def tiny_study(monkeypatch, tmp_path):
    monkeypatch.setenv("REBASIN_PRETRAINED", str(tmp_path / "pretrained"))
    monkeypatch.setattr(study, "STUDY_RECIPES", {
        "inr": study.StudyRecipe("inr", ZooRecipe("inr", dict(n_images=10, fits_per_image=2, steps=60,
                                                              extra_train_images=4)),
                                 TINY_MODEL, ((6, 2), (10, 3)), export=True),
        "cnn": study.StudyRecipe("cnn", ZooRecipe("cnn", dict(activation="relu", n_nets=10, epochs=1, n_eval=64,
                                                              train_fraction=(0.05,), splits=(0.6, 0.2, 0.2))),
                                 TINY_MODEL, ((3, 2), (6, 2))),
    })
    monkeypatch.setattr(study, "PROTOCOLS", {"pairs": dict(n_pairs=2, lambdas=3),
                                             "orbit": dict(n_nets=2, actions=("P",), eps=(0.0,), lambdas=3)})


def test_study_runs_reports_and_resumes(tiny_study, tmp_path):
    table = study.run_study(tmp_path, progress=False)
    text = (tmp_path / "autoencoder.md").read_text()
    assert (tmp_path / "autoencoder.png").stat().st_size > 10_000
    assert "## INR: zoo" in text and "## CNN: zoo" in text and "Target (issue 18)" in text
    for kind, sizes in (("inr", [6, 10]), ("cnn", [3, 6])):
        sub = table[table.study == kind]
        assert sorted(sub.method) == sorted([*study.REFERENCES, *(s.split("[")[0] + s[s.index("["):] for s in
                                                                   study.STUDY_RECIPES[kind].specs())])
        ae = sub[sub.n_train.notna()]
        assert ae.n_train.tolist() == sizes  # trained on exactly the first n of the train split
        # every method scored on the same units: all of the study's test pairs, two orbit networks
        assert set(sub.pairs_n) == {sub.pairs_n.iloc[0]} and sub.pairs_n.iloc[0] >= 1
        assert set(sub.orbit_n) == {2}
        assert ae.r2.map(math.isfinite).all() and ae.ident.between(0, 1).all()
        # the constant network computes one function for every input: no variance explained
        assert sub[sub.method == "constant"].r2.iloc[0] <= 1e-9
        refs = sub[sub.method.isin(["naive", "sign-rebasin"])]
        assert refs.pairs_loss_excess.map(math.isfinite).all()
    inr = table[(table.kind == "inr") & table.n_train.notna()].iloc[0]
    assert inr.psnr_gt_original > inr.psnr_gt_mean_image  # the fitted originals beat the mean image
    assert 0 < inr.ident_image_chance < 1 and inr.ident_chance == 1 / inr.n_test

    store = ResultStore(tmp_path / "ae-study")
    parts = len(store.parts())
    again = study.run_study(tmp_path, progress=False)  # nothing left to do: no new rows, same report
    assert len(store.parts()) == parts
    assert again.drop(columns=["train_minutes", "networks_per_s"]).equals(
        table.drop(columns=["train_minutes", "networks_per_s"]))
    # the report only reads: a model whose checkpoint is gone is left out, not trained again
    (first,) = [d for d in (tmp_path / "ae-study" / "cache" / "checkpoints").iterdir()
                if d.is_dir() and json.loads((d / "done.json").read_text())["n_train"] == 6
                and json.loads((d / "config.json").read_text())["space"].startswith("siren")]
    shutil.rmtree(first)
    kept = study.study_table(tmp_path, kinds=("inr",))  # the stored measurements still hold it
    assert kept[kept.n_train.notna()].n_train.tolist() == [6, 10] and not first.exists()
    partial = study.study_table(tmp_path, kinds=("inr",), remeasure=True)
    assert partial[partial.n_train.notna()].n_train.tolist() == [10] and not first.exists()


def test_the_report_regenerates_from_an_archive_without_weights(tiny_study, tmp_path, capsys):
    """The committed autoencoder.md comes from the study's rows, measurements.parquet and zoo cards alone
    (`bench archive --no-weights`): no zoo weights or checkpoints needed."""
    from bench.cli import main

    study.run_study(tmp_path / "run", progress=False)
    assert main(["archive", "--results", str(tmp_path / "run" / "ae-study"), "--out",
                 str(tmp_path / "archive" / "ae-study"), "--no-weights"]) == 0
    assert (tmp_path / "archive" / "ae-study" / study.MEASUREMENTS).is_file()
    assert not list((tmp_path / "archive").rglob("weights.safetensors"))
    for source, into in (("run", "a"), ("archive", "b")):
        assert main(["ae", "study", "--report-only", "--results", str(tmp_path / source),
                     "--into", str(tmp_path / into)]) == 0
    assert (tmp_path / "a" / "autoencoder.md").read_bytes() == (tmp_path / "b" / "autoencoder.md").read_bytes()
    assert "scalegmn-ae | 10 |" in (tmp_path / "b" / "autoencoder.md").read_text()
    # without the study's zoo there is nothing to report: one line naming the folder
    assert main(["ae", "study", "--report-only", "--results", str(tmp_path / "empty")]) == 2
    assert "no inr study zoo there" in capsys.readouterr().err


def test_the_largest_inr_model_is_exported_and_serves_zoos_it_applies_to(tiny_study, tmp_path):
    from bench.execution.batch import prepare_method
    from bench.execution.checkpoints import CheckpointStore
    from bench.execution.zoo_cache import get_zoo
    from methods import MethodSpec, make_method
    from zoos.symmetry import select
    from zoos.tasks import make_task

    study.run_study(tmp_path, kinds=("inr",), progress=False)
    (exported,) = (tmp_path / "pretrained").iterdir()
    assert exported.name.startswith("inr-") and "-10-" in exported.name
    recipe = study.STUDY_RECIPES["inr"]
    zoo = get_zoo(recipe.zoo, tmp_path / "ae-study" / "zoos", progress=False)
    task = make_task(zoo)
    trained, _ = prepare_method(MethodSpec.parse(recipe.specs()[-1]), 0, zoo, task,
                                CheckpointStore.for_results(tmp_path / "ae-study"))
    spec = f"scalegmn-ae[pretrained={exported.name}]"
    assert make_method(spec).skip(zoo) is None
    served, _ = prepare_method(MethodSpec.parse(spec), 0, zoo, task)
    assert served.hp["hidden"] == TINY_MODEL["hidden"] and served.fit_info["pretrained"] == exported.name
    test = select(zoo.params, zoo.indices("test"))
    a, b = trained.canonicalize(test), served.canonicalize(test)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the very same model

    # zoos it does not apply to are skipped with the reason, never served
    leaky = dataclasses.replace(zoo, meta=zoo.meta.assign(split="test"))  # its training images held out
    assert "leak" in make_method(spec).skip(leaky)
    wider = SimpleNamespace(space=siren_space(16), task=zoo.task, meta=zoo.meta)
    assert "networks, not" in make_method(spec).skip(wider)
    digits = dataclasses.replace(zoo, task={**zoo.task, "source": "digits"})
    assert "this zoo is digits" in make_method(spec).skip(digits)
    assert "no usable committed model" in make_method("scalegmn-ae[pretrained=absent]").skip(zoo)
    weights = exported / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert "does not match its manifest" in make_method(spec).skip(zoo)
    with pytest.raises(ValueError, match="not a name"):
        make_method("scalegmn-ae[pretrained=../elsewhere]")


def test_projection_reads_a_log_linear_trend():
    import pandas as pd

    table = pd.DataFrame({"n_train": [100.0, 1000.0, float("nan")], "psnr_gt": [12.0, 14.0, 30.0]})
    assert study.projection(table, "psnr_gt", 20.0) == pytest.approx(1e6)  # +2 dB per decade
    flat = pd.DataFrame({"n_train": [100.0, 1000.0], "psnr_gt": [12.0, 11.0]})
    assert study.projection(flat, "psnr_gt", 20.0) is None


def test_the_committed_model_serves_the_default_inr_zoo():
    """The default benchmark's pretrained autoencoder is in the repository, intact, and applies to the default
    INR zoo: its draw of images and splits (computed without fitting) holds no validation/test image it
    trained on. On a machine without Fashion-MNIST the zoo is digits and the model is skipped instead."""
    import pandas as pd

    from bench.execution.presets import PRESETS
    from bench.store.claims_catalog import DEFAULT_PRETRAINED
    from methods import make_method
    from methods.scalegmn_ae import pretrained_root
    from zoos.data import load_images, resolve_source
    from zoos.inr import image_draw

    (spec,) = PRESETS["default"].extra
    assert DEFAULT_PRETRAINED in spec
    manifest = json.loads((pretrained_root() / DEFAULT_PRETRAINED / "manifest.json").read_text())
    recipe = next(r for r in PRESETS["default"].zoos if r.kind == "inr").options
    assert manifest["zoo_recipe"] == {"kind": "inr", **study.STUDY_RECIPES["inr"].zoo.options}
    assert {k: v for k, v in manifest["zoo_recipe"].items() if k not in ("kind", "extra_train_images")} == recipe
    source = resolve_source("auto")
    images, _ = load_images(source, "train")
    pick, split = image_draw(len(images), recipe["n_images"], 0, recipe.get("seed", 0))
    fits = recipe["fits_per_image"]
    meta = pd.DataFrame({"image_index": pick.repeat_interleave(fits).numpy(),
                         "split": [s for s in split for _ in range(fits)]})
    zoo = SimpleNamespace(space=siren_space(recipe.get("hidden", 32)), task={"kind": "inr", "source": source},
                          meta=meta)
    reason = make_method(spec).skip(zoo)
    if source == manifest["source"]:
        assert reason is None
        held_out = set(meta[meta.split != "train"].image_index)
        assert len(held_out) == 64 and not held_out & set(manifest["train_images"])
    else:
        assert f"this zoo is {source}" in reason
