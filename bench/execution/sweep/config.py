"""What a sweep is: its configuration, the searched hyperparameters, the objective's metric and direction."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.execution.specs import SpecError, protocol_name
from methods import format_spec, normalise_spec, parse_method
from zoos.names import unknown_name

SWEEPS_DIR = "sweeps"
UNSWEPT = {"device"}  # declared hyperparameters that choose hardware, not a result
MIN_UNITS = 8  # an objective over fewer units is mostly noise: warn


class SweepError(SpecError):
    """A sweep that cannot run as configured (the CLI prints it as one line)."""


@dataclass
class SweepConfig:
    method: str  # spec; hyperparameters given in brackets are fixed, not searched
    zoo: str  # a stored zoo directory, or PRESET:INDEX (a preset's zoo recipe, built and cached)
    protocol: str = "pairs"  # name, optionally with options: "pairs[n_pairs=8,lambdas=11]"
    trials: int = 20
    workers: int = 1
    storage: str | None = None  # RDB URL or journal file path; default <results>/sweeps/optuna.journal
    metric: str | None = None  # None: the protocol's rank metric, the one the leaderboard ranks by (`rank_metric`)
    multi_objective: bool = False  # also minimise the method's seconds (fit + align/merge)
    study: str | None = None
    results: Path = Path("results")
    preset: str = "default"  # protocol options start from this preset's
    params: tuple[str, ...] | None = None  # search only these hyperparameters (others at default)
    seed: int = 0
    data: str = "auto"
    threads: int = 1
    mlflow: bool = True
    tracking_uri: str | None = None
    max_failures: int | None = None  # stop after this many failed trials (default: trials)
    progress: bool = True
    zoo_path: str | None = field(default=None, repr=False)  # resolved by `prepare`


def rank_metric(protocol: str) -> str:
    """The metric the leaderboard ranks `protocol`'s sections by (its first declared rank metric)."""
    from bench.protocols import PROTOCOLS

    proto = protocol_name(protocol)
    if proto not in PROTOCOLS:
        raise SweepError(unknown_name("protocol", proto, sorted(PROTOCOLS)))
    return next(m.name for m in PROTOCOLS[proto].metrics if m.role == "rank")


def direction(metric: str, protocol: str = "pairs") -> str:
    """The optimisation direction of a protocol's metric, from the protocol's own declaration."""
    from bench.protocols import PROTOCOLS

    proto = protocol_name(protocol)
    declared = {m.name: m for m in PROTOCOLS[proto].metrics} if proto in PROTOCOLS else {}
    if metric not in declared:
        raise SweepError(f"protocol {proto} has no metric {metric!r} (declared: {', '.join(declared) or 'none'})")
    return declared[metric].direction

def searched(method: str, only: tuple[str, ...] | None = None):
    """(method name, fixed hyperparameters {name: text}, searched {name: Hyper})."""
    from methods import METHODS, UnknownMethod

    name, fixed = parse_method(method)
    if name not in METHODS:
        raise UnknownMethod(unknown_name("method", name, METHODS))
    space = METHODS[name].search_space
    unknown = set(fixed) - set(space)
    if unknown:
        raise SweepError(f"method {name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}")
    if only:
        bad = set(only) - set(space)
        if bad:
            raise SweepError(f"method {name}: --params {', '.join(sorted(bad))} not among its hyperparameters"
                             f" ({', '.join(space) or 'none'})")
    hypers = {k: h for k, h in space.items() if k not in fixed and k not in UNSWEPT and (not only or k in only)
              and (h.kind in ("bool", "cat") or (h.low is not None and h.high is not None and h.low < h.high))}
    if not hypers:
        raise SweepError(f"method {name}: nothing to search (declared: {', '.join(space) or 'none'})")
    return name, fixed, hypers


SIGNIFICANT = 4  # digits a suggested float keeps: tuned specs read `lr=0.001235`, not 17 digits


def suggest(trial, name: str, hyper):
    """The trial's value of one hyperparameter; a float rounded to SIGNIFICANT digits (within its bounds), so
    the spec the trial runs, prints and records is the short one a user would type."""
    if hyper.kind == "int":
        return trial.suggest_int(name, int(hyper.low), int(hyper.high), log=hyper.log and hyper.low > 0)
    if hyper.kind == "float":
        low, high = float(hyper.low), float(hyper.high)
        value = trial.suggest_float(name, low, high, log=hyper.log and hyper.low > 0)
        return min(max(float(f"{value:.{SIGNIFICANT}g}"), low), high)
    if hyper.kind == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, list(hyper.choices))

def with_split(protocol: str) -> str:
    """The protocol spec with `split=val` added unless it names a split; warns when that is test."""

    name, given = parse_method(protocol)
    if given.get("split", "").strip() == "test":
        print("bench: warning: this sweep scores trials on the TEST split: the tuned numbers will be optimistic "
              "(the default is split=val)", file=sys.stderr)
    if "split" in given:
        return protocol
    return format_spec(name, {**given, "split": "val"})


def default_study_name(cfg: SweepConfig, zoo) -> str:

    objective = cfg.metric + ("+seconds" if cfg.multi_objective else "")
    return f"{normalise_spec(cfg.method)}@{zoo.name}-{zoo.content_hash()[:8]}@{cfg.protocol}@{objective}"

def test_protocol(protocol: str) -> str:
    """The sweep's protocol spec as `bench run --protocols` takes it: its options, scored on the test split."""

    name, given = parse_method(protocol)
    return format_spec(name, {k: v for k, v in given.items() if k != "split"})


def rerun_command(out: dict, cfg: SweepConfig, spec: str) -> str:
    """`bench run` scoring `spec` on the test split of the sweep's zoo, with its protocol options, preset,
    seed and results directory: the command that turns a tuned spec into a reported number."""
    import shlex

    argv = ["bench", "run", "--methods", spec, "--zoo", str(out["zoo_path"]), "--protocols",
            test_protocol(out["protocol"]), "--preset", cfg.preset, "--seed", str(cfg.seed), "--results",
            str(cfg.results)] + (["--data", cfg.data] if cfg.data != "auto" else [])
    return " ".join(shlex.quote(a) for a in argv)

