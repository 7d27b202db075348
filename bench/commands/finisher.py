"""The end of a run: its report, and its MLflow mirror in a second process that follows the run.

A serial run keeps one core busy. The mirror takes the other: a process started with the run imports
MLflow and opens the store while the zoos are built, then mirrors each (zoo, method) as soon as the run
has written all of its units (`MirrorProcess.rows_written`). When the run ends, the run's process writes
the report while the mirror catches up with a last pass over the whole table; the report's files are
mirrored last. On 2 cores the run's end waits for the report, not for the whole mirror.

The Parquet table stays the source of truth: a mirror that fails, or whose process dies, costs one line
on stderr (the next run or `bench mirror` catches up), never the run or its report.
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
import sys
from pathlib import Path

POLL_S = 0.2  # how often each process, waiting for the other, checks that the other is still alive


def finish(results: Path, argv: list[str], mirror: bool = True, report: bool = True, notes: list[str] = (),
           display_names: bool = False, into: Path | None = None, follower: MirrorProcess | None = None) -> None:
    """Write the report and mirror the table to MLflow (`follower`: the mirror process started with the run,
    which has mirrored as the run went). The report's own error is raised once the mirror is done."""
    if mirror:
        follower = follower or MirrorProcess(results)
        follower.last_pass()  # the mirror catches up while the report is written
    error = None
    if report:
        try:
            for path in write_report_files(results, argv, list(notes), display_names, into):
                print(f"wrote {path}")
        except Exception as e:  # noqa: BLE001 - raised below, after the mirror's work is saved
            error = e
    if mirror:
        line = follower.finish(mirror_report=report and error is None)
        print(line, file=sys.stderr if line.startswith("mlflow: mirror skipped") else sys.stdout)
    if error is not None:
        raise error


class MirrorProcess:
    """The MLflow mirror of a results folder in a second process (see the module docstring)."""

    def __init__(self, results: Path):
        self.results = Path(results)
        context = multiprocessing.get_context("spawn")  # no torch state forked
        self._inbox, self._outbox = context.Queue(), context.Queue()
        self._process = context.Process(target=_follow, args=(self.results, self._inbox, self._outbox),
                                        name="bench-mirror", daemon=True)
        self._process.start()

    def rows_written(self, parts: list[Path]) -> None:
        """Mirror these parts' groups now: every unit of each is written (`run_benchmark(on_group=...)`)."""
        self._inbox.put(("parts", [str(p) for p in parts]))

    def last_pass(self) -> None:
        """The run is over: mirror whatever the table holds that is not mirrored yet."""
        self._inbox.put(("last pass", None))

    def finish(self, mirror_report: bool) -> str:
        """Wait for the mirror (and mirror the report's files); one line saying what was mirrored."""
        self._inbox.put(("report", mirror_report))
        while True:
            try:
                line = self._outbox.get(timeout=POLL_S)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                self._process.join()
                return (f"mlflow: mirror skipped (its process died, exit code {self._process.exitcode}; "
                        f"`bench mirror --results {self.results}` catches up)")
            self._process.join()
            return line


def _follow(results: Path, inbox, outbox) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; this process ends with it
    mirror, failure, logged = None, None, 0
    try:
        from bench.protocols import PROTOCOLS
        from bench.store.mlflow_backend import resolve_uri
        from bench.store.results import ResultStore
        from bench.store.tracking import Mirror
        from methods import METHODS

        uri = resolve_uri(None, results)  # a new store is made now, while the zoos are built
        mirror, store = Mirror(results, protocols=PROTOCOLS, methods=METHODS), ResultStore(results)
    except Exception as e:  # noqa: BLE001 - the Parquet table is the source of truth; MLflow is a mirror
        failure = e
    pending: list = []
    while True:
        if not pending:
            try:
                pending.append(inbox.get(timeout=POLL_S))
            except queue.Empty:
                if multiprocessing.parent_process().is_alive():
                    continue
                return  # the run was killed: nothing more will come
        while True:  # what else is waiting: parts the last pass will cover need no pass of their own
            try:
                pending.append(inbox.get_nowait())
            except queue.Empty:
                break
        if any(kind == "last pass" for kind, _ in pending):
            pending = [m for m in pending if m[0] != "parts"]
        kind, payload = pending.pop(0)
        if failure is None:
            try:
                if kind == "parts":
                    logged += len(mirror.log(store.table([Path(p) for p in payload])))
                elif kind == "last pass":  # fresh: another process may have mirrored meanwhile
                    logged += len(mirror.log(store.table(), fresh=True))
                elif kind == "report" and payload:
                    from bench.store.tracking import mirror_report

                    logged += mirror_report(results) is not None
            except Exception as e:  # noqa: BLE001
                failure = e
        if kind == "report":
            break
    if failure is not None:
        outbox.put(f"mlflow: mirror skipped ({type(failure).__name__}: {failure})".splitlines()[0])
    else:
        from bench.store.tracking import EXPERIMENT

        outbox.put(f"mlflow: {logged} new run(s) mirrored to experiment {EXPERIMENT!r} at {uri} (browse: mlflow ui "
                   f"--backend-store-uri <that URI>)")
    gc.freeze()  # a quick exit, which the run waits for (`bench.cli.run` says why)


def write_report_files(results: Path, argv: list[str], notes: list[str], display_names: bool,
                       into: Path | None) -> list[Path]:
    from bench.report.files import write_report
    from methods import METHODS

    return list(write_report(results, header(argv, results) + list(notes), {n: c.needs for n, c in METHODS.items()},
                             method_display_names() if display_names else None, into))


def header(argv: list[str], results: Path) -> list[str]:
    """The command, and the commits that made the rows (not the checkout rendering them: an archive's tables
    come out byte for byte on any later commit)."""
    from bench.store.results import ResultStore

    commits = [f"`{c[:12]}`" for c in ResultStore(results).commits()]
    made = (f"at commit{'s' if len(commits) > 1 else ''} {', '.join(commits[:3])}"
            f"{f' and {len(commits) - 3} more' if len(commits) > 3 else ''}" if commits else "(no commit recorded)")
    return [f"Produced by `bench {' '.join(argv)}` from rows made {made}."]


def method_display_names():
    """The registry's display names and citations (`bench report --display-names`)."""
    from bench.report.method_names import MethodNames
    from methods import METHODS

    return MethodNames.of(METHODS)
