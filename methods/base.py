"""The one interface every alignment method implements, and its typed hyperparameters.

A method brings networks into a reference network's basin (`align`) and merges several
(`merge`). Exact methods move only along symmetry orbits (the harness checks that the aligned
networks compute the same functions); learned ones may change them (the harness records the
reconstruction loss instead). Hyperparameters are declared in `search_space`, which feeds the
CLI (`git-rebasin[max_sweeps=10]`) and Optuna sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zoos.space import Params, WeightSpace


@dataclass(frozen=True)
class Hyper:
    """A typed hyperparameter: kind is 'int', 'float', 'bool' or 'cat'."""

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
        if self.kind == "cat" and v not in self.choices:
            raise ValueError(f"hyperparameter {name}: {v!r} not in {self.choices}")
        if self.kind in ("int", "float") and ((self.low is not None and v < self.low)
                                               or (self.high is not None and v > self.high)):
            raise ValueError(f"hyperparameter {name}: {v} outside [{self.low}, {self.high}]")
        return v


class Aligner:
    name: ClassVar[str]
    exact: ClassVar[bool] = True  # True: moves only along symmetry orbits (function-preserving)
    canonicalizes_ref: ClassVar[bool] = False  # True: the reference is transformed too (canonical forms)
    search_space: ClassVar[dict[str, Hyper]] = {}

    def __init__(self, seed: int = 0, **hyper):
        unknown = set(hyper) - set(self.search_space)
        if unknown:
            raise ValueError(f"method {self.name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}"
                             f" (known: {', '.join(self.search_space) or 'none'})")
        self.hp = {k: h.parse(k, hyper.get(k, h.default)) for k, h in self.search_space.items()}
        self.seed = seed
        self.space: WeightSpace | None = None
        self.task = None
        self.info: dict[str, float] = {}  # statistics of the last align/merge call (sweeps, objective...)

    def setup(self, zoo, task) -> None:
        """Bind to a zoo and its task, then `fit` (learned methods train there)."""
        self.space, self.task = zoo.space, task
        self.fit(zoo)

    def fit(self, zoo) -> None:
        """Learned methods train here; the others need nothing."""

    def align(self, ref: Params, others: Params, target: int | None = None) -> Params:
        """Bring each of `others` (N=M) into the basin of `ref` (N=1); returns M networks."""
        raise NotImplementedError

    def align_pair(self, ref: Params, others: Params, target: int | None = None) -> tuple[Params, Params]:
        """The two endpoints a protocol interpolates between: (ref', others').

        Methods that map every network to a canonical representative transform the reference too
        (set `canonicalizes_ref`); the others leave it alone.
        """
        return ref, self.align(ref, others, target)

    def merge(self, models: Params, target: int | None = None) -> Params:
        """One network from N."""
        return self.merge_aligned(models, target)[0]

    def merge_aligned(self, models: Params, target: int | None = None) -> tuple[Params, Params]:
        """(merged [1], the N models in the merged network's frame [N]).

        Default: align all to the first, then average. Multi-model methods override this.
        """
        ref = {k: v[:1] for k, v in models.items()}
        rest = {k: v[1:] for k, v in models.items()}
        ref, aligned = self.align_pair(ref, rest, target)
        frame = {k: torch.cat([ref[k], aligned[k]]) for k in models}
        return {k: v.mean(0, keepdim=True) for k, v in frame.items()}, frame
