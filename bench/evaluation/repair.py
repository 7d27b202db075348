"""REPAIR (Jordan et al., ICLR 2023): reset a merged network's hidden-unit statistics to the endpoints'.

Averaging weights shrinks the variance of hidden pre-activations ("variance collapse"). For every
hidden layer, in order, REPAIR measures each unit's pre-activation mean and std on training inputs
for every endpoint network (already aligned to the merged network's frame), averages them over the
endpoints (the goal), measures the merged network's own statistics (after the corrections of the
earlier layers) and folds an affine correction into the layer:

    W' = W * goal_std / std,    b' = (b - mean) * goal_std / std + goal_mean,

so the corrected pre-activations have exactly the goal mean and std per unit. For convolutions a
unit is a channel and the statistics run over batch and spatial positions.

The forward pass here walks `space.layers` with `WeightSpace.forward`'s own layer steps
(`preactivation`, `postactivation`), stopping at each pre-activation.

Networks with BatchNorm (graph spaces) get its counterpart instead, the BatchNorm reset: the merged
network's running statistics are recomputed on training inputs, so that every normalisation sees
the statistics of the merged network's own activations rather than an average of the endpoints'.
"""

from __future__ import annotations

import torch

from zoos.space import ParamLayout, Params, WeightSpace

EPS = 1e-8  # floor on a unit's std: a dead unit is left at its scale instead of blowing up


def unit_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean and std [N, n] over batch (and spatial) positions of z [N, B, n(, H, W)]."""
    z = z.movedim(2, -1).reshape(z.shape[0], -1, z.shape[2])
    return z.mean(1), z.std(1, unbiased=False)


def _repaired_layers(space: WeightSpace) -> list[int]:
    """Hidden layers: those whose output units carry a permutation (the output layer is left alone)."""
    return [i for i, layer in enumerate(space.layers) if space.axes[layer.bias][0] is not None]


def _inputs(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.unsqueeze(0).expand(n, *x.shape)


@torch.no_grad()
def goal_stats(space: WeightSpace, endpoints: Params, x: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """layer index -> (mean, std) [n] averaged over the endpoint networks."""
    hidden = set(_repaired_layers(space))
    h = _inputs(x, next(iter(endpoints.values())).shape[0])
    goals = {}
    for i, layer in enumerate(space.layers[: max(hidden) + 1] if hidden else ()):
        z = space.preactivation(layer, endpoints[layer.weight], endpoints[layer.bias], h)
        if i in hidden:
            mean, std = unit_stats(z)
            goals[i] = (mean.mean(0), std.mean(0))
        h = space.postactivation(layer, z)
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
    h = _inputs(x, next(iter(out.values())).shape[0])
    for i, layer in enumerate(space.layers):
        if i > max(goals, default=-1):
            break
        z = space.preactivation(layer, out[layer.weight], out[layer.bias], h)
        if i in goals:
            goal_mean, goal_std = goals[i]
            mean, std = unit_stats(z)  # measured after the corrections of the earlier layers
            scale = goal_std / std.clamp_min(EPS)  # [N, n]
            w = out[layer.weight]
            out[layer.weight] = w * scale.reshape(*scale.shape, *([1] * (w.dim() - 2)))
            out[layer.bias] = (out[layer.bias] - mean) * scale + goal_mean
            z = space.preactivation(layer, out[layer.weight], out[layer.bias], h)
        h = space.postactivation(layer, z)
    return {k: v.to(dtypes[k]) for k, v in out.items()}


@torch.no_grad()
def reset_batchnorm(space, params: Params, x: torch.Tensor) -> Params:
    """Network(s) [N] with every BatchNorm's running mean and variance recomputed on the batch `x` (one
    forward in training mode, in float64: each normalisation sees the corrected ones before it)."""
    stats: dict = {}
    space.forward({k: v.double() for k, v in params.items()}, x.double(), batch_stats=stats)
    out = dict(params)
    for name, (mean, var) in stats.items():
        out[f"{name}.running_mean"] = mean.to(params[f"{name}.running_mean"].dtype)
        out[f"{name}.running_var"] = var.to(params[f"{name}.running_var"].dtype)
    return out


def repair_merged(space: ParamLayout, merged: Params, endpoints: Params, x: torch.Tensor) -> Params | None:
    """The statistics correction that fits the space: REPAIR for stacks of layers, the BatchNorm reset for
    graphs with BatchNorm; None where neither applies (a graph without BatchNorm)."""
    if space.stacked:
        return repair(space, merged, endpoints, x)
    if space.has_batchnorm:
        return reset_batchnorm(space, merged, x)
    return None
