"""Comparison matrices: what is bold, what is marked, what the filters keep, and each format's shape."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.report import comparison as cmp
from bench.store.results import ResultStore

N = 12  # units per cell: enough for the paired test


def _table(zoos=("cnn-a",), orbit_sections=1, barrier=False) -> pd.DataFrame:
    """Units of five variants: 'good' is best, 'twin' is good plus noise (a tie), 'bad' is clearly worse,
    'constant' a reference that beats everyone (never bold), 'naive' in between."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, N)
    offsets = {"good": 0.0, "naive": 0.5, "bad": 1.0, "constant": -0.15}
    rows, k = [], 0
    for zoo in zoos:
        sections = [("pairs", {})] + [("orbit", {"action": a, "eps": e})
                                      for a, e in [("P", 0.01), ("PS", 0.01), ("P", 0.0), ("PS", 0.0),
                                                   ("S", 0.01), ("S", 0.0)][:orbit_sections]]
        for protocol, extra in sections:
            for variant in ("good", "twin", "naive", "bad", "constant"):
                for u in range(N):
                    k += 1
                    if variant == "twin":  # differences +0.021, -0.019, ...: a hair worse, far from significant
                        value = base[u] + (0.02 if u % 2 else -0.02) + 0.001
                    else:
                        value = base[u] + offsets[variant]
                    rows.append({"key": f"k{k}", "run_id": "r", "zoo": zoo, "zoo_hash": f"h-{zoo}",
                                 "protocol": protocol, "variant": variant, "method": variant, "unit": f"u={u}",
                                 "method_kind": "reference" if variant == "constant" else "exact",
                                 "loss_excess": value, "error": None, **extra,
                                 **({"loss_barrier": value / 2} if barrier else {})})
    return pd.DataFrame(rows)


def _cells(matrix) -> dict[str, cmp.Cell]:
    return {v: c for (v, j), c in matrix.cells.items() if j == 0}


def test_best_is_bold_ties_marked_references_never_ranked():
    matrix = next(m for m in cmp.comparison(_table()) if m.protocol == "pairs")
    cells = _cells(matrix)
    assert cells["good"].best and not cells["twin"].best
    assert cells["twin"].tie and not cells["naive"].tie and not cells["bad"].tie
    assert cells["constant"].role == "reference" and not cells["constant"].best  # lowest mean, not ranked
    assert cells["good"].mean == pytest.approx(_table().query("variant == 'good'")["loss_excess"].mean())
    assert matrix.variants[:2] in (["good", "twin"], ["twin", "good"]) and matrix.variants[-1] == "constant"
    md = cmp.to_markdown([matrix])
    good = next(line for line in md.splitlines() if line.startswith("| good"))
    assert "**0." in good and cmp.TIE in next(line for line in md.splitlines() if line.startswith("| twin"))
    assert "**" not in next(line for line in md.splitlines() if line.startswith("| constant"))


def test_another_metric_and_the_selection():
    table = _table(zoos=("cnn-a", "inr-b"), barrier=True)
    (a,) = cmp.comparison(cmp.select(table, zoos=["cnn-*"], protocols=["pairs"]), metric="loss_barrier")
    assert [c.zoo for c in a.columns] == ["cnn-a"] and a.columns[0].metric == "loss_barrier"
    assert _cells(a)["good"].mean == pytest.approx(table.query("variant == 'good' and zoo == 'cnn-a'")
                                                   ["loss_barrier"].mean())
    only = cmp.select(table, methods=["good", "bad"], protocols=["pairs"])
    assert set(only["variant"]) == {"good", "bad"} and set(only["protocol"]) == {"pairs"}
    with pytest.raises(ValueError, match="unknown zoo 'cnn-x' \\(did you mean 'cnn-a'"):
        cmp.select(table, zoos=["cnn-x"])
    with pytest.raises(ValueError, match="did you mean 'good'"):
        cmp.select(table, methods=["godo"])
    assert cmp.comparison(table, metric="no_such_metric") == []


def test_one_table_per_protocol_split_between_zoos_and_decimals_per_column():
    matrices = cmp.comparison(_table(zoos=("a", "b", "c"), orbit_sections=2))
    # orbit: 3 zoos x 2 sections = 6 columns > MAX_COLUMNS, cut between zoos; pairs: 3 columns
    assert [(m.protocol, [c.zoo for c in m.columns]) for m in matrices] == [
        ("orbit", ["a", "a", "b", "b"]), ("orbit", ["c", "c"]), ("pairs", ["a", "b", "c"])]
    for m in matrices:
        for j, col in enumerate(m.columns):
            texts = [cmp._cell_text(c, col, False)[0] for (v, k), c in m.cells.items() if k == j]
            assert len({len(t.split(".")[-1]) for t in texts if t != "–"}) == 1  # one number of decimals


def test_formats(tmp_path):
    matrices = cmp.comparison(_table(zoos=("cnn_a&b",), orbit_sections=2))
    tex = cmp.render(matrices, "tex", ["Produced by `bench report`."])
    assert tex.startswith("% Produced by") and "\\toprule" in tex and "\\label{tab:cmp-pairs-cnn-a-b}" in tex
    assert "cnn\\_a\\&b" in tex and "\\textbf{" in tex and "$^\\dagger$" in tex and "ε" not in tex
    html = cmp.render(matrices, "html")
    assert '<table class="sortable">' in html and "data-value=" in html and "<script>" in html
    frame = pd.read_csv(io.StringIO(cmp.render(matrices, "csv")))
    good = frame[(frame.method == "good") & (frame.protocol == "pairs")].iloc[0]
    assert good.best and good.n == N and frame.not_worse_than_best.any()
    with pytest.raises(ValueError, match="unknown format 'pdf'"):
        cmp.render(matrices, "pdf")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine (apt-get install texlive-latex-base "
                                                               "texlive-latex-recommended)")
def test_latex_compiles(tmp_path):
    body = cmp.render(cmp.comparison(_table(orbit_sections=3)), "tex")
    (tmp_path / "t.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
                                    f"{body}\n\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_cli_report_selection(tmp_path):
    ResultStore(tmp_path).append(_table())
    out = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(tmp_path), "--methods",
                          "good", "bad", "--format", "csv"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert set(pd.read_csv(io.StringIO(out.stdout)).method) == {"good", "bad"}
    out = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(tmp_path), "--out",
                          str(tmp_path / "t.tex")], capture_output=True, text=True)
    assert out.returncode == 0 and "\\begin{tabular}" in (tmp_path / "t.tex").read_text()
    out = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(tmp_path), "--zoos",
                          "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown zoo 'nope'" in out.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless browser (apt-get install chromium)")
def test_html_tables_sort_in_a_real_browser(tmp_path):
    """Click a column header in headless Chromium: the rows come back ordered by that column's means."""
    page = cmp.render(cmp.comparison(_table(zoos=("a", "b"), orbit_sections=0)), "html")  # pairs on two zoos
    click = ("<script>document.querySelectorAll('table.sortable thead th')[2].click();"
             "document.body.setAttribute('data-done', '1');</script>")
    (tmp_path / "page.html").write_text(page.replace("</body>", click + "</body>"))
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           (tmp_path / "page.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-done="1"' in proc.stdout, proc.stderr[-2000:]
    body = proc.stdout.split("<tbody>")[1].split("</tbody>")[0]
    values = [float(v) for v in re.findall(r'<td class="num" data-value="([^"]+)">', body)[1::2]]  # column 2
    assert len(values) == 5 and values == sorted(values)
