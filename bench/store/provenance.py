"""Where a row came from: the time, the code's commit, library versions, threads and machine."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@functools.cache
def git_commit() -> str:
    """HEAD of the repository this file lives in, or 'unknown' (no git, not a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def environment() -> dict:
    """The env_* columns every row carries: versions, threads, commit, machine."""
    import torch  # lazy: readers of the table need no torch

    return {
        "env_python": platform.python_version(),
        "env_torch": torch.__version__,
        "env_numpy": np.__version__,
        "env_threads": torch.get_num_threads(),
        "env_git": git_commit(),
        "env_hostname": socket.gethostname(),
        "env_platform": platform.platform(),
    }
