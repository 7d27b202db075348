"""The one interface every alignment method implements, what it returns, and its typed hyperparameters.

A method brings networks into a reference network's basin (`align -> Alignment`) and merges several
(`merge -> Merged`). Both return values: the aligned parameters, the group element applied when
there is one (`zoos.symmetry.GroupElement`), and diagnostics (`info`); a method object keeps no
state from one call to the next, so one instance serves any number of calls and threads.

Exact methods move only along symmetry orbits (the harness checks that the aligned networks
compute the same functions); learned ones may change them (the harness records the
reconstruction cost instead). Hyperparameters are declared in `search_space`, which feeds the
CLI (`git-rebasin[max_sweeps=10]`) and Optuna sweeps. What a method can handle is declared too
(`tasks`, `needs`, `skip`), so the harness skips an unsupported (method, zoo) with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from zoos.devices import DeviceError, resolve_device
from zoos.space import Params, WeightSpace
from zoos.symmetry import GroupElement, stack


@dataclass(frozen=True)
class Hyper:
    """A typed hyperparameter: kind is 'int', 'float', 'bool', 'cat' or 'name' (a string of letters, digits,
    '.', '_' and '-' that does not start with '.': safe as a file name)."""

    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def parse(self, name: str, value: Any) -> Any:
        try:
            if self.kind == "bool":
                v = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif self.kind == "int":
                v = int(value)
            elif self.kind == "float":
                v = float(value)
            else:
                v = type(self.default)(value) if self.default is not None else value
        except (TypeError, ValueError):
            raise ValueError(f"hyperparameter {name}: {value!r} is not a valid {self.kind}") from None
        if self.kind == "name" and not re.fullmatch(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,127})?", v):
            raise ValueError(f"hyperparameter {name}: {v!r} is not a name (letters, digits, '.', '_', '-')")
        if self.kind == "cat" and v not in self.choices:
            raise ValueError(f"hyperparameter {name}: {v!r} not in {self.choices}")
        if self.kind in ("int", "float") and ((self.low is not None and v < self.low)
                                               or (self.high is not None and v > self.high)):
            raise ValueError(f"hyperparameter {name}: {v} outside [{self.low}, {self.high}]")
        return v


DATA_NEEDS = ("data-free", "activations", "labels", "trained-model")  # what a method reads besides weights


@dataclass
class Alignment:
    """What `align` returns: both endpoints to interpolate between, and how they were obtained.

    `transform[m]` takes `others[m]` as given to the aligned copy, `ref_transform` the reference
    (None: the reference is returned unchanged). Both are None for learned methods, whose output
    is not a group element of the input.
    """

    ref: Params  # [1]
    others: Params  # [M]
    transform: GroupElement | None = None
    ref_transform: GroupElement | None = None
    info: dict[str, float] = field(default_factory=dict)

    def maps(self) -> GroupElement | None:
        """Each of `others` (as given) into the frame of the given reference: ref_transform^-1 . transform."""
        if self.transform is None or self.ref_transform is None:
            return self.transform
        return self.ref_transform.inverse().compose(self.transform)


@dataclass
class Merged:
    """What `merge` returns: one network, the N inputs in its frame, and each input's map into it."""

    merged: Params  # [1]
    frame: Params  # [N]
    transform: GroupElement | None = None  # model m -> frame[m]; None for learned methods
    info: dict[str, float] = field(default_factory=dict)


class CheckpointStore(Protocol):
    """Where a learned method keeps what `fit` produced (the harness owns the location)."""

    def directory(self, name: str) -> Path: ...

    def lock(self, name: str): ...


class Aligner:
    name: ClassVar[str]
    exact: ClassVar[bool] = True  # True: moves only along symmetry orbits (function-preserving)
    multi_model: ClassVar[bool] = False  # merge solves all models jointly: its maps compose through one frame
    reference: ClassVar[bool] = False  # a reference baseline (e.g. `constant`): shown in tables, never ranked
    learned: ClassVar[bool] = False  # fit trains a model (on the zoo's training split)
    tasks: ClassVar[tuple[str, ...]] = ("inr", "classifier")  # task kinds it can align
    needs: ClassVar[str] = "data-free"  # one of DATA_NEEDS
    # reads the network as a stack of layers (per-layer activations, a layer graph): not graph spaces with
    # residual sums or normalisations (`zoos.graph_space`)
    stack_only: ClassVar[bool] = False
    search_space: ClassVar[dict[str, Hyper]] = {}
    # bump when a code change changes the method's results: the harness keys units on it (from 2 on), so
    # rows of the old code are not taken for the new one's
    version: ClassVar[int] = 1
    # what listings and tables show: a display name, one line on what it does, and where it comes from (the
    # paper, as "Authors, venue year" and its arXiv id); empty: the slug, nothing, the harness itself
    display_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    arxiv: ClassVar[str] = ""

    @classmethod
    def label(cls) -> str:
        """The display name (the registered name when none is declared)."""
        return cls.display_name or cls.name

    @classmethod
    def reference_text(cls) -> str:
        """'Authors, venue year, arXiv:ID' (whichever parts are declared)."""
        return ", ".join(filter(None, (cls.citation, f"arXiv:{cls.arxiv}" if cls.arxiv else "")))

    @classmethod
    def key_parts(cls) -> dict:
        return {"method_version": cls.version} if cls.version != 1 else {}

    @classmethod
    def check_hyper(cls, names) -> None:
        """ValueError unless every name is a declared hyperparameter."""
        unknown = set(names) - set(cls.search_space)
        if unknown:
            raise ValueError(f"method {cls.name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}"
                             f" (known: {', '.join(cls.search_space) or 'none'})")

    def __init__(self, seed: int = 0, **hyper):
        self.check_hyper(hyper)
        self.hp = {k: h.parse(k, hyper.get(k, h.default)) for k, h in self.search_space.items()}
        if "device" in self.hp:  # refuse a device torch cannot use now, not deep inside a run
            try:
                resolve_device(self.hp["device"])
            except DeviceError as error:
                raise ValueError(f"{self.name}[device={self.hp['device']}]: {error}") from None
        self.seed = seed
        self.space: WeightSpace | None = None
        self.task = None

    def skip(self, zoo) -> str | None:
        """Why this method cannot run on `zoo` (benchopt's skip), or None when it can."""
        kind = zoo.task.get("kind")
        if kind not in self.tasks:
            return f"{self.name} aligns {', '.join(self.tasks)} zoos, not {kind}"
        if self.stack_only and not zoo.space.stacked:
            return f"{self.name} reads a stack of layers; {zoo.space.name} is a graph (residual sums, normalisation)"
        return None

    def setup(self, zoo, task, store: CheckpointStore | None = None, progress: bool = False) -> None:
        """Bind to a zoo and its task, then `fit` (learned methods train there, or load from `store`)."""
        self.space, self.task = zoo.space, task
        self.fit(zoo, store, progress)

    def fit(self, zoo, store: CheckpointStore | None = None, progress: bool = False) -> None:
        """Learned methods train here; the others need nothing."""

    def align(self, ref: Params, others: Params, target: int | None = None) -> Alignment:
        """Bring each of `others` (N=M) into the basin of `ref` (N=1)."""
        raise NotImplementedError

    def merge(self, models: Params, target: int | None = None) -> Merged:
        """One network from N. Default: align all to the first, then average."""
        ref = {k: v[:1] for k, v in models.items()}
        rest = {k: v[1:] for k, v in models.items()}
        out = self.align(ref, rest, target)
        frame = {k: torch.cat([out.ref[k], out.others[k]]) for k in models}
        transform = None
        if out.transform is not None:
            first = out.ref_transform or GroupElement.identity(self.space)
            transform = GroupElement({p: torch.cat([first.perms[p], out.transform.perms[p]]) for p in first.perms},
                                     _cat_scales(first, out.transform))
        return Merged({k: v.mean(0, keepdim=True) for k, v in frame.items()}, frame, transform, out.info)


def _cat_scales(first: GroupElement, rest: GroupElement) -> dict[str, torch.Tensor]:
    names = set(first.scales) | set(rest.scales)
    ones = lambda e, p: e.scales.get(p, torch.ones_like(e.perms[p], dtype=torch.float32))  # noqa: E731
    return {p: torch.cat([ones(first, p), ones(rest, p)]) for p in names}


def unchanged(space: WeightSpace, ref: Params, others: Params, info: dict | None = None) -> Alignment:
    """The alignment of a method that moves nothing (naive averaging)."""
    n = next(iter(others.values())).shape[0]
    return Alignment(ref, dict(others), GroupElement.identity(space, n), None, info or {})


__all__ = ["Aligner", "Alignment", "Merged", "Hyper", "CheckpointStore", "DATA_NEEDS", "unchanged", "stack"]
