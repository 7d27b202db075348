"""`results/reproductions.md`: the papers' headline numbers beside ours, a pure function of the table.

Each setting names the zoo it reads by content hash (the caller maps settings to hashes, so a zoo of
the same name from another recipe is never read), the metric as the leaderboard names it, the
published figure with its citation, and the verdict rule it is held to. A reference implementation's
numbers on the same pairs (the PyPI `rebasin` package) come in a second table of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from bench.report.stats import mean_ci
from bench.store.results import newest_per_unit

REPRODUCED, NOT_REPRODUCED, UNDECIDED = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Setting:
    label: str  # the row's name in the table
    zoo: str  # key into the caller's {label: zoo_hash}
    variant: str  # method spec as rows name it, or "peer:<name>" for a reference implementation's rows
    metric: str  # a column of the rows, named as the leaderboard names it
    published: str  # the paper's figure, with where it stands
    at_most: float | None = None  # reproduced when the CI's upper end is at most this (None: no verdict)
    protocol: str = "pairs"
    where: tuple = ()  # (column, value) pairs the rows must match, e.g. (("n_models", 3),)
    # a comparison: the effect is metric(variant) - metric(versus), paired by unit; reproduced when the CI's
    # lower end is at least `at_least` (the paper's ordering, within that margin)
    versus: str | None = None
    at_least: float | None = None


def summarise(rows: pd.DataFrame, metric: str) -> tuple[float, float, float, int]:
    values = pd.to_numeric(rows[metric], errors="coerce").tolist() if metric in rows.columns else []
    return mean_ci(values)


def verdict(mean: float, low: float, high: float, n: int, at_most: float | None) -> str:
    if at_most is None or n == 0:
        return ""
    if n < 3:  # too few units for an interval (mean_ci gives none below three distinct values)
        return UNDECIDED
    if high <= at_most:
        return REPRODUCED
    if low > at_most:
        return NOT_REPRODUCED
    return UNDECIDED


def fmt(mean: float, low: float, high: float, n: int) -> str:
    if n == 0 or not math.isfinite(mean):
        return "not measured"
    if n < 2:
        return f"{mean:.3f} (n = {n})"
    if low == high:  # every unit measured the same value: the interval is that point
        return f"{mean:.3f} (all {n} equal)"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}] (n = {n})"


def setting_rows(table: pd.DataFrame, peers: pd.DataFrame, zoos: Mapping[str, str], s: Setting) -> pd.DataFrame:
    """The rows a setting reads: the newest row per unit of its zoo, protocol and variant, without errors."""
    zoo_hash = zoos.get(s.zoo)
    if zoo_hash is None:
        return pd.DataFrame()
    if s.variant.startswith("peer:"):
        if peers.empty:
            return pd.DataFrame()
        rows = peers[(peers["zoo_hash"] == zoo_hash) & (peers["peer"] == s.variant.removeprefix("peer:"))]
        return rows[rows["error"].isna()] if "error" in rows.columns else rows
    if table.empty:
        return pd.DataFrame()
    rows = table[(table["zoo_hash"] == zoo_hash) & (table["protocol"] == s.protocol) & (table["variant"] == s.variant)]
    for column, value in s.where:
        rows = rows[rows[column] == value] if column in rows.columns else rows.iloc[:0]
    rows = newest_per_unit(rows)
    return rows[rows["error"].isna()] if "error" in rows.columns else rows


def paired_effect(table: pd.DataFrame, zoos: Mapping[str, str], s: Setting) -> tuple[float, float, float, int]:
    """metric(variant) - metric(versus) on the units both measured (mean, CI, n)."""
    mine = setting_rows(table, pd.DataFrame(), zoos, s)
    base = setting_rows(table, pd.DataFrame(), zoos, replace(s, variant=s.versus))
    if mine.empty or base.empty or s.metric not in mine.columns:
        return math.nan, math.nan, math.nan, 0
    a = mine.set_index(["unit", "seed"])[s.metric].astype(float)
    b = base.set_index(["unit", "seed"])[s.metric].astype(float)
    shared = a.index.intersection(b.index)
    return mean_ci((a[shared] - b[shared]).tolist())


def settings_table(table: pd.DataFrame, peers: pd.DataFrame, zoos: Mapping[str, str],
                   settings: Sequence[Setting]) -> list[list[str]]:
    out = []
    for s in settings:
        if s.versus is not None:
            mean, low, high, n = paired_effect(table, zoos, s)
            rule = f"paired difference vs {s.versus}: CI lower end >= {s.at_least:g}"
            decided = at_least_verdict(low, high, n, s.at_least)
            out.append([s.label, f"{s.metric} minus {s.versus}'s", s.published, fmt(mean, low, high, n), decided,
                        rule])
            continue
        mean, low, high, n = summarise(setting_rows(table, peers, zoos, s), s.metric)
        rule = f"CI upper end <= {s.at_most:g}" if s.at_most is not None else "no published number to hold it to"
        out.append([s.label, s.metric, s.published, fmt(mean, low, high, n), verdict(mean, low, high, n, s.at_most)
                    or "-", rule])
    return out


def at_least_verdict(low: float, high: float, n: int, at_least: float) -> str:
    if n < 3:
        return UNDECIDED if n else "-"
    if low >= at_least:
        return REPRODUCED
    if high < at_least:
        return NOT_REPRODUCED
    return UNDECIDED


def trend(table: pd.DataFrame, zoos: Mapping[str, str], labels: Mapping[str, float], variants: Sequence[str],
          metric: str, protocol: str = "pairs") -> pd.DataFrame:
    """One row per (zoo label's x value, variant): mean, CI and n of `metric` (a barrier-vs-width/epoch curve)."""
    records = []
    for label, x in labels.items():
        for variant in variants:
            rows = setting_rows(table, pd.DataFrame(), zoos, Setting(label, label, variant, metric, "", None, protocol))
            mean, low, high, n = summarise(rows, metric) if len(rows) else (math.nan, math.nan, math.nan, 0)
            records.append({"x": x, "variant": variant, "mean": mean, "low": low, "high": high, "n": n})
    return pd.DataFrame(records)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def trend_lines(frame: pd.DataFrame, x_name: str) -> list[str]:
    if frame.empty:
        return ["(not measured)"]
    variants = list(dict.fromkeys(frame["variant"]))
    rows = []
    for x, part in frame.groupby("x", sort=True):
        cells = [f"{x:g}"]
        for v in variants:
            r = part[part["variant"] == v].iloc[0]
            cells.append(fmt(r["mean"], r["low"], r["high"], int(r["n"])))
        rows.append(cells)
    return markdown_table([x_name, *variants], rows)


def trend_figure(panels: Mapping[str, tuple[pd.DataFrame, str]], metric_label: str, path) -> None:
    """Small multiples: one panel per trend, mean with its 95% CI band per variant, colour-blind-safe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from zoos.files import write_bytes_atomic

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    palette = sns.color_palette("colorblind")
    for ax, (title, (frame, x_name)) in zip(axes[0], panels.items(), strict=True):
        for i, (variant, part) in enumerate(frame.groupby("variant", sort=False)):
            part = part.sort_values("x")
            ax.plot(part["x"], part["mean"], marker="o", color=palette[i], label=variant)
            ax.fill_between(part["x"], part["low"], part["high"], color=palette[i], alpha=0.2, linewidth=0)
            last = part.dropna(subset=["mean"]).tail(1)
            if len(last):
                ax.annotate(variant, (last["x"].iloc[0], last["mean"].iloc[0]), textcoords="offset points",
                            xytext=(4, 0), fontsize=8, color=palette[i], va="center")
        ax.set_xscale("log", base=2)
        xs = sorted(frame["x"].dropna().unique())
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlim(min(xs) / 1.3, max(xs) * 2.4)  # room for the direct labels at the lines' ends
        ax.minorticks_off()
        ax.set_xlabel(x_name)
        ax.set_ylabel(metric_label)
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="grey", linewidth=0.5)
    fig.tight_layout()

    def write(fh):
        fig.savefig(fh, format="png", dpi=120)

    write_bytes_atomic(path, write)
    plt.close(fig)


__all__ = ["Setting", "settings_table", "trend", "trend_lines", "trend_figure", "markdown_table", "verdict",
           "REPRODUCED", "NOT_REPRODUCED", "UNDECIDED"]
