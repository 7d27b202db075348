"""Comparison matrices, the table a paper shows: one row per method, one column per comparison (zoo,
protocol[, action, eps | n_models | probe]), each cell the mean [95% CI] of one metric.

Built on the leaderboard (`tables.leaderboard`): the same means, intervals and ranking flags, so the
two cannot disagree. Per column the best ranked method is in bold and every method whose paired
difference from it is not significant (Wilcoxon signed-rank on the units both ran, p >= ALPHA) is
marked; reference baselines and collapsed methods are shown but never bold or marked. All cells of
a column share one number of decimals, taken from the column's typical CI width. Renderers: Markdown,
LaTeX (booktabs, caption, label, one table per zoo and, past MAX_COLUMNS, per protocol), HTML
(sortable) and CSV (long, one row per cell, every number unrounded).
"""

from __future__ import annotations

import csv
import fnmatch
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.protocols import PROTOCOLS
from bench.report.stats import ALPHA, MIN_PAIRED, paired_p
from bench.report.tables import (
    EXTRA_SECTION,
    _label,
    _md_cell,
    _ok_rows,
    _sorted,
    html_document,
    latex_escape,
    leaderboard,
    md_header,
    with_zoo_labels,
)
from zoos.names import unknown_name

MAX_COLUMNS = 6  # a LaTeX/Markdown table wider than this is split per protocol
FORMATS = ("md", "tex", "html", "csv")
TIE = "†"  # not significantly different from the column's best


@dataclass
class Cell:
    mean: float
    lo: float
    hi: float
    n: int
    role: str  # ranked | reference | collapsed
    best: bool = False
    tie: bool = False  # ranked, and not significantly different from the best
    p: float = math.nan  # paired p-value against the best (NaN for the best itself, or too few shared units)


@dataclass
class Column:
    zoo: str
    protocol: str
    extras: tuple[tuple[str, object], ...]  # (action, P), (eps, 0.01)...
    metric: str
    label: str
    higher_is_better: bool
    decimals: int = 3

    @property
    def title(self) -> str:
        parts = [f"{'ε' if k == 'eps' else 'n' if k == 'n_models' else ''}{'=' if k in ('eps', 'n_models') else ''}"
                 f"{_label(v)}" for k, v in self.extras]
        return " ".join([self.protocol, ", ".join(parts)]).strip()


@dataclass
class Matrix:
    zoo: str
    metric_note: str
    columns: list[Column]
    variants: list[str]
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)


# ---- selecting rows --------------------------------------------------------------------------------------
def select(table: pd.DataFrame, methods: Sequence[str] | None = None, zoos: Sequence[str] | None = None,
           protocols: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the chosen methods (a variant spec, or a method name for all its variants), zoos (names or
    shell patterns) and protocols; an unknown name is a ValueError with the names the table holds."""
    keep = pd.Series(True, index=table.index)
    for values, column, by_method in ((methods, "variant", True), (zoos, "zoo", False),
                                      (protocols, "protocol", False)):
        if not values or column not in table.columns:
            continue
        present = sorted(table[column].dropna().astype(str).unique())
        names = sorted(table["method"].dropna().astype(str).unique()) if by_method and "method" in table else []
        mask = pd.Series(False, index=table.index)
        for value in values:
            hit = table[column].astype(str).map(lambda s, v=value: s == v or fnmatch.fnmatchcase(s, v))
            if by_method and "method" in table.columns:
                hit |= table["method"].astype(str) == value
            if not hit.any():
                raise ValueError(unknown_name(column.replace("variant", "method"), value, names + present))
            mask |= hit
        keep &= mask
    return table[keep]


# ---- building the matrices -------------------------------------------------------------------------------
def _decimals(cells: list[Cell]) -> int:
    """Decimals that resolve the column's median CI half-width to two significant digits (0-4)."""
    widths = sorted((c.hi - c.lo) / 2 for c in cells if math.isfinite(c.hi - c.lo) and c.hi > c.lo)
    scale = widths[len(widths) // 2] if widths else max((abs(c.mean) for c in cells if math.isfinite(c.mean)),
                                                        default=1.0) / 100
    if not scale > 0:
        return 3
    return min(4, max(0, 1 - math.floor(math.log10(scale))))


def _metrics_for(protocol: str, metric: str | None):
    cls = PROTOCOLS.get(protocol)
    if cls is None:
        return None
    declared = {m.name: m for m in cls.metrics}
    if metric is None:
        return next((m for m in cls.metrics if m.role == "rank"), None)
    return declared.get(metric)


def comparison(table: pd.DataFrame, metric: str | None = None) -> list[Matrix]:
    """One matrix per zoo (columns past MAX_COLUMNS split per protocol). `metric`: a declared metric name
    (protocols without it are left out); default: each protocol's rank metric."""
    board = leaderboard(table)
    if board.empty:
        return []
    rows = with_zoo_labels(_sorted(table))
    rows = rows[_ok_rows(rows)]
    extra = [c for c in EXTRA_SECTION if c in board.columns]
    matrices = []
    for zoo, zoo_board in board.groupby("zoo", sort=True):
        columns, cells = [], {}
        for ident, part in zoo_board.groupby(["protocol"] + extra, dropna=False, sort=True):
            protocol, values = ident[0], ident[1:]
            m = _metrics_for(str(protocol), metric)
            if m is None or f"{m.name}_mean" not in part.columns or part[f"{m.name}_mean"].isna().all():
                continue
            extras = tuple((c, v) for c, v in zip(extra, values, strict=True) if not _is_na(v))
            col = Column(str(zoo), str(protocol), extras, m.name, m.label, m.higher_is_better)
            j = len(columns)
            columns.append(col)
            unit_rows = rows[(rows["zoo"] == zoo) & (rows["protocol"] == protocol)]
            for c, v in extras:
                unit_rows = unit_rows[unit_rows[c] == v]
            per_variant = {str(v): dict(zip(r["unit"], pd.to_numeric(r[m.name], errors="coerce"), strict=True))
                           for v, r in unit_rows.groupby("variant", sort=True)} if m.name in unit_rows else {}
            for _, r in part.iterrows():
                role = "reference" if r.get("kind") == "reference" else "collapsed" if r["collapsed"] else "ranked"
                cells[(str(r["variant"]), j)] = Cell(r[f"{m.name}_mean"], r[f"{m.name}_lo"], r[f"{m.name}_hi"],
                                                     int(r[f"{m.name}_n"]), role)
            ranked = {v: c for (v, k), c in cells.items() if k == j and c.role == "ranked" and math.isfinite(c.mean)}
            if ranked:
                best = (max if m.higher_is_better else min)(ranked, key=lambda v: ranked[v].mean)
                ranked[best].best = True
                for v, c in ranked.items():
                    if v != best:
                        c.p, shared = paired_p(per_variant.get(v, {}), per_variant.get(best, {}))
                        c.tie = shared >= MIN_PAIRED and not c.p < ALPHA
            col.decimals = _decimals([c for (v, k), c in cells.items() if k == j])
        if not columns:
            continue
        variants = sorted({v for v, _ in cells}, key=lambda v: _order(v, cells, columns))
        note = "each protocol's ranking metric" if metric is None else f"{columns[0].label}"
        groups = [columns] if len(columns) <= MAX_COLUMNS else [
            [c for c in columns if c.protocol == p] for p in dict.fromkeys(c.protocol for c in columns)]
        for group in groups:
            index = {columns.index(c): k for k, c in enumerate(group)}
            matrices.append(Matrix(str(zoo), note, group, [v for v in variants if any((v, i) in cells for i in index)],
                                   {(v, index[i]): c for (v, i), c in cells.items() if i in index}))
    return matrices


def _is_na(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _order(variant: str, cells: dict, columns: list[Column]) -> tuple:
    """Ranked methods by their mean rank over the columns, then references, then collapsed ones."""
    mine = [(k, c) for (v, k), c in cells.items() if v == variant]
    roles = {c.role for _, c in mine}
    group = 0 if "ranked" in roles else 1 if "reference" in roles else 2
    ranks = []
    for k, c in mine:
        others = [o for (v, kk), o in cells.items() if kk == k and o.role == "ranked" and math.isfinite(o.mean)]
        sign = -1 if columns[k].higher_is_better else 1
        ranks.append(sum(sign * o.mean < sign * c.mean for o in others) + 1)
    return group, sum(ranks) / len(ranks) if ranks else math.inf, variant


# ---- rendering -------------------------------------------------------------------------------------------
def _number(x: float, decimals: int) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{decimals}f}".replace("-", "−")


def _cell_text(c: Cell, col: Column, show_n: bool) -> tuple[str, str]:
    """(mean, interval) as text: '0.123', '[0.111, 0.135]' (interval empty for a point)."""
    mean = _number(c.mean, col.decimals)
    ci = "" if not (math.isfinite(c.lo) and c.hi > c.lo) else \
        f"[{_number(c.lo, col.decimals)}, {_number(c.hi, col.decimals)}]"
    return mean, (ci + (f" n={c.n}" if show_n else "")).strip()


def _uniform_n(m: Matrix, j: int) -> int | None:
    ns = {c.n for (v, k), c in m.cells.items() if k == j}
    return ns.pop() if len(ns) == 1 else None


def _variant_label(m: Matrix, variant: str) -> str:
    roles = {c.role for (v, _), c in m.cells.items() if v == variant}
    return variant + (" (reference)" if roles == {"reference"} else " (collapsed)" if roles == {"collapsed"} else "")


def _caption(m: Matrix) -> str:
    directions = {("higher" if c.higher_is_better else "lower") for c in m.columns}
    metrics = sorted({f"{c.label} ({'higher' if c.higher_is_better else 'lower'} is better)" for c in m.columns})
    ns = sorted({n for j in range(len(m.columns)) if (n := _uniform_n(m, j)) is not None})
    n_text = f"n = {ns[0]} units per cell" if len(ns) == 1 and all(_uniform_n(m, j) for j in range(len(m.columns))) \
        else "n units per cell as shown"
    return (f"{m.zoo}: {'; '.join(metrics)}. Mean [95% BCa bootstrap CI], {n_text}. Bold: best ranked method "
            f"per column; {TIE}: not significantly different from it (two-sided Wilcoxon signed-rank on shared "
            f"units, p ≥ {ALPHA}). Reference baselines and collapsed methods are shown, never ranked. "
            f"Metrics are unitless{' (mixed directions)' if len(directions) > 1 else ''}.")


def to_markdown(matrices: list[Matrix]) -> str:
    out = []
    for m in matrices:
        show_n = [_uniform_n(m, j) is None for j in range(len(m.columns))]
        header = ["method"] + [f"{c.title} ({c.label})" + ("" if show_n[j] else f", n={_uniform_n(m, j)}")
                               for j, c in enumerate(m.columns)]
        out += [f"## {_md_cell(m.zoo)}: {_md_cell(', '.join(dict.fromkeys(c.protocol for c in m.columns)))}", "",
                _md_cell(_caption(m)), "", "| " + " | ".join(_md_cell(h) for h in header) + " |",
                "|---" + "|---:" * len(m.columns) + "|"]
        for v in m.variants:
            row = [_md_cell(_variant_label(m, v))]
            for j, col in enumerate(m.columns):
                c = m.cells.get((v, j))
                if c is None:
                    row.append("")
                    continue
                mean, ci = _cell_text(c, col, show_n[j])
                mean = f"**{mean}**" if c.best else mean + (TIE if c.tie else "")
                row.append(f"{mean} {_md_cell(ci)}".strip())
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out) if out else "No results to compare.\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "zoo"


def to_latex(matrices: list[Matrix]) -> str:
    """booktabs tables, one per matrix; needs \\usepackage{booktabs} (and amssymb for nothing)."""
    out = ["% Comparison matrices (bench report). Needs \\usepackage{booktabs}.", ""]
    labels: set[str] = set()
    for m in matrices:
        label = f"tab:cmp-{_slug(m.zoo)}-{_slug('-'.join(dict.fromkeys(c.protocol for c in m.columns)))}"
        while label in labels:
            label += "x"
        labels.add(label)
        show_n = [_uniform_n(m, j) is None for j in range(len(m.columns))]
        protocols = list(dict.fromkeys(c.protocol for c in m.columns))
        spans = [(p, [j for j, c in enumerate(m.columns) if c.protocol == p]) for p in protocols]
        out += ["\\begin{table}[htbp]", "\\centering", "\\small",
                f"\\caption{{{latex_escape(_caption(m))}}}", f"\\label{{{label}}}",
                "\\begin{tabular}{l" + "r" * len(m.columns) + "}", "\\toprule"]
        out.append(" & ".join(["Method"] + [f"\\multicolumn{{{len(js)}}}{{c}}{{{latex_escape(p)}}}"
                                            for p, js in spans]) + " \\\\")
        out.append(" ".join(f"\\cmidrule(lr){{{js[0] + 2}-{js[-1] + 2}}}" for _, js in spans))
        sub = [latex_escape(", ".join(_extra_text(k, v) for k, v in c.extras) or c.label) for c in m.columns]
        out.append(" & ".join([""] + sub) + " \\\\")
        if not all(show_n):
            out.append(" & ".join([""] + ["" if show_n[j] else f"$n={_uniform_n(m, j)}$"
                                          for j in range(len(m.columns))]) + " \\\\")
        out.append("\\midrule")
        for v in m.variants:
            row = [latex_escape(_variant_label(m, v))]
            for j, col in enumerate(m.columns):
                c = m.cells.get((v, j))
                if c is None:
                    row.append("")
                    continue
                mean, ci = _cell_text(c, col, show_n[j])
                mean = latex_escape(mean)
                mean = f"\\textbf{{{mean}}}" if c.best else mean + ("$^\\dagger$" if c.tie else "")
                ci = latex_escape(ci)
                row.append(f"{mean} {{\\scriptsize {ci}}}" if ci else mean)
            out.append(" & ".join(row) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def _extra_text(key: str, value) -> str:
    return {"eps": f"ε={_label(value)}", "n_models": f"n={_label(value)}"}.get(key, _label(value))


def to_html(matrices: list[Matrix]) -> str:
    """Tables (class "sortable", cells carrying data-value) for `tables.html_page`'s sorting script."""
    esc, out = html.escape, []
    for m in matrices:
        anchor = f"cmp-{_slug(m.zoo)}-{_slug('-'.join(dict.fromkeys(c.protocol for c in m.columns)))}"
        show_n = [_uniform_n(m, j) is None for j in range(len(m.columns))]
        out += [f'<h2 id="{esc(anchor)}">{esc(m.zoo)}: {esc(", ".join(dict.fromkeys(c.protocol for c in m.columns)))}'
                "</h2>", f"<p>{esc(_caption(m))}</p>", '<table class="sortable">',
                "<thead><tr><th>method</th>" + "".join(
                    f"<th>{esc(c.title)}<br><small>{esc(c.label)}"
                    f"{'' if show_n[j] else f', n={_uniform_n(m, j)}'}</small></th>"
                    for j, c in enumerate(m.columns)) + "</tr></thead>", "<tbody>"]
        for v in m.variants:
            row = [f"<td>{esc(_variant_label(m, v))}</td>"]
            for j, col in enumerate(m.columns):
                c = m.cells.get((v, j))
                if c is None:
                    row.append('<td data-value=""></td>')
                    continue
                mean, ci = _cell_text(c, col, show_n[j])
                text = f"<b>{esc(mean)}</b>" if c.best else esc(mean) + (TIE if c.tie else "")
                value = c.mean if math.isfinite(c.mean) else ""
                row.append(f'<td class="num" data-value="{value}">{text} <small>{esc(ci)}</small></td>')
            out.append("<tr>" + "".join(row) + "</tr>")
        out += ["</tbody>", "</table>"]
    return "\n".join(out)


def to_csv(matrices: list[Matrix]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["zoo", "protocol", "section", "metric", "higher_is_better", "method", "role", "n", "mean",
                     "ci_low", "ci_high", "best", "not_worse_than_best", "p_vs_best"])
    for m in matrices:
        for v in m.variants:
            for j, col in enumerate(m.columns):
                c = m.cells.get((v, j))
                if c is not None:
                    writer.writerow([m.zoo, col.protocol, ";".join(f"{k}={_label(x)}" for k, x in col.extras),
                                     col.metric, col.higher_is_better, v, c.role, c.n, repr(float(c.mean)),
                                     repr(float(c.lo)), repr(float(c.hi)), c.best, c.tie,
                                     "" if math.isnan(c.p) else repr(c.p)])
    return buf.getvalue()


def render(matrices: list[Matrix], fmt: str, header_lines: Sequence[str] = ()) -> str:
    """The matrices in one of FORMATS; `header_lines` (provenance) open the file (a comment in tex and csv)."""
    if fmt not in FORMATS:
        raise ValueError(unknown_name("format", fmt, FORMATS))
    lines = [" ".join(str(line).split()) for line in header_lines]
    if fmt == "html":
        return html_document("Comparison", lines, to_html(matrices))
    if fmt == "md":
        return "".join(f"{line}\n\n" for line in md_header(lines)) + to_markdown(matrices)
    if fmt == "tex":
        return "".join(f"% {line}\n" for line in lines) + to_latex(matrices)
    return "".join(f"# {line}\n" for line in lines) + to_csv(matrices)
