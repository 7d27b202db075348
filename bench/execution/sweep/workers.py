"""Running a sweep: each worker's loop on the study (ask, run, tell; exactly N complete trials however many
workers share it, none run twice), the sweep as a whole (one worker here or several processes), its summary."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time

import optuna
from optuna.trial import TrialState

from bench.execution.specs import protocol_options, resolve_zoo
from bench.execution.sweep.config import (
    MIN_UNITS,
    SWEEPS_DIR,
    SweepConfig,
    SweepError,
    default_study_name,
    rank_metric,
    searched,
    with_split,
)
from bench.execution.sweep.mirror import MlflowSweepMirror
from bench.execution.sweep.objective import Objective
from bench.execution.sweep.storage import check_storage, open_study, sigint_deferred
from bench.execution.sweep.trials import TAKEN, Heartbeat, counts, give_back, reclaim_stale
from zoos.files import interrupted

POLL_S = 1.0


def _log(cfg: SweepConfig, text: str) -> None:
    if cfg.progress:
        print(text, flush=True)


def work(cfg: SweepConfig, study_name: str, worker: int = 0, callbacks=()) -> int:
    """One worker's loop on the study; returns how many trials it completed."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, study_name, worker)
    objective = Objective(cfg, study_name)
    max_failures = cfg.max_failures if cfg.max_failures is not None else cfg.trials
    done = 0
    while True:
        reclaim_stale(study)
        c = counts(study)
        if c["complete"] >= cfg.trials or c["failed"] >= max_failures:
            return done
        if c["taken"] >= cfg.trials:  # the rest is running elsewhere: wait in case some of it fails
            time.sleep(POLL_S)
            continue
        trial = None
        try:
            with sigint_deferred():  # a Ctrl-C inside ask would leave a RUNNING trial nobody knows of
                trial = study.ask()  # pops a queued trial (defaults, retries) before sampling a new one
            ahead = [t for t in study.get_trials(deepcopy=False, states=TAKEN) if t.number < trial.number]
            if len(ahead) >= cfg.trials:  # another worker took the last slot at the same moment
                study._storage.set_trial_user_attr(trial._trial_id, "surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("heartbeat", time.time()),
                               ("worker", worker)):
                trial.set_user_attr(key, value)
            start = time.perf_counter()
            try:
                with Heartbeat(study, trial._trial_id):
                    values, spec = objective(trial)
            except SweepError as error:  # a configuration error: every trial would fail the same way
                trial.set_user_attr("error", str(error))
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as error:
                objective.error_row(trial.number, error)
                trial.set_user_attr("error", f"{type(error).__name__}: {error}".splitlines()[0])
                frozen = study.tell(trial, state=TrialState.FAIL)
                _log(cfg, f"trial {trial.number} failed: {frozen.user_attrs['error']}")
            else:
                ok = all(math.isfinite(v) for v in values)
                if not ok:
                    trial.set_user_attr("error", "non-finite objective")
                frozen = study.tell(trial, values if ok else None, state=None if ok else TrialState.FAIL)
                done += ok
                shown = ", ".join(f"{v:.4g}" for v in values)
                _log(cfg, f"trial {trial.number} (worker {worker}): {cfg.metric}"
                          f"{'/seconds' if cfg.multi_objective else ''} = {shown} in "
                          f"{time.perf_counter() - start:.1f} s  {spec}")
        except BaseException as error:
            interrupt = not isinstance(error, Exception) or interrupted(error)  # Ctrl-C (or an exit)
            if interrupt and trial is not None:  # between ask and tell: the trial goes back to the study
                give_back(study, trial._trial_id)
            raise
        for callback in callbacks:
            callback(study, frozen)


def _worker_main(cfg: SweepConfig, study_name: str, worker: int) -> None:
    work(cfg, study_name, worker)

def prepare(cfg: SweepConfig) -> tuple[SweepConfig, str]:
    """Validate, resolve the zoo, create (or load) the study and queue the defaults first; returns
    (the config with the zoo path, the study name)."""
    from bench.protocols import make_protocol
    from zoos.zoo import load_zoo

    if cfg.trials < 1 or cfg.workers < 1:
        raise SweepError("--trials and --workers must be at least 1")
    _, _, hypers = searched(cfg.method, cfg.params)
    cfg = dataclasses.replace(cfg, protocol=with_split(cfg.protocol))
    cfg = dataclasses.replace(cfg, metric=cfg.metric or rank_metric(cfg.protocol))  # what the leaderboard ranks
    proto_name, proto_options = protocol_options(cfg.protocol, cfg.preset)
    cfg = dataclasses.replace(cfg, zoo_path=str(resolve_zoo(cfg.zoo, cfg.results, cfg.data, cfg.progress)))
    zoo = load_zoo(cfg.zoo_path)
    n_units = len(make_protocol(proto_name, seed=cfg.seed, **proto_options).units(zoo))
    if 0 < n_units < MIN_UNITS:
        print(f"bench: warning: the objective rests on {n_units} unit(s) of {cfg.protocol} on {zoo.name} (fewer "
              f"than {MIN_UNITS}): noise may choose the winner; give the zoo more validation networks or the "
              f"protocol more units", file=sys.stderr)
    name = cfg.study or default_study_name(cfg, zoo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, name)
    if not study.get_trials(deepcopy=False):  # a new study: the method's defaults are trial 0
        study.enqueue_trial({k: h.default for k, h in hypers.items()}, user_attrs={"default": True})
    return cfg, name


def summary(study: optuna.Study) -> dict:
    """Counts, the default trial's values and the best trial(s) with ready-to-use specs."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out = {"study": study.study_name, **counts(study), "best": [], "default": None}
    defaults = [t for t in trials if t.user_attrs.get("default")]
    if defaults:
        out["default"] = {"trial": defaults[0].number, "values": defaults[0].values,
                          "spec": defaults[0].user_attrs.get("spec")}
    if trials:
        best = [study.best_trial] if len(study.directions) == 1 else study.best_trials
        out["best"] = [{"trial": t.number, "values": t.values, "spec": t.user_attrs.get("spec")}
                       for t in sorted(best, key=lambda t: t.number)]
    return out


def run_sweep(cfg: SweepConfig) -> dict:
    """Run (or resume) a sweep to `cfg.trials` complete trials; returns `summary`."""
    check_storage(cfg.storage, cfg.results)  # a storage that is not the sweep's: refused before any work
    cfg, name = prepare(cfg)
    mirror = MlflowSweepMirror(name, cfg.results, cfg.tracking_uri) if cfg.mlflow else None
    _log(cfg, f"study {name!r}: {cfg.trials} trials, {cfg.workers} worker(s), storage "
              f"{cfg.storage or cfg.results / SWEEPS_DIR / 'optuna.journal'}")
    if counts(open_study(cfg, name))["complete"] >= cfg.trials:
        _log(cfg, "already complete: nothing to run")
    elif cfg.workers == 1:
        work(cfg, name, 0, callbacks=[mirror] if mirror else [])
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fresh interpreters: no torch thread pools inherited over fork
        procs = [ctx.Process(target=_worker_main, args=(cfg, name, i), daemon=False) for i in range(cfg.workers)]
        for p in procs:
            p.start()
        study = open_study(cfg, name)
        try:
            while any(p.is_alive() for p in procs):
                time.sleep(2 * POLL_S)
                if mirror:  # the parent is the only MLflow writer
                    mirror.sync(study)
        except BaseException:
            for p in procs:
                p.join(30)
            raise
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise SweepError(f"{len(failed)} worker(s) failed (exit codes {failed}); rerun to resume")
    study = open_study(cfg, name)
    if mirror:
        try:
            mirror.close(study)
        except Exception as error:  # the journal/RDB study and the Parquet rows are the record
            print(f"mlflow: mirror skipped ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)
    return {**summary(study), "zoo_path": cfg.zoo_path, "protocol": cfg.protocol, "metric": cfg.metric}


def run_sweeps(cfgs: list[SweepConfig], log=print) -> list[dict]:
    """`run_sweep` for each config; several methods (compared afterwards) end with the same number of complete
    trials: a study that already held more (a reused study) tops the others up to its count. Raises SweepError
    when one of them cannot get there (failed trials), rather than compare unequal searches."""
    outs = [run_sweep(cfg) for cfg in cfgs]
    if len(cfgs) < 2:
        return outs
    target = max(out["complete"] for out in outs)
    for i, (cfg, out) in enumerate(zip(cfgs, outs, strict=True)):
        if out["complete"] < target:
            log(f"topping up study {out['study']!r} from {out['complete']} to {target} complete trials, as many as "
                f"the other methods' (a reused study held more)")
            outs[i] = run_sweep(dataclasses.replace(cfg, trials=target))
    short = [f"{out['study']!r} ({out['complete']})" for out in outs if out["complete"] != target]
    if short:
        raise SweepError(f"the methods' searches differ in size: {', '.join(short)} of {target} complete trials; "
                         f"rerun to retry the failed trials before comparing them")
    return outs

