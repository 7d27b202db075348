"""The `bench` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = """examples:
  bench run                                  # the embedded default benchmark (zoos built and cached)
  bench run --preset smoke                   # seconds: a tiny zoo, for checking an install
  bench run --methods naive "git-rebasin[init=identity]" --results results/
  bench run --zoo path/to/my-zoo --protocols pairs
  bench run --workers 2                      # units on a local Dask cluster of 2 worker processes
  bench zoo build inr --images 64 --fits-per-image 2 --out zoos/inr64
  bench zoo build cnn --activation tanh --nets 16 --epochs 3 --out zoos/cnn-tanh
  bench zoo build resnet --channels 8 --blocks 1 --nets 16 --out zoos/resnet   # BatchNorm, residual streams
  bench zoo import cnnzoo path/to/mnist_cnn_zoo --activation relu --out zoos/cnnzoo-relu
  bench zoo import state-dicts path/to/checkpoints --module mypkg.nets:ResNet --kwargs '{"width": 16}' --out zoos/mine
  bench zoo import dwsnets path/to/mnist-inrs --images path/to/mnist-idx --out zoos/mnist-inr
  bench zoo info zoos/inr64
  bench methods                              # registered methods and their hyperparameters
  bench methods --include my_methods/        # ... with the methods of every *.py file in my_methods/
  bench run --include my_methods/ --methods naive my-method   # a method from outside the repository
  bench ae train --zoo results/zoos/<id>     # train the ScaleGMN autoencoder (cached, resumable)
  bench ae eval --zoo results/zoos/<id> --method gnn-ae
  bench report                               # leaderboard.*, comparison.* and figures from results/
  bench report --zoos 'cnn-*' --methods naive git-rebasin --protocols pairs --format tex --out table.tex
  bench report --metric loss_barrier --format csv   # one matrix, every number unrounded
  bench report --claims                      # the papers' claims tested: runs what they need, results/claims.md
  bench reproduce git-rebasin --peer-rebasin /tmp/peer-rebasin/bin/python   # a paper in its regime: reproductions.md
  bench mirror --check                       # is the MLflow mirror the Parquet table? (--rebuild: make it so)
  bench perf --suites evaluation             # timings side by side into results/perf.*
  bench perf --suites gpu                    # CPU vs accelerator into results/perf_gpu.* (a few minutes)
  bench perf --peer-rebasin /tmp/peer-rebasin/bin/python --peer-sinkhorn /tmp/peer-sinkhorn/bin/python
  bench sweep git-rebasin --zoo default:1 --protocols pairs --trials 20 --workers 2   # Optuna
  bench sweep "sinkhorn-rebasin[objective=l2]" --zoo zoos/cnn --params tau lr --trials 30
"""


def _integer(minimum: int, maximum: int | None = None):
    """argparse type: an integer in [minimum, maximum]; argparse names the option in its one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "inf" if maximum is None else maximum
            raise argparse.ArgumentTypeError(f"{value} is outside [{minimum}, {upper}]")
        return value
    return parse


def _number(low: float, high: float, include_low: bool = False):
    """argparse type: a finite number in (low, high] ([low, high] with include_low)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (low <= value if include_low else low < value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {'[' if include_low else '('}{low}, {high}]")
        return value
    return parse


COUNT = _integer(1)
SEED = _integer(0, 2**31 - 1)
# threads and processes beyond this are a typo (torch segfaulted at --threads 100000): refused by argparse
MAX_PARALLEL = max(256, 4 * (os.cpu_count() or 1))
THREADS = _integer(1, MAX_PARALLEL)
SHOWN_FAILURES = 10  # failed units listed in the run summary


def _recipe_option(parser) -> None:
    from zoos.recipes import RECIPES

    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="train with a paper's recipe (zoos/recipes.py: optimizer, lr, schedule, batch, epochs, "
                             "init, input scaling); --epochs and --train-fraction override it only when given")


def _include_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--include", type=Path, action="append", metavar="PATH", default=[],
                     help="register the methods of every *.py file in this directory (repeatable; installed "
                          "packages' methods are found through the entry-point group rebasin_bench.methods)")


def _parser() -> argparse.ArgumentParser:
    from bench.execution.presets import PRESETS

    p = argparse.ArgumentParser(prog="bench", description="Weight alignment and model merging benchmark.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, parent=sub) -> argparse.ArgumentParser:
        """A subcommand whose --help ends with its own lines of EXAMPLES."""
        words = ("bench " + " ".join(filter(None, (getattr(parent, "_bench_path", ""), name)))).split()
        mine = [line for line in EXAMPLES.splitlines()[1:] if line.split()[:len(words)] == words]
        cmd = parent.add_parser(name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + "\n".join(mine) if mine else None)
        return cmd

    from bench import reproduce

    reproduce.add_parser(sub, command)
    run = command("run", "run (or resume) a benchmark")
    presets = " | ".join(PRESETS)
    run.add_argument("--preset", default="default", help=f"{presets} (default: default)")
    run.add_argument("--methods", nargs="+", help="method specs, e.g. naive 'git-rebasin[max_sweeps=10]'"
                                                  " (default: the preset's methods)")
    run.add_argument("--zoo", nargs="+", type=Path, help="run on these stored zoo directories instead of the preset's")
    run.add_argument("--protocols", nargs="+", help="subset of the preset's protocols, options allowed:"
                                                    " 'pairs[n_pairs=8,lambdas=11]' (default: all of them)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    run.add_argument("--data", default="auto", help="fashion-mnist | digits | IDX directory (default: auto)")
    run.add_argument("--build-workers", type=THREADS, default=2,
                     help="processes for building zoos: CNN training, INR fitting (default: 2)")
    run.add_argument("--workers", type=_integer(0, MAX_PARALLEL), default=0,
                     help="run the units on a local Dask cluster of N single-threaded worker processes"
                          " (default: 0, serially in this process)")
    run.add_argument("--scheduler", metavar="tcp://host:port",
                     help="run the units on an existing Dask cluster (zoo directories on a shared filesystem)")
    run.add_argument("--threads", type=THREADS, default=1,
                     help="torch threads for aligning and evaluating (default: 1)")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                     help="fit INR zoos, score networks and run device-aware methods here (default: cpu; "
                          "auto = cuda when torch sees it)")
    run.add_argument("--seed", type=SEED, default=None, help="override the preset's seed")
    run.add_argument("--no-mlflow", action="store_true", help="do not mirror results to MLflow")
    run.add_argument("--no-report", action="store_true", help="do not rewrite the leaderboard and figures")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    rep = command("report", "leaderboard, comparison matrices and figures from the results table (or, with"
                            " a selection or --format, one comparison matrix)")
    rep.add_argument("--results", type=Path, default=Path("results"))
    rep.add_argument("--methods", nargs="+", help="method specs or names (all their variants); default: all")
    rep.add_argument("--zoos", nargs="+", help="zoo names or shell patterns ('cnn-*'); default: all")
    rep.add_argument("--protocols", nargs="+", help="protocol names; default: all")
    rep.add_argument("--metric", help="a declared metric (e.g. loss_barrier); default: each protocol's ranking one")
    rep.add_argument("--format", choices=("md", "tex", "html", "csv"), help="comparison matrix format (default: md)")
    rep.add_argument("--out", type=Path, help="write the comparison matrix here instead of printing it (- : stdout);"
                                              " an existing file is replaced only if `bench report --out` wrote it")
    rep.add_argument("--force", action="store_true", help="--out: replace an existing file that bench did not write")
    rep.add_argument("--display-names", action="store_true",
                     help="tables name methods by their display names (`bench methods`), numbered by citation, with"
                          " the references listed (LaTeX, HTML, Markdown); default: the registered names")
    rep.add_argument("--claims", action="store_true",
                     help="test the papers' claims: run what they need (resumable), write RESULTS/claims.md"
                          " and the other reports")
    rep.add_argument("--quiet", action="store_true", help="--claims: no progress bars")

    _include_option(run)
    _include_option(command("methods", "list registered methods and their hyperparameters"))

    mir = command("mirror", "mirror the results table to MLflow (check it, or rebuild it from Parquet)")
    mir.add_argument("--results", type=Path, default=Path("results"))
    mode = mir.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report how the mirror differs from the table")
    mode.add_argument("--rebuild", action="store_true", help="delete the mirror's runs and log the table afresh")

    perf = command("perf", "speed side by side (batched vs looped, methods vs width)")
    perf.add_argument("--results", type=Path, default=Path("results"))
    perf.add_argument("--suites", nargs="+", help="subset of: inr-fit zoo-fit evaluation memory align lap-share "
                       "autoencoder ae-train "
                       "(the other suites' rows of an existing perf.parquet are kept); gpu: CPU vs accelerator "
                       "into perf_gpu.md")
    perf.add_argument("--device", default="auto", help="gpu suite: the accelerator (default: auto)")
    perf.add_argument("--threads", type=THREADS, default=1, help="torch threads, pinned (default: 1)")
    perf.add_argument("--repeats", type=COUNT, default=3, help="interleaved repetitions per case (default: 3)")
    perf.add_argument("--widths", type=COUNT, nargs="+", help="align/autoencoder widths (default: 32 64 128 256 512)")
    perf.add_argument("--budget", type=_number(0.0, 1e9), default=30.0,
                      help="align: CPU seconds per pair above which a method is not repeated nor run wider")
    perf.add_argument("--peer-rebasin", help="python of a separate venv with PyPI `rebasin` (weight matching peer)")
    perf.add_argument("--peer-sinkhorn", help="python of a separate venv with PyPI `sinkhorn-rebasin`")
    perf.add_argument("--baseline", metavar="REV", help="align: also run git-rebasin and c2m3 as they were at this "
                      "commit, side by side (speed-ups over an earlier version in one run)")

    sweep = command("sweep", "Optuna sweep of a method's hyperparameters (resumable, parallel)")
    sweep.add_argument("methods", nargs="+", metavar="method",
                       help="method spec(s); hyperparameters given in brackets stay fixed. Several: each gets the "
                            "same trial budget, then the tuned specs are compared on the test split")
    sweep.add_argument("--zoo", required=True, help="stored zoo directory, or PRESET:INDEX (e.g. default:1)")
    sweep.add_argument("--protocols", "--protocol", dest="protocol", default="pairs",
                       help="the protocol scoring the trials, options allowed: 'pairs[n_pairs=8]' (default: pairs,"
                            " options from --preset; scored on split=val unless given)")
    sweep.add_argument("--trials", type=COUNT, default=20, help="complete trials to reach (default: 20)")
    sweep.add_argument("--workers", type=THREADS, default=1, help="local worker processes (default: 1)")
    sweep.add_argument("--storage", help="RDB URL or journal file (default: RESULTS/sweeps/optuna.journal)")
    sweep.add_argument("--metric", help="column averaged over units (default: the protocol's rank metric, as the "
                                        "leaderboard ranks: loss_excess for pairs/orbit, loss_merged for merge)")
    sweep.add_argument("--multi-objective", action="store_true", help="also minimise the method's seconds")
    sweep.add_argument("--study", help="study name (default: from method, zoo, protocol and metric)")
    sweep.add_argument("--params", nargs="+", help="search only these hyperparameters")
    sweep.add_argument("--preset", default="default", help=f"preset whose protocol options apply: {presets}"
                                                            " (default: default)")
    sweep.add_argument("--results", type=Path, default=Path("results"))
    sweep.add_argument("--data", default="auto", help="fashion-mnist | digits | IDX directory (default: auto)")
    sweep.add_argument("--seed", type=SEED, default=0)
    sweep.add_argument("--threads", type=THREADS, default=1, help="torch threads per worker (default: 1)")
    sweep.add_argument("--no-mlflow", action="store_true", help="do not mirror trials to MLflow")
    sweep.add_argument("--quiet", action="store_true")
    _include_option(sweep)

    ae = command("ae", "train / evaluate the symmetry-aware autoencoders")
    ae_sub = ae.add_subparsers(dest="ae_command", required=True)
    ae_sub._bench_path = "ae"
    for name, text in (("train", "train (or load the cached checkpoint)"),
                       ("eval", "reconstruction quality and latent invariance on held-out networks")):
        cmd = command(name, text, ae_sub)
        cmd.add_argument("--zoo", type=Path, required=True, help="stored zoo directory")
        cmd.add_argument("--method", default="scalegmn-ae", help="scalegmn-ae | gnn-ae, optionally with [k=v,...]")
        cmd.add_argument("--full", action="store_true", help="paper-sized hyperparameters (for bigger machines)")
        cmd.add_argument("--split", default="test", help="eval: which split to score (default: test)")
        cmd.add_argument("--results", type=Path, default=Path("results"),
                         help="results directory whose checkpoint store holds the trained model (default: results)")
    study = command("study", "scaling study: reconstruction and barriers against the training-set size "
                    "(writes results/autoencoder.md + .png; resumable)", ae_sub)
    study.add_argument("--kinds", nargs="+", choices=("inr", "cnn", "paper"), default=["inr", "cnn"],
                       help="which studies (default: inr cnn; paper = the reference's 55k-INR setting, for a GPU)")
    study.add_argument("--results", type=Path, default=Path("results"),
                       help="report goes here; rows, zoos and checkpoints under <results>/ae-study (default: results)")
    study.add_argument("--report-only", action="store_true", help="rewrite the report from what is there")
    study.add_argument("--quiet", action="store_true")

    zoo = command("zoo", "build, import or inspect zoos").add_subparsers(dest="zoo_command", required=True)
    zoo._bench_path = "zoo"
    build = command("build", "generate a zoo", zoo).add_subparsers(dest="kind", required=True)
    build._bench_path = "zoo build"
    inr = command("inr", "SIRENs fitted to 28x28 images", build)
    inr.add_argument("--images", type=COUNT, default=64, help="number of images (default: 64)")
    inr.add_argument("--fits-per-image", type=COUNT, default=2, help="independent fits per image (default: 2)")
    inr.add_argument("--extra-train-images", type=_integer(0), default=0, metavar="N",
                     help="N more images fitted once each, all in the train split (default: 0)")
    inr.add_argument("--steps", type=COUNT, default=1000, help="Adam steps per fit (default: 1000)")
    inr.add_argument("--lr", type=_number(0.0, 1e3), default=5e-3, help="learning rate (default: 0.005)")
    inr.add_argument("--hidden", type=COUNT, default=32, help="hidden width (default: 32)")
    inr.add_argument("--depth", type=COUNT, default=2, help="hidden layers (default: 2)")
    cnn = command("cnn", "Unterthiner CNN Zoo nets trained on the data", build)
    cnn.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="(default: relu)")
    cnn.add_argument("--nets", type=COUNT, default=16, help="number of networks (default: 16)")
    cnn.add_argument("--epochs", type=COUNT, help="training epochs per network (default: 3, or the recipe's)")
    cnn.add_argument("--channels", type=COUNT, default=16, help="channels per conv (width; default: 16)")
    cnn.add_argument("--train-fraction", type=_number(0.0, 1.0), nargs="+",
                     help="training-image fractions, one drawn per network (default: 0.1 0.25, or the recipe's)")
    _recipe_option(cnn)
    mlp = command("mlp", "MLPs 784-w1-..-wk-10 trained on the data like the CNN zoo", build)
    mlp.add_argument("--widths", type=COUNT, nargs="+", required=True, help="hidden widths, e.g. 512 512 512")
    mlp.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="(default: relu)")
    mlp.add_argument("--nets", type=COUNT, default=16, help="number of networks (default: 16)")
    mlp.add_argument("--epochs", type=COUNT, help="training epochs per network (default: 3, or the recipe's)")
    mlp.add_argument("--train-fraction", type=_number(0.0, 1.0), nargs="+",
                     help="training-image fractions, one drawn per network (default: 0.1 0.25, or the recipe's)")
    _recipe_option(mlp)
    archs = []
    for arch, text in (("vgg", "VGG nets (3x3 conv-BN-act stages, max pooling, GAP) trained like the CNN zoo"),
                       ("resnet", "ResNet-20-style nets (conv-BN basic blocks, residual streams) trained like the CNN "
                                  "zoo")):
        a = command(arch, text, build)
        a.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="(default: relu)")
        a.add_argument("--nets", type=COUNT, default=16, help="number of networks (default: 16)")
        a.add_argument("--epochs", type=COUNT, help="training epochs per network (default: 2, or the recipe's)")
        a.set_defaults(default_epochs=2)
        a.add_argument("--channels", type=COUNT, default=8, help="first stage's channels (width; default: 8)")
        a.add_argument("--train-fraction", type=_number(0.0, 1.0), nargs="+",
                       help="training-image fractions, one drawn per network (default: 0.1 0.25, or the recipe's)")
        _recipe_option(a)
        if arch == "resnet":
            a.add_argument("--blocks", type=COUNT, default=1, help="basic blocks per stage (3: ResNet-20; default: 1)")
        else:
            a.add_argument("--no-batchnorm", action="store_true",
                           help="no BatchNorm (ReLU then keeps its positive-scale group, tanh its signs)")
        archs.append(a)
    for b in (inr, cnn, mlp, *archs):
        b.add_argument("--workers", type=THREADS, default=2, help="processes fitting / training (default: 2)")
        b.add_argument("--data", default="auto", help="fashion-mnist | digits | IDX directory (default: auto)")
        b.add_argument("--seed", type=SEED, default=0, help="(default: 0)")
        b.add_argument("--out", type=Path, required=True, help="output zoo directory")
        if b is not inr:  # INR zoos split by image, 0.6 / 0.2 / 0.2
            b.add_argument("--splits", type=_number(0.0, 1.0, include_low=True), nargs=3, default=[0.6, 0.2, 0.2],
                           metavar=("TRAIN", "VAL", "TEST"),
                           help="fractions of the networks in the train / val / test splits, summing to 1 "
                                "(default: 0.6 0.2 0.2)")
        b.add_argument("--quiet", action="store_true")
    imp = command("import", "read a published zoo format into our format", zoo)
    imp.add_argument("format", choices=("dwsnets", "nfn", "cnnzoo", "state-dicts"))
    imp.add_argument("path", type=Path, help="the published zoo; state-dicts: a folder of *.pt, *.pth or "
                                             "*.safetensors files, one network each")
    imp.add_argument("--module", help="state-dicts: the networks' module, package.module:Class (its weight space is "
                                      "derived with torch.fx)")
    imp.add_argument("--kwargs", default="{}", help="state-dicts: JSON keyword arguments for the module (default: {})")
    imp.add_argument("--input-shape", type=COUNT, nargs="+", default=[1, 28, 28],
                     help="state-dicts: one input's shape (default: 1 28 28)")
    imp.add_argument("--images", type=Path, help="dwsnets, nfn: IDX directory with the INRs' source images")
    imp.add_argument("--splits", type=Path, help="dwsnets: the zoo's splits JSON, which then decides the networks "
                                                 "and their splits exactly (default: PATH/splits.json when present)")
    imp.add_argument("--activation", help="cnnzoo: keep networks with this activation")
    imp.add_argument("--dataset", help="cnnzoo, state-dicts: the images it was trained on, scored on their test "
                                       "split: "
                                       "fashion-mnist, or a folder of MNIST IDX files, CIFAR-10 batches (bin or "
                                       "py) or SVHN *_32x32.mat (default: from metrics' config.dataset)")
    imp.add_argument("--n-eval", default="all", help="cnnzoo: test images each network is scored on: 'all' (the "
                                                      "full test split, default) or a number (a seeded sample)")
    imp.add_argument("--step", default="final", help="cnnzoo: 'final' (each run's last checkpoint), a step number, "
                                                     "or 'all' (default: final)")
    imp.add_argument("--order", type=Path, help="cnnzoo: headerless CSV of row indices applied first (NFN's "
                                                "cifar10_split.csv), to reproduce NFN's and ScaleGMN's split")
    imp.add_argument("--prefix", default="randinit_smaller", help="nfn: directory prefix (default: randinit_smaller)")
    imp.add_argument("--value-range", type=float, nargs=2, metavar=("LO", "HI"), default=(-1.0, 1.0),
                     help="nfn: the pixel range the SIRENs were fitted to (default: -1 1)")
    imp.add_argument("--out", type=Path, required=True)
    info = command("info", "summarise a stored zoo", zoo)
    info.add_argument("path", type=Path)
    return p


def _positive(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{option} {text!r}: expected 'all' or a positive number")
    return value


def _step(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--step {text!r}: expected 'final', 'all' or a step number") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rebasin-bench")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _header(argv: list[str]) -> list[str]:
    from bench.store.provenance import git_commit

    return [f"Produced by `bench {' '.join(argv)}` at commit `{git_commit()[:12]}`."]


def _run(args, argv) -> int:
    from dataclasses import replace

    from bench.execution.presets import PRESETS, ZooRecipe
    from bench.execution.runner import RunOptions, run_benchmark

    if args.preset not in PRESETS:
        from zoos.names import unknown_name

        raise ValueError(unknown_name("preset", args.preset, PRESETS))
    bench = PRESETS[args.preset]
    if args.zoo and args.data != "auto":
        raise ValueError("--data chooses the images of the zoos a preset builds; a stored zoo (--zoo) is scored on "
                         "its own data set (bench zoo info shows it; import it again with --dataset to change it)")
    if args.zoo:
        for path in args.zoo:
            from zoos.zoo import load_zoo

            load_zoo(path)  # validate before any work
        bench = replace(bench, zoos=tuple(ZooRecipe("path", {"path": str(p)}) for p in args.zoo))
    if args.protocols:  # 'pairs' or 'pairs[n_pairs=8]': the preset's options, updated with those given
        from bench.execution.sweep import protocol_options

        chosen = [protocol_options(spec, bench.name) for spec in args.protocols]
        names = [name for name, _ in chosen]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # which options would win is not obvious from the command line
            raise ValueError(f"--protocols: {', '.join(twice)} given more than once (one spec per protocol)")
        bench = replace(bench, protocols=dict(chosen))
    from bench.protocols import make_protocol

    for name, options in bench.protocols.items():  # every option typed and in range, before any work
        make_protocol(name, seed=args.seed if args.seed is not None else bench.seed, **options)
    if args.seed is not None:
        bench = replace(bench, seed=args.seed)
    if args.data not in ("auto", "fashion-mnist", "digits") and not Path(args.data).exists():
        raise ValueError(f"{args.data}: dataset path does not exist")
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers}: must be >= 0")
    from zoos.devices import resolve_device

    resolve_device(args.device)  # refuse cuda without CUDA now, in one line
    opts = RunOptions(results=args.results, data=args.data, build_workers=args.build_workers, threads=args.threads,
                      progress=not args.quiet, workers=args.workers, scheduler=args.scheduler, device=args.device)
    counts = run_benchmark(bench, args.methods, opts)
    print(f"units: {counts['done']} run, {counts['skipped']} already done, {counts['failed']} failed")
    failures = counts.get("failures", [])
    for zoo, variant, protocol, unit, error in failures[:SHOWN_FAILURES]:
        print(f"  failed: {zoo} / {variant} / {protocol} / {unit}: {error}")
    if len(failures) > SHOWN_FAILURES:
        print(f"  ... and {len(failures) - SHOWN_FAILURES} more failed units (the `error` column of the results table)")
    notes = [f"Skipped `{spec}` on {zoo}: {reason}." for spec, zoo, reason in counts.get("skipped_pairs", [])]
    for line in notes + [f"Not measured: {zoo} / {protocol}: {why}." for zoo, protocol, why in counts.get("gaps", [])]:
        print(line)  # the report lists what the store recorded as not measured (of this run and earlier ones)
    _finish(args.results, argv, mirror=not args.no_mlflow, report=not args.no_report, notes=notes)
    return 1 if counts["failed"] else 0


def _finish(results: Path, argv: list[str], mirror: bool = True, report: bool = True, notes: list[str] = (),
            display_names: bool = False) -> None:
    from bench.report.files import write_report
    from bench.store.results import ResultStore

    if report:
        from methods import METHODS

        names = _display_names() if display_names else None
        for path in write_report(results, _header(argv) + list(notes), {n: c.needs for n, c in METHODS.items()},
                                 names):
            print(f"wrote {path}")
    if mirror:
        from bench.store.tracking import EXPERIMENT, mirror_report, resolve_uri
        from bench.store.tracking import mirror as mirror_to_mlflow

        try:
            from bench.protocols import PROTOCOLS
            from methods import METHODS

            new = mirror_to_mlflow(ResultStore(results).table(), results_dir=results, protocols=PROTOCOLS,
                                   methods=METHODS)
            if report:
                new += [r for r in [mirror_report(results)] if r]
            print(f"mlflow: {len(new)} new run(s) mirrored to experiment {EXPERIMENT!r} at "
                  f"{resolve_uri(None, results)} (browse: mlflow ui --backend-store-uri <that URI>)")
        except Exception as error:  # the Parquet table is the source of truth; MLflow is a mirror
            print(f"mlflow: mirror skipped ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)


def _claims(args, argv) -> int:
    from bench.execution.claims import run_claims
    from bench.execution.plan import RunOptions
    from bench.report.claims import evaluate, markdown
    from bench.report.files import write_text
    from bench.report.paper_claims import CLAIMS
    from bench.store.results import ResultStore, current_code

    if any((args.methods, args.zoos, args.protocols, args.metric, args.format, args.out)):
        raise ValueError("--claims runs and reads a fixed set of zoos and methods: it takes no selection or format")
    counts, hashes = run_claims(RunOptions(results=args.results, progress=not args.quiet))
    print(f"units: {counts['done']} run, {counts['skipped']} already done, {counts['failed']} failed")
    results = evaluate(CLAIMS, current_code(ResultStore(args.results).table()), hashes)
    path = write_text(args.results / "claims.md", markdown(results, _header(argv)))
    for r in results:
        print(f"claim {r.claim.number}: {r.verdict}")
    print(f"wrote {path}")
    _finish(args.results, argv)
    return 1 if counts["failed"] else 0


def _zoo(args) -> int:
    from zoos.zoo import check_replaceable, load_zoo, save_zoo

    if args.zoo_command == "info":
        zoo = load_zoo(args.path)
        print(f"{zoo.name}: {len(zoo)} networks of {zoo.space.name} ({zoo.space.n_params} parameters, input "
              f"{list(zoo.space.input_shape)}), task {zoo.task.get('kind')}, splits "
              f"{zoo.meta['split'].value_counts().to_dict()}")
        if zoo.task.get("kind") == "classifier":
            n_eval = zoo.task.get("n_eval", 2000)
            print(f"evaluated on: {zoo.task.get('dataset', 'auto')}, "
                  f"{'the full test split' if n_eval is None else f'{n_eval} test images'}")
            if zoo.task.get("config"):
                from zoos.recipes import describe

                print(f"trained with: {describe(zoo.task['config'])}")
        numeric = zoo.meta.select_dtypes("number").drop(columns=["id"], errors="ignore")
        print(numeric.describe().T[["mean", "min", "max"]].to_string())
        return 0
    check_replaceable(args.out)  # before any work: never build a zoo only to refuse to save it
    if args.zoo_command == "import":
        from zoos import formats

        if args.format == "cnnzoo" and args.images:
            raise ValueError("--images is for dwsnets and nfn; a cnnzoo import takes --dataset")
        if args.format == "dwsnets":
            splits = args.splits or (args.path / "splits.json" if (args.path / "splits.json").is_file() else None)
            zoo = formats.load_dwsnets_inrs(args.path, splits_json=splits, images=args.images)
        elif args.format == "nfn":
            zoo = formats.load_nfn_sirens(args.path, images=args.images, prefix=args.prefix,
                                          value_range=tuple(args.value_range))
        elif args.format == "state-dicts":
            import json

            from zoos.state_dicts import load_state_dicts, module_from_path

            if not args.module:
                raise ValueError("state-dicts: --module package.module:Class is required")
            try:
                kwargs = json.loads(args.kwargs)
            except ValueError as error:
                raise ValueError(f"--kwargs {args.kwargs!r}: not JSON ({error})") from None
            if not isinstance(kwargs, dict):
                raise ValueError(f"--kwargs {args.kwargs!r}: expected a JSON object")
            n_eval = None if args.n_eval == "all" else _positive(args.n_eval, "--n-eval")
            zoo = load_state_dicts(args.path, module_from_path(args.module, kwargs), tuple(args.input_shape),
                                   args.dataset or "auto", n_eval)
        else:
            step = None if args.step == "all" else args.step if args.step == "final" else _step(args.step)
            zoo = formats.load_cnn_zoo(args.path, activation=args.activation, step=step, order=args.order,
                                       dataset=args.dataset)
            if args.n_eval != "all":
                zoo.task["n_eval"] = _positive(args.n_eval, "--n-eval")
    elif args.kind == "inr":
        from zoos.inr import build_inr_zoo

        zoo = build_inr_zoo(args.data, args.images, args.fits_per_image, args.steps, args.lr, args.hidden,
                            args.depth, args.seed, progress=not args.quiet,
                            extra_train_images=args.extra_train_images, workers=args.workers)
    else:
        from zoos.cnn import CnnZooConfig, build_cnn_zoo

        shape = {"widths": tuple(args.widths)} if args.kind == "mlp" else {"channels": args.channels}
        if args.kind in ("vgg", "resnet"):
            shape |= {"arch": args.kind, "dropout": (0.0, 0.0),
                      **({"blocks": args.blocks} if args.kind == "resnet" else {"batchnorm": not args.no_batchnorm})}
        if abs(sum(args.splits) - 1) > 1e-6:
            raise ValueError(f"--splits {' '.join(map(str, args.splits))}: the fractions must sum to 1")
        given = {k: v for k, v in (("epochs", args.epochs), ("train_fraction", args.train_fraction)) if v is not None}
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
        if args.recipe:  # the recipe's values, except those given on the command line
            config = CnnZooConfig.from_recipe(args.recipe, activation=args.activation, n_nets=args.nets,
                                              source=args.data, seed=args.seed, splits=tuple(args.splits), **given,
                                              **shape)
        else:
            given = {"epochs": getattr(args, "default_epochs", 3), "train_fraction": (0.1, 0.25), **given}
            config = CnnZooConfig(activation=args.activation, n_nets=args.nets, source=args.data, seed=args.seed,
                                  splits=tuple(args.splits), **given, **shape)
        zoo = build_cnn_zoo(config, workers=args.workers, progress=not getattr(args, "quiet", False))
    save_zoo(zoo, args.out)
    print(f"wrote {args.out}: {len(zoo)} networks of {zoo.space.name}")
    return 0


def _sweep(args) -> int:
    from bench.execution.sweep import SweepConfig, rerun_command, run_sweeps

    cfgs = [SweepConfig(method=method, zoo=args.zoo, protocol=args.protocol, trials=args.trials,
                        workers=args.workers, storage=args.storage, metric=args.metric,
                        multi_objective=args.multi_objective, study=args.study if len(args.methods) == 1 else None,
                        results=args.results, preset=args.preset,
                        params=tuple(args.params) if args.params else None, seed=args.seed, data=args.data,
                        threads=args.threads, mlflow=not args.no_mlflow, progress=not args.quiet)
            for method in args.methods]
    outs, ok = [], True
    for cfg, out in zip(cfgs, run_sweeps(cfgs), strict=True):
        show = lambda t: ", ".join(f"{v:.4g}" for v in t["values"])  # noqa: E731
        print(f"study {out['study']!r} ({out['metric']}): {out['complete']} complete, {out['failed']} failed")
        if out["default"]:
            print(f"default  {show(out['default'])}  {out['default']['spec']}  (trial {out['default']['trial']})")
        for best in out["best"]:
            print(f"best     {show(best)}  {best['spec']}  (trial {best['trial']})")
        if out["best"]:
            print(f"test:    {rerun_command(out, cfg, out['best'][0]['spec'])}")
        ok &= out["complete"] >= args.trials
        outs.append((cfg, out))
    print("optuna-dashboard: pip install optuna-dashboard; optuna-dashboard "
          f"{args.storage or args.results / 'sweeps' / 'optuna.journal'}")
    tuned = [out["best"][0]["spec"] for _, out in outs if out["best"]]
    if len(args.methods) > 1 and tuned and not args.multi_objective:
        # each method's default spec beside its tuned one: the baseline the tuning is measured against
        baselines = [out["default"]["spec"] for _, out in outs if out["default"] and out["default"]["spec"]]
        _compare_tuned(outs[0][0], outs[0][1], list(dict.fromkeys(tuned + baselines)))
    return 0 if ok else 1


def _compare_tuned(cfg, out: dict, specs: list[str]) -> None:
    """Score the tuned specs on the test split of the sweep's zoo (as `bench run` would) and print them
    side by side, so methods tuned under one budget are compared on data none of them was tuned on.
    Rows go to their own table, `<results>/sweeps/tuned/<zoo>-<protocol>/`, never mixed with other options'."""
    import re

    from bench.execution.presets import PRESETS, Benchmark, ZooRecipe
    from bench.execution.runner import RunOptions, run_benchmark
    from bench.execution.sweep import protocol_options, test_protocol
    from bench.report.comparison import comparison, select, to_markdown
    from bench.store.results import ResultStore, current_code
    from zoos.zoo import load_zoo

    name, options = protocol_options(test_protocol(out["protocol"]), cfg.preset)
    bench = Benchmark("tuned", zoos=(ZooRecipe("path", {"path": str(out["zoo_path"])}),), protocols={name: options},
                      seed=cfg.seed, overrides=PRESETS[cfg.preset].overrides)
    zoo_name = load_zoo(out["zoo_path"]).name
    label = re.sub(r"[^\w.=,-]+", "_", f"{zoo_name}-{test_protocol(out['protocol'])}")
    where = cfg.results / "sweeps" / "tuned" / label
    print(f"comparing the tuned specs on the test split ({name}, {len(specs)} specs, each method's default spec "
          f"among them as its baseline row; rows in {where})")
    run_benchmark(bench, specs, RunOptions(results=where, data=cfg.data, threads=cfg.threads, progress=cfg.progress))
    table = select(current_code(ResultStore(where).table()), methods=_normal_specs(specs))
    sys.stdout.write(to_markdown(comparison(table, out.get("metric", cfg.metric))))


def _check_metric(metric: str, table) -> None:
    """A metric no protocol of the selection declares: one line naming the ones that would work here (the
    declared metrics with values in the selected rows), and the close ones."""
    from bench.protocols import PROTOCOLS
    from zoos.names import unknown_name

    protocols = sorted(set(table["protocol"].dropna().astype(str))) if "protocol" in table.columns else []
    declared = {m.name for p in protocols if p in PROTOCOLS for m in PROTOCOLS[p].metrics}
    if metric in declared:
        return
    valid = sorted(m for m in declared if m in table.columns and table[m].notna().any())
    text = unknown_name("metric", metric, valid).replace("known:", "valid here:", 1)
    if metric in {m.name for cls in PROTOCOLS.values() for m in cls.metrics}:
        text = text.replace("unknown metric", f"metric not declared by {', '.join(protocols)}:", 1)
    raise ValueError(text)


def _display_names():
    """The registry's display names and citations (`bench report --display-names`)."""
    from bench.report.method_names import MethodNames
    from methods import METHODS

    return MethodNames.of(METHODS)


def _normal_specs(specs: list[str] | None) -> list[str] | None:
    """Method specs as the table's `variant` column spells them (`git-rebasin[max_sweeps=100]` is
    `git-rebasin`); names and shell patterns as given."""
    from methods import METHODS, UnknownMethod, normalise_spec, parse_method

    out = []
    for spec in specs or []:
        try:
            known = parse_method(spec)[0] in METHODS
        except UnknownMethod:
            known = False
        try:
            out.append(normalise_spec(spec) if known else spec)
        except ValueError:
            out.append(spec)
    return out or specs


def _comparison(args) -> int:
    from bench.report.comparison import OUT_MARKER, comparison, mark, render, select
    from bench.report.files import write_text
    from bench.store.results import ResultStore, current_code
    from zoos.files import check_ours

    to_stdout = args.out is not None and str(args.out) == "-"
    if args.out and not to_stdout:  # before any work: the user's own file at --out is not ours to replace
        check_ours(args.out, OUT_MARKER, args.force, "`bench report --out`")
    table = select(current_code(ResultStore(args.results).table()), _normal_specs(args.methods), args.zoos,
                   args.protocols)
    if args.metric:
        _check_metric(args.metric, table)
    matrices = comparison(table, args.metric, _display_names() if args.display_names else None)
    if not matrices:
        raise ValueError(f"{args.results}: nothing to compare for this selection"
                         + (f" (no protocol declares metric {args.metric!r} with values here)" if args.metric else ""))
    fmt = args.format or (args.out.suffix.lstrip(".") if args.out and not to_stdout else "md") or "md"
    text = render(matrices, fmt)
    if args.out and not to_stdout:  # a regular file is replaced atomically, a FIFO or device written as a stream
        print(f"wrote {write_text(args.out, mark(text, fmt))}")
    else:
        sys.stdout.write(text)
    return 0


def _mirror(args) -> int:
    from bench.store import tracking
    from bench.store.results import ResultStore

    if not (args.results / "rows").is_dir():
        raise FileNotFoundError(f"{args.results}: no results table (rows/) to mirror")
    table = ResultStore(args.results).table()
    if args.check:
        problems = tracking.check(table, results_dir=args.results)
        for line in problems:
            print(line)
        print(f"mlflow mirror: {'consistent' if not problems else f'{len(problems)} problem(s)'} "
              f"({len(table)} rows)")
        return 1 if problems else 0
    from bench.protocols import PROTOCOLS
    from methods import METHODS

    new = (tracking.rebuild if args.rebuild else tracking.mirror)(table, results_dir=args.results, protocols=PROTOCOLS,
                                                                  methods=METHODS)
    new += [r for r in [tracking.mirror_report(args.results)] if r]  # the report files, if `bench report` wrote them
    print(f"mlflow: {len(new)} run(s) {'rebuilt' if args.rebuild else 'mirrored'}")
    return 0


def _methods() -> int:
    from methods import METHODS, ORIGINS

    width = max(map(len, METHODS)) + 1
    print(f"{'method':{width}s} {'kind':8s} {'reads':14s} {'tasks':22s} hyperparameters (default)")
    for name, cls in METHODS.items():
        hp = ", ".join(f"{k}={h.default!r} ({h.kind})" for k, h in cls.search_space.items()) or "none"
        kind = "learned" if cls.learned else "exact" if cls.exact else "inexact"
        # what the default variant reads besides the weights (a hyperparameter may change it, e.g. otfusion's cost)
        print(f"{name:{width}s} {kind:8s} {cls().needs:14s} {','.join(cls.tasks):22s} {hp}")
        about = "; ".join(filter(None, (cls.description, cls.reference_text(),
                                        None if ORIGINS.get(name, "").startswith("methods.") else ORIGINS.get(name))))
        print(f"{'':{width}s} {cls.label()}{': ' + about if about else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    from methods import UnknownMethod
    from zoos.data import DataError
    from zoos.files import WorkerError, interrupted
    from zoos.space import SpecError
    from zoos.zoo import ZooError

    try:
        if getattr(args, "include", None):
            from methods import include

            for path in args.include:
                include(path)
        if args.command == "run":
            return _run(args, argv)
        if args.command == "report" and args.claims:
            return _claims(args, argv)
        if args.command == "report":
            if not (args.results / "rows").is_dir():  # a typo must not create a folder and exit 0
                raise FileNotFoundError(f"{args.results}: no results table here (expected {args.results / 'rows'}/;"
                                        f" `bench run --results {args.results}` writes one)")
            if any((args.methods, args.zoos, args.protocols, args.metric, args.format, args.out)):
                return _comparison(args)
            _finish(args.results, argv, mirror=False, display_names=args.display_names)
            return 0
        if args.command == "methods":
            return _methods()
        if args.command == "reproduce":
            from bench import reproduce

            return reproduce.main(args)
        if args.command == "mirror":
            return _mirror(args)
        if args.command == "ae" and args.ae_command == "study":
            from bench.ae_study import run_study, study_table, write_report

            if args.report_only:
                write_report(study_table(args.results, tuple(args.kinds)), args.results)
            else:
                run_study(args.results, tuple(args.kinds), progress=not args.quiet)
            print(f"wrote {args.results / 'autoencoder.md'} and {args.results / 'autoencoder.png'}")
            return 0
        if args.command == "ae":
            from bench.autoencoder import main as ae_main

            return ae_main(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "perf":
            if args.suites and "gpu" in args.suites:  # its own table: results/perf_gpu.md
                from bench.perf.gpu import markdown, run

                print(markdown(run(args.results, args.device, args.repeats)))
                args.suites = [s for s in args.suites if s != "gpu"]
                if not args.suites:
                    return 0
            from bench.perf.suites import run_perf

            run_perf(args.results, args.suites, args.threads, args.repeats, tuple(args.widths or ()) or None,
                     args.peer_rebasin, args.peer_sinkhorn, args.budget, args.baseline)
            print((args.results / "perf.md").read_text())
            return 0
        return _zoo(args)
    except (ZooError, DataError, SpecError, UnknownMethod, ValueError, OSError, WorkerError) as error:
        if interrupted(error):  # a cleanup that failed under Ctrl-C: the interrupt is what happened
            return _interrupted()
        print(f"bench: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    except MemoryError as error:  # what no estimate caught: one line, not a traceback
        print(f"bench: error: out of memory ({' '.join(str(error).split()) or 'MemoryError'}); lower the sizes "
              f"asked for, or raise the memory limit (ulimit -v)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as error:
        if interrupted(error):
            return _interrupted()
        raise


def _interrupted() -> int:
    print("bench: interrupted; rerun the same command to resume", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
