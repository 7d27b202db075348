"""C2M3: cycle-consistent multi-model matching (Crisostomi et al., NeurIPS 2024), generic over the space.

Every model m gets, for each hidden-unit permutation p, a matrix `P_m^p` [n_model, n_universe]
mapping a shared "universe" to the model. The pairwise map a <- b is `P_a P_b^T`, so composing
maps around any cycle gives the identity by construction. The matrices are relaxed to the
Birkhoff polytope (doubly stochastic) and the objective

    f = sum_{a<b} sum_params <W_a, (P_a P_b^T) . W_b>   (applied on every permuted axis)

is maximised by Frank-Wolfe: gradient per P_m^p, linear step = LAP on the gradient, one global
step size t in [0, 1], `P <- (1-t) P + t Pi`; finally each P is rounded by a LAP.

Cost. Since every P is applied on both sides, `<W_a, P_a P_b^T . W_b> = <U_a, U_b>` with
`U_m = P_m^T . W_m` the model expressed in the universe. With `S = sum_m U_m`,
`f = (||S||^2 - sum_m ||U_m||^2) / 2` and the gradient for model m only needs `S - U_m`, so one
iteration costs O(N) model transforms instead of O(N^2) pairs. All models are processed as one
batch (the leading network axis).

Line search and updates without products. A Frank-Wolfe step moves every P towards a vertex, a
(signed) permutation, and contracting with a permutation is a gather. A parameter carries at most
two permuted axes, so along the segment U_m(t) = U + t U1 + t^2 U2, where U1 and U2 are gathers of
U, of the one-sided transforms A (universe on the first permuted axis only) and B (on the second
only) and of W. f(t) is then an exact degree-4 polynomial from inner products, maximised on [0, 1]
(roots of the derivative plus endpoints), and after the step U, A and B are updated by the same
gathers. The only O(n^3) work left per iteration is the gradient (two products per weight) and
the assignments; with the anchor (below) model 0 needs neither.

Gauge (`anchor`, default on; off = the paper's algorithm). The objective only sees products
`P_a P_b^T`, so the universe is defined up to a common permutation. Left free, all models move
at once and Frank-Wolfe zigzags: with N = 2 it never recovered a planted permutation in our
checks (200 iterations without converging) and N >= 3 failed on a few seeds. Anchoring model 0
at the identity (universe = model 0's frame) removes the degeneracy without changing the set of
hard solutions; it recovered every planted case and usually reached a higher objective on random nets.

Signed variant (`signed=True`, permutations whose group is "sign", i.e. odd activations): the
relaxation is the convex hull of signed permutation matrices; the linear step solves the LAP on
|G| and gives each matched pair the sign of G, and rounding does the same on P.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from methods.assignment import signed_assignment
from methods.base import Aligner, Alignment, Hyper, Merged
from methods.weight_matching import apply_matching, as_element
from zoos.space import Params, WeightSpace
from zoos.symmetry import select, stack, stack_elements

Perms = dict[str, torch.Tensor]


@dataclass
class C2M3Result:
    perms: list[Perms]  # per model: perm -> [n] indices; model m in the universe = apply_matching(m, perms, signs)
    signs: list[Perms]  # per model: perm -> [n] +-1 (empty dicts unless signed)
    objective: float  # relaxed objective at the end of Frank-Wolfe
    objective_hard: float  # objective of the rounded permutations
    iterations: int
    seconds: float


def _contract(t: torch.Tensor, axis: int, m: torch.Tensor) -> torch.Tensor:
    """Batched change of basis of parameter axis `axis` (tensor axis axis+1): new[u] = sum_i m[i, u] t[i]."""
    t = t.movedim(axis + 1, -1)
    shape = t.shape
    out = torch.bmm(t.reshape(shape[0], -1, shape[-1]), m)
    return out.reshape(*shape[:-1], m.shape[-1]).movedim(-1, axis + 1)


def _to_universe(space: WeightSpace, name: str, w: torch.Tensor, P: dict, skip: int = -1) -> torch.Tensor:
    """Parameter `name` of all models with every permuted axis but `skip` mapped into the universe."""
    for axis, p in enumerate(space.axes[name]):
        if p is not None and axis != skip:
            w = _contract(w, axis, P[p])
    return w


def _objective(space: WeightSpace, W: Params, P: dict) -> float:
    """sum_{a<b} <U_a, U_b> = (||S||^2 - sum_m ||U_m||^2) / 2, summed over parameters."""
    total = 0.0
    for name in space.axes:
        u = _to_universe(space, name, W[name], P)
        total += 0.5 * ((u.sum(0) ** 2).sum() - (u**2).sum()).item()
    return total


def _gradients(space: WeightSpace, W: Params, P: dict) -> dict[str, torch.Tensor]:
    """d f / d P_m^p for all models at once: [N, n_model, n_universe] per permutation."""
    grads = {p: torch.zeros_like(v) for p, v in P.items()}
    for name, ps in space.axes.items():
        if all(p is None for p in ps):
            continue
        u = _to_universe(space, name, W[name], P)
        rest = u.sum(0, keepdim=True) - u  # S - U_m: the other models, in the universe
        for axis, p in enumerate(ps):
            if p is None:
                continue
            v = _to_universe(space, name, W[name], P, skip=axis)  # model frame on `axis` only
            n = v.shape[0]
            v = v.movedim(axis + 1, 1).reshape(n, v.shape[axis + 1], -1)
            r = rest.movedim(axis + 1, 1).reshape(n, rest.shape[axis + 1], -1)
            grads[p] += torch.bmm(v, r.transpose(1, 2))
    return grads


def _lap(score: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vertex maximising <score, Pi>: a (signed) permutation; returns column per row and sign per row."""
    cols, signs = signed_assignment(score, signed)  # ties (duplicated units, flat objectives) -> identity
    return cols, np.ones(len(cols)) if signs is None else signs


def _best_step(poly: np.polynomial.Polynomial, f0: float) -> float:
    """argmax over t in [0, 1] of the polynomial f(t)."""
    # leading coefficients at rounding level (e.g. 1e-33 where f is quadratic) make the derivative's
    # roots ill-conditioned: the genuine root in (0, 1) came back complex
    poly = poly.trim(1e-13 * max(np.abs(poly.coef).max(), 1e-300))
    candidates = [0.0, 1.0] + [r.real for r in poly.deriv().roots() if abs(r.imag) < 1e-9 and 0 < r.real < 1]
    scores = [poly(t) for t in candidates]
    top = max(scores)
    # Ties (up to rounding): take the longest step. On a flat objective (all-zero networks) t = 0 kept the
    # noisy barycentre start forever, which rounded to a random permutation instead of the vertex (identity).
    return float(max(t for t, v in zip(candidates, scores, strict=True)
                     if v >= top - 1e-12 * max(abs(top), abs(f0))))


def _gather(t: torch.Tensor, axis: int, cols: torch.Tensor, signs: torch.Tensor | None) -> torch.Tensor:
    """`_contract` with a (signed) permutation per model (row i -> column cols[m, i], sign signs[m, i]): a gather."""
    out = torch.empty_like(t)
    shape = [1] * (t.dim() - 1)
    shape[axis] = -1
    for m in range(t.shape[0]):
        inv = torch.argsort(cols[m])  # universe unit u <- model unit inv[u]
        torch.index_select(t[m], axis, inv, out=out[m])
        if signs is not None:
            out[m] *= signs[m][inv].reshape(shape)
    return out


def _sq_poly(x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> np.ndarray:
    """Coefficients (t^0..t^4) of ||x0 + t x1 + t^2 x2||^2."""
    def dot(u, v):
        return float(torch.dot(u.reshape(-1), v.reshape(-1)))
    return np.array([dot(x0, x0), 2 * dot(x0, x1), dot(x1, x1) + 2 * dot(x0, x2), 2 * dot(x1, x2), dot(x2, x2)])


class _Frames:
    """Every model's parameters in the universe (U), and for two-axis parameters the one-sided
    transforms A and B, kept exact along Frank-Wolfe steps by gathers (module docstring)."""

    def __init__(self, space: WeightSpace, W: Params, P: dict, first: int):
        self.W, self.first = W, first  # models before `first` are anchored: no gradient, no step
        self.axes = {name: [(ax, p) for ax, p in enumerate(ps) if p is not None] for name, ps in space.axes.items()}
        for name, axes in self.axes.items():
            if len(axes) > 2:
                raise ValueError(f"c2m3: parameter {name} carries {len(axes)} permuted axes (at most 2 supported)")
        self.U, self.A, self.B = {}, {}, {}
        for name, axes in self.axes.items():
            w = W[name]
            if len(axes) == 2:
                (a0, p), (a1, q) = axes
                self.A[name], self.B[name] = _contract(w, a0, P[p]), _contract(w, a1, P[q])
                self.U[name] = _contract(self.A[name], a1, P[q])
            else:
                self.U[name] = _to_universe(space, name, w, P)

    def objective(self) -> float:
        return sum(0.5 * float((u.sum(0) ** 2).sum() - (u**2).sum()) for u in self.U.values())

    def gradients(self, sizes: dict) -> dict[str, torch.Tensor]:
        """d f / d P_m^p of the unanchored models: [N - first, n, n] per permutation."""
        f = self.first
        grads = {p: 0.0 for p in sizes}
        for name, axes in self.axes.items():
            if not axes:
                continue
            u = self.U[name]
            rest = (u.sum(0, keepdim=True) - u)[f:]  # S - U_m: the other models, in the universe
            for i, (axis, p) in enumerate(axes):
                # the parameter in the model's frame on `axis`, in the universe on its other axis
                v = (self.W[name] if len(axes) == 1 else (self.B, self.A)[i][name])[f:]
                n = v.shape[0]
                v = v.movedim(axis + 1, 1).reshape(n, v.shape[axis + 1], -1)
                r = rest.movedim(axis + 1, 1).reshape(n, rest.shape[axis + 1], -1)
                grads[p] = grads[p] + torch.bmm(v, r.transpose(1, 2))
        return grads

    def segment(self, vertices: dict) -> tuple[np.polynomial.Polynomial, dict]:
        """f along the step towards `vertices` ({p: (cols [N, n], signs [N, n])}, anchored models
        at their own identity), and the per-parameter changes that `step` applies."""
        coef, moves = np.zeros(5), {}
        for name, axes in self.axes.items():
            u = self.U[name]
            if not axes:
                u1 = u2 = torch.zeros_like(u)
            elif len(axes) == 1:
                (a0, p), = axes
                u1, u2 = _gather(self.W[name], a0, *vertices[p]) - u, torch.zeros_like(u)
                moves[name] = (u1, u2, None, None)
            else:
                (a0, p), (a1, q) = axes
                w, a, b = self.W[name], self.A[name], self.B[name]
                gpb, gqa, gpw = _gather(b, a0, *vertices[p]), _gather(a, a1, *vertices[q]), _gather(w, a0, *vertices[p])
                u1 = (gpb + gqa).sub_(u, alpha=2)
                u2 = _gather(gpw, a1, *vertices[q]).sub_(gpb).sub_(gqa).add_(u)
                moves[name] = (u1, u2, gpw - a, _gather(w, a1, *vertices[q]) - b)
            coef += 0.5 * (_sq_poly(u.sum(0), u1.sum(0), u2.sum(0)) - _sq_poly(u, u1, u2))
        return np.polynomial.Polynomial(coef), moves

    def step(self, t: float, moves: dict) -> None:
        f = self.first
        for name, (u1, u2, da, db) in moves.items():
            self.U[name][f:].add_(u1[f:], alpha=t).add_(u2[f:], alpha=t * t)
            if da is not None:
                self.A[name][f:].add_(da[f:], alpha=t)
                self.B[name][f:].add_(db[f:], alpha=t)


def _sinkhorn(m: torch.Tensor, iters: int = 100) -> torch.Tensor:
    for _ in range(iters):
        m = m / m.sum(-1, keepdim=True)
        m = m / m.sum(-2, keepdim=True)
    return m


def c2m3(space: WeightSpace, models: Params, *, init: str = "barycentre", max_iter: int = 200, tol: float = 1e-6,
         patience: int = 5, signed: bool = False, anchor: bool = True, seed: int = 0) -> C2M3Result:
    """Match N >= 2 networks (leading axis N) to a universe; returns hard permutations per model."""
    start = time.perf_counter()
    n = next(iter(models.values())).shape[0]
    if n < 2:
        raise ValueError(f"c2m3 needs at least 2 models, got {n}")
    W = {k: v.detach().double() for k, v in models.items()}
    if not space.perm_sizes:  # nothing to permute: every model already sits in the universe
        f = _objective(space, W, {})
        return C2M3Result([{} for _ in range(n)], [{} for _ in range(n)], f, f, 0, time.perf_counter() - start)
    sign_perms = {p for p in space.perm_sizes if signed and space.groups[p] == "sign"}
    generator = torch.Generator().manual_seed(seed)
    P = {}
    for p, size in space.perm_sizes.items():
        if init == "identity":
            P[p] = torch.eye(size, dtype=torch.float64).expand(n, size, size).clone()
        elif init == "barycentre":
            # near the centre of the Birkhoff polytope; the noise breaks the symmetry of the exact centre
            noise = torch.rand(n, size, size, generator=generator, dtype=torch.float64)
            P[p] = _sinkhorn(1.0 / size + 1e-3 * noise)
            if p in sign_perms and anchor:
                # the centre of the signed polytope is 0; the anchor keeps the gradient non-zero there
                P[p] = 1e-3 * (2 * noise - 1) / size
        else:
            raise ValueError(f"c2m3: unknown init {init!r} (identity | barycentre)")
        if anchor:
            P[p][0] = torch.eye(size, dtype=torch.float64)
    first = 1 if anchor else 0
    frames = _Frames(space, W, P, first)
    f = frames.objective()
    stalled, it = 0, 0
    for it in range(1, max_iter + 1):
        grads = frames.gradients(space.perm_sizes)
        vertices = {}
        for p, g in grads.items():
            size = space.perm_sizes[p]
            laps = [_lap(g[m].numpy(), p in sign_perms) for m in range(g.shape[0])]
            anchored = [(np.arange(size), np.ones(size))] * first  # anchored models step to themselves
            cols, signs = (torch.from_numpy(np.stack(x)) for x in zip(*(anchored + laps), strict=True))
            vertices[p] = (cols, signs if p in sign_perms else None)
        poly, moves = frames.segment(vertices)
        t = _best_step(poly, f)
        frames.step(t, moves)
        for p, (cols, s) in vertices.items():  # P <- (1 - t) P + t vertex, anchored models untouched
            P[p][first:] *= 1 - t
            for m in range(first, len(cols)):
                P[p][m, torch.arange(len(cols[m])), cols[m]] += t * (1.0 if s is None else s[m])
        f_new = float(poly(t))
        # relative: f scales with the weights squared, so an absolute tol stopped after `patience` steps
        # for weights ~1e-6 (f ~1e-12) and never for weights ~1e6 (f ~1e12, rounding above tol)
        stalled = stalled + 1 if f_new - f <= tol * abs(f) else 0
        f = f_new
        if stalled >= patience:
            break

    # round every soft matrix to the nearest (signed) permutation; rows = model units, cols = universe units
    perms: list[Perms] = [{} for _ in range(n)]
    signs: list[Perms] = [{} for _ in range(n)]
    hard = {p: torch.zeros_like(v) for p, v in P.items()}
    for p, mats in P.items():
        for m in range(n):
            cols, s = _lap(mats[m].numpy(), p in sign_perms)
            hard[p][m, np.arange(len(cols)), cols] = torch.from_numpy(s)
            order = np.argsort(cols)  # universe unit u <- model unit order[u]
            perms[m][p] = torch.from_numpy(order).long()
            if p in sign_perms:
                signs[m][p] = torch.from_numpy(s[order]).float()
    return C2M3Result(perms, signs, f, _objective(space, W, hard), it, time.perf_counter() - start)


def universe_perms(space: WeightSpace, models: Params, **kwargs) -> list[Perms]:
    """Hard permutations of each model into the universe (unsigned runs): model m in the universe is
    `apply_matching(space, select(models, m), perms[m], {})`."""
    return c2m3(space, models, **kwargs).perms


def pairwise(perms: list[Perms], signs: list[Perms], a: int, b: int) -> tuple[Perms, Perms]:
    """The map a <- b (model b into a's frame) composed through the universe: P_a P_b^T.

    Model b in the universe is unit u = s_b[u] * b[perm_b[u]]; leaving it through a's inverse gives
    unit i = s_a[j] s_b[j] * b[perm_b[j]] with j = perm_a^{-1}[i].
    """
    out_p, out_s = {}, {}
    for p, pa in perms[a].items():
        inv = torch.argsort(pa)
        out_p[p] = perms[b][p][inv]
        if p in signs[a] or p in signs[b]:
            s = signs[a].get(p, torch.ones(len(pa))) * signs[b].get(p, torch.ones(len(pa)))
            out_s[p] = s[inv]
    return out_p, out_s


def compose(outer: tuple[Perms, Perms], inner: tuple[Perms, Perms]) -> tuple[Perms, Perms]:
    """The map x <- z from outer = x <- y and inner = y <- z, each (perms, signs) as apply_matching takes them.

    Unit i in y's frame is s_in[i] z[inner[i]], so unit i in x's frame is s_out[i] s_in[outer[i]] z[inner[outer[i]]].
    """
    (po, so), (pi, si) = outer, inner
    perms = {p: pi[p][po[p]] for p in po}
    signs = {}
    for p in set(so) | set(si):
        ones = torch.ones(len(po[p]))
        signs[p] = so.get(p, ones) * si.get(p, ones)[po[p]]
    return perms, signs


def cycle_error(maps: list[tuple[Perms, Perms]]) -> float:
    """Fraction of hidden units not sent back to themselves (with sign +1) by a cycle of maps.

    `maps` are pairwise maps around a cycle in composition order, e.g. [a <- b, b <- c, c <- a].
    """
    total = maps[0]
    for m in maps[1:]:
        total = compose(total, m)
    perms, signs = total
    wrong = sum(int((v != torch.arange(len(v))).sum()) for v in perms.values())
    wrong += sum(int(((signs[p] < 0) & (perms[p] == torch.arange(len(perms[p])))).sum()) for p in signs)
    return wrong / sum(len(v) for v in perms.values())


def to_universe(space: WeightSpace, models: Params, perms: list[Perms], signs: list[Perms]) -> Params:
    """All models [N] expressed in the universe."""
    return stack([apply_matching(space, select(models, m), perms[m], signs[m]) for m in range(len(perms))])


class C2M3(Aligner):
    """`merge` averages in the universe; `align` maps each other model into ref's frame via P_ref P_m^T.

    Both return every model's map (into the universe for `merge`, into ref's frame for `align`).
    """

    name = "c2m3"
    display_name = "C2M3"
    description = "cycle-consistent Frank-Wolfe matching of N models to a shared universe"
    citation = 'Crisostomi et al., "C2M3: Cycle-Consistent Multi-Model Merging", NeurIPS 2024'
    arxiv = "2405.17897"
    multi_model = True
    search_space = {
        "max_iter": Hyper("int", 200, 1, 10000),
        "init": Hyper("cat", "barycentre", choices=("barycentre", "identity")),
        "anchor": Hyper("bool", True),
        "signed": Hyper("bool", False),
    }

    def _run(self, models: Params) -> tuple[C2M3Result, dict]:
        res = c2m3(self.space, models, init=self.hp["init"], max_iter=self.hp["max_iter"], anchor=self.hp["anchor"],
                   signed=self.hp["signed"], seed=self.seed)
        info = {"iterations": float(res.iterations), "objective": res.objective,
                "objective_hard": res.objective_hard, "fw_seconds": res.seconds}
        return res, info

    def merge(self, models, target=None) -> Merged:
        """The average taken in the universe; `frame` holds all N models there."""
        res, info = self._run(models)
        return universe_merge(self.space, models, res.perms, res.signs, info)

    def align(self, ref, others, target=None) -> Alignment:
        models = stack([ref, others])
        res, info = self._run(models)
        return pairwise_alignment(self.space, models, res.perms, res.signs, info)


def universe_merge(space: WeightSpace, models: Params, perms: list[Perms], signs: list[Perms], info: dict) -> Merged:
    """Every model moved into the universe by its own map, and their average."""
    frame = to_universe(space, models, perms, signs)
    transform = stack_elements([as_element(perms[m], signs[m]) for m in range(len(perms))])
    return Merged({k: v.mean(0, keepdim=True) for k, v in frame.items()}, frame, transform, info)


def pairwise_alignment(space: WeightSpace, models: Params, perms: list[Perms], signs: list[Perms],
                       info: dict) -> Alignment:
    """Models 1.. mapped into model 0's frame through the universe (model 0 is the reference)."""
    out, elements = [], []
    for m in range(1, len(perms)):
        p, s = pairwise(perms, signs, 0, m)
        out.append(apply_matching(space, select(models, m), p, s))
        elements.append(as_element(p, s))
    return Alignment(select(models, 0), stack(out), stack_elements(elements), None, info)
