"""MLflow mirror of the results table (Parquet stays the source of truth).

One MLflow run per (run_id, variant, zoo, protocol) group: the method and the hyperparameters it
has (typed: 512, not 512.0; none of other methods') as params, mean and std of every declared metric
over the group's units as metrics (per section: orbit action/eps, merge size), the mean
interpolation curves as step metrics (`curve_loss` etc., step = index of lambda along the path),
and the group's rows as a Parquet artifact. The experiment is typed for model development (not
GenAI), so the UI opens on its runs. `mirror_report` logs the report files (leaderboard,
comparison matrices, figures) as the artifacts of one more run, "report".

Mirroring is idempotent: each run is tagged with a key of its group and of the group's unit keys,
and a group whose content is already mirrored is skipped. When a group grew (a resumed run added
units) the new run replaces the old one, which is deleted.

The MLflow store itself (where it is, how a new one is made, a backend that cannot serve) is
`bench.store.mlflow_backend`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bench.store.mlflow_backend import LOCK, TrackingError, artifact_root, quiet_mlflow, resolve_uri
from bench.store.results import is_missing, to_arrow
from zoos.files import write_bytes_atomic

GROUP_COLUMNS = ("run_id", "variant", "zoo", "protocol")
# numeric columns that describe a unit rather than measure it
NOT_METRICS = {"seed", "eps"}
GROUP_TAG, CONTENT_TAG = "bench.group_key", "bench.content_key"
RESULTS_TAG = "bench.results_id"  # the results folder a run mirrors (`results_id`): a tracking URI may serve several
EXPERIMENT = "rebasin-bench"
def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _metric_name(name: str) -> str:
    return re.sub(r"[^\w.\- /]", "_", name)


def metric_columns(table: pd.DataFrame, declared: Sequence[str] | None = None) -> list[str]:
    """The protocol's declared metrics present in `table` and the method's `i_*` diagnostics; without
    declarations, every numeric column that measures something (not seed/eps, hyperparameters, environment)."""
    if declared is not None:
        return [c for c in declared if c in table.columns] + sorted(c for c in table.columns if c.startswith("i_"))
    return [c for c in table.columns
            if c not in NOT_METRICS and not c.startswith(("p_", "env_"))
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]


def _ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["error"].map(is_missing)] if "error" in rows.columns else rows


def _subsets(ok: pd.DataFrame, sections: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """(metric name prefix, rows) per section ("action_P/eps_0.01/"), or ("", all rows) without sections:
    a mean over orbit actions and noise levels means nothing."""
    sections = [c for c in sections if c in ok.columns and ok[c].notna().any()]
    if not sections:
        return [("", ok)]
    out = []
    for values, sub in ok.groupby(sections, dropna=True, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append(("/".join(f"{c}_{v:g}" if isinstance(v, float) else f"{c}_{v}"
                             for c, v in zip(sections, values, strict=True)) + "/", sub))
    return out


def group_metrics(rows: pd.DataFrame, declared: Sequence[str] | None = None,
                  sections: Sequence[str] = ()) -> dict[str, float]:
    """mean/std of every metric over the units; for protocols with section columns (orbit: action and
    eps; merge: number of models) per section only, so that different comparisons are never averaged."""
    cols = metric_columns(rows, declared)
    ok = _ok(rows)
    out = {"n_units": float(len(ok)), "n_errors": float(len(rows) - len(ok))}
    for prefix, sub in _subsets(ok, sections):
        values = np.column_stack([pd.to_numeric(sub[c], errors="coerce").to_numpy("float64", na_value=np.nan)
                                  for c in cols]) if cols else np.empty((len(sub), 0))
        count = (~np.isnan(values)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):  # empty columns: NaN, not logged
            mean = np.nansum(values, axis=0) / count
            std = np.where(count > 1, np.sqrt(np.nansum((values - mean) ** 2, axis=0) / (count - 1)), np.nan)
        busy = np.nan_to_num(values).any(axis=0)
        for i, c in enumerate(cols):
            if c.endswith("_s") and not busy[i]:  # a fit time of a method that fits nothing
                continue
            for stat, column in (("mean", mean), ("std", std)):
                if not np.isnan(column[i]):
                    out[_metric_name(f"{prefix}{c}_{stat}")] = float(column[i])
    return out


def all_runs(client, experiment_id: str):
    """Every (active) run of the experiment, page by page."""
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _existing(client, experiment_id: str, mine=lambda run: True) -> tuple[set[str], dict[str, list[str]]]:
    """Content keys of finished mirror runs (of this results folder: `mine`), and run ids per group key."""
    done, by_group = set(), {}
    for run in filter(mine, all_runs(client, experiment_id)):
        tags = run.data.tags
        if GROUP_TAG in tags:
            by_group.setdefault(tags[GROUP_TAG], []).append(run.info.run_id)
            if run.info.status == "FINISHED":
                done.add(tags.get(CONTENT_TAG, ""))
    return done, by_group


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development",  # the UI's runs view, not GenAI traces
                   "mlflow.note.content": "Weight alignment and model merging benchmark (rebasin-bench): one run per "
                                          "(run, method variant, zoo, protocol); the Parquet table under the results "
                                          "directory is the source of truth."}


def ensure_experiment(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (or restored from deleted) with the harness's tags."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    for key, value in EXPERIMENT_TAGS.items():
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def method_params(rows: pd.DataFrame, methods: Mapping | None = None) -> dict[str, str]:
    """The `p_*` hyperparameters this group's method has (a column empty for it belongs to another
    method), typed by the method's declaration in `methods` (name -> Aligner class, e.g.
    `methods.METHODS`): ints without '.0', bools as true/false; without it, integral floats as ints."""
    name = str(rows["method"].dropna().iloc[0]) if "method" in rows.columns and rows["method"].notna().any() else ""
    space = methods[name].search_space if methods and name in methods else {}
    out = {}
    for column in sorted(c for c in rows.columns if c.startswith("p_")):
        values = rows[column].dropna()
        if values.empty:
            continue
        value, hyper = values.iloc[0], space.get(column.removeprefix("p_"))
        kind = hyper.kind if hyper is not None else None
        if kind == "int" or (kind is None and isinstance(value, float) and value.is_integer()):
            text = str(int(value))
        elif kind == "bool" or isinstance(value, bool):
            text = str(bool(value)).lower()
        else:
            text = _text(value)
        out[column.removeprefix("p_")] = text
    return out


def curve_metrics(rows: pd.DataFrame, sections: Sequence[str] = ()) -> list[tuple[str, int, float]]:
    """(name, step, value): the mean of each `curve_*` list over the units, step = index of lambda along
    the path (per section, like `group_metrics`; units with another number of points are left out)."""
    ok = _ok(rows)
    curves = [c for c in ok.columns if c.startswith("curve_")]
    if not curves or ok.empty:
        return []
    out = []
    for prefix, sub in _subsets(ok, sections):
        for c in curves:
            lists = [list(v) for v in sub[c] if hasattr(v, "__len__") and not isinstance(v, (str, bytes))]
            if not lists:
                continue
            n = max(set(map(len, lists)), key=[len(x) for x in lists].count)  # the usual number of points
            same = [x for x in lists if len(x) == n]
            for step in range(n):
                values = [float(x[step]) for x in same if x[step] is not None and math.isfinite(float(x[step]))]
                if values:
                    out.append((_metric_name(f"{prefix}{c}"), step, sum(values) / len(values)))
    return out


def _numeric(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its numeric columns as NumPy float64: per-group statistics over Arrow-backed
    columns cost a Python call per value."""
    out = table.copy()
    for c in out.columns:
        if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].to_numpy(dtype="float64", na_value=float("nan"))
    return out


def _groups(table: pd.DataFrame):
    """(ident, group key, content key, rows) of each MLflow run the table should have."""
    table = table.copy()
    for c in GROUP_COLUMNS:
        if c not in table.columns:
            table[c] = None
    for ident, rows in table.groupby(list(GROUP_COLUMNS), dropna=False, sort=True):
        ident = dict(zip(GROUP_COLUMNS, map(_text, ident), strict=True))
        group_key = _key(ident)
        units = sorted(map(_text, rows["key"])) if "key" in rows.columns else [str(len(rows))]
        yield ident, group_key, _key([group_key, units]), rows


@contextlib.contextmanager
def _client(tracking_uri: str | None, experiment: str, results_dir):
    """An MLflow client on the experiment, holding the results directory's mirror lock: concurrent
    `bench run`s finishing together would otherwise both log the same groups."""
    from filelock import FileLock

    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_uri(tracking_uri, results_dir)
    with FileLock(results_dir / LOCK), quiet_mlflow():
        from mlflow import MlflowClient

        try:
            client = MlflowClient(tracking_uri=uri)
            exp_id = ensure_experiment(client, experiment, artifact_root(uri))
        except Exception as e:  # noqa: BLE001 - sqlalchemy, requests and MLflow raise many types
            raise TrackingError(f"{uri}: unusable MLflow store ({type(e).__name__}: {e})".splitlines()[0]) from None
        yield client, exp_id, owner(uri, results_dir)


ID_FILE = ".mirror-id"  # in the results directory: the id its mirror runs are tagged with (RESULTS_TAG)


def results_id(results_dir) -> str:
    """The results folder's identity for its mirror runs: a random id kept in the folder (made on first use,
    under the mirror lock), so that the folder moved or copied still owns its runs, and two folders sharing
    a tracking URI never take each other's."""
    import uuid

    path = Path(results_dir) / ID_FILE
    try:
        text = path.read_text().strip() if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if re.fullmatch(r"[0-9a-f]{32}", text):
        return text
    new = uuid.uuid4().hex
    write_bytes_atomic(path, lambda fh: fh.write(new.encode()))
    return new


def owner(uri: str, results_dir) -> Callable:
    """run -> whether it mirrors this results folder: a mirror or report run tagged with this folder's id
    (RESULTS_TAG, `results_id`), or, in the folder's own `mlflow.db` only, one written before runs carried
    the tag. Runs made by hand, and runs of other results folders sharing a tracking URI, are never counted,
    replaced or deleted. `owner(...).results_id` is the tag's value."""
    here = results_id(results_dir)
    own_db = uri == f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"

    def mine(run) -> bool:
        tags = run.data.tags
        if GROUP_TAG not in tags and REPORT_TAG not in tags:
            return False
        return tags[RESULTS_TAG] == here if RESULTS_TAG in tags else own_db
    mine.results_id = here
    return mine


def mirror(table: pd.DataFrame, tracking_uri: str | None = None, experiment: str = EXPERIMENT,
           results_dir: str | os.PathLike = "results", protocols: Mapping | None = None,
           methods: Mapping | None = None) -> list[str]:
    """Log each not-yet-mirrored group of `table` as one MLflow run; returns the new MLflow run ids.

    `protocols` (name -> Protocol class, e.g. `bench.protocols.PROTOCOLS`) says which metrics each
    protocol declares and how its comparisons split; without it every numeric column is logged.
    `methods` (`methods.METHODS`) types the hyperparameters (`method_params`)."""
    return Mirror(results_dir, tracking_uri, experiment, protocols, methods).log(table)


class Mirror:
    """`mirror` for one results folder, called again and again (a run's groups mirrored as they finish):
    the runs already in MLflow are read on the first call and then kept up to date here, so that each call
    costs its own groups, not a search of every run. `log(table, fresh=True)` reads them again (another
    process may have mirrored meanwhile)."""

    def __init__(self, results_dir: str | os.PathLike = "results", tracking_uri: str | None = None,
                 experiment: str = EXPERIMENT, protocols: Mapping | None = None, methods: Mapping | None = None):
        self.results_dir, self.tracking_uri, self.experiment = Path(results_dir), tracking_uri, experiment
        self.protocols, self.methods = protocols, methods
        self._known: tuple[set[str], dict[str, list[str]]] | None = None  # (content keys done, run ids per group)

    def log(self, table: pd.DataFrame, fresh: bool = False) -> list[str]:
        """Log each not-yet-mirrored group of `table` as one MLflow run; returns the new MLflow run ids."""
        if table.empty:
            return []
        table = table.reset_index(drop=True)
        stored = to_arrow(table)  # once: each run's rows artifact is a slice of it
        table = _numeric(table)
        with _client(self.tracking_uri, self.experiment, self.results_dir) as (client, exp_id, mine):
            if fresh or self._known is None:
                self._known = _existing(client, exp_id, mine)
            done, by_group = self._known
            new_runs = []
            for ident, group_key, content_key, rows in _groups(table):
                if content_key in done:
                    continue
                rid = self._log_group(client, exp_id, mine, ident, group_key, content_key, rows, stored)
                # the group grew since it was last mirrored (or a killed mirror left a run unfinished):
                # the older runs are superseded
                for old in by_group.get(group_key, []):
                    client.delete_run(old)
                by_group[group_key] = [rid]
                done.add(content_key)
                new_runs.append(rid)
            return new_runs

    def _log_group(self, client, exp_id, mine, ident, group_key, content_key, rows, stored) -> str:
        from mlflow.entities import Metric, Param
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        first = rows.iloc[0]
        params = {c: _text(first.get(c)) for c in ("method", "variant", "zoo", "protocol")}
        params.update(method_params(rows, self.methods))
        tags = {GROUP_TAG: group_key, CONTENT_TAG: content_key, "bench.run_id": ident["run_id"],
                RESULTS_TAG: mine.results_id, "bench.results_path": str(self.results_dir.resolve()),
                **{f"bench.{c}": ident[c] for c in ("variant", "zoo", "protocol")}}
        if "zoo_hash" in rows.columns:
            tags["bench.zoo_hash"] = _text(first["zoo_hash"])
        if "env_git" in rows.columns:
            tags["bench.git_commit"] = _text(first["env_git"])
        name = f"{ident['variant']} {ident['zoo']} {ident['protocol']}"
        run = client.create_run(exp_id, tags=tags, run_name=name)
        rid = run.info.run_id
        try:
            plist = [Param(_metric_name(k), v[:6000]) for k, v in params.items()]
            now = int(time.time() * 1000)
            proto = (self.protocols or {}).get(ident["protocol"])
            declared = [m.name for m in proto.metrics] if proto is not None else None
            sections = proto.sections if proto is not None else ("action", "eps")
            mlist = [Metric(k, v, now, 0) for k, v in group_metrics(rows, declared, sections).items()]
            mlist += [Metric(k, v, now, step) for k, step, v in curve_metrics(rows, sections)]
            # MLflow caps a batch at 100 params and 1000 metrics: params and metrics share the calls
            for i in range(max(math.ceil(len(plist) / 100), math.ceil(len(mlist) / 1000), 1)):
                client.log_batch(rid, params=plist[100 * i:100 * (i + 1)], metrics=mlist[1000 * i:1000 * (i + 1)])
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "rows.parquet"
                pq.write_table(stored.take(rows.index.to_numpy()), path)
                # the run's own repository: client.log_artifact would look the run up again for it
                get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri).log_artifact(
                    str(path))
        except BaseException:
            client.set_terminated(rid, status="FAILED")
            raise
        client.set_terminated(rid, status="FINISHED")
        return rid


REPORT_TAG = "bench.report_key"
REPORT_FILES = ("leaderboard.md", "leaderboard.html", "leaderboard.tex", "comparison.md", "comparison.tex",
                "comparison.html", "comparison.csv")


def mirror_report(results_dir: str | os.PathLike = "results", tracking_uri: str | None = None,
                  experiment: str = EXPERIMENT) -> str | None:
    """Log the report files (leaderboard, comparison matrices, figures) as the artifacts of one run named
    "report"; a report already logged with the same bytes is skipped, an older one replaced. Returns the
    new run's id (None when skipped or there is no report)."""
    results_dir = Path(results_dir)
    files = [results_dir / f for f in REPORT_FILES if (results_dir / f).is_file()]
    files += sorted(results_dir.glob("*.png"))
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    key = digest.hexdigest()[:16]
    with _client(tracking_uri, experiment, results_dir) as (client, exp_id, mine):
        old = [r for r in all_runs(client, exp_id) if REPORT_TAG in r.data.tags and mine(r)]
        if any(r.data.tags[REPORT_TAG] == key and r.info.status == "FINISHED" for r in old):
            return None
        run = client.create_run(exp_id, run_name="report", tags={REPORT_TAG: key, "bench.role": "report",
                                                                 RESULTS_TAG: mine.results_id})
        try:
            for f in files:
                client.log_artifact(run.info.run_id, str(f), "figures" if f.suffix == ".png" else "tables")
        except BaseException:
            client.set_terminated(run.info.run_id, status="FAILED")
            raise
        client.set_terminated(run.info.run_id, status="FINISHED")
        for r in old:
            client.delete_run(r.info.run_id)
        return run.info.run_id


def check(table: pd.DataFrame, tracking_uri: str | None = None, experiment: str = EXPERIMENT,
          results_dir: str | os.PathLike = "results") -> list[str]:
    """How the MLflow mirror differs from the table (empty: consistent): groups missing or mirrored
    with other units, runs with no group in the table, unfinished or duplicate runs, wrong unit counts."""
    expected = {content_key: (ident, rows) for ident, _, content_key, rows in _groups(table)} if len(table) else {}
    with _client(tracking_uri, experiment, results_dir) as (client, exp_id, mine):
        runs = [r for r in all_runs(client, exp_id) if mine(r)]
    problems, seen = [], {}
    for run in runs:
        tags, rid = run.data.tags, run.info.run_id
        if GROUP_TAG not in tags:
            continue
        content = tags.get(CONTENT_TAG, "")
        if run.info.status != "FINISHED":
            problems.append(f"run {rid}: left {run.info.status} (a mirror was interrupted)")
        elif content not in expected:
            problems.append(f"run {rid}: {run.info.run_name!r} mirrors units the table does not hold")
        elif content in seen:
            problems.append(f"run {rid}: duplicates run {seen[content]}")
        else:
            seen[content] = rid
            n_units = run.data.metrics.get("n_units", 0) + run.data.metrics.get("n_errors", 0)
            if n_units != len(expected[content][1]):
                problems.append(f"run {rid}: {n_units:g} units logged, the table has {len(expected[content][1])}")
    for content, (ident, _) in expected.items():
        if content not in seen:
            problems.append(f"group {ident['variant']} {ident['zoo']} {ident['protocol']} (run {ident['run_id']}):"
                            " not mirrored")
    return problems


def rebuild(table: pd.DataFrame, tracking_uri: str | None = None, experiment: str = EXPERIMENT,
            results_dir: str | os.PathLike = "results", protocols: Mapping | None = None,
            methods: Mapping | None = None) -> list[str]:
    """Delete the mirror's runs of this results folder (`owner`: never another folder's, never one made by
    hand) and mirror `table` afresh; returns the new run ids."""
    with _client(tracking_uri, experiment, results_dir) as (client, exp_id, mine):
        for run in [r for r in all_runs(client, exp_id) if mine(r)]:
            client.delete_run(run.info.run_id)
    return mirror(table, tracking_uri, experiment, results_dir, protocols, methods)
