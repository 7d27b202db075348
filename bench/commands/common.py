"""What several subcommands share: argparse types that refuse a bad value in one line, and --include."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def integer(minimum: int, maximum: int | None = None):
    """argparse type: an integer in [minimum, maximum]; argparse names the option in its one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "inf" if maximum is None else maximum
            raise argparse.ArgumentTypeError(f"{value} is outside [{minimum}, {upper}]")
        return value
    return parse


def number(low: float, high: float, include_low: bool = False):
    """argparse type: a finite number in (low, high] ([low, high] with include_low)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (low <= value if include_low else low < value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {'[' if include_low else '('}{low}, {high}]")
        return value
    return parse


COUNT = integer(1)
SEED = integer(0, 2**31 - 1)
# threads and processes beyond this are a typo (torch segfaulted at --threads 100000): refused by argparse
MAX_PARALLEL = max(256, 4 * (os.cpu_count() or 1))
THREADS = integer(1, MAX_PARALLEL)


def include_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--include", type=Path, action="append", metavar="PATH", default=[],
                     help="register the methods of every *.py file in this directory (repeatable; installed "
                          "packages' methods are found through the entry-point group rebasin_bench.methods)")
