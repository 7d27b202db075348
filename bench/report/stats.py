"""The statistics every table cell carries: mean, 95% bootstrap confidence interval, n; and a paired
test of each method against the best on the units both ran.

- CI: bias-corrected and accelerated (BCa) bootstrap of the mean (`scipy.stats.bootstrap`, 2000
  resamples, fixed seed, so a report is reproducible). With fewer than 3 distinct values there is
  nothing to resample: the interval collapses to the mean (n = 1, or all units equal).
- Collapse gate: a method that changes the function is ranked only if its decoded networks name
  their own source (nearest original by function) more often than chance: one-sided binomial test
  over every decoded endpoint of the zoo's interpolation units, p < 0.05. A decoder that maps
  every input to nearly one network fails it, and is shown, like the constant baseline, unranked.
- Paired test: Wilcoxon signed-rank (two-sided) on the per-unit differences between a method and
  the best method of the comparison, over the units both have (matched by unit name). A method is
  "not significantly different from the best" when p >= 0.05 or fewer than 6 shared units make
  the test powerless (p is then reported as NaN).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
ALPHA = 0.05
MIN_PAIRED = 6  # below this the signed-rank test cannot reach p < 0.05 (two-sided, exact)


def mean_ci(values, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; NaNs when there are none."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if len(np.unique(x)) < 3:
        return mean, mean, mean, len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on (near-)degenerate resamples; the interval stays usable
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method="BCa",
                              random_state=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined: fall back to the percentile interval
        boot = np.random.default_rng(seed).choice(x, size=(RESAMPLES, len(x))).mean(1)
        low, high = (float(q) for q in np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2]))
    return mean, low, high, len(x)


def identifies_sources(successes: int, trials: int, chance: float) -> float:
    """One-sided binomial p-value that decoded networks name their own source more often than chance."""
    if trials == 0 or not 0 < chance < 1:
        return math.nan
    return float(stats.binomtest(successes, trials, chance, alternative="greater").pvalue)


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
