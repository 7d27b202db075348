"""What a protocol is: typed units of work, declared metrics, and the helpers every protocol shares.

A protocol cuts a zoo into independent units of work (a pair, an orbit copy, a group of models...)
and turns a method's output on a batch of units into result rows. Units are named deterministically
and carry their own seed, so a resumed run redoes exactly the missing ones. Each protocol declares
its metrics (`Metric`: direction, label, role); reports, sweeps and the MLflow mirror read those
declarations and list no metrics of their own.

A protocol is one file in this package that defines a `Protocol` subclass and decorates it with
`@register`; the package imports every module in it, so nothing else needs an edit.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from bench.evaluation.curves import curve_summary, curves, deviation
from methods.base import Aligner, Alignment
from zoos.symmetry import stack
from zoos.zoo import Zoo

ROLES = ("rank", "shown", "diagnostic", "runtime")


@dataclass(frozen=True)
class Metric:
    """A column a protocol writes. `role`: rank (orders a table; the first present one ranks), shown
    (a table column), diagnostic (kept in the table, not shown), runtime (seconds; median shown)."""

    name: str
    label: str
    higher_is_better: bool = False
    role: str = "shown"

    @property
    def direction(self) -> str:
        return "maximize" if self.higher_is_better else "minimize"


@dataclass(frozen=True)
class Unit:
    """One unit of work: the networks it uses (`nets[0]` is the reference) and what it varies."""

    name: str  # stable identity inside the protocol, e.g. "pair=3-17" (part of the result key)
    nets: tuple[int, ...]
    action: str | None = None  # orbit: P / S / PS
    eps: float | None = None  # orbit: weight noise
    probe: str | None = None  # combine: which probe

    @property
    def a(self) -> int:
        return self.nets[0]

    @property
    def b(self) -> int | None:
        return self.nets[1] if len(self.nets) > 1 else None

    @property
    def seed(self) -> int:
        return int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)


def curve_metrics(rank: str = "loss_barrier") -> tuple[Metric, ...]:
    """The metrics of a protocol that interpolates between two endpoints."""
    out = [Metric("loss_barrier", "loss barrier", role="rank" if rank == "loss_barrier" else "shown"),
           Metric("acc_barrier", "acc barrier"), Metric("psnr_barrier", "PSNR barrier")]
    for score, hib in (("loss", False), ("acc", True), ("psnr", True)):
        out += [Metric(f"{score}_area", f"{score} area", role="diagnostic"),
                Metric(f"{score}_mid", f"{score} at the midpoint", hib, role="diagnostic"),
                Metric(f"{score}_endpoints", f"{score} of the endpoints", hib, role="diagnostic"),
                Metric(f"recon_{score}", f"{score} change by reconstruction", hib, role="diagnostic")]
    out += [Metric("deviation", "max deviation", role="diagnostic"), Metric("align_s", "align s", role="runtime")]
    return tuple(out)


@dataclass
class Protocol:
    """Base of every protocol (subclasses are dataclasses; their fields are the protocol's options)."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]] = ()
    sections: ClassVar[tuple[str, ...]] = ()  # row columns that split this protocol's comparison further
    split: str = "test"
    lambdas: int = 25
    seed: int = 0

    def grid(self) -> torch.Tensor:
        return torch.linspace(0, 1, self.lambdas)

    def params(self) -> dict:
        """What identifies this protocol's rows besides the unit (part of the result key)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def units(self, zoo: Zoo) -> list[Unit]:
        raise NotImplementedError

    def run(self, method: Aligner, zoo: Zoo, task, units: list[Unit]) -> list[dict]:
        """Rows for a batch of units (evaluation batched over all of them)."""
        raise NotImplementedError


PROTOCOLS: dict[str, type[Protocol]] = {}


def register(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: make a protocol known to `bench run`, sweeps and reports under `cls.name`."""
    PROTOCOLS[cls.name] = cls
    return cls


def metric(name: str) -> Metric | None:
    """The declaration of a metric column, from whichever protocol declares it."""
    for cls in PROTOCOLS.values():
        for m in cls.metrics:
            if m.name == name:
                return m
    return None


# ---- helpers the protocols share ----------------------------------------------------------------
def pick(indices: list[int], k: int, seed: int) -> list[int]:
    """k of `indices` in a seeded random order."""
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
    return [indices[i] for i in order[:k]]


def targets(zoo: Zoo, indices: list[int]) -> torch.Tensor | None:
    """INR target image of each network (None for classifiers)."""
    if zoo.task.get("kind") != "inr":
        return None
    return torch.as_tensor(zoo.meta["target"].to_numpy()[indices], dtype=torch.long)


def target(zoo: Zoo, index: int) -> int | None:
    return int(zoo.meta["target"].iloc[index]) if zoo.task.get("kind") == "inr" else None


def timed_align(method: Aligner, ref, others, target_index) -> tuple[Alignment, float]:
    start = time.perf_counter()
    out = method.align(ref, others, target_index)
    return out, time.perf_counter() - start


def interpolation_rows(protocol: Protocol, method: Aligner, zoo: Zoo, task, units: list[Unit],
                       ends: list[tuple[Alignment, dict, dict]]) -> list[dict]:
    """Rows of units whose measurement is the straight path between an alignment's two endpoints.

    `ends[i]` is unit i's (alignment of one network to the reference, the original of that network,
    extra columns). Every path of the batch is evaluated in one batched pass.
    """
    refs = stack([e[0].ref for e in ends])
    others = stack([e[0].others for e in ends])
    originals = stack([e[1] for e in ends])
    tgt = targets(zoo, [u.a for u in units])
    lambdas = protocol.grid()
    curve = curves(task, refs, others, lambdas, tgt)
    summary = curve_summary(task, curve, lambdas)
    if method.exact:
        columns = {"deviation": deviation(task, others, originals)}
    else:  # learned methods change the function: record what reconstruction cost
        before = task.evaluate(originals, tgt)
        columns = {f"recon_{k}": curve[k][:, -1] - before[k] for k in before}
    rows = []
    for i, unit in enumerate(units):
        row = {"unit": unit.name, "a": unit.a, "b": unit.b, "lambdas": lambdas.tolist(), **ends[i][2]}
        row.update({f"curve_{k}": v[i].tolist() for k, v in curve.items()})
        row.update({k: float(v[i]) for k, v in {**summary, **columns}.items()})
        rows.append(row)
    return rows


def info_columns(info: dict) -> dict:
    """A method's scalar diagnostics as `i_*` columns."""
    return {f"i_{k}": float(v) for k, v in info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
