"""Group actions on any weight space: hidden-unit permutations and per-unit rescalings.

Both act through the space's permutation spec only, so they apply to every architecture.
All functions are batched: parameters carry a leading network axis N, and so do the group
elements (`perms[p]` is `[N, n]` indices, `scales[p]` is `[N, n]` factors).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class GroupElement:
    """A batch of group elements g = S . P: permute hidden units, then rescale them.

    `perms[p]` is [N, n] (new unit i is old unit perms[p][:, i]); `scales[p]` is [N, n] factors on
    the new units (signs for odd activations, positive scales for ReLU). A permutation missing from
    `perms` is the identity, one missing from `scales` is unscaled.
    """

    perms: Perms
    scales: Scales

    @staticmethod
    def identity(space: WeightSpace, n: int = 1) -> GroupElement:
        return GroupElement(identity_perms(space, n), {})

    def __len__(self) -> int:
        return next(iter(self.perms.values())).shape[0] if self.perms else 0

    def apply(self, space: WeightSpace, params: Params) -> Params:
        return apply_scales(space, apply_perms(space, params, self.perms), self.scales)

    def select(self, index) -> GroupElement:
        index = slice(index, index + 1) if isinstance(index, int) else index
        return GroupElement({p: v[index] for p, v in self.perms.items()}, {p: v[index] for p, v in self.scales.items()})

    def inverse(self) -> GroupElement:
        """g^-1: unit j of the original is unit i = inv[j] of the result, divided by its scale."""
        inv = {p: torch.argsort(v, dim=-1) for p, v in self.perms.items()}
        scales = {}
        for p, s in self.scales.items():
            scales[p] = 1 / (torch.take_along_dim(s, inv[p], dim=-1) if p in inv else s)
        return GroupElement(inv, scales)

    def compose(self, inner: GroupElement) -> GroupElement:
        """self . inner (inner acts first): unit i is s[i] s_in[P[i]] x[P_in[P[i]]]."""
        names = set(self.perms) | set(inner.perms)
        perms = {}
        for p in names:
            outer_p, inner_p = self.perms.get(p), inner.perms.get(p)
            perms[p] = inner_p if outer_p is None else outer_p if inner_p is None else \
                torch.take_along_dim(inner_p, outer_p, dim=-1)
        scales = {}
        for p in set(self.scales) | set(inner.scales):
            s_in = inner.scales.get(p)
            if s_in is not None and p in self.perms:
                s_in = torch.take_along_dim(s_in, self.perms[p], dim=-1)
            s_out = self.scales.get(p)
            scales[p] = s_in if s_out is None else s_out if s_in is None else s_out * s_in
        return GroupElement(perms, scales)


def stack_elements(elements: list[GroupElement]) -> GroupElement:
    """Concatenate batches of group elements (every batch over the same permutations)."""
    return GroupElement({p: torch.cat([e.perms[p] for e in elements]) for p in elements[0].perms},
                        {p: torch.cat([e.scales[p] for e in elements]) for p in elements[0].scales})
