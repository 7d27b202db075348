"""Training recipes read from the source papers' reference code: everything that changes how a zoo's
networks are made, as data.

A recipe fills the training fields of a `zoos.cnn.CnnZooConfig` (`CnnZooConfig.from_recipe`); the zoo
records the resulting config, so the recipe is part of the zoo's key, and `describe` turns any zoo's
recorded config (recipe-made or sampled, like the CNN Zoo's) into the one line that tables and
`bench zoo info` show. Each recipe cites the file it was read from (repository, path, commit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INPUT_SCALINGS = {"signed": "[-1, 1]", "unit": "[0, 1]"}  # pixels*2-1 (CNN Zoo) or pixels/255 (Git Re-Basin)
SCHEDULES = ("constant", "warmup_cosine")


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe. Values are fixed (no sampling): only the seed differs between networks."""

    name: str
    reference: str  # repository, file and commit it was read from
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"  # warmup_cosine: linear warm-up over `warmup_steps`, cosine decay to 0
    warmup_steps: int = 0
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0  # decoupled (AdamW); 0: plain Adam
    l2: float = 0.0  # added to the loss on kernels (Keras convention)
    batch_size: int = 128
    epochs: int = 10
    init: str = "lecun_normal"
    input_scaling: str = "unit"
    train_fraction: float = 1.0
    dropout: float = 0.0
    augmentation: str = "none"  # none of our recipes augments; named so that a table can say so

    def config_fields(self) -> dict:
        """The CnnZooConfig fields this recipe sets."""
        return dict(optimizers=(self.optimizer,), lr=(self.lr, self.lr), l2=(self.l2, self.l2),
                    dropout=(self.dropout, self.dropout), inits=(self.init,), train_fraction=(self.train_fraction,),
                    batch_size=self.batch_size, epochs=self.epochs, input_scaling=self.input_scaling,
                    schedule=self.schedule, warmup_steps=self.warmup_steps, momentum=self.momentum,
                    weight_decay=self.weight_decay, recipe=self.name)


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    RECIPES[recipe.name] = recipe
    return recipe


# Git Re-Basin's MNIST MLP 784-512-512-512-10: flax Dense (LeCun-normal kernels, zero biases), inputs
# ByteToFloat (/255), Adam 1e-3, batch 500, 100 epochs, the whole training set, no augmentation.
# samuela/git-re-basin src/mnist_mlp_train.py @ 7a989c1b2562361be4f04070f87da8d518d22c55 (lr: its Adam runs)
register(Recipe("git-rebasin-mlp", "samuela/git-re-basin src/mnist_mlp_train.py @ 7a989c1",
                optimizer="adam", lr=1e-3, batch_size=500, epochs=100, init="lecun_normal", input_scaling="unit"))


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


def _range(lo: float, hi: float, fmt=lambda v: f"{v:g}") -> str:
    return fmt(lo) if lo == hi else f"log-U[{fmt(lo)}, {fmt(hi)}]"


def describe(config: dict) -> str:
    """One line: how a classifier zoo's networks were trained, from its recorded config."""
    if not config:
        return ""
    parts = []
    name = config.get("recipe", "")
    opts = config.get("optimizers", ("adam",))
    opt = "/".join(o if o != "adam" or not config.get("weight_decay") else "adamw" for o in opts)
    lr = config.get("lr", (1e-3, 5e-3))
    parts.append(f"{opt} lr {_range(*lr)}")
    if config.get("schedule", "constant") != "constant":
        parts.append(f"{config['schedule']} ({config.get('warmup_steps', 0)} warm-up steps)")
    if config.get("momentum"):
        parts.append(f"momentum {config['momentum']:g}")
    if config.get("weight_decay"):
        parts.append(f"weight decay {config['weight_decay']:g}")
    l2 = config.get("l2", (1e-8, 1e-4))
    if l2[1] > 0:
        parts.append(f"L2 {_range(*l2)}")
    parts.append(f"batch {config.get('batch_size', 128)}, {config.get('epochs', 3)} epochs")
    inits = config.get("inits", ("glorot_normal",))
    parts.append(f"init {'/'.join(inits)}")
    fractions = config.get("train_fraction", (1.0,))
    parts.append("all training images" if tuple(fractions) == (1.0,)
                 else f"train fraction {'/'.join(f'{f:g}' for f in fractions)}")
    drop = config.get("dropout", (0.0, 0.1))
    if drop[1] > 0:
        parts.append(f"dropout {drop[0]:g}-{drop[1]:g}")
    parts.append(f"inputs {INPUT_SCALINGS[config.get('input_scaling', 'signed')]}, no augmentation")
    text = ", ".join(parts)
    if name and name in RECIPES:
        text = f"{name} recipe: {text} ({RECIPES[name].reference})"
    return text


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate at `step` of `total` (optax's warmup_cosine_decay to 0)."""
    if schedule == "constant":
        return 1.0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
