"""`bench perf --baseline REV`: this project's own methods as they were at an earlier commit, run as a
peer (`peers/peer_baseline.py`) from the tree at that commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

BASELINE_METHODS = ("git-rebasin", "c2m3")  # re-run at `--baseline REV` beside the current code
BASELINE_TARGETS = {"c2m3": (512, 3.0)}  # method -> (width, speed-up over the baseline wanted there)


def checkout(rev: str, into: Path) -> str:
    """The project's tree at `rev` under `into` (git archive: no worktree bookkeeping); returns the short hash."""
    root = Path(__file__).resolve().parents[2]
    try:
        short = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=7", rev], capture_output=True,
                               text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(root), "archive", rev], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"--baseline {rev}: not a commit of {root} ({type(error).__name__})") from None
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return short
