"""The `combine` protocol: mode-combinability probes on aligned pairs (Csiszarik et al.).

A pair (A, B) is aligned once by the method (A' = the reference, B' = B brought into A's
basin); every probe then evaluates element-wise combinations

    theta_v = A' + v * (B' - A')          (v = 0: A', v = 1: B'; one coefficient per weight)

batched through the task, at `lambdas` values of the probe's parameter (its grid), drawing
`samples` coefficient vectors per value for the random probes:

- `line`:        v = l (the plain linear path), l in [0, 1];
- `uniform`:     v ~ U[0.5 - s, 0.5 + s]^d, s in [0, 0.5];
- `subcube`:     v ~ U[0, 2l]^d for l <= 1/2, U[2l - 1, 1]^d above: sub-cubes sliding from A' to B';
- `hyperplane`:  v_i i.i.d. truncated exponential on [0, 1] with mean alpha: its density is constant
  on every hyperplane mean(v) = const, so it approximates the uniform law on mean(v) = alpha
  (alpha in [0, 1]; the rate solves E[v] = alpha);
- `bernoulli`:   v_i ~ Bernoulli(p), vertices of the cube, p in [0, 1];
- `stitch`:      A' for the first l layers, B' after (identity stitching), l = 0..L;
- `minmax`:      per weight the smaller-magnitude value ('Min') and the larger one ('Max'), then the
  line Min -> Max;
- `extrapolate`: v = l for l in [-1, 2] (steps of 1/4);
- `robustness`:  the fraction f of matched pairs of every hidden layer whose activations correlate
  least are re-matched by a random derangement, then the line A' -> B'' at 5 points (the grid is f);
- `transitivity`: a triple (A, B, C): B and C both aligned to A, then the line B' -> C'.

Each probe of a pair is one unit and one row. Its empirical barrier is the worst loss over all of
its samples minus the endpoints' mean loss (scores: the endpoints' mean minus the worst score);
`grid` holds the probe's parameter values and `grid_<metric>` the worst value at each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from bench.evaluation.repair import recount_statistics
from bench.protocols.base import Metric, Option, Protocol, Unit, info_columns, register
from zoos.space import Params, WeightSpace
from zoos.symmetry import apply_perms, select, stack
from zoos.tasks import draw_groups, target, targets
from zoos.zoo import Zoo

RANDOM_PROBES = ("uniform", "subcube", "hyperplane", "bernoulli")
STACK_PROBES = ("stitch", "robustness")  # read the network layer by layer: not on graph spaces
PAIR_PROBES = ("line", *RANDOM_PROBES, "stitch", "minmax", "extrapolate", "robustness")
PROBES = (*PAIR_PROBES, "transitivity")


# ---- samplers of the coefficient vectors v (pure functions, tested on their laws) ----------------
def uniform_coeffs(n: int, d: int, s: float, gen: torch.Generator) -> torch.Tensor:
    """[n, d] i.i.d. U[0.5 - s, 0.5 + s]."""
    return 0.5 - s + 2 * s * torch.rand(n, d, generator=gen, dtype=torch.float64)


def subcube_coeffs(n: int, d: int, lam: float, gen: torch.Generator) -> torch.Tensor:
    """[n, d] i.i.d. U[0, 2 lam] (lam <= 1/2) or U[2 lam - 1, 1] (lam > 1/2): lam = 0 is A, 1 is B."""
    lo, hi = (0.0, 2 * lam) if lam <= 0.5 else (2 * lam - 1, 1.0)
    return lo + (hi - lo) * torch.rand(n, d, generator=gen, dtype=torch.float64)


def trunc_exp_mean(rate: float) -> float:
    """Mean of the density proportional to exp(rate x) on [0, 1]."""
    if abs(rate) < 1e-6:
        return 0.5 + rate / 12
    return 1 / -math.expm1(-rate) - 1 / rate  # = e^r / (e^r - 1) - 1/r, stable for either sign


def trunc_exp_rate(alpha: float) -> float:
    """The rate whose truncated exponential on [0, 1] has mean alpha (0 < alpha < 1)."""
    from scipy.optimize import brentq

    if not 0 < alpha < 1:
        raise ValueError(f"truncated exponential: mean {alpha} not in (0, 1)")
    if abs(alpha - 0.5) < 1e-12:
        return 0.0
    # mean(r) rises from 0 to 1; mean(+-r) ~ 1/2 +- (1/2 - 1/r) for large r brackets any alpha
    bound = max(50.0, 4 / min(alpha, 1 - alpha))
    return brentq(lambda r: trunc_exp_mean(r) - alpha, -bound, bound, xtol=1e-12, rtol=1e-12)


def trunc_exp_coeffs(n: int, d: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """[n, d] i.i.d. truncated exponential on [0, 1] with mean alpha (inverse-CDF sampling).

    alpha = 0 or 1 are the point masses A and B (the limits of the family)."""
    if alpha <= 0 or alpha >= 1:
        return torch.full((n, d), float(min(max(alpha, 0.0), 1.0)), dtype=torch.float64)
    rate = trunc_exp_rate(alpha)
    u = torch.rand(n, d, generator=gen, dtype=torch.float64)
    if rate == 0:
        return u
    if rate > 0:  # F^-1(u) = 1 + log(u + (1 - u) e^-r) / r: no overflow for large r
        return (1 + torch.log(u + (1 - u) * math.exp(-rate)) / rate).clamp(0, 1)
    return (torch.log1p(u * math.expm1(rate)) / rate).clamp(0, 1)


def bernoulli_coeffs(n: int, d: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """[n, d] i.i.d. Bernoulli(p) in {0, 1}."""
    return (torch.rand(n, d, generator=gen, dtype=torch.float64) < p).double()


def derangement(k: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of range(k) without fixed points (identity for k < 2)."""
    if k < 2:
        return torch.arange(k)
    while True:  # rejection: a random permutation is a derangement with probability ~1/e
        perm = torch.randperm(k, generator=gen)
        if not (perm == torch.arange(k)).any():
            return perm


# ---- combinations -----------------------------------------------------------------------------
def combine(space: WeightSpace, a: Params, b: Params, v: torch.Tensor) -> Params:
    """theta = a + v * (b - a) for coefficient vectors v [n, d] (flat, in `space.shapes()` order);
    a and b hold one network each. Returns n networks."""
    fa, fb = space.flatten(a).double(), space.flatten(b).double()
    return {k: t.float() for k, t in space.unflatten(fa + v * (fb - fa)).items()}


def line(a: Params, b: Params, lambdas) -> Params:
    lam = torch.as_tensor(lambdas, dtype=torch.float64)
    return {k: (a[k].double() + lam.reshape(-1, *[1] * (a[k].dim() - 1)) * (b[k] - a[k]).double()).float()
            for k in a}


def stitch_coeffs(space: WeightSpace, n_from_a: int) -> torch.Tensor:
    """[1, d] coefficients: 0 (A) on the parameters of the first n_from_a layers, 1 (B) after."""
    parts = [torch.full((math.prod(s),), 0.0 if _layer_index(space, k) < n_from_a else 1.0, dtype=torch.float64)
             for k, s in space.shapes().items()]
    return torch.cat(parts)[None]


def _layer_index(space: WeightSpace, name: str) -> int:
    return next(i for i, layer in enumerate(space.layers) if name in (layer.weight, layer.bias))


def min_max(a: Params, b: Params) -> tuple[Params, Params]:
    """Per weight the value of smaller magnitude ('Min') and of larger magnitude ('Max')."""
    smaller = {k: a[k].abs() <= b[k].abs() for k in a}
    return ({k: torch.where(smaller[k], a[k], b[k]) for k in a},
            {k: torch.where(smaller[k], b[k], a[k]) for k in a})


def hidden_activations(space: WeightSpace, params: Params, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """perm -> activations of the hidden layer it permutes, [N, samples, units] (conv positions count
    as samples), from one forward pass (`WeightSpace.hidden`)."""
    out = {}
    for layer, h in space.hidden(params, x):
        perm = space.axes[layer.weight][0]
        if perm is not None:
            out[perm] = h.movedim(2, -1).flatten(1, 3) if h.dim() == 5 else h  # [N, B, C, H, W] -> [N, B*H*W, C]
    return out


def matched_correlations(space: WeightSpace, a: Params, b: Params, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """perm -> Pearson correlation of the activations of A's unit i and B's unit i (the matched pairs).
    A constant unit (dead ReLU) has no correlation: it counts as 0."""
    acts_a, acts_b = hidden_activations(space, a, x), hidden_activations(space, b, x)
    out = {}
    for p in acts_a:
        ha, hb = acts_a[p][0].double(), acts_b[p][0].double()
        ha, hb = ha - ha.mean(0), hb - hb.mean(0)
        corr = (ha * hb).sum(0) / (ha.norm(dim=0) * hb.norm(dim=0))
        out[p] = torch.nan_to_num(corr, nan=0.0)
    return out


def rematch(space: WeightSpace, b: Params, correlations: dict[str, torch.Tensor], fraction: float,
            gen: torch.Generator) -> Params:
    """B with, in every hidden layer, its round(fraction * n) least-correlated units deranged among
    themselves (a function-preserving permutation of B that breaks those matches)."""
    perms = {}
    for p, corr in correlations.items():
        n = len(corr)
        k = round(fraction * n)
        chosen = torch.argsort(corr, stable=True)[:k]
        q = torch.arange(n)
        q[chosen] = chosen[derangement(k, gen)]
        perms[p] = q[None]
    return apply_perms(space, b, perms)


# ---- the protocol -----------------------------------------------------------------------------
def _width(space: WeightSpace) -> int:
    return max(space.perm_sizes.values()) if space.perm_sizes else 0


@register
@dataclass
class Combine(Protocol):
    name = "combine"
    metrics = (Metric("loss_barrier", "empirical loss barrier", role="rank"),
               Metric("acc_barrier", "empirical acc barrier"), Metric("psnr_barrier", "empirical PSNR barrier"),
               Metric("loss_endpoints", "loss of the endpoints", role="diagnostic"),
               Metric("acc_endpoints", "acc of the endpoints", True, role="diagnostic"),
               Metric("psnr_endpoints", "PSNR of the endpoints", True, role="diagnostic"),
               Metric("align_s", "align s", role="runtime"))
    sections = ("probe",)
    options = {"n_pairs": Option("int", 0, 100_000), "n_triples": Option("int", 0, 100_000),
               "samples": Option("int", 1, 1000), "probes": Option("choice", choices=PROBES, many=True),
               "fractions": Option("float", 0.0, 1.0, many=True), "n_inputs": Option("int", 1, 100_000)}
    lambdas: int = 11  # values of each probe's parameter
    n_pairs: int = 4
    n_triples: int = 2
    samples: int = 2  # coefficient vectors per parameter value (random probes)
    probes: tuple[str, ...] = PROBES
    fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # robustness: share of units re-matched
    n_inputs: int = 256  # inputs for the robustness probe's activation correlations

    def __post_init__(self):
        super().__post_init__()
        unknown = set(self.probes) - set(PROBES)
        if unknown:
            raise ValueError(f"combine: unknown probe(s) {', '.join(sorted(unknown))} (known: {', '.join(PROBES)})")
        self._aligned: dict = {}  # (method, nets) -> (aligned networks, align seconds, method info)

    def _pair_probes(self, zoo: Zoo) -> list[str]:
        return [p for p in self.probes if p in PAIR_PROBES and (zoo.space.stacked or p not in STACK_PROBES)]

    def gaps(self, zoo: Zoo) -> list[str]:
        missing = [p for p in self.probes if p in STACK_PROBES and p not in self._pair_probes(zoo)]
        why = [f"probes {', '.join(missing)}: they read a stack of layers, {zoo.space.name} is a graph"] if missing \
            else []
        return super().gaps(zoo) + why

    def units(self, zoo: Zoo) -> list[Unit]:
        units = []
        pair_probes = self._pair_probes(zoo)
        for a, b in draw_groups(zoo, self.split, 2, self.n_pairs, self.seed) if pair_probes else []:
            units += [Unit(f"pair={a}-{b} probe={p}", (a, b), probe=p) for p in pair_probes]
        if "transitivity" in self.probes:
            for a, b, c in draw_groups(zoo, self.split, 3, self.n_triples, self.seed + 1):
                units.append(Unit(f"triple={a}-{b}-{c} probe=transitivity", (a, b, c), probe="transitivity"))
        return units

    def _align(self, method, zoo: Zoo, nets: tuple[int, ...]):
        """(A', others' [len(nets) - 1], seconds, info), once per method and networks."""
        # keyed by the method object, not id(method): the key keeps it alive, so a method created after
        # another was freed cannot reuse its id and be handed the other's alignment (seen: naive getting
        # git-rebasin's aligned copies, a zero barrier, one run in four)
        key = (method, nets)
        if key not in self._aligned:
            ref, others = select(zoo.params, nets[0]), select(zoo.params, list(nets[1:]))
            start = time.perf_counter()
            out = method.align(ref, others, target(zoo, nets[0]))
            self._aligned[key] = (out.ref, out.others, time.perf_counter() - start, info_columns(out.info))
        return self._aligned[key]

    def _probe(self, probe: str, space: WeightSpace, a: Params, b: Params, gen: torch.Generator, task
               ) -> tuple[list[float], list[Params]]:
        """The probe's grid and, per grid value, the networks to evaluate."""
        k, n, d = self.lambdas, self.samples, space.n_params
        unit = torch.linspace(0, 1, k).tolist()
        if probe in ("line", "transitivity"):
            return unit, [line(a, b, [x]) for x in unit]
        if probe == "extrapolate":  # steps of 1/4: 0 and 1 are on the grid
            grid = torch.linspace(-1, 2, 13).tolist()
            return grid, [line(a, b, [x]) for x in grid]
        if probe == "uniform":
            grid = torch.linspace(0, 0.5, k).tolist()
            return grid, [combine(space, a, b, uniform_coeffs(n, d, s, gen)) for s in grid]
        if probe == "subcube":
            return unit, [combine(space, a, b, subcube_coeffs(n, d, x, gen)) for x in unit]
        if probe == "hyperplane":
            return unit, [combine(space, a, b, trunc_exp_coeffs(n, d, x, gen)) for x in unit]
        if probe == "bernoulli":
            return unit, [combine(space, a, b, bernoulli_coeffs(n, d, x, gen)) for x in unit]
        if probe == "stitch":
            grid = list(range(len(space.layers) + 1))  # layers taken from A
            return [float(x) for x in grid], [combine(space, a, b, stitch_coeffs(space, x)) for x in grid]
        if probe == "minmax":
            lo, hi = min_max(a, b)
            return unit, [line(lo, hi, [x]) for x in unit]
        if probe == "robustness":
            x = task.input_sample(self.n_inputs)
            corr = matched_correlations(space, a, b, x)
            path = torch.linspace(0, 1, 5).tolist()  # barriers of these pairs peak mid-way: 5 points suffice
            return list(self.fractions), [line(a, rematch(space, b, corr, f, gen), path) for f in self.fractions]
        raise ValueError(f"combine: unknown probe {probe!r}")

    def run(self, method, zoo: Zoo, task, units: list[Unit]) -> list[dict]:
        space, width = zoo.space, _width(zoo.space)
        plans = []
        for unit in units:
            nets, probe = unit.nets, unit.probe
            ref, others, seconds, info = self._align(method, zoo, nets)
            a, b = (select(others, 0), select(others, 1)) if probe == "transitivity" else (ref, select(others, 0))
            grid, batches = self._probe(probe, space, a, b, torch.Generator().manual_seed(unit.seed), task)
            plans.append((unit, nets, probe, seconds, info, grid, [stack([a, b])] + batches))
        # one batched evaluation of every network of every unit
        nets_all = stack([net for plan in plans for net in plan[6]])
        sizes = [sum(next(iter(x.values())).shape[0] for x in plan[6]) for plan in plans]
        first = targets(zoo, [plan[1][0] for plan in plans])  # every network of a unit shares its target
        tgt = None if first is None else torch.cat([torch.full((s,), int(t), dtype=torch.long)
                                                    for s, t in zip(sizes, first, strict=True)])
        scores = task.evaluate(recount_statistics(task, nets_all), tgt)
        rows, offset = [], 0
        for unit, nets, probe, seconds, info, grid, batches in plans:
            row = {"unit": unit.name, "a": nets[0], "b": nets[1], "c": nets[2] if len(nets) > 2 else None,
                   "probe": probe, "width": width, "align_s": seconds, "n_samples": 0, "grid": grid, **info}
            for metric, values in scores.items():
                hib = task.higher_is_better[metric]
                worst = max if not hib else min
                chunks, pos = [], offset
                for batch in batches:
                    m = next(iter(batch.values())).shape[0]
                    chunks.append(values[pos : pos + m])
                    pos += m
                ends, samples = chunks[0], chunks[1:]
                per_grid = [float(worst(c.tolist())) for c in samples]
                mean_ends = float(ends.mean())
                row[f"grid_{metric}"] = per_grid
                row[f"{metric}_endpoints"] = mean_ends
                extreme = worst(per_grid)
                row[f"{metric}_barrier"] = extreme - mean_ends if not hib else mean_ends - extreme
                row["n_samples"] = pos - offset - 2
            offset += sum(next(iter(b.values())).shape[0] for b in batches)
            rows.append(row)
        return rows


__all__ = ["Combine", "PROBES", "combine", "uniform_coeffs", "subcube_coeffs", "trunc_exp_coeffs", "trunc_exp_mean",
           "trunc_exp_rate", "bernoulli_coeffs", "derangement", "stitch_coeffs", "min_max", "rematch",
           "matched_correlations"]
