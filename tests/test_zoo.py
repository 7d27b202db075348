"""Zoo generators, storage and data loading."""

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import random_params
from zoos.cnn import CnnZooConfig, CnnZooNet, build_cnn_zoo
from zoos.data import DataError, load_images, read_idx
from zoos.inr import dwsnets_init, fit_inrs
from zoos.space import siren_space
from zoos.tasks import make_task
from zoos.zoo import Zoo, ZooError, load_zoo, save_zoo


def test_stacked_fitting_equals_separate_fits():
    space = siren_space()
    images, _ = load_images("digits")
    init = dwsnets_init(space, [11, 12, 13])
    together, mse = fit_inrs(space, init, images[:3], steps=30)
    for i in range(3):
        alone, mse_i = fit_inrs(space, {k: v[i : i + 1] for k, v in init.items()}, images[i : i + 1], steps=30)
        for k in alone:
            assert torch.allclose(alone[k][0], together[k][i], atol=1e-5)
        assert torch.allclose(mse_i, mse[i : i + 1], rtol=1e-4)


def test_inr_zoo_fits_images_and_pairs_share_targets(tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    assert len(zoo) == 20 and zoo.task["kind"] == "inr"
    psnr = make_task(zoo).evaluate(zoo.params, torch.tensor(zoo.meta.target.to_numpy()))["psnr"]
    assert torch.allclose(psnr, torch.tensor(zoo.meta.psnr.values), atol=1e-3)
    random = dwsnets_init(zoo.space, [0])
    random_psnr = make_task(zoo).evaluate(random, torch.tensor([0]))["psnr"]
    assert psnr.mean() > random_psnr.item() + 5
    # two independent fits of each image, kept in one split, with different weights
    for _, group in zoo.meta.groupby("target"):
        assert len(group) == 2 and group.split.nunique() == 1
        a, b = group.index
        assert not torch.equal(zoo.params["seq.0.weight"][a], zoo.params["seq.0.weight"][b])


def test_inr_init_depends_only_on_seed():
    space = siren_space()
    assert torch.equal(dwsnets_init(space, [5, 6])["seq.1.weight"][1], dwsnets_init(space, [6])["seq.1.weight"][0])
    assert dwsnets_init(space, [5])["seq.0.bias"].abs().max() == 0


def test_cnn_zoo_trains_and_module_matches_functional_forward():
    config = CnnZooConfig(activation="tanh", n_nets=2, epochs=2, train_fraction=(1.0,), batch_size=32, lr=(5e-3, 1e-2),
                           source="digits")
    zoo = build_cnn_zoo(config, workers=1, progress=False)
    assert (zoo.meta.test_accuracy > 0.3).all()  # 10 classes: chance is 0.1
    assert zoo.meta.lr.nunique() == 2  # hyperparameters vary across the zoo
    net = CnnZooNet(zoo.space)
    net.load_state_dict({k: v[1] for k, v in zoo.params.items()})
    net.eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(net(x), zoo.space.forward(zoo.params, x)[1], atol=1e-5)
    task = make_task(zoo)
    acc = task.evaluate(zoo.params)["acc"]
    assert (acc > 0.3).all()


def test_killed_cnn_zoo_build_resumes_with_the_networks_left(tmp_path, monkeypatch):
    from zoos import cnn

    config = CnnZooConfig(activation="relu", n_nets=3, epochs=1, train_fraction=(0.2,), source="digits")
    whole = build_cnn_zoo(config, workers=1, progress=False, checkpoints=tmp_path / "partial")
    saved = sorted((tmp_path / "partial").glob("net-*.safetensors"))
    assert len(saved) == 3
    saved[1].unlink()  # the build was killed before the second network was saved
    saved[2].write_bytes(saved[2].read_bytes()[:50])  # ... while the third was half-written (cannot happen
    # with the atomic rename, but a damaged checkpoint must be retrained, not trusted)
    trained = []
    monkeypatch.setattr(cnn, "_job", lambda job, real=cnn._job: trained.append(job[1]["seed"]) or real(job))
    resumed = build_cnn_zoo(config, workers=1, progress=False, checkpoints=tmp_path / "partial")
    assert trained == [config.sample(1)["seed"], config.sample(2)["seed"]]
    assert all(torch.equal(whole.params[k], resumed.params[k]) for k in whole.params)
    pd.testing.assert_frame_equal(whole.meta, resumed.meta)


def test_zoo_roundtrip_and_hostile_files(tmp_path, tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    path = save_zoo(zoo, tmp_path / "copy")
    again = load_zoo(path)
    assert all(torch.equal(again.params[k], zoo.params[k]) for k in zoo.params)
    assert again.content_hash() == zoo.content_hash()
    (path / "weights.safetensors").write_bytes((path / "weights.safetensors").read_bytes()[:100])
    with pytest.raises(ZooError, match="weights.safetensors"):
        load_zoo(path)
    with pytest.raises(ZooError, match="no such zoo"):
        load_zoo(tmp_path / "nothing")


def test_zoo_rejects_inconsistent_content():
    space = siren_space()
    params = random_params(space, n=3)
    import pandas as pd

    with pytest.raises(ZooError, match="metadata has 2 rows"):
        Zoo("z", space, params, pd.DataFrame({"id": [0, 1]}), {"kind": "classifier"})
    with pytest.raises(ZooError, match="target"):
        Zoo("z", space, params, pd.DataFrame({"id": [0, 1, 2], "target": [0, 1, 5]}), {"kind": "inr"},
            torch.zeros(2, 28, 28))


def test_idx_reader(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], ">u4").tobytes() + data.tobytes()
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(tmp_path / "x.gz"), data)
    (tmp_path / "bad").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "bad")
    with pytest.raises(DataError, match="does not exist"):
        load_images(str(tmp_path / "missing"))


def test_digits_split_is_disjoint_and_28px():
    train, _ = load_images("digits", "train")
    test, _ = load_images("digits", "test")
    assert train.shape[1:] == (28, 28) and len(train) + len(test) == 1797
    assert 0 <= train.min() and train.max() <= 1


def test_zoo_builders_are_deterministic_given_the_seed():
    """Same recipe and seed, same bytes: what lets a fresh directory reproduce a run's rows (and keys)."""
    from zoos.inr import build_inr_zoo

    inr = [build_inr_zoo("digits", n_images=2, fits_per_image=2, steps=20, seed=3, progress=False) for _ in range(2)]
    assert inr[0].content_hash() == inr[1].content_hash()
    assert build_inr_zoo("digits", n_images=2, fits_per_image=2, steps=20, seed=4,
                         progress=False).content_hash() != inr[0].content_hash()
    config = CnnZooConfig(activation="relu", n_nets=2, epochs=1, train_fraction=(0.1,), source="digits")
    one, two = build_cnn_zoo(config, workers=1, progress=False), build_cnn_zoo(config, workers=2, progress=False)
    assert all(torch.equal(one.params[k], two.params[k]) for k in one.params)  # worker processes change nothing
    pd.testing.assert_frame_equal(one.meta, two.meta)


def test_mlp_zoo_trains_plain_mlps_that_the_methods_align(tmp_path):
    """The `mlp` kind: CNN-zoo training of MLPs 784-w..-10 on the data; tasks read the images flattened."""
    from bench.execution.presets import PRESETS, ZooRecipe
    from bench.execution.zoo_cache import build
    from methods import make_method
    from zoos.symmetry import select
    from zoos.tasks import make_task
    from zoos.zoo import load_zoo, save_zoo

    zoo = build(ZooRecipe("mlp", dict(widths=[24, 16], n_nets=4, epochs=3, train_fraction=(1.0,))), data="digits",
                workers=1, progress=False)
    assert zoo.name == "mlp-relu-24-16-digits" and zoo.space.name == "mlp-relu-784-24-16-10"
    assert zoo.task["config"]["widths"] == (24, 16) and set(zoo.meta["widths"]) == {"24-16"}
    zoo = load_zoo(save_zoo(zoo, tmp_path / "mlp"))
    task = make_task(zoo)
    assert task.inputs().shape[1:] == (784,) and task.train_batch(8)[0].shape == (8, 784)
    assert (task.evaluate(zoo.params)["acc"] > 0.5).all()  # trained: far above chance (0.1)
    method = make_method("git-rebasin")
    method.setup(zoo, task)
    out = method.align(select(zoo.params, 0), select(zoo.params, 1))
    torch.testing.assert_close(task.outputs(out.others), task.outputs(select(zoo.params, 1)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs its hidden widths"):
        build(ZooRecipe("mlp", dict(n_nets=2)), data="digits", workers=1, progress=False)
    assert [r.kind for r in PRESETS["mlp"].zoos] == ["mlp", "mlp"]


def test_cnn_zoo_config_records_no_mlp_widths():
    """Existing CNN zoos keep their config (and so their keys): `widths` only appears for MLP zoos."""
    from zoos.cnn import CnnZooConfig, build_cnn_zoo

    zoo = build_cnn_zoo(CnnZooConfig(n_nets=1, epochs=1, train_fraction=(0.05,), source="digits", channels=4),
                        workers=1, progress=False)
    assert "widths" not in zoo.task["config"] and "widths" not in zoo.meta.columns and zoo.name.startswith("cnn-")
