"""Networks as graphs (Kofinas et al.'s neural graphs), built for any `WeightSpace`.

One node per neuron: the input features/channels, every hidden unit/channel and the outputs.
A node's scalar feature is its bias (input nodes get 1 for MLPs, 0 for CNNs). Every weight
`W[i, j]` of a layer is a directed edge j -> i whose feature is the weight (a conv kernel
flattened to k*k values; shorter features are zero-padded to the longest edge feature).

Types: every input node and every output node has a type of its own (they are never permuted),
every hidden layer is one type; edges are typed by layer. Each node also carries a *role*, the
scaling group its layer's symmetry adds to permutations: `PLAIN` (inputs, outputs, hidden layers
with no scaling symmetry), `SIGN` (odd activations) or `SCALE` (ReLU). The group acts on hidden
node i by a factor q_i: the node's bias goes to q_i b_i and an edge j -> i to q_i / q_j W[i, j]
(q = 1 on input and output nodes), exactly `zoos.symmetry.apply_scales`.

The layout of one network's graph (a `GraphTemplate`) depends only on the space, so a batch of
N networks is built with reshapes alone: features are gathered per layer, and the edge index is
the template's shifted by `n_nodes` per network.

Because the graph is shared, message passing also runs *dense* (`dense_features`, `RoleRanges`):
node features as one [N, n_nodes, d] tensor, each layer's edges as [N, n_out, n_in, d]. Sources
are a broadcast over n_out, aggregation a sum over n_in, and roles are constant per node layer, so
role-dependent functions apply to contiguous slices: no gather, scatter or index copy. The sparse
`to_graph` form stays as the torch-geometric reference that the dense path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from zoos.space import Params, WeightSpace

PLAIN, SIGN, SCALE = 0, 1, 2
ROLE_OF_GROUP = {"none": PLAIN, "sign": SIGN, "scale": SCALE}
ROLE_NAMES = ("plain", "sign", "scale")


@dataclass(frozen=True, eq=False)
class GraphTemplate:
    """The graph of one network of a space (shared by every network of the space)."""

    space: WeightSpace
    widths: tuple[int, ...]  # nodes per node layer: inputs, each hidden layer, outputs
    offsets: tuple[int, ...]  # first node of each node layer (len(widths) + 1 entries)
    edge_dim: int  # longest edge feature (k*k of the largest kernel, 1 for MLPs)
    edge_index: torch.Tensor  # [2, E] (source j, target i), layer by layer, row-major in (i, j)
    edge_offsets: tuple[int, ...]  # first edge of each layer (n_layers + 1 entries)
    node_type: torch.Tensor  # [n_nodes] long
    edge_type: torch.Tensor  # [E] long: the layer index
    node_role: torch.Tensor  # [n_nodes] long: PLAIN / SIGN / SCALE
    layer_roles: tuple[int, ...]  # role of each node layer (inputs and outputs PLAIN)
    input_feature: float  # node feature of input nodes: 1 for MLPs, 0 for CNNs

    @property
    def n_nodes(self) -> int:
        return self.offsets[-1]

    @property
    def n_edges(self) -> int:
        return self.edge_offsets[-1]

    @property
    def n_node_types(self) -> int:
        return self.widths[0] + (len(self.widths) - 2) + self.widths[-1]

    @property
    def n_edge_types(self) -> int:
        return len(self.space.layers)

    @property
    def hidden_layers(self) -> range:
        """Node-layer indices of the hidden layers (1 .. L-1)."""
        return range(1, len(self.widths) - 1)

    @property
    def io_nodes(self) -> torch.Tensor:
        """Node indices of the inputs then the outputs (fixed order: they are never permuted)."""
        return torch.cat([torch.arange(self.widths[0]), torch.arange(self.offsets[-2], self.offsets[-1])])

    def layer_nodes(self, layer: int) -> slice:
        return slice(self.offsets[layer], self.offsets[layer + 1])

    def node_role_ranges(self, equivariant: bool = True) -> RoleRanges:
        """Consecutive node layers of one role merged: [(role, node slice)] covering every node."""
        roles = self.layer_roles if equivariant else (PLAIN,) * len(self.widths)
        out: list[tuple[int, slice]] = []
        for layer, role in enumerate(roles):
            nodes = self.layer_nodes(layer)
            if out and out[-1][0] == role:
                out[-1] = (role, slice(out[-1][1].start, nodes.stop))
            else:
                out.append((role, nodes))
        return out

    def type_is_symmetric(self) -> torch.Tensor:
        """[n_node_types] bool: the type's nodes carry a scaling symmetry (SIGN or SCALE)."""
        roles = torch.zeros(self.n_node_types, dtype=torch.long)
        roles.scatter_(0, self.node_type, self.node_role)
        return roles != PLAIN

    def edge_type_is_symmetric(self) -> torch.Tensor:
        """[n_edge_types] bool: a layer's edges touch a node with a scaling symmetry."""
        r = self.layer_roles
        return torch.tensor([r[k] != PLAIN or r[k + 1] != PLAIN for k in range(self.n_edge_types)])


@lru_cache(maxsize=32)
def graph_template(space: WeightSpace) -> GraphTemplate:
    layers = space.layers
    widths = (layers[0].n_in, *(layer.n_out for layer in layers))
    offsets = [0]
    for w in widths:
        offsets.append(offsets[-1] + w)
    # the scaling group of each hidden node layer, read from the space's permutation spec
    roles = [PLAIN]
    for layer in layers[:-1]:
        perm = space.axes[layer.bias][0]
        roles.append(ROLE_OF_GROUP[space.groups[perm]] if perm is not None else PLAIN)
    roles.append(PLAIN)

    edges, edge_types, edge_offsets = [], [], [0]
    for k, layer in enumerate(layers):
        i = torch.arange(layer.n_out).repeat_interleave(layer.n_in)  # W[i, j] row-major
        j = torch.arange(layer.n_in).repeat(layer.n_out)
        edges.append(torch.stack([offsets[k] + j, offsets[k + 1] + i]))
        edge_types.append(torch.full((layer.n_out * layer.n_in,), k))
        edge_offsets.append(edge_offsets[-1] + layer.n_out * layer.n_in)

    n_in, n_out, n_hidden = widths[0], widths[-1], len(widths) - 2
    node_type = torch.cat([
        torch.arange(n_in),
        *(torch.full((widths[h],), n_in + h - 1) for h in range(1, n_hidden + 1)),
        n_in + n_hidden + torch.arange(n_out),
    ])
    node_role = torch.cat([torch.full((w,), r) for w, r in zip(widths, roles, strict=True)])
    edge_dim = max(layer.kernel ** 2 if layer.kind == "conv" else 1 for layer in layers)
    return GraphTemplate(
        space=space, widths=widths, offsets=tuple(offsets), edge_dim=edge_dim,
        edge_index=torch.cat(edges, 1), edge_offsets=tuple(edge_offsets), node_type=node_type,
        edge_type=torch.cat(edge_types), node_role=node_role, layer_roles=tuple(roles),
        input_feature=0.0 if layers[0].kind == "conv" else 1.0,
    )


# (role, node slice) pairs along the node axis of dense features; every node in exactly one
RoleRanges = list[tuple[int, slice]]


def dense_features(space: WeightSpace, params: Params) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Dense features: nodes [N, n_nodes, 1] and, per layer, edges [N, n_out, n_in, k*k] (no padding)."""
    t = graph_template(space)
    first = params[space.layers[0].weight]
    n = first.shape[0]
    nodes = torch.cat([first.new_full((n, t.widths[0]), t.input_feature),
                       *(params[layer.bias] for layer in space.layers)], 1)
    edges = [params[layer.weight].reshape(n, layer.n_out, layer.n_in, -1) for layer in space.layers]
    return nodes.unsqueeze(-1), edges


def node_edge_features(space: WeightSpace, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-network features: nodes [N, n_nodes], edges [N, E, edge_dim] (template order, kernels
    zero-padded to the longest): `dense_features` laid out for the sparse graph."""
    t = graph_template(space)
    nodes, edges = dense_features(space, params)
    n = nodes.shape[0]
    flat = [F.pad(w.reshape(n, -1, w.shape[-1]), (0, t.edge_dim - w.shape[-1])) for w in edges]
    return nodes.squeeze(-1), torch.cat(flat, 1)


def to_graph(space: WeightSpace, params: Params) -> Batch:
    """All N networks of `params` as one disconnected `Batch` (no Python loop over networks).

    Attributes: x [N*n_nodes, 1], edge_attr [N*E, edge_dim], edge_index, batch, ptr, and the
    per-node/edge node_type, node_role, edge_type. Nodes and edges of network n are the
    contiguous blocks n*n_nodes.. and n*E.., in template order.
    """
    t = graph_template(space)
    nodes, edges = node_edge_features(space, params)
    n, device = nodes.shape[0], nodes.device
    shift = torch.arange(n, device=device) * t.n_nodes
    edge_index = (t.edge_index.to(device).unsqueeze(1) + shift.view(1, n, 1)).reshape(2, -1)
    return Batch(
        x=nodes.reshape(-1, 1),
        edge_attr=edges.reshape(-1, t.edge_dim),
        edge_index=edge_index,
        batch=torch.arange(n, device=device).repeat_interleave(t.n_nodes),
        ptr=torch.arange(n + 1, device=device) * t.n_nodes,
        node_type=t.node_type.to(device).repeat(n),
        node_role=t.node_role.to(device).repeat(n),
        edge_type=t.edge_type.to(device).repeat(n),
    )


def from_graph(space: WeightSpace, graph: Batch) -> Params:
    """Inverse of `to_graph`: read the parameters back from node and edge features."""
    t = graph_template(space)
    n = graph.x.shape[0] // t.n_nodes
    nodes = graph.x.reshape(n, t.n_nodes)
    edges = graph.edge_attr.reshape(n, t.n_edges, t.edge_dim)
    out = {}
    for k, layer in enumerate(space.layers):
        size = layer.kernel ** 2 if layer.kind == "conv" else 1
        w = edges[:, t.edge_offsets[k]:t.edge_offsets[k + 1], :size]
        out[layer.weight] = w.reshape(n, *layer.weight_shape())
        out[layer.bias] = nodes[:, t.layer_nodes(k + 1)]
    return out
