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

# pixels*2-1 (CNN Zoo), pixels/255 (Git Re-Basin), (pixels/255 - 0.1307) / 0.3081 (MNIST's mean and std: C2M3)
INPUT_SCALINGS = {"signed": "[-1, 1]", "unit": "[0, 1]", "mnist_standard": "standardised by MNIST's mean/std"}
SCHEDULES = ("constant", "warmup_cosine", "cosine_restarts")


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe. Values are fixed (no sampling): only the seed differs between networks."""

    name: str
    reference: str  # repository, file and commit it was read from
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"  # warmup_cosine: linear warm-up over `warmup_steps`, cosine decay to 0;
    # cosine_restarts: PyTorch's CosineAnnealingWarmRestarts stepped per epoch, T_0 = `restart_epochs`, T_mult 2
    warmup_steps: int = 0
    restart_epochs: int = 0
    grad_clip: float = 0.0  # max global gradient norm (0: none)
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
                    schedule=self.schedule, warmup_steps=self.warmup_steps, restart_epochs=self.restart_epochs,
                    grad_clip=self.grad_clip, momentum=self.momentum, weight_decay=self.weight_decay, recipe=self.name)


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

# Sinkhorn re-basin's MLP (MLP2: 784-512-512-10, ReLU, PyTorch's default Linear init) on the first 10k MNIST
# training images (9000 train / 1000 val), inputs /255, AdamW lr 1e-3 (weight decay: torch's default 0.01),
# batch 1000, 50 epochs; model A without dropout, model B with 0.25 (here: none for either).
# fagp/sinkhorn-rebasin examples/main_lmc_mlp.py, examples/utils/train.py, examples/models/mlp.py @ 1c601d4
register(Recipe("sinkhorn-rebasin-mlp", "fagp/sinkhorn-rebasin examples/main_lmc_mlp.py @ 1c601d4",
                optimizer="adam", lr=1e-3, weight_decay=0.01, batch_size=1000, epochs=50, init="pytorch_default",
                input_scaling="unit", train_fraction=0.15))

# C2M3's MLP 784-512-512-512-256-C (ReLU, PyTorch's default init) on EMNIST letters, inputs standardised
# with MNIST's mean/std, Adam lr 1e-3, batch 512, CosineAnnealingWarmRestarts(T_0=10, T_mult=2) per epoch,
# gradient clipping 10, 100 epochs capped at 10k steps (~45 EMNIST epochs).
# crisostomi/cycle-consistent-model-merging conf/nn/mlp.yaml, src/ccmm/models/mlp.py @ ea1eca7
# (conf/train/mlp.yaml @ ac14746)
register(Recipe("c2m3-mlp", "crisostomi/cycle-consistent-model-merging conf/nn/mlp.yaml @ ea1eca7",
                optimizer="adam", lr=1e-3, batch_size=512, epochs=45, init="pytorch_default",
                input_scaling="mnist_standard", schedule="cosine_restarts", restart_epochs=10, grad_clip=10.0))

# The Small CNN Zoo (Unterthiner et al. 2020): 86 epochs, batch 512, inputs /255 then [-1, 1], L2 on kernels,
# dropout after each conv, zero biases; per network: train fraction {0.1, 0.25, 0.5, 1.0}, optimizer, lr,
# L2, dropout and init sampled (ranges from the paper, arXiv:2002.11448, as ZOOS.md has them; the code's flags
# do not fix them). google-research/google-research dnn_predict_accuracy/train_network.py @ 0c1bbe5, README @ 0ff5644.
# Sampled, not fixed: `CNN_ZOO` below holds the CnnZooConfig fields (no Recipe).
CNN_ZOO = dict(epochs=86, batch_size=512, train_fraction=(0.1, 0.25, 0.5, 1.0), optimizers=("adam", "rmsprop", "sgd"),
               lr=(5e-4, 5e-2), l2=(1e-8, 1e-2), dropout=(0.0, 0.7),
               inits=("glorot_normal", "he_normal", "orthogonal", "normal", "truncated_normal"), init_std=(1e-3, 0.5))
CNN_ZOO_REFERENCE = "google-research/google-research dnn_predict_accuracy/train_network.py @ 0c1bbe5"


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
    if config.get("schedule", "constant") == "warmup_cosine":
        parts.append(f"warm-up cosine ({config.get('warmup_steps', 0)} warm-up steps)")
    elif config.get("schedule", "constant") == "cosine_restarts":
        parts.append(f"cosine restarts per epoch (T_0 {config.get('restart_epochs')}, T_mult 2)")
    if config.get("grad_clip"):
        parts.append(f"gradient norm clipped at {config['grad_clip']:g}")
    if config.get("momentum"):
        parts.append(f"momentum {config['momentum']:g}")
    if config.get("weight_decay"):
        parts.append(f"weight decay {config['weight_decay']:g}")
    l2 = config.get("l2", (1e-8, 1e-4))
    if l2[1] > 0:
        parts.append(f"L2 {_range(*l2)}")
    epochs = config.get("epochs", 3)
    parts.append(f"batch {config.get('batch_size', 128)}, {epochs} epoch{'s' if epochs != 1 else ''}")
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


def lr_factor(schedule: str, step: int, total: int, warmup: int, steps_per_epoch: int = 1,
              restart_epochs: int = 0) -> float:
    """Multiplier of the peak learning rate at `step` of `total` (warmup_cosine: optax's
    warmup_cosine_decay_schedule to 0; cosine_restarts: CosineAnnealingWarmRestarts stepped per epoch)."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine_restarts":
        epoch, period = step // steps_per_epoch, restart_epochs
        while epoch >= period:  # T_mult = 2: each cycle twice as long as the last
            epoch, period = epoch - period, 2 * period
        return 0.5 * (1 + math.cos(math.pi * epoch / period))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
