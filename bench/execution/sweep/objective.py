"""One trial of a sweep: the method built with the trial's hyperparameters, fitted on the zoo, run on every
unit of the protocol (rows as `bench run` makes them, plus `study`, `trial` and the objective), scored."""

from __future__ import annotations

import dataclasses
import math

from bench.execution.specs import protocol_options
from bench.execution.sweep.config import SWEEPS_DIR, SweepConfig, SweepError, direction, rank_metric, searched, suggest
from bench.execution.sweep.trials import first_attempt
from methods import METHODS, MethodSpec, format_spec

BATCH = 8  # units per protocol.run call (the runner's batch)


class Objective:
    """Runs trials of one sweep in this process: zoo, task and units loaded once."""

    def __init__(self, cfg: SweepConfig, study_name: str):
        import torch

        from bench.protocols import make_protocol
        from bench.store.provenance import environment
        from bench.store.results import ResultStore
        from zoos.tasks import make_task, zoo_fingerprint
        from zoos.zoo import load_zoo

        torch.set_num_threads(cfg.threads)
        cfg = dataclasses.replace(cfg, metric=cfg.metric or rank_metric(cfg.protocol))  # as `prepare` resolves it
        self.cfg, self.study_name = cfg, study_name
        self.zoo = load_zoo(cfg.zoo_path)
        self.task = make_task(self.zoo)
        self.zoo_hash = self.zoo.content_hash()
        self.zoo_spec = zoo_fingerprint(self.zoo, self.task)
        self.name, self.fixed, self.hypers = searched(cfg.method, cfg.params)
        self.proto_name, self.proto_options = protocol_options(cfg.protocol, cfg.preset)
        self.units = make_protocol(self.proto_name, seed=cfg.seed, **self.proto_options).units(self.zoo)
        if not self.units:
            raise SweepError(f"protocol {cfg.protocol} has no units on zoo {self.zoo.name}")
        self.store = ResultStore(cfg.results / SWEEPS_DIR)
        self.env = environment()

    def defaults(self) -> dict:
        return {k: h.default for k, h in self.hypers.items()}

    def __call__(self, trial) -> tuple[list[float], str]:
        """Run one trial: append its rows, return (objective values, spec)."""
        from bench.execution.batch import UnitBatch, execute, prepare_method
        from bench.execution.checkpoints import CheckpointStore
        from bench.protocols import PROTOCOLS

        params = {**self.fixed, **{k: suggest(trial, k, h) for k, h in self.hypers.items()}}
        spec = format_spec(self.name, params)  # as given (defaults kept): the trial's spec and its keys say it
        method_spec = MethodSpec.of(self.name, params)
        trial.set_user_attr("spec", spec)
        store = CheckpointStore.for_results(self.cfg.results)
        method, fit_s = prepare_method(method_spec, self.cfg.seed, self.zoo, self.task, store)
        runtimes = [m.name for m in PROTOCOLS[self.proto_name].metrics if m.role == "runtime"]
        # keyed by the first attempt: a retry of a killed trial overwrites the rows the killed attempt
        # may have appended before it could report, so the table holds each trial's units once
        attempt = first_attempt(trial)
        columns = {"study": self.study_name, "trial": trial.number, "objective_metric": self.cfg.metric,
                   "objective_direction": direction(self.cfg.metric, self.cfg.protocol),
                   "is_default": bool(trial.user_attrs.get("default", False))}
        rows, failed = [], 0
        for i in range(0, len(self.units), BATCH):
            units = tuple(self.units[i : i + BATCH])
            batch = UnitBatch("", self.zoo.name, self.zoo_hash, method_spec, self.cfg.seed, self.proto_name,
                              self.proto_options, tuple(self._key(attempt, spec, u.name) for u in units), units,
                              self.study_name, fit_s, columns=columns)
            done, n_failed = execute(batch, method, self.zoo, self.task, self.env)
            rows += done
            failed += n_failed
        ok = [r for r in rows if r["error"] is None]
        values = [float(sum(r[self.cfg.metric] for r in ok) / len(ok))] if ok else [math.nan]
        seconds = fit_s + sum(float(r.get(runtimes[0], 0.0) or 0.0) for r in ok) if runtimes else fit_s
        if self.cfg.multi_objective:
            values.append(seconds)
        self.store.append([{**r, "objective": values[0], "method_s": seconds} for r in rows])
        if failed:
            raise RuntimeError(f"{failed} of {len(rows)} units failed: {next(r['error'] for r in rows if r['error'])}")
        return values, spec

    def _key(self, number: int, spec: str, unit: str) -> str:
        from bench.store.results import unit_key

        version = METHODS[self.name].key_parts() if spec else {}  # "": a trial's error row
        return unit_key(study=self.study_name, trial=number, variant=spec, **version, zoo_hash=self.zoo_hash,
                        zoo_spec=self.zoo_spec, protocol=self.proto_name, protocol_params=self.proto_options,
                        unit=unit, seed=self.cfg.seed)

    def error_row(self, number: int, error: BaseException) -> None:
        from bench.store.provenance import utc_now

        message = f"{type(error).__name__}: {error}".splitlines()[0]
        self.store.append([{"run_id": self.study_name, "method": self.name, "zoo": self.zoo.name,
                            "zoo_hash": self.zoo_hash, "protocol": self.proto_name, "seed": self.cfg.seed,
                            "study": self.study_name, "trial": number, "unit": "trial", "time": utc_now(),
                            "error": message, "key": self._key(number, "", "trial"), **self.env}])

