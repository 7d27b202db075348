"""`bench ae`: train and evaluate the symmetry-aware autoencoders, and their scaling study."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, command) -> None:
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
    study.add_argument("--report-only", action="store_true",
                       help="rewrite the report from what is there: the rows and measurements.parquet (re-measured "
                            "from the zoos and checkpoints when it is missing or stale)")
    study.add_argument("--into", type=Path, default=None,
                       help="write the report here instead of --results (it reads perf.parquet from here too)")
    study.add_argument("--quiet", action="store_true")


def main(args, argv) -> int:
    if args.ae_command == "study":
        from bench.ae_study import run_study, study_table, write_report

        into = args.into or args.results
        if args.report_only:
            into.mkdir(parents=True, exist_ok=True)
            write_report(study_table(args.results, tuple(args.kinds)), into)
        else:
            run_study(args.results, tuple(args.kinds), progress=not args.quiet)
            if into != args.results:
                write_report(study_table(args.results, tuple(args.kinds)), into)
        print(f"wrote {into / 'autoencoder.md'} and {into / 'autoencoder.png'}")
        return 0
    from bench.autoencoder import main as ae_main

    return ae_main(args)
