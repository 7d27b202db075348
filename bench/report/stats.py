"""The statistics every table cell carries: mean, 95% bootstrap confidence interval, n; and a paired
test of each method against the best on the units both ran.

- CI: bias-corrected and accelerated (BCa) bootstrap of the mean (`scipy.stats.bootstrap`'s, 2000
  resamples, fixed seed, so a report is reproducible; computed for all of a report's cells at once,
  `mean_cis`), whenever there are 2 or more units; the percentile interval where BCa is undefined.
  Only n = 1, or all units equal, collapses to the mean.
- Rates (a metric declared with `trials`: each unit's value is the fraction of that many yes/no
  trials, e.g. `recovered`, `ident`): the exact Clopper-Pearson interval of the pooled proportion
  (`rate_ci`), which is defined for any n >= 1, also when every unit scored 0 or 1.
- Collapse gate (`collapse_test`): a method that changes the function is ranked only if its decoded
  networks name their own source (nearest original by function) more often than chance: one-sided
  binomial test, p < 0.05, over independent trials only - one decision per distinct source network,
  from units whose two endpoints have distinct sources (`pairs`). Orbit units are left out: both
  endpoints share one source, and one network recurs across actions and noise levels, so a decoder
  that always returns one network would pass far more often than 5% (tests/test_honest.py simulates
  the default design). A decoder that maps every input to nearly one network fails it, and is shown,
  like the constant baseline, unranked.
- Paired test: Wilcoxon signed-rank (two-sided) on the per-unit differences between a method and
  the best method of the comparison, over the units both have (matched by unit name and seed). A method is
  "not significantly different from the best" when p >= 0.05 or fewer than 6 shared units make
  the test powerless (p is then reported as NaN).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special, stats

CONFIDENCE = 0.95
RESAMPLES = 2000
ALPHA = 0.05
MIN_PAIRED = 6  # below this the signed-rank test cannot reach p < 0.05 (two-sided, exact)
BATCH_VALUES = 1 << 22  # resampled values held at once by the vectorised bootstrap (32 MiB)


def mean_ci(values, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; NaNs when there are none."""
    return mean_cis([values], confidence, seed)[0]


def mean_cis(samples, confidence: float = CONFIDENCE, seed: int = 0) -> list[tuple[float, float, float, int]]:
    """`mean_ci` of each sample (a report's hundreds of cells at once)."""
    return finite_intervals(samples, lambda rows: _bca(rows, confidence, seed))


def finite_intervals(samples, interval) -> list[tuple[float, float, float, int]]:
    """(mean, low, high, n) of the finite values of each sample: NaNs for none, the mean alone where fewer than
    two distinct values leave nothing to resample, else the interval `interval(rows)` -> (lows, highs) gives
    the samples of one size stacked as rows (a vectorised call per size, not one per sample)."""
    xs = [np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float) for values in samples]
    out: list = [None] * len(xs)
    by_size: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        if len(x) == 0:
            out[i] = (math.nan, math.nan, math.nan, 0)
        elif len(np.unique(x)) < 2:  # n = 1, or every unit equal: nothing to resample
            out[i] = (float(x.mean()),) * 3 + (len(x),)
        else:
            by_size.setdefault(len(x), []).append(i)
    for n, rows in by_size.items():
        step = max(1, BATCH_VALUES // (RESAMPLES * n))  # bounds the memory of one call's resamples
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            lows, highs = interval(np.stack([xs[i] for i in part]))
            for i, low, high in zip(part, lows.tolist(), highs.tolist(), strict=True):
                out[i] = (float(xs[i].mean()), low, high, n)
    return out


def _bca(x: np.ndarray, confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the BCa bootstrap interval of the mean of each row of `x` (rows of 2 or more distinct
    values; the percentile interval where BCa is undefined): `scipy.stats.bootstrap(row, np.mean, method="BCa",
    n_resamples=RESAMPLES, random_state=np.random.default_rng(seed))` for every row at once, step for step
    (Efron & Tibshirani 14.3, 15.4) - the same resamples, the same arithmetic in the same order - so each row
    gets the interval scipy gives it alone, to the last bit (tests/test_report_speed.py), without scipy's cost
    per call."""
    n = x.shape[1]
    picks = np.random.default_rng(seed).integers(0, n, (RESAMPLES, n))  # one set of resamples, as for every row
    with np.errstate(all="ignore"):  # degenerate rows (overflow, no spread) come out NaN, as in scipy
        # numpy sums a contiguous row pairwise, a strided one in another order: copy before taking means
        theta_b = np.ascontiguousarray(x[:, picks]).mean(axis=-1)  # (rows, RESAMPLES)
        theta = x.mean(axis=-1, keepdims=True)
        z0 = special.ndtri(((theta_b < theta).sum(-1) + (theta_b <= theta).sum(-1)) / (2 * RESAMPLES))
        # the acceleration, from the jackknife: the means leaving out each value in turn
        others = np.broadcast_to(np.arange(n), (n, n))[~np.eye(n, dtype=bool)].reshape(n, n - 1)
        jack = np.ascontiguousarray(x[:, others]).mean(axis=-1)  # (rows, n)
        u = (float(n) - 1) * (jack.mean(axis=-1, keepdims=True) - jack)
        skew, spread = (u**3).sum(-1) / float(n) ** 3, (u**2).sum(-1) / float(n) ** 2
        # scipy raises one row's spread to 3/2 as a numpy scalar (an array's power can differ in the last bit)
        accel = 1 / 6 * skew / np.array([np.float64(s) ** (3 / 2) for s in spread])
        z_alpha = float(special.ndtri((1 - confidence) / 2))
        alphas = []
        for z in (z_alpha, -z_alpha):
            shifted = z0 + z
            alphas.append(special.ndtr(z0 + shifted / (1 - accel * shifted)))
        ci = stats.quantile(theta_b, np.stack(alphas, axis=-1), axis=-1)
    low, high = ci[:, 0], ci[:, 1]
    for k in np.flatnonzero(~(np.isfinite(low) & np.isfinite(high))):  # BCa undefined: the percentile interval
        boot = np.random.default_rng(seed).choice(x[k], size=(RESAMPLES, n)).mean(1)
        low[k], high[k] = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return low, high


def rate_ci(values, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(rate, low, high, n units) of per-unit rates, each the fraction of `trials` yes/no trials: the pooled
    proportion and its exact Clopper-Pearson interval (`scipy.stats.binomtest(...).proportion_ci`)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    total = trials * len(x)
    successes = int(round(float(x.sum()) * trials))
    return successes / total, *_clopper_pearson(successes, total, confidence), len(x)


@functools.cache  # a pure function of three numbers, a root search each: a report's rate cells share a few counts
def _clopper_pearson(successes: int, total: int, confidence: float) -> tuple[float, float]:
    ci = stats.binomtest(successes, total).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def identifies_sources(successes: int, trials: int, chance: float) -> float:
    """One-sided binomial p-value that decoded networks name their own source more often than chance."""
    if trials == 0 or not 0 < chance < 1:
        return math.nan
    return float(stats.binomtest(successes, trials, chance, alternative="greater").pvalue)


def collapse_test(decisions) -> tuple[float, int, int, float]:
    """The collapse gate on (source, identified 0/1, chance) decisions: one per distinct source network (the
    first given counts; repeats of a source are not independent trials). Returns (p, successes, trials,
    chance); the chance is the largest of the decisions' (conservative when pools differ)."""
    seen: dict = {}
    for source, hit, chance in decisions:
        if source not in seen and hit is not None and math.isfinite(hit) and math.isfinite(chance):
            seen[source] = (int(round(hit)), float(chance))
    if not seen:
        return math.nan, 0, 0, math.nan
    successes = sum(h for h, _ in seen.values())
    chance = max(c for _, c in seen.values())
    return identifies_sources(successes, len(seen), chance), successes, len(seen), chance


def paired_p(a: dict, b: dict) -> tuple[float, int]:
    """(Wilcoxon signed-rank p-value, shared units) of a vs b, both {unit: value}; NaN p below MIN_PAIRED."""
    shared = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    if len(shared) < MIN_PAIRED:
        return math.nan, len(shared)
    d = np.array([a[k] - b[k] for k in shared])
    if np.all(d == 0):
        return 1.0, len(shared)
    # exact null distribution when it exists (no ties, no zeros); otherwise the normal approximation with
    # tie correction - scipy's own fallback is a permutation test costing about a second per call
    magnitudes = np.abs(d)
    exact = len(d) <= 50 and np.all(d != 0) and len(np.unique(magnitudes)) == len(d)
    return float(stats.wilcoxon(d, zero_method="zsplit", method="exact" if exact else "approx").pvalue), len(shared)
