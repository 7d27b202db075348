"""Git Re-Basin weight matching (Ainsworth et al., ICLR 2023), generic over the weight space.

Coordinate descent over the hidden-unit permutations: every sweep visits the permutations in a
random order and solves, for permutation p with every other one held fixed, the linear assignment
`argmax_P <C_p, P>` where `C_p = sum_{params touching p} W_A (p-axis first, flattened) @ W_B'^T`.
Stops after the first sweep in which no permutation improves the objective.

`signed=True` matches over signed permutations (odd activations): the assignment is solved on
|C_p| and each matched unit takes the sign of C_p[i, j]; a flipped unit's whole contribution
changes sign, so this stays exact.

Numerics. Cost matrices are formed in float64 (float32 overflows for weights ~1e6 once the ReLU
scale canonical form has pushed norms outwards), and an assignment only counts as an improvement
when it beats the current one by more than rounding *relative to the costs* (an absolute threshold
stopped the descent at once for weights ~1e-6, whose costs are ~1e-12). Ties are broken towards the
identity (`prefer_identity`): a unit keeps its own index whenever another optimal choice exists, so
duplicated units, all-zero costs and a network matched to itself give the identity, deterministically.
"""

from __future__ import annotations

import numpy as np
import torch

from methods.assignment import signed_assignment
from methods.base import Aligner, Alignment, Hyper
from zoos.space import Params, WeightSpace
from zoos.symmetry import GroupElement, apply_perms, apply_scales, select, stack, stack_elements


def _transformed(space: WeightSpace, name: str, w: torch.Tensor, perms, signs, skip_axis: int) -> torch.Tensor:
    """Parameter `name` of B (single network) with every current permutation/sign applied but on skip_axis."""
    for axis, p in enumerate(space.axes[name]):
        if p is None or axis == skip_axis:
            continue
        w = w.index_select(axis, perms[p])
        if p in signs:
            shape = [1] * w.dim()
            shape[axis] = -1
            w = w * signs[p].reshape(shape)  # +-1: same factor on producing and consuming sides
    return w


def cost_matrix(space: WeightSpace, a: Params, b: Params, p: str, perms, signs,
                incoming_only: bool = False) -> torch.Tensor:
    """C_p[i, j] = similarity of A's unit i with B's unit j given all other current assignments.

    The definition, computed from scratch: `_Costs` keeps the same matrices up to date (and is tested
    against this at every step)."""
    n = space.perm_sizes[p]
    c = torch.zeros(n, n, dtype=torch.float64)
    for name, axis in space.touches(p):
        if incoming_only and axis != 0:
            continue
        wa = a[name].movedim(axis, 0).reshape(n, -1)
        wb = _transformed(space, name, b[name], perms, signs, axis).movedim(axis, 0).reshape(n, -1)
        # float64 before the product: float32 overflows for large (e.g. scale-canonicalised 1e6) weights
        c += wa.double() @ wb.double().T
    return c


def _gram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x @ y.T through torch, whose thread count the caller sets (numpy's BLAS keeps its own threads,
    which spin on after each product and would charge their CPU time to whatever runs next)."""
    return (torch.from_numpy(x) @ torch.from_numpy(y).T).numpy()


class _Costs:
    """The cost matrices C_p of one matching, kept up to date as the permutations change.

    C_p is a sum of one term per (parameter, axis) that p acts on. A term whose parameter carries
    exactly one other permutation q depends on q alone: when q changes at k of its positions, the
    term changes by a rank-k product (A's slices at those positions times the change of B's), far
    cheaper than the full product when coordinate descent moves a few units. It is recomputed in
    full when more than half of q changed, which also bounds the rounding the updates accumulate
    (~1e-16 relative each, far below the 1e-12 the tie rules allow). Terms with no other
    permutation are computed once. Everything is float64 numpy, A and B converted once.
    """

    def __init__(self, space: WeightSpace, a: Params, b: Params):
        self.space = space
        self.terms: dict[str, list[dict]] = {p: [] for p in space.perm_sizes}
        for p in space.perm_sizes:
            for name, axis in space.touches(p):
                others = [(ax, q) for ax, q in enumerate(space.axes[name]) if q is not None and ax != axis]
                term = {"name": name, "axis": axis, "others": others, "value": None, "at": None}
                if len(others) <= 1 and p not in [q for _, q in others]:
                    order = [axis] + [ax for ax, _ in others]
                    order += [ax for ax in range(a[name].dim()) if ax not in order]
                    n = space.perm_sizes[p]
                    k = a[name].shape[others[0][0]] if others else 1
                    term["a"] = a[name].double().permute(order).reshape(n, k, -1).numpy()
                    term["b"] = b[name].double().permute(order).reshape(n, k, -1).numpy()
                self.terms[p].append(term)
        self.a, self.b = a, b

    def matrix(self, p: str, perms: dict, signs: dict, incoming_only: bool = False) -> np.ndarray:
        terms = [self._term(t, perms, signs) for t in self.terms[p] if not incoming_only or t["axis"] == 0]
        c = terms[0].copy()  # the cached terms stay untouched
        for term in terms[1:]:
            c += term
        return c

    def _term(self, term: dict, perms: dict, signs: dict) -> np.ndarray:
        if "a" not in term:  # general case (a parameter with several other permutations): in full
            wa, wb = self.a[term["name"]], self.b[term["name"]]
            n = wa.shape[term["axis"]]
            wb = _transformed(self.space, term["name"], wb, {q: torch.from_numpy(v) for q, v in perms.items()},
                              {q: torch.from_numpy(v) for q, v in signs.items()}, term["axis"])
            return (wa.movedim(term["axis"], 0).reshape(n, -1).double()
                    @ wb.movedim(term["axis"], 0).reshape(n, -1).double().T).numpy()
        wa, wb = term["a"], term["b"]
        if not term["others"]:
            if term["value"] is None:
                term["value"] = _gram(wa.reshape(len(wa), -1), wb.reshape(len(wb), -1))
            return term["value"]
        q = term["others"][0][1]
        perm, sign = perms[q], signs.get(q)
        if term["value"] is not None:
            old_perm, old_sign = term["at"]
            changed = perm != old_perm
            if sign is not None:
                changed |= sign != old_sign
            changed = np.flatnonzero(changed)
            if len(changed) == 0:
                return term["value"]
            if 2 * len(changed) <= len(perm):
                new, old = wb[:, perm[changed]], wb[:, old_perm[changed]]
                if sign is not None:
                    new = new * sign[changed][None, :, None]
                    old = old * old_sign[changed][None, :, None]
                n = len(wa)
                term["value"] += _gram(wa[:, changed].reshape(n, -1), (new - old).reshape(n, -1))
                term["at"] = (perm.copy(), None if sign is None else sign.copy())
                return term["value"]
        moved = wb[:, perm] if sign is None else wb[:, perm] * sign[None, :, None]
        n = len(wa)
        term["value"] = _gram(wa.reshape(n, -1), moved.reshape(n, -1))
        term["at"] = (perm.copy(), None if sign is None else sign.copy())
        return term["value"]


def forward_init(space: WeightSpace, costs: _Costs, signs: dict) -> dict:
    """Greedy start from the input side: each permutation matched on its incoming weights alone,
    given the ones before it. Inputs are never permuted, so a planted permutation is found here
    layer by layer, where coordinate descent from the identity can stall in a local optimum."""
    perms = {p: np.arange(n) for p, n in space.perm_sizes.items()}
    for p in space.perm_sizes:  # declaration order is input-to-output
        cols, s = signed_assignment(costs.matrix(p, perms, signs, incoming_only=True), p in signs)
        perms[p] = cols
        if s is not None:
            signs[p] = s
    return perms


def weight_matching(space: WeightSpace, a: Params, b: Params, *, signed: bool = False, max_sweeps: int = 100,
                    generator: torch.Generator | None = None, init: str = "forward"):
    """Match single networks a, b (no batch axis). Returns (perms, signs, sweeps).

    B aligned = perms applied first, then signs on the new units: unit i of the result is
    signs[p][i] * (B's unit perms[p][i]). `init` is "identity" (the reference) or "forward".
    """
    generator = generator or torch.Generator().manual_seed(0)
    names = list(space.perm_sizes)
    sign_perms = [p for p in names if signed and space.groups[p] == "sign"]
    signs = {p: np.ones(space.perm_sizes[p]) for p in sign_perms}
    if init not in ("forward", "identity"):
        raise ValueError(f"weight_matching: init must be 'forward' or 'identity', not {init!r}")
    costs = _Costs(space, a, b)
    if init == "forward":
        perms = forward_init(space, costs, signs)
    else:
        perms = {p: np.arange(n) for p, n in space.perm_sizes.items()}
    # C_p depends only on the permutations p shares a parameter with. When none of them changed since
    # p was last solved, C_p and hence its best assignment are the same as then (p holds it already):
    # skip the cost matrix and the assignment. Saves the whole final, confirming sweep. Same result.
    neighbours = {p: sorted({q for name, _ in space.touches(p) for q in space.axes[name] if q not in (None, p)})
                  for p in names}
    version = dict.fromkeys(names, 0)  # bumped whenever a permutation (or its signs) changes
    solved_at: dict[str, tuple] = {}
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for i in torch.randperm(len(names), generator=generator).tolist():
            p = names[i]
            state = tuple(version[q] for q in neighbours[p])
            if solved_at.get(p) == state:
                continue
            solved_at[p] = state
            c = costs.matrix(p, perms, signs)
            rows = np.arange(len(c))
            old = (c[rows, perms[p]] * signs.get(p, 1.0)).sum()
            cols, s = signed_assignment(c, p in signs)
            new = (c[rows, cols] * (s if s is not None else 1.0)).sum()
            # improvement beyond rounding, relative to the cost scale (weights ~1e-6 give costs ~1e-12)
            if new > old + 1e-12 * np.abs(c).max() * len(c):
                improved = True
                version[p] += 1
                perms[p] = cols
                if s is not None:
                    signs[p] = s
        if not improved:
            break
    return ({p: torch.from_numpy(v).long() for p, v in perms.items()},
            {p: torch.from_numpy(v).float() for p, v in signs.items()}, sweeps)


def apply_matching(space: WeightSpace, params: Params, perms, signs) -> Params:
    """Apply a matching result to a batch (N=1) of parameters."""
    out = apply_perms(space, params, {p: v[None] for p, v in perms.items()})
    return apply_scales(space, out, {p: v[None] for p, v in signs.items()})


def as_element(perms, signs) -> GroupElement:
    """A matching result (single-network perms and signs) as a group element with N = 1."""
    return GroupElement({p: v[None] for p, v in perms.items()}, {p: v[None] for p, v in signs.items()})


class WeightMatching(Aligner):
    name = "git-rebasin"
    display_name = "Git Re-Basin (WM)"
    description = "weight matching: coordinate descent over layer-wise linear assignments"
    citation = 'Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023'
    arxiv = "2209.04836"
    search_space = {"max_sweeps": Hyper("int", 100, 1, 1000),
                    "init": Hyper("cat", "forward", choices=("forward", "identity"))}
    signed = False

    def align(self, ref, others, target=None) -> Alignment:
        return self.match(ref, others)

    def match(self, ref, others) -> Alignment:
        """Each of `others` matched to `ref` (the reference is left as it is)."""
        a = {k: v[0] for k, v in ref.items()}
        generator = torch.Generator().manual_seed(self.seed)
        out, elements, sweeps = [], [], []
        for i in range(next(iter(others.values())).shape[0]):
            b = select(others, i)
            perms, signs, n = weight_matching(self.space, a, {k: v[0] for k, v in b.items()}, signed=self.signed,
                                              max_sweeps=self.hp["max_sweeps"], generator=generator,
                                              init=self.hp["init"])
            out.append(apply_matching(self.space, b, perms, signs))
            elements.append(as_element(perms, signs))
            sweeps.append(n)
        return Alignment(ref, stack(out), stack_elements(elements), None, {"sweeps": float(np.mean(sweeps))})
