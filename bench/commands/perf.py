"""`bench perf`: timings side by side into results/perf.*."""

from __future__ import annotations

from pathlib import Path

from bench.commands.common import COUNT, THREADS, number


def add_parser(sub, command) -> None:
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
    perf.add_argument("--budget", type=number(0.0, 1e9), default=30.0,
                      help="align: CPU seconds per pair above which a method is not repeated nor run wider")
    perf.add_argument("--peer-rebasin", help="python of a separate venv with PyPI `rebasin` (weight matching peer)")
    perf.add_argument("--peer-sinkhorn", help="python of a separate venv with PyPI `sinkhorn-rebasin`")
    perf.add_argument("--report-only", action="store_true",
                      help="rewrite perf.md / perf.png (and perf_gpu.md) from the Parquet tables under --results")
    perf.add_argument("--into", type=Path, help="--report-only: write the reports here (default: --results)")
    perf.add_argument("--baseline", metavar="REV", help="align: also run git-rebasin and c2m3 as they were at this "
                      "commit, side by side (speed-ups over an earlier version in one run)")


def main(args, argv) -> int:
    if args.report_only:
        return _report_only(args)
    if args.into:
        raise ValueError("--into is for --report-only (a measurement writes its report beside its table)")
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


def _report_only(args) -> int:
    """The perf reports from their committed tables: no measurement, same bytes."""
    import pandas as pd

    from bench.perf.gpu import markdown as gpu_markdown
    from bench.perf.suites import write_perf_report
    from bench.report.files import write_text
    from zoos.files import check_parquet

    out = args.into or args.results
    written = []
    if (args.results / "perf.parquet").is_file():
        written += write_perf_report(pd.read_parquet(check_parquet(args.results / "perf.parquet")), out)
    if (args.results / "perf_gpu.parquet").is_file():
        table = pd.read_parquet(check_parquet(args.results / "perf_gpu.parquet"))
        written.append(write_text(out / "perf_gpu.md", gpu_markdown(table)))
    if not written:
        raise FileNotFoundError(f"{args.results}: no perf.parquet or perf_gpu.parquet to report")
    for path in written:
        print(f"wrote {path}")
    return 0
