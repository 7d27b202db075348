"""`bench sweep`: Optuna over a method's declared hyperparameters, minimising a protocol's metric.

Splits: a sweep scores on the zoo's validation networks unless the protocol spec names a split
(`pairs[split=test]` is allowed, with a warning: tuning on the numbers one reports inflates them);
the tuned specs are then compared on the test split (`bench sweep m1 m2 ...`, or the printed
`bench run` command). An objective resting on fewer than MIN_UNITS units is warned about. The
objective is by default the protocol's rank metric (what the leaderboard ranks by: the path excess
for interpolation protocols, the merged loss for merges). Several methods swept for a comparison end
with the same number of complete trials (`run_sweeps` tops a smaller study up, or refuses).

A trial builds the method with the trial's hyperparameters (`make_method("name[k=v,...]")`), fits
it on the zoo, runs every unit of the protocol and returns the mean of the metric over the units
(optionally also the method's seconds: multi-objective). Its rows go to a `ResultStore` under
`<results>/sweeps/` (kept apart from `bench run`'s table, so sweep trials neither crowd the
leaderboard nor get mirrored as benchmark runs) with `study`, `trial` and `p_*` columns.

Storage: a journal file (`<results>/sweeps/optuna.journal` by default, or any path) or any RDB
URL, so several processes and machines can work on one study. `--workers W` starts W local
worker processes on the same study. Every worker asks for a trial only while fewer than N trials
are complete or running, and gives a trial up (state FAIL, user attr `surplus`) when it finds N
such trials ahead of it: the study ends with exactly N complete trials, none run twice.

Resuming: a worker stamps its trials with host, pid and a heartbeat (a user attr renewed every
HEARTBEAT_S). A RUNNING trial whose process is gone (same host) or whose heartbeat is older than
GRACE_S is failed (user attr `stale`) by whichever worker sees it first and its parameters are
queued again, so a killed sweep resumes by rerunning the same command. The guarantee: a reclaimed
trial that was queued (the defaults, a retry) or had drawn its parameters is queued again with those
parameters, whenever the kill came; a sampled trial killed before its objective drew anything is not
(nothing of it existed). A queued trial holds its parameters only in `fixed_params` until its
objective suggests them, so a kill in that window must read them there (`trial_params`).

MLflow: one parent run per study, one nested run per finished trial, written by one process only
(the single worker, or the parent of several workers while it waits for them).

Modules: `config` (what a sweep is), `storage` (journal or RDB), `trials` (heartbeats, reclaiming,
retries), `objective` (one trial), `workers` (the loop and the whole sweep), `mirror` (MLflow).
"""

from bench.execution.sweep.config import (
    SIGNIFICANT,
    SWEEPS_DIR,
    SweepConfig,
    SweepError,
    direction,
    rank_metric,
    rerun_command,
    searched,
    suggest,
    test_protocol,
    with_split,
)
from bench.execution.sweep.mirror import MlflowSweepMirror
from bench.execution.sweep.objective import Objective
from bench.execution.sweep.storage import JOURNAL_QUARANTINE, make_storage
from bench.execution.sweep.trials import HEARTBEAT_S, first_attempt, reclaim_stale, trial_params
from bench.execution.sweep.workers import prepare, run_sweep, run_sweeps, summary, work

__all__ = ["SIGNIFICANT", "SWEEPS_DIR", "JOURNAL_QUARANTINE", "HEARTBEAT_S", "SweepConfig", "SweepError",
           "MlflowSweepMirror", "Objective", "run_sweep", "run_sweeps", "rank_metric", "rerun_command",
           "test_protocol", "with_split", "work", "prepare", "summary", "searched", "make_storage", "reclaim_stale",
           "direction", "trial_params", "first_attempt", "suggest"]
