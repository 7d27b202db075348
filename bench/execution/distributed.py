"""`bench run --workers N | --scheduler tcp://host:port`: the units on a Dask distributed cluster.

The client (this process) plans the work exactly as the serial run does (`runner.plan`),
and sends each `UnitBatch` (a few units of one zoo, method and protocol) as one Dask task; a
worker returns finished rows. Choices:

- Zoos travel by path, not by value: a batch names its stored zoo directory (the cache under
  `results/zoos/` or a `--zoo` directory) and each worker process loads it once and keeps it
  (with its task: the INR targets or the classifier evaluation set) in a per-process cache keyed
  on path and content hash. That needs the zoo directory on a filesystem the workers share with
  the client (always true for a local cluster). When some worker cannot see the directory, the
  client scatters the loaded zoo to all workers instead (once per zoo, `broadcast=True`).
- Learned methods are fitted once per (method, zoo), on the client, before any of their batches
  is submitted. Workers then set the method up themselves, once per process, from the checkpoint
  store the batch names (`<results>/cache/checkpoints/`, or `REBASIN_CHECKPOINTS`; an absolute
  path): they load what the client trained. On a cluster that store must be on the shared
  filesystem too (set `REBASIN_CHECKPOINTS` to an absolute shared path); otherwise each worker
  refits (same seed, same result, wasted time).
- Only the client writes: it appends each finished batch as one Parquet part (as the serial run
  does) and skips any key it already wrote in this run, so a batch Dask recomputed after losing
  a worker cannot duplicate rows. MLflow mirroring stays on the client (`bench.cli`).
- A worker lost mid-run: Dask reruns its unfinished (and its finished but not yet collected)
  batches elsewhere. A batch that keeps killing workers (`KilledWorker`) or otherwise fails as a
  task becomes error rows, which the next run retries like any other error row.
- Rows equal the serial run's but for timings, `run_id`, `time` and `env_*`: batches are cut the
  same way (evaluation is batched over a batch's units) and env describes the worker that ran it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path

import dask
import torch
from tqdm.auto import tqdm

from bench.execution.batch import UnitBatch, error_rows, execute, prepare_method
from bench.execution.checkpoints import CheckpointStore
from bench.execution.plan import RunOptions, plan
from bench.execution.presets import Benchmark
from bench.execution.tally import RunSummary, RunTally
from bench.store.provenance import environment, utc_now
from bench.store.results import ResultStore
from methods import MethodSpec
from zoos.tasks import make_task
from zoos.zoo import Zoo, ZooError, load_zoo

# ---- worker side: per-process caches ---------------------------------------------------------------
MAX_ZOOS = 4  # zoos kept per worker process (a benchmark walks its zoos in order)
_ZOOS: OrderedDict = OrderedDict()  # (source, zoo_hash) -> (zoo, task)
_METHODS: dict = {}  # (thread, spec, seed, zoo_hash) -> set-up method
_LOCK = threading.Lock()


def _worker_zoo(source: str | Zoo, zoo_hash: str) -> tuple[Zoo, object]:
    """The zoo (loaded from its directory, or the scattered object) and its task, once per process."""
    cache_key = (source if isinstance(source, str) else "scattered", zoo_hash)
    with _LOCK:
        if cache_key not in _ZOOS:
            zoo = load_zoo(source) if isinstance(source, str) else source
            if zoo.content_hash() != zoo_hash:
                raise ZooError(f"{source}: zoo content changed (hash {zoo.content_hash()}, expected {zoo_hash})")
            _ZOOS[cache_key] = (zoo, make_task(zoo))
            while len(_ZOOS) > MAX_ZOOS:
                old, _ = _ZOOS.popitem(last=False)
                for k in [k for k in _METHODS if k[3] == old[1]]:
                    del _METHODS[k]
        _ZOOS.move_to_end(cache_key)
        return _ZOOS[cache_key]


def _worker_method(batch: UnitBatch, zoo: Zoo, task):
    # one instance per thread: a learned method's model is not safe to share across threads
    key = (threading.get_ident(), batch.spec, batch.seed, batch.zoo_hash)
    if key not in _METHODS:  # a learned method loads the checkpoint the client trained
        _METHODS[key] = prepare_method(batch.spec, batch.seed, zoo, task, CheckpointStore(batch.checkpoints))[0]
    return _METHODS[key]


def run_batch(batch: UnitBatch, source: str | Zoo, threads: int = 1) -> tuple[list[dict], int]:
    """The Dask task: one batch's finished rows (error rows if the method raises) and how many failed."""
    torch.set_num_threads(threads)  # workers are pinned to one thread each, like the serial timings
    try:
        zoo, task = _worker_zoo(source, batch.zoo_hash)
        method = _worker_method(batch, zoo, task)
    except Exception as error:  # a zoo or setup problem on this worker: error rows, retried by a rerun
        rows = error_rows(batch, error, environment())
        return rows, len(rows)
    return execute(batch, method, zoo, task, environment())


# ---- client side ------------------------------------------------------------------------------------
TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


HANDSHAKE_TIMEOUT_S = 5.0
HANDSHAKE_MAX_BYTES = 2**20  # a Dask handshake is a few hundred bytes


def check_scheduler(address: str, timeout: float = HANDSHAKE_TIMEOUT_S) -> None:
    """ValueError (one line) unless a Dask scheduler answers at `address` (tcp://host:port) within
    `timeout` seconds. On connecting, a Dask peer sends its handshake at once: an 8-byte little-endian
    length, then a small msgpack message naming its compression and pickle protocol. An HTTP server sends
    nothing (it waits for a request), another service sends something else; neither is read further, so
    no length it claims is ever allocated. Other schemes (tls://, inproc://) are left to Dask."""
    import socket
    import struct
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    try:
        host, port = parts.hostname or "localhost", parts.port or 8786
    except ValueError as error:
        raise ValueError(f"--scheduler {address}: not host:port ({error})") from None

    def refuse(why: str):
        return ValueError(f"--scheduler {address}: {why}")

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            head = _read_exactly(sock, 8)
            (length,) = struct.unpack("<Q", head)
            if not 0 < length <= HANDSHAKE_MAX_BYTES:
                raise refuse(f"not a Dask scheduler (its first message claims {length} bytes, a Dask handshake "
                             f"is a few hundred)")
            body = _read_exactly(sock, length)
    except TimeoutError:
        raise refuse(f"not a Dask scheduler (no Dask handshake within {timeout:g} s; an HTTP server or another "
                     f"service?)") from None
    except OSError as error:
        raise refuse(f"cannot connect ({error.strerror or error})") from None
    if b"compression" not in body and b"pickle-protocol" not in body:
        raise refuse("not a Dask scheduler (its first message is not a Dask handshake)")


def _read_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError(0, "the service closed the connection without a Dask handshake")
        data += chunk
    return data


def connect(workers: int = 2, scheduler: str | None = None):
    """(client, cluster): a client of the scheduler at `scheduler`, or of a new local cluster of
    `workers` single-threaded worker processes under nannies (a killed worker is restarted)."""
    from distributed import Client, LocalCluster

    if scheduler:
        check_scheduler(scheduler)  # a service that is not a Dask scheduler: one line, in seconds
        try:
            return Client(scheduler, timeout=f"{HANDSHAKE_TIMEOUT_S * 4:g}s"), None
        except OSError as error:  # one line from the CLI, not a traceback
            raise ValueError(f"--scheduler {scheduler}: cannot connect ({error})") from None
    # Nannies set OMP/MKL/OPENBLAS_NUM_THREADS=1 in the workers (distributed.nanny.pre-spawn-environ), and by
    # default MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap threshold: every large
    # tensor is then mmapped and unmapped again, and a batch of merges ran 2x slower than in-process (3x
    # for INR orbit batches). Left unset, workers allocate like the serial run, so timings stay comparable.
    with dask.config.set({TRIM_KEY: None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _zoo_source(client, zoo: Zoo, zoo_dir: str):
    """The zoo's path when every worker sees it, else the zoo scattered to all workers."""
    spec = str(Path(zoo_dir) / "spec.json")
    if all(client.run(os.path.isfile, spec).values()):
        return zoo_dir
    return client.scatter(zoo, broadcast=True, hash=False)


def run_distributed(bench: Benchmark, specs: list[MethodSpec], opts: RunOptions, run_id: str | None = None
                    ) -> RunSummary:
    """`run_benchmark` on a Dask cluster; returns its summary."""
    from distributed import as_completed

    store = ResultStore(opts.results)
    done = store.done_keys()
    run_id = run_id or utc_now()
    tally = RunTally()
    client = cluster = None  # started on the first group with work: a finished benchmark needs no cluster
    pending: dict = {}  # future key -> batch
    written: set[str] = set()  # keys appended by this run: a recomputed batch must not add them again
    bar = tqdm(total=0, unit="unit", disable=not opts.progress, leave=False)
    futures = None  # as_completed over the submitted batches, once there is a client

    def collect(block: bool) -> None:
        while futures is not None and not futures.is_empty() and (block or futures.has_ready()):
            for future in futures.next_batch(block=True):
                batch = pending.pop(future.key)
                try:
                    rows = future.result()[0]
                except CancelledError:  # the client is shutting down: the rerun does these units
                    continue
                except Exception as error:  # e.g. KilledWorker: the batch keeps taking workers down
                    rows = error_rows(batch, error, environment())
                future.release()
                rows = [r for r in rows if r["key"] not in written]
                written.update(r["key"] for r in rows)
                store.append(rows)
                tally.add_rows(rows, sum(r["error"] is not None for r in rows))
                bar.update(len(batch.units))

    try:
        sources: dict[str, object] = {}
        for group in plan(bench, specs, opts, done, run_id, tally):
            if client is None:
                client, cluster = connect(opts.workers or 1, opts.scheduler)
                futures = as_completed()
                if any(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()):
                    print("bench: warning: Dask workers run with MALLOC_TRIM_THRESHOLD_ set, which slows tensor "
                          f"code (up to 2-3x here); set {TRIM_KEY}: null in the workers' Dask config",
                          file=sys.stderr)
            # fit here first: the workers' own setup then finds the checkpoint instead of training
            _, fit_s = prepare_method(group.spec, bench.seed, group.zoo, group.task,
                                      CheckpointStore(group.batches[0].checkpoints), opts.progress)
            zoo_dir = group.batches[0].zoo_dir
            if zoo_dir not in sources:
                sources[zoo_dir] = _zoo_source(client, group.zoo, zoo_dir)
            for batch in group.batches:
                future = client.submit(run_batch, replace(batch, fit_s=fit_s), sources[zoo_dir], opts.threads,
                                       pure=False)
                pending[future.key] = batch
                futures.add(future)
            bar.total += group.n_units
            bar.set_description(f"{group.zoo.name} {group.spec}")
            bar.refresh()
            collect(block=False)  # append what is done while the next group's method is set up
        collect(block=True)
    finally:
        bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return tally.summary()
