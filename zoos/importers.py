"""The published formats `bench zoo import FORMAT PATH` reads: each one's options (their fields with a flag are
its command-line flags) and how it reads PATH with them (the readers are in `zoos.formats` and
`zoos.state_dicts`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from zoos.options import option
from zoos.zoo import Zoo

_IMAGES = "IDX directory with the INRs' source images"
_DATASET = ("the images it was trained on, scored on their test split: fashion-mnist, or a folder of MNIST IDX "
            "files, CIFAR-10 batches (bin or py) or SVHN *_32x32.mat (default: from metrics' config.dataset)")
_N_EVAL = "test images each network is scored on: 'all' (the full test split, default) or a number (a seeded sample)"


def _positive(text: str, option_name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{option_name} {text!r}: expected 'all' or a positive number")
    return value


def _step(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--step {text!r}: expected 'final', 'all' or a step number") from None


@dataclass(frozen=True)
class DwsnetsOptions:
    images: Path | None = option(None, "--images", _IMAGES, type=Path)
    splits: Path | None = option(None, "--splits", "the zoo's splits JSON, which then decides the networks and "
                                 "their splits exactly (default: PATH/splits.json when present)", type=Path)


def import_dwsnets(path: Path, options: DwsnetsOptions) -> Zoo:
    from zoos.formats import load_dwsnets_inrs

    splits = options.splits or (path / "splits.json" if (path / "splits.json").is_file() else None)
    return load_dwsnets_inrs(path, splits_json=splits, images=options.images)


@dataclass(frozen=True)
class NfnOptions:
    images: Path | None = option(None, "--images", _IMAGES, type=Path)
    prefix: str = option("randinit_smaller", "--prefix", "directory prefix (default: {default})")
    value_range: tuple[float, float] = option((-1.0, 1.0), "--value-range", "the pixel range the SIRENs were "
                                              "fitted to (default: -1 1)", type=float, nargs=2, metavar=("LO", "HI"))


def import_nfn(path: Path, options: NfnOptions) -> Zoo:
    from zoos.formats import load_nfn_sirens

    return load_nfn_sirens(path, images=options.images, prefix=options.prefix, value_range=tuple(options.value_range))


@dataclass(frozen=True)
class CnnZooOptions:
    dataset: str | None = option(None, "--dataset", _DATASET)  # first: what a misplaced --images is told to use
    activation: str | None = option(None, "--activation", "keep networks with this activation")
    n_eval: str = option("all", "--n-eval", _N_EVAL)
    step: str = option("final", "--step", "'final' (each run's last checkpoint), a step number, or 'all' "
                       "(default: final)")
    order: Path | None = option(None, "--order", "headerless CSV of row indices applied first (NFN's "
                                "cifar10_split.csv), to reproduce NFN's and ScaleGMN's split", type=Path)


def import_cnn_zoo(path: Path, options: CnnZooOptions) -> Zoo:
    from zoos.formats import load_cnn_zoo

    step = None if options.step == "all" else options.step if options.step == "final" else _step(options.step)
    zoo = load_cnn_zoo(path, activation=options.activation, step=step, order=options.order, dataset=options.dataset)
    if options.n_eval != "all":
        zoo.task["n_eval"] = _positive(options.n_eval, "--n-eval")
    return zoo


@dataclass(frozen=True)
class StateDictsOptions:
    module: str | None = option(None, "--module", "the networks' module, package.module:Class (its weight space is "
                                "derived with torch.fx)")
    kwargs: str = option("{}", "--kwargs", "JSON keyword arguments for the module (default: {})")
    input_shape: tuple[int, ...] = option((1, 28, 28), "--input-shape", "one input's shape (default: {default})",
                                          type=int, low=1, nargs="+")
    dataset: str | None = option(None, "--dataset", _DATASET)
    n_eval: str = option("all", "--n-eval", _N_EVAL)


def import_state_dicts(path: Path, options: StateDictsOptions) -> Zoo:
    from zoos.state_dicts import load_state_dicts, module_from_path

    if not options.module:
        raise ValueError("state-dicts: --module package.module:Class is required")
    try:
        kwargs = json.loads(options.kwargs)
    except ValueError as error:
        raise ValueError(f"--kwargs {options.kwargs!r}: not JSON ({error})") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--kwargs {options.kwargs!r}: expected a JSON object")
    n_eval = None if options.n_eval == "all" else _positive(options.n_eval, "--n-eval")
    return load_state_dicts(path, module_from_path(options.module, kwargs), tuple(options.input_shape),
                            options.dataset or "auto", n_eval)
