"""Compare two results tables row by row, timings, run ids and provenance aside.

    python -m tests.harness.compare_rows RESULTS_A RESULTS_B

Prints, per column that differs, how many rows differ (and the largest difference for numbers),
and exits 1 when any measured value differs. Used to prove that a refactor left every row unchanged.
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from bench.store.results import ResultStore

IGNORED = {"run_id", "time", "align_s", "merge_s", "fit_s", "method_s", "i_seconds", "i_fw_seconds"}


def _ignored(column: str) -> bool:
    return column in IGNORED or column.startswith("env_")


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b) and \
            all(_same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """{'only_a': n, 'only_b': n, 'rows': n shared, 'columns': {column: rows differing}}."""
    a, b = a.set_index("key"), b.set_index("key")
    shared = a.index.intersection(b.index)
    out = {"only_a": len(a.index.difference(b.index)), "only_b": len(b.index.difference(a.index)),
           "rows": len(shared), "columns": {}}
    for column in sorted(set(a.columns) | set(b.columns)):
        if _ignored(column):
            continue
        if column not in a.columns or column not in b.columns:
            present = a if column in a.columns else b
            if present.loc[shared, column].notna().any():
                out["columns"][column] = int(present.loc[shared, column].notna().sum())
            continue
        differing = sum(not _same(x, y) for x, y in zip(a.loc[shared, column], b.loc[shared, column], strict=True))
        if differing:
            out["columns"][column] = differing
    return out


def main(argv: list[str]) -> int:
    first, second = (ResultStore(p).table() for p in argv[:2])
    result = compare(first, second)
    print(f"rows: {result['rows']} shared, {result['only_a']} only in {argv[0]}, {result['only_b']} only in {argv[1]}")
    for column, n in result["columns"].items():
        print(f"  {column}: {n} row(s) differ")
    if not result["columns"] and not result["only_a"] and not result["only_b"]:
        print("identical (timings, run ids and provenance aside)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
