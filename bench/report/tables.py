"""Reports as pure functions of the results table: leaderboards (Markdown, LaTeX, HTML) and figures.

Nothing here reads the clock or the environment: the same table gives byte-identical files (PNGs
are written without a software/date stamp), and whatever provenance a report should state
(command, commit, date) comes in `header_lines`.

- Leaderboard: one comparison per (zoo, protocol[, action, eps | n_models | probe]); per method
  variant the number of units, mean ± std of the barriers (or of the merged model's scores), the
  median runtime and the rank (1 = lowest mean loss barrier, or merged loss for `merge`).
- Mode combinability: empirical loss barrier per probe x variant (naive vs aligned side by side).
- Sweeps: per Optuna study (rows under `<results>/sweeps/`), the default and the best trials.
- Figures: small multiples (one panel per zoo [· protocol / action / score] and method family: exact
  data-free, exact reading data, inexact, learned; naive averaging and reference baselines in grey in
  every panel), mean with its 95% percentile bootstrap CI as a band or error bar, seaborn's
  colour-blind palette, each line named at its end instead of a legend: interpolation curves, orbit's
  rank metric (path excess) vs eps, barrier vs width, merged score vs N (integer N, points dodged per
  method, filled / open for plain / REPAIR), runtime vs width, combinability probes.

Zoos that share a name but not their content (a width ablation) are told apart by their width
(when some row of the zoo records it, e.g. the `combine` protocol's) or a short content hash.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.protocols import PROTOCOLS
from bench.protocols.combine import PROBES
from bench.report.stats import ALPHA, collapse_test, mean_ci, paired_p, rate_ci
from bench.store.results import SORT_COLUMNS, ResultStore, is_missing
from zoos.files import write_bytes_atomic


# Everything below about metrics comes from the protocols' declarations (`Protocol.metrics`, `.sections`).
def _declared(roles: tuple[str, ...]) -> tuple[str, ...]:
    """Metric names of the given roles over every protocol, in declaration order."""
    return tuple(dict.fromkeys(m.name for p in PROTOCOLS.values() for m in p.metrics if m.role in roles))


METRICS = _declared(("rank", "shown"))  # table columns (a section shows those of its protocol)
RUNTIMES = _declared(("runtime",))
SCORE_LABELS = {m.name: m.label for p in PROTOCOLS.values() for m in p.metrics}
# metrics whose per-unit value is the fraction of `trials` yes/no trials: exact (Clopper-Pearson) intervals
RATE_TRIALS = {m.name: m.trials for p in PROTOCOLS.values() for m in p.metrics if m.trials}
# split a comparison further: the protocols' declared section columns, and the protocol options the rows were
# made under where a zoo's rows of one protocol were made under several (`with_zoo_labels` fills `options`)
EXTRA_SECTION = tuple(dict.fromkeys(c for p in PROTOCOLS.values() for c in p.sections)) + ("options",)
PROBE_ORDER = PROBES


def _protocol_metrics(protocol, roles: tuple[str, ...]) -> list:
    cls = PROTOCOLS.get(str(protocol))
    return [m for m in cls.metrics if m.role in roles] if cls is not None else []
INTRO = ("Each cell: mean [95% bootstrap CI] over n units of work. Interpolation protocols rank by the path "
         "excess: the worst loss along the path between the aligned endpoints minus the mean loss of the ORIGINAL "
         "networks (accuracy/PSNR: the largest drop below them), so a method is charged for whatever it does to "
         "the endpoints; the barrier (measured against the path's own endpoints) and the reconstruction cost are "
         "shown beside it. Merges rank by the merged network's loss; combine probes show the empirical barrier "
         "(worst sample minus the endpoints' mean). Reference baselines (constant) are shown, never ranked.")


def _section_columns(table: pd.DataFrame) -> list[str]:
    """Columns that define one comparison: zoo, protocol and whichever of EXTRA_SECTION the rows fill."""
    return ["zoo", "protocol"] + [c for c in EXTRA_SECTION if c in table.columns and table[c].notna().any()]


def _ok_rows(table: pd.DataFrame) -> pd.Series:
    if "error" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["error"].map(is_missing).astype(bool)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    # a fixed row order makes every float sum, hence every printed digit, independent of input order
    order = [c for c in SORT_COLUMNS if c in table.columns]
    return table.sort_values(order, kind="mergesort", na_position="last") if order else table


def zoo_widths(table: pd.DataFrame) -> dict[str, float]:
    """zoo_hash -> width, from any row of that zoo that records one."""
    if "width" not in table.columns or "zoo_hash" not in table.columns:
        return {}
    known = table[["zoo_hash", "width"]].dropna()
    return {str(h): float(w) for h, w in known.groupby("zoo_hash", sort=True)["width"].max().items()}


def _option_text(value) -> str:
    if isinstance(value, list):
        return "/".join(_option_text(v) for v in value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_labels(table: pd.DataFrame) -> pd.Series:
    """Per row, the protocol options it was made under that differ between the rows of its (zoo, protocol):
    'lambdas=5, split=train'; None where all of them share one set of options (nothing to tell apart). Rows
    written before options were recorded read 'options not recorded'."""
    out = pd.Series(None, index=table.index, dtype=object)
    if "protocol_options" not in table.columns or table.empty:
        return out
    for _, part in table.groupby(["zoo", "protocol"], sort=True, dropna=False):
        texts = part["protocol_options"].map(lambda v: None if is_missing(v) else str(v))
        distinct = sorted(set(texts.dropna())) + ([None] if texts.isna().any() else [])
        if len(distinct) < 2:
            continue
        parsed = {t: json.loads(t) for t in distinct if t is not None}
        differing = sorted({k for d in parsed.values() for k in d
                            if len({json.dumps(o.get(k), sort_keys=True) for o in parsed.values()}) > 1})
        labels = {t: ", ".join(f"{k}={_option_text(o.get(k))}" for k in differing) or "options as the others"
                  for t, o in parsed.items()}
        out.loc[part.index] = [labels[t] if t is not None else "options not recorded" for t in texts]
    return out


def zoo_labels(table: pd.DataFrame, widths: dict[str, float] | None = None) -> dict[str, str]:
    """zoo_hash -> the section label of that zoo content: its name, or 'name-a = name-b' when its rows carry
    several names (a copy renamed in its spec.json: units are keyed on the content, so methods run on either
    copy land in one table, never split over two sections that each look complete); a name that several
    contents share gets ' (width w)' where the widths tell them apart, else ' #<hash prefix>'."""
    if "zoo_hash" not in table.columns or "zoo" not in table.columns:
        return {}
    widths = zoo_widths(table) if widths is None else widths
    known = table[table["zoo_hash"].notna() & table["zoo"].notna()]
    hashes_col, names_col = known["zoo_hash"].astype(str), known["zoo"].astype(str)
    names = {h: sorted(set(rows)) for h, rows in names_col.groupby(hashes_col, sort=True)}
    suffix: dict[str, str] = {}
    for _, rows in hashes_col.groupby(names_col, sort=True):
        hashes = sorted(set(rows))
        if len(hashes) < 2:
            continue
        ws = [widths.get(h) for h in hashes]
        by_width = all(w is not None for w in ws) and len(set(ws)) == len(ws)
        for h, w in zip(hashes, ws, strict=True):
            mine = f" (width {w:g})" if by_width else f" #{h[:6]}"
            suffix[h] = mine if suffix.get(h, mine) == mine else f" #{h[:6]}"
    return {h: " = ".join(ns) + suffix.get(h, "") for h, ns in names.items()}


def with_zoo_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of `table` with `zoo` made one label per zoo content (`zoo_labels`: every name the content was run
    under, and unique per content), `width` filled from sibling rows and `options` naming the protocol options
    that tell a zoo's rows of one protocol apart (`option_labels`)."""
    table = table.copy()
    if "zoo_hash" not in table.columns or "zoo" not in table.columns:
        if "zoo" in table.columns and "protocol" in table.columns:
            table["options"] = option_labels(table)
        return table
    widths = zoo_widths(table)
    if widths:
        table["width"] = table["zoo_hash"].astype(str).map(widths)
    labels = zoo_labels(table, widths)
    if labels:
        table["zoo"] = [z if is_missing(h) or is_missing(z) else labels.get(str(h), z)
                        for z, h in zip(table["zoo"], table["zoo_hash"], strict=True)]
    if "protocol" in table.columns:
        table["options"] = option_labels(table)
    return table


def collapse_gate(table: pd.DataFrame) -> dict[tuple[str, str], tuple[float, int, int, float]]:
    """(zoo, variant) -> (p, successes, trials, chance) of the test that the variant's decoded endpoints identify
    their sources above chance (`stats.collapse_test`), for variants whose rows carry identification
    (function-changing methods). Independent trials only: units whose two endpoints have distinct sources
    (`a` != `b`: pairs; never orbit, whose endpoints share one network that recurs across actions and noise
    levels), and each source network once (a unit sharing a source with one counted before is left out)."""
    if "ident" not in table.columns or "ident_chance" not in table.columns:
        return {}
    rows = table[_ok_rows(table)]
    out = {}
    for (zoo, variant), part in rows.groupby(["zoo", "variant"], sort=True):
        decisions, seen = [], set()
        if part["ident"].notna().any():
            cols = part.reindex(columns=["a", "b", "ident", "ident_chance"])
            for a, b, ident, chance in cols.itertuples(index=False):
                if is_missing(a) or is_missing(b) or is_missing(ident) or is_missing(chance) or a == b:
                    continue
                sources = (int(a), int(b))
                if seen & set(sources):
                    continue  # a network decided on before: not an independent trial
                seen.update(sources)
                hits = int(round(2 * float(ident)))  # ident is the mean over the unit's two endpoints
                decisions += [(sources[0], float(hits >= 1), float(chance)), (sources[1], float(hits >= 2),
                                                                              float(chance))]
            out[(str(zoo), str(variant))] = collapse_test(decisions)
    return out


_LAST_BOARD: list = []  # (table, board) of the last call: one report renders the same table several times


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    if _LAST_BOARD and _LAST_BOARD[0][0] is table:
        return _LAST_BOARD[0][1].copy()
    board = _leaderboard(table)
    _LAST_BOARD[:] = [(table, board)]
    return board.copy()


def _leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and variant: n units, n errors, mean, std and 95% CI (`_lo`, `_hi`) of every
    declared metric present, max functional deviation, median runtimes, the rank within its comparison
    (1 = best by the protocol's rank metric; reference baselines are shown but not ranked) and the
    Wilcoxon p-value against the best on the units both ran (`p_vs_best`, `n_shared`).
    Units that errored are counted, not averaged."""
    table = with_zoo_labels(table)
    for c in ("zoo", "protocol", "variant"):
        if c not in table.columns:
            table[c] = None
    section = _section_columns(table)
    keys = section + ["variant"]
    table = _sorted(table)
    table["_ok"] = _ok_rows(table)
    metrics = [c for c in METRICS if c in table.columns]
    out, per_unit = [], {}
    for ident, rows in table.groupby(keys, dropna=False, sort=True):
        good = rows[rows["_ok"]]
        rec = dict(zip(keys, ident, strict=True))
        if "method" in rows.columns:
            rec["method"] = rows["method"].dropna().iloc[0] if rows["method"].notna().any() else None
        kinds = rows["method_kind"].dropna() if "method_kind" in rows.columns else pd.Series(dtype=object)
        rec["kind"] = kinds.iloc[0] if len(kinds) else None
        needs = rows["method_needs"].dropna() if "method_needs" in rows.columns else pd.Series(dtype=object)
        rec["needs"] = needs.iloc[0] if len(needs) else None  # what the method read besides the weights
        rec["n"] = len(good)
        rec["n_errors"] = len(rows) - len(good)
        for c in metrics:
            values = pd.to_numeric(good[c], errors="coerce")
            interval = rate_ci(values.tolist(), RATE_TRIALS[c]) if c in RATE_TRIALS else mean_ci(values.tolist())
            rec[f"{c}_mean"], rec[f"{c}_lo"], rec[f"{c}_hi"], rec[f"{c}_n"] = interval
            rec[f"{c}_std"] = values.std()
        if "deviation" in rows.columns:
            rec["deviation_max"] = pd.to_numeric(good["deviation"], errors="coerce").max()
        for c in RUNTIMES:
            if c in rows.columns:
                rec[f"{c}_median"] = pd.to_numeric(good[c], errors="coerce").median()
        out.append(rec)
        per_unit[len(out) - 1] = good
    board = pd.DataFrame(out)
    if board.empty:
        return board
    gate = collapse_gate(table)
    tested = [gate.get((z, v)) for z, v in zip(board["zoo"], board["variant"], strict=True)]
    board["collapse_p"] = [t[0] if t else math.nan for t in tested]
    board["collapse_k"] = [t[1] if t else pd.NA for t in tested]
    board["collapse_n"] = [t[2] if t else pd.NA for t in tested]
    board["collapse_chance"] = [t[3] if t else math.nan for t in tested]
    # a function-changing method with no independent trial on the zoo is not ranked either (nothing shows it
    # does not collapse)
    board["collapsed"] = [t is not None and not (t[0] < ALPHA) for t in tested]
    board["rank"] = pd.array([pd.NA] * len(board), dtype="Int64")
    board["rank_metric"], board["p_vs_best"], board["n_shared"] = None, math.nan, 0
    for _, part in board.groupby(section, dropna=False, sort=False):
        for metric in _protocol_metrics(part["protocol"].iloc[0], ("rank",)):
            col = f"{metric.name}_mean"
            if col not in part.columns or part[col].isna().all():
                continue
            ranked = part[(part["kind"] != "reference") & ~part["collapsed"]]
            ranks = ranked[col].rank(method="min", ascending=not metric.higher_is_better, na_option="bottom")
            board.loc[ranked.index, "rank"] = ranks.astype("Int64")
            board.loc[part.index, "rank_metric"] = metric.name
            if len(ranks) and ranked[col].notna().any():
                best = ranks.idxmin()
                units = {i: unit_values(per_unit[i], metric.name) for i in part.index}
                for i in part.index:
                    if i != best:
                        board.loc[i, "p_vs_best"], board.loc[i, "n_shared"] = paired_p(units[i], units[best])
            break
    return board.sort_values(section + ["rank", "variant"], kind="mergesort", na_position="last").reset_index(drop=True)


def unit_values(rows: pd.DataFrame, metric: str) -> dict:
    """{(unit, seed): value} of one cell's rows: paired tests pair by unit name and seed."""
    seeds = rows["seed"] if "seed" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    keys = [(str(u), None if is_missing(s) else int(s)) for u, s in zip(rows["unit"], seeds, strict=True)]
    return dict(zip(keys, pd.to_numeric(rows[metric], errors="coerce"), strict=True))


def fmt(x) -> str:
    """Three significant digits; '–' for a missing value."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}"


def fmt_ci(mean, low, high) -> str:
    """'0.123 [0.100, 0.150]' (mean and 95% CI); the mean alone when the interval is a point."""
    if fmt(mean) == "–":
        return "–"
    if fmt(low) == "–" or fmt(high) == "–" or (fmt(low) == fmt(mean) == fmt(high)):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def fmt_pm(mean, std) -> str:
    """'0.123 ± 0.045'; the mean alone when the std is undefined (one unit)."""
    if fmt(mean) == "–" or fmt(std) == "–":
        return fmt(mean)
    if abs(std) <= 1e-12 * abs(mean):  # round-off of identical values, not a spread
        std = 0.0
    return f"{fmt(mean)} ± {fmt(std)}"


def _is_na(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _label(value) -> str:
    return value if isinstance(value, str) else fmt(value)


# ---- tables as data, rendered three ways -----------------------------------------------------------
@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class MethodNames:
    """Display names and citations of methods (`bench report --display-names`): built from the registry's
    class attributes (`MethodNames.of(METHODS)`), so the report functions stay free of the method code.
    A variant `git-rebasin[max_sweeps=5]` shows as `Git Re-Basin (WM) [max_sweeps=5]`; bound to the variants
    of a report (`bind`), a method with a citation carries its reference's number, `[1]`, which
    `references` lists (one number per distinct citation, in order of the display names citing it)."""

    labels: dict  # method name -> display name
    cites: dict  # method name -> (citation, arXiv id)
    numbers: dict = field(default_factory=dict)  # (citation, arXiv id) -> its number in this report
    shown: frozenset = frozenset()  # the methods of this report

    @classmethod
    def of(cls, methods) -> MethodNames:
        """From a {name: Aligner class} mapping (the registry)."""
        labels = {n: c.label() for n, c in methods.items()}
        cites = {n: (c.citation, c.arxiv) for n, c in methods.items() if c.citation or c.arxiv}
        return cls(labels, cites)

    def bind(self, variants) -> MethodNames:
        """A copy numbering the references of these variants (the report's)."""
        numbers: dict = {}
        methods = {str(v).split("[")[0] for v in variants if not is_missing(v)}
        for method in sorted(methods, key=lambda m: (self.labels.get(m, m), m)):
            ref = self.cites.get(method)
            if ref is not None and ref not in numbers:
                numbers[ref] = len(numbers) + 1
        return MethodNames(self.labels, self.cites, numbers, frozenset(methods))

    def show(self, variant) -> str:
        """The display name (hyperparameters kept), with its reference's number when bound."""
        method, bracket, rest = str(variant).partition("[")
        ref = self.cites.get(method)
        mark = f" [{self.numbers[ref]}]" if ref in self.numbers else ""
        return self.labels.get(method, method) + (f" [{rest}" if bracket else "") + mark

    def references(self) -> list[tuple[int, list[str], str, str]]:
        """(number, display names of the report's methods citing it, citation, arXiv id) per bound reference."""
        return [(k, sorted({self.labels.get(m, m) for m, r in self.cites.items() if r == ref and m in self.shown}),
                 *ref)
                for ref, k in self.numbers.items()]

    def lines(self) -> list[str]:
        """'[1] Git Re-Basin (WM), MergeMany: Ainsworth, ..., ICLR 2023, arXiv:2209.04836' per reference."""
        return [f"[{k}] {', '.join(who)}: " + ", ".join(filter(None, (cit, f"arXiv:{ax}" if ax else "")))
                for k, who, cit, ax in self.references()]


def _bound(names: MethodNames | None, table: pd.DataFrame) -> MethodNames | None:
    if names is None or names.numbers or "variant" not in table.columns:
        return names
    return names.bind(table["variant"])


def board_sections(table: pd.DataFrame, names: MethodNames | None = None) -> list[Section]:
    """The leaderboard as titled tables of text cells: one per zoo / protocol (methods by display name and
    reference number with `names`)."""
    board = leaderboard(table)
    names = _bound(names, table)
    if board.empty:
        return []
    extra = [c for c in EXTRA_SECTION if c in board.columns and c != "options"]
    if "options" not in board.columns:
        board["options"] = None
    sections = []
    for (zoo, protocol, options), part in board.groupby(["zoo", "protocol", "options"], dropna=False, sort=True):
        sub_extra = [c for c in extra if part[c].notna().any()]
        labels = {m.name: m.label for m in _protocol_metrics(protocol, ("rank", "shown"))}
        scores = [c for c in labels if f"{c}_mean" in part.columns and part[f"{c}_mean"].notna().any()]
        has_needs = "needs" in part.columns and part["needs"].notna().any()
        header = (["rank"] + sub_extra + ["variant"] + (["data"] if has_needs else []) + ["n"]
                  + [labels[c] for c in scores] + ["p vs best"])
        has_dev = "deviation_max" in part.columns and part["deviation_max"].notna().any()
        runtimes = [m.name for m in _protocol_metrics(protocol, ("runtime",))]
        times = [c for c in runtimes if f"{c}_median" in part.columns and part[f"{c}_median"].notna().any()][:1]
        has_err = int(part["n_errors"].sum()) > 0
        has_gate = "collapse_n" in part.columns and part["collapse_n"].notna().any()
        header += (["max deviation"] if has_dev else []) + [f"{c[:-2]} s (median)" for c in times]
        header += (["collapse gate"] if has_gate else []) + (["errors"] if has_err else [])
        rows = []
        for _, r in part.iterrows():
            row = [fmt(r["rank"]) if pd.notna(r["rank"]) else "–"]
            row += [_label(r[c]) for c in sub_extra]
            tag = " (reference)" if r.get("kind") == "reference" else " (collapsed)" if r["collapsed"] else ""
            shown = names.show(r["variant"]) if names else str(r["variant"])
            row += [shown + tag] + ([_label(r["needs"]) if pd.notna(r["needs"]) else "–"]
                                    if has_needs else []) + [str(int(r["n"]))]
            row += [fmt_ci(r[f"{c}_mean"], r[f"{c}_lo"], r[f"{c}_hi"]) for c in scores]
            row += [_p_cell(r)]
            row += ([fmt(r["deviation_max"])] if has_dev else []) + [fmt(r[f"{c}_median"]) for c in times]
            row += ([gate_text(r)] if has_gate else []) + ([str(int(r["n_errors"]))] if has_err else [])
            rows.append(row)
        metric = part["rank_metric"].dropna()
        note = ""
        if len(metric):
            m = next(x for x in _protocol_metrics(protocol, ("rank",)) if x.name == metric.iloc[0])
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
        title = f"{_label(zoo)} / {_label(protocol)}" + ("" if _is_na(options) else f" [{options}]")
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
    names = _bound(names, table)
    rows = with_zoo_labels(_sorted(table))
    rows = rows[_ok_rows(rows) & (rows["protocol"] == "combine") & rows["probe"].notna()]
    sections = []
    for zoo, part in rows.groupby("zoo", sort=True):
        variants = sorted(part["variant"].astype(str).unique())
        probes = [p for p in PROBE_ORDER if p in set(part["probe"])] + sorted(set(part["probe"]) - set(PROBE_ORDER))
        stats = part.groupby(["probe", "variant"], sort=True)[metric].agg(["mean", "std"])
        cells = [[p] + [fmt_pm(*stats.loc[(p, v)]) if (p, v) in stats.index else "–" for v in variants]
                 for p in probes]
        sections.append(Section(f"{_label(zoo)} / mode combinability ({SCORE_LABELS.get(metric, metric)})",
                                ["probe"] + [names.show(v) if names else v for v in variants], cells))
    return sections


def sweep_sections(sweeps: pd.DataFrame | None, top: int = 10) -> list[Section]:
    """Per Optuna study: its best trials (by the objective) and the default trial."""
    if sweeps is None or sweeps.empty or "study" not in sweeps.columns or "objective" not in sweeps.columns:
        return []
    ok = sweeps[_ok_rows(sweeps) & sweeps["objective"].notna()]
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


_MD_SPECIAL = re.compile(r"([\\`*<>|]|(?<=\])\(|!(?=\[))")


def _md_cell(text) -> str:
    """Text from the table (zoo names, method specs, errors) as inert Markdown: one line, with the
    characters that make code, emphasis, HTML or table cells escaped and link syntax (`](`, `![`) broken;
    plain brackets (confidence intervals, method specs) stay as they are."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return lines


MIN_UNITS = 8  # a comparison cell resting on fewer units is listed under "Read first"


def attention_section(table: pd.DataFrame) -> list[Section]:
    """What a reader must know before trusting the tables: cells with fewer than MIN_UNITS units and
    units that failed (with the first error). Empty protocols and skipped methods are not in the table;
    `bench run` lists them in the report's header."""
    board = leaderboard(table)
    if board.empty:
        return []
    section = [c for c in ["zoo", "protocol", *EXTRA_SECTION] if c in board.columns]
    rows = []
    errors = table[~_ok_rows(table)] if "error" in table.columns else table.iloc[0:0]
    for _, part in board.groupby(section, dropna=False, sort=False):
        few = part[part["n"] < MIN_UNITS]
        where = " / ".join(_label(part[c].iloc[0]) for c in section if pd.notna(part[c].iloc[0]))
        if len(few) == len(part) and len(part) > 1:
            low, high = int(few["n"].min()), int(few["n"].max())
            rows.append([where, "every method", f"only {low if low == high else f'{low}-{high}'} unit(s) "
                                                f"(fewer than {MIN_UNITS})"])
        else:
            rows += [[where, str(r["variant"]), f"only {int(r['n'])} unit(s) (fewer than {MIN_UNITS})"]
                     for _, r in few.iterrows()]
    for _, r in board.iterrows():
        where = " / ".join(_label(r[c]) for c in section if pd.notna(r[c]))
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


def _all_sections(table: pd.DataFrame, sweeps: pd.DataFrame | None, names: MethodNames | None = None) -> list[Section]:
    names = _bound(names, table)
    return (attention_section(table) + board_sections(table, names) + combine_sections(table, names=names)
            + sweep_sections(sweeps))


def md_header(header_lines: Sequence[str]) -> list[str]:
    """Header lines keep their Markdown (a title, `code`) but carry names from files: one line each, no HTML."""
    return [re.sub(r"([<>])", r"\\\1", " ".join(str(line).split())) for line in header_lines]


def markdown(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None,
             figures: Sequence[str] = (), names: MethodNames | None = None) -> str:
    """The leaderboard as Markdown text: one section per comparison, then combinability, sweeps, figures
    (with `names`: methods by display name, and their references)."""
    lines = md_header(header_lines)
    if lines:
        lines.append("")
    lines += [INTRO, ""]
    names = _bound(names, table)
    sections = _all_sections(table, sweeps, names)
    if not sections:
        return "\n".join(lines + ["No results yet.", ""])
    for s in sections:
        lines += [f"## {_md_cell(s.title)}", ""] + ([s.note, ""] if s.note else []) + _md_table(s.header, s.rows) + [""]
    if names is not None and names.numbers:
        lines += ["## References", ""] + [f"{_md_cell(line)}  " for line in names.lines()] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return "\n".join(lines)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "·": r"$\cdot$", "λ": r"$\lambda$", "ε": r"$\varepsilon$",
                  "†": r"$^\dagger$", "≥": r"$\geq$", "≤": r"$\leq$", "−": "$-$", "×": r"$\times$"}


def latex_escape(text) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in " ".join(str(text).split()))


def _numeric(cell: str) -> bool:
    head = cell.split(" ")[0]
    try:
        float(head)
        return True
    except ValueError:
        return head == "–"


def latex(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None,
          names: MethodNames | None = None) -> str:
    """The same tables as a LaTeX fragment (`\\input` it; needs booktabs); with `names`, methods by display
    name and a references block (the numbers the names carry) after the tables."""
    lines = [f"% {' '.join(str(line).split())}" for line in header_lines]  # a newline would end the comment
    lines += [f"% {INTRO}", "% Needs \\usepackage{booktabs}.", ""]
    names = _bound(names, table)
    sections = _all_sections(table, sweeps, names)
    if not sections:
        return "\n".join(lines + ["No results yet.", ""])
    labels: set[str] = set()
    for s in sections:
        align = "".join("r" if s.rows and all(_numeric(r[i]) for r in s.rows) else "l" for i in range(len(s.header)))
        label = "tab:lb-" + (re.sub(r"[^a-z0-9]+", "-", s.title.lower()).strip("-") or "section")
        while label in labels:
            label += "x"
        labels.add(label)
        lines += ["\\begin{table}[htbp]", "\\centering", "\\small", f"\\caption{{{latex_escape(s.title)}}}",
                  f"\\label{{{label}}}", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
                  " & ".join(latex_escape(h) for h in s.header) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in s.rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        if s.note:
            lines += [f"\\par\\smallskip {latex_escape(s.note)}"]
        lines += ["\\end{table}", ""]
    return "\n".join(lines + latex_references(names))


def latex_references(names: MethodNames | None) -> list[str]:
    """The methods' references as a LaTeX block (a list after the tables, numbered as the tables cite them)."""
    if names is None or not names.numbers:
        return []
    def quoted(text: str) -> str:  # "Title" as ``Title''
        return re.sub(r'"([^"]*)"', r"``\1''", latex_escape(text))

    items = [f"\\item[{{[{k}]}}] {latex_escape(', '.join(who))}: "
             + quoted(", ".join(filter(None, (cit, f"arXiv:{ax}" if ax else ""))))
             for k, who, cit, ax in names.references()]
    return ["\\paragraph{Methods' references.}", "{\\footnotesize", "\\begin{itemize}", *items, "\\end{itemize}}",
            ""]


_CSS = ("body{font-family:sans-serif;margin:2em}p,nav{max-width:80em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border-bottom:1px solid #ccc;padding:.2em .6em;text-align:left}th{background:#f3f3f3}"
        "table.sortable th{cursor:pointer}table.sortable th:after{content:' \\2195';color:#aaa}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}img{max-width:100%}"
        "nav{background:#fafafa;border:1px solid #ddd;padding:.3em 1em;margin:1em 0}nav li{margin:.1em 0}")
# click a header to sort its table by that column (numbers by `data-value`, else text); click again to reverse
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== 'asc';
      table.querySelectorAll('thead th').forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = up ? 'asc' : 'desc';
      function key(row) {
        var cell = row.cells[col], v = cell ? cell.dataset.value : undefined;
        if (v !== undefined && v !== '' && !isNaN(parseFloat(v))) return [0, parseFloat(v)];
        return [1, cell ? cell.textContent : ''];
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x[0] !== y[0]) return x[0] - y[0];
        var c = x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def html_document(title: str, header_lines: Sequence[str], body: str) -> str:
    """A self-contained page: header lines, a table of contents of the body's `<h2 id=...>` sections, the
    body, and the script that makes `table.sortable` sortable by clicking a header."""
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
           f"<style>{_CSS}</style>", "</head>", "<body>"]
    for line in header_lines:
        text = line.lstrip("#").strip()
        out.append(f"<h1>{esc(text)}</h1>" if line.startswith("# ") else f"<p>{esc(text)}</p>")
    sections = re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', body)
    if len(sections) > 1:
        out += ["<nav><b>Contents</b><ul>"] + [f'<li><a href="#{a}">{t}</a></li>' for a, t in sections] + \
               ["</ul></nav>"]
    out += [body, f"<script>{_SORT_JS}</script>", "</body>", "</html>", ""]
    return "\n".join(out)


def _cell_value(text: str) -> str:
    """The number a cell starts with, for sorting ('' when it is not a number)."""
    head = text.split(" ")[0].replace("−", "-")
    try:
        return repr(float(head))
    except ValueError:
        return ""


def html_page(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None,
              figures: Sequence[str] = (), names: MethodNames | None = None) -> str:
    """The same tables as one self-contained HTML page (figures linked by relative path), sortable, with
    a table of contents; with `names`, methods by display name and a references section."""
    esc = html.escape
    out = [f"<p>{esc(INTRO)}</p>"]
    names = _bound(names, table)
    sections = _all_sections(table, sweeps, names)
    if not sections:
        out.append("<p>No results yet.</p>")
    for i, s in enumerate(sections):
        out.append(f'<h2 id="s{i}">{esc(s.title)}</h2>')
        if s.note:
            out.append(f"<p>{esc(s.note)}</p>")
        out.append('<table class="sortable">')
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in s.header) + "</tr></thead><tbody>")
        for row in s.rows:
            out.append("<tr>" + "".join(f'<td class="num" data-value="{_cell_value(c)}">{esc(c)}</td>' if _numeric(c)
                                        else f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
    if figures:
        out.append('<h2 id="figures">Figures</h2>')
        out += [f'<p><img src="{esc(f)}" alt="{esc(Path(f).stem)}"></p>' for f in figures]
    return html_document("Leaderboard", header_lines, "\n".join(out + html_references(names)))


def html_references(names: MethodNames | None) -> list[str]:
    """The methods' references as an HTML section (arXiv ids linked), numbered as the tables cite them."""
    if names is None or not names.numbers:
        return []
    esc = html.escape
    items = [f'<li id="ref-{k}" value="{k}">{esc(", ".join(who))}: {esc(cit)}'
             + (f'{", " if cit else ""}<a href="https://arxiv.org/abs/{esc(ax)}">arXiv:{esc(ax)}</a>' if ax else "")
             + "</li>" for k, who, cit, ax in names.references()]
    return ['<h2 id="references">References</h2>', "<ol>", *items, "</ol>"]


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, lambda fh: fh.write(text.encode("utf-8")))  # a kill leaves the old file


def write_markdown(table: pd.DataFrame, path: str | os.PathLike, header_lines: Sequence[str] = (),
                   sweeps: pd.DataFrame | None = None, figures: Sequence[str] = (),
                   names: MethodNames | None = None) -> Path:
    return _write_text(path, markdown(table, header_lines, sweeps, figures, names))


# ---- figures: long frames (pure) and their plots ---------------------------------------------------
# Every long frame carries `family`: the method's kind from the rows' `method_kind` (exact ones split by whether
# they read data, from `method_needs`), or "baseline" for naive averaging and reference baselines (drawn in every
# panel of their row, in grey). Families keep a panel to a handful of lines.
FAMILY_ORDER = ("exact, data-free", "exact, data", "inexact", "learned", "other")
FAMILY_TITLES = {"exact, data-free": "exact (function-preserving), data-free",
                 "exact, data": "exact (function-preserving), reads data", "inexact": "inexact (function-changing)",
                 "learned": "learned", "other": "", "baseline": "baselines"}
BASELINES = ("naive",)


def _families(rows: pd.DataFrame) -> pd.Series:
    """Per row: "baseline" (naive averaging, reference baselines), else the method's kind (exact split into
    data-free and reading data; inexact; learned; "other" where the rows do not record it)."""
    def column(name):
        return rows[name] if name in rows.columns else pd.Series(None, index=rows.index, dtype=object)

    method = rows["method"] if "method" in rows.columns else rows["variant"].astype(str).str.split("[").str[0]
    out = []
    for m, k, needs in zip(method, column("method_kind"), column("method_needs"), strict=True):
        k = None if is_missing(k) else str(k)
        if str(m) in BASELINES or k == "reference":
            out.append("baseline")
        elif k == "exact":
            out.append("exact, data" if not is_missing(needs) and str(needs) != "data-free" else "exact, data-free")
        else:
            out.append(k if k in FAMILY_ORDER else "other")
    return pd.Series(out, index=rows.index, dtype=object)


def curves_long(table: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Explode `lambdas` and `curve_<metric>` into one row per (unit, lambda), for protocols whose units
    form one comparison per zoo (pairs); orbit curves would mix actions and noise levels (its path excess
    is drawn per action against eps instead)."""
    col = f"curve_{metric}"
    cols = ["zoo", "protocol", "variant", "method", "method_kind", "method_needs", "key", "lambdas", col]
    if any(c not in table.columns for c in ("lambdas", col)):
        return pd.DataFrame(columns=["panel", "variant", "family", "lambda", metric])
    table = with_zoo_labels(table)
    whole = [name for name, cls in PROTOCOLS.items() if not cls.sections]
    rows = table[_ok_rows(table) & table["protocol"].isin(whole)].reindex(columns=cols)
    same = [isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b) > 0
            for a, b in zip(rows["lambdas"], rows[col], strict=True)]
    rows = rows[pd.Series(same, index=rows.index, dtype=bool)]  # a plain empty list would select no columns
    rows = rows.assign(family=_families(rows)) if len(rows) else rows.assign(family=pd.Series(dtype=object))
    long = rows.explode(["lambdas", col]).rename(columns={"lambdas": "lambda", col: metric})
    long["lambda"] = long["lambda"].astype(float)
    long[metric] = long[metric].astype(float)
    long["panel"] = long["zoo"].astype(str) + " · " + long["protocol"].astype(str)
    long["variant"] = long["variant"].astype(str)
    return long.drop(columns=["method", "method_kind", "method_needs"]).reset_index(drop=True)


def _numeric_rows(table: pd.DataFrame, needed: Sequence[str], protocol: str | None = None) -> pd.DataFrame | None:
    """Error-free rows (of `protocol`) with every `needed` column filled, with their `family`; None when a
    column is missing."""
    if any(c not in table.columns for c in (*needed, "zoo", "protocol", "variant")):
        return None
    rows = table[_ok_rows(table)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    rows = rows.dropna(subset=list(needed)).copy()
    rows["variant"] = rows["variant"].astype(str)
    rows["family"] = _families(rows)
    return rows


def rank_metric_of(rows: pd.DataFrame, protocol: str) -> str | None:
    """The metric `protocol` ranks by in these rows: its first declared rank metric with a value (as the
    leaderboard ranks)."""
    for m in _protocol_metrics(protocol, ("rank",)):
        if m.name in rows.columns and pd.to_numeric(rows[m.name], errors="coerce").notna().any():
            return m.name
    return None


def eps_long(table: pd.DataFrame) -> pd.DataFrame:
    """Orbit rows: one per unit with panel (zoo · action), eps and `value`, the protocol's rank metric (the
    path excess; named in `metric`), which charges a method for what it does to the endpoints (the barrier
    does not)."""
    empty = pd.DataFrame(columns=["panel", "variant", "family", "eps", "metric", "value"])
    rows = _numeric_rows(with_zoo_labels(table), ["eps", "action"], "orbit")
    if rows is None or rows.empty:
        return empty
    parts = []
    for _, part in rows.groupby("zoo", sort=True):
        metric = rank_metric_of(part, "orbit")
        if metric is None:
            continue
        part = part.assign(metric=metric, value=pd.to_numeric(part[metric], errors="coerce")).dropna(subset=["value"])
        parts.append(part.assign(panel=part["zoo"].astype(str) + " · " + part["action"].astype(str)))
    if not parts:
        return empty
    out = pd.concat(parts)
    out["eps"] = out["eps"].astype(float)
    return out[["panel", "variant", "family", "eps", "metric", "value"]].reset_index(drop=True)


def _ablated(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of zoo names seen at two or more widths, with their width filled in (zoo = the name)."""
    table = table.copy()
    widths = zoo_widths(table)
    if not widths or "zoo" not in table.columns:
        return table.iloc[0:0].assign(width=pd.Series(dtype=float))
    table["width"] = table["zoo_hash"].astype(str).map(widths)
    table = table[table["width"].notna()]
    n_widths = table.groupby("zoo")["width"].transform("nunique")
    return table[n_widths >= 2]


def width_long(table: pd.DataFrame) -> pd.DataFrame:
    """Barrier vs width: pairs rows and combine probes, panel per (zoo, protocol[, probe])."""
    rows = _numeric_rows(_ablated(table), ["width", "loss_barrier"])
    if rows is None:
        return pd.DataFrame(columns=["panel", "variant", "family", "width", "loss_barrier"])
    rows = rows[rows["protocol"].isin(["pairs", "combine"])]
    probe = rows["probe"] if "probe" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    rows["panel"] = rows["zoo"].astype(str) + " · " + rows["protocol"].astype(str) + \
        probe.map(lambda p: "" if pd.isna(p) else f" · {p}").astype(str)
    return rows[["panel", "variant", "family", "width", "loss_barrier"]].reset_index(drop=True)


def runtime_long(table: pd.DataFrame) -> pd.DataFrame:
    """Align seconds vs width from the pairs protocol (one alignment per unit)."""
    rows = _numeric_rows(_ablated(table), ["width", "align_s"], "pairs")
    if rows is None:
        return pd.DataFrame(columns=["panel", "variant", "family", "width", "align_s"])
    rows["panel"] = rows["zoo"].astype(str)
    return rows[["panel", "variant", "family", "width", "align_s"]].reset_index(drop=True)


def merge_long(table: pd.DataFrame) -> pd.DataFrame:
    """Merged score vs number of models: accuracy (classifiers) or PSNR (INRs), plain and with REPAIR."""
    rows = _numeric_rows(with_zoo_labels(table), ["n_models"], "merge")
    parts = []
    rows = rows if rows is not None else pd.DataFrame()
    for score in ("acc", "psnr"):
        for col, kind in ((f"{score}_merged", "merged"), (f"{score}_merged_repair", "merged + REPAIR")):
            if col in rows.columns:
                part = rows[rows[col].notna()]
                parts.append(pd.DataFrame({"panel": part["zoo"].astype(str) + f" · {score}",
                                           "variant": part["variant"], "family": part["family"],
                                           "n_models": part["n_models"].astype(int),
                                           "kind": kind, "score": part[col].astype(float)}))
    if not parts:
        return pd.DataFrame(columns=["panel", "variant", "family", "n_models", "kind", "score"])
    return pd.concat(parts, ignore_index=True)


def combine_long(table: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Combine rows exploded over each probe's grid: worst `metric` per grid value."""
    col = f"grid_{metric}"
    if any(c not in table.columns for c in ("grid", col, "probe")):
        return pd.DataFrame(columns=["zoo", "probe", "variant", "family", "x", metric])
    table = with_zoo_labels(table)
    rows = table[_ok_rows(table) & (table["protocol"] == "combine")]
    rows = rows[[isinstance(g, list | tuple) and isinstance(v, list | tuple) and len(g) == len(v) > 0
                 for g, v in zip(rows["grid"], rows[col], strict=True)]]
    rows = rows.assign(family=_families(rows)) if len(rows) else rows.assign(family=pd.Series(dtype=object))
    long = rows[["zoo", "probe", "variant", "family", "grid", col]].explode(["grid", col])
    long = long.rename(columns={"grid": "x", col: metric})
    long["x"], long[metric] = long["x"].astype(float), long[metric].astype(float)
    long["variant"] = long["variant"].astype(str)
    return long.reset_index(drop=True)


def _pyplot():
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
    _pyplot().close(fig)
    return path


def _placeholder(path: Path, text: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return _save(fig, path)


def _palette() -> list:
    """Seaborn's colour-blind-safe palette without its grey (kept for baselines) and its yellow (too light
    on white)."""
    import seaborn as sns

    colours = sns.color_palette("colorblind", 10)
    return [c for i, c in enumerate(colours) if i not in (7, 8)]


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
    """(mean, low, high, n): the 95% percentile bootstrap interval of the mean (fixed seed), vectorised:
    a figure has hundreds of points, and the tables' BCa interval (`stats.mean_ci`) costs a jackknife
    each. The mean alone where fewer than 2 distinct values leave nothing to resample."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if len(np.unique(x)) < 2:
        return mean, mean, mean, len(x)
    boot = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return mean, float(low), float(high), len(x)


def _summary(long: pd.DataFrame, by: list[str], y: str) -> pd.DataFrame:
    """Per group: mean and 95% bootstrap CI of `y` over units (`figure_ci`) and n."""
    out = []
    for key, part in long.groupby(by, sort=True, dropna=False):
        mean, low, high, n = figure_ci(part[y].tolist())
        out.append(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True), mean=mean, lo=low, hi=high,
                        n=n))
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
    plt = _pyplot()
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
            ax.xaxis.set_minor_locator(_pyplot().NullLocator())
    if symlog_x:  # noise levels: ticks at the levels measured, as plain numbers
        ax.set_xscale("symlog", linthresh=symlog_x)
        ticks = sorted({float(v) for line in ax.get_lines() for v in line.get_xdata()})
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(_pyplot().NullLocator())
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


def plot_barrier_vs_eps(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Orbit: the rank metric (path excess) against the planted noise, one panel per (zoo · action, family)."""
    long = eps_long(table)
    positive = long.loc[long["eps"] > 0, "eps"]
    metric = {r: SCORE_LABELS.get(m, m) for r, m in zip(long["panel"], long["metric"], strict=True)}
    names = sorted(set(metric.values()))
    # eps = 0 has no place on a log axis: linear below the smallest positive eps, log above
    return _line_multiples(long, "eps", "value", f"Orbit: {' / '.join(names)} (the rank metric) vs weight noise: "
                           f"mean and 95% CI ({_ci_note(long, ['panel', 'variant', 'eps'])} per point)", Path(path),
                           "ε (weight noise)", names[0] if names else "", ylabels=metric,
                           symlog_x=None if positive.empty else float(positive.min()))


def plot_barrier_vs_width(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    long = width_long(table)
    return _line_multiples(long, "width", "loss_barrier", "Loss barrier vs width: mean and 95% CI "
                           f"({_ci_note(long, ['panel', 'variant', 'width'])} per point)", Path(path),
                           "width (hidden units / channels)", "loss barrier", logx=True)


def plot_runtime_vs_width(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    long = runtime_long(table)
    return _line_multiples(long, "width", "align_s", "Alignment time vs width: mean and 95% CI "
                           f"({_ci_note(long, ['panel', 'variant', 'width'])} per point)", Path(path),
                           "width (hidden units / channels)", "align seconds", logx=True, logy=True)


def plot_merged_vs_n(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Merged score per number of models: points with 95% CI error bars per (N, method), dodged side by
    side (filled: merged, open: merged + REPAIR), one panel per (zoo · score, method family), integer N."""
    path = Path(path)
    long = merge_long(table)
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
    handles = [_pyplot().Line2D([], [], marker="o", linestyle="", color="0.3",
                                markerfacecolor="0.3" if k == "merged" else "white", label=k) for k in kinds]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False, fontsize=8,
               bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Merged model vs number of models: mean and 95% CI per N "
                 f"({_ci_note(long, ['panel', 'variant', 'kind', 'n_models'])} groups per point)",
                 y=1 - 0.1 / fig.get_figheight(), fontsize=10)
    return _save(fig, path, tight=False)


def plot_combine(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss") -> Path:
    """One panel per (zoo, probe): the worst sampled `metric` at each value of the probe's parameter."""
    long = combine_long(table, metric)
    return _line_multiples(long, "x", metric, f"Mode combinability: worst {metric} per probe value, mean and 95% CI "
                           f"over pairs ({_ci_note(long, ['zoo', 'probe', 'variant', 'x'])} per point)", Path(path),
                           "probe parameter", f"worst {metric}", row="zoo", col="probe",
                           col_order=PROBE_ORDER)


# figure file -> (long-frame builder deciding whether there is anything to draw, plotter)
FIGURES = {
    "barrier_vs_eps.png": (eps_long, plot_barrier_vs_eps),
    "barrier_vs_width.png": (width_long, plot_barrier_vs_width),
    "runtime_vs_width.png": (runtime_long, plot_runtime_vs_width),
    "merged_vs_n.png": (merge_long, plot_merged_vs_n),
    "combine.png": (combine_long, plot_combine),
}


def write_figures(table: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """curves.png always (a placeholder when empty); every other figure the table has data for."""
    directory = Path(directory)
    paths = [plot_curves(table, directory / "curves.png")]
    for name, (data, plot) in FIGURES.items():
        if not data(table).empty:
            paths.append(plot(table, directory / name))
    return paths


def read_sweeps(results_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The sweep trials' rows (`bench sweep` writes them under <results>/sweeps/), if any."""
    root = Path(results_dir) / "sweeps"
    return ResultStore(root).table() if (root / "rows").is_dir() else None
