"""`bench mirror`: the results table's MLflow mirror, checked or rebuilt."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, command) -> None:
    mir = command("mirror", "mirror the results table to MLflow (check it, or rebuild it from Parquet)")
    mir.add_argument("--results", type=Path, default=Path("results"))
    mode = mir.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report how the mirror differs from the table")
    mode.add_argument("--rebuild", action="store_true", help="delete the mirror's runs and log the table afresh")


def main(args, argv) -> int:
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
