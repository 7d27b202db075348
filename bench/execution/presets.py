"""Benchmark presets: which zoos, methods and protocols a `bench run` covers.

`smoke` runs in seconds (tests, CI); `default` is the embedded default benchmark of `make run`
(<= 15 minutes on 2 cores, zoos included and cached); `full` is paper-sized for a workstation
or cluster. Each preset declares its methods: a new method file or plugin joins a run when named
(`bench run --methods NAME`) or added to a preset's list here, never by being registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.store.claims_catalog import AE


@dataclass(frozen=True)
class ZooRecipe:
    kind: str  # "inr" | "cnn" | "path"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    zoos: tuple[ZooRecipe, ...]
    protocols: dict  # protocol name -> options
    methods: tuple[str, ...] | None = None  # None: every registered method (ad hoc benchmarks; presets declare theirs)
    seed: int = 0
    # hyperparameters a preset sets for a method named without any (keeps the budget)
    overrides: dict = field(default_factory=dict)
    # variants run besides `methods` when the user names no methods (e.g. a committed pretrained model)
    extra: tuple[str, ...] = ()


# what the default and full benchmarks run: every method of this repository
BENCHMARK_METHODS = ("naive", "activation-matching", "c2m3", "canonical", "cca-merge", "constant", "git-rebasin",
                     "mergemany", "otfusion", "otfusion-sinkhorn", "sign-rebasin", "sinkhorn-rebasin", "ste", "zipit",
                     "gnn-ae", "scalegmn-ae")
# what the smoke benchmark runs: one method of each family the harness compares (the baseline, weight matching,
# its sign/scale extension, soft permutations, cycle-consistent multi-model matching, the equivariant
# autoencoder); `bench run --preset smoke --methods ...` checks any other at the same size
SMOKE_METHODS = ("naive", "git-rebasin", "sign-rebasin", "sinkhorn-rebasin", "c2m3", "scalegmn-ae")

PRESETS = {
    "smoke": Benchmark(
        "smoke",
        methods=SMOKE_METHODS,
        # n >= 2 units in every cell of every protocol on both zoos, under 30 s on 2 cores: 10 images (2 of
        # them test images: 2 pairs of fits; 3 fits each for merges of 3), 8 CNNs half of them test networks
        # scored on 256 test images; orbit plants permutations only (P; the default preset adds PS) without
        # noise (the cell with a known answer: exact methods recover what was planted); REPAIR measures 64
        # training images; the autoencoders train 1 epoch, the STE 2 steps, Sinkhorn 10 and entropic OT runs
        # at reg 0.1 (they are checked for running, not for quality)
        zoos=(
            ZooRecipe("inr", dict(n_images=10, fits_per_image=3, steps=150)),
            ZooRecipe("cnn", dict(activation="relu", n_nets=8, epochs=1, train_fraction=(0.05,), n_eval=256,
                                  splits=(0.5, 0.0, 0.5))),
        ),
        protocols={"pairs": dict(n_pairs=2, lambdas=5),
                   "orbit": dict(n_nets=2, actions=("P",), eps=(0.0,), lambdas=5),
                   "merge": dict(sizes=(2, 3), n_groups=2, max_triples=1, repair_images=64)},
        overrides={"ste": {"batch": 128, "steps": 2}, "sinkhorn-rebasin": {"batch": 128, "steps": 10},
                   "otfusion-sinkhorn": {"reg": 0.1},
                   "scalegmn-ae": {"epochs": 1}, "gnn-ae": {"epochs": 1}},
    ),
    "default": Benchmark(
        "default",
        methods=BENCHMARK_METHODS,
        zoos=(
            ZooRecipe("inr", dict(n_images=160, fits_per_image=2, steps=1000)),
            # 32 test networks: 16 disjoint pairs; 12 train the autoencoders (4 validate). Scored on 256 test
            # images (the same for every method: comparisons are paired), which halves the evaluation time
            ZooRecipe("cnn", dict(activation="relu", n_nets=48, epochs=3, n_eval=256, splits=(0.25, 0.085, 0.665))),
            ZooRecipe("cnn", dict(activation="tanh", n_nets=48, epochs=3, n_eval=256, splits=(0.25, 0.085, 0.665))),
        ),
        # 16 units in every reported cell (pairs; orbit per action and eps; merge per N), within 15
        # minutes on 2 cores: orbit keeps the permutation and the full group at one noise level, merges
        # N = 2 and 3 (cycle error over the one triple); Sinkhorn takes 30 steps
        protocols={"pairs": dict(n_pairs=16, lambdas=7),
                   "orbit": dict(n_nets=16, actions=("P", "PS"), eps=(1e-2,), lambdas=7),
                   "merge": dict(sizes=(2, 3), n_groups=16, max_triples=1)},
        overrides={"sinkhorn-rebasin": {"batch": 128, "steps": 30}, "ste": {"batch": 128, "steps": 10}},
        # the best autoencoder the budget allows: the committed model of `bench ae study` (4000 training
        # INRs; used on the INR zoo it applies to, skipped with the reason elsewhere), beside the one
        # trained here on the zoo's own 192 training networks
        extra=(AE,),
    ),
    "full": Benchmark(
        "full",
        methods=BENCHMARK_METHODS,
        zoos=(
            ZooRecipe("inr", dict(n_images=2000, fits_per_image=2, steps=1000)),
            ZooRecipe("cnn", dict(activation="relu", n_nets=400, epochs=10, train_fraction=(0.1, 0.25, 0.5, 1.0),
                                  optimizers=("adam", "rmsprop", "sgd"), lr=(5e-4, 5e-2), l2=(1e-8, 1e-2),
                                  dropout=(0.0, 0.7), inits=("glorot_normal", "he_normal", "orthogonal", "normal",
                                                             "truncated_normal"), init_std=(1e-3, 0.5),
                                  batch_size=512)),
            ZooRecipe("cnn", dict(activation="tanh", n_nets=400, epochs=10, train_fraction=(0.1, 0.25, 0.5, 1.0),
                                  optimizers=("adam", "rmsprop", "sgd"), lr=(5e-4, 5e-2), l2=(1e-8, 1e-2),
                                  dropout=(0.0, 0.7), inits=("glorot_normal", "he_normal", "orthogonal", "normal",
                                                             "truncated_normal"), init_std=(1e-3, 0.5),
                                  batch_size=512)),
        ),
        protocols={"pairs": dict(n_pairs=64, lambdas=40),
                   "orbit": dict(n_nets=10, eps=(0.0, 1e-3, 1e-2, 5e-2), lambdas=40),
                   "merge": dict(sizes=(2, 3, 5, 8), n_groups=10)},
    ),
}

# The plain-MLP setting of the re-basin papers on Fashion-MNIST: Git Re-Basin's 784-512-512-512-10 and
# C2M3's 784-512-512-512-256-10, 16 networks each (seeds and hyperparameters varied as in the CNN zoo)
PRESETS["mlp"] = Benchmark(
    "mlp",
    zoos=(ZooRecipe("mlp", dict(widths=(512, 512, 512), n_nets=16, epochs=3, n_eval=1000, splits=(0.25, 0.0, 0.75))),
          ZooRecipe("mlp", dict(widths=(512, 512, 512, 256), n_nets=16, epochs=3, n_eval=1000,
                                splits=(0.25, 0.0, 0.75)))),
    protocols={"pairs": dict(n_pairs=4, lambdas=11), "merge": dict(sizes=(2, 3), n_groups=2, max_triples=1)},
    methods=("naive", "git-rebasin", "activation-matching", "otfusion", "c2m3", "mergemany", "zipit", "cca-merge"),
)

# Width ablation: the same zoo recipes at several widths (CNN channels, SIREN hidden units); pairs
# and the combinability probes, which record each zoo's width so that reports can plot against it.
WIDTHS = {"cnn": (4, 8, 16, 32, 64), "inr": (8, 16, 32, 64, 128)}
PRESETS["width"] = Benchmark(
    "width",
    zoos=(*(ZooRecipe("cnn", dict(activation="relu", n_nets=10, epochs=2, channels=c)) for c in WIDTHS["cnn"]),
          *(ZooRecipe("inr", dict(n_images=24, fits_per_image=2, steps=500, hidden=h)) for h in WIDTHS["inr"])),
    protocols={"pairs": dict(n_pairs=4, lambdas=25),
               "combine": dict(n_pairs=2, n_triples=0, samples=1,
                               probes=("line", "uniform", "subcube", "hyperplane", "bernoulli"))},
    methods=("naive", "git-rebasin", "sign-rebasin"),
)
# Mode combinability on the default zoos (shared with `default` through the zoo cache).
PRESETS["combine"] = Benchmark(
    "combine",
    zoos=PRESETS["default"].zoos,
    protocols={"combine": dict(n_pairs=4, n_triples=2)},
    methods=("naive", "git-rebasin", "sign-rebasin"),
)
# Architectures with BatchNorm and residual streams (weight spaces derived by torch.fx): a narrow VGG, a
# ResNet-20-style net with one basic block per stage and the VGG without BatchNorm (whose ReLU keeps its
# positive-scale group: planted PS), 8 channels at the first stage, on Fashion-MNIST; the exact methods on
# pairs, planted group elements (recovery rates) and merges with the BatchNorm reset or REPAIR
_ARCH_ZOO = dict(activation="relu", channels=8, n_nets=24, epochs=2, n_eval=1000, train_fraction=(0.1,),
                 dropout=(0.0, 0.0), splits=(0.25, 0.0, 0.75))
PRESETS["archs"] = Benchmark(
    "archs",
    zoos=(ZooRecipe("vgg", dict(_ARCH_ZOO)), ZooRecipe("resnet", dict(_ARCH_ZOO, blocks=1)),
          ZooRecipe("vgg", dict(_ARCH_ZOO, batchnorm=False))),
    protocols={"pairs": dict(n_pairs=9, lambdas=7),
               "orbit": dict(n_nets=18, actions=("P", "PS"), eps=(0.0,), lambdas=3),
               "merge": dict(sizes=(2, 3, 5), n_groups=8, max_triples=1)},
    methods=("naive", "constant", "git-rebasin", "sign-rebasin", "mergemany", "c2m3"),
)
# ResNet-20 itself (three basic blocks per stage) at half width (8 channels), 16 nets: Git Re-Basin's and
# REPAIR's architecture at a size this CPU runs in about 13 minutes (4 of them training the zoo); the exact
# methods that differ on it
PRESETS["resnet20"] = Benchmark(
    "resnet20",
    zoos=(ZooRecipe("resnet", dict(_ARCH_ZOO, blocks=3, n_nets=16)),),
    protocols={"pairs": dict(n_pairs=6, lambdas=5),
               "orbit": dict(n_nets=6, actions=("P",), eps=(0.0,), lambdas=3),
               "merge": dict(sizes=(2, 3), n_groups=4, max_triples=1)},
    methods=("naive", "git-rebasin", "mergemany", "c2m3"),
)
