"""The report's sections as text: Markdown, a LaTeX fragment (booktabs) and a self-contained, sortable
HTML page. Names from files (zoos, method specs, errors) are escaped for each format."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.report.method_names import MethodNames, bound_names
from bench.report.sections import Section, all_sections

INTRO = ("Each cell: mean [95% bootstrap CI] over n units of work. Interpolation protocols rank by the path "
         "excess: the worst loss along the path between the aligned endpoints minus the mean loss of the ORIGINAL "
         "networks (accuracy/PSNR: the largest drop below them), so a method is charged for whatever it does to "
         "the endpoints; the barrier (measured against the path's own endpoints) and the reconstruction cost are "
         "shown beside it. Merges rank by the merged network's loss; combine probes show the empirical barrier "
         "(worst sample minus the endpoints' mean). Reference baselines (constant) are shown, never ranked.")


_MD_SPECIAL = re.compile(r"([\\`*<>|]|(?<=\])\(|!(?=\[))")


def md_cell(text) -> str:
    """Text from the table (zoo names, method specs, errors) as inert Markdown: one line, with the
    characters that make code, emphasis, HTML or table cells escaped and link syntax (`](`, `![`) broken;
    plain brackets (confidence intervals, method specs) stay as they are."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return lines


def md_header(header_lines: Sequence[str]) -> list[str]:
    """Header lines keep their Markdown (a title, `code`) but carry names from files: one line each, no HTML."""
    return [re.sub(r"([<>])", r"\\\1", " ".join(str(line).split())) for line in header_lines]


def markdown(table: pd.DataFrame, header_lines: Sequence[str] = (), sweeps: pd.DataFrame | None = None,
             figures: Sequence[str] = (), names: MethodNames | None = None,
             sections: list[Section] | None = None) -> str:
    """The leaderboard as Markdown text: one section per comparison, then combinability, sweeps, figures
    (with `names`: methods by display name, and their references). `sections`: the table's `all_sections`
    (of these sweeps and names), where the caller has them."""
    lines = md_header(header_lines)
    if lines:
        lines.append("")
    lines += [INTRO, ""]
    names = bound_names(names, table)
    sections = all_sections(table, sweeps, names) if sections is None else sections
    if not sections:
        return "\n".join(lines + ["No results yet.", ""])
    for s in sections:
        lines += [f"## {md_cell(s.title)}", ""] + ([s.note, ""] if s.note else []) + _md_table(s.header, s.rows) + [""]
    if names is not None and names.numbers:
        lines += ["## References", ""] + [f"{md_cell(line)}  " for line in names.lines()] + [""]
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
          names: MethodNames | None = None, sections: list[Section] | None = None) -> str:
    """The same tables as a LaTeX fragment (`\\input` it; needs booktabs); with `names`, methods by display
    name and a references block (the numbers the names carry) after the tables. `sections`: as for `markdown`."""
    lines = [f"% {' '.join(str(line).split())}" for line in header_lines]  # a newline would end the comment
    lines += [f"% {INTRO}", "% Needs \\usepackage{booktabs}.", ""]
    names = bound_names(names, table)
    sections = all_sections(table, sweeps, names) if sections is None else sections
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
              figures: Sequence[str] = (), names: MethodNames | None = None,
              sections: list[Section] | None = None) -> str:
    """The same tables as one self-contained HTML page (figures linked by relative path), sortable, with
    a table of contents; with `names`, methods by display name and a references section. `sections`: as for
    `markdown`."""
    esc = html.escape
    out = [f"<p>{esc(INTRO)}</p>"]
    names = bound_names(names, table)
    sections = all_sections(table, sweeps, names) if sections is None else sections
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
