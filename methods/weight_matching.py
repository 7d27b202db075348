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
from scipy.optimize import linear_sum_assignment

from methods.base import Aligner, Hyper
from zoos.space import Params, WeightSpace
from zoos.symmetry import apply_perms, apply_scales, select, stack


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
    """C_p[i, j] = similarity of A's unit i with B's unit j given all other current assignments."""
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


def _no_worse(score: np.ndarray, rows, new, old) -> bool:
    """sum score[rows, new] >= sum score[rows, old], up to rounding relative to the terms."""
    a, b = score[rows, new], score[rows, old]
    return a.sum() >= b.sum() - 1e-12 * (np.abs(a).sum() + np.abs(b).sum())


def prefer_identity(score: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Among assignments as good as `cols` (maximising sum_i score[i, cols[i]]), move to the identity.

    scipy's solver is deterministic but breaks ties arbitrarily: a self-match with duplicated units
    can come back with those units swapped. Rule, repeated until nothing changes: (1) a cycle of
    `cols` whose own diagonal scores at least as much becomes fixed points; (2) row i takes column i
    by exchanging columns with the row j holding it, if that does not lower the total. Each move
    adds fixed points and removes none (so at most n moves) and never lowers the total (up to
    rounding). Whenever the identity is optimal, so is every cycle's diagonal (else the identity
    could be improved on), so (1) alone returns the identity; (2) handles ties inside a genuine match.
    """
    cols = np.array(cols, copy=True)
    n, changed, rows = len(cols), True, np.arange(len(cols))
    while changed:
        changed = False
        # label each cycle of `cols` by its smallest row (pointer doubling: after k rounds a row has seen
        # 2^k successors), then sum over cycles with bincount
        cycle, step = rows.copy(), cols.copy()
        for _ in range(max(1, n).bit_length()):
            cycle, step = np.minimum(cycle, cycle[step]), step[step]
        diag, held = score[rows, rows], score[rows, cols]
        gain = np.bincount(cycle, weights=diag - held)
        slack = 1e-12 * np.bincount(cycle, weights=np.abs(diag) + np.abs(held))
        undo = (gain >= -slack)[cycle] & (cols != rows)
        if undo.any():
            cols[undo], changed = rows[undo], True
        # swaps: screen every row at once (without ties almost none pass), then apply them one by one
        holder = np.argsort(cols)  # holder[c] = row assigned column c
        new = score[rows, rows] + score[holder, cols]
        old = score[rows, cols] + score[holder, rows]
        slack = 1e-12 * (np.abs(score[rows, rows]) + np.abs(score[holder, cols]) + np.abs(score[rows, cols])
                         + np.abs(score[holder, rows]))
        for i in np.nonzero((cols != rows) & (new >= old - slack))[0]:
            ci, j = cols[i], holder[i]
            if ci != i and _no_worse(score, [i, j], [i, ci], [ci, i]):  # re-checked: earlier swaps moved things
                cols[i], cols[j] = i, ci
                holder[i], holder[ci] = i, j
                changed = True
    return cols


def _solve(c: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Best (signed) assignment for cost c: columns per row, and signs when signed (ties: see prefer_identity)."""
    score = (c.abs() if signed else c).numpy()
    _, cols = linear_sum_assignment(score, maximize=True)
    cols = torch.from_numpy(prefer_identity(score, cols)).long()
    if not signed:
        return cols, None
    s = torch.sign(c[torch.arange(len(c)), cols]).float()
    return cols, torch.where(s == 0, torch.ones_like(s), s)


def forward_init(space: WeightSpace, a: Params, b: Params, signs: dict) -> dict:
    """Greedy start from the input side: each permutation matched on its incoming weights alone,
    given the ones before it. Inputs are never permuted, so a planted permutation is found here
    layer by layer, where coordinate descent from the identity can stall in a local optimum."""
    perms = {p: torch.arange(n) for p, n in space.perm_sizes.items()}
    for p in space.perm_sizes:  # declaration order is input-to-output
        cols, s = _solve(cost_matrix(space, a, b, p, perms, signs, incoming_only=True), p in signs)
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
    signs = {p: torch.ones(space.perm_sizes[p]) for p in sign_perms}
    if init not in ("forward", "identity"):
        raise ValueError(f"weight_matching: init must be 'forward' or 'identity', not {init!r}")
    if init == "forward":
        perms = forward_init(space, a, b, signs)
    else:
        perms = {p: torch.arange(n) for p, n in space.perm_sizes.items()}
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
            c = cost_matrix(space, a, b, p, perms, signs)
            rows = torch.arange(len(c))
            current = signs[p].double() if p in signs else 1.0
            old = (c[rows, perms[p]] * current).sum().item()
            cols, s = _solve(c, p in signs)
            new = (c[rows, cols] * (s.double() if s is not None else 1.0)).sum().item()
            # improvement beyond rounding, relative to the cost scale (weights ~1e-6 give costs ~1e-12)
            if new > old + 1e-12 * c.abs().max().item() * len(c):
                improved = True
                version[p] += 1
                perms[p] = cols
                if s is not None:
                    signs[p] = s
        if not improved:
            break
    return perms, signs, sweeps


def apply_matching(space: WeightSpace, params: Params, perms, signs) -> Params:
    """Apply a matching result to a batch (N=1) of parameters."""
    out = apply_perms(space, params, {p: v[None] for p, v in perms.items()})
    return apply_scales(space, out, {p: v[None] for p, v in signs.items()})


class WeightMatching(Aligner):
    name = "git-rebasin"
    search_space = {"max_sweeps": Hyper("int", 100, 1, 1000),
                    "init": Hyper("cat", "forward", choices=("forward", "identity"))}
    signed = False

    def align(self, ref, others, target=None):
        a = {k: v[0] for k, v in ref.items()}
        generator = torch.Generator().manual_seed(self.seed)
        out, sweeps = [], []
        for i in range(next(iter(others.values())).shape[0]):
            b = select(others, i)
            perms, signs, n = weight_matching(self.space, a, {k: v[0] for k, v in b.items()}, signed=self.signed,
                                              max_sweeps=self.hp["max_sweeps"], generator=generator,
                                              init=self.hp["init"])
            out.append(apply_matching(self.space, b, perms, signs))
            sweeps.append(n)
        self.info = {"sweeps": float(np.mean(sweeps))}
        return stack(out)
