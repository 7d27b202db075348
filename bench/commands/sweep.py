"""`bench sweep`: an Optuna sweep of a method's hyperparameters, then the tuned specs compared on the test split."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.commands.common import COUNT, SEED, THREADS, include_option
from bench.commands.report import normal_specs


def add_parser(sub, command) -> None:
    from bench.execution.presets import PRESETS

    presets = " | ".join(PRESETS)
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
    include_option(sweep)


def main(args, argv) -> int:
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
    from bench.execution.specs import protocol_options
    from bench.execution.sweep import test_protocol
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
    table = select(current_code(ResultStore(where).table()), methods=normal_specs(specs))
    sys.stdout.write(to_markdown(comparison(table, out.get("metric", cfg.metric))))
