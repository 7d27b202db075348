"""A zoo from plain `state_dict` files of a user's module (`bench zoo import state-dicts`).

The module (`package.module:Class`, built with keyword arguments) gives the weight space through
`zoos.trace.trace_space`; every file in the directory (`*.pt`, `*.pth`, `*.safetensors`, sorted by
name) gives one network, its entries paired with the space's parameters by name. `.pt` / `.pth`
files are read with `torch.load(weights_only=True)`: tensors and plain containers only, never
arbitrary pickled objects, through `zoos.files.load_tensors` (FIFOs and devices refused, zip members
sized before they are inflated). Every problem is one line naming the file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import torch

from zoos.files import InputError, load_tensors
from zoos.space import SpecError
from zoos.trace import state_params, trace_space
from zoos.zoo import Zoo, ZooError

SUFFIXES = (".pt", ".pth", ".safetensors")


def module_from_path(spec: str, kwargs: dict | None = None) -> torch.nn.Module:
    """`package.module:Class` instantiated with `kwargs`."""
    path, _, name = spec.partition(":")
    if not path or not name:
        raise ValueError(f"--module {spec!r}: expected package.module:Class")
    try:
        cls = getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--module {spec!r}: {type(error).__name__}: {error}") from None
    try:
        return cls(**(kwargs or {}))
    except TypeError as error:
        raise ValueError(f"--module {spec!r}: cannot build it with {kwargs or {}}: {error}") from None


def read_state(path: Path) -> dict:
    """One file's state_dict (a checkpoint dict holding one under 'state_dict' is unwrapped), through the
    guarded reader every importer shares (`zoos.files.load_tensors`: a regular file of bounded size, zip
    members sized before inflating, no pickled code); integer tensors are refused (weights are floats)."""
    try:
        state = load_tensors(path)
    except InputError as error:
        raise ZooError(str(error), "weights") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ZooError(f"{path}: expected a dict of tensors (a state_dict)", "weights")
    for key, value in state.items():
        if not torch.is_floating_point(value) and not str(key).endswith("num_batches_tracked"):
            raise ZooError(f"{path}: {key} has dtype {value.dtype}, expected a floating point tensor", "weights")
    return state


def load_state_dicts(directory: Path, module: torch.nn.Module, input_shape: tuple[int, ...],
                     dataset: str = "auto", n_eval: int | None = 2000) -> Zoo:
    files = sorted(p for p in Path(directory).iterdir() if p.suffix in SUFFIXES) if Path(directory).is_dir() else []
    if not files:
        raise ZooError(f"{directory}: no state_dict files ({', '.join(SUFFIXES)})", "weights")
    space = trace_space(module, tuple(input_shape))
    nets = []
    for path in files:
        try:
            nets.append(state_params(space, read_state(path)))
        except SpecError as error:
            raise ZooError(f"{path}: {error}", "weights") from None
    params = {k: torch.cat([n[k] for n in nets]) for k in space.shapes()}
    meta = pd.DataFrame({"id": range(len(files)), "file": [p.name for p in files], "split": "test"})
    task = {"kind": "classifier", "dataset": dataset, "n_eval": n_eval}
    return Zoo(f"{type(module).__name__.lower()}-{Path(directory).name}", space, params, meta, task)


__all__ = ["load_state_dicts", "module_from_path", "read_state"]
