"""The zoo kinds presets and `bench zoo build KIND` build, and the formats `bench zoo import FORMAT` reads.

A zoo kind is a config dataclass (a recipe's options are its fields; those declared with
`zoos.options.option` are its command-line flags, defaults included) and a builder. A new kind is its
module in `zoos/` plus one `register_kind` line here; a new published format is its reader plus one
`register_format` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoos import cnn, importers, inr
from zoos.zoo import Zoo

# builder(options, data, workers, progress, checkpoints, device) -> Zoo: `options` a recipe's (a subset of the
# config's fields), `data` the images' source, `checkpoints` a directory keeping finished networks (or None)
Builder = Callable[[dict, str, int, bool, "Path | None", str], Zoo]


@dataclass(frozen=True)
class ZooKind:
    name: str
    help: str  # one line, for `bench zoo build --help`
    config: type  # the dataclass whose fields are the kind's options
    build: Builder
    flags: tuple[str, ...]  # the config fields `bench zoo build NAME` takes before the common ones, in --help order
    uses_device: bool = False  # the builder uses the device (and the zoo's cache entry names it)


@dataclass(frozen=True)
class ZooFormat:
    name: str
    options: type  # a dataclass; its fields with a flag are the format's flags
    read: Callable[[Path, object], Zoo]  # read(path, options) -> Zoo


KINDS: dict[str, ZooKind] = {}
FORMATS: dict[str, ZooFormat] = {}


def register_kind(kind: ZooKind) -> ZooKind:
    if kind.name in KINDS or kind.name == "path":  # "path" names a stored zoo in a recipe
        raise ValueError(f"zoo kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def register_format(fmt: ZooFormat) -> ZooFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"zoo format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


_TRAINED = ("activation", "n_nets", "epochs")
register_kind(ZooKind("inr", "SIRENs fitted to 28x28 images", inr.InrZooConfig, inr.build_inr_kind,
                      ("n_images", "fits_per_image", "extra_train_images", "steps", "lr", "hidden", "depth"),
                      uses_device=True))
register_kind(ZooKind("cnn", "Unterthiner CNN Zoo nets trained on the data", cnn.CnnZooConfig,
                      cnn.trained_zoo(cnn.CnnZooConfig), (*_TRAINED, "channels", "train_fraction", "recipe")))
register_kind(ZooKind("mlp", "MLPs 784-w1-..-wk-10 trained on the data like the CNN zoo", cnn.CnnZooConfig,
                      cnn.build_mlp_kind, ("widths", *_TRAINED, "train_fraction", "recipe")))
register_kind(ZooKind("vgg", "VGG nets (3x3 conv-BN-act stages, max pooling, GAP) trained like the CNN zoo",
                      cnn.VggZooConfig, cnn.trained_zoo(cnn.VggZooConfig),
                      (*_TRAINED, "channels", "train_fraction", "recipe", "batchnorm")))
register_kind(ZooKind("resnet", "ResNet-20-style nets (conv-BN basic blocks, residual streams) trained like the CNN "
                                "zoo", cnn.ResnetZooConfig, cnn.trained_zoo(cnn.ResnetZooConfig),
                      (*_TRAINED, "channels", "train_fraction", "recipe", "blocks")))

register_format(ZooFormat("dwsnets", importers.DwsnetsOptions, importers.import_dwsnets))
register_format(ZooFormat("nfn", importers.NfnOptions, importers.import_nfn))
register_format(ZooFormat("cnnzoo", importers.CnnZooOptions, importers.import_cnn_zoo))
register_format(ZooFormat("state-dicts", importers.StateDictsOptions, importers.import_state_dicts))
