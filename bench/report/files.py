"""Every report file of a results directory at once: leaderboards, comparison matrices and figures."""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bench.report.comparison import FORMATS, comparison, render
from bench.report.figures import write_figures
from bench.report.leaderboard import leaderboard
from bench.report.method_names import MethodNames
from bench.report.render import html_page, latex, markdown
from bench.report.sections import all_sections
from bench.store.results import ResultStore, current_code
from zoos.files import clean_temp_files, write_bytes_atomic


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, making its directory: a kill leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def read_sweeps(results_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The sweep trials' rows (`bench sweep` writes them under <results>/sweeps/), if any."""
    root = Path(results_dir) / "sweeps"
    return ResultStore(root).table() if (root / "rows").is_dir() else None


def _gc_paused(fn):
    """`fn` with Python's cyclic garbage collection paused (what it leaves as garbage is collected later): a
    report makes many short-lived objects (frames, matplotlib artists), and the collections they set off walk
    every older object of the process too (~3 * 10^5 where torch is loaded, as in `bench run`): 10-15% of the
    report's time."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_gc_paused
def write_all(results_dir: str | os.PathLike = "results", header_lines: Sequence[str] = (),
              method_needs: Mapping[str, str] | None = None, names: MethodNames | None = None,
              into: str | os.PathLike | None = None) -> list[Path]:
    """Read the tables under `results_dir`; write the figures and leaderboard.{md,tex,html} there.
    `method_needs` (method name -> what it reads) fills the data column of rows written before rows
    carried it (every such method read the same whatever its hyperparameters). `names`: tables show
    methods by display name, with their references (figures keep the registered names). `into`: write the
    files there instead (e.g. the tables of an archive, `bench.store.archive`, beside the other reports)."""
    results_dir = Path(results_dir)
    store = ResultStore(results_dir)
    table = current_code(store.table())
    # what the runs could not measure, so that a missing section or cell is never silent
    header_lines = [*header_lines, *(f"Not measured: {zoo} / {protocol}: {why}."
                                     for zoo, protocol, why in store.gaps())]
    # how each zoo in the table was made (its recipe), as the runs recorded it
    if "zoo_hash" in table.columns:
        shown = set(table["zoo_hash"].dropna().astype(str))
        header_lines += [f"Zoo #{h[:6]}: {text}." for h, text in sorted(store.zoo_descriptions().items())
                         if h in shown]
    if method_needs and "method" in table.columns:
        known = table["method"].map(dict(method_needs))
        table["method_needs"] = table["method_needs"].fillna(known) if "method_needs" in table.columns else known
    sweeps = read_sweeps(results_dir)
    out = Path(into) if into is not None else results_dir
    clean_temp_files(out)  # of a report killed mid-write
    figures = write_figures(table, out)
    files = [p.name for p in figures]
    board = leaderboard(table)  # once: every table below is read off it
    sections = all_sections(table, sweeps, names, board)
    matrices = comparison(table, names=names, board=board)
    return [write_text(out / "leaderboard.md", markdown(table, header_lines, sweeps, files, names, sections)),
            write_text(out / "leaderboard.tex", latex(table, header_lines, sweeps, names, sections)),
            write_text(out / "leaderboard.html", html_page(table, header_lines, sweeps, files, names, sections)),
            *figures,
            *(write_text(out / f"comparison.{fmt}", render(matrices, fmt, header_lines)) for fmt in FORMATS)]


def write_report(results_dir: str | os.PathLike = "results", header_lines: Sequence[str] = (),
                 method_needs: Mapping[str, str] | None = None,
                 names: MethodNames | None = None, into: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """`write_all`; returns (leaderboard.md, curves.png) (every file is listed by `write_all`)."""
    paths = write_all(results_dir, header_lines, method_needs, names, into)
    return paths[0], paths[3]
