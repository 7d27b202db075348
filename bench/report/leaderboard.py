"""The leaderboard: per comparison (zoo, protocol[, action, eps | n_models | probe]) and method variant
the number of units, mean, std and 95% CI of every declared metric, median runtimes, the collapse gate,
the rank (1 = best by the protocol's rank metric) and the paired test against the best."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report.declared import EXTRA_SECTION, METRICS, RATE_TRIALS, RUNTIMES, protocol_metrics
from bench.report.rows import ok_rows, sorted_rows, with_zoo_labels
from bench.report.stats import ALPHA, collapse_test, mean_cis, paired_p, rate_ci
from bench.store.results import is_missing


def _section_columns(table: pd.DataFrame) -> list[str]:
    """Columns that define one comparison: zoo, protocol and whichever of EXTRA_SECTION the rows fill."""
    return ["zoo", "protocol"] + [c for c in EXTRA_SECTION if c in table.columns and table[c].notna().any()]


def collapse_gate(table: pd.DataFrame) -> dict[tuple[str, str], tuple[float, int, int, float]]:
    """(zoo, variant) -> (p, successes, trials, chance) of the test that the variant's decoded endpoints identify
    their sources above chance (`stats.collapse_test`), for variants whose rows carry identification
    (function-changing methods). Independent trials only: units whose two endpoints have distinct sources
    (`a` != `b`: pairs; never orbit, whose endpoints share one network that recurs across actions and noise
    levels), and each source network once (a unit sharing a source with one counted before is left out)."""
    if "ident" not in table.columns or "ident_chance" not in table.columns:
        return {}
    rows = table[ok_rows(table)]
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


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
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
    table = sorted_rows(table).reset_index(drop=True)  # row labels are positions in `numeric`
    table["_ok"] = ok_rows(table)
    metrics = [c for c in METRICS if c in table.columns]
    numeric = {c: pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
               for c in metrics}
    out, per_unit, cells = [], {}, []
    for ident, rows in table.groupby(keys, dropna=False, sort=True):
        good = rows[rows["_ok"]]
        at = good.index.to_numpy()
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
            values = numeric[c][at]
            for part in ("mean", "lo", "hi", "n"):  # every cell's interval comes at once, below
                rec[f"{c}_{part}"] = None
            cells.append((rec, c, values))
            rec[f"{c}_std"] = _std(values)
        if "deviation" in rows.columns:
            rec["deviation_max"] = pd.to_numeric(good["deviation"], errors="coerce").max()
        for c in RUNTIMES:
            if c in rows.columns:
                rec[f"{c}_median"] = pd.to_numeric(good[c], errors="coerce").median()
        out.append(rec)
        per_unit[len(out) - 1] = good
    for (rec, c, _), interval in zip(cells, _intervals([(c, values) for _, c, values in cells]), strict=True):
        rec[f"{c}_mean"], rec[f"{c}_lo"], rec[f"{c}_hi"], rec[f"{c}_n"] = interval
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
    board["rank_metric"] = None
    p_vs_best, n_shared = [math.nan] * len(board), [0] * len(board)  # by row (the board's index is 0..n-1)
    for _, part in board.groupby(section, dropna=False, sort=False):
        for metric in protocol_metrics(part["protocol"].iloc[0], ("rank",)):
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
                        p_vs_best[i], n_shared[i] = paired_p(units[i], units[best])
            break
    board["p_vs_best"], board["n_shared"] = p_vs_best, n_shared
    return board.sort_values(section + ["rank", "variant"], kind="mergesort", na_position="last").reset_index(drop=True)


def _intervals(cells: list[tuple[str, np.ndarray]]) -> list[tuple[float, float, float, int]]:
    """(mean, low, high, n) of each (metric, values) cell: the rates' exact interval, every other metric's
    bootstrap interval (all of them in one vectorised call)."""
    means = iter(mean_cis([values for c, values in cells if c not in RATE_TRIALS]))
    return [rate_ci(values, RATE_TRIALS[c]) if c in RATE_TRIALS else next(means) for c, values in cells]


def _std(values: np.ndarray) -> float:
    """The sample standard deviation of the non-NaN values (pandas'); NaN below two of them."""
    return pd.Series(values).std() if np.count_nonzero(~np.isnan(values)) > 1 else math.nan


def unit_values(rows: pd.DataFrame, metric: str) -> dict:
    """{(unit, seed): value} of one cell's rows: paired tests pair by unit name and seed."""
    seeds = rows["seed"] if "seed" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    keys = [(str(u), None if is_missing(s) else int(s)) for u, s in zip(rows["unit"], seeds, strict=True)]
    return dict(zip(keys, pd.to_numeric(rows[metric], errors="coerce"), strict=True))
