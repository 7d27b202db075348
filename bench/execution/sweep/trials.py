"""Trial bookkeeping shared by every worker of a study: heartbeats, reclaiming the trials of dead workers,
retries that keep their parameters, and the counts that decide when the study is done."""

from __future__ import annotations

import socket
import threading
import time

import optuna
from optuna.trial import TrialState

from zoos.files import pid_alive

HEARTBEAT_S = 30.0
GRACE_S = 300.0
# trials holding one of the N slots; a queued (WAITING) trial takes one only once a worker pops it
TAKEN = (TrialState.COMPLETE, TrialState.RUNNING)


def _is_stale(trial, now: float, grace: float) -> bool:
    attrs = trial.user_attrs
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    if "host" not in attrs and now - start > HEARTBEAT_S:  # a worker stamps its trial right after `ask`: one
        return True  # never stamped was interrupted there (a Ctrl-C inside `ask` itself)
    if attrs.get("host") == socket.gethostname() and "pid" in attrs and not pid_alive(int(attrs["pid"])):
        return True
    return now - float(attrs.get("heartbeat", start)) > grace


def reclaim_stale(study: optuna.Study, grace: float = GRACE_S) -> list[int]:
    """Fail RUNNING trials whose worker is gone and queue their parameters again; returns their numbers."""
    reclaimed, now = [], time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(trial, now, grace):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception:  # another worker failed it first (or it just finished): it is theirs
            continue
        if trial_params(trial) or trial.user_attrs.get("default"):
            retry(study, trial)  # a sampled trial killed before it drew its parameters lost nothing
        reclaimed.append(trial.number)
    return reclaimed


def first_attempt(trial) -> int:
    """Number of the trial that a chain of retries started from (the trial itself if not a retry)."""
    return int(trial.user_attrs.get("retry_of", trial.number))


def trial_params(trial) -> dict:
    """The parameters a trial runs: those it suggested, else those it was queued with (a queued trial,
    defaults or a retry, holds them in `fixed_params` until its objective suggests them)."""
    return dict(trial.params or trial.system_attrs.get("fixed_params") or {})


def retry(study: optuna.Study, trial) -> None:
    """Queue the parameters of a trial that was killed or interrupted again, remembering its first attempt."""
    study.enqueue_trial(trial_params(trial), user_attrs={"retry_of": first_attempt(trial),
                                                         "default": trial.user_attrs.get("default", False)})


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    return {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "taken": sum(t.state in TAKEN for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "failed": len(failed)}


class Heartbeat:
    """Renews the trial's `heartbeat` user attr from a background thread while the trial runs."""

    def __init__(self, study: optuna.Study, trial_id: int, interval: float = HEARTBEAT_S):
        self.study, self.trial_id, self.interval = study, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.interval):
            try:
                self.study._storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished (or was reclaimed) meanwhile
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

def give_back(study: optuna.Study, trial_id: int) -> None:
    """A trial interrupted between `ask` and `tell` (Ctrl-C in the objective, in `tell`, in setting its
    attributes): failed as stale and its parameters queued again (when it holds any: drawn, or queued as
    the defaults or a retry), so that a rerun retries it at once instead of waiting GRACE_S for a RUNNING
    trial whose process is gone. A trial whose end was recorded already is left as it is."""
    try:
        trial = study._storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return
        study._storage.set_trial_user_attr(trial_id, "stale", True)
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except Exception:  # noqa: BLE001 - the storage refused (finished meanwhile): the rerun's reclaim decides
        return
    if trial_params(trial) or trial.user_attrs.get("default"):
        retry(study, trial)

