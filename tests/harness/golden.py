"""Reference rows of the smoke benchmark, written by the code as it was, for `tests/test_golden.py`.

    python -m tests.harness.golden RESULTS OUT.json

reads the results table of a `bench run --preset smoke` (every method) and writes each row's key,
identity and measured values (timings, run ids and provenance aside: `compare_rows.IGNORED`) to a
JSON file. The committed `tests/data/golden_smoke/rows.json` was written from a run at commit
ec875c1, the last one before weight spaces became graphs, on the zoos beside it (copied from that
run's cache), so the test proves that the refactor left the rows of the existing benchmark unchanged.
"""

from __future__ import annotations

import json
import math
import sys

from bench.store.results import ResultStore
from tests.harness.compare_rows import _ignored

IDENTITY = ("key", "variant", "zoo", "zoo_hash", "protocol", "unit")


def measured(row: dict) -> dict:
    """The row's measured scalars and lists (NaN as None), identity and ignored columns aside."""
    out = {}
    for k, v in row.items():
        if k in IDENTITY or _ignored(k) or k.startswith("p_") or isinstance(v, str) or v is None:
            continue
        if hasattr(v, "tolist"):
            v = v.tolist()
        if isinstance(v, float) and math.isnan(v):
            continue
        if isinstance(v, int | float | list) and not isinstance(v, bool):
            out[k] = v
    return out


def golden(results: str) -> dict:
    table = ResultStore(results).table()
    rows = [{**{k: row[k] for k in IDENTITY}, "values": measured(row)} for row in table.to_dict("records")]
    return {"variants": sorted(table["variant"].unique()), "rows": sorted(rows, key=lambda r: r["key"])}


if __name__ == "__main__":
    ref = golden(sys.argv[1])
    with open(sys.argv[2], "w") as fh:  # a row a line: diffs stay readable
        fh.write('{"variants": ' + json.dumps(ref["variants"]) + ',\n"rows": [\n')
        fh.write(",\n".join(json.dumps(row, sort_keys=True) for row in ref["rows"]) + "\n]}\n")
