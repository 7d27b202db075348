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
import os
import pkgutil
import sys
import warnings
from pathlib import Path

from methods.base import Aligner, Alignment, Hyper, Merged
from methods.spec import MethodSpec, UnknownMethod, format_spec, make_method, normalise_spec, parse_method

BUILDING_BLOCKS = {"base", "spec", "assignment", "activations", "graph", "scalegmn"}
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


__all__ = ["METHODS", "ENTRY_POINTS", "DuplicateMethod", "include",
           "Aligner", "Alignment", "Merged", "Hyper", "MethodSpec", "make_method", "parse_method", "format_spec",
           "normalise_spec", "UnknownMethod"]
