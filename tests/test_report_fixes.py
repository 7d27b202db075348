"""Comparison-table details (issue 35): signed zeros, one suggestion per name, rows in the first column's order,
headings that name the zoos, captions that promise no interval a table does not show."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.comparison import Cell, Column, Matrix, _caption, _number, _order, _title, select


def test_signed_zero_is_a_zero():
    assert _number(-0.00001, 4) == "0.0000" and _number(-0.5, 1) == "−0.5" and _number(math.nan, 2) == "–"


def test_a_misspelt_method_is_suggested_once():
    table = pd.DataFrame({"variant": ["git-rebasin", "naive"], "method": ["git-rebasin", "naive"],
                          "zoo": ["z", "z"], "protocol": ["pairs", "pairs"]})
    with pytest.raises(ValueError) as error:
        select(table, methods=["git-rebsin"])
    assert str(error.value).count("'git-rebasin'") == 1


def _matrix(intervals: bool) -> Matrix:
    cols = [Column("cnn-relu", "orbit", (("action", "P"),), "loss_excess", "loss excess", False),
            Column("cnn-relu", "orbit", (("action", "PS"),), "loss_excess", "loss excess", False)]
    width = 0.1 if intervals else 0.0
    cells = {("a", 0): Cell(0.3, 0.3 - width, 0.3 + width, 2, "ranked"), ("a", 1): Cell(0.1, 0.1, 0.1, 2, "ranked"),
             ("b", 0): Cell(0.2, 0.2 - width, 0.2 + width, 2, "ranked"), ("b", 1): Cell(0.5, 0.5, 0.5, 2, "ranked")}
    return Matrix("orbit", "loss excess", cols, ["a", "b"], cells)


def test_rows_follow_the_first_column_and_captions_say_what_is_shown():
    m = _matrix(intervals=False)
    assert sorted(m.variants, key=lambda v: _order(v, m.cells, m.columns)) == ["b", "a"]  # b wins column 1
    assert "cnn-relu" in _title(m) and "no interval" in _caption(m) and "[95%" not in _caption(m)
    assert "where shown" in _caption(_matrix(intervals=True))  # column 2 has points only


def test_an_unknown_metric_lists_the_valid_ones_in_one_line():
    from bench.commands.report import _check_metric

    table = pd.DataFrame({"variant": ["naive"], "zoo": ["z"], "protocol": ["pairs"], "loss_barrier": [0.1],
                          "loss_excess": [0.2], "acc_barrier": [None]})
    _check_metric("loss_barrier", table)  # declared by pairs: passes
    with pytest.raises(ValueError) as error:
        _check_metric("barrier", table)
    text = str(error.value)
    assert "\n" not in text and "unknown metric 'barrier'" in text and "valid here: loss_barrier, loss_excess" in text
    with pytest.raises(ValueError, match="metric not declared by pairs: 'recovered'"):
        _check_metric("recovered", table)  # an orbit metric
