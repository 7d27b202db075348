"""Method registry: a new method is one file plus one line here."""

from __future__ import annotations

import math
import re

from methods.base import Aligner, Alignment, Hyper, Merged
from methods.c2m3 import C2M3
from methods.canonical import Canonical
from methods.mergemany import MergeMany
from methods.naive import Naive
from methods.scalegmn_ae import GNNAutoencoder, ScaleGMNAutoencoder
from methods.sign_rebasin import SignRebasin
from methods.sinkhorn import SinkhornRebasin
from methods.weight_matching import WeightMatching

METHODS: dict[str, type[Aligner]] = {cls.name: cls for cls in (
    Naive,
    WeightMatching,
    SinkhornRebasin,
    SignRebasin,
    Canonical,
    C2M3,
    MergeMany,
    ScaleGMNAutoencoder,
    GNNAutoencoder,
)}


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
    """'git-rebasin[ seed=1,max_sweeps=10 ]' -> 'git-rebasin[max_sweeps=10,seed=1]' (keys sorted, no blanks)."""
    return format_spec(*parse_method(spec))


_BOOLS = ("1", "true", "yes", "0", "false", "no")  # what Hyper.parse reads as true, and their opposites


def make_method(spec: str, seed: int = 0, **overrides) -> Aligner:
    name, params = parse_method(spec)
    if name not in METHODS:
        raise UnknownMethod(f"unknown method {name!r} (known: {', '.join(METHODS)})")
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
