"""`bench reproduce`: a paper's headline experiment in its own regime (`bench.reproduce`, imported when run:
its declarations parse method specs, which loads every method)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, command) -> None:
    from bench.execution.reproductions import REPRODUCTIONS

    p = command("reproduce", "a paper's headline experiment in its own regime (resumable), results/reproductions.md")
    p.add_argument("papers", nargs="*", help=f"{' | '.join(REPRODUCTIONS)} (default: all)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto: where networks are scored (default: cpu)")
    p.add_argument("--peer-rebasin", help="python of a virtualenv with the PyPI `rebasin` package: aligns the same "
                                          "pairs for comparison (python3 -m venv V && V/bin/pip install "
                                          "torch==2.13.0 safetensors rebasin)")
    p.add_argument("--peer-sinkhorn", help="python of a virtualenv with the PyPI `sinkhorn-rebasin` package (its "
                                           "L2 objective on the same pairs)")
    p.add_argument("--report-only", action="store_true", help="write results/reproductions.md from what is measured")
    p.add_argument("--into", type=Path, help="--report-only: write reproductions.md and its figures here (default:"
                                             " --results), e.g. from an archive (`bench archive`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args, argv=None) -> int:
    from bench import reproduce

    return reproduce.main(args)
