"""ScaleGMN autoencoder: graph construction, exact invariance of the encoder, the permutation-only
ablation's lack of scale invariance, orbit canonicalisation, training, checkpoints and resume."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench.execution.checkpoints import CheckpointStore
from methods import make_method
from methods.graph import SCALE, SIGN, from_graph, graph_template, to_graph
from methods.scalegmn import GraphAutoencoder
from methods.scalegmn_ae import GNNAutoencoder, LogitKLLoss, RenderLoss, ScaleGMNAutoencoder
from zoos.inr import dwsnets_init, fit_inrs
from zoos.space import Layer, WeightSpace, cnn_zoo_space, mlp_space, siren_space
from zoos.symmetry import random_action, select, stack
from zoos.zoo import Zoo

# a space no shipped zoo has: sign, no scaling, and positive-scale hidden layers in one network
MIXED = WeightSpace("mixed", (Layer("a", "linear", 3, 5, "tanh"), Layer("b", "linear", 5, 4, "identity"),
                              Layer("c", "linear", 4, 6, "relu"), Layer("d", "linear", 6, 2)), (3,))
SPACES = {"siren": siren_space(), "cnn-relu": cnn_zoo_space("relu"), "cnn-tanh": cnn_zoo_space("tanh"),
          "mixed": MIXED}


def random_params(space, n, seed=0, dtype=torch.float64, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(n, *s, generator=g, dtype=dtype) for k, s in space.shapes().items()}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def model_for(space, equivariant=True, params=None, hidden=8, n_layers=2):
    torch.manual_seed(0)
    m = GraphAutoencoder(space, hidden=hidden, n_layers=n_layers, latent=16, equivariant=equivariant).double()
    if params is not None:
        m.set_scales(params)
    return m


# ---- graph construction ------------------------------------------------------------------------
def test_mlp_graph_edges_are_the_weights():
    space = mlp_space([3, 5, 4, 2], act="tanh")
    p = random_params(space, 3)
    g = to_graph(space, p)
    t = graph_template(space)
    assert t.n_nodes == 3 + 5 + 4 + 2 and g.num_nodes == 3 * t.n_nodes and g.num_graphs == 3
    assert g.edge_attr.shape == (3 * (15 + 20 + 8), 1)
    # scatter the edge features into dense adjacency matrices: adj[dst, src] must be W[dst, src]
    adj = torch.zeros(g.num_nodes, g.num_nodes, dtype=torch.float64)
    adj[g.edge_index[1], g.edge_index[0]] = g.edge_attr[:, 0]
    for n in range(3):
        for k, layer in enumerate(space.layers):
            rows = slice(n * t.n_nodes + t.offsets[k + 1], n * t.n_nodes + t.offsets[k + 2])
            cols = slice(n * t.n_nodes + t.offsets[k], n * t.n_nodes + t.offsets[k + 1])
            assert torch.equal(adj[rows, cols], p[layer.weight][n])
            assert torch.equal(g.x[rows, 0], p[layer.bias][n])
        assert torch.equal(g.x[n * t.n_nodes:n * t.n_nodes + 3, 0], torch.ones(3, dtype=torch.float64))
    assert adj.count_nonzero() == g.edge_attr.count_nonzero()  # no other edges
    # types: each input and output node its own, one per hidden layer; roles from the group
    assert t.node_type.tolist() == [0, 1, 2] + [3] * 5 + [4] * 4 + [5, 6]
    assert t.node_role.tolist() == [0] * 3 + [SIGN] * 9 + [0] * 2


def test_cnn_graph_round_trip_and_padding():
    space = cnn_zoo_space("relu")
    p = random_params(space, 2, dtype=torch.float32)
    g = to_graph(space, p)
    t = graph_template(space)
    assert t.n_nodes == 1 + 16 * 3 + 10 and t.edge_dim == 9
    back = from_graph(space, g)
    assert all(torch.equal(back[k], p[k]) for k in p)
    fc = g.edge_attr.view(2, t.n_edges, 9)[:, t.edge_offsets[3]:]
    assert fc[..., 1:].abs().sum() == 0  # linear edges are zero-padded kernels
    assert g.x.view(2, -1)[:, 0].abs().sum() == 0  # CNN input nodes get 0
    assert set(t.node_role.tolist()) == {0, SCALE}


# ---- invariance ---------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", list(SPACES))
@pytest.mark.parametrize("equivariant", [True, False])
def test_dense_path_matches_the_torch_geometric_reference(space_name, equivariant):
    space = SPACES[space_name]
    p = random_params(space, 3)
    model = model_for(space, equivariant, p, n_layers=3)
    dense, ref = model.encode(p, "dense"), model.encode(p, "pyg")
    assert rel(dense, ref) < 1e-12
    # and in training: the same gradients, to float rounding
    for graph in ("dense", "pyg"):
        model.zero_grad()
        model.encode(p, graph).square().sum().backward()
        grads = [q.grad.clone() for q in model.parameters() if q.grad is not None]
        if graph == "dense":
            dense_grads = grads
    assert len(grads) == len(dense_grads) > 10
    assert all(rel(a, b) < 1e-10 for a, b in zip(dense_grads, grads, strict=True) if b.norm() > 0)


@pytest.mark.parametrize("space_name", list(SPACES))
@pytest.mark.parametrize("kind", ["P", "S", "PS"])
@pytest.mark.parametrize("graph", ["dense", "pyg"])
def test_scalegmn_encoder_is_invariant(space_name, kind, graph):
    space = SPACES[space_name]
    p = random_params(space, 3)
    model = model_for(space, params=p)
    q, _, _ = random_action(space, p, kind, torch.Generator().manual_seed(1))
    q = {k: v.double() for k, v in q.items()}
    assert rel(q[space.layers[0].weight], p[space.layers[0].weight]) > 0.1  # the action moved the weights
    if space is MIXED:
        assert set(model.encoder.roles) == {0, SIGN, SCALE}
    z, zq = model.encode(p, graph), model.encode(q, graph)
    assert rel(zq, z) < 1e-4
    # float32 as used in training is invariant too, to float32 precision
    z32 = model.float().encode({k: v.float() for k, v in q.items()}, graph)
    assert rel(z32.double(), z) < 1e-4


@pytest.mark.parametrize("space_name", ["siren", "cnn-relu"])
@pytest.mark.parametrize("graph", ["dense", "pyg"])
def test_permutation_only_gnn_is_not_scale_invariant(space_name, graph):
    space = SPACES[space_name]
    p = random_params(space, 3)
    gnn, sgmn = model_for(space, False, p), model_for(space, True, p)
    g = torch.Generator().manual_seed(2)
    perm, _, _ = random_action(space, p, "P", g)
    scaled, _, _ = random_action(space, p, "S", g)
    scaled = {k: v.double() for k, v in scaled.items()}
    z = gnn.encode(p, graph)
    assert rel(gnn.encode(perm, graph), z) < 1e-10
    gap = rel(gnn.encode(scaled, graph), z)
    assert gap > 1e-2, gap  # the ablation sees the sign/scale representative...
    assert rel(sgmn.encode(scaled, graph), sgmn.encode(p, graph)) < 1e-6  # ...the ScaleGMN does not


def test_chunked_accumulation_gives_the_one_pass_gradient(monkeypatch):
    import methods.scalegmn_ae as ae

    space = siren_space()
    p = random_params(space, 10, dtype=torch.float32, scale=0.1)
    model = model_for(space, params=p).float()
    loss_fn = RenderLoss(space)
    ref = loss_fn.reference(p)
    grads = {}
    for chunk in (10, 3):
        monkeypatch.setattr(ae, "chunk_size", lambda model, chunk=chunk: chunk)
        model.zero_grad()
        loss = ae.accumulate(model, loss_fn, p, ref)
        grads[chunk] = (loss, [q.grad.clone() for q in model.parameters() if q.grad is not None])
    (l10, g10), (l3, g3) = grads[10], grads[3]
    assert torch.allclose(l10, l3, rtol=1e-5)
    assert all(rel(a, b) < 1e-4 for a, b in zip(g10, g3, strict=True) if b.norm() > 0)
    assert l10 > 0


def test_orbit_decodes_to_one_network():
    space = siren_space()
    p = random_params(space, 1, dtype=torch.float32, scale=0.1)
    method = ScaleGMNAutoencoder(hidden=8, n_layers=2, latent=16)
    method.model = method.build(space)
    method.model.set_scales(p)
    g = torch.Generator().manual_seed(3)
    orbit = stack([p] + [random_action(space, p, kind, g)[0] for kind in ("P", "S", "PS")])
    dec = method.canonicalize(orbit)
    for k in p:
        spread = (dec[k] - dec[k][:1]).abs().max()
        assert spread <= 1e-4 * dec[k].abs().max(), (k, spread)
    res = method.align(p, select(orbit, slice(1, 4)))
    ref_dec, others_dec = res.ref, res.others
    assert res.info["latent_distance"] < 1e-5 * res.info["latent_norm"]
    assert all(torch.allclose(others_dec[k], ref_dec[k].expand_as(others_dec[k]), atol=1e-5) for k in p)
    # latent interpolation: the endpoints are the two decodings
    path = method.interpolate_latent(p, select(orbit, 1), [0.0, 0.5, 1.0])
    assert all(v.shape[0] == 3 for v in path.values())
    assert all(torch.allclose(path[k][:1], ref_dec[k], atol=1e-5) for k in p)


def test_losses_vanish_on_the_original():
    space = siren_space()
    p = random_params(space, 2, dtype=torch.float32, scale=0.05)
    loss = RenderLoss(space)
    assert loss(p, loss.reference(p)).abs().max() < 1e-12
    q = {k: v + 0.05 for k, v in p.items()}
    assert (loss(q, loss.reference(p)) > 1e-4).all()
    cnn = cnn_zoo_space("tanh")
    c = random_params(cnn, 2, dtype=torch.float32)
    kl = LogitKLLoss(cnn, torch.rand(5, 1, 28, 28) * 2 - 1)
    assert kl(c, kl.reference(c)).abs().max() < 1e-6
    assert (kl(select(c, [1, 0]), kl.reference(c)) > 1e-4).all()


# ---- training ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_zoo():
    """24 briefly fitted SIRENs of 12 smooth random images (two fits each)."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    c = torch.rand(12, 3)
    r2 = (xx - c[:, :1, None] + 0.5) ** 2 + (yy - c[:, 1:2, None] + 0.5) ** 2
    images = torch.exp(-r2 * (2 + 4 * c[:, 2:, None]))
    space = siren_space()
    target = torch.arange(12).repeat_interleave(2)
    params, _ = fit_inrs(space, dwsnets_init(space, list(range(24))), images[target], steps=30, lr=5e-3)
    meta = pd.DataFrame({"id": range(24), "target": target.numpy(),
                         "split": ["train"] * 16 + ["val"] * 4 + ["test"] * 4})
    return Zoo("tiny-inr", space, params, meta, {"kind": "inr"}, images)


HP = dict(hidden=8, n_layers=1, latent=16, epochs=6, batch_size=8, warmup=4, lr=3e-3)


def trained(log_fn=None, **hp):
    m = ScaleGMNAutoencoder(seed=0, **{**HP, **hp})
    m.log_fn = log_fn
    return m


def test_training_decreases_validation_loss_and_resumes(tiny_zoo, tmp_path):
    torch.set_num_threads(1)
    logged = []
    full = trained(lambda metrics, epoch: logged.append((epoch, metrics["val_loss"])))
    full.fit(tiny_zoo, CheckpointStore(tmp_path / "a"))
    info = full.fit_info
    assert info["best_val_loss"] < 0.9 * info["initial_val_loss"], info
    assert [e for e, _ in logged] == list(range(1, HP["epochs"] + 1))
    assert info["best_val_loss"] == min(v for _, v in logged)
    files = {p.name for p in full.checkpoint_dir.iterdir()}
    assert {"best.safetensors", "done.json", "last.pt", "config.json"} <= files
    assert full.checkpoint_dir.parent == (tmp_path / "a").resolve()  # in the store it was given

    # a run killed after epoch 3 resumes from its checkpoint and ends where the uninterrupted one did
    def kill(metrics, epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trained(kill).fit(tiny_zoo, CheckpointStore(tmp_path / "b"))
    resumed = trained()
    resumed.fit(tiny_zoo, CheckpointStore(tmp_path / "b"))
    assert resumed.fit_info["resumed_from"] == 3
    assert resumed.fit_info["best_val_loss"] == pytest.approx(info["best_val_loss"], rel=1e-5)
    test = select(tiny_zoo.params, tiny_zoo.indices("test"))
    a, b = full.canonicalize(test), resumed.canonicalize(test)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    # the finished checkpoint is loaded, not retrained
    cached = trained()
    cached.fit(tiny_zoo, CheckpointStore(tmp_path / "a"))
    assert cached.fit_info["cached"] is True
    c = cached.canonicalize(test)
    assert all(torch.equal(a[k], c[k]) for k in a)
    # a different hyperparameter is a different cache entry
    assert trained(epochs=5).cache_key(tiny_zoo) != full.cache_key(tiny_zoo)


def test_gnn_ablation_trains_and_registry(tiny_zoo):
    m = make_method("gnn-ae[hidden=8,n_layers=1,latent=16,epochs=2,batch_size=8,augment=S]")
    assert isinstance(m, GNNAutoencoder) and not m.exact and m.learned
    m.fit(tiny_zoo)  # no store: trains and keeps nothing
    assert m.fit_info["epochs"] == 2 and m.fit_info["skipped_steps"] == 0 and m.checkpoint_dir is None
    # both endpoints are decodings (the reference too), and no group element maps the inputs to them
    res = m.align(select(tiny_zoo.params, 0), select(tiny_zoo.params, [1, 2]))
    assert res.transform is None and res.ref_transform is None
    assert all(torch.allclose(res.ref[k], m.canonicalize(select(tiny_zoo.params, 0))[k]) for k in res.ref)
    assert any(not torch.allclose(res.ref[k], tiny_zoo.params[k][:1]) for k in res.ref)
    merged = m.merge(select(tiny_zoo.params, [0, 1, 2])).merged
    assert all(v.shape[0] == 1 and torch.isfinite(v).all() for v in merged.values())
    s = make_method("scalegmn-ae[hidden=8]")
    assert isinstance(s, ScaleGMNAutoencoder) and s.equivariant and s.hp["hidden"] == 8


def test_classifier_zoo_trains_with_the_logit_kl():
    space = cnn_zoo_space("relu", channels=4)
    n = 10
    params = random_params(space, n, dtype=torch.float32)
    meta = pd.DataFrame({"id": range(n), "split": ["train"] * 7 + ["val"] * 3})
    zoo = Zoo("tiny-cnn", space, params, meta, {"kind": "classifier", "dataset": "auto"})
    m = ScaleGMNAutoencoder(hidden=4, latent=8, epochs=2, batch_size=4, n_images=16)
    m.fit(zoo)
    info = m.fit_info
    assert info["n_train"] == 7 and info["epochs"] == 2 and info["initial_val_loss"] > 0
    assert all(torch.isfinite(torch.tensor(h["val_loss"])) for h in info["history"])
    out = m.align(select(params, 0), select(params, [1, 2])).others
    assert {k: v.shape for k, v in out.items()} == {k: (2, *s) for k, s in space.shapes().items()}


def test_a_damaged_or_hostile_checkpoint_is_refused_by_the_guarded_reader(tiny_zoo, tmp_path, capsys):
    """`last.pt` and `best.safetensors` go through `zoos.files.load_tensors`: a zip bomb in place of last.pt
    is refused before anything is inflated (a warning naming it), and training starts over."""
    import zipfile

    store = CheckpointStore(tmp_path)
    first = trained(epochs=2)
    first.fit(tiny_zoo, store)
    ckpt = first.checkpoint_dir
    (ckpt / "done.json").unlink()  # not finished: the next fit resumes from last.pt
    (ckpt / "last.pt").unlink()
    with zipfile.ZipFile(ckpt / "last.pt", "w", zipfile.ZIP_DEFLATED) as archive:  # 200 MB of zeros in ~200 KB
        archive.writestr("archive/data/0", bytes(200 * 2**20))
    again = trained(epochs=2)
    again.fit(tiny_zoo, store)
    err = capsys.readouterr().err
    assert f"{ckpt / 'last.pt'}: unreadable checkpoint" in err and "zip members inflate to 200 MiB" in err
    assert again.fit_info["resumed_from"] == -1 and again.fit_info["epochs"] == 2
