"""Group actions on any weight space: hidden-unit permutations and per-unit rescalings.

Both act through the space's permutation spec only, so they apply to every architecture.
All functions are batched: parameters carry a leading network axis N, and so do the group
elements (`perms[p]` is `[N, n]` indices, `scales[p]` is `[N, n]` factors).
"""

from __future__ import annotations

import torch

from zoos.space import Params, WeightSpace

Perms = dict[str, torch.Tensor]
Scales = dict[str, torch.Tensor]
ACTIONS = ("P", "S", "PS")


def _along(t: torch.Tensor, axis: int, v: torch.Tensor) -> torch.Tensor:
    """Reshape a per-network vector v [N, n] to broadcast along parameter axis `axis` of t."""
    shape = [t.shape[0]] + [1] * (t.dim() - 1)
    shape[axis + 1] = v.shape[1]
    return v.reshape(shape)


def apply_perms(space: WeightSpace, params: Params, perms: Perms) -> Params:
    """Permute hidden units: new unit i of permutation p is old unit perms[p][:, i]."""
    out = dict(params)
    for name, ps in space.axes.items():
        t = out[name]
        for axis, p in enumerate(ps):
            if p is not None and p in perms:
                t = torch.take_along_dim(t, _along(t, axis, perms[p].to(t.device)), dim=axis + 1)
        out[name] = t
    return out


def apply_scales(space: WeightSpace, params: Params, scales: Scales) -> Params:
    """Rescale hidden units: incoming weights and bias times d, outgoing weights divided by d.

    Function-preserving when d is +-1 for odd activations or d > 0 for ReLU.
    """
    out = dict(params)
    for name, ps in space.axes.items():
        t = out[name]
        for axis, p in enumerate(ps):
            if p is not None and p in scales:
                d = _along(t, axis, scales[p].to(t))
                t = t * d if axis == 0 else t / d
        out[name] = t
    return out


def identity_perms(space: WeightSpace, n: int = 1) -> Perms:
    return {p: torch.arange(size).expand(n, size).clone() for p, size in space.perm_sizes.items()}


def invert(perms: Perms) -> Perms:
    return {p: torch.argsort(v, dim=-1) for p, v in perms.items()}


def random_perms(space: WeightSpace, n: int, generator: torch.Generator) -> Perms:
    return {p: torch.stack([torch.randperm(size, generator=generator) for _ in range(n)])
            for p, size in space.perm_sizes.items()}


def random_scales(space: WeightSpace, n: int, generator: torch.Generator, log_range: float = 1.0) -> Scales:
    """Random elements of each permutation's scaling group (none-groups are left out).

    Sign groups draw +-1; positive-scale groups draw exp(U(-log_range, log_range)).
    """
    out = {}
    for p, size in space.perm_sizes.items():
        group = space.groups[p]
        if group == "sign":
            out[p] = torch.randint(0, 2, (n, size), generator=generator).float() * 2 - 1
        elif group == "scale":
            out[p] = torch.exp((torch.rand(n, size, generator=generator) * 2 - 1) * log_range)
    return out


def random_action(space: WeightSpace, params: Params, kind: str, generator: torch.Generator):
    """Apply a random group element of kind P, S or PS; return (params, perms, scales).

    The scaling acts first, then the permutation: g(theta) = P(S(theta)).
    """
    if kind not in ACTIONS:
        raise ValueError(f"unknown group action {kind!r}; choose from {', '.join(ACTIONS)}")
    n = next(iter(params.values())).shape[0]
    perms = random_perms(space, n, generator) if "P" in kind else {}
    scales = random_scales(space, n, generator) if "S" in kind else {}
    return apply_perms(space, apply_scales(space, params, scales), perms), perms, scales


def add_noise(params: Params, eps: float, generator: torch.Generator) -> Params:
    if eps == 0:
        return dict(params)
    return {k: v + eps * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in params.items()}


def select(params: Params, index) -> Params:
    """Networks `index` (an int keeps the axis: result has N = 1)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return {k: v[index] for k, v in params.items()}


def stack(batches: list[Params]) -> Params:
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def sq_distance(a: Params, b: Params) -> torch.Tensor:
    """Squared L2 distance per network pair, [N]."""
    return sum(((a[k] - b[k]) ** 2).flatten(1).sum(1) for k in a)
