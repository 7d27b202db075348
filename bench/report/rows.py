"""The rows a report counts (error-free ones, in a fixed order) and the zoo labels it shows them under.

Zoos that share a name but not their content (a width ablation) are told apart by their width (when
some row of the zoo records it, e.g. the `combine` protocol's) or a short content hash.
"""

from __future__ import annotations

import json

import pandas as pd

from bench.store.results import SORT_COLUMNS, is_missing


def ok_rows(table: pd.DataFrame) -> pd.Series:
    """Per row: True where the unit did not fail (no `error`)."""
    if "error" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["error"].map(is_missing).astype(bool)


def sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows in the store's sort order (stable)."""
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
