"""The report's tables as data (`Section`: title, header, text cells, note), rendered three ways by
`bench.report.render`: the leaderboard per comparison, mode combinability per zoo, the sweeps, and what
to read first (cells on few units, failed units)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.report.cells import fmt, fmt_ci, fmt_pm, value_text
from bench.report.declared import EXTRA_SECTION, PROBE_ORDER, RATE_TRIALS, SCORE_LABELS, protocol_metrics
from bench.report.leaderboard import leaderboard
from bench.report.method_names import MethodNames, bound_names
from bench.report.rows import ok_rows, sorted_rows, with_zoo_labels
from bench.report.stats import ALPHA


@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _is_na(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def board_sections(table: pd.DataFrame, names: MethodNames | None = None,
                   board: pd.DataFrame | None = None) -> list[Section]:
    """The leaderboard as titled tables of text cells: one per zoo / protocol (methods by display name and
    reference number with `names`). `board`: the table's `leaderboard`, where the caller has it."""
    board = leaderboard(table) if board is None else board
    names = bound_names(names, table)
    if board.empty:
        return []
    extra = [c for c in EXTRA_SECTION if c in board.columns and c != "options"]
    if "options" not in board.columns:
        board = board.assign(options=None)
    sections = []
    for (zoo, protocol, options), part in board.groupby(["zoo", "protocol", "options"], dropna=False, sort=True):
        sub_extra = [c for c in extra if part[c].notna().any()]
        labels = {m.name: m.label for m in protocol_metrics(protocol, ("rank", "shown"))}
        scores = [c for c in labels if f"{c}_mean" in part.columns and part[f"{c}_mean"].notna().any()]
        has_needs = "needs" in part.columns and part["needs"].notna().any()
        header = (["rank"] + sub_extra + ["variant"] + (["data"] if has_needs else []) + ["n"]
                  + [labels[c] for c in scores] + ["p vs best"])
        has_dev = "deviation_max" in part.columns and part["deviation_max"].notna().any()
        runtimes = [m.name for m in protocol_metrics(protocol, ("runtime",))]
        times = [c for c in runtimes if f"{c}_median" in part.columns and part[f"{c}_median"].notna().any()][:1]
        has_err = int(part["n_errors"].sum()) > 0
        has_gate = "collapse_n" in part.columns and part["collapse_n"].notna().any()
        header += (["max deviation"] if has_dev else []) + [f"{c[:-2]} s (median)" for c in times]
        header += (["collapse gate"] if has_gate else []) + (["errors"] if has_err else [])
        rows = []
        for _, r in part.iterrows():
            row = [fmt(r["rank"]) if pd.notna(r["rank"]) else "–"]
            row += [value_text(r[c]) for c in sub_extra]
            tag = " (reference)" if r.get("kind") == "reference" else " (collapsed)" if r["collapsed"] else ""
            shown = names.show(r["variant"]) if names else str(r["variant"])
            row += [shown + tag] + ([value_text(r["needs"]) if pd.notna(r["needs"]) else "–"]
                                    if has_needs else []) + [str(int(r["n"]))]
            row += [fmt_ci(r[f"{c}_mean"], r[f"{c}_lo"], r[f"{c}_hi"]) for c in scores]
            row += [_p_cell(r)]
            row += ([fmt(r["deviation_max"])] if has_dev else []) + [fmt(r[f"{c}_median"]) for c in times]
            row += ([gate_text(r)] if has_gate else []) + ([str(int(r["n_errors"]))] if has_err else [])
            rows.append(row)
        metric = part["rank_metric"].dropna()
        note = ""
        if len(metric):
            m = next(x for x in protocol_metrics(protocol, ("rank",)) if x.name == metric.iloc[0])
            rates = [labels[c] for c in scores if c in RATE_TRIALS]
            note = (f"Ranked by mean {m.label} ({'higher' if m.higher_is_better else 'lower'} is better). "
                    "Cells: mean [95% BCa bootstrap CI] over n units"
                    + (f"; rates ({', '.join(rates)}): pooled proportion [95% exact Clopper-Pearson CI]"
                       if rates else "")
                    + ". p vs best: Wilcoxon signed-rank test against the rank-1 method on the units both ran, "
                    f"paired by unit and seed (* = significantly different at {ALPHA}). "
                    "Not ranked: reference baselines, and methods whose decoded networks do not identify their "
                    "own source more often than chance on this zoo (collapsed; see README, Statistics)."
                    + (" Collapse gate: one-sided binomial test (p < 0.05) of k sources identified out of n, one "
                       "decision per distinct source network of the zoo's pairs units (both endpoints of a unit have "
                       "distinct sources; orbit units do not count)." if has_gate else ""))
        title = f"{value_text(zoo)} / {value_text(protocol)}" + ("" if _is_na(options) else f" [{options}]")
        sections.append(Section(title, header, rows, note))
    return sections


def gate_text(r) -> str:
    """The collapse gate's test and its n, as a cell ('–' for methods it does not apply to)."""
    if pd.isna(r.get("collapse_n")):
        return "–"
    if int(r["collapse_n"]) == 0:
        return "no independent trial (no pairs unit)"
    verdict = "passed" if not r["collapsed"] else "failed"
    return (f"{verdict}: {int(r['collapse_k'])}/{int(r['collapse_n'])} sources identified, chance "
            f"{fmt(r['collapse_chance'])}, p={r['collapse_p']:.2g}")


def _p_cell(r) -> str:
    if r["collapsed"]:
        if int(r["collapse_n"]) == 0:
            return "not ranked: no independent trial for the collapse gate"
        return f"not ranked: identifies sources no better than chance (p={r['collapse_p']:.2g})"
    if r.get("kind") == "reference" or pd.isna(r["rank"]):
        return "–"
    if r["rank"] == 1 and pd.isna(r["p_vs_best"]):
        return "best"
    if pd.isna(r["p_vs_best"]):
        return f"n/a ({int(r['n_shared'])} shared)"
    return f"{r['p_vs_best']:.2g}" + ("*" if r["p_vs_best"] < ALPHA else "")


def combine_sections(table: pd.DataFrame, metric: str = "loss_barrier",
                     names: MethodNames | None = None) -> list[Section]:
    """Mode combinability: per zoo, the mean ± std empirical barrier of each probe (rows) and
    variant (columns): naive next to the aligning methods."""
    if "probe" not in table.columns or metric not in table.columns:
        return []
    names = bound_names(names, table)
    rows = with_zoo_labels(sorted_rows(table))
    rows = rows[ok_rows(rows) & (rows["protocol"] == "combine") & rows["probe"].notna()]
    sections = []
    for zoo, part in rows.groupby("zoo", sort=True):
        variants = sorted(part["variant"].astype(str).unique())
        probes = [p for p in PROBE_ORDER if p in set(part["probe"])] + sorted(set(part["probe"]) - set(PROBE_ORDER))
        stats = part.groupby(["probe", "variant"], sort=True)[metric].agg(["mean", "std"])
        cells = [[p] + [fmt_pm(*stats.loc[(p, v)]) if (p, v) in stats.index else "–" for v in variants]
                 for p in probes]
        sections.append(Section(f"{value_text(zoo)} / mode combinability ({SCORE_LABELS.get(metric, metric)})",
                                ["probe"] + [names.show(v) if names else v for v in variants], cells))
    return sections


def sweep_sections(sweeps: pd.DataFrame | None, top: int = 10) -> list[Section]:
    """Per Optuna study: its best trials (by the objective) and the default trial."""
    if sweeps is None or sweeps.empty or "study" not in sweeps.columns or "objective" not in sweeps.columns:
        return []
    ok = sweeps[ok_rows(sweeps) & sweeps["objective"].notna()]
    sections = []
    for study, part in ok.groupby("study", sort=True):
        trials = (part.sort_values(["trial", "unit"], kind="mergesort")
                  .groupby("trial", sort=True)
                  .agg(variant=("variant", "first"), objective=("objective", "first"), n=("unit", "size"),
                       seconds=("method_s", "first"), default=("is_default", "first")))
        descending = str(part["objective_direction"].iloc[0]) == "maximize"
        trials = trials.sort_values("objective", ascending=not descending, kind="mergesort")
        shown = pd.concat([trials.head(top), trials[trials["default"].astype(bool)]])
        shown = shown[~shown.index.duplicated()]
        metric = str(part["objective_metric"].iloc[0])
        header = ["trial", "variant", f"mean {SCORE_LABELS.get(metric, metric)}", "units", "method s", "default"]
        cells = [[str(int(t)), str(r["variant"]), fmt(r["objective"]), str(int(r["n"])), fmt(r["seconds"]),
                  "yes" if bool(r["default"]) else ""] for t, r in shown.iterrows()]
        note = f"{len(trials)} complete trial(s); best first ({'higher' if descending else 'lower'} is better)."
        sections.append(Section(f"Sweep {study}", header, cells, note))
    return sections


MIN_UNITS = 8  # a comparison cell resting on fewer units is listed under "Read first"


def attention_section(table: pd.DataFrame, board: pd.DataFrame | None = None) -> list[Section]:
    """What a reader must know before trusting the tables: cells with fewer than MIN_UNITS units and
    units that failed (with the first error). Empty protocols and skipped methods are not in the table;
    `bench run` lists them in the report's header. `board`: the table's `leaderboard`, where the caller has it."""
    board = leaderboard(table) if board is None else board
    if board.empty:
        return []
    section = [c for c in ["zoo", "protocol", *EXTRA_SECTION] if c in board.columns]
    rows = []
    errors = table[~ok_rows(table)] if "error" in table.columns else table.iloc[0:0]
    for _, part in board.groupby(section, dropna=False, sort=False):
        few = part[part["n"] < MIN_UNITS]
        where = " / ".join(value_text(part[c].iloc[0]) for c in section if pd.notna(part[c].iloc[0]))
        if len(few) == len(part) and len(part) > 1:
            low, high = int(few["n"].min()), int(few["n"].max())
            rows.append([where, "every method", f"only {low if low == high else f'{low}-{high}'} unit(s) "
                                                f"(fewer than {MIN_UNITS})"])
        else:
            rows += [[where, str(r["variant"]), f"only {int(r['n'])} unit(s) (fewer than {MIN_UNITS})"]
                     for _, r in few.iterrows()]
    for _, r in board.iterrows():
        where = " / ".join(value_text(r[c]) for c in section if pd.notna(r[c]))
        if r["n_errors"]:
            sel = errors
            for c in ["variant", *section]:
                if c in errors.columns and pd.notna(r[c]):
                    sel = sel[sel[c].astype(str) == str(r[c])]
            first = str(sel["error"].iloc[0]) if len(sel) else ""
            rows.append([where, str(r["variant"]), f"{int(r['n_errors'])} unit(s) failed: {first[:120]}"])
    if not rows:
        return []
    return [Section("Read first", ["comparison", "variant", "what"], rows,
                    "Cells resting on few units, and failed units (rerun the command to retry them).")]


def all_sections(table: pd.DataFrame, sweeps: pd.DataFrame | None, names: MethodNames | None = None,
                 board: pd.DataFrame | None = None) -> list[Section]:
    """Every section of the report, in order (`board`: the table's `leaderboard`, where the caller has it)."""
    names = bound_names(names, table)
    board = leaderboard(table) if board is None else board
    return (attention_section(table, board) + board_sections(table, names, board)
            + combine_sections(table, names=names) + sweep_sections(sweeps))
