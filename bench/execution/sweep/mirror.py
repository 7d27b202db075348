"""The sweep's MLflow mirror: one parent run per study, one nested run per finished trial."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench.execution.sweep.config import SIGNIFICANT
from bench.execution.sweep.trials import counts


class MlflowSweepMirror:
    """Optuna callback mirroring finished trials as nested MLflow runs under one parent run per study.

    Idempotent (runs are tagged with the study key and trial number), so `sync` after workers, or
    a resumed sweep, logs each trial once. Only one process should call it.
    """

    EXPERIMENT = "rebasin-bench-sweeps"

    def __init__(self, study_name: str, results: Path, tracking_uri: str | None = None):
        self.study_name, self.results, self.tracking_uri = study_name, results, tracking_uri
        self.study_key = hashlib.sha256(study_name.encode()).hexdigest()[:16]
        self.client, self.off = None, False

    def _ready(self) -> bool:
        """Set up on first use; a backend that cannot serve turns the mirror off with one warning
        (the journal and the Parquet rows are the record: the sweep goes on)."""
        if self.client is None and not self.off:
            try:
                self._setup()
            except Exception as error:  # noqa: BLE001 - TrackingError, or whatever MLflow raises
                self.off = True
                print(f"mlflow: sweep mirror off ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)
        return not self.off

    def _setup(self):
        from bench.store.mlflow_backend import artifact_root, quiet_mlflow, resolve_uri
        from bench.store.tracking import ensure_experiment

        with quiet_mlflow():
            from mlflow import MlflowClient

            uri = resolve_uri(self.tracking_uri, self.results)
            self.client = MlflowClient(tracking_uri=uri)
            self.exp_id = ensure_experiment(self.client, self.EXPERIMENT, artifact_root(uri))
            runs = self.client.search_runs([self.exp_id], f"tags.`bench.study_key` = '{self.study_key}'",
                                           max_results=50000)
        parents = [r for r in runs if r.data.tags.get("bench.role") == "study"]
        trial_runs = [r for r in runs if r.data.tags.get("bench.role") == "trial"]
        self.mirrored = {int(r.data.tags["bench.trial"]) for r in trial_runs if r.info.status != "RUNNING"}
        for r in trial_runs:  # a process killed while logging a trial left it half-written: log it again
            if r.info.status == "RUNNING":
                with quiet_mlflow():
                    self.client.delete_run(r.info.run_id)
        if parents:
            self.parent = parents[0].info.run_id
        else:
            with quiet_mlflow():
                run = self.client.create_run(self.exp_id, run_name=self.study_name[:250],
                                             tags={"bench.study_key": self.study_key, "bench.role": "study",
                                                   "bench.study": self.study_name[:5000]})
            self.parent = run.info.run_id

    def __call__(self, study: optuna.Study, trial) -> None:
        if trial.state not in (TrialState.COMPLETE, TrialState.FAIL) or {"surplus", "stale"} & set(trial.user_attrs):
            return
        from bench.store.mlflow_backend import quiet_mlflow

        if not self._ready() or trial.number in self.mirrored:
            return
        from mlflow.entities import Metric, Param

        names = ["objective"] if len(study.directions) == 1 else ["objective", "seconds"]
        with quiet_mlflow():
            run = self.client.create_run(self.exp_id, run_name=f"trial {trial.number}", tags={
                "mlflow.parentRunId": self.parent, "bench.study_key": self.study_key, "bench.role": "trial",
                "bench.trial": str(trial.number), "bench.spec": str(trial.user_attrs.get("spec", ""))[:5000]})
            now = int(time.time() * 1000)
            # floats as the trial ran them (`suggest` rounds to SIGNIFICANT digits)
            params = [Param(k, (f"{v:.{SIGNIFICANT}g}" if isinstance(v, float) else str(v))[:6000])
                      for k, v in sorted(trial.params.items())]
            metrics = [Metric(n, float(v), now, 0) for n, v in zip(names, trial.values or [], strict=False)]
            self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
            self.client.set_terminated(run.info.run_id, "FINISHED" if trial.state == TrialState.COMPLETE else "FAILED")
        self.mirrored.add(trial.number)

    def sync(self, study: optuna.Study) -> None:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            self(study, trial)

    def close(self, study: optuna.Study) -> None:
        from bench.store.mlflow_backend import quiet_mlflow

        self.sync(study)
        if not self._ready():
            return
        with quiet_mlflow():
            c = counts(study)
            self.client.log_metric(self.parent, "n_complete", c["complete"])
            if len(study.directions) == 1 and c["complete"]:
                self.client.log_metric(self.parent, "best_objective", study.best_value)
                self.client.set_tag(self.parent, "bench.best_spec", study.best_trial.user_attrs.get("spec", ""))
            self.client.set_terminated(self.parent, "FINISHED")

