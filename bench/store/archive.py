"""A results folder in compact, committable form.

An archive holds the rows behind a results folder's tables (one Parquet part; rows of replaced method code
and superseded measurements left out, as the tables leave them out), the records the report
reads beside them (how each zoo was made, what could not be measured) and the zoos the rows were measured
on. It is itself a results folder: `bench report --results ARCHIVE --into DIR` regenerates the tables
from it, byte for byte, on any checkout (the header names the commits that made the rows, not the one
that renders them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bench.store.results import (
    GAPS_FILE,
    MEASUREMENTS_FILE,
    PEERS_FILE,
    TIMES_FILE,
    ZOOS_FILE,
    ResultStore,
    current_code,
)
from zoos.files import TMP_PREFIX

MARKER = "ARCHIVE.json"  # what `archive_results` writes into every archive: only such a folder is replaced
RECORDS = (ZOOS_FILE, GAPS_FILE, PEERS_FILE, TIMES_FILE, MEASUREMENTS_FILE)  # what reports read beside the rows
ZOO_CARD = ("spec.json", "metadata.parquet")  # what a report reads of a zoo (`zoos.zoo.load_zoo_card`)


def archive_results(results: str | os.PathLike, out: str | os.PathLike, weights: bool = True) -> dict:
    """Write the archive of `results` to `out` (absent, empty, or an archive made here); returns its manifest.
    `weights=False`: each zoo's spec and metadata only, enough for every report (`bench reproduce --report-only`
    reads zoo cards) but not to score the zoo again; for zoos too large to commit."""
    results, out = Path(results), Path(out)
    if not (results / "rows").is_dir():
        raise FileNotFoundError(f"{results}: no results table here (expected {results / 'rows'}/)")
    if out.exists() and not (out.is_dir() and ((out / MARKER).is_file() or not any(out.iterdir()))):
        raise ValueError(f"{out}: exists and is not an archive (no {MARKER}); choose another --out")
    table = current_code(ResultStore(results).table())  # the rows the tables count: not those of replaced code
    if table.empty:
        raise ValueError(f"{results}: the results table holds no rows")
    staging = out.with_name(f"{TMP_PREFIX}{out.name}-{os.getpid()}")  # a sibling: the final rename is atomic
    shutil.rmtree(staging, ignore_errors=True)  # ours: the temp name carries our pid
    ResultStore(staging).append(table)
    for name in RECORDS:
        if (results / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(results / name, staging / name)
    measured = set(table["zoo_hash"].dropna().astype(str)) if "zoo_hash" in table.columns else set()
    zoos = []
    for spec in sorted((results / "zoos").glob("*/spec.json")):
        if json.loads(spec.read_text()).get("content_hash") in measured:  # the zoos the rows were measured on
            if weights:
                shutil.copytree(spec.parent, staging / "zoos" / spec.parent.name)
            else:
                (staging / "zoos" / spec.parent.name).mkdir(parents=True)
                for name in ZOO_CARD:
                    shutil.copy2(spec.parent / name, staging / "zoos" / spec.parent.name / name)
            zoos.append(spec.parent.name)
    commits = sorted(set(table["env_git"].dropna().astype(str))) if "env_git" in table.columns else []
    manifest = {"rows": len(table), "commits": commits, "zoos": zoos, "weights": weights,
                "regenerate": [f"bench report --results {out} --into DIR",
                               f"bench reproduce --report-only --results {out} --into DIR"]}
    (staging / MARKER).write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():  # an archive made here (checked above), or an empty folder
        old = out.with_name(f"{TMP_PREFIX}{out.name}-old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    return manifest
