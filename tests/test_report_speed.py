"""The report's fast paths give the numbers of the slow ones to the last bit: the tables' BCa intervals computed
for every cell at once (`stats.mean_cis`) are scipy's per cell, the figures' percentile intervals computed for
every point at once (`figures.figure_cis`) are those of a resampling per point; and nothing is kept between
reports (a table changed in place gets a new leaderboard)."""

from __future__ import annotations

import gc
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.report.figures import figure_cis
from bench.report.leaderboard import leaderboard
from bench.report.stats import RESAMPLES, mean_ci, mean_cis


def _finite(values) -> tuple[np.ndarray, tuple | None]:
    """The finite values, and the answer where there is nothing to resample: NaNs for none, the mean alone for
    fewer than two distinct values (the references' shared start)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return x, (math.nan, math.nan, math.nan, 0)
    if len(np.unique(x)) < 2:
        return x, (float(x.mean()),) * 3 + (len(x),)
    return x, None


def _scipy_mean_ci(values, seed: int = 0) -> tuple[float, float, float, int]:
    """The reference: one `scipy.stats.bootstrap` call per cell, as the tables computed it before."""
    x, trivial = _finite(values)
    if trivial is not None:
        return trivial
    mean = float(x.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=RESAMPLES, method="BCa",
                              random_state=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        boot = np.random.default_rng(seed).choice(x, size=(RESAMPLES, len(x))).mean(1)
        low, high = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    return mean, low, high, len(x)


def _samples(seed: int = 0) -> list[list]:
    """Cells as a report meets them: a few units to many, ties, rates, wide and tiny scales, missing values, and
    degenerate ones (no spread to speak of, overflow)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in [*range(1, 13), 16, 17, 33, 64]:
        out += [rng.normal(size=n).tolist(), rng.integers(0, 3, size=n).astype(float).tolist(),
                np.round(rng.normal(size=n), 1).tolist(), (rng.normal(size=n) * 1e-7 + 100).tolist(),
                (rng.exponential(size=n) ** 3).tolist(), [*rng.normal(size=n).tolist(), math.nan, None]]
    # cells whose acceleration differs in the last bit where the spread is raised to 3/2 as an array, not a scalar
    out += [np.random.default_rng(1).normal(size=12).tolist(), np.random.default_rng(145).normal(size=16).tolist()]
    return out + [[0.0, 0.0, 0.0, 1e-300], [1e300, -1e300, 1e300], [1e308, 1.7e308], [], [math.nan], [0.5] * 5]


def _same(a: tuple, b: tuple) -> bool:
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def test_all_cells_at_once_give_scipy_s_interval_of_each_cell():
    samples = _samples()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's on the overflowing cells (the interval stays NaN or usable)
        together = mean_cis(samples)
        alone = [mean_ci(s) for s in samples]
        reference = [_scipy_mean_ci(s) for s in samples]
    assert all(_same(a, b) for a, b in zip(together, reference, strict=True))
    assert all(_same(a, b) for a, b in zip(alone, reference, strict=True))


def test_cells_of_one_size_past_one_batch_are_split_with_the_same_numbers(monkeypatch):
    import bench.report.stats as report_stats

    samples = [np.random.default_rng(k).normal(size=3).tolist() for k in range(7)]
    whole = mean_cis(samples)
    monkeypatch.setattr(report_stats, "BATCH_VALUES", 2 * RESAMPLES * 3)  # two cells per batch
    assert mean_cis(samples) == whole


def _percentile_ci(values, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """The reference: one resampling per figure point."""
    x, trivial = _finite(values)
    if trivial is not None:
        return trivial
    mean = float(x.mean())
    boot = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return mean, float(low), float(high), len(x)


def test_all_figure_points_at_once_give_each_point_s_interval():
    samples = [s for s in _samples(1) if all(v is None or abs(v) < 1e200 for v in s)]
    assert all(_same(a, b) for a, b in zip(figure_cis(samples), [_percentile_ci(s) for s in samples], strict=True))


def _table() -> pd.DataFrame:
    return pd.DataFrame({"zoo": ["z"] * 4, "protocol": ["pairs"] * 4, "variant": ["naive", "naive", "a", "a"],
                         "method": ["naive", "naive", "a", "a"], "unit": ["p1", "p2", "p1", "p2"],
                         "loss_barrier": [0.5, 0.7, 0.1, 0.2], "loss_excess": [0.5, 0.7, 0.1, 0.2]})


def test_a_table_changed_in_place_gets_a_new_leaderboard():
    table = _table()
    first = leaderboard(table).set_index("variant")["loss_excess_mean"]
    table.loc[table["variant"] == "a", "loss_excess"] = [0.9, 1.1]
    second = leaderboard(table).set_index("variant")["loss_excess_mean"]
    assert first["a"] == pytest.approx(0.15) and second["a"] == pytest.approx(1.0)


def test_rows_with_repeated_labels_count_once_each():
    table = _table()
    board = leaderboard(pd.concat([table.iloc[:2], table.iloc[2:]]).set_axis([0, 1, 0, 1]))  # e.g. concatenated
    pd.testing.assert_frame_equal(board, leaderboard(table))


def test_the_report_leaves_garbage_collection_as_it_found_it(tmp_path):
    from bench.report.files import write_all

    (tmp_path / "rows").mkdir()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            write_all(tmp_path, into=tmp_path / "out")
            assert gc.isenabled() == enabled
        finally:
            gc.enable()
