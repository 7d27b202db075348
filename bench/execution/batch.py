"""Units -> rows: the one place result rows are made.

`bench run` (serially or on Dask workers), sweep trials and `bench perf` all set a method up with
`prepare_method` and run units with `execute`, so every row has the same columns whatever ran it:
the protocol's measurements, the method and zoo identity, hyperparameters (`p_*`), provenance
(`env_*`), and `error` (None, or why the unit failed: the next run retries it).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

from bench.protocols import Unit, make_protocol
from bench.store.provenance import utc_now
from methods import Aligner, MethodSpec
from zoos.zoo import Zoo


@dataclass(frozen=True)
class UnitBatch:
    """A few units of one (zoo, method, protocol), with everything needed to run them elsewhere."""

    zoo_dir: str  # the stored zoo (absolute path): workers load it from there
    zoo_name: str
    zoo_hash: str
    spec: MethodSpec  # preset overrides applied
    seed: int
    protocol: str
    protocol_options: dict = field(hash=False)
    keys: tuple[str, ...] = ()
    units: tuple[Unit, ...] = ()
    run_id: str = ""
    fit_s: float = 0.0  # the client's fit time of the method, filled in once it is set up
    claim: str = ""  # lock name shared by every process that plans this batch (see ResultStore.claim)
    checkpoints: str = ""  # root of the checkpoint store learned methods fit into (absolute path)
    columns: dict = field(default_factory=dict, hash=False)  # extra columns of every row (sweeps: study, trial)


def prepare_method(spec: MethodSpec, seed: int, zoo: Zoo, task, checkpoints=None, progress: bool = False
                   ) -> tuple[Aligner, float]:
    """The method of `spec` bound to the zoo; learned ones train here once, or load their checkpoint
    from `checkpoints` (a `CheckpointStore`, or None: train and keep nothing). Returns (method, fit seconds)."""
    method = spec.build(seed)
    start = time.perf_counter()
    method.setup(zoo, task, checkpoints, progress)
    return method, time.perf_counter() - start


def failed_rows(units: list[Unit] | tuple[Unit, ...], error: BaseException) -> list[dict]:
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    return [{"unit": u.name, "a": u.a, "b": u.b, "error": message} for u in units]


def method_kind(method: Aligner) -> str:
    """reference (a baseline shown but never ranked), learned, exact (function-preserving) or inexact."""
    if method.reference is True:
        return "reference"
    return "learned" if method.learned else "exact" if method.exact else "inexact"


def protocol_options(name: str, seed: int, options: dict) -> str:
    """Every option of the protocol that made a row (defaults filled in, the seed aside: it has its own column)
    as canonical JSON: reports never pool rows made under other options into one cell."""
    params = make_protocol(name, seed=seed, **options).params()
    return json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True, separators=(",", ":"),
                      default=list)


def error_rows(batch: UnitBatch, error: BaseException, env: dict) -> list[dict]:
    """Every unit of `batch` as a finished error row (a batch that failed before its method was set up)."""
    # the method's labels (kind, version, needs, hyperparameters) are those of an instance, set up or not
    return finish_rows(batch, failed_rows(batch.units, error), batch.spec.build(batch.seed), env)


def finish_rows(batch: UnitBatch, rows: list[dict], method: Aligner, env: dict) -> list[dict]:
    """Protocol rows (or error rows) with the columns every row carries, keyed."""
    hp = method.hp
    options = protocol_options(batch.protocol, batch.seed, batch.protocol_options)
    common = {"run_id": batch.run_id, "protocol_options": options,
              "method": batch.spec.name, "variant": str(batch.spec),
              "method_kind": method_kind(method), "method_version": type(method).version, "method_needs": method.needs,
              "zoo": batch.zoo_name, "zoo_hash": batch.zoo_hash, "protocol": batch.protocol, "seed": batch.seed,
              "fit_s": batch.fit_s, "time": utc_now(), "error": None, **{f"p_{k}": v for k, v in hp.items()},
              **env, **batch.columns}
    return [{**common, **row, "key": key} for key, row in zip(batch.keys, rows, strict=True)]


def execute(batch: UnitBatch, method: Aligner, zoo: Zoo, task, env: dict) -> tuple[list[dict], int]:
    """Run one batch; returns its finished rows and how many of them are error rows."""
    protocol = make_protocol(batch.protocol, seed=batch.seed, **batch.protocol_options)
    units = list(batch.units)
    try:
        rows = protocol.run(method, zoo, task, units)
    except Exception as error:  # one failing method must not end the benchmark
        rows = failed_rows(units, error)
    for row in rows:
        bad = nonfinite(protocol, row)
        if bad and not row.get("error"):
            row["error"] = f"non-finite metric(s): {', '.join(bad)}"
    failed = sum(bool(row.get("error")) for row in rows)
    return finish_rows(batch, rows, method, env), failed


def nonfinite(protocol, row: dict) -> list[str]:
    """Declared metrics of a row that are not numbers: a rank metric that is NaN or infinite, or any
    metric that is infinite (other NaNs mean "not applicable", e.g. a cycle error of a learned method)."""
    out = []
    for m in protocol.metrics:
        value = row.get(m.name)
        if isinstance(value, float) and (math.isinf(value) or (m.role == "rank" and math.isnan(value))):
            out.append(m.name)
    return out
