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

Line search. Along the Frank-Wolfe segment every U_m is a polynomial in t of degree k (k = the
number of permuted axes of the parameter), so f(t) is a polynomial of degree 2k; we interpolate it
exactly at 2k+1 points and take its maximum on [0, 1] (roots of the derivative plus endpoints).

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

from methods.assignment import assignment
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
    magnitude = np.abs(score) if signed else score
    cols = assignment(magnitude)  # ties (duplicated units, flat objectives) -> identity
    rows = np.arange(len(cols))
    signs = np.where(score[rows, cols] < 0, -1.0, 1.0) if signed else np.ones(len(rows))
    return cols, signs


def _vertex(g: torch.Tensor, signed: bool) -> torch.Tensor:
    """Batched linear maximisation oracle: [N, n, n] gradient -> [N, n, n] (signed) permutation matrices."""
    out = torch.zeros_like(g)
    for m in range(g.shape[0]):
        cols, signs = _lap(g[m].numpy(), signed)
        out[m, torch.arange(g.shape[1]), torch.from_numpy(cols)] = torch.from_numpy(signs).to(g)
    return out


def _best_step(f_at, degree: int, f0: float) -> float:
    """argmax over t in [0, 1] of the polynomial f(t) (degree `degree`), interpolated exactly."""
    nodes = 0.5 * (1 - np.cos(np.pi * np.arange(degree + 1) / degree))  # Chebyshev-Lobatto, includes 0, 1
    values = np.array([f0] + [f_at(t) for t in nodes[1:]])
    poly = np.polynomial.Polynomial.fit(nodes, values, degree, domain=[0, 1])
    candidates = [0.0, 1.0] + [r.real for r in poly.deriv().roots() if abs(r.imag) < 1e-9 and 0 < r.real < 1]
    scores = [poly(t) for t in candidates]
    top = max(scores)
    # Ties (up to rounding): take the longest step. On a flat objective (all-zero networks) t = 0 kept the
    # noisy barycentre start forever, which rounded to a random permutation instead of the vertex (identity).
    return float(max(t for t, v in zip(candidates, scores, strict=True)
                     if v >= top - 1e-12 * max(abs(top), abs(f0))))


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
    # f along a Frank-Wolfe segment is a polynomial of degree 2 * (most permuted axes of one parameter)
    degree = 2 * max(sum(p is not None for p in ps) for ps in space.axes.values())

    f = _objective(space, W, P)
    stalled, it = 0, 0
    for it in range(1, max_iter + 1):
        grads = _gradients(space, W, P)
        vertices = {p: _vertex(g, p in sign_perms) for p, g in grads.items()}
        if anchor:
            for p in vertices:
                vertices[p][0] = P[p][0]
        direction = {p: vertices[p] - P[p] for p in P}

        def f_at(t, P=P, direction=direction):
            return _objective(space, W, {p: P[p] + t * direction[p] for p in P})

        t = _best_step(f_at, degree, f)
        P = {p: P[p] + t * direction[p] for p in P}
        f_new = _objective(space, W, P)
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
