"""ScaleGMN encoder (Kalogeropoulos et al., NeurIPS 2024), its permutation-only ablation, and the decoder.

The encoder reads a network as a graph (`methods.graph`) and is invariant to the network's
symmetry group: hidden-unit permutations (message passing with sum aggregation plus a sum
readout over each hidden layer) and, in the ScaleGMN variant, each hidden layer's scaling group
(sign flips for odd activations, positive rescaling for ReLU).

Scaling equivariance, concretely. The group multiplies hidden node i's bias by q_i and edge
j -> i by q_i / q_j (q = 1 on inputs and outputs). Every hidden-node feature vector x_i of the
ScaleGMN transforms as q_i x_i and every edge vector e_ij as (q_i / q_j) e_ij, which holds layer
by layer because
- embeddings are bias-free linear maps of the scalars; positional embeddings *multiply* the
  features of symmetric nodes/edges (adding a constant would break the scaling) and are added
  on the unscaled ones (inputs, outputs, hidden layers without scaling symmetry);
- message m_ij = EqNet(W_e e_ij * W_v x_j): the product scales as (q_i / q_j) q_j = q_i, i.e. like
  the receiving node, and EqNet is equivariant to a common factor on all its input channels;
- sum aggregation and residual sums keep the factor; update x_i + EqNet([x_i, m_i]);
- edge update e + W e * phi([canon(x_src), canon(x_dst)]) with canon invariant, so the edge keeps
  its factor q_i / q_j;
- EqLayer(x) = W x * g(x) with W bias-free and g invariant: sign g = phi(rho(u) + rho(-u)),
  positive scale g = phi(u), u = x / (||x|| + 1e-10) (METHODS.md feeds the sign gate x itself;
  see EqLayer for why u). Unscaled nodes use plain MLPs.
- readout: per hidden layer sum_i phi(canon(x_i)), concatenated with the input/output node
  features (fixed order), then an MLP to the latent: invariant to the whole group.
Parameters are divided by one constant per tensor before the graph is built (the zoo's RMS):
a per-layer constant commutes with both the permutations and the diagonal scalings.

The permutation-only ablation (`equivariant=False`, Neural Graphs style) uses the same graph,
biased embeddings, additive positional embeddings and plain MLP message/update/edge functions:
invariant to permutations only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing

from methods.graph import (
    PLAIN,
    ROLE_NAMES,
    SCALE,
    SIGN,
    GraphTemplate,
    RoleRanges,
    dense_features,
    graph_template,
    to_graph,
)
from zoos.space import Params, WeightSpace

EPS = 1e-10

# (role, row indices or None for "all rows") pairs: which rows a role-dependent function applies to
Groups = list[tuple[int, torch.Tensor | None]]


def mlp(sizes: list[int], bias: bool = True) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1], bias=bias))
        if k < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def role_groups(roles: torch.Tensor) -> Groups:
    present = torch.unique(roles).tolist()
    if len(present) == 1:
        return [(present[0], None)]
    return [(r, (roles == r).nonzero().squeeze(1)) for r in present]


class EqLayer(nn.Module):
    """x -> W x * g(x): W bias-free (equivariant), g invariant to the role's group acting on x.

    With u = x / (||x|| + eps) (invariant to x -> d x, d > 0; x -> -x sends u to -u):
    sign:  g = phi(rho(u) + rho(-u)), rho(u) = SiLU(A u + a), phi linear;
    scale: g = phi(u), phi(u) = B SiLU(A u + a) + b.
    Feeding the gate the direction u instead of x (sign case) keeps g bounded, so every EqLayer is
    homogeneous of degree one: with g(x) growing like |x|, stacked layers raised the features to
    ever higher powers and blew up on networks slightly outside the training zoo.
    W x and A x come out of one matmul (A x / ||x|| = A u).
    """

    def __init__(self, d_in: int, d_out: int, role: int):
        super().__init__()
        if role not in (SIGN, SCALE):
            raise ValueError(f"EqLayer needs a scaling role, got {role}")
        self.role, self.d_out = role, d_out
        self.lin = nn.Linear(d_in, 2 * d_out, bias=False)  # rows [:d_out] = W, rows [d_out:] = A
        self.inner_bias = nn.Parameter(torch.zeros(d_out))
        self.outer = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wx, ax = self.lin(x).split(self.d_out, dim=-1)
        au = ax / (x.norm(dim=-1, keepdim=True) + EPS)  # A u
        if self.role == SIGN:
            h = F.silu(au + self.inner_bias) + F.silu(self.inner_bias - au)  # even in u
        else:
            h = F.silu(au + self.inner_bias)
        return wx * self.outer(h)


def role_net(d_in: int, d_out: int, role: int, depth: int) -> nn.Module:
    """`depth` layers for one role: equivariant for SIGN/SCALE rows, a plain MLP otherwise."""
    if role == PLAIN:
        return mlp([d_in] + [d_out] * depth + ([d_out] if depth == 1 else []))
    return nn.Sequential(*(EqLayer(d_in if k == 0 else d_out, d_out, role) for k in range(depth)))


class RoleNet(nn.Module):
    """One function per role, applied to each row according to the row's role."""

    def __init__(self, d_in: int, d_out: int, roles: tuple[int, ...], depth: int = 2):
        super().__init__()
        self.d_out = d_out
        self.nets = nn.ModuleDict({ROLE_NAMES[r]: role_net(d_in, d_out, r, depth) for r in roles})

    def forward(self, x: torch.Tensor, groups: Groups) -> torch.Tensor:
        if len(groups) == 1 and groups[0][1] is None:
            return self.nets[ROLE_NAMES[groups[0][0]]](x)
        out = x.new_zeros(x.shape[0], self.d_out)
        for role, idx in groups:
            out = out.index_copy(0, idx, self.nets[ROLE_NAMES[role]](x[idx]))
        return out

    def ranges(self, x: torch.Tensor, ranges: RoleRanges) -> torch.Tensor:
        """Dense form: x [N, n_nodes, d_in], one function per contiguous node range."""
        if len(ranges) == 1:
            return self.nets[ROLE_NAMES[ranges[0][0]]](x)
        return torch.cat([self.nets[ROLE_NAMES[role]](x[:, nodes]) for role, nodes in ranges], 1)

    def role(self, x: torch.Tensor, role: int) -> torch.Tensor:
        return self.nets[ROLE_NAMES[role]](x)


class Canon(nn.Module):
    """An invariant of each row under its role's group: identity (plain), rho(x) + rho(-x) (sign),
    x / ||x|| (positive scale)."""

    def __init__(self, d: int, roles: tuple[int, ...]):
        super().__init__()
        self.rho = nn.Linear(d, d) if SIGN in roles else None

    def one(self, x: torch.Tensor, role: int) -> torch.Tensor:
        if role == SIGN:
            a, b = F.linear(x, self.rho.weight), self.rho.bias
            return F.silu(a + b) + F.silu(b - a)
        if role == SCALE:
            return x / (x.norm(dim=-1, keepdim=True) + EPS)
        return x

    def forward(self, x: torch.Tensor, groups: Groups) -> torch.Tensor:
        if len(groups) == 1 and groups[0][1] is None:
            return self.one(x, groups[0][0])
        out = x
        for role, idx in groups:
            if role != PLAIN:
                out = out.index_copy(0, idx, self.one(x[idx], role))
        return out

    def ranges(self, x: torch.Tensor, ranges: RoleRanges) -> torch.Tensor:
        if len(ranges) == 1:
            return self.one(x, ranges[0][0])
        return torch.cat([self.one(x[:, nodes], role) for role, nodes in ranges], 1)


class PairMLP(nn.Module):
    """mlp([a, b, ...]) on edges, the first layer split per endpoint: A [u_src, u_dst] = A_s u_src + A_d u_dst,
    computed on the nodes and gathered (E is ~20x the node count for MLPs)."""

    def __init__(self, d_node: int, d_edge: int, d: int):
        super().__init__()
        self.src = nn.Linear(d_node, d)
        self.dst = nn.Linear(d_node, d, bias=False)
        self.edge = nn.Linear(d_edge, d, bias=False) if d_edge else None
        self.out = nn.Linear(d, d)

    def forward(self, u_node: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor | None = None):
        src, dst = edge_index
        h = self.src(u_node)[src] + self.dst(u_node)[dst]
        if self.edge is not None:
            h = h + self.edge(e)
        return self.out(F.silu(h))

    def dense(self, u_node: torch.Tensor, t: GraphTemplate, e: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Dense form: u_node [N, n_nodes, d], e per layer [N, n_out, n_in, d] -> per layer, same shapes."""
        a, b = self.src(u_node), self.dst(u_node)
        out = []
        for k in range(len(t.widths) - 1):
            h = b[:, t.layer_nodes(k + 1)].unsqueeze(2) + a[:, t.layer_nodes(k)].unsqueeze(1)
            if self.edge is not None:
                h = h + self.edge(e[k])
            out.append(self.out(F.silu(h)))
        return out


def aggregate(t: GraphTemplate, messages: list[torch.Tensor]) -> torch.Tensor:
    """Dense sum aggregation: per-layer edge messages [N, n_out, n_in, d] -> nodes [N, n_nodes, d]
    (input nodes receive nothing)."""
    first = messages[0]
    return torch.cat([first.new_zeros(first.shape[0], t.widths[0], first.shape[-1]),
                      *(m.sum(2) for m in messages)], 1)


class ScaleGMNLayer(MessagePassing):
    """One permutation- and scaling-equivariant message-passing layer (directed edges j -> i).

    The message function has one EqLayer (it runs on every edge), the node update two.
    """

    def __init__(self, d: int, roles: tuple[int, ...], update_edges: bool = True):
        super().__init__(aggr="add")
        self.lin_e = nn.Linear(d, d, bias=False)
        self.lin_v = nn.Linear(d, d, bias=False)
        self.msg = RoleNet(d, d, roles, depth=1)  # by the receiving node's role: m_ij scales like x_i
        self.upd = RoleNet(2 * d, d, roles, depth=2)
        self.update_edges = update_edges
        if update_edges:
            self.canon = Canon(d, roles)
            self.edge_lin = nn.Linear(d, d, bias=False)
            self.edge_gate = PairMLP(d, 0, d)

    def forward(self, x, e, edge_index, node_groups: Groups, edge_groups: Groups):
        m = self.propagate(edge_index, v=self.lin_v(x), e=e, edge_groups=edge_groups)
        x = x + self.upd(torch.cat([x, m], -1), node_groups)
        if self.update_edges:
            gate = self.edge_gate(self.canon(x, node_groups), edge_index)  # invariant
            e = e + self.edge_lin(e) * gate
        return x, e

    def message(self, v_j, e, edge_groups):
        return self.msg(self.lin_e(e) * v_j, edge_groups)

    def dense(self, x, e: list[torch.Tensor], t: GraphTemplate, node_ranges: RoleRanges, roles: tuple[int, ...]):
        """The same layer on dense features (x [N, n_nodes, d], e per layer); `roles` per node layer."""
        v = self.lin_v(x)
        # the message runs by the receiving layer's role, on lin_e(e_ij) * v_j with v_j broadcast over i
        m = [self.msg.role(self.lin_e(ek) * v[:, t.layer_nodes(k)].unsqueeze(1), roles[k + 1])
             for k, ek in enumerate(e)]
        x = x + self.upd.ranges(torch.cat([x, aggregate(t, m)], -1), node_ranges)
        if self.update_edges:
            gate = self.edge_gate.dense(self.canon.ranges(x, node_ranges), t)
            e = [ek + self.edge_lin(ek) * g for ek, g in zip(e, gate, strict=True)]
        return x, e


class GNNLayer(MessagePassing):
    """The permutation-only counterpart (Neural Graphs style): plain MLPs on [x_i, x_j, e_ij] etc."""

    def __init__(self, d: int, update_edges: bool = True):
        super().__init__(aggr="add")
        self.msg = PairMLP(d, d, d)
        self.upd = mlp([2 * d, d, d])
        self.update_edges = update_edges
        self.edge_upd = PairMLP(d, d, d) if update_edges else None

    def forward(self, x, e, edge_index, node_groups=None, edge_groups=None):
        m = self.propagate(edge_index, m=self.msg(x, edge_index, e))
        x = x + self.upd(torch.cat([x, m], -1))
        if self.update_edges:
            e = e + self.edge_upd(x, edge_index, e)
        return x, e

    def message(self, m):
        return m

    def dense(self, x, e: list[torch.Tensor], t: GraphTemplate, node_ranges=None, roles=None):
        x = x + self.upd(torch.cat([x, aggregate(t, self.msg.dense(x, t, e))], -1))
        if self.update_edges:
            e = [ek + u for ek, u in zip(e, self.edge_upd.dense(x, t, e), strict=True)]
        return x, e


class GraphEncoder(nn.Module):
    """Network parameters [N, ...] -> latents [N, latent], invariant to the space's symmetries.

    `equivariant=True` is the ScaleGMN (permutations and scalings), False the permutation-only GNN.
    """

    def __init__(self, space: WeightSpace, hidden: int = 32, n_layers: int = 3, latent: int = 128,
                 equivariant: bool = True):
        super().__init__()
        t = graph_template(space)
        self.space, self.template, self.equivariant, self.d = space, t, equivariant, hidden
        d = hidden
        # one divisor per parameter tensor (set from a zoo by GraphAutoencoder.set_scales)
        self.register_buffer("in_scale", torch.ones(len(space.shapes())))
        self.node_emb = nn.Linear(1, d, bias=not equivariant)
        self.edge_emb = nn.Linear(t.edge_dim, d, bias=not equivariant)
        node_mult = t.type_is_symmetric() & equivariant
        edge_mult = t.edge_type_is_symmetric() & equivariant
        self.register_buffer("node_mult", node_mult)
        self.register_buffer("edge_mult", edge_mult)
        # multiplicative embeddings start near 1, additive ones near 0 +- 1
        self.node_pos = nn.Parameter(torch.where(node_mult[:, None], 1 + 0.1 * torch.randn(len(node_mult), d),
                                                 torch.randn(len(node_mult), d)))
        self.edge_pos = nn.Parameter(torch.where(edge_mult[:, None], 1 + 0.1 * torch.randn(len(edge_mult), d),
                                                 torch.randn(len(edge_mult), d)))
        roles = tuple(sorted(set(t.layer_roles))) if equivariant else (PLAIN,)
        self.roles = roles
        # the last layer's edge update would feed nothing (the readout reads nodes): skipped
        self.layers = nn.ModuleList(
            ScaleGMNLayer(d, roles, k < n_layers - 1) if equivariant else GNNLayer(d, k < n_layers - 1)
            for k in range(n_layers))
        self.read_canon = Canon(d, roles)
        self.read_phi = mlp([d, d, d])
        n_hidden, n_io = len(t.hidden_layers), len(t.io_nodes)
        self.head = mlp([d * (n_hidden + n_io), 2 * d, latent])
        self.register_buffer("io_nodes", t.io_nodes)

    def _embed(self, scalars, types, lin, pos, mult):
        h, p = lin(scalars), pos[types]
        return torch.where(mult[types][:, None], h * p, h + p)  # p broadcasts over networks in the dense form

    def forward(self, params: Params, graph: str = "dense") -> torch.Tensor:
        """Latents [N, latent]. `graph="dense"` runs the shared-graph fast path; "pyg" the torch-geometric
        `MessagePassing` reference over a disconnected batch (same parameters, same function)."""
        names = list(self.space.shapes())
        params = {k: params[k] / self.in_scale[i] for i, k in enumerate(names)}
        if graph == "pyg":
            x = self._forward_pyg(params)
        elif graph == "dense":
            x = self._forward_dense(params)
        else:
            raise ValueError(f"graph must be 'dense' or 'pyg', got {graph!r}")
        return self._readout(x)

    def _forward_pyg(self, params: Params) -> torch.Tensor:
        g = to_graph(self.space, params)
        x = self._embed(g.x, g.node_type, self.node_emb, self.node_pos, self.node_mult)
        e = self._embed(g.edge_attr, g.edge_type, self.edge_emb, self.edge_pos, self.edge_mult)
        if self.equivariant:
            node_groups = role_groups(g.node_role)
            edge_groups = role_groups(g.node_role[g.edge_index[1]])
        else:
            node_groups = edge_groups = [(PLAIN, None)]
        for layer in self.layers:
            x, e = layer(x, e, g.edge_index, node_groups, edge_groups)
        return x.view(g.num_graphs, self.template.n_nodes, self.d)

    def _forward_dense(self, params: Params) -> torch.Tensor:
        t = self.template
        nodes, edges = dense_features(self.space, params)
        x = self._embed(nodes, t.node_type.to(nodes.device), self.node_emb, self.node_pos, self.node_mult)
        e = []
        for k, w in enumerate(edges):  # edge type = layer; a short kernel uses the first columns (= zero padding)
            h = F.linear(w, self.edge_emb.weight[:, :w.shape[-1]], self.edge_emb.bias)
            e.append(h * self.edge_pos[k] if self.edge_mult[k] else h + self.edge_pos[k])
        roles = t.layer_roles if self.equivariant else (PLAIN,) * len(t.widths)
        node_ranges = t.node_role_ranges(self.equivariant)
        for layer in self.layers:
            x, e = layer.dense(x, e, t, node_ranges, roles)
        return x

    def _readout(self, x: torch.Tensor) -> torch.Tensor:
        t = self.template
        parts = []
        for h in t.hidden_layers:
            role = t.layer_roles[h] if self.equivariant else PLAIN
            parts.append(self.read_phi(self.read_canon.one(x[:, t.layer_nodes(h)], role)).sum(1))
        parts.append(x[:, self.io_nodes].flatten(1))
        return self.head(torch.cat(parts, 1))


class Decoder(nn.Module):
    """Latent -> flat parameter vector by an MLP (latent -> 2d -> 4d -> n_params, SiLU)."""

    def __init__(self, space: WeightSpace, latent: int = 128, hidden: int = 32):
        super().__init__()
        self.space = space
        self.net = mlp([latent, 2 * hidden, 4 * hidden, space.n_params])
        # per-entry output scale (the zoo's RMS of each tensor): the MLP works in unit scale
        self.register_buffer("out_scale", torch.ones(space.n_params))

    def forward(self, z: torch.Tensor) -> Params:
        return self.space.unflatten(self.net(z) * self.out_scale)


class GraphAutoencoder(nn.Module):
    def __init__(self, space: WeightSpace, hidden: int = 32, n_layers: int = 3, latent: int = 128,
                 equivariant: bool = True, decoder_hidden: int | None = None):
        super().__init__()
        self.space = space
        self.encoder = GraphEncoder(space, hidden, n_layers, latent, equivariant)
        self.decoder = Decoder(space, latent, decoder_hidden or hidden)

    @torch.no_grad()
    def set_scales(self, params: Params) -> None:
        """Per-tensor RMS over a set of networks: the encoder divides by it, the decoder multiplies."""
        rms = []
        for k in self.space.shapes():
            r = params[k].double().pow(2).mean().sqrt().item()
            rms.append(r if r > 1e-12 else 1.0)
        rms_t = torch.tensor(rms, dtype=self.encoder.in_scale.dtype)
        self.encoder.in_scale.copy_(rms_t)
        sizes = [math.prod(s) for s in self.space.shapes().values()]
        self.decoder.out_scale.copy_(torch.repeat_interleave(rms_t, torch.tensor(sizes)))

    def encode(self, params: Params, graph: str = "dense") -> torch.Tensor:
        return self.encoder(params, graph)

    def decode(self, z: torch.Tensor) -> Params:
        return self.decoder(z)

    def forward(self, params: Params, graph: str = "dense") -> Params:
        return self.decode(self.encode(params, graph))
