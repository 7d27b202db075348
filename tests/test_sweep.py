"""Optuna sweeps: search spaces from every method, parallel workers on one journal study, resume
after a kill, Parquet rows per trial, nested MLflow runs, and best parameters fed back as a spec."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from bench.execution.specs import SpecError, protocol_options
from bench.execution.sweep import (
    SIGNIFICANT,
    SweepConfig,
    SweepError,
    direction,
    make_storage,
    reclaim_stale,
    run_sweep,
    searched,
    trial_params,
)
from bench.store.results import ResultStore
from methods import METHODS, format_spec, make_method

PAIRS = "pairs[n_pairs=2,lambdas=5]"


def _study(results, name=None):
    storage = make_storage(None, results)
    name = name or optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage)


def _trial_rows(results):
    rows = ResultStore(results / "sweeps").table()
    return rows, rows.groupby("trial").size().to_dict()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gets_a_search_space_whose_specs_build(name):
    if not [h for k, h in METHODS[name].search_space.items() if k != "device"]:
        with pytest.raises(SweepError, match="nothing to search"):
            searched(name)
        return
    method, fixed, hypers = searched(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    from bench.execution.sweep import suggest

    for _ in range(3):
        trial = study.ask()
        params = {k: suggest(trial, k, h) for k, h in hypers.items()}
        built = make_method(format_spec(method, params))  # the spec `bench run --methods` would get
        assert {k: built.hp[k] for k in params} == params
        # tuned specs print with 4 significant digits, not 17
        assert all(float(f"{v:.4g}") == v for v in params.values() if isinstance(v, float))
        study.tell(trial, 0.0)


def test_spec_round_trip_and_fixed_parameters():
    spec = format_spec("sinkhorn-rebasin", {"tau": 0.1 + 0.2, "steps": 17, "objective": "l2"})
    assert spec == "sinkhorn-rebasin[objective=l2,steps=17,tau=0.30000000000000004]"
    assert make_method(spec).hp["tau"] == 0.1 + 0.2
    name, fixed, hypers = searched("git-rebasin[init=identity]")
    assert fixed == {"init": "identity"} and set(hypers) == {"max_sweeps"}
    assert set(searched("sinkhorn-rebasin", ("tau", "lr"))[2]) == {"tau", "lr"}
    with pytest.raises(SweepError, match="not among"):
        searched("git-rebasin", ("nope",))
    assert protocol_options("combine[probes=line;minmax,samples=3]", "smoke")[1] == {"probes": ("line", "minmax"),
                                                                                      "samples": 3}
    with pytest.raises(SpecError, match="unknown option"):
        protocol_options("pairs[bogus=1]")


def test_direction_comes_from_the_protocols_declarations():
    assert direction("loss_barrier") == "minimize" and direction("acc_barrier", "pairs") == "minimize"
    assert direction("acc_merged", "merge[sizes=3]") == "maximize" and direction("recovered", "orbit") == "maximize"
    with pytest.raises(SweepError, match="no metric"):
        direction("acc_merged", "pairs")  # declared by merge, not by pairs


def test_stale_running_trial_is_failed_and_retried(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study(storage=make_storage(None, tmp_path), study_name="s")
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("host", __import__("socket").gethostname())
    trial.set_user_attr("pid", dead.pid)
    alive = study.ask()  # a RUNNING trial of a live worker (this process) stays
    alive.set_user_attr("host", __import__("socket").gethostname())
    alive.set_user_attr("pid", os.getpid())
    assert reclaim_stale(study) == [trial.number]
    assert reclaim_stale(study) == []  # reclaimed once only
    trials = study.get_trials()
    assert trials[trial.number].state == TrialState.FAIL and trials[trial.number].user_attrs["stale"]
    assert trials[alive.number].state == TrialState.RUNNING
    retry = study.ask()  # the queued retry carries the same parameters
    assert retry.suggest_float("x", 0, 1) == x and retry.user_attrs["retry_of"] == trial.number


def _stamp_dead(trial, pid):
    trial.set_user_attr("host", __import__("socket").gethostname())
    trial.set_user_attr("pid", pid)


@pytest.mark.parametrize("suggested", [False, True])
def test_queued_trial_killed_before_or_after_suggesting_is_retried_with_its_parameters(tmp_path, suggested):
    """The interleaving behind issue 36, forced: the worker stamps its pid on the queued defaults trial and
    dies before (or after) its objective suggests the parameters. Before, `trial.params` was empty in the
    first case and the defaults were never run again."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study(storage=make_storage(None, tmp_path), study_name="s")
    study.enqueue_trial({"x": 0.25}, user_attrs={"default": True})
    trial = study.ask()
    if suggested:
        assert trial.suggest_float("x", 0, 1) == 0.25
    _stamp_dead(trial, dead.pid)
    assert trial_params(study.get_trials()[trial.number]) == {"x": 0.25}
    assert reclaim_stale(study) == [trial.number]
    retry = study.ask()
    assert retry.user_attrs["retry_of"] == trial.number and retry.user_attrs["default"] is True
    assert retry.suggest_float("x", 0, 1) == 0.25
    # a sampled trial killed before it drew anything is failed and not queued again: nothing of it existed
    sampled = study.ask()
    _stamp_dead(sampled, dead.pid)
    assert reclaim_stale(study) == [sampled.number]
    assert [t for t in study.get_trials() if t.state == TrialState.WAITING] == []


def test_two_workers_finish_n_trials_none_lost_or_duplicated(tiny_inr_zoo, tmp_path):
    cfg = SweepConfig("git-rebasin", str(tiny_inr_zoo), PAIRS, trials=6, workers=2, results=tmp_path, mlflow=False,
                      progress=False)
    out = run_sweep(cfg)
    assert out["complete"] == 6 and out["failed"] == 0
    trials = _study(tmp_path).get_trials()
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert len(complete) == 6 and all(t.user_attrs.get("surplus") for t in others)  # only surplus asks, never run
    rows, per_trial = _trial_rows(tmp_path)
    assert set(per_trial) == complete and set(per_trial.values()) == {2}  # every trial's 2 units, once
    assert rows.key.is_unique and rows.error.isna().all()
    assert rows.loss_barrier.notna().all() and {"p_max_sweeps", "p_init", "study"} <= set(rows.columns)
    # each trial's rows carry its objective: the mean of the leaderboard's rank metric (path excess) over its units
    assert set(rows.objective_metric) == {"loss_excess"}
    means = rows.groupby("trial").loss_excess.mean()
    values = {t.number: t.values[0] for t in trials if t.state == TrialState.COMPLETE}
    assert all(means[n] == pytest.approx(v) for n, v in values.items())
    assert out["default"]["trial"] == 0 and out["default"]["spec"] == "git-rebasin[init=forward,max_sweeps=100]"
    best = min(values, key=values.get)
    assert out["best"][0]["values"][0] == values[best]
    assert make_method(out["best"][0]["spec"]).hp == {k.removeprefix("p_"): rows[rows.trial == best][k].iloc[0]
                                                      for k in ("p_max_sweeps", "p_init")}
    again = run_sweep(cfg)  # resuming a finished sweep runs nothing
    assert again["complete"] == 6 and len(ResultStore(tmp_path / "sweeps").table()) == len(rows)


def test_killed_sweep_resumes_and_mirrors_nested_runs(tiny_inr_zoo, tmp_path):
    args = [sys.executable, "-m", "bench.cli", "sweep", "sinkhorn-rebasin[steps=100,objective=l2]", "--params", "tau",
            "--zoo", str(tiny_inr_zoo), "--protocol", PAIRS, "--trials", "3", "--results", str(tmp_path)]
    log = tmp_path / "first.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(args + ["--no-mlflow"], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    journal, running, deadline = tmp_path / "sweeps" / "optuna.journal", [], time.time() + 300
    while time.time() < deadline and not running and proc.poll() is None:
        time.sleep(0.2)
        if journal.exists() and optuna.get_all_study_names(make_storage(None, tmp_path)):
            running = [t for t in _study(tmp_path).get_trials(states=(TrialState.RUNNING,)) if "pid" in t.user_attrs]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert running, f"the sweep never started a trial: {log.read_text()[-2000:]}"
    killed = running[0]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = _study(tmp_path).get_trials()
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 3 and trials[killed.number].user_attrs.get("stale")
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    # the kill may land before the trial's objective suggested its parameters: a queued trial holds them
    # in fixed_params then, and the retry must carry them all the same
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trial_params(killed)
    rows, per_trial = _trial_rows(tmp_path)
    assert set(per_trial) - {killed.number} == complete and all(per_trial[n] == 2 for n in complete)
    best = [line for line in done.stdout.splitlines() if line.startswith("best")]
    assert len(best) == 1 and "sinkhorn-rebasin[objective=l2,steps=100,tau=" in best[0]
    make_method(best[0].split()[2])  # the printed spec is ready for `bench run --methods`

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rebasin-bench-sweeps").experiment_id])
    parents = [r for r in runs if r.data.tags["bench.role"] == "study"]
    children = [r for r in runs if r.data.tags["bench.role"] == "trial"]
    assert len(parents) == 1 and {int(r.data.tags["bench.trial"]) for r in children} == complete
    assert len(children) == 3 and all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    # the value a trial ran (and MLflow logs) is its suggestion rounded to SIGNIFICANT digits
    ran = {float(f"{trials[n].params['tau']:.{SIGNIFICANT}g}") for n in complete}
    assert {float(r.data.params["tau"]) for r in children} == ran


def test_queued_trials_fill_the_last_slots(tiny_inr_zoo, tmp_path):
    """Queued trials (the defaults, retries of killed ones) do not hold a slot until popped: a study whose
    queue alone reaches N must still run them (a waiting worker would otherwise wait forever)."""
    import threading

    from bench.execution.sweep import prepare

    cfg = SweepConfig("git-rebasin", str(tiny_inr_zoo), PAIRS, trials=2, results=tmp_path, mlflow=False,
                      progress=False)
    _, name = prepare(cfg)
    _study(tmp_path, name).enqueue_trial({"max_sweeps": 7, "init": "identity"}, user_attrs={"retry_of": 99})
    out = {}
    thread = threading.Thread(target=lambda: out.update(run_sweep(cfg)), daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the sweep waited on its own queue"
    trials = _study(tmp_path, name).get_trials(states=(TrialState.COMPLETE,))
    assert out["complete"] == 2 and sorted(t.params["max_sweeps"] for t in trials) == [7, 100]


def test_sweeps_score_on_validation_and_say_how_to_report(tiny_inr_zoo, tmp_path, capsys):
    from bench.execution.sweep import rerun_command, with_split

    assert with_split("pairs[n_pairs=2]") == "pairs[n_pairs=2,split=val]"
    assert with_split("pairs[split=train]") == "pairs[split=train]"
    assert with_split("pairs[split=test]") == "pairs[split=test]" and "TEST split" in capsys.readouterr().err
    cfg = SweepConfig("git-rebasin", str(tiny_inr_zoo), PAIRS, trials=2, results=tmp_path, mlflow=False,
                      progress=False, preset="smoke", seed=3)
    out = run_sweep(cfg)
    assert out["protocol"] == "pairs[lambdas=5,n_pairs=2,split=val]" and "split=val" in out["study"]
    assert "rests on" in capsys.readouterr().err  # 2 units < 8: warned
    rows = ResultStore(tmp_path / "sweeps").table()
    study = _study(tmp_path)
    assert study.metric_names == ["loss_excess"]  # named for optuna-dashboard; the leaderboard's rank metric
    from zoos.zoo import load_zoo

    val = set(load_zoo(tiny_inr_zoo).indices("val"))
    assert all(int(n) in val for unit in rows["unit"] for n in unit.removeprefix("pair=").split("-"))
    command = rerun_command(out, cfg, out["best"][0]["spec"])
    assert command.split()[:2] == ["bench", "run"] and f"--zoo {tiny_inr_zoo}" in command
    assert "--protocols 'pairs[lambdas=5,n_pairs=2]'" in command and "--preset smoke --seed 3" in command
    assert f"--results {tmp_path}" in command


def test_several_methods_share_a_budget_and_are_compared_on_test(tiny_inr_zoo, tmp_path):
    args = [sys.executable, "-m", "bench.cli", "sweep", "git-rebasin", "sign-rebasin", "--zoo", str(tiny_inr_zoo),
            "--protocol", "pairs[n_pairs=2,lambdas=3]", "--trials", "2", "--results", str(tmp_path), "--no-mlflow",
            "--quiet"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(" complete, 0 failed") == 2
    assert "comparing the tuned specs on the test split" in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith(("| git-rebasin", "| sign-rebasin"))]
    assert len(table) == 2
    tuned = ResultStore(next((tmp_path / "sweeps" / "tuned").iterdir())).table()
    from zoos.zoo import load_zoo

    test = set(load_zoo(tiny_inr_zoo).indices("test"))
    assert set(tuned["variant"].str.split("[").str[0]) == {"git-rebasin", "sign-rebasin"}
    assert all(int(n) in test for unit in tuned["unit"] for n in unit.removeprefix("pair=").split("-"))


def test_methods_swept_for_a_comparison_get_the_same_number_of_trials(tiny_inr_zoo, tmp_path):
    """A reused study with 3 complete trials beside a new one asked for 2: the new one is topped up to 3, so the
    tuned specs compare searches of one size (issue 32); the objective is the leaderboard's rank metric."""
    from bench.execution.sweep import rank_metric, run_sweeps

    assert rank_metric("pairs") == "loss_excess" and rank_metric("merge[n_groups=2]") == "loss_merged"
    common = dict(zoo=str(tiny_inr_zoo), protocol=PAIRS, results=tmp_path, mlflow=False, progress=False)
    first = SweepConfig("git-rebasin[init=identity]", trials=3, **common)
    assert run_sweep(first)["complete"] == 3
    logged = []
    outs = run_sweeps([SweepConfig("git-rebasin[init=identity]", trials=2, **common),
                       SweepConfig("git-rebasin[init=forward]", trials=2, **common)], log=logged.append)
    assert [o["complete"] for o in outs] == [3, 3] and {o["metric"] for o in outs} == {"loss_excess"}
    assert len(logged) == 1 and "from 2 to 3" in logged[0]
