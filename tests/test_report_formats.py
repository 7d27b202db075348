"""Reports from the Parquet table alone: Markdown, LaTeX and HTML leaderboards and the figures,
byte-identical on rerun; width-ablation labels; merge ranks; combinability and sweep sections."""

import html.parser
import struct

import numpy as np
import pandas as pd
import pytest

from bench.report import figures
from bench.report import files as report_files
from bench.report.declared import PROBE_ORDER
from bench.report.figures import plot_merged_vs_n
from bench.report.files import read_sweeps
from bench.report.leaderboard import leaderboard
from bench.report.long_frames import curves_long, eps_long, merge_long, runtime_long, width_long
from bench.report.method_names import MethodNames
from bench.report.render import html_page, latex, markdown
from bench.report.sections import attention_section, board_sections, combine_sections, sweep_sections
from bench.store.results import ResultStore

VARIANTS = ("naive", "git-rebasin[init=identity,max_sweeps=5]")


def _rows():
    """A table like `bench run` writes: pairs/orbit/merge on one zoo name at two widths, plus combine."""
    rng = np.random.default_rng(0)
    rows, k = [], 0

    def add(**row):
        nonlocal k
        k += 1
        base = {"key": f"k{k:04d}", "run_id": "r1", "seed": 0, "error": None, "method": row["variant"].split("[")[0]}
        rows.append({**base, **row})

    for zoo_hash, width in (("h8", 8), ("h16", 16)):
        zoo = dict(zoo="cnn_relu", zoo_hash=zoo_hash)
        for v, variant in enumerate(VARIANTS):
            for u in range(3):
                loss = float(0.5 - 0.3 * v + 0.1 * rng.random()) / width * 8
                add(**zoo, variant=variant, protocol="pairs", unit=f"pair={u}", loss_barrier=loss,
                    acc_barrier=loss / 10, align_s=1e-3 * width * (1 + v), lambdas=[0.0, 0.5, 1.0],
                    curve_loss=[1.0, 1.0 + loss, 1.0], deviation=1e-7)
                add(**zoo, variant=variant, protocol="combine", unit=f"pair={u} probe=line", probe="line",
                    width=width, loss_barrier=loss, grid=[0.0, 0.5, 1.0], grid_loss=[1.0, 1.0 + loss, 1.0])
                add(**zoo, variant=variant, protocol="combine", unit=f"pair={u} probe=bernoulli", probe="bernoulli",
                    width=width, loss_barrier=2 * loss, grid=[0.0, 0.5, 1.0], grid_loss=[1.0, 1.0 + 2 * loss, 1.0])
                for action in ("P", "PS"):
                    for eps in (0.0, 0.01):
                        add(**zoo, variant=variant, protocol="orbit", unit=f"net={u} action={action} eps={eps:g}",
                            action=action, eps=eps, loss_barrier=loss * (1 + 10 * eps), align_s=1e-3)
                for n in (2, 3):
                    add(**zoo, variant=variant, protocol="merge", unit=f"n={n} nets={u}", n_models=n,
                        loss_merged=1.0 + (0.2 if v == 0 else 0.1) * n, acc_merged=0.8 - 0.05 * n * (1 - v),
                        acc_merged_repair=0.85 - 0.04 * n * (1 - v), cycle_error=0.1 * v, merge_s=0.01 * n)
    add(zoo="cnn_relu", zoo_hash="h8", variant="naive", protocol="pairs", unit="pair=9", error="Boom: a & b_c")
    return rows


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    ResultStore(root).append(_rows())
    sweeps = [{"key": f"s{t}-{u}", "run_id": "st", "study": "st", "trial": t, "unit": f"pair={u}", "error": None,
               "variant": f"git-rebasin[max_sweeps={t + 1}]", "objective": 0.5 - 0.1 * (t % 3),
               "objective_metric": "loss_barrier", "objective_direction": "minimize", "method_s": 0.1 * t,
               "is_default": t == 0, "loss_barrier": 0.5 - 0.1 * (t % 3)} for t in range(5) for u in range(2)]
    ResultStore(root / "sweeps").append(sweeps)
    return root


FILES = ("leaderboard.md", "leaderboard.tex", "leaderboard.html", "curves.png", "barrier_vs_eps.png",
         "barrier_vs_width.png", "runtime_vs_width.png", "merged_vs_n.png", "combine.png",
         "comparison.md", "comparison.tex",
         "comparison.html", "comparison.csv")


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


def test_report_files_are_byte_identical_on_rerun(results, tmp_path):
    header = ["# Leaderboard", "Produced by `bench report` at commit `abc`."]
    paths = report_files.write_all(results, header)
    assert sorted(p.name for p in paths) == sorted(FILES)
    first = {name: (results / name).read_bytes() for name in FILES}
    report_files.write_all(results, header)
    assert {name: (results / name).read_bytes() for name in FILES} == first
    # a copy of the table elsewhere gives the same files: nothing depends on paths or time
    copy = tmp_path / "copy"
    ResultStore(copy).append(ResultStore(results).table())
    ResultStore(copy / "sweeps").append(ResultStore(results / "sweeps").table())
    report_files.write_all(copy, header)
    assert {name: (copy / name).read_bytes() for name in FILES} == first
    for name in FILES:
        if name.endswith(".png"):
            chunks = _png_chunks(first[name])
            assert b"tIME" not in chunks and b"tEXt" not in chunks and len(first[name]) > 5000, name
    md = first["leaderboard.md"].decode()
    assert all(f"]({name})" in md for name in FILES if name.endswith(".png"))


def test_tables_do_not_depend_on_row_order(results):
    table = ResultStore(results).table()
    shuffled = table.sample(frac=1.0, random_state=1)
    for render in (markdown, latex, html_page):
        assert render(table, ["# x"]) == render(shuffled, ["# x"])


def test_width_ablation_is_told_apart_and_plotted(results):
    table = ResultStore(results).table()
    board = leaderboard(table)
    zoos = set(board["zoo"])
    assert zoos == {"cnn_relu (width 8)", "cnn_relu (width 16)"}
    width = width_long(table)
    assert set(width["width"]) == {8.0, 16.0}
    assert set(width["panel"]) == {"cnn_relu · pairs", "cnn_relu · combine · line", "cnn_relu · combine · bernoulli"}
    runtime = runtime_long(table)
    assert len(runtime) == 2 * 2 * 3 and runtime.groupby("width").align_s.mean()[16.0] > runtime.groupby(
        "width").align_s.mean()[8.0]
    # without a recorded width the zoos stay apart by content hash
    bare = leaderboard(table[table["protocol"] != "combine"].drop(columns=["width"]))
    assert set(bare["zoo"]) == {"cnn_relu #h8", "cnn_relu #h16"}


def test_leaderboard_sections_merge_ranks_and_errors(results):
    table = ResultStore(results).table()
    board = leaderboard(table)
    merge = board[(board.protocol == "merge") & (board.n_models == 3) & (board.zoo == "cnn_relu (width 8)")]
    ranks = dict(zip(merge.variant, merge["rank"], strict=True))
    assert ranks == {VARIANTS[1]: 1, "naive": 2}  # merged loss 1.3 < 1.6
    pairs = board[(board.protocol == "pairs") & (board.zoo == "cnn_relu (width 8)")].set_index("variant")
    assert pairs.loc["naive", "n"] == 3 and pairs.loc["naive", "n_errors"] == 1
    md = markdown(table)
    assert "| rank | n_models | variant | n | merged loss | merged acc | merged acc (REPAIR) | cycle error |" in md
    assert "merge s (median)" in md and "## cnn_relu (width 16) / mode combinability (loss barrier)" in md
    combi = combine_sections(table)[0]
    assert combi.header == ["probe", VARIANTS[1], "naive"] and [r[0] for r in combi.rows] == ["line", "bernoulli"]


class _Checker(html.parser.HTMLParser):
    VOID = {"meta", "img"}

    def __init__(self):
        super().__init__()
        self.stack, self.tables, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag

    def handle_data(self, data):
        self.text.append(data)


def test_latex_and_html_render_the_same_sections(results):
    table = ResultStore(results).table()
    sweeps = read_sweeps(results)
    sections = (attention_section(table) + board_sections(table) + combine_sections(table)
                + sweep_sections(sweeps))
    tex = latex(table, ["# Title"], sweeps)
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == len(sections)
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert "git-rebasin[init=identity,max\\_sweeps=5]" in body and "$\\pm$" in body and "±" not in body
    assert tex.startswith("% # Title\n") and "\\toprule" in tex
    page = html_page(table, ["# Title"], sweeps, ["curves.png"])
    checker = _Checker()
    checker.feed(page)
    assert not checker.stack and checker.tables == len(sections)
    text = "".join(checker.text)
    assert "git-rebasin[init=identity,max_sweeps=5]" in text and '<img src="curves.png"' in page
    sweep = sweep_sections(sweeps)[0]
    assert [r[0] for r in sweep.rows] == ["2", "1", "4", "0", "3"]  # best (lowest) first, ties by trial
    assert sweep.rows[0][1:4] == ["git-rebasin[max_sweeps=3]", "0.3", "2"] and sweep.rows[3][-1] == "yes"


def test_probe_order_matches_the_protocol():
    from bench.protocols.combine import PROBES

    assert PROBE_ORDER == PROBES  # kept apart so that reports need no torch


def test_leaderboard_says_what_each_method_read(tmp_path):
    """Rows carry the data a method read besides the weights (`method_needs`): a `data` column appears."""
    rows = [{"key": f"k{i}", "run_id": "r", "seed": 0, "error": None, "zoo": "z", "zoo_hash": "h", "protocol": "pairs",
             "unit": f"pair={i % 3}", "variant": variant, "method": variant, "method_needs": needs,
             "loss_barrier": 0.1 * (i % 3), "lambdas": [0.0, 1.0], "curve_loss": [1.0, 1.0]}
            for i, (variant, needs) in enumerate([("naive", "data-free")] * 3
                                                 + [("activation-matching", "activations")] * 3)]
    ResultStore(tmp_path).append(rows)
    md = markdown(ResultStore(tmp_path).table())
    assert "| variant | data | n |" in md.replace("| rank | ", "| ")
    assert "| activation-matching | activations | 3 |" in md
    older = [{**r, "key": f"old{i}", "variant": "git-rebasin", "method": "git-rebasin"} for i, r in enumerate(rows[:3])]
    for r in older:
        del r["method_needs"]  # rows written before rows carried it
    ResultStore(tmp_path).append(older)
    report_files.write_all(tmp_path, [], {"git-rebasin": "data-free"})
    assert "| git-rebasin | data-free | 3 |" in (tmp_path / "leaderboard.md").read_text()


def test_figures_small_multiples_rank_metric_and_integer_counts(results, tmp_path):
    """Figures: one panel per (zoo · section, method family) with baselines in every family's panel; orbit
    plots the protocol's rank metric; the merge figure's N axis is integer."""
    table = ResultStore(results).table()
    eps = eps_long(table)
    assert set(eps["metric"]) == {"loss_barrier"}  # the fixture's orbit rows carry no path excess
    table = table.assign(loss_excess=table["loss_barrier"] + 1.0)
    eps = eps_long(table)
    assert set(eps["metric"]) == {"loss_excess"} and (eps["value"] >= 1.0).all()
    kinds = {"naive": "exact", "git-rebasin": "exact"}
    table = table.assign(method_kind=table["method"].map(kinds), method_needs="data-free")
    families = set(curves_long(table)["family"])
    assert families == {"baseline", "exact, data-free"}
    merge = merge_long(table)
    assert merge["n_models"].dtype.kind == "i" and set(merge["family"]) == {"baseline", "exact, data-free"}
    path = plot_merged_vs_n(table, tmp_path / "merged.png")
    assert path.stat().st_size > 5000
    styles = figures._styles(merge)
    assert styles["naive"][0] == "0.25"  # baselines in grey; methods from the colour-blind palette
    assert styles[VARIANTS[1]][0] in figures._palette()


def test_display_names_and_references(results):
    """`bench report --display-names`: methods by display name with their reference's number, the references
    listed after the tables (LaTeX, HTML, Markdown), in the leaderboard and the comparison tables alike."""
    from bench.report import comparison as cmp
    from methods import METHODS

    table = ResultStore(results).table()
    names = MethodNames.of(METHODS)
    assert names.show("git-rebasin[max_sweeps=5]") == "Git Re-Basin (WM) [max_sweeps=5]"
    bound = names.bind(table["variant"])
    assert bound.show(VARIANTS[1]) == "Git Re-Basin (WM) [init=identity,max_sweeps=5] [1]"
    assert bound.show("naive") == "Naive averaging"  # no citation, no number
    md = markdown(table, names=names)
    assert "| Git Re-Basin (WM) [init=identity,max_sweeps=5] [1] |" in md and "## References" in md
    assert "[1] Git Re-Basin (WM): Ainsworth" in md and "arXiv:2209.04836" in md
    tex = latex(table, names=names)
    assert "\\item[{[1]}] Git Re-Basin (WM): Ainsworth, Hayase \\& Srinivasa, ``Git Re-Basin" in tex
    page = html_page(table, names=names)
    assert '<a href="https://arxiv.org/abs/2209.04836">arXiv:2209.04836</a>' in page and "Naive averaging" in page
    matrices = cmp.comparison(table, names=names)
    for fmt in ("md", "tex", "html"):
        text = cmp.render(matrices, fmt)
        assert "Git Re-Basin (WM)" in text and "2209.04836" in text, fmt
    assert "git-rebasin[init=identity,max_sweeps=5]" in cmp.render(matrices, "csv")  # data keeps the names run
    assert "Git Re-Basin" not in markdown(table)  # off by default


def test_a_trend_figure_needs_two_points_on_its_axis(results, tmp_path):
    """barrier_vs_eps with one noise level would be a column of dots: it is not drawn, nor linked."""
    from bench.report.figures import drawable

    table = ResultStore(results).table()
    one = table[(table["protocol"] != "orbit") | (table["eps"] == table.loc[table.protocol == "orbit", "eps"].max())]
    copy = tmp_path / "one-eps"
    ResultStore(copy).append(one)
    ResultStore(copy / "sweeps").append(ResultStore(results / "sweeps").table())
    names = {p.name for p in report_files.write_all(copy, ["# Leaderboard"])}
    assert "barrier_vs_eps.png" not in names and "merged_vs_n.png" in names
    assert "barrier_vs_eps.png" not in (copy / "leaderboard.md").read_text()
    assert not drawable(pd.DataFrame({"panel": ["a", "a"], "eps": [0.01, 0.01]}), "eps")
    assert drawable(pd.DataFrame({"panel": ["a", "a"], "eps": [0.0, 0.01]}), "eps")
