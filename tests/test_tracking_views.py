"""What a user sees in MLflow: a model-development experiment, only the run's own typed parameters,
interpolation curves as step metrics, and the report's files as artifacts of one "report" run."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.protocols import PROTOCOLS
from bench.store.tracking import EXPERIMENT_TAGS, REPORT_TAG, mirror, mirror_report
from methods import METHODS


def _rows():
    rows = []
    for i in range(3):
        base = {"run_id": "r", "zoo": "z", "zoo_hash": "h", "protocol": "pairs", "unit": f"pair={i}", "error": None,
                "lambdas": [0.0, 0.5, 1.0], "loss_barrier": 0.1 * i, "loss_excess": 0.2 * i}
        rows.append({**base, "key": f"g{i}", "method": "git-rebasin", "variant": "git-rebasin",
                     "p_max_sweeps": 100.0, "p_init": "forward", "p_tau": None, "fit_s": 0.0, "align_s": 0.0,
                     "curve_loss": [1.0, 1.0 + i, 1.0]})
        rows.append({**base, "key": f"s{i}", "method": "sinkhorn-rebasin", "variant": "sinkhorn-rebasin",
                     "p_max_sweeps": None, "p_init": None, "p_tau": 0.5, "p_steps": 30.0, "fit_s": 2.0, "align_s": 0.5,
                     "curve_loss": [1.0, 2.0, 1.0]})
    return pd.DataFrame(rows)


def test_runs_carry_their_own_typed_params_and_curves(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert len(mirror(_rows(), tracking_uri=uri, experiment="t", protocols=PROTOCOLS, methods=METHODS)) == 2
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    assert exp.tags["mlflow.experimentKind"] == EXPERIMENT_TAGS["mlflow.experimentKind"] == "custom_model_development"
    runs = {r.data.params["method"]: r for r in client.search_runs([exp.experiment_id])}
    git, sink = runs["git-rebasin"], runs["sinkhorn-rebasin"]
    assert git.data.params["max_sweeps"] == "100" and git.data.params["init"] == "forward"
    assert "tau" not in git.data.params and "steps" not in git.data.params  # another method's
    assert sink.data.params["steps"] == "30" and sink.data.params["tau"] == "0.5"
    assert not any(k.startswith(("fit_s", "align_s")) for k in git.data.metrics)  # no time spent: nothing to show
    assert sink.data.metrics["align_s_mean"] == pytest.approx(0.5) and "a_mean" not in sink.data.metrics
    history = sorted((m.step, m.value) for m in client.get_metric_history(git.info.run_id, "curve_loss"))
    assert history == [(0, 1.0), (1, pytest.approx(2.0)), (2, 1.0)]  # mean over the three pairs, per lambda


def test_the_report_run_holds_the_report_and_is_replaced_when_it_changes(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "leaderboard.md").write_text("# Leaderboard\n")
    (tmp_path / "comparison.tex").write_text("% table\n")
    (tmp_path / "curves.png").write_bytes(b"\x89PNG fake")
    first = mirror_report(tmp_path, uri, "t")
    assert first and mirror_report(tmp_path, uri, "t") is None  # same bytes: nothing new
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for d in ("tables", "figures") for a in client.list_artifacts(first, d)}
    assert names == {"tables/leaderboard.md", "tables/comparison.tex", "figures/curves.png"}
    (tmp_path / "leaderboard.md").write_text("# Leaderboard, more units\n")
    second = mirror_report(tmp_path, uri, "t")
    exp = client.get_experiment_by_name("t")
    reports = [r for r in client.search_runs([exp.experiment_id]) if REPORT_TAG in r.data.tags]
    assert second != first and [r.info.run_id for r in reports] == [second]
