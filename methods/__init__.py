"""Method registry: every module of this package that defines an `Aligner` with a `name` is a method.

A new method is one file here; it is found, listed by `bench methods` and run by `bench run` with
no other edit. Building blocks that are not methods are listed in `BUILDING_BLOCKS` (the graph
metanetwork modules import torch_geometric, which only the autoencoders should pay for).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re

from methods.base import Aligner, Alignment, Hyper, Merged
from zoos.names import unknown_name

BUILDING_BLOCKS = {"base", "assignment", "activations", "graph", "scalegmn"}


def _discover() -> dict[str, type[Aligner]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in BUILDING_BLOCKS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Aligner) and obj.__module__ == module.__name__ \
                    and "name" in vars(obj):
                found[obj.name] = obj
    # the baseline first, learned methods last, else by name: a stable order for listings and runs
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "naive", kv[1].learned, kv[0])))


METHODS: dict[str, type[Aligner]] = _discover()


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
    left out ('git-rebasin[max_sweeps=100]' -> 'git-rebasin'), so equivalent specs give one spec (one key)."""
    name, params = parse_method(spec)
    space = METHODS[name].search_space if name in METHODS else {}
    typed = {k: space[k].parse(k, v) if k in space else v for k, v in params.items()}
    return format_spec(name, {k: v for k, v in typed.items() if k not in space or not _same(v, space[k].default)})


def _same(value, default) -> bool:
    """A value equal to its default, and of its type (True is not 1, 1.0 is 1 for a float hyperparameter)."""
    return value == default and (isinstance(value, bool) == isinstance(default, bool))


_BOOLS = ("1", "true", "yes", "0", "false", "no")  # what Hyper.parse reads as true, and their opposites


def make_method(spec: str, seed: int = 0, **overrides) -> Aligner:
    name, params = parse_method(spec)
    if name not in METHODS:
        raise UnknownMethod(unknown_name("method", name, METHODS))
    params.update(overrides)
    for key, value in params.items():  # what Hyper.parse would let through unnoticed
        h = METHODS[name].search_space.get(key)
        if h is not None and h.kind == "bool" and str(value).strip().lower() not in _BOOLS:
            raise ValueError(f"method {name}: {key}={value!r} is not a boolean ({'/'.join(_BOOLS)})")
        if h is not None and h.kind == "float" and _number(value) is not None and not math.isfinite(_number(value)):
            raise ValueError(f"method {name}: {key}={value!r} must be a finite number")
    return METHODS[name](seed=seed, **params)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


__all__ = ["METHODS", "Aligner", "Alignment", "Merged", "Hyper", "make_method", "parse_method", "format_spec",
           "normalise_spec", "UnknownMethod"]
