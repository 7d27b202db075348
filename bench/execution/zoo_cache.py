"""Zoos by recipe, built once and cached under `<results>/zoos/` keyed on the recipe."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from filelock import FileLock

from bench.execution.presets import ZooRecipe
from zoos.data import resolve_source
from zoos.kinds import KINDS
from zoos.zoo import Zoo, load_zoo, save_zoo


def recipe_id(recipe: ZooRecipe, data: str, device: str = "cpu") -> str:
    fields = {"kind": recipe.kind, "options": recipe.options, "data": resolve_source(data)}
    uses_device = recipe.kind in KINDS and KINDS[recipe.kind].uses_device
    if uses_device and torch.device(device).type != "cpu":  # fitted elsewhere: other rounding
        fields["device"] = torch.device(device).type
    text = json.dumps(fields, sort_keys=True, default=list)
    return f"{recipe.kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def build(recipe: ZooRecipe, data: str = "auto", workers: int = 2, progress: bool = True,
          checkpoints: Path | None = None, device: str = "cpu") -> Zoo:
    if recipe.kind == "path":
        return load_zoo(recipe.options["path"])
    if recipe.kind not in KINDS:
        raise ValueError(f"unknown zoo kind {recipe.kind!r} (known: {', '.join(KINDS)}, path)")
    return KINDS[recipe.kind].build(recipe.options, data, workers, progress, checkpoints, device)


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
