"""Method registry: every module of this package that defines an `Aligner` with a `name` is a method.

A new method is one file here; it is found, listed by `bench methods` and run by `bench run --methods NAME`
with no other edit (a preset runs the methods it declares). Building blocks that are not methods are listed
in `BUILDING_BLOCKS` (the graph metanetwork modules import torch_geometric, which only the autoencoders
should pay for).

Methods from outside the repository join the same registry:
- an installed package declaring entry points in the group `rebasin_bench.methods` (each names an `Aligner`
  class or a module whose `Aligner`s with a `name` are taken), read with `importlib.metadata` on import;
- a directory of method files: `include(PATH)` (`bench run --include PATH`), also read on import from the
  directories listed in `$REBASIN_INCLUDE` (`os.pathsep`-separated), which `include` extends so that worker
  processes started afterwards (Dask) find the same methods.
A name registered twice is refused with both origins named.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import pkgutil
import re
import sys
import warnings
from pathlib import Path

from methods.base import Aligner, Alignment, Hyper, Merged
from zoos.names import unknown_name

BUILDING_BLOCKS = {"base", "assignment", "activations", "graph", "scalegmn"}
ENTRY_POINTS = "rebasin_bench.methods"  # the entry-point group of method plugins
INCLUDE_ENV = "REBASIN_INCLUDE"  # directories of method files, os.pathsep-separated
ORIGINS: dict[str, str] = {}  # method name -> where it was registered from (module, entry point or file)


class DuplicateMethod(ValueError):
    pass


def _aligners(module) -> list[type[Aligner]]:
    return [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Aligner)
            and obj.__module__ == module.__name__ and "name" in vars(obj)]


def _add(found: dict, cls: type[Aligner], origin: str) -> None:
    if cls.name in found and found[cls.name] is not cls:
        raise DuplicateMethod(f"method {cls.name!r} from {origin} is already registered (from {ORIGINS[cls.name]}); "
                              "rename one of them")
    found[cls.name] = cls
    ORIGINS[cls.name] = origin


def _ordered(found: dict) -> dict[str, type[Aligner]]:
    # the baseline first, learned methods last, else by name: a stable order for listings and runs
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "naive", kv[1].learned, kv[0])))


def _discover() -> dict[str, type[Aligner]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in BUILDING_BLOCKS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in _aligners(module):
            _add(found, cls, module.__name__)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        origin = f"entry point {entry.name} = {entry.value}"
        try:
            obj = entry.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin costs a warning, never the harness
            warnings.warn(f"method plugin {origin} does not load: {type(error).__name__}: {error}", stacklevel=2)
            continue
        classes = [obj] if isinstance(obj, type) and issubclass(obj, Aligner) else \
            _aligners(obj) if isinstance(obj, type(sys)) else []
        if not classes:
            warnings.warn(f"method plugin {origin}: neither an Aligner class nor a module defining one", stacklevel=2)
        for cls in classes:
            _add(found, cls, origin)
    for directory in filter(None, os.environ.get(INCLUDE_ENV, "").split(os.pathsep)):
        if not Path(directory).exists():
            warnings.warn(f"${INCLUDE_ENV}: {directory} does not exist", stacklevel=2)
            continue
        for cls, origin in _files(Path(directory)):
            _add(found, cls, origin)
    return _ordered(found)


def _files(path: Path) -> list[tuple[type[Aligner], str]]:
    """The `Aligner`s with a `name` of every `*.py` file in a directory (or of one file), with their files."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory of method files")
    out = []
    for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
        name = f"rebasin_included.{file.stem}_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:8]}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        out += [(cls, str(file)) for cls in _aligners(sys.modules[name])]
    return out


METHODS: dict[str, type[Aligner]] = _discover()


def include(path: str | os.PathLike) -> list[str]:
    """Register the methods of every `*.py` file in a directory (or of one file); returns their names. Worker
    processes started afterwards read the same directory (`$REBASIN_INCLUDE`)."""
    path = Path(path).resolve()
    found = dict(METHODS)
    added = []
    for cls, origin in _files(path):
        if found.get(cls.name) is not cls:
            _add(found, cls, origin)
            added.append(cls.name)
    METHODS.clear()
    METHODS.update(_ordered(found))
    known = list(filter(None, os.environ.get(INCLUDE_ENV, "").split(os.pathsep)))
    if str(path) not in known:
        os.environ[INCLUDE_ENV] = os.pathsep.join([*known, str(path)])
    return added


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


__all__ = ["METHODS", "ENTRY_POINTS", "DuplicateMethod", "include",
           "Aligner", "Alignment", "Merged", "Hyper", "make_method", "parse_method", "format_spec",
           "normalise_spec", "UnknownMethod"]
