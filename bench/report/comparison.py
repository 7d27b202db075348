"""Comparison matrices, the table a paper shows: one row per method, one column per comparison (zoo
[, action, eps | n_models | probe]) of one protocol, each cell the mean [95% CI] of its metric.

Built on the leaderboard (`leaderboard.leaderboard`): the same means, intervals and ranking flags, so the
two cannot disagree. Per column the best ranked method is in bold and every method whose paired
difference from it is not significant (Wilcoxon signed-rank on the units both ran, p >= ALPHA) is
marked; reference baselines and collapsed methods are shown but never bold or marked. All cells of
a column share one number of decimals, taken from the column's typical CI width. Renderers: Markdown,
LaTeX (booktabs, caption, label, CI under the mean), HTML (sortable) and CSV (long, one row per
cell, every number unrounded). One matrix per protocol (one metric, one direction), its columns the
zoos (and sections); past MAX_COLUMNS the zoos are split over several matrices.
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
from bench.report.cells import value_text
from bench.report.declared import EXTRA_SECTION
from bench.report.leaderboard import leaderboard, unit_values
from bench.report.method_names import MethodNames
from bench.report.render import html_document, html_references, latex_escape, latex_references, md_cell, md_header
from bench.report.rows import ok_rows, sorted_rows, with_zoo_labels
from bench.report.stats import ALPHA, MIN_PAIRED, paired_p
from zoos.names import unknown_name

MAX_COLUMNS = 4  # wider tables are split between zoos (four stacked mean/CI columns fit a paper's text width)
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


@dataclass
class Matrix:
    protocol: str
    metric_label: str
    columns: list[Column]
    variants: list[str]
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)
    names: MethodNames | None = None  # display names and reference numbers (None: the variants as run)


# ---- selecting rows --------------------------------------------------------------------------------------
def select(table: pd.DataFrame, methods: Sequence[str] | None = None, zoos: Sequence[str] | None = None,
           protocols: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the chosen methods (a variant spec, or a method name for all its variants), zoos (names or
    shell patterns; a zoo's content under any of its names) and protocols; an unknown name is a ValueError with
    the names the table holds."""
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
                raise ValueError(unknown_name(column.replace("variant", "method"), value, sorted({*names, *present})))
            if column == "zoo" and "zoo_hash" in table.columns:  # a renamed copy's rows: the same zoo
                hashes = set(table.loc[hit, "zoo_hash"].dropna().astype(str))
                hit |= table["zoo_hash"].astype(str).isin(hashes) & table["zoo_hash"].notna()
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


def comparison(table: pd.DataFrame, metric: str | None = None, names: MethodNames | None = None,
               board: pd.DataFrame | None = None) -> list[Matrix]:
    """One matrix per protocol, a column per (zoo, section); past MAX_COLUMNS columns the zoos are split
    over several matrices (a zoo's columns stay together). `metric`: a declared metric name (protocols
    without it are left out); default: each protocol's ranking metric. `names`: show methods by display
    name, numbered by their references (listed after the tables in LaTeX and HTML). `board`: the table's
    `leaderboard`, where the caller has it."""
    board = leaderboard(table) if board is None else board
    if board.empty:
        return []
    if names is not None:
        names = names.bind(board["variant"])
    rows = with_zoo_labels(sorted_rows(table))
    rows = rows[ok_rows(rows)]
    extra = [c for c in EXTRA_SECTION if c in board.columns]
    matrices = []
    for protocol, proto_board in board.groupby("protocol", sort=True):
        m = _metrics_for(str(protocol), metric)
        if m is None or f"{m.name}_mean" not in proto_board.columns or proto_board[f"{m.name}_mean"].isna().all():
            continue
        columns, cells = [], {}
        for ident, part in proto_board.groupby(["zoo"] + extra, dropna=False, sort=True):
            zoo, values = ident[0], ident[1:]
            if part[f"{m.name}_mean"].isna().all():
                continue
            extras = tuple((c, v) for c, v in zip(extra, values, strict=True) if not _is_na(v))
            col = Column(str(zoo), str(protocol), extras, m.name, m.label, m.higher_is_better)
            j = len(columns)
            columns.append(col)
            cells.update(_column_cells(part, rows, col, j))
            col.decimals = _decimals([c for (v, k), c in cells.items() if k == j])
        for group in _chunks(columns):
            index = {columns.index(c): k for k, c in enumerate(group)}
            mine = {(v, index[i]): c for (v, i), c in cells.items() if i in index}
            variants = sorted({v for v, _ in mine}, key=lambda v: _order(v, mine, group))
            matrices.append(Matrix(str(protocol), m.label, group, variants, mine, names))
    return matrices


def _column_cells(part: pd.DataFrame, rows: pd.DataFrame, col: Column, j: int) -> dict[tuple[str, int], Cell]:
    """The column's cells from its leaderboard rows, the best ranked one flagged, ties by paired test."""
    unit_rows = rows[(rows["zoo"] == col.zoo) & (rows["protocol"] == col.protocol)]
    for c, v in col.extras:
        unit_rows = unit_rows[unit_rows[c] == v]
    per_variant = {str(v): unit_values(r, col.metric)
                   for v, r in unit_rows.groupby("variant", sort=True)} if col.metric in unit_rows else {}
    cells = {}
    for _, r in part.iterrows():
        role = "reference" if r.get("kind") == "reference" else "collapsed" if r["collapsed"] else "ranked"
        cells[(str(r["variant"]), j)] = Cell(r[f"{col.metric}_mean"], r[f"{col.metric}_lo"], r[f"{col.metric}_hi"],
                                             int(r[f"{col.metric}_n"]), role)
    ranked = {v: c for (v, _), c in cells.items() if c.role == "ranked" and math.isfinite(c.mean)}
    if ranked:
        best = (max if col.higher_is_better else min)(ranked, key=lambda v: ranked[v].mean)
        ranked[best].best = True
        for v, c in ranked.items():
            if v != best:
                c.p, shared = paired_p(per_variant.get(v, {}), per_variant.get(best, {}))
                c.tie = shared >= MIN_PAIRED and not c.p < ALPHA
    return cells


def _chunks(columns: list[Column]) -> list[list[Column]]:
    """Columns in groups of at most MAX_COLUMNS, cut between zoos (a zoo wider than that stands alone)."""
    by_zoo = [[c for c in columns if c.zoo == z] for z in dict.fromkeys(c.zoo for c in columns)]
    groups: list[list[Column]] = []
    for zoo_columns in by_zoo:
        if groups and len(groups[-1]) + len(zoo_columns) <= MAX_COLUMNS:
            groups[-1] += zoo_columns
        else:
            groups.append(list(zoo_columns))
    return groups


def _is_na(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _order(variant: str, cells: dict, columns: list[Column]) -> tuple:
    """Ranked methods by their rank in the first column (the order a reader checks), then by their mean rank
    over the columns, then references, then collapsed ones."""
    mine = [(k, c) for (v, k), c in cells.items() if v == variant]
    roles = {c.role for _, c in mine}
    group = 0 if "ranked" in roles else 1 if "reference" in roles else 2
    ranks = {}
    for k, c in mine:
        others = [o for (v, kk), o in cells.items() if kk == k and o.role == "ranked" and math.isfinite(o.mean)]
        sign = -1 if columns[k].higher_is_better else 1
        ranks[k] = sum(sign * o.mean < sign * c.mean for o in others) + 1 if math.isfinite(c.mean) else math.inf
    first = ranks.get(min(k for _, k in cells), math.inf)
    return group, first, sum(ranks.values()) / len(ranks) if ranks else math.inf, variant


# ---- rendering -------------------------------------------------------------------------------------------
def _number(x: float, decimals: int) -> str:
    if not math.isfinite(x):
        return "–"
    text = f"{x:.{decimals}f}"
    if float(text) == 0:  # -0.00004 shown at 4 decimals is a zero, not a negative number
        text = text.lstrip("-")
    return text.replace("-", "−")


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
    shown = m.names.show(variant) if m.names is not None else variant
    return shown + (" (reference)" if roles == {"reference"} else " (collapsed)" if roles == {"collapsed"} else "")


def _role_mark(m: Matrix, variant: str, c: Cell) -> str:
    """' (collapsed)' / ' (reference)' on a cell whose row label does not already say it (a method collapsed
    on one zoo and ranked on another)."""
    if c.role == "ranked" or {x.role for (v, _), x in m.cells.items() if v == variant} == {c.role}:
        return ""
    return f" ({c.role})"


def _ns(m: Matrix) -> list[int | None]:
    return [_uniform_n(m, j) for j in range(len(m.columns))]


def _rows(m: Matrix):
    """(variant, [(cell, mean text, interval text with its role mark) or None per column]) per row: the
    content every renderer shows, which only dresses it in its own syntax."""
    ns = _ns(m)
    for v in m.variants:
        cells = []
        for j, col in enumerate(m.columns):
            c = m.cells.get((v, j))
            if c is None:
                cells.append(None)
                continue
            mean, ci = _cell_text(c, col, ns[j] is None)
            cells.append((c, mean, ci + _role_mark(m, v, c)))
        yield v, cells


def _direction(m: Matrix) -> str:
    return "higher" if m.columns[0].higher_is_better else "lower"


def _zoos(m: Matrix) -> str:
    return ", ".join(dict.fromkeys(c.zoo for c in m.columns))


def _title(m: Matrix) -> str:
    """Names the protocol, the zoos and the metric: a protocol split over several tables gets one heading each."""
    return f"{m.protocol} on {_zoos(m)}: {m.metric_label} ({_direction(m)} is better)"


def _key(m: Matrix) -> str:
    return _slug(f"{m.protocol}-{'-'.join(dict.fromkeys(c.zoo for c in m.columns))}")


def _section_text(col: Column) -> str:
    return ", ".join(_extra_text(k, v) for k, v in col.extras)


def _caption(m: Matrix) -> str:
    ns = [_uniform_n(m, j) for j in range(len(m.columns))]
    n_text = f"n = {ns[0]} units per cell" if len(set(ns)) == 1 and ns[0] else "n units per cell as shown"
    sections = sorted({_section_text(c) for c in m.columns} - {""})
    where = _zoos(m) + (f" ({'; '.join(sections)})" if sections else "")
    shown = [bool(_cell_text(c, m.columns[j], False)[1]) for (_, j), c in m.cells.items()]
    ci = "Mean [95% BCa bootstrap CI]" if all(shown) else \
        "Mean [95% BCa bootstrap CI] where shown (a cell of fewer than 3 distinct values has none)" if any(shown) \
        else "Mean (no interval: every cell rests on fewer than 3 distinct values)"
    tie = "" if not any(c.tie or math.isfinite(c.p) for c in m.cells.values()) else \
        f"; {TIE}: not significantly different from it (two-sided Wilcoxon signed-rank on shared units, p ≥ {ALPHA})"
    return (f"{m.protocol} on {where}: {m.metric_label} ({_direction(m)} is better; unitless). {ci}, {n_text}. "
            f"Bold: best ranked method per column{tie}. Reference baselines and collapsed methods are shown, never "
            f"ranked.")


def _spans(m: Matrix) -> list[tuple[str, list[int]]]:
    return [(z, [j for j, c in enumerate(m.columns) if c.zoo == z]) for z in dict.fromkeys(c.zoo for c in m.columns)]


def to_markdown(matrices: list[Matrix]) -> str:
    out = []
    for m in matrices:
        ns = _ns(m)
        header = ["method"] + [" · ".join(filter(None, (c.zoo, _section_text(c)))) + (f" (n={ns[j]})" if ns[j] else "")
                               for j, c in enumerate(m.columns)]
        out += [f"## {md_cell(_title(m))}", "", md_cell(_caption(m)), "",
                "| " + " | ".join(md_cell(h) for h in header) + " |", "|---" + "|---:" * len(m.columns) + "|"]
        for v, cells in _rows(m):
            row = [md_cell(_variant_label(m, v))]
            for cell in cells:
                if cell is None:
                    row.append("")
                    continue
                c, mean, ci = cell
                mean = f"**{mean}**" if c.best else mean + (TIE if c.tie else "")
                row.append(f"{mean} {md_cell(ci)}".strip())
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    names = _names(matrices)
    if names is not None and names.numbers:
        out += ["## References", ""] + [f"{md_cell(line)}  " for line in names.lines()] + [""]
    return "\n".join(out) if out else "No results to compare.\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "zoo"


def to_latex(matrices: list[Matrix]) -> str:
    """booktabs tables, one per matrix (\\usepackage{booktabs}); each cell's CI under its mean."""
    out = ["% Comparison matrices (bench report). Needs \\usepackage{booktabs}.", ""]
    labels: set[str] = set()
    for m in matrices:
        label = f"tab:cmp-{_key(m)}"
        while label in labels:
            label += "x"
        labels.add(label)
        ns = _ns(m)
        spans = _spans(m)
        out += ["\\begin{table}[htbp]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{4pt}",
                f"\\caption{{{latex_escape(_caption(m))}}}", f"\\label{{{label}}}",
                "\\begin{tabular}{l" + "r" * len(m.columns) + "}", "\\toprule"]
        out.append(" & ".join(["Method"] + [f"\\multicolumn{{{len(js)}}}{{c}}{{{latex_escape(z)}}}"
                                            for z, js in spans]) + " \\\\")
        out.append(" ".join(f"\\cmidrule(lr){{{js[0] + 2}-{js[-1] + 2}}}" for _, js in spans))
        if any(c.extras for c in m.columns):
            out.append(" & ".join([""] + [latex_escape(_section_text(c)) for c in m.columns]) + " \\\\")
        if any(ns):
            out.append(" & ".join([""] + [f"$n={n}$" if n else "" for n in ns]) + " \\\\")
        out.append("\\midrule")
        for v, cells in _rows(m):
            row = [latex_escape(_variant_label(m, v))]
            for cell in cells:
                if cell is None:
                    row.append("")
                    continue
                c, mean, ci = cell
                mean = latex_escape(mean)
                mean = f"\\textbf{{{mean}}}" if c.best else mean + ("$^\\dagger$" if c.tie else "")
                ci = latex_escape(ci)
                # the interval under the mean: half the width, so four columns fit a paper's text width
                row.append(f"\\begin{{tabular}}[t]{{@{{}}r@{{}}}}{mean}\\\\[-2pt]{{\\scriptsize {ci}}}\\end{{tabular}}"
                           if ci else mean)
            out.append(" & ".join(row) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out + latex_references(_names(matrices)))


def _names(matrices: list[Matrix]) -> MethodNames | None:
    """The names the matrices were built with (one binding for all of them)."""
    return next((m.names for m in matrices if m.names is not None), None)


def _extra_text(key: str, value) -> str:
    return {"eps": f"ε={value_text(value)}", "n_models": f"{value_text(value)} models"}.get(key, value_text(value))


def to_html(matrices: list[Matrix]) -> str:
    """Tables (class "sortable", cells carrying data-value) for `render.html_document`'s sorting script."""
    esc, out = html.escape, []
    for m in matrices:
        ns = _ns(m)
        subs = [", ".join(filter(None, (_section_text(c), f"n={n}" if n else ""))) for c, n in zip(m.columns, ns,
                                                                                                     strict=True)]
        heads = "".join(f"<th>{esc(c.zoo)}<br><small>{esc(sub)}</small></th>"
                        for c, sub in zip(m.columns, subs, strict=True))
        out += [f'<h2 id="cmp-{esc(_key(m))}">{esc(_title(m))}</h2>', f"<p>{esc(_caption(m))}</p>",
                '<table class="sortable">', f"<thead><tr><th>method</th>{heads}</tr></thead>", "<tbody>"]
        for v, cells in _rows(m):
            row = [f"<td>{esc(_variant_label(m, v))}</td>"]
            for cell in cells:
                if cell is None:
                    row.append('<td data-value=""></td>')
                    continue
                c, mean, ci = cell
                text = f"<b>{esc(mean)}</b>" if c.best else esc(mean) + (TIE if c.tie else "")
                value = c.mean if math.isfinite(c.mean) else ""
                row.append(f'<td class="num" data-value="{value}">{text} <small>{esc(ci)}</small></td>')
            out.append("<tr>" + "".join(row) + "</tr>")
        out += ["</tbody>", "</table>"]
    return "\n".join(out + html_references(_names(matrices)))


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
                    writer.writerow([col.zoo, col.protocol, ";".join(f"{k}={value_text(x)}" for k, x in col.extras),
                                     col.metric, col.higher_is_better, v, c.role, c.n, repr(float(c.mean)),
                                     repr(float(c.lo)), repr(float(c.hi)), c.best, c.tie,
                                     "" if math.isnan(c.p) else repr(c.p)])
    return buf.getvalue()


# the line `bench report --out` writes first: a later `--out` onto the same path replaces the file only when it
# carries this (zoos.files.check_ours); a comment in every format, so nothing a reader sees changes
OUT_MARKER = "written by `bench report --out` (rebasin-bench)"


def mark(text: str, fmt: str) -> str:
    """`text` (of format `fmt`) with `OUT_MARKER` as a comment in its first lines."""
    if fmt == "html":  # after the doctype, which must come first
        first, sep, rest = text.partition("\n")
        return f"{first}{sep}<!-- {OUT_MARKER} -->\n{rest}" if first.startswith("<!DOCTYPE") else \
            f"<!-- {OUT_MARKER} -->\n{text}"
    if fmt == "md":
        return f"<!-- {OUT_MARKER} -->\n\n{text}"
    return f"{'%' if fmt == 'tex' else '#'} {OUT_MARKER}\n{text}"


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
