"""`bench run`: run (or resume) a benchmark."""

from __future__ import annotations

from pathlib import Path

from bench.commands.common import MAX_PARALLEL, SEED, THREADS, include_option, integer
from bench.commands.finisher import finish

SHOWN_FAILURES = 10  # failed units listed in the run summary


def add_parser(sub, command) -> None:
    from bench.execution.presets import PRESETS

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
    run.add_argument("--workers", type=integer(0, MAX_PARALLEL), default=0,
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
    include_option(run)


def main(args, argv) -> int:
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
        from bench.execution.specs import protocol_options

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
    follower = None
    if not args.no_mlflow:  # mirrors each (zoo, method) while the run goes on
        from bench.commands.finisher import MirrorProcess

        follower = MirrorProcess(args.results)
    summary = run_benchmark(bench, args.methods, opts, on_group=follower.rows_written if follower else None)
    print(f"units: {summary.done} run, {summary.skipped} already done, {summary.failed} failed")
    failures = summary.failures
    for zoo, variant, protocol, unit, error in failures[:SHOWN_FAILURES]:
        print(f"  failed: {zoo} / {variant} / {protocol} / {unit}: {error}")
    if len(failures) > SHOWN_FAILURES:
        print(f"  ... and {len(failures) - SHOWN_FAILURES} more failed units (the `error` column of the results table)")
    notes = [f"Skipped `{spec}` on {zoo}: {reason}." for spec, zoo, reason in summary.skipped_pairs]
    for line in notes + [f"Not measured: {zoo} / {protocol}: {why}." for zoo, protocol, why in summary.gaps]:
        print(line)  # the report lists what the store recorded as not measured (of this run and earlier ones)
    finish(args.results, argv, mirror=not args.no_mlflow, report=not args.no_report, notes=notes, follower=follower)
    return 1 if summary.failed else 0
