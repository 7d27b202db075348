"""What a `bench run` did: units run, already done and failed, and why some work was not done.

Planning and the two executors (serial, Dask) add to one `RunTally` as the run goes; `run_benchmark`
returns its frozen `RunSummary`, which the CLI prints and claim runs add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Failure(NamedTuple):
    """A unit that failed (its error row is in the table; the next run retries it)."""

    zoo: str
    variant: str
    protocol: str
    unit: str
    error: str


class SkippedPair(NamedTuple):
    """A (method, zoo) the method cannot handle (`Aligner.skip`): not planned."""

    spec: str
    zoo: str
    reason: str


class Gap(NamedTuple):
    """What a protocol cannot measure on a zoo (`Protocol.gaps`)."""

    zoo: str
    protocol: str
    why: str


@dataclass(frozen=True)
class RunSummary:
    done: int = 0  # units run now, without error
    skipped: int = 0  # units found in the table already
    failed: int = 0  # units run now that became error rows
    failures: tuple[Failure, ...] = ()
    skipped_pairs: tuple[SkippedPair, ...] = ()
    gaps: tuple[Gap, ...] = ()

    def __add__(self, other: RunSummary) -> RunSummary:
        return RunSummary(self.done + other.done, self.skipped + other.skipped, self.failed + other.failed,
                          self.failures + other.failures, self.skipped_pairs + other.skipped_pairs,
                          self.gaps + other.gaps)


@dataclass
class RunTally:
    """The counts of a run in progress."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped_pairs: list[SkippedPair] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def add_rows(self, rows: list[dict], failed: int) -> None:
        """Finished rows of a batch, `failed` of them error rows."""
        self.done += len(rows) - failed
        self.failed += failed
        self.failures += [Failure(r.get("zoo"), r.get("variant"), r.get("protocol"), r.get("unit"), r["error"])
                          for r in rows if r.get("error")]

    def summary(self) -> RunSummary:
        return RunSummary(self.done, self.skipped, self.failed, tuple(self.failures), tuple(self.skipped_pairs),
                          tuple(self.gaps))
