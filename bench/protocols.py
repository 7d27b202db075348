"""Protocols: what is measured, independent of method and zoo.

A protocol cuts a zoo into independent units of work (a pair, an orbit copy...) and turns a
method's output on a batch of units into result rows. Units are named deterministically and
carry their own seed, so a resumed run redoes exactly the missing ones.

- `pairs`: independently trained networks (INRs: two fits of one image; CNNs: random pairs)
  aligned pairwise and interpolated.
- `orbit`: a network, a random group element (P, S or PS) and weight noise N(0, eps^2); the
  transformed copy is aligned back and interpolated. `recovered` says whether the method undid
  the planted element exactly (its output on the noisy copy equals its output on the noisy copy
  with the planted element undone).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import torch

from bench import evaluate
from zoos.symmetry import ACTIONS, add_noise, apply_perms, apply_scales, invert, random_action, select, stack
from zoos.zoo import Zoo


@dataclass(frozen=True)
class Unit:
    name: str  # stable identity inside the protocol, e.g. "pair=3-17"
    a: int  # reference network index
    b: int | None = None  # the other network (pairs)
    action: str | None = None  # orbit: P / S / PS
    eps: float | None = None  # orbit: weight noise

    @property
    def seed(self) -> int:
        return int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)


def _pick(indices: list[int], k: int, seed: int) -> list[int]:
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
    return [indices[i] for i in order[:k]]


@dataclass
class Protocol:
    name = "protocol"
    split: str = "test"
    lambdas: int = 25
    seed: int = 0

    def grid(self) -> torch.Tensor:
        return torch.linspace(0, 1, self.lambdas)

    def params(self) -> dict:
        """What identifies this protocol's rows besides the unit (part of the result key)."""
        return {k: v for k, v in self.__dict__.items()}

    def units(self, zoo: Zoo) -> list[Unit]:
        raise NotImplementedError

    def endpoints(self, method, zoo: Zoo, unit: Unit):
        """(ref', other', extra columns) for one unit, with the method's timing."""
        raise NotImplementedError

    def run(self, method, zoo: Zoo, task, units: list[Unit]) -> list[dict]:
        """Rows for a batch of units; alignment per unit, evaluation batched over all of them."""
        refs, others, originals, extras = [], [], [], []
        for unit in units:
            ref, other, original, extra = self.endpoints(method, zoo, unit)
            refs.append(ref)
            others.append(other)
            originals.append(original)
            extras.append(extra)
        refs, others, originals = stack(refs), stack(others), stack(originals)
        targets = _targets(zoo, [u.a for u in units])
        lambdas = self.grid()
        curve = evaluate.curves(task, refs, others, lambdas, targets)
        summary = evaluate.curve_summary(task, curve, lambdas)
        if method.exact:
            columns = {"deviation": evaluate.deviation(task, others, originals)}
        else:  # learned methods change the function: record what reconstruction cost
            before = task.evaluate(originals, targets)
            columns = {f"recon_{k}": curve[k][:, -1] - before[k] for k in before}
        rows = []
        for i, unit in enumerate(units):
            row = {"unit": unit.name, "a": unit.a, "b": unit.b, "lambdas": lambdas.tolist(), **extras[i]}
            row.update({f"curve_{k}": v[i].tolist() for k, v in curve.items()})
            row.update({k: float(v[i]) for k, v in {**summary, **columns}.items()})
            rows.append(row)
        return rows


def _targets(zoo: Zoo, indices: list[int]) -> torch.Tensor | None:
    if zoo.task.get("kind") != "inr":
        return None
    return torch.as_tensor(zoo.meta["target"].to_numpy()[indices], dtype=torch.long)


def _target(zoo: Zoo, index: int) -> int | None:
    return int(zoo.meta["target"].iloc[index]) if zoo.task.get("kind") == "inr" else None


def _timed_align(method, ref, other, target):
    start = time.perf_counter()
    ref_out, other_out = method.align_pair(ref, other, target)
    return ref_out, other_out, time.perf_counter() - start


@dataclass
class Pairs(Protocol):
    name = "pairs"
    n_pairs: int = 16

    def units(self, zoo: Zoo) -> list[Unit]:
        pool = zoo.indices(self.split) or zoo.indices()
        meta = zoo.meta
        if zoo.task.get("kind") == "inr" and "fit" in meta:
            # two independent fits of the same image
            by_image = meta.loc[pool].groupby("target").groups
            pairs = [(int(ix[0]), int(ix[1])) for _, ix in sorted(by_image.items()) if len(ix) >= 2]
            pairs = [pairs[i] for i in _pick(list(range(len(pairs))), self.n_pairs, self.seed)]
        else:
            shuffled = _pick(pool, len(pool), self.seed)
            pairs = list(zip(shuffled[0::2], shuffled[1::2], strict=False))[: self.n_pairs]
        return [Unit(f"pair={a}-{b}", a, b) for a, b in pairs]

    def endpoints(self, method, zoo, unit):
        ref, other = select(zoo.params, unit.a), select(zoo.params, unit.b)
        ref_out, other_out, seconds = _timed_align(method, ref, other, _target(zoo, unit.a))
        return ref_out, other_out, other, {"align_s": seconds, **_info(method)}


@dataclass
class Orbit(Protocol):
    name = "orbit"
    n_nets: int = 8
    actions: tuple[str, ...] = ACTIONS
    eps: tuple[float, ...] = (0.0, 1e-3, 1e-2, 5e-2)

    def units(self, zoo: Zoo) -> list[Unit]:
        nets = _pick(zoo.indices(self.split) or zoo.indices(), self.n_nets, self.seed)
        return [Unit(f"net={n} action={act} eps={eps:g}", n, None, act, float(eps))
                for n in nets for act in self.actions for eps in self.eps]

    def endpoints(self, method, zoo, unit):
        space = zoo.space
        gen = torch.Generator().manual_seed(unit.seed)
        ref = select(zoo.params, unit.a)
        moved, perms, scales = random_action(space, ref, unit.action, gen)
        moved = add_noise(moved, unit.eps, gen)
        target = _target(zoo, unit.a)
        ref_out, other_out, seconds = _timed_align(method, ref, moved, target)
        # the noisy copy with the planted element undone: g^-1 = S^-1 P^-1
        truth = apply_scales(space, apply_perms(space, moved, invert(perms)), {p: 1 / s for p, s in scales.items()})
        truth_out, other_again = (ref_out, other_out) if unit.eps == 0 else method.align_pair(truth, moved, target)
        num = sum(((other_again[k] - truth_out[k]) ** 2).sum() for k in truth_out)
        den = sum((truth_out[k] ** 2).sum() for k in truth_out)
        extra = {"action": unit.action, "eps": unit.eps, "align_s": seconds,
                 "recovery_error": float((num / den).sqrt()), "recovered": float((num / den).sqrt() < 1e-4),
                 **_info(method)}
        return ref_out, other_out, moved, extra


@dataclass
class Merge(Protocol):
    """N networks merged into one: merged loss/accuracy against the endpoints' mean, with and
    without REPAIR, and the cycle-consistency error of the method's pairwise maps over triples.

    INR groups are fits of one image (so N is at most the zoo's fits per image); classifier
    groups are drawn from the evaluation split, or from the whole zoo when that is too small.
    """

    name = "merge"
    sizes: tuple[int, ...] = (2, 3, 5, 8)
    n_groups: int = 2
    repair: bool = True
    max_triples: int = 6

    def units(self, zoo: Zoo) -> list[Unit]:
        units = []
        if zoo.task.get("kind") == "inr":
            by_image = zoo.meta.loc[zoo.indices(self.split)].groupby("target").groups
            groups = [list(ix) for _, ix in sorted(by_image.items())]
            for n in self.sizes:
                fit = [g[:n] for g in groups if len(g) >= n]
                for g in [fit[i] for i in _pick(list(range(len(fit))), self.n_groups, self.seed + n)]:
                    units.append(Unit(f"n={n} nets={'-'.join(map(str, g))}", g[0]))
            return units
        pool = zoo.indices(self.split)
        for n in self.sizes:
            source = pool if len(pool) >= n else zoo.indices()
            for g in range(self.n_groups):
                members = sorted(_pick(source, n, self.seed * 7919 + n * 101 + g))
                if len(members) == n:
                    units.append(Unit(f"n={n} nets={'-'.join(map(str, members))}", members[0]))
        return units

    def run(self, method, zoo, task, units):
        from methods.repair import repair

        rows = []
        for unit in units:
            members = [int(i) for i in unit.name.split("nets=")[1].split("-")]
            models = select(zoo.params, members)
            target = _target(zoo, members[0])
            start = time.perf_counter()
            merged, frame = method.merge_aligned(models, target)
            seconds = time.perf_counter() - start
            tgt = None if target is None else torch.tensor([target])
            ends = task.evaluate(models, None if tgt is None else tgt.repeat(len(members)))
            row = {"unit": unit.name, "a": members[0], "n_models": len(members), "merge_s": seconds, **_info(method)}
            for k, v in task.evaluate(merged, tgt).items():
                row[f"{k}_merged"], row[f"{k}_endpoints"] = float(v[0]), float(ends[k].mean())
                row[f"{k}_gap"] = row[f"{k}_merged"] - row[f"{k}_endpoints"]
            if self.repair:
                x = task.inputs() if task.kind == "inr" else task.train_batch(512)[0]
                for k, v in task.evaluate(repair(zoo.space, merged, frame, x), tgt).items():
                    row[f"{k}_merged_repair"] = float(v[0])
            row["cycle_error"] = cycle_error(method, models, self.max_triples, self.seed) \
                if method.exact and len(members) >= 3 else float("nan")
            rows.append(row)
        return rows


def _pair_maps(method, models):
    """Pairwise maps a <- b for every ordered pair, as (perms, signs) for `apply_matching`."""
    from methods.weight_matching import weight_matching

    n = next(iter(models.values())).shape[0]
    if getattr(method, "last_perms", None) is not None and len(method.last_perms) == n:
        from methods.c2m3 import pairwise  # maps composed through the method's universe

        return lambda a, b: pairwise(method.last_perms, method.last_signs, a, b)
    space = method.space

    def pair(a, b):  # a black-box pairwise method: read its map off the aligned network
        ref, other = select(models, a), select(models, b)
        aligned = method.align(ref, other)
        perms, signs, _ = weight_matching(space, {k: v[0] for k, v in aligned.items()},
                                          {k: v[0] for k, v in other.items()}, signed=True)
        return perms, signs

    return pair


def cycle_error(method, models, max_triples: int, seed: int) -> float:
    """Mean over triples (a, b, c) of the fraction of units that a <- b <- c <- a does not fix."""
    from itertools import combinations

    from methods.c2m3 import cycle_error as triple_error

    n = next(iter(models.values())).shape[0]
    triples = list(combinations(range(n), 3))
    triples = [triples[i] for i in _pick(list(range(len(triples))), max_triples, seed)]
    pair = _pair_maps(method, models)
    return float(sum(triple_error([pair(a, b), pair(b, c), pair(c, a)]) for a, b, c in triples) / len(triples))


def _info(method) -> dict:
    return {f"i_{k}": float(v) for k, v in method.info.items()}


PROTOCOLS = {cls.name: cls for cls in (Pairs, Orbit, Merge)}
import bench.combine  # noqa: E402,F401  (registers the `combine` protocol in PROTOCOLS)


def make_protocol(name: str, **options) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name](**options)


__all__ = ["PROTOCOLS", "Protocol", "Pairs", "Orbit", "Merge", "Unit", "make_protocol"]
