"""`bench run` on Dask: same rows as the serial run, a killed worker loses nothing, no duplicate rows."""

import os
import signal
import threading
import time
from dataclasses import replace

import pandas as pd
import pytest

from bench.execution.presets import PRESETS, ZooRecipe
from bench.execution.runner import RunOptions, run_benchmark
from bench.execution.tally import RunTally
from bench.store.results import ResultStore
from methods import MethodSpec

distributed = pytest.importorskip("distributed")

METHODS = ["naive", "git-rebasin"]


def _tally(summary) -> dict:
    """The unit counts of a run (without its lists of gaps and skipped pairs)."""
    return {"done": summary.done, "skipped": summary.skipped, "failed": summary.failed}


def _bench(zoo, **protocols):
    return replace(PRESETS["smoke"], zoos=(ZooRecipe("path", {"path": str(zoo)}),),
                   protocols=protocols or PRESETS["smoke"].protocols)


def _rows(results):
    """The table without what may differ between runs: run id, times, timings, environment."""
    t = ResultStore(results).table()
    keep = [c for c in t.columns if c not in ("run_id", "time") and not c.startswith("env_")
            and not c.endswith(("_s", "seconds"))]
    return t[keep].sort_values("key").reset_index(drop=True)


def _raw_keys(results) -> pd.Series:
    """Every key written, across all parts, before `table()` deduplicates."""
    return ResultStore(results)._read(ResultStore(results).parts(), columns=["key"])["key"]


def _opts(results, **kw):
    return RunOptions(results=results, progress=False, **kw)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """An external 2-worker cluster (as `--scheduler` would use) and a client to watch it.

    Client and workers run in a temporary directory, so that anything written relative to the working
    directory (e.g. a default `results/`) stays out of the repository.
    """
    import dask

    from bench.execution.distributed import TRIM_KEY

    home = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        with dask.config.set({TRIM_KEY: None}), distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
                distributed.Client(lc) as client:
            yield lc, client
    finally:
        os.chdir(home)


def test_local_cluster_gives_the_serial_rows(tiny_inr_zoo, tmp_path, monkeypatch):
    bench = _bench(tiny_inr_zoo)
    serial = run_benchmark(bench, METHODS, _opts(tmp_path / "serial"))
    dask = run_benchmark(bench, METHODS, _opts(tmp_path / "dask", workers=2))
    from bench.protocols import make_protocol
    from zoos.zoo import load_zoo

    units = sum(len(make_protocol(name, seed=bench.seed, **options).units(load_zoo(tiny_inr_zoo)))
                for name, options in bench.protocols.items())
    assert units >= 6  # the smoke preset's protocols on the tiny zoo: pairs, orbit and merge units, 2 each
    assert _tally(serial) == _tally(dask) == {"done": units * len(METHODS), "skipped": 0, "failed": 0}
    assert serial.gaps == dask.gaps  # both report what a protocol could not measure
    pd.testing.assert_frame_equal(_rows(tmp_path / "dask"), _rows(tmp_path / "serial"))
    table = ResultStore(tmp_path / "dask").table()
    assert table.error.isna().all() and (table.env_threads == 1).all()
    assert _raw_keys(tmp_path / "dask").is_unique
    # resuming through the cluster path skips everything, and starts no cluster for it
    import bench.execution.distributed as dist

    monkeypatch.setattr(dist, "connect", lambda *a: pytest.fail("started a cluster with nothing to do"))
    again = run_benchmark(bench, METHODS, _opts(tmp_path / "dask", workers=2))
    assert _tally(again) == {"done": 0, "skipped": units * len(METHODS), "failed": 0}


def test_killed_worker_loses_no_units_and_duplicates_none(tiny_inr_zoo, tmp_path, cluster):
    lc, client = cluster
    # more and slower units than the smoke preset: 3 methods x 4 nets x 3 actions x 4 noise levels
    bench = _bench(tiny_inr_zoo, orbit=dict(n_nets=4, actions=("P", "S", "PS"), eps=(0.0, 1e-3, 1e-2, 5e-2),
                                            lambdas=9))
    methods = [*METHODS, "sign-rebasin"]
    run_benchmark(bench, methods, _opts(tmp_path / "serial"))
    n = len(ResultStore(tmp_path / "serial").table())
    assert n == 3 * 48

    summaries = []  # the thread's RunSummary
    runner = threading.Thread(target=lambda: summaries.append(
        run_benchmark(bench, methods, _opts(tmp_path / "dask", scheduler=lc.scheduler_address))))
    runner.start()
    pids = client.run(os.getpid)
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline:  # a worker that is running one of our batches
        busy = [w for w, tasks in client.processing().items() if any("run_batch" in str(t) for t in tasks)]
        victim = busy[0] if busy else time.sleep(0.01)
    assert victim is not None and runner.is_alive()
    os.kill(pids[victim], signal.SIGKILL)
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert pids[victim] not in client.run(os.getpid).values()  # the nanny started a fresh process

    # the lost batch was rescheduled: complete, identical to the serial run, each key written once
    assert _tally(summaries[0]) == {"done": n, "skipped": 0, "failed": 0}
    assert _raw_keys(tmp_path / "dask").is_unique
    pd.testing.assert_frame_equal(_rows(tmp_path / "dask"), _rows(tmp_path / "serial"))


def test_learned_method_trains_on_the_client_and_workers_load(tiny_inr_zoo, tmp_path, cluster, monkeypatch):
    from methods import METHODS as REGISTRY

    if "scalegmn-ae" not in REGISTRY:
        pytest.skip("scalegmn-ae not registered")
    lc, client = cluster
    monkeypatch.delenv("REBASIN_CHECKPOINTS", raising=False)  # the default store, under --results
    spec = "scalegmn-ae[hidden=4,n_layers=1,latent=8,epochs=1,batch_size=8,warmup=1,patience=1]"
    bench = _bench(tiny_inr_zoo, pairs=dict(n_pairs=2, lambdas=5))
    counts = run_benchmark(bench, [spec], _opts(tmp_path, scheduler=lc.scheduler_address))
    assert _tally(counts) == {"done": 2, "skipped": 0, "failed": 0}

    def worker_fits():
        from bench.execution.distributed import _METHODS

        return [m.fit_info.get("cached") for (_, s, _, _), m in _METHODS.items() if s == MethodSpec.parse(spec)]

    fits = [f for per_worker in client.run(worker_fits).values() for f in per_worker]
    assert fits and all(fits)  # every worker that ran a batch loaded the client's checkpoint, none trained
    assert list((tmp_path / "cache" / "checkpoints").glob("scalegmn-ae-*/done.json"))  # kept under --results


def test_zoo_is_scattered_when_workers_cannot_see_its_directory(tiny_inr_zoo, tmp_path, cluster):
    from bench.execution.distributed import _zoo_source, run_batch
    from bench.execution.plan import plan
    from zoos.zoo import load_zoo

    lc, client = cluster
    zoo = load_zoo(tiny_inr_zoo)
    assert _zoo_source(client, zoo, str(tiny_inr_zoo)) == str(tiny_inr_zoo)  # shared path: sent by name
    source = _zoo_source(client, zoo, str(tmp_path / "elsewhere"))  # a directory no worker has
    assert isinstance(source, distributed.Future)

    bench = _bench(tiny_inr_zoo, pairs=dict(n_pairs=2, lambdas=5))
    batch = next(plan(bench, [MethodSpec.parse("git-rebasin")], _opts(tmp_path), set(), "r", RunTally())).batches[0]
    by_path, _ = client.submit(run_batch, batch, str(tiny_inr_zoo), pure=False).result()
    scattered, failed = client.submit(run_batch, batch, source, pure=False).result()
    assert failed == 0 and len(scattered) == 2
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time" and not k.endswith("_s")} for r in rows]
    assert drop(scattered) == drop(by_path)
    # a missing zoo directory is an error row per unit, not a crash of the worker or the run
    missing, failed = client.submit(run_batch, replace(batch, zoo_dir=str(tmp_path / "gone")),
                                    str(tmp_path / "gone"), pure=False).result()
    assert failed == 2 and all("no such zoo directory" in r["error"] for r in missing)
