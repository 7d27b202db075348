"""The statistics every table cell carries: mean, 95% bootstrap confidence interval, n; and a paired
test of each method against the best on the units both ran.

- CI: bias-corrected and accelerated (BCa) bootstrap of the mean (`scipy.stats.bootstrap`, 2000
  resamples, fixed seed, so a report is reproducible), whenever there are 2 or more units; the
  percentile interval where BCa is undefined. Only n = 1, or all units equal, collapses to the mean.
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
    if len(np.unique(x)) < 2:  # n = 1, or every unit equal: nothing to resample
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


def rate_ci(values, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(rate, low, high, n units) of per-unit rates, each the fraction of `trials` yes/no trials: the pooled
    proportion and its exact Clopper-Pearson interval (`scipy.stats.binomtest(...).proportion_ci`)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    total = trials * len(x)
    successes = int(round(float(x.sum()) * trials))
    ci = stats.binomtest(successes, total).proportion_ci(confidence_level=confidence, method="exact")
    return successes / total, float(ci.low), float(ci.high), len(x)


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
