"""The linear assignment every matcher solves, with ties broken towards the identity.

scipy's solver is deterministic but breaks ties arbitrarily: a self-match with duplicated units
can come back with those units swapped. `assignment` returns an optimal assignment that keeps
every unit on its own index whenever another optimal choice allows it, so duplicated units,
all-zero costs and a network matched to itself give the identity, deterministically.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def assignment(score: np.ndarray) -> np.ndarray:
    """Columns per row maximising sum_i score[i, cols[i]] (square score), ties towards the identity."""
    _, cols = linear_sum_assignment(score, maximize=True)
    return prefer_identity(score, cols)


def _no_worse(score: np.ndarray, rows, new, old) -> bool:
    """sum score[rows, new] >= sum score[rows, old], up to rounding relative to the terms."""
    a, b = score[rows, new], score[rows, old]
    return a.sum() >= b.sum() - 1e-12 * (np.abs(a).sum() + np.abs(b).sum())


def prefer_identity(score: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Among assignments as good as `cols` (maximising sum_i score[i, cols[i]]), move to the identity.

    Rule, repeated until nothing changes: (1) a cycle of
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




def signed_assignment(c: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Best (signed) assignment for similarity c: columns per row, and with `signed` a sign per row.

    Signed: the assignment maximises sum |c[i, cols[i]]| and each matched unit takes the sign of
    c[i, cols[i]] (zero counts as +1); odd activations make a flipped unit an exact symmetry."""
    cols = assignment(np.abs(c) if signed else c)
    if not signed:
        return cols, None
    s = np.sign(c[np.arange(len(c)), cols])
    return cols, np.where(s == 0, 1.0, s)
