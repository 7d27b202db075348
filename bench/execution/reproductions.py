"""The source papers' headline experiments in their own regimes: `bench reproduce <paper>`.

Each reproduction is a list of benchmarks (zoos trained with the paper's recipe, `zoos.recipes`; the
paper's protocol and methods) run through `run_benchmark`, so it resumes by key after a kill and
shares zoos through the zoo cache. Fashion-MNIST stands in for MNIST / EMNIST / CIFAR-10 (the
originals cannot be had here); every other remaining deviation from the paper is listed beside the
reproduction and printed in `results/reproductions.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.execution.presets import Benchmark, ZooRecipe


@dataclass(frozen=True)
class Reproduction:
    paper: str  # bibliography entry
    benchmarks: tuple[Benchmark, ...]
    deviations: tuple[str, ...]
    budget: str  # measured wall time on 2 cores (README, reproductions.md)
    # what cannot run on this CPU: the command that would, and its cost measured on a slice
    not_runnable: tuple[str, ...] = field(default_factory=tuple)


# ---- Git Re-Basin (Ainsworth, Hayase, Srinivasa; ICLR 2023) --------------------------------------------------
GR_EPOCHS = 20  # the reference trains 100 (see deviations)
GR_SNAPSHOTS = (1, 2, 5, 10)  # barrier vs epoch: networks of the same runs after these epochs
GR_WIDTHS = (32, 64, 128, 256)  # barrier vs width (512 is the main zoo)
_GR_ZOO = dict(recipe="git-rebasin-mlp", n_nets=16, epochs=GR_EPOCHS, n_eval=None, splits=(0.0, 0.0, 1.0))
# 16 networks, every one in the test split: 8 disjoint pairs, scored on all 10k test images at 25 points
_GR_PAIRS = {"pairs": dict(n_pairs=8, lambdas=25)}
GIT_REBASIN = Reproduction(
    paper="Ainsworth, Hayase, Srinivasa. Git Re-Basin: Merging Models modulo Permutation Symmetries. ICLR 2023. "
          "arXiv:2209.04836",
    benchmarks=(
        Benchmark("git-rebasin-mlp",
                  zoos=(ZooRecipe("mlp", dict(_GR_ZOO, widths=(512, 512, 512), snapshots=GR_SNAPSHOTS)),),
                  protocols=_GR_PAIRS,
                  methods=("naive", "git-rebasin", "activation-matching", "ste"),
                  # activation matching reads 8192 training images (the reference: all 60k)
                  overrides={"activation-matching": {"batch": 8192}}),
        Benchmark("git-rebasin-epochs",
                  zoos=tuple(ZooRecipe("mlp", dict(_GR_ZOO, widths=(512, 512, 512), epochs=e)) for e in GR_SNAPSHOTS),
                  protocols=_GR_PAIRS, methods=("naive", "git-rebasin")),
        Benchmark("git-rebasin-widths",
                  zoos=tuple(ZooRecipe("mlp", dict(_GR_ZOO, widths=(w, w, w))) for w in GR_WIDTHS),
                  protocols=_GR_PAIRS, methods=("naive", "git-rebasin")),
    ),
    deviations=(
        "Fashion-MNIST instead of MNIST (the same 28x28 grey format; a harder task, so higher losses)",
        f"{GR_EPOCHS} epochs instead of 100 (CPU budget); barrier vs epoch shows where the barrier stands by then",
        "activation matching correlates 8192 training images, not all 60k",
        "the straight-through estimator runs far fewer steps than the reference's 250 epochs (see `ste`'s docstring)",
        "barrier vs width: the reference studies width on CIFAR-10 VGG-16 / ResNet-20; here the MLP's hidden width",
        "PyTorch instead of JAX/flax; LeCun-normal init reimplemented as flax's truncated-normal variance scaling",
    ),
    budget="measured in results/reproductions.md",
)

REPRODUCTIONS: dict[str, Reproduction] = {"git-rebasin": GIT_REBASIN}


def get(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        from zoos.names import unknown_name

        raise ValueError(unknown_name("reproduction", name, REPRODUCTIONS))
    return REPRODUCTIONS[name]
