"""Numbers as table cells: three significant digits, '–' for a missing value."""

from __future__ import annotations

import math

import pandas as pd


def fmt(x) -> str:
    """Three significant digits; '–' for a missing value."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}"


def fmt_ci(mean, low, high) -> str:
    """'0.123 [0.100, 0.150]' (mean and 95% CI); the mean alone when the interval is a point."""
    if fmt(mean) == "–":
        return "–"
    if fmt(low) == "–" or fmt(high) == "–" or (fmt(low) == fmt(mean) == fmt(high)):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def fmt_pm(mean, std) -> str:
    """'0.123 ± 0.045'; the mean alone when the std is undefined (one unit)."""
    if fmt(mean) == "–" or fmt(std) == "–":
        return fmt(mean)
    if abs(std) <= 1e-12 * abs(mean):  # round-off of identical values, not a spread
        std = 0.0
    return f"{fmt(mean)} ± {fmt(std)}"


def value_text(value) -> str:
    """A table value as cell text: strings as they are, numbers by `fmt`."""
    return value if isinstance(value, str) else fmt(value)
