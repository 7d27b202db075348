"""Figures: small multiples (one panel per zoo [· protocol / action / score] and method family: exact
data-free, exact reading data, inexact, learned; naive averaging and reference baselines in grey in
every panel), mean with its 95% percentile bootstrap CI as a band or error bar, seaborn's colour-blind
palette, each line named at its end instead of a legend: interpolation curves, orbit's rank metric
(path excess) vs eps, barrier vs width, merged score vs N (integer N, points dodged per method, filled /
open for plain / REPAIR), runtime vs width, combinability probes.

PNGs are written without a software/date stamp: the same table gives byte-identical files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.declared import PROBE_ORDER, SCORE_LABELS
from bench.report.long_frames import (
    FAMILY_ORDER,
    FAMILY_TITLES,
    combine_long,
    curves_long,
    eps_long,
    merge_long,
    runtime_long,
    width_long,
)
from bench.report.stats import finite_intervals
from zoos.files import write_bytes_atomic


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it takes a while)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, tight: bool = True) -> Path:
    """PNG without the software/date metadata matplotlib would stamp: byte-identical reruns. `tight=False`
    for figures that set their own margins (one drawing instead of two)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight" if tight else None,
                                                    metadata={"Software": None}))
    pyplot().close(fig)
    return path


def _placeholder(path: Path, text: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return _save(fig, path)


# seaborn's colour-blind-safe palette ("colorblind") without its grey (kept for baselines) and its yellow (too
# light on white)
PALETTE = ("#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161", "#FBAFE4", "#56B4E9")


def _palette() -> list:
    from matplotlib.colors import to_rgb

    return [to_rgb(c) for c in PALETTE]


# colour, dash, marker: naive averaging, other baselines (reference)
BASELINE_STYLE = {"naive": ("0.25", (0, (4, 2)), "X"), "": ("0.55", (0, (1, 1.5)), "P")}


def _styles(long: pd.DataFrame) -> dict[str, tuple]:
    """variant -> (colour, linestyle, marker): colours from the palette in order within each family (so one
    family's panels share them), grey dashes for baselines; a family with more variants than colours
    repeats them dashed."""
    palette, markers = _palette(), "osD^v<>ph*"
    out = {}
    for family, part in long.groupby("family", sort=True):
        for i, v in enumerate(sorted(part["variant"].unique())):
            if family == "baseline":
                out[v] = BASELINE_STYLE.get(v.split("[")[0], BASELINE_STYLE[""])
            else:
                out[v] = (palette[i % len(palette)], "-" if i < len(palette) else (0, (5, 2)),
                          markers[i % len(markers)])
    return out


def _short_names(long: pd.DataFrame) -> dict[str, str]:
    """variant -> the name its line is labelled with: the method alone where it is the figure's only variant of
    that method (the hyperparameters are in the tables), else the whole spec."""
    variants = sorted(long["variant"].unique())
    methods = [v.split("[")[0] for v in variants]
    return {v: m if methods.count(m) == 1 else v for v, m in zip(variants, methods, strict=True)}


def figure_ci(values, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the 95% percentile bootstrap interval of the mean (fixed seed); a figure has
    hundreds of points, and the tables' BCa interval (`stats.mean_ci`) costs a jackknife each. The mean alone
    where fewer than 2 distinct values leave nothing to resample."""
    return figure_cis([values], resamples, seed)[0]


def figure_cis(samples, resamples: int = 2000, seed: int = 0) -> list[tuple[float, float, float, int]]:
    """`figure_ci` of each sample, the samples of one size resampled together (with the resamples a call per
    sample draws)."""
    def percentile(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picks = np.random.default_rng(seed).integers(0, x.shape[1], size=(resamples, x.shape[1]))
        # numpy sums a contiguous row pairwise, a strided one in another order: copy before taking means
        boot = np.ascontiguousarray(x[:, picks]).mean(-1)
        low, high = np.quantile(boot, [0.025, 0.975], axis=-1)
        return low, high

    return finite_intervals(samples, percentile)


def _summary(long: pd.DataFrame, by: list[str], y: str) -> pd.DataFrame:
    """Per group: mean and 95% bootstrap CI of `y` over units (`figure_ci`) and n."""
    keys, samples = [], []
    for key, values in long.groupby(by, sort=True, dropna=False)[y]:
        keys.append(key if isinstance(key, tuple) else (key,))
        samples.append(values.tolist())
    out = [dict(zip(by, key, strict=True), mean=mean, lo=low, hi=high, n=n)
           for key, (mean, low, high, n) in zip(keys, figure_cis(samples), strict=True)]
    return pd.DataFrame(out, columns=[*by, "mean", "lo", "hi", "n"])


LABEL_SIZE = 7.0  # points: the direct labels at line ends


def _direct_labels(ax, ends: list[tuple[str, float, tuple]], fontsize: float = LABEL_SIZE) -> None:
    """Name each line at the right edge of its panel, at the height where it ends, in its colour; labels
    closer than a line of text are pushed apart (and kept in order)."""
    if not ends:
        return
    to_axes = ax.transData + ax.transAxes.inverted()
    ys = [(float(to_axes.transform((ax.get_xlim()[1], y))[1]), text, colour) for text, y, colour in ends
          if math.isfinite(y)]
    ys.sort(key=lambda t: (t[0], t[1]))
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    gap = 1.15 * fontsize / max(height_pt, 1.0)
    placed: list[float] = []
    for y, _, _ in ys:
        placed.append(max(y, placed[-1] + gap) if placed else y)
    if placed and placed[-1] > 1.0:  # shift the stack down so it ends at the top, never above
        shift = placed[-1] - max(1.0, placed[0] + gap * (len(placed) - 1))
        placed = [p - shift for p in placed]
    for p, (_, text, colour) in zip(placed, ys, strict=True):
        ax.text(1.02, p, text, transform=ax.transAxes, color=colour, fontsize=fontsize, va="center", ha="left",
                clip_on=False)


def _grid(long: pd.DataFrame, row: str, col: str | None, col_order: Sequence | None = None):
    """Figure and axes of the small multiples: one row per `row` value, one column per `col` value (family:
    baselines join every column instead of having one), spaced so that the longest direct label fits between
    two panels; returns (fig, {(r, c): ax}, rows, cols)."""
    plt = pyplot()
    rows = sorted(long[row].unique())
    if col is None:
        cols = [None]
    elif col == "family":
        present = set(long["family"]) - {"baseline"}
        cols = [f for f in FAMILY_ORDER if f in present] or ["baseline"]
    else:
        cols = [c for c in (col_order or ()) if c in set(long[col])] + sorted(set(long[col]) - set(col_order or ()))
    panel_w, panel_h = 3.3, 2.4
    label_w = max(len(v) for v in _short_names(long).values()) * LABEL_SIZE * 0.52 / 72 + 0.1
    gap = label_w + 0.7  # the labels, then the next panel's tick labels and axis label
    keys = [(r, c) for r in rows for c in cols]
    # one panel per row value: wrapped into up to three columns instead of one tall stack
    across = min(3, len(rows)) if len(cols) == 1 else len(cols)
    down = -(-len(keys) // across)
    fig, axes = plt.subplots(down, across, squeeze=False,
                             figsize=(across * panel_w + (across - 1) * gap + label_w + 0.9,
                                      down * (panel_h + 1.15) + 0.1))
    fig.subplots_adjust(left=0.9 / fig.get_figwidth(), right=1 - (label_w + 0.05) / fig.get_figwidth(),
                        top=1 - 0.75 / fig.get_figheight(), bottom=0.55 / fig.get_figheight(),
                        wspace=gap / panel_w, hspace=1.15 / panel_h)
    flat = list(axes.flat)
    for ax in flat[len(keys):]:
        ax.set_visible(False)
    return fig, dict(zip(keys, flat, strict=False)), rows, cols


def _panel_rows(long: pd.DataFrame, row: str, col: str | None, r, c) -> pd.DataFrame:
    part = long[long[row] == r]
    if col is None:
        return part
    if col == "family":
        return part[(part["family"] == c) | (part["family"] == "baseline")] if c != "baseline" else part
    return part[part[col] == c]


def _title(row_value, col: str | None, col_value) -> str:
    if col is None:
        return str(row_value)
    name = FAMILY_TITLES.get(col_value, col_value) if col == "family" else col_value
    return f"{row_value}\n{name}" if name else str(row_value)


def _finish_axes(ax, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
                 symlog_x: float | None = None, integer_x: Sequence | None = None) -> None:
    if logx:  # widths: powers of two, labelled as the numbers they are
        ax.set_xscale("log", base=2)
        ticks = sorted({float(v) for line in ax.get_lines() for v in line.get_xdata()})
        if ticks:
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.xaxis.set_minor_locator(pyplot().NullLocator())
    if symlog_x:  # noise levels: ticks at the levels measured, as plain numbers
        ax.set_xscale("symlog", linthresh=symlog_x)
        ticks = sorted({float(v) for line in ax.get_lines() for v in line.get_xdata()})
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(pyplot().NullLocator())
    if logy:
        ax.set_yscale("log")
    if integer_x is not None:
        ax.set_xticks(list(integer_x), [str(int(v)) for v in integer_x])
        ax.set_xlim(min(integer_x) - 0.5, max(integer_x) + 0.5)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(which="both", labelsize=7)
    ax.grid(True, color="0.9", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _line_multiples(long: pd.DataFrame, x: str, y: str, title: str, path: Path, xlabel: str, ylabel: str,
                    row: str = "panel", col: str | None = "family", logx: bool = False, logy: bool = False,
                    symlog_x: float | None = None, ylabels: dict | None = None,
                    col_order: Sequence | None = None) -> Path:
    """Small multiples of lines: mean per x with its 95% CI as a band, one panel per (`row`, `col`) value
    (col "family": one per method family, the baselines in each), each line named at its end."""
    if long.empty:
        return _placeholder(path, "nothing to draw yet")
    styles, short = _styles(long), _short_names(long)
    fig, axes, rows, cols = _grid(long, row, col, col_order)
    for (r, c), ax in axes.items():
        part = _panel_rows(long, row, col, r, c)
        if part.empty:
            ax.set_visible(False)
            continue
        stats = _summary(part, ["variant", x], y)
        ends = []
        for variant, line in stats.groupby("variant", sort=True):
            colour, dash, marker = styles[variant]
            line = line.sort_values(x)
            ax.fill_between(line[x], line["lo"], line["hi"], color=colour, alpha=0.12, linewidth=0)
            ax.plot(line[x], line["mean"], color=colour, linestyle=dash, marker=marker, markersize=3, linewidth=1.3)
            ends.append((short[variant], float(line["mean"].iloc[-1]), colour))
        _finish_axes(ax, xlabel, (ylabels or {}).get(r, ylabel), logx, logy, symlog_x)
        ax.set_title(_title(r, col, c), fontsize=8)
        _direct_labels(ax, ends)
    fig.suptitle(title, y=1 - 0.1 / fig.get_figheight(), fontsize=10)
    return _save(fig, path, tight=False)


def _ci_note(long: pd.DataFrame, by: list[str]) -> str:
    n = long.groupby(by).size()
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"


def plot_curves(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss") -> Path:
    """Interpolation curves: mean and 95% CI band per variant, one panel per (zoo · protocol, method
    family); writes a PNG."""
    path = Path(path)
    long = curves_long(table, metric)
    if long.empty:
        return _placeholder(path, "no interpolation curves yet")
    return _line_multiples(long, "lambda", metric, f"Interpolation {metric}: mean and 95% CI over units "
                           f"({_ci_note(long, ['panel', 'variant', 'lambda'])} per point)", path,
                           "λ (0 = reference, 1 = aligned)", metric)


def plot_barrier_vs_eps(table: pd.DataFrame, path: str | os.PathLike, long: pd.DataFrame | None = None) -> Path:
    """Orbit: the rank metric (path excess) against the planted noise, one panel per (zoo · action, family).
    `long`: `eps_long(table)`, where the caller has it (as have the other plotters')."""
    long = eps_long(table) if long is None else long
    positive = long.loc[long["eps"] > 0, "eps"]
    metric = {r: SCORE_LABELS.get(m, m) for r, m in zip(long["panel"], long["metric"], strict=True)}
    names = sorted(set(metric.values()))
    # eps = 0 has no place on a log axis: linear below the smallest positive eps, log above
    return _line_multiples(long, "eps", "value", f"Orbit: {' / '.join(names)} (the rank metric) vs weight noise: "
                           f"mean and 95% CI ({_ci_note(long, ['panel', 'variant', 'eps'])} per point)", Path(path),
                           "ε (weight noise)", names[0] if names else "", ylabels=metric,
                           symlog_x=None if positive.empty else float(positive.min()))


def plot_barrier_vs_width(table: pd.DataFrame, path: str | os.PathLike, long: pd.DataFrame | None = None) -> Path:
    long = width_long(table) if long is None else long
    return _line_multiples(long, "width", "loss_barrier", "Loss barrier vs width: mean and 95% CI "
                           f"({_ci_note(long, ['panel', 'variant', 'width'])} per point)", Path(path),
                           "width (hidden units / channels)", "loss barrier", logx=True)


def plot_runtime_vs_width(table: pd.DataFrame, path: str | os.PathLike, long: pd.DataFrame | None = None) -> Path:
    long = runtime_long(table) if long is None else long
    return _line_multiples(long, "width", "align_s", "Alignment time vs width: mean and 95% CI "
                           f"({_ci_note(long, ['panel', 'variant', 'width'])} per point)", Path(path),
                           "width (hidden units / channels)", "align seconds", logx=True, logy=True)


def plot_merged_vs_n(table: pd.DataFrame, path: str | os.PathLike, long: pd.DataFrame | None = None) -> Path:
    """Merged score per number of models: points with 95% CI error bars per (N, method), dodged side by
    side (filled: merged, open: merged + REPAIR), one panel per (zoo · score, method family), integer N."""
    path = Path(path)
    long = merge_long(table) if long is None else long
    if long.empty:
        return _placeholder(path, "no merges yet")
    styles, short = _styles(long), _short_names(long)
    fig, axes, rows, cols = _grid(long, "panel", "family")
    kinds = [k for k in ("merged", "merged + REPAIR") if k in set(long["kind"])]
    for (r, c), ax in axes.items():
        part = _panel_rows(long, "panel", "family", r, c)
        if part.empty:
            ax.set_visible(False)
            continue
        stats = _summary(part, ["variant", "kind", "n_models"], "score")
        variants = sorted(stats["variant"].unique())
        slots = [(v, k) for v in variants for k in kinds]
        width = 0.8 / max(len(slots), 1)
        ns = sorted(int(n) for n in stats["n_models"].unique())
        ends = []
        for i, (variant, kind) in enumerate(slots):
            colour, _, marker = styles[variant]
            points = stats[(stats["variant"] == variant) & (stats["kind"] == kind)].sort_values("n_models")
            if points.empty:
                continue
            xs = points["n_models"].astype(float) + (i - (len(slots) - 1) / 2) * width
            err = [points["mean"] - points["lo"], points["hi"] - points["mean"]]
            ax.errorbar(xs, points["mean"], yerr=err, fmt=marker, color=colour, markersize=4, elinewidth=1,
                        capsize=1.5, markerfacecolor=colour if kind == "merged" else "white", markeredgewidth=1)
            if kind == kinds[0]:
                ends.append((short[variant], float(points["mean"].iloc[-1]), colour))
        _finish_axes(ax, "models merged (N)", "merged " + str(r).rsplit(" · ", 1)[-1], integer_x=ns)
        ax.set_title(_title(r, "family", c), fontsize=8)
        _direct_labels(ax, ends)
    handles = [pyplot().Line2D([], [], marker="o", linestyle="", color="0.3",
                                markerfacecolor="0.3" if k == "merged" else "white", label=k) for k in kinds]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False, fontsize=8,
               bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Merged model vs number of models: mean and 95% CI per N "
                 f"({_ci_note(long, ['panel', 'variant', 'kind', 'n_models'])} groups per point)",
                 y=1 - 0.1 / fig.get_figheight(), fontsize=10)
    return _save(fig, path, tight=False)


def plot_combine(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss",
                 long: pd.DataFrame | None = None) -> Path:
    """One panel per (zoo, probe): the worst sampled `metric` at each value of the probe's parameter."""
    long = combine_long(table, metric) if long is None else long
    return _line_multiples(long, "x", metric, f"Mode combinability: worst {metric} per probe value, mean and 95% CI "
                           f"over pairs ({_ci_note(long, ['zoo', 'probe', 'variant', 'x'])} per point)", Path(path),
                           "probe parameter", f"worst {metric}", row="zoo", col="probe",
                           col_order=PROBE_ORDER)


# figure file -> (long-frame builder, the x of a trend figure or None, plotter)
FIGURES = {
    "barrier_vs_eps.png": (eps_long, "eps", plot_barrier_vs_eps),
    "barrier_vs_width.png": (width_long, "width", plot_barrier_vs_width),
    "runtime_vs_width.png": (runtime_long, "width", plot_runtime_vs_width),
    "merged_vs_n.png": (merge_long, None, plot_merged_vs_n),
    "combine.png": (combine_long, None, plot_combine),
}


def drawable(long: pd.DataFrame, x: str | None) -> bool:
    """Whether a figure has anything to show: rows, and for a trend (a metric against x) two x values in one
    panel at least (one noise level drawn against itself is a column of dots, not a trend)."""
    if long.empty:
        return False
    return x is None or int(long.groupby("panel")[x].nunique().max()) >= 2


def write_figures(table: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """curves.png always (a placeholder when empty); every other figure the table has something to show for."""
    directory = Path(directory)
    paths = [plot_curves(table, directory / "curves.png")]
    for name, (data, x, plot) in FIGURES.items():
        long = data(table)
        if drawable(long, x):
            paths.append(plot(table, directory / name, long=long))
    return paths
