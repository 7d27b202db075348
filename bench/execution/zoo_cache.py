"""Zoos by recipe, built once and cached under `<results>/zoos/` keyed on the recipe."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from filelock import FileLock

from bench.execution.presets import ZooRecipe
from zoos.cnn import CnnZooConfig, build_cnn_zoo
from zoos.data import resolve_source
from zoos.inr import build_inr_zoo
from zoos.zoo import Zoo, load_zoo, save_zoo


def recipe_id(recipe: ZooRecipe, data: str, device: str = "cpu") -> str:
    fields = {"kind": recipe.kind, "options": recipe.options, "data": resolve_source(data)}
    if recipe.kind in DEVICE_BUILDERS and torch.device(device).type != "cpu":  # fitted elsewhere: other rounding
        fields["device"] = torch.device(device).type
    text = json.dumps(fields, sort_keys=True, default=list)
    return f"{recipe.kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _inr(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, device: str) -> Zoo:
    return build_inr_zoo(source=data, progress=progress, device=device, workers=workers, **options)


def _trained(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, **fixed) -> Zoo:
    """A zoo of trained classifiers. `recipe` names a paper's recipe (zoos.recipes) the other options
    override; `snapshots` (epochs) keeps networks of those epochs where zoos of fewer epochs find them."""
    options = {**options, **fixed}
    snapshots = tuple(options.pop("snapshots", ()))
    recipe = options.pop("recipe", None)
    config = CnnZooConfig.from_recipe(recipe, source=data, **options) if recipe else \
        CnnZooConfig(source=data, **options)
    # trained in worker processes on the CPU whatever the device: small nets, where processes pay more
    return build_cnn_zoo(config, workers=workers, progress=progress, checkpoints=checkpoints, snapshots=snapshots,
                         snapshot_dir=checkpoints.parent / "snapshots" if checkpoints is not None else None)


def _cnn(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, device: str) -> Zoo:
    return _trained(options, data, workers, progress, checkpoints)


def _mlp(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, device: str) -> Zoo:
    if not options.get("widths"):
        raise ValueError("an mlp zoo recipe needs its hidden widths, e.g. widths=(512, 512, 512)")
    return _trained({**options, "widths": tuple(options["widths"])}, data, workers, progress, checkpoints)


def _arch(kind: str):
    def build(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, device: str) -> Zoo:
        return _trained(options, data, workers, progress, checkpoints, arch=kind)
    return build


# zoo kind -> builder(options, data, workers, progress, checkpoints, device); a new kind is its
# generator module in zoos/ plus one line here
BUILDERS = {"inr": _inr, "cnn": _cnn, "mlp": _mlp, "vgg": _arch("vgg"), "resnet": _arch("resnet")}
DEVICE_BUILDERS = ("inr",)  # kinds whose builder uses the device (and whose cache entry names it)


def build(recipe: ZooRecipe, data: str = "auto", workers: int = 2, progress: bool = True,
          checkpoints: Path | None = None, device: str = "cpu") -> Zoo:
    if recipe.kind == "path":
        return load_zoo(recipe.options["path"])
    if recipe.kind not in BUILDERS:
        raise ValueError(f"unknown zoo kind {recipe.kind!r} (known: {', '.join(BUILDERS)}, path)")
    return BUILDERS[recipe.kind](recipe.options, data, workers, progress, checkpoints, device)


def get_zoo(recipe: ZooRecipe, cache: Path, data: str = "auto", workers: int = 2, progress: bool = True,
            device: str = "cpu") -> Zoo:
    """Load the cached zoo for `recipe`, building (and caching) it on first use."""
    if recipe.kind == "path":
        return load_zoo(recipe.options["path"])
    directory = Path(cache) / recipe_id(recipe, data, device)
    if (directory / "spec.json").is_file():
        return load_zoo(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # one builder per recipe: a concurrent run waits here, then loads what the first one built
    with FileLock(directory.parent / f"{directory.name}.lock"):
        if not (directory / "spec.json").is_file():
            # networks trained so far are kept here: a killed build resumes with the rest
            partial = directory.parent / f"{directory.name}.partial"
            save_zoo(build(recipe, data, workers, progress, partial, device), directory)
            shutil.rmtree(partial, ignore_errors=True)
    return load_zoo(directory)  # carries the stored content hash
