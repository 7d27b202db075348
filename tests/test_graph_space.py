"""Weight spaces derived from modules (torch.fx): BatchNorm, residual streams, pooling; their symmetries are
exact, their refusals are one line, and weight matching recovers planted permutations on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench.evaluation.curves import curves, interpolate
from bench.evaluation.repair import (
    recount_statistics,
    repair,
    repair_graph,
    reset_batchnorm,
    unit_stats,
)
from bench.protocols import make_protocol
from methods import METHODS, make_method
from methods.weight_matching import apply_matching, weight_matching
from tests.conftest import random_params, run_protocol
from zoos.graph_space import GraphSpace, space_from_dict, stack_graph
from zoos.space import SpecError, cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import apply_perms, apply_scales, random_perms, random_scales, select
from zoos.tasks import make_task
from zoos.trace import state_params, trace_space
from zoos.zoo import Zoo, load_zoo, save_zoo


class Block(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, w: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, w, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(w)
        self.layer1 = nn.Sequential(Block(w, w, 1), Block(w, w, 1))
        self.layer2 = Block(w, 2 * w, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class VGG(nn.Module):
    """conv-BN-ReLU, max pool, conv-ReLU (no BN: keeps ReLU's scale group), max pool, conv-tanh, GAP, MLP head."""

    def __init__(self, w: int = 6):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(w, w, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(w, 12), nn.ReLU(), nn.Dropout(0.5), nn.LayerNorm(12),
                                        nn.Linear(12, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Kernels(nn.Module):
    """The other layer kinds: a strided 5x5 conv with padding, average pooling, a 1x1 conv, padded max pooling
    with stride 2, a linear layer reading a flattened map (its channels fixed), a hidden linear layer."""

    def __init__(self, w: int = 5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, w, 5, stride=2, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                                      nn.Conv2d(w, w, 1), nn.BatchNorm2d(w), nn.Tanh(),
                                      nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(w * 4, 7), nn.Tanh(), nn.Linear(7, 10))

    def forward(self, x):
        return self.head(self.features(x))


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and running statistics (trained-like BN), in evaluation mode."""
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return module.eval()


X = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def _space_and_params(cls, seed=0):
    module = _randomised(cls(), seed)
    space = trace_space(module, (1, 16, 16))
    return module, space, state_params(space, module.state_dict())


@pytest.mark.parametrize("cls", [ResNet, VGG, Kernels])
def test_derived_space_computes_the_module(cls):
    module, space, params = _space_and_params(cls)
    with torch.no_grad():
        want = module(X)
    got = space.forward(params, X)[0]
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert space.n_params == sum(v.numel() for k, v in module.state_dict().items() if "num_batches" not in k)


def test_residual_stream_shares_one_permutation_and_moves_batchnorm_statistics():
    _, space, _ = _space_and_params(ResNet)
    stream = space.axes["conv.weight"][0]
    # every layer writing into the first stage's stream: the stem and each block's second conv
    for name in ("layer1.0.conv2.weight", "layer1.1.conv2.weight"):
        assert space.axes[name][0] == stream
    for name in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "layer1.0.bn2.running_var"):
        assert space.axes[name] == (stream,)
    # the second stage has its own stream (shortcut conv and the block's conv2), read by the classifier
    stage2 = space.axes["layer2.conv2.weight"][0]
    assert space.axes["layer2.shortcut.0.weight"][0] == stage2 != stream
    assert space.axes["fc.weight"] == (None, stage2)
    # inner units of each block are free; nothing here keeps a scaling group (BN, sums)
    assert space.axes["layer1.0.conv1.weight"][0] not in (None, stream)
    assert set(space.groups.values()) == {"none"}
    assert len(space.perm_sizes) == 2 + 3  # two streams, three block-internal sets


def test_scaling_groups_only_where_exact():
    _, space, _ = _space_and_params(VGG)
    groups = {space.axes[f"features.{i}.weight"][0]: space.groups[space.axes[f"features.{i}.weight"][0]]
              for i in (0, 4, 7)}
    assert list(groups.values()) == ["none", "scale", "sign"]  # BN follows the first; ReLU+maxpool; tanh+GAP
    assert space.groups[space.axes["classifier.0.weight"][0]] == "none"  # LayerNorm mixes its units


def test_average_pooling_keeps_the_scale_group_and_a_flattened_map_fixes_its_channels():
    _, space, _ = _space_and_params(Kernels)
    perm = {name: space.axes[f"{name}.weight"][0] for name in ("features.0", "features.3", "head.0")}
    assert space.groups[perm["features.0"]] == "scale" and space.groups[perm["head.0"]] == "sign"
    # flattened with a 2 x 2 extent: the linear layer reads blocks of each channel, which stay in place
    assert perm["features.3"] is None and space.axes["head.0.weight"][1] is None


@pytest.mark.parametrize("cls", [ResNet, VGG, Kernels])
def test_group_actions_preserve_the_function(cls):
    _, space, params = _space_and_params(cls)
    gen = torch.Generator().manual_seed(3)
    moved = apply_perms(space, apply_scales(space, params, random_scales(space, 1, gen)), random_perms(space, 1, gen))
    assert any(not torch.equal(moved[k], params[k]) for k in params)
    want = space.forward(params, X)
    assert torch.allclose(space.forward(moved, X), want, atol=1e-5 * want.abs().max(), rtol=0)


def test_forgetting_batchnorm_statistics_would_change_the_output():
    """The bug the PyPI `rebasin` package has: permuting BN's affine parameters but not its running stats."""
    _, space, params = _space_and_params(ResNet)
    gen = torch.Generator().manual_seed(4)
    perms = random_perms(space, 1, gen)
    moved = apply_perms(space, params, perms)
    broken = {k: params[k] if "running" in k else v for k, v in moved.items()}
    assert (space.forward(broken, X) - space.forward(params, X)).abs().max() > 1e-2


@pytest.mark.parametrize("cls", [ResNet, VGG, Kernels])
def test_weight_matching_recovers_a_planted_permutation(cls):
    _, space, params = _space_and_params(cls, seed=5)
    gen = torch.Generator().manual_seed(6)
    planted = apply_perms(space, params, random_perms(space, 1, gen))
    perms, signs, _ = weight_matching(space, {k: v[0] for k, v in params.items()},
                                      {k: v[0] for k, v in planted.items()})
    back = apply_matching(space, planted, perms, signs)
    for k in params:
        assert torch.equal(back[k], params[k]), k


def test_batched_forward_of_several_networks():
    spaces = [_space_and_params(ResNet, seed=s) for s in (0, 1)]
    space = spaces[0][1]
    both = {k: torch.cat([spaces[0][2][k], spaces[1][2][k]]) for k in spaces[0][2]}
    out = space.forward(both, X)
    for i in range(2):
        assert torch.allclose(out[i], space.forward(select(both, i), X)[0], atol=1e-6)


def test_json_round_trip_keeps_the_spec():
    _, space, _ = _space_and_params(ResNet)
    again = GraphSpace.from_dict(json.loads(space.to_json()))
    assert again == space and again.axes == space.axes and again.groups == space.groups


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=2)

    def forward(self, x):
        return self.conv(x)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x):
        return self.attn(x, x, x)[0]


class Reshaping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))


@pytest.mark.parametrize("module, shape, words", [
    (Grouped(), (4, 8, 8), "module conv (Conv2d): grouped"),
    (Attention(), (3, 8), "attn (MultiheadAttention)"),
    (Reshaping(), (1, 4, 4), "cannot be expressed"),
])
def test_what_cannot_be_expressed_is_refused_in_one_line(module, shape, words):
    with pytest.raises(SpecError) as error:
        trace_space(module, shape)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_state_dict_with_unknown_entries_is_refused():
    module, space, _ = _space_and_params(VGG)
    state = dict(module.state_dict(), extra=torch.zeros(3))
    with pytest.raises(SpecError, match="extra"):
        state_params(space, state)


def test_flattening_a_spatial_map_fixes_its_channels():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3)
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    space = trace_space(Flat(), (1, 6, 6))
    assert space.axes["conv.weight"][0] is None and not space.perm_sizes


@pytest.mark.parametrize("space", [siren_space(), mlp_space([5, 7, 6, 3], "tanh"), cnn_zoo_space("relu", 4),
                                   cnn_zoo_space("tanh", 4)], ids=lambda s: s.name)
def test_a_stack_of_layers_is_one_way_to_write_a_graph(space):
    graph = stack_graph(space)
    assert graph.shapes() == space.shapes() and graph.axes == space.axes
    assert graph.perm_sizes == space.perm_sizes and graph.groups == space.groups
    gen = torch.Generator().manual_seed(7)
    params = {k: torch.randn(2, *s, generator=gen) * 0.3 for k, s in space.shapes().items()}
    x = torch.randn(5, *space.input_shape, generator=gen)
    assert torch.allclose(graph.forward(params, x), space.forward(params, x), atol=1e-6)


# ---- the harness on a graph zoo: BatchNorm reset, protocols, methods ------------------------------------
def test_batchnorm_reset_is_pytorchs_own_recount():
    module = _randomised(ResNet(), 0)
    space = trace_space(module, (1, 16, 16))
    params = state_params(space, module.state_dict())
    reset = reset_batchnorm(space, params, X)
    for m in module.modules():  # PyTorch: a cumulative average over one training-mode batch
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    with torch.no_grad():
        module(X)
    for k, v in module.state_dict().items():
        if "running" in k:
            assert torch.allclose(reset[k][0], v, rtol=1e-4, atol=1e-5), k
        elif k in params:
            assert torch.equal(reset[k], params[k])


@pytest.fixture(scope="module")
def resnet_copies(tmp_path_factory):
    """A ResNet (trained-like BN statistics) and permuted copies, stored and loaded like any zoo."""
    from zoos.models import ResNet as ZooResNet

    module = _randomised(ZooResNet(width=4, blocks=1), 0)
    space = trace_space(module, (1, 28, 28))
    base = state_params(space, module.state_dict())
    gen = torch.Generator().manual_seed(9)
    copies = [base] + [apply_perms(space, base, random_perms(space, 1, gen)) for _ in range(5)]
    nets = {k: torch.cat([c[k] for c in copies]) for k in base}
    meta = pd.DataFrame({"id": range(6), "split": ["test"] * 6})
    zoo = Zoo("resnet-copies", space, nets, meta, {"kind": "classifier", "dataset": "digits", "n_eval": 100})
    return load_zoo(save_zoo(zoo, tmp_path_factory.mktemp("zoo") / "resnet"))


def test_exact_methods_run_unchanged_on_a_residual_zoo(resnet_copies):
    zoo = resnet_copies
    assert isinstance(zoo.space, GraphSpace)
    for spec in ("git-rebasin", "sign-rebasin", "mergemany", "c2m3", "canonical",
                 "sinkhorn-rebasin[objective=l2,steps=30]"):
        orbit = run_protocol(spec, zoo, make_protocol("orbit", n_nets=3, actions=("P",), eps=(0.0,), lambdas=3))
        assert orbit["recovered"].all() and (orbit["deviation"] < 1e-5).all(), spec
        merged = run_protocol(spec, zoo, make_protocol("merge", sizes=(3,), n_groups=1, max_triples=1))
        # copies of one network merge into it; the BatchNorm reset then recounts its statistics on other data
        assert merged["loss_merged"].iloc[0] == pytest.approx(merged["loss_endpoints"].iloc[0], rel=1e-5), spec
        assert merged["cycle_error"].iloc[0] == 0 and np.isfinite(merged["loss_merged_repair"].iloc[0])
    pairs = run_protocol("git-rebasin", zoo, make_protocol("pairs", n_pairs=2, lambdas=3))
    assert (pairs["loss_barrier"].abs() < 1e-5).all()  # copies aligned: a flat path
    assert (pairs["recon_loss"].abs() < 1e-5).all()  # recounted statistics commute with the permutation
    naive = run_protocol("naive", zoo, make_protocol("pairs", n_pairs=2, lambdas=3))
    assert (naive["loss_barrier"] > 1e-3).any()


def test_layer_reading_methods_and_probes_say_why_they_skip_a_graph(resnet_copies):
    stack_only = [name for name, cls in METHODS.items() if cls.stack_only]
    assert {"activation-matching", "otfusion", "zipit", "cca-merge", "scalegmn-ae"} <= set(stack_only)
    for spec in stack_only:
        assert "stack of layers" in make_method(spec).skip(resnet_copies)
    combine = make_protocol("combine", n_pairs=1, n_triples=0, lambdas=3)
    assert {u.probe for u in combine.units(resnet_copies)}.isdisjoint({"stitch", "robustness"})
    assert any("stitch" in g for g in combine.gaps(resnet_copies))
    # the probes that do run work on BatchNorm networks (combinations recounted): aligned copies score flat
    rows = run_protocol("git-rebasin", resnet_copies, make_protocol("combine", n_pairs=1, n_triples=0, lambdas=3,
                                                                    samples=2))
    assert len(rows) and (rows["loss_barrier"].abs() < 1e-4).all()


# ---- importing a user's state_dicts ----------------------------------------------------------------------
def test_import_state_dicts_of_a_users_module(tmp_path, capsys):
    from bench.cli import main
    from zoos.models import VGG as ZooVGG

    folder = tmp_path / "ckpt"
    folder.mkdir()
    states = []
    for i in range(3):
        torch.manual_seed(i)
        state = _randomised(ZooVGG(width=4), i).state_dict()
        states.append(state)
        if i == 2:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"net{i}.safetensors"))
        else:
            torch.save({"state_dict": state} if i else state, folder / f"net{i}.pt")
    out = tmp_path / "zoo"
    argv = ["zoo", "import", "state-dicts", str(folder), "--module", "zoos.models:VGG", "--kwargs", '{"width": 4}',
            "--dataset", "digits", "--n-eval", "100", "--out", str(out)]
    assert main(argv) == 0
    zoo = load_zoo(out)
    assert isinstance(zoo.space, GraphSpace) and len(zoo) == 3 and list(zoo.meta["file"]) == [
        "net0.pt", "net1.pt", "net2.safetensors"]
    for i, state in enumerate(states):
        for k, v in zoo.params.items():
            assert torch.equal(v[i], state[k].float()), k
    # bad input: one line naming the file, exit 2
    torch.save({**states[0], "head.extra": torch.zeros(2)}, folder / "net3.pt")
    assert main(argv[:-1] + [str(tmp_path / "zoo2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "net3.pt" in err and "head.extra" in err and "\n" not in err
    (folder / "net3.pt").unlink()
    torch.save({"weights": [nn.Linear(2, 2)]}, folder / "net4.pt")  # an object: weights_only refuses it
    assert main(argv[:-1] + [str(tmp_path / "zoo3")]) == 2
    err = capsys.readouterr().err.strip()
    assert "net4.pt" in err and "\n" not in err
    assert main([*argv[:4], "--module", "zoos.models:Nope", *argv[6:-1], str(tmp_path / "zoo4")]) == 2
    assert "Nope" in capsys.readouterr().err


@pytest.mark.parametrize("change", [
    lambda d: d["ops"].__setitem__(1, {**d["ops"][1], "kernel": 0}),
    lambda d: d["ops"].__setitem__(1, {**d["ops"][1], "inputs": ["nowhere"]}),
    lambda d: d["ops"].__setitem__(1, {**d["ops"][1], "n_in": "3"}),
    lambda d: d["ops"].__setitem__(1, {**d["ops"][1], "kind": "attention"}),
    lambda d: d["ops"].insert(2, {"name": "p", "kind": "maxpool", "inputs": ["features.0"], "stride": 0}),
    lambda d: d["ops"].append({"name": "extra", "kind": "act", "inputs": ["output"], "act": "gelu"}),
    lambda d: d.__setitem__("input_shape", [1, 0, 4]),
    lambda d: d["ops"].__setitem__(0, {"name": "x", "kind": "input", "eps": -1}),
    lambda d: d.__setitem__("ops", []),
])
def test_a_damaged_stored_graph_is_one_spec_error(change):
    _, space, _ = _space_and_params(VGG)
    d = json.loads(space.to_json())
    change(d)
    with pytest.raises(SpecError) as error:
        space_from_dict(d)
    assert "\n" not in str(error.value)


# ---- statistics on paths; REPAIR on graphs; planted scalings where the group allows -----------------------
def test_paths_of_batchnorm_networks_are_scored_with_recounted_statistics(resnet_copies):
    """Every network on a path (endpoints included) gets its own statistics: an average of two networks'
    running statistics is not the statistics of the average network."""
    zoo, task = resnet_copies, make_task(resnet_copies)
    a, b = select(zoo.params, [0]), select(zoo.params, [1])  # one network, two unit orders: a naive path
    lambdas = torch.linspace(0, 1, 3)
    path = interpolate(a, b, lambdas)
    recounted = reset_batchnorm(zoo.space, path, task.statistics_inputs())
    curve = curves(task, a, b, lambdas)
    assert torch.allclose(curve["loss"][0], task.evaluate(recounted)["loss"], rtol=1e-6)
    assert not torch.allclose(curve["loss"][0], task.evaluate(path)["loss"], rtol=1e-3)
    assert recount_statistics(task, path) is not path


def test_paths_of_other_networks_are_scored_as_they_are(tiny_inr_zoo):
    zoo = load_zoo(tiny_inr_zoo)
    params = select(zoo.params, [0, 1])
    assert recount_statistics(make_task(zoo), params) is params


def test_repair_on_a_graph_is_repair_on_the_stack(space):
    """One correction, two walks: REPAIR over a stack's layers and over the same stack written as a graph."""
    a, b = random_params(space, 2, seed=1), random_params(space, 2, seed=2)
    merged = {k: (a[k][:1] + b[k][:1]) / 2 for k in a}
    x = torch.randn(64, *space.input_shape, generator=torch.Generator().manual_seed(3))
    want = repair(space, merged, a, x)
    got = repair_graph(stack_graph(space), merged, a, x)
    assert any(not torch.allclose(want[k], merged[k]) for k in want)
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=1e-5, atol=1e-6), k


def test_repair_on_a_graph_gives_hidden_units_the_goal_statistics():
    """On the test VGG (BatchNorm, LayerNorm, pooling): after REPAIR the merged network's hidden pre-activations
    have the endpoints' mean statistics, and a network repaired against itself is unchanged."""
    _, space, a = _space_and_params(VGG, seed=1)
    _, _, b = _space_and_params(VGG, seed=2)
    ends = {k: torch.cat([a[k], b[k]]) for k in a}
    merged = {k: (a[k] + b[k]) / 2 for k in a}
    repaired = repair_graph(space, merged, ends, X)
    op = next(o for o in space.ops if o.name == "features.4")  # conv -> ReLU (no normalisation)
    stats = {}
    for name, params in (("ends", ends), ("repaired", repaired)):
        values = {space.ops[0].name: X.unsqueeze(0).expand(next(iter(params.values())).shape[0], *X.shape)}
        for o in space.ops[1:]:
            values[o.name] = space.apply(o, params, [values[i] for i in o.inputs])
        stats[name] = unit_stats(values[op.name].double())
    assert torch.allclose(stats["repaired"][0][0], stats["ends"][0].mean(0), atol=1e-4)
    assert torch.allclose(stats["repaired"][1][0], stats["ends"][1].mean(0), rtol=1e-4)
    same = repair_graph(space, a, a, X)
    assert all(torch.allclose(same[k], a[k], rtol=1e-5, atol=1e-6) for k in a)


@pytest.fixture(scope="module")
def vgg_copies(tmp_path_factory):
    """A VGG without BatchNorm (ReLU: positive-scale groups) and copies moved by planted P and S."""
    from zoos.models import VGG as ZooVGG

    module = _randomised(ZooVGG(width=4, batchnorm=False), 0)
    space = trace_space(module, (1, 28, 28))
    base = state_params(space, module.state_dict())
    gen = torch.Generator().manual_seed(9)
    copies = [base] + [apply_perms(space, apply_scales(space, base, random_scales(space, 1, gen)),
                                   random_perms(space, 1, gen)) for _ in range(3)]
    nets = {k: torch.cat([c[k] for c in copies]) for k in base}
    meta = pd.DataFrame({"id": range(4), "split": ["test"] * 4})
    zoo = Zoo("vgg-copies", space, nets, meta, {"kind": "classifier", "dataset": "digits", "n_eval": 100})
    return load_zoo(save_zoo(zoo, tmp_path_factory.mktemp("zoo") / "vgg"))


def test_planted_scalings_are_recovered_where_the_group_allows(vgg_copies, resnet_copies):
    assert set(vgg_copies.space.groups.values()) == {"scale"}  # conv -> ReLU (-> max pool) everywhere
    orbit = make_protocol("orbit", n_nets=2, actions=("P", "PS"), eps=(0.0,), lambdas=3)
    signed = run_protocol("sign-rebasin", vgg_copies, orbit)
    assert set(signed["action"]) == {"P", "PS"} and signed["recovered"].all()
    assert (signed["deviation"] < 1e-5).all()
    plain = run_protocol("git-rebasin", vgg_copies, orbit).set_index("action")
    assert plain.loc["P", "recovered"].all() and not plain.loc["PS", "recovered"].any()
    # BatchNorm everywhere: no scaling group, so PS would plant P; the protocol says so and runs P only
    assert [u.action for u in orbit.units(resnet_copies)] == ["P", "P"]
    assert any("no scaling group" in g for g in orbit.gaps(resnet_copies))


def test_merging_a_graph_without_batchnorm_is_repaired(vgg_copies):
    merged = run_protocol("sign-rebasin", vgg_copies, make_protocol("merge", sizes=(3,), n_groups=1, max_triples=1))
    # copies of one network merge into it and REPAIR leaves it be: the same loss three ways
    row = merged.iloc[0]
    assert row["loss_merged"] == pytest.approx(row["loss_endpoints"], rel=1e-5)
    assert row["loss_merged_repair"] == pytest.approx(row["loss_endpoints"], rel=1e-4)


def test_the_report_says_which_actions_a_graph_could_not_take(resnet_copies, tmp_path):
    """A section missing from the tables is named in the report, also when the report is written later."""
    from bench.execution.plan import RunOptions
    from bench.execution.presets import Benchmark, ZooRecipe
    from bench.execution.runner import run_benchmark
    from bench.report.files import write_all
    from bench.store.results import ResultStore

    stored = save_zoo(resnet_copies, tmp_path / "zoo")
    bench = Benchmark("gaps", (ZooRecipe("path", {"path": str(stored)}),),
                      {"orbit": dict(n_nets=1, actions=("P", "PS"), eps=(0.0,), lambdas=3)})
    results = tmp_path / "results"
    run_benchmark(bench, ["naive"], RunOptions(results=results, progress=False, mirror=False, report=False))
    assert ResultStore(results).gaps() == [("resnet-copies", "orbit", g) for g in
                                            make_protocol("orbit", actions=("P", "PS")).gaps(resnet_copies)]
    write_all(results)  # as `bench report` does, without the run's counts
    assert "Not measured: resnet-copies / orbit: action PS: ResNet has no scaling group" in \
        (results / "leaderboard.md").read_text()
