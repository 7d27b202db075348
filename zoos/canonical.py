"""Exact canonical forms for the rescaling symmetries (function-preserving, idempotent).

- Positive scale (ReLU): every hidden unit's incoming weight row gets unit norm; the norm is
  pushed into the unit's bias and outgoing weights (bias / n, outgoing * n). A dead unit (zero
  incoming weights) gets |bias| = 1 instead; one with zero bias too is left alone. Units are
  processed input to output, so each layer sees the norms its predecessors pushed forward. Two
  networks on one scale orbit map to identical weights (unless a unit is all zero: then up to
  that unit's outgoing weights, which do not affect the function); permutations are left alone.
- Sign (odd activations): every hidden unit is flipped so that the first non-zero entry of
  (bias, incoming row) is positive.
"""

from __future__ import annotations

import torch

from zoos.space import Params, WeightSpace
from zoos.symmetry import GroupElement, apply_scales

_DEAD = 1e20  # |bias| / |incoming weights| beyond which a unit counts as dead (float32 tops out at 3e38)


def _incoming(space: WeightSpace, params: Params, perm: str, with_bias: bool) -> torch.Tensor:
    """[N, n, k]: each unit's incoming parameters (producing side, axis 0), biases first."""
    producing = [params[name] for name, axis in space.touches(perm) if axis == 0]
    biases = [t.unsqueeze(-1) for t in producing if t.dim() == 2] if with_bias else []
    weights = [t.flatten(2) for t in producing if t.dim() > 2]
    return torch.cat(biases + weights, dim=-1)


def scale_canonical(space: WeightSpace, params: Params, element: bool = False):
    """The positive-scale canonical form; with `element=True` also the rescaling applied (a GroupElement)."""
    out, scales = dict(params), {}
    for perm, group in space.groups.items():  # declaration order: input to output
        if group != "scale":
            continue
        # float64: in float32 the squares overflow once earlier layers have pushed norms ~1e18 outwards
        # (weights ~1e6), and a norm of inf zeroed the unit and made its outgoing weights inf
        entries = _incoming(space, out, perm, with_bias=True).double()  # bias first
        norm, bias = entries[..., 1:].norm(dim=-1), entries[..., 0].abs()
        # A dead unit (incoming weights zero, or negligible beside its bias) computes ~relu(b): normalise
        # |b| to 1 instead. The test |b| > norm * _DEAD is scale-invariant, so this is still one point per
        # orbit; dividing by a denormal norm (weight decay leaves such units) overflowed float32 to inf.
        # A unit with zero bias and zero weights computes 0 and is left alone.
        dead = bias > norm * _DEAD
        norm = torch.where(dead, bias, torch.where(norm > 0, norm, torch.ones_like(norm)))
        scales[perm] = 1 / norm
        out = apply_scales(space, out, {perm: scales[perm]})
    return (out, _element(params, scales)) if element else out


def _element(params: Params, scales: dict) -> GroupElement:
    """The rescalings applied, as a group element (in the parameters' dtype, as `apply_scales` used them)."""
    dtype = next(iter(params.values())).dtype
    return GroupElement({}, {p: s.to(dtype) for p, s in scales.items()})


def sign_canonical(space: WeightSpace, params: Params, element: bool = False):
    """The sign canonical form; with `element=True` also the sign flips applied (a GroupElement)."""
    out, scales = dict(params), {}
    for perm, group in space.groups.items():
        if group != "sign":
            continue
        entries = _incoming(space, out, perm, with_bias=True)
        first = torch.argmax((entries != 0).int(), dim=-1, keepdim=True)  # first non-zero entry
        sign = torch.sign(entries.gather(-1, first)).squeeze(-1)
        scales[perm] = torch.where(sign == 0, torch.ones_like(sign), sign)
        out = apply_scales(space, out, {perm: scales[perm]})
    return (out, _element(params, scales)) if element else out


def canonical_form(space: WeightSpace, params: Params, element: bool = False):
    """Both canonical forms: removes every rescaling symmetry exactly (permutations remain)."""
    out, scaled = scale_canonical(space, params, element=True)
    out, signed = sign_canonical(space, out, element=True)
    return (out, signed.compose(scaled)) if element else out
