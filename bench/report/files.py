"""Every report file of a results directory at once: leaderboards, comparison matrices and figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bench.report.comparison import FORMATS, comparison, render
from bench.report.tables import _write_text, html_page, latex, read_sweeps, write_figures, write_markdown
from bench.store.results import ResultStore, current_code
from zoos.files import clean_temp_files


def write_all(results_dir: str | os.PathLike = "results", header_lines: Sequence[str] = ()) -> list[Path]:
    """Read the tables under `results_dir`; write the figures and leaderboard.{md,tex,html} there."""
    results_dir = Path(results_dir)
    table = current_code(ResultStore(results_dir).table())
    clean_temp_files(results_dir)  # of a report killed mid-write
    sweeps = read_sweeps(results_dir)
    figures = write_figures(table, results_dir)
    names = [p.name for p in figures]
    matrices = comparison(table)
    return [write_markdown(table, results_dir / "leaderboard.md", header_lines, sweeps, names),
            _write_text(results_dir / "leaderboard.tex", latex(table, header_lines, sweeps)),
            _write_text(results_dir / "leaderboard.html", html_page(table, header_lines, sweeps, names)),
            *figures,
            *(_write_text(results_dir / f"comparison.{fmt}", render(matrices, fmt, header_lines)) for fmt in FORMATS)]


def write_report(results_dir: str | os.PathLike = "results", header_lines: Sequence[str] = ()) -> tuple[Path, Path]:
    """`write_all`; returns (leaderboard.md, curves.png) (every file is listed by `write_all`)."""
    paths = write_all(results_dir, header_lines)
    return paths[0], paths[3]
