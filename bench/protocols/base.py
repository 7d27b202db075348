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
import math
import time
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from bench.evaluation.collapse import identified, pair_spread, signatures
from bench.evaluation.curves import curve_summary, curves, deviation
from bench.evaluation.metrics import path_excess
from bench.evaluation.repair import recount_statistics
from methods.base import Aligner, Alignment
from zoos.space import Params
from zoos.symmetry import select, stack
from zoos.tasks import targets
from zoos.zoo import Zoo

ROLES = ("rank", "shown", "diagnostic", "runtime")
# An exact method's alignment must not change the function: its functional deviation (max output change
# relative to the largest output) is float round-off, ~1e-6 on every zoo here. A unit above this fails.
EXACT_TOLERANCE = 1e-4
SPLITS = ("train", "val", "test")  # zoos.zoo.SPLITS
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")  # the spellings method booleans take


class OptionError(ValueError):
    """A protocol option of the wrong type, outside its declared range, unknown or given twice (one line)."""


@dataclass(frozen=True)
class Option:
    """A protocol option's declared type and range, as `methods.base.Hyper` declares a hyperparameter's.

    kind: 'int', 'float', 'bool' or 'choice'; `many`: a tuple of such values (written 'a;b;c' in a spec),
    at most `max_items` of them, none twice. `low`/`high` bound numbers (inclusive); floats must be finite.
    `check` takes a Python value (from a preset) without converting it, so keys stay as they were;
    `parse` reads the text of a spec ('merge[repair=false]')."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    many: bool = False
    max_items: int = 64

    def _one(self, where: str, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise OptionError(f"{where}: {value!r} is not a boolean ({'/'.join(_TRUE + _FALSE)})")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise OptionError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
            return value
        numeric = isinstance(value, int) if self.kind == "int" else isinstance(value, int | float)
        if isinstance(value, bool) or not numeric:
            raise OptionError(f"{where}: {value!r} is not {'an integer' if self.kind == 'int' else 'a number'}")
        if not math.isfinite(value):
            raise OptionError(f"{where}: {value!r} is not a finite number")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise OptionError(f"{where}: {value!r} is outside [{self.low:g}, {self.high:g}]")
        return value

    def check(self, where: str, value: Any) -> Any:
        """`value` if it has the declared type and range; else OptionError naming `where` (protocol option)."""
        if not self.many:
            return self._one(where, value)
        if not isinstance(value, tuple | list) or not value:
            raise OptionError(f"{where}: {value!r} is not a non-empty list of values (write them a;b;c)")
        if len(value) > self.max_items:
            raise OptionError(f"{where}: {len(value)} values, more than {self.max_items}")
        for item in value:
            self._one(where, item)
        if len(set(value)) != len(value):
            raise OptionError(f"{where}: {value!r} lists a value twice")
        return value

    def _read(self, where: str, text: str) -> Any:
        text = text.strip()
        if self.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise OptionError(f"{where}: {text!r} is not a boolean ({'/'.join(_TRUE + _FALSE)})")
            return text.lower() in _TRUE
        if self.kind == "int":
            try:
                return int(text)
            except ValueError:
                raise OptionError(f"{where}: {text!r} is not an integer") from None
        if self.kind == "float":
            try:
                return float(text)
            except ValueError:
                raise OptionError(f"{where}: {text!r} is not a number") from None
        return text

    def parse(self, where: str, text: str) -> Any:
        """The typed, checked value of a spec's text ('5', 'false', 'P;PS', '0;0.01')."""
        value = tuple(self._read(where, t) for t in text.split(";") if t.strip()) if self.many \
            else self._read(where, text)
        return self.check(where, value)


BASE_OPTIONS = {"split": Option("choice", choices=SPLITS), "lambdas": Option("int", 2, 1001),
                "seed": Option("int", 0, 2**31 - 1)}


@dataclass(frozen=True)
class Metric:
    """A column a protocol writes. `role`: rank (orders a table; the first declared one present ranks), shown
    (a table column), diagnostic (kept in the table, not shown), runtime (seconds; median shown). `trials` > 0:
    a rate, each unit's value the fraction of that many yes/no trials (reports give exact binomial intervals)."""

    name: str
    label: str
    higher_is_better: bool = False
    role: str = "shown"
    trials: int = 0

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


def curve_metrics() -> tuple[Metric, ...]:
    """The metrics of a protocol that interpolates between two endpoints (see `interpolation_rows`)."""
    # rank metrics in priority order: the first one a table has ranks it (tables of older runs lack the excess)
    out = [Metric("loss_excess", "loss path excess", role="rank"), Metric("loss_barrier", "loss barrier", role="rank"),
           Metric("acc_excess", "acc path excess"), Metric("acc_barrier", "acc barrier"),
           Metric("psnr_excess", "PSNR path excess"), Metric("psnr_barrier", "PSNR barrier"),
           Metric("recon_loss", "recon loss cost"), Metric("recon_acc", "recon acc cost"),
           Metric("recon_psnr", "recon PSNR cost"), Metric("ident", "identifies source", True, trials=2),
           Metric("spread_ratio", "spread ratio", True)]
    for score, hib in (("loss", False), ("acc", True), ("psnr", True)):
        out += [Metric(f"{score}_area", f"{score} area", role="diagnostic"),
                Metric(f"{score}_mid", f"{score} at the midpoint", hib, role="diagnostic"),
                Metric(f"{score}_endpoints", f"{score} of the aligned endpoints", hib, role="diagnostic")]
        out += [Metric(f"{score}_{end}", f"{score} of {end.replace('_', ' ')}", hib, role="diagnostic")
                for end in ("a", "b", "a_aligned", "b_aligned")]
    out += [Metric("ident_chance", "identification by chance", True, role="diagnostic"),
            Metric("deviation", "max deviation", role="diagnostic"), Metric("align_s", "align s", role="runtime")]
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

    # each option's declared type and range (`Option`), beside the base's split, lambdas and seed; every
    # dataclass field of a protocol must be declared (tests/test_safety_inputs.py checks that)
    options: ClassVar[dict[str, Option]] = {}
    # options added after rows were stored -> the value every earlier row was made under: left out of the key
    # at that value (those rows' keys stay valid: nothing that changes a result changed), in it otherwise
    later_options: ClassVar[dict[str, object]] = {}

    def __post_init__(self):
        declared = self.declared()
        for f in fields(self):
            if f.name not in declared:
                raise OptionError(f"protocol {self.name}: option {f.name!r} has no declared type and range")
            declared[f.name].check(f"protocol {self.name}: option {f.name}", getattr(self, f.name))

    @classmethod
    def declared(cls) -> dict[str, Option]:
        """Every option's declaration: the base's, then the protocol's own (which may narrow them)."""
        return {**BASE_OPTIONS, **cls.options}

    def grid(self) -> torch.Tensor:
        return torch.linspace(0, 1, self.lambdas)

    def params(self) -> dict:
        """What identifies this protocol's rows besides the unit (part of the result key)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if k not in self.later_options or v != self.later_options[k]}

    def units(self, zoo: Zoo) -> list[Unit]:
        raise NotImplementedError

    def run(self, method: Aligner, zoo: Zoo, task, units: list[Unit]) -> list[dict]:
        """Rows for a batch of units (evaluation batched over all of them)."""
        raise NotImplementedError

    def gaps(self, zoo: Zoo) -> list[str]:
        """What this protocol cannot measure on `zoo`, and why (an empty protocol, a size with no groups)."""
        if self.units(zoo):
            return []
        pool = zoo.indices(self.split)
        return [f"no units (split {self.split!r} holds {len(pool)} of the zoo's {len(zoo)} networks)"]


PROTOCOLS: dict[str, type[Protocol]] = {}


def register(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: make a protocol known to `bench run`, sweeps and reports under `cls.name`. A name taken
    by another class is refused (a silent overwrite would run the other protocol under the same keys)."""
    taken = PROTOCOLS.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"protocol {cls.name!r} from {cls.__module__} is already registered (from "
                         f"{taken.__module__}); rename one of them")
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
def timed_align(method: Aligner, ref, others, target_index) -> tuple[Alignment, float]:
    start = time.perf_counter()
    out = method.align(ref, others, target_index)
    return out, time.perf_counter() - start


@dataclass
class Endpoints:
    """What one interpolation unit measures: a method's alignment of `other` to `ref`, and the originals."""

    alignment: Alignment
    ref: Params  # the reference as given (N=1)
    other: Params  # the other network as given (N=1)
    sources: tuple[int, int]  # zoo networks whose function ref and other carry (identification)
    extra: dict


def interpolation_rows(protocol: Protocol, method: Aligner, zoo: Zoo, task, units: list[Unit],
                       ends: list[Endpoints]) -> list[dict]:
    """Rows of units whose measurement is the straight path between an alignment's two endpoints.

    Per metric k: the curve along the path, its barrier (against the path's own endpoints), the
    path excess against the ORIGINAL endpoints (`k_excess`, the honest rank key), both endpoints
    before (`k_a`, `k_b`) and after alignment (`k_a_aligned`, `k_b_aligned`), and the reconstruction
    cost (`recon_k`: the mean over both endpoints of how much worse alignment made them; 0 for exact
    methods). Exact methods also record the functional deviation; methods that change the function
    record whether each decoded endpoint still identifies its source among the originals (`ident`,
    against `ident_chance`) and, for pairs of different networks, how far apart the decoded
    endpoints are relative to the originals (`spread_ratio`). Every path is evaluated in one pass.
    A unit of an exact method whose deviation exceeds EXACT_TOLERANCE fails, with the deviation in its error.
    """
    refs = stack([e.alignment.ref for e in ends])
    others = stack([e.alignment.others for e in ends])
    orig_a, orig_b = stack([e.ref for e in ends]), stack([e.other for e in ends])
    tgt = targets(zoo, [u.a for u in units])
    lambdas = protocol.grid()
    curve = curves(task, refs, others, lambdas, tgt)
    summary = curve_summary(task, curve, lambdas)
    n = len(units)
    # scored by the path's rule (BatchNorm statistics recounted), so that an exact alignment costs nothing
    before = task.evaluate(recount_statistics(task, stack([orig_a, orig_b])), None if tgt is None else tgt.repeat(2))
    columns = {}
    for k, hib in task.higher_is_better.items():
        a, b = before[k][:n], before[k][n:]
        columns.update({f"{k}_a": a, f"{k}_b": b, f"{k}_a_aligned": curve[k][:, 0], f"{k}_b_aligned": curve[k][:, -1]})
        worse = (lambda new, old: old - new) if hib else (lambda new, old: new - old)  # noqa: E731
        columns[f"recon_{k}"] = (worse(curve[k][:, 0], a) + worse(curve[k][:, -1], b)) / 2
        columns[f"{k}_excess"] = path_excess(curve[k], (a + b) / 2, hib)
    if method.exact:
        columns["deviation"] = deviation(task, others, orig_b)
    else:
        columns.update(_collapse(protocol, zoo, task, ends, refs, others, orig_a, orig_b))
    rows = []
    for i, unit in enumerate(units):
        row = {"unit": unit.name, "a": unit.a, "b": unit.b, "lambdas": lambdas.tolist(), **ends[i].extra}
        row.update({f"curve_{k}": v[i].tolist() for k, v in curve.items()})
        row.update({k: float(v[i]) for k, v in {**summary, **columns}.items()})
        if method.exact and not row["deviation"] <= EXACT_TOLERANCE:
            row["error"] = (f"not exact: functional deviation {row['deviation']:.3g} exceeds the tolerance "
                            f"{EXACT_TOLERANCE:g} of a method declared exact")
        rows.append(row)
    return rows


def _collapse(protocol, zoo, task, ends, refs, others, orig_a, orig_b) -> dict[str, torch.Tensor]:
    pool_index = zoo.indices(protocol.split)  # units exist, so the split is not empty
    pool = signatures(task, select(zoo.params, pool_index))
    decoded_a, decoded_b = signatures(task, refs), signatures(task, others)
    source_a, source_b = [e.sources[0] for e in ends], [e.sources[1] for e in ends]
    ident = (identified(task, decoded_a, source_a, pool, pool_index)
             + identified(task, decoded_b, source_b, pool, pool_index)) / 2
    spread = pair_spread(task, decoded_a, decoded_b) / pair_spread(task, signatures(task, orig_a),
                                                                   signatures(task, orig_b))
    distinct = torch.tensor([e.sources[0] != e.sources[1] for e in ends])
    return {"ident": ident, "ident_chance": torch.full((len(ends),), 1 / len(pool_index), dtype=torch.float64),
            "spread_ratio": torch.where(distinct, spread, torch.full_like(spread, float("nan")))}


def info_columns(info: dict) -> dict:
    """A method's scalar diagnostics as `i_*` columns."""
    return {f"i_{k}": float(v) for k, v in info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
