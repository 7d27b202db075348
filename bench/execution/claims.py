"""What the claims report (`bench report --claims`) needs computed: its zoos and its runs.

Every run goes through `run_benchmark`, so it is resumable and skips units already in the table.
The runs on the default zoos repeat the default preset's protocol options exactly where the
default benchmark already measured a claim, so those rows are reused (same keys), never redone
under other options beside them (which would double-count units in the leaderboard).
`bench.report.paper_claims` reads the rows back by the same zoo labels and method specs, from the
catalog both share (`bench.store.claims_catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.execution.plan import RunOptions
from bench.execution.presets import PRESETS, Benchmark, ZooRecipe
from bench.execution.reproductions import C2M3, CNN_ZOO, GIT_REBASIN, GR_WIDTHS, SINKHORN
from bench.execution.runner import run_benchmark
from bench.execution.tally import RunSummary
from bench.execution.zoo_cache import get_zoo
from bench.store.claims_catalog import (
    AE,
    C2M3_MLP,
    CNN_CHANNELS,
    CNN_RELU,
    CNN_TANH,
    CNN_ZOO_RECIPE,
    DEFAULT_CHANNELS,
    GR_MLP_WIDTHS,
    INR,
    MLP_WIDTHS,
    SINKHORN_MID,
    SINKHORN_MLP,
    cnn_zoo,
    gr_mlp,
    mlp_zoo,
)

DEFAULT_INR, DEFAULT_CNN_RELU, DEFAULT_CNN_TANH = PRESETS["default"].zoos


def _mlp(width: int) -> ZooRecipe:
    # Git Re-Basin's 784-w-w-w-10 trained as in its setting: one recipe, networks differ by seed only (Adam
    # 1e-3, Glorot-normal init ~ its LeCun-normal one, 4 epochs of the 60k training images: barriers after
    # matching fall with training, 0.41 / 0.15 after 1 / 4 epochs at w = 512, measured); 24 test networks =
    # 12 disjoint pairs per width
    return ZooRecipe("mlp", dict(widths=(width,) * 3, n_nets=32, epochs=4, n_eval=1000, splits=(0.25, 0.0, 0.75),
                                 train_fraction=(1.0,), lr=(1e-3, 1e-3), l2=(1e-8, 1e-8), dropout=(0.0, 0.0),
                                 inits=("glorot_normal",)))


def _cnn(channels: int) -> ZooRecipe:
    if channels == DEFAULT_CHANNELS:
        return DEFAULT_CNN_RELU
    return replace(DEFAULT_CNN_RELU, options={**DEFAULT_CNN_RELU.options, "channels": channels})


# the reproductions' benchmarks (`bench reproduce`): their zoos and protocol options are taken as they are, so
# the claim runs and the reproductions share keys, rows and zoos in one results folder
_GR_MAIN, _, _GR_WIDTH_RUN = GIT_REBASIN.benchmarks
(_SINKHORN_RUN,), (_C2M3_RUN,), (_CNN_ZOO_RUN,) = SINKHORN.benchmarks, C2M3.benchmarks, CNN_ZOO.benchmarks
assert (*GR_WIDTHS, 512) == GR_MLP_WIDTHS, "the catalog's Git Re-Basin widths are the reproduction's"

CLAIM_ZOOS: dict[str, ZooRecipe] = {
    INR: DEFAULT_INR, CNN_RELU: DEFAULT_CNN_RELU, CNN_TANH: DEFAULT_CNN_TANH,
    **{mlp_zoo(w): _mlp(w) for w in MLP_WIDTHS},
    **{cnn_zoo(c): _cnn(c) for c in CNN_CHANNELS if c != DEFAULT_CHANNELS},
    **{gr_mlp(w): zoo for w, zoo in zip(GR_WIDTHS, _GR_WIDTH_RUN.zoos, strict=True)}, gr_mlp(512): _GR_MAIN.zoos[0],
    SINKHORN_MLP: _SINKHORN_RUN.zoos[0], C2M3_MLP: _C2M3_RUN.zoos[0], CNN_ZOO_RECIPE: _CNN_ZOO_RUN.zoos[0],
}
DEFAULT_PAIRS = PRESETS["default"].protocols["pairs"]
DEFAULT_MERGE = PRESETS["default"].protocols["merge"]
COMBINE = dict(n_pairs=16, n_triples=0, samples=2, lambdas=11, probes=("line", "uniform", "bernoulli", "stitch",
                                                                       "minmax"))


@dataclass(frozen=True)
class ClaimRun:
    zoos: tuple[str, ...]  # labels of CLAIM_ZOOS
    protocols: dict
    methods: tuple[str, ...]


CLAIM_RUNS: tuple[ClaimRun, ...] = (
    # 1, 2: planted group elements, exactly (eps 0) and under weight noise (the default run adds eps 1e-2); 32
    # networks, so that a rate of 32/32 bounds the true one above 3/4 (exact 95% interval)
    ClaimRun((INR,), {"orbit": dict(n_nets=32, actions=("P", "PS"), eps=(0.0, 1e-3), lambdas=7)},
             ("git-rebasin", "sign-rebasin", AE)),
    ClaimRun((CNN_TANH,), {"orbit": dict(n_nets=32, actions=("P", "PS"), eps=(0.0, 1e-3), lambdas=7)},
             ("git-rebasin", "sign-rebasin")),
    ClaimRun((INR,), {"orbit": PRESETS["default"].protocols["orbit"]}, ("sign-rebasin", AE)),
    # 3, 8: independent pairs, as the default benchmark runs them
    ClaimRun((INR, CNN_RELU, CNN_TANH), {"pairs": DEFAULT_PAIRS},
             ("naive", "git-rebasin", "sign-rebasin", "scalegmn-ae")),
    # 4: multi-model merging; N = 2, 3 as in the default benchmark, 5 and 8 beside them
    ClaimRun((CNN_RELU, CNN_TANH), {"merge": DEFAULT_MERGE}, ("git-rebasin", "c2m3", "mergemany")),
    ClaimRun((CNN_RELU, CNN_TANH), {"merge": dict(DEFAULT_MERGE, sizes=(5, 8))},
             ("git-rebasin", "c2m3", "mergemany")),
    # 5: element-wise combinations of aligned pairs
    ClaimRun((INR, CNN_RELU, CNN_TANH), {"combine": COMBINE}, ("naive", "git-rebasin")),
    # 6, 7: width studies (the 16-channel CNN is the default zoo, already paired above)
    ClaimRun(tuple(mlp_zoo(w) for w in MLP_WIDTHS) + tuple(cnn_zoo(c) for c in CNN_CHANNELS if c != DEFAULT_CHANNELS),
             {"pairs": DEFAULT_PAIRS}, ("naive", "git-rebasin")),
    ClaimRun((mlp_zoo(64), mlp_zoo(128)), {"pairs": DEFAULT_PAIRS}, ("sinkhorn-rebasin[objective=mid]",)),
    # in the papers' regimes: the reproductions' runs the claims read (`bench reproduce` runs the rest) ...
    ClaimRun(tuple(gr_mlp(w) for w in GR_MLP_WIDTHS), _GR_WIDTH_RUN.protocols, ("naive", "git-rebasin")),
    ClaimRun((SINKHORN_MLP,), _SINKHORN_RUN.protocols, ("git-rebasin", SINKHORN_MID)),
    ClaimRun((C2M3_MLP,), _C2M3_RUN.protocols, ("git-rebasin", "mergemany", "c2m3")),
    ClaimRun((CNN_ZOO_RECIPE,), {"merge": _CNN_ZOO_RUN.protocols["merge"]}, ("git-rebasin", "mergemany", "c2m3")),
    # ... and 5 on the converged zoos: Git Re-Basin's widest MLP (its pairs' barrier is ~0 after matching) and
    # the CNN Zoo's recipe; 16 networks each, all in the test split: 8 disjoint pairs
    ClaimRun((gr_mlp(512), CNN_ZOO_RECIPE), {"combine": dict(COMBINE, n_pairs=8)}, ("naive", "git-rebasin")),
)


def claim_benchmarks() -> list[Benchmark]:
    """CLAIM_RUNS as benchmarks for `run_benchmark` (seed 0, like the default preset)."""
    return [Benchmark(f"claims-{i}", zoos=tuple(CLAIM_ZOOS[z] for z in run.zoos), protocols=run.protocols,
                      methods=run.methods) for i, run in enumerate(CLAIM_RUNS)]


def run_claims(opts: RunOptions) -> tuple[RunSummary, dict[str, str]]:
    """Run (or resume) every claim run; (their summaries added up, zoo label -> content hash)."""
    summary = RunSummary()
    for bench in claim_benchmarks():
        summary += run_benchmark(bench, None, opts)
    hashes = {label: get_zoo(recipe, opts.results / "zoos", opts.data, opts.build_workers, False,
                             opts.device_type).content_hash() for label, recipe in CLAIM_ZOOS.items()}
    return summary, hashes


def claim_hashes(results) -> dict[str, str]:
    """Zoo label -> content hash of the zoos a claims run built under `results` (read from their cards: an
    archive may hold no weights); labels whose zoo is not there are left out."""
    from pathlib import Path

    from bench.execution.plan import zoo_directory
    from zoos.zoo import load_zoo_card

    out = {}
    for label, recipe in CLAIM_ZOOS.items():
        directory = zoo_directory(recipe, RunOptions(results=Path(results)))
        if (directory / "spec.json").is_file():
            out[label] = load_zoo_card(directory).content_hash()
    return out
