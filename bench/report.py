"""Reports as pure functions of the results table: leaderboard (DataFrame, Markdown) and curve figure.

Nothing here reads the clock or the environment: the same table gives byte-identical Markdown,
and whatever provenance a report should state (command, commit, date) comes in `header_lines`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.results import SORT_COLUMNS, ResultStore, is_missing

# score barriers: accuracy for classifiers, PSNR for INRs (whichever the table has)
SCORE_BARRIERS = ("acc_barrier", "psnr_barrier")
SCORE_LABELS = {"loss_barrier": "loss barrier", "acc_barrier": "acc barrier", "psnr_barrier": "PSNR barrier"}


def _section_columns(table: pd.DataFrame) -> list[str]:
    """Columns that define one comparison: zoo, protocol and, for the orbit protocol, action and eps."""
    return ["zoo", "protocol"] + [c for c in ("action", "eps") if c in table.columns and table[c].notna().any()]


def _ok_rows(table: pd.DataFrame) -> pd.Series:
    if "error" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["error"].map(is_missing).astype(bool)


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (zoo, protocol[, action, eps], variant): n units, mean/std of the barriers,
    max functional deviation, median align seconds, and the rank by mean loss barrier (1 = lowest)
    within its (zoo, protocol[, action, eps]) comparison. Units that errored are counted, not averaged."""
    table = table.copy()
    for c in ("zoo", "protocol", "variant"):
        if c not in table.columns:
            table[c] = None
    section = _section_columns(table)
    keys = section + ["variant"]
    # a fixed row order makes every float sum, hence every printed digit, independent of input order
    order = [c for c in SORT_COLUMNS if c in table.columns]
    table = table.sort_values(order, kind="mergesort", na_position="last") if order else table
    ok = _ok_rows(table)
    table["_ok"] = ok
    metrics = [c for c in ("loss_barrier",) + SCORE_BARRIERS if c in table.columns]
    out = []
    for ident, rows in table.groupby(keys, dropna=False, sort=True):
        good = rows[rows["_ok"]]
        rec = dict(zip(keys, ident, strict=True))
        if "method" in rows.columns:
            rec["method"] = rows["method"].dropna().iloc[0] if rows["method"].notna().any() else None
        rec["n"] = len(good)
        rec["n_errors"] = len(rows) - len(good)
        for c in metrics:
            values = pd.to_numeric(good[c], errors="coerce")
            rec[f"{c}_mean"], rec[f"{c}_std"] = values.mean(), values.std()
        if "deviation" in rows.columns:
            rec["deviation_max"] = pd.to_numeric(good["deviation"], errors="coerce").max()
        if "align_s" in rows.columns:
            rec["align_s_median"] = pd.to_numeric(good["align_s"], errors="coerce").median()
        out.append(rec)
    board = pd.DataFrame(out)
    if board.empty:
        return board
    if "loss_barrier_mean" in board.columns:
        board["rank"] = (board.groupby(section, dropna=False)["loss_barrier_mean"]
                         .rank(method="min", na_option="bottom").astype("Int64"))
    else:
        board["rank"] = pd.array([pd.NA] * len(board), dtype="Int64")
    return board.sort_values(section + ["rank", "variant"], kind="mergesort", na_position="last").reset_index(drop=True)


def fmt(x) -> str:
    """Three significant digits; '–' for a missing value."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}"


def fmt_pm(mean, std) -> str:
    """'0.123 ± 0.045'; the mean alone when the std is undefined (one unit)."""
    if fmt(mean) == "–" or fmt(std) == "–":
        return fmt(mean)
    if abs(std) <= 1e-12 * abs(mean):  # round-off of identical values, not a spread
        std = 0.0
    return f"{fmt(mean)} ± {fmt(std)}"


def _label(value) -> str:
    return value if isinstance(value, str) else fmt(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(table: pd.DataFrame, header_lines: Sequence[str] = ()) -> str:
    """The leaderboard as Markdown text: one section per zoo/protocol."""
    board = leaderboard(table)
    lines = list(header_lines)
    if lines:
        lines.append("")
    lines += ["Mean ± std (sample) over units of work; barriers are the largest excess of the interpolation "
              "path over the straight line between its endpoints (loss up, accuracy/PSNR down; lower is better). "
              "Rank by mean loss barrier within each comparison.", ""]
    if board.empty:
        return "\n".join(lines + ["No results yet.", ""])
    extra = [c for c in ("action", "eps") if c in board.columns]
    for (zoo, protocol), part in board.groupby(["zoo", "protocol"], dropna=False, sort=True):
        lines += [f"## {_label(zoo)} / {_label(protocol)}", ""]
        sub_extra = [c for c in extra if part[c].notna().any()]
        scores = [c for c in ("loss_barrier",) + SCORE_BARRIERS if f"{c}_mean" in part.columns
                  and part[f"{c}_mean"].notna().any()]
        header = ["rank"] + sub_extra + ["variant", "n"] + [SCORE_LABELS[c] for c in scores]
        has_dev = "deviation_max" in part.columns and part["deviation_max"].notna().any()
        has_time = "align_s_median" in part.columns and part["align_s_median"].notna().any()
        has_err = int(part["n_errors"].sum()) > 0
        header += (["max deviation"] if has_dev else []) + (["align s (median)"] if has_time else [])
        header += ["errors"] if has_err else []
        rows = []
        for _, r in part.iterrows():
            row = [fmt(r["rank"]) if pd.notna(r["rank"]) else "–"]
            row += [_label(r[c]) for c in sub_extra]
            row += [str(r["variant"]), str(int(r["n"]))]
            row += [fmt_pm(r[f"{c}_mean"], r[f"{c}_std"]) for c in scores]
            row += ([fmt(r["deviation_max"])] if has_dev else []) + ([fmt(r["align_s_median"])] if has_time else [])
            row += [str(int(r["n_errors"]))] if has_err else []
            rows.append(row)
        lines += _md_table(header, rows) + [""]
    return "\n".join(lines)


def write_markdown(table: pd.DataFrame, path: str | os.PathLike, header_lines: Sequence[str] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(table, header_lines), encoding="utf-8", newline="\n")
    return path


def curves_long(table: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Explode `lambdas` and `curve_<metric>` into one row per (unit, lambda)."""
    col = f"curve_{metric}"
    cols = ["zoo", "protocol", "variant", "key", "lambdas", col]
    if any(c not in table.columns for c in ("lambdas", col)):
        return pd.DataFrame(columns=["panel", "variant", "lambda", metric])
    rows = table[_ok_rows(table)].reindex(columns=cols)
    same = [isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b) > 0
            for a, b in zip(rows["lambdas"], rows[col], strict=True)]
    rows = rows[same]
    long = rows.explode(["lambdas", col]).rename(columns={"lambdas": "lambda", col: metric})
    long["lambda"] = long["lambda"].astype(float)
    long[metric] = long[metric].astype(float)
    long["panel"] = long["zoo"].astype(str) + " · " + long["protocol"].astype(str)
    long["variant"] = long["variant"].astype(str)
    return long.reset_index(drop=True)


def plot_curves(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss") -> Path:
    """Interpolation curves, mean ± std band per variant, one panel per (zoo, protocol); writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    long = curves_long(table, metric)
    if long.empty:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.text(0.5, 0.5, "no interpolation curves yet", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    panels = sorted(long["panel"].unique())
    with sns.axes_style("whitegrid"):
        grid = sns.relplot(data=long, x="lambda", y=metric, hue="variant", hue_order=sorted(long["variant"].unique()),
                           col="panel", col_order=panels, col_wrap=min(3, len(panels)), kind="line",
                           errorbar="sd", height=3.2, aspect=1.25, facet_kws={"sharey": False})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("λ (0 = reference, 1 = aligned)", metric)
    grid.figure.suptitle(f"Interpolation {metric} (mean ± std over units)", y=1.03)
    grid.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(grid.figure)
    return path


def write_report(results_dir: str | os.PathLike = "results", header_lines: Sequence[str] = ()) -> tuple[Path, Path]:
    """Read the store under `results_dir`; write `leaderboard.md` and `curves.png` there."""
    results_dir = Path(results_dir)
    table = ResultStore(results_dir).table()
    md = write_markdown(table, results_dir / "leaderboard.md", header_lines)
    png = plot_curves(table, results_dir / "curves.png")
    return md, png
