"""The figures' data as long frames (pure functions of the results table): one row per plotted value,
with its panel, variant and method `family`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.protocols import PROTOCOLS
from bench.report.declared import protocol_metrics
from bench.report.rows import ok_rows, with_zoo_labels, zoo_widths
from bench.store.results import is_missing

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
    rows = table[ok_rows(table) & table["protocol"].isin(whole)].reindex(columns=cols)
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
    rows = table[ok_rows(table)]
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    rows = rows.dropna(subset=list(needed)).copy()
    rows["variant"] = rows["variant"].astype(str)
    rows["family"] = _families(rows)
    return rows


def rank_metric_of(rows: pd.DataFrame, protocol: str) -> str | None:
    """The metric `protocol` ranks by in these rows: its first declared rank metric with a value (as the
    leaderboard ranks)."""
    for m in protocol_metrics(protocol, ("rank",)):
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
    rows = table[ok_rows(table) & (table["protocol"] == "combine")]
    rows = rows[[isinstance(g, list | tuple) and isinstance(v, list | tuple) and len(g) == len(v) > 0
                 for g, v in zip(rows["grid"], rows[col], strict=True)]]
    rows = rows.assign(family=_families(rows)) if len(rows) else rows.assign(family=pd.Series(dtype=object))
    long = rows[["zoo", "probe", "variant", "family", "grid", col]].explode(["grid", col])
    long = long.rename(columns={"grid": "x", col: metric})
    long["x"], long[metric] = long["x"].astype(float), long[metric].astype(float)
    long["variant"] = long["variant"].astype(str)
    return long.reset_index(drop=True)
