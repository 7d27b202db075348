"""Reports as pure functions of the results table: leaderboards (Markdown, LaTeX, HTML) and figures.

Nothing here reads the clock or the environment: the same table gives byte-identical files (PNGs
are written without a software/date stamp), and whatever provenance a report should state
(command, commit, date) comes in `header_lines`.

- Leaderboard: one comparison per (zoo, protocol[, action, eps | n_models | probe]); per method
  variant the number of units, mean ± std of the barriers (or of the merged model's scores), the
  median runtime and the rank (1 = lowest mean loss barrier, or merged loss for `merge`).
- Mode combinability: empirical loss barrier per probe x variant (naive vs aligned side by side).
- Sweeps: per Optuna study (rows under `<results>/sweeps/`), the default and the best trials.
- Figures: interpolation curves with bands, barrier vs eps, barrier vs width, merged score vs N,
  runtime vs width, combinability probes.

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
from dataclasses import dataclass
from pathlib import Path

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


def board_sections(table: pd.DataFrame) -> list[Section]:
    """The leaderboard as titled tables of text cells: one per zoo / protocol."""
    board = leaderboard(table)
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
            row += [str(r["variant"]) + tag] + ([_label(r["needs"]) if pd.notna(r["needs"]) else "–"]
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


def combine_sections(table: pd.DataFrame, metric: str = "loss_barrier") -> list[Section]:
    """Mode combinability: per zoo, the mean ± std empirical barrier of each probe (rows) and
    variant (columns): naive next to the aligning methods."""
    if "probe" not in table.columns or metric not in table.columns:
        return []
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
                                ["probe"] + variants, cells))
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


def _all_sections(table: pd.DataFrame, sweeps: pd.DataFrame | None) -> list[Section]:
    return attention_section(table) + board_sections(table) + combine_sections(table) + sweep_sections(sweeps)


def md_header(header_lines: Sequence[str]) -> list[str]:
    """Header lines keep their Markdown (a title, `code`) but carry names from files: one line each, no HTML."""
    return [re.sub(r"([<>])", r"\\\1", " ".join(str(line).split())) for line in header_lines]


def markdown(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None,
             figures: Sequence[str] = ()) -> str:
    """The leaderboard as Markdown text: one section per comparison, then combinability, sweeps, figures."""
    lines = md_header(header_lines)
    if lines:
        lines.append("")
    lines += [INTRO, ""]
    sections = _all_sections(table, sweeps)
    if not sections:
        return "\n".join(lines + ["No results yet.", ""])
    for s in sections:
        lines += [f"## {_md_cell(s.title)}", ""] + ([s.note, ""] if s.note else []) + _md_table(s.header, s.rows) + [""]
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


def latex(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None) -> str:
    """The same tables as a LaTeX fragment (`\\input` it; needs booktabs)."""
    lines = [f"% {' '.join(str(line).split())}" for line in header_lines]  # a newline would end the comment
    lines += [f"% {INTRO}", "% Needs \\usepackage{booktabs}.", ""]
    sections = _all_sections(table, sweeps)
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
    return "\n".join(lines)


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
              figures: Sequence[str] = ()) -> str:
    """The same tables as one self-contained HTML page (figures linked by relative path), sortable, with
    a table of contents."""
    esc = html.escape
    out = [f"<p>{esc(INTRO)}</p>"]
    sections = _all_sections(table, sweeps)
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
    return html_document("Leaderboard", header_lines, "\n".join(out))


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, lambda fh: fh.write(text.encode("utf-8")))  # a kill leaves the old file


def write_markdown(table: pd.DataFrame, path: str | os.PathLike, header_lines: Sequence[str] = (),
                   sweeps: pd.DataFrame | None = None, figures: Sequence[str] = ()) -> Path:
    return _write_text(path, markdown(table, header_lines, sweeps, figures))


# ---- figures: long frames (pure) and their plots ---------------------------------------------------
def curves_long(table: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Explode `lambdas` and `curve_<metric>` into one row per (unit, lambda), for protocols whose units
    form one comparison per zoo (pairs); orbit curves would mix actions and noise levels (its barriers
    are drawn per action against eps instead)."""
    col = f"curve_{metric}"
    cols = ["zoo", "protocol", "variant", "key", "lambdas", col]
    if any(c not in table.columns for c in ("lambdas", col)):
        return pd.DataFrame(columns=["panel", "variant", "lambda", metric])
    table = with_zoo_labels(table)
    whole = [name for name, cls in PROTOCOLS.items() if not cls.sections]
    rows = table[_ok_rows(table) & table["protocol"].isin(whole)].reindex(columns=cols)
    same = [isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b) > 0
            for a, b in zip(rows["lambdas"], rows[col], strict=True)]
    rows = rows[pd.Series(same, index=rows.index, dtype=bool)]  # a plain empty list would select no columns
    long = rows.explode(["lambdas", col]).rename(columns={"lambdas": "lambda", col: metric})
    long["lambda"] = long["lambda"].astype(float)
    long[metric] = long[metric].astype(float)
    long["panel"] = long["zoo"].astype(str) + " · " + long["protocol"].astype(str)
    long["variant"] = long["variant"].astype(str)
    return long.reset_index(drop=True)


def _numeric_rows(table: pd.DataFrame, needed: Sequence[str], protocol: str | None = None) -> pd.DataFrame | None:
    """Error-free rows (of `protocol`) with every `needed` column filled; None when a column is missing."""
    if any(c not in table.columns for c in (*needed, "zoo", "protocol", "variant")):
        return None
    rows = table[_ok_rows(table)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    rows = rows.dropna(subset=list(needed)).copy()
    rows["variant"] = rows["variant"].astype(str)
    return rows


def eps_long(table: pd.DataFrame) -> pd.DataFrame:
    """Orbit rows: one per unit with panel (zoo · action), eps and loss_barrier."""
    rows = _numeric_rows(with_zoo_labels(table), ["eps", "loss_barrier", "action"], "orbit")
    if rows is None:
        return pd.DataFrame(columns=["panel", "variant", "eps", "loss_barrier"])
    rows["panel"] = rows["zoo"].astype(str) + " · " + rows["action"].astype(str)
    return rows[["panel", "variant", "eps", "loss_barrier"]].reset_index(drop=True)


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
        return pd.DataFrame(columns=["panel", "variant", "width", "loss_barrier"])
    rows = rows[rows["protocol"].isin(["pairs", "combine"])]
    probe = rows["probe"] if "probe" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    rows["panel"] = rows["zoo"].astype(str) + " · " + rows["protocol"].astype(str) + \
        probe.map(lambda p: "" if pd.isna(p) else f" · {p}").astype(str)
    return rows[["panel", "variant", "width", "loss_barrier"]].reset_index(drop=True)


def runtime_long(table: pd.DataFrame) -> pd.DataFrame:
    """Align seconds vs width from the pairs protocol (one alignment per unit)."""
    rows = _numeric_rows(_ablated(table), ["width", "align_s"], "pairs")
    if rows is None:
        return pd.DataFrame(columns=["panel", "variant", "width", "align_s"])
    rows["panel"] = rows["zoo"].astype(str)
    return rows[["panel", "variant", "width", "align_s"]].reset_index(drop=True)


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
                                           "variant": part["variant"], "n_models": part["n_models"].astype(int),
                                           "kind": kind, "score": part[col].astype(float)}))
    if not parts:
        return pd.DataFrame(columns=["panel", "variant", "n_models", "kind", "score"])
    return pd.concat(parts, ignore_index=True)


def combine_long(table: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Combine rows exploded over each probe's grid: worst `metric` per grid value."""
    col = f"grid_{metric}"
    if any(c not in table.columns for c in ("grid", col, "probe")):
        return pd.DataFrame(columns=["zoo", "probe", "variant", "x", metric])
    table = with_zoo_labels(table)
    rows = table[_ok_rows(table) & (table["protocol"] == "combine")]
    rows = rows[[isinstance(g, list | tuple) and isinstance(v, list | tuple) and len(g) == len(v) > 0
                 for g, v in zip(rows["grid"], rows[col], strict=True)]]
    long = rows[["zoo", "probe", "variant", "grid", col]].explode(["grid", col])
    long = long.rename(columns={"grid": "x", col: metric})
    long["x"], long[metric] = long["x"].astype(float), long[metric].astype(float)
    long["variant"] = long["variant"].astype(str)
    return long.reset_index(drop=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """PNG without the software/date metadata matplotlib would stamp: byte-identical reruns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight",
                                                    metadata={"Software": None}))
    _pyplot().close(fig)
    return path


def _placeholder(path: Path, text: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return _save(fig, path)


def _relplot(long: pd.DataFrame, x: str, y: str, title: str, path: Path, xlabel: str, ylabel: str,
             logx: bool = False, logy: bool = False, symlog_x: float | None = None, wrap: int = 3,
             height: float = 3.2, **kw) -> Path:
    import seaborn as sns

    panels = sorted(long["panel"].unique())
    with sns.axes_style("whitegrid"):
        grid = sns.relplot(data=long, x=x, y=y, hue="variant", hue_order=sorted(long["variant"].unique()),
                           col="panel", col_order=panels, col_wrap=min(wrap, len(panels)), kind="line",
                           errorbar="sd", marker="o", height=height, aspect=1.25,
                           facet_kws={"sharey": False, "sharex": False}, **kw)
    grid.set_titles("{col_name}")
    grid.set_axis_labels(xlabel, ylabel)
    for ax in grid.axes.flat:
        if logx:
            ax.set_xscale("log", base=2)
        if symlog_x:
            ax.set_xscale("symlog", linthresh=symlog_x)
        if logy:
            ax.set_yscale("log")
    grid.figure.suptitle(title, y=1.03)
    return _save(grid.figure, path)


def plot_curves(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss") -> Path:
    """Interpolation curves, mean ± std band per variant, one panel per (zoo, protocol); writes a PNG."""
    import seaborn as sns

    path = Path(path)
    long = curves_long(table, metric)
    if long.empty:
        return _placeholder(path, "no interpolation curves yet")
    panels = sorted(long["panel"].unique())
    with sns.axes_style("whitegrid"):
        grid = sns.relplot(data=long, x="lambda", y=metric, hue="variant", hue_order=sorted(long["variant"].unique()),
                           col="panel", col_order=panels, col_wrap=min(3, len(panels)), kind="line",
                           errorbar="sd", height=3.2, aspect=1.25, facet_kws={"sharey": False})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("λ (0 = reference, 1 = aligned)", metric)
    grid.figure.suptitle(f"Interpolation {metric} (mean ± std over units)", y=1.03)
    return _save(grid.figure, path)


def plot_barrier_vs_eps(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    long = eps_long(table)
    long["eps"] = long["eps"].astype(float)
    positive = long.loc[long["eps"] > 0, "eps"]
    # eps = 0 has no place on a log axis: linear below the smallest positive eps, log above
    return _relplot(long, "eps", "loss_barrier", "Orbit: loss barrier vs weight noise (mean ± std)", Path(path),
                    "ε (weight noise)", "loss barrier", symlog_x=None if positive.empty else float(positive.min()))


def plot_barrier_vs_width(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    return _relplot(width_long(table), "width", "loss_barrier", "Loss barrier vs width (mean ± std)", Path(path),
                    "width (hidden units / channels)", "loss barrier", logx=True)


def plot_runtime_vs_width(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    return _relplot(runtime_long(table), "width", "align_s", "Alignment time vs width (mean ± std)", Path(path),
                    "width (hidden units / channels)", "align seconds", logx=True, logy=True)


def plot_merged_vs_n(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    return _relplot(merge_long(table), "n_models", "score", "Merged model vs number of models (mean ± std)",
                    Path(path), "models merged", "merged score", style="kind",
                    style_order=["merged", "merged + REPAIR"])


def plot_combine(table: pd.DataFrame, path: str | os.PathLike, metric: str = "loss") -> Path:
    """One panel per (zoo, probe): the worst sampled `metric` at each value of the probe's parameter."""
    long = combine_long(table, metric)
    order = {p: i for i, p in enumerate(PROBE_ORDER)}
    long["panel"] = [f"{z} · {order.get(p, len(PROBE_ORDER)):02d} {p}" for z, p in zip(long["zoo"], long["probe"],
                                                                                 strict=True)]
    return _relplot(long, "x", metric, f"Mode combinability: worst {metric} per probe value (mean ± std over pairs)",
                    Path(path), "probe parameter", f"worst {metric}", wrap=5, height=2.6)


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
