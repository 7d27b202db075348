"""REPAIR (Jordan et al., ICLR 2023): reset a merged network's hidden-unit statistics to the endpoints'.

Averaging weights shrinks the variance of hidden pre-activations ("variance collapse"). For every
hidden layer, in order, REPAIR measures each unit's pre-activation mean and std on training inputs
for every endpoint network (already aligned to the merged network's frame), averages them over the
endpoints (the goal), measures the merged network's own statistics (after the corrections of the
earlier layers) and folds an affine correction into the layer:

    W' = W * goal_std / std,    b' = (b - mean) * goal_std / std + goal_mean,

so the corrected pre-activations have exactly the goal mean and std per unit. For convolutions a
unit is a channel and the statistics run over batch and spatial positions.

The forward pass here is `WeightSpace.hidden`, the forward's own layer loop, which hands each
pre-activation to the correction before activating it.

Graph spaces without BatchNorm get the same correction at every conv / linear layer with a bias
whose output units are hidden (`repair_graph`, walking `GraphSpace.apply`); in a residual stream each
layer writing into it is corrected on its own output, before the sum. Networks with BatchNorm get
its counterpart instead, the BatchNorm reset: the merged network's running statistics are
recomputed on training inputs, so that every normalisation sees the statistics of the merged
network's own activations rather than an average of the endpoints'.
"""

from __future__ import annotations

from itertools import islice

import torch

from zoos.space import ParamLayout, Params, WeightSpace

EPS = 1e-8  # floor on a unit's std: a dead unit is left at its scale instead of blowing up


def unit_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean and std [N, n] over batch (and spatial) positions of z [N, B, n(, H, W)]: one pass, in
    place (no copy of z with the units moved last)."""
    var, mean = torch.var_mean(z, dim=(1, *range(3, z.dim())), unbiased=False)
    return mean, var.sqrt()


def _repaired_layers(space: WeightSpace) -> list[int]:
    """Hidden layers: those whose output units carry a permutation (the output layer is left alone)."""
    return [i for i, layer in enumerate(space.layers) if space.axes[layer.bias][0] is not None]


@torch.no_grad()
def goal_stats(space: WeightSpace, endpoints: Params, x: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """layer index -> (mean, std) [n] averaged over the endpoint networks."""
    hidden = set(_repaired_layers(space))
    goals = {}

    def measure(i: int, layer, z: torch.Tensor) -> torch.Tensor:
        if i in hidden:
            mean, std = unit_stats(z)
            goals[i] = (mean.mean(0), std.mean(0))
        return z

    _walk_layers(space.hidden(endpoints, x, measure), max(hidden, default=-1))
    return goals


@torch.no_grad()
def repair(space: WeightSpace, merged: Params, endpoints: Params, x: torch.Tensor) -> Params:
    """Merged network(s) [N] with every hidden layer's unit statistics reset to the endpoints' average.

    `endpoints` [K] must be expressed in the merged network's frame (aligned), `x` is a batch of
    training inputs [B, *input_shape]. Every merged network gets the same goal statistics.
    """
    dtypes = {k: v.dtype for k, v in merged.items()}
    # float64 throughout: a network repaired against itself comes back unchanged to float32 precision
    endpoints = {k: v.double() for k, v in endpoints.items()}
    out = {k: v.double() for k, v in merged.items()}
    x = x.double()
    goals = goal_stats(space, endpoints, x)

    def correct(i: int, layer, z: torch.Tensor) -> torch.Tensor:
        if i in goals:
            out[layer.weight], out[layer.bias], z = _corrected(z, out[layer.weight], out[layer.bias], goals[i])
        return z

    _walk_layers(space.hidden(out, x, correct), max(goals, default=-1))
    return {k: v.to(dtypes[k]) for k, v in out.items()}


def _walk_layers(steps, last: int) -> None:
    """Runs a layer-by-layer forward (`WeightSpace.hidden`) through layer `last` and no further."""
    for _ in islice(steps, last + 1):
        pass


def _corrected(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, goal: tuple[torch.Tensor, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's weight and bias [N, ...] folded with the affine map that gives its outputs z the goal's
    per-unit mean and std, and the corrected outputs: the same map applied to z, which is what the folded
    layer computes (scale (W h + b - mean) + goal), without a second pass over the batch."""
    mean, std = unit_stats(z)  # measured after the corrections of the earlier layers
    scale = goal[1] / std.clamp_min(EPS)  # [N, n]
    shape = (z.shape[0], 1, z.shape[2], *([1] * (z.dim() - 3)))  # [N, 1, n(, 1, 1)] against z [N, B, n(, H, W)]
    z = (z - mean.reshape(shape)) * scale.reshape(shape) + goal[0].reshape(1, *shape[1:])
    return w * scale.reshape(*scale.shape, *([1] * (w.dim() - 2))), (b - mean) * scale + goal[0], z


@torch.no_grad()
def repair_graph(space, merged: Params, endpoints: Params, x: torch.Tensor) -> Params:
    """`repair` on a graph space: every conv / linear layer with a bias and hidden output units, in
    execution order (layers without a bias cannot take the mean shift and are left as they are)."""
    dtypes = {k: v.dtype for k, v in merged.items()}
    endpoints = {k: v.double() for k, v in endpoints.items()}
    out = {k: v.double() for k, v in merged.items()}
    repaired = [op for op in space.ops if op.kind in ("conv", "linear") and op.bias
                and space.axes[f"{op.name}.weight"][0] is not None]
    goals = {}
    for op, z in _walk(space, endpoints, x.double(), {op.name for op in repaired}):
        mean, std = unit_stats(z)
        goals[op.name] = (mean.mean(0), std.mean(0))
    for op, z in _walk(space, out, x.double(), set(goals)):
        w, b = f"{op.name}.weight", f"{op.name}.bias"
        out[w], out[b], _ = _corrected(z, out[w], out[b], goals[op.name])  # _walk recomputes the output
    return {k: v.to(dtypes[k]) for k, v in out.items()}


def _walk(space, params: Params, x: torch.Tensor, stops: set[str]):
    """Yields (op, its output) at each op named in `stops`, then recomputes that output from `params`, so
    that a caller correcting the op's parameters in between passes the corrected output on."""
    last = max((i for i, op in enumerate(space.ops) if op.name in stops), default=-1)
    values = {}
    n = next(iter(params.values())).shape[0]
    for i, op in enumerate(space.ops[: last + 1]):
        if op.kind == "input":
            values[op.name] = x.unsqueeze(0).expand(n, *x.shape)
            continue
        args = [values[a] for a in op.inputs]
        values[op.name] = space.apply(op, params, args)
        if op.name in stops:
            yield op, values[op.name]
            values[op.name] = space.apply(op, params, args)
        space.release(values, i)


@torch.no_grad()
def reset_batchnorm(space, params: Params, x: torch.Tensor) -> Params:
    """Network(s) [N] with every BatchNorm's running mean and variance recomputed on the batch `x`: one forward
    in training mode per network, in the parameters' precision as PyTorch's own recount (each normalisation
    sees the recounted ones before it)."""
    out = dict(params)
    n = next(iter(params.values())).shape[0]
    for i in range(n):  # one network at a time: a deep net's activations on the batch are large
        stats: dict = {}
        one = {k: v[i : i + 1] for k, v in params.items()}
        space.forward(one, x.to(next(iter(one.values())).dtype), batch_stats=stats)
        for name, (mean, var) in stats.items():
            for key, value in ((f"{name}.running_mean", mean), (f"{name}.running_var", var)):
                if i == 0:
                    out[key] = params[key].clone()
                out[key][i] = value[0]
    return out


def repair_merged(space: ParamLayout, merged: Params, endpoints: Params, x: torch.Tensor) -> Params:
    """The statistics correction that fits the space: REPAIR for stacks of layers and for graphs without
    BatchNorm, the BatchNorm reset for graphs with BatchNorm."""
    if space.stacked:
        return repair(space, merged, endpoints, x)
    if space.has_batchnorm:
        return reset_batchnorm(space, merged, x)
    return repair_graph(space, merged, endpoints, x)


def recount_statistics(task, params: Params) -> Params:
    """Networks as paths and combinations score them. A BatchNorm network made from others (a point between
    two networks, an element-wise combination) has no running statistics of its own: the average of the
    endpoints' is not the statistics of its activations, and scoring it with them measures that mismatch
    rather than the basin (Git Re-Basin and REPAIR recount them before scoring interpolated networks). On
    BatchNorm spaces every network is recounted on `Task.statistics_inputs`; other spaces' networks come back
    as they are."""
    return reset_batchnorm(task.space, params, task.statistics_inputs()) if task.space.has_batchnorm else params
