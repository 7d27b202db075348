"""Method specs: 'git-rebasin[max_sweeps=10]' as text, and `MethodSpec`, the typed form the harness carries.

The text form is what users type and rows record (`variant`). `MethodSpec.parse` reads it once against the
registry: the method must be registered, every hyperparameter declared and valid, values are typed and those
at their default left out, so equivalent texts give one spec (one key). `str(spec)` is the normal text form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import methods
from methods.base import Aligner
from zoos.names import unknown_name


class UnknownMethod(ValueError):
    pass


def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    """'git-rebasin[max_sweeps=10,seed=1]' -> ('git-rebasin', {'max_sweeps': '10', 'seed': '1'})."""
    m = re.fullmatch(r"\s*([\w.-]+)\s*(?:\[(.*)\])?\s*", spec)
    if not m:
        raise UnknownMethod(f"cannot parse method {spec!r} (expected name or name[key=value,...])")
    params = {}
    for item in filter(None, (m.group(2) or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UnknownMethod(f"method {spec!r}: expected key=value, got {item!r}")
        if key.strip() in params:  # which one would win is not obvious from the text
            raise UnknownMethod(f"method {spec!r}: {key.strip()!r} given twice")
        params[key.strip()] = value.strip()
    return m.group(1), params


def format_spec(name: str, params: dict) -> str:
    """'git-rebasin', {'max_sweeps': 12, 'init': 'forward'} -> 'git-rebasin[init=forward,max_sweeps=12]'
    (keys sorted; floats in shortest round-trip form, so `make_method` rebuilds the same method)."""
    text = lambda v: repr(v) if isinstance(v, float) else str(v)  # noqa: E731
    return name + (f"[{','.join(f'{k}={text(params[k])}' for k in sorted(params))}]" if params else "")


def normalise_spec(spec: str) -> str:
    """'git-rebasin[ max_sweeps=+1_0,init=forward ]' -> 'git-rebasin[init=forward,max_sweeps=10]': keys sorted,
    values of a registered method read as their declared types, and hyperparameters given at their default
    left out ('git-rebasin[max_sweeps=100]' -> 'git-rebasin'), so equivalent specs give one spec (one key).
    Lenient where `MethodSpec.parse` refuses: an unknown name or key is kept as text."""
    name, params = parse_method(spec)
    space = methods.METHODS[name].search_space if name in methods.METHODS else {}
    typed = {k: space[k].parse(k, v) if k in space else v for k, v in params.items()}
    return format_spec(name, _not_default(space, typed))


def _not_default(space: dict, typed: dict) -> dict:
    """The values that differ from their declared default (of its type: True is not 1, 1.0 is 1 for a float)."""
    def same(value, default) -> bool:
        return value == default and (isinstance(value, bool) == isinstance(default, bool))

    return {k: v for k, v in typed.items() if k not in space or not same(v, space[k].default)}


_BOOLS = ("1", "true", "yes", "0", "false", "no")  # what Hyper.parse reads as true, and their opposites


@dataclass(frozen=True)
class MethodSpec:
    """A registered method with typed hyperparameters in normal form: those at their default left out, sorted
    by name. Plain data (hashable, picklable): batches and Dask tasks carry it; `build` makes the method."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        """'git-rebasin[ max_sweeps=+1_0 ]' -> MethodSpec('git-rebasin', (('max_sweeps', 10),)); refuses an
        unknown method, an undeclared hyperparameter and a value its declaration does not accept."""
        return cls.of(*parse_method(text))

    @classmethod
    def of(cls, name: str, params: Mapping[str, Any]) -> MethodSpec:
        """The spec of method `name` with `params` (text as typed by a user, or typed values)."""
        if name not in methods.METHODS:
            raise UnknownMethod(unknown_name("method", name, methods.METHODS))
        method = methods.METHODS[name]
        space = method.search_space
        for key, value in params.items():  # what Hyper.parse would let through unnoticed
            h = space.get(key)
            if h is not None and h.kind == "bool" and str(value).strip().lower() not in _BOOLS:
                raise ValueError(f"method {name}: {key}={value!r} is not a boolean ({'/'.join(_BOOLS)})")
            if h is not None and h.kind == "float" and _number(value) is not None and not math.isfinite(_number(value)):
                raise ValueError(f"method {name}: {key}={value!r} must be a finite number")
        method.check_hyper(params)
        typed = _not_default(space, {k: space[k].parse(k, v) for k, v in params.items()})
        return cls(name, tuple(sorted(typed.items(), key=lambda kv: kv[0])))

    def __str__(self) -> str:
        return format_spec(self.name, dict(self.params))

    @property
    def method(self) -> type[Aligner]:
        """The registered class."""
        return methods.METHODS[self.name]

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyperparameters given (not at their default)."""
        return dict(self.params)

    def replace(self, **params) -> MethodSpec:
        """This spec with some hyperparameters set (validated and normalised like `of`)."""
        return MethodSpec.of(self.name, {**self.hyper, **params})

    def build(self, seed: int = 0) -> Aligner:
        """A new instance of the method with these hyperparameters (not set up on a zoo)."""
        return self.method(seed=seed, **self.hyper)

    def key_parts(self) -> dict:
        """What the method adds to unit keys (its version, from 2 on)."""
        return self.method.key_parts()


def make_method(spec: str | MethodSpec, seed: int = 0) -> Aligner:
    """The method of a spec ('git-rebasin[max_sweeps=10]' or a `MethodSpec`), not set up on a zoo."""
    return (spec if isinstance(spec, MethodSpec) else MethodSpec.parse(spec)).build(seed)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
