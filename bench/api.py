"""The harness as a library: the names a notebook needs, from one place.

    from bench.api import load_zoo, make_task, make_method, pair, score_path

    zoo = load_zoo("default:1")                 # a preset's zoo (built once, cached), or a zoo directory
    task = make_task(zoo)                       # what scores a network of this zoo (loss, acc / psnr)
    method = make_method("git-rebasin")         # any spec `bench methods` lists, options in brackets
    method.setup(zoo, task)                     # learned methods train here (or load their checkpoint)
    a, b = pair(zoo, 0, 1)                      # two networks, as [1, ...] parameter stacks
    aligned = method.align(a, b).others         # b moved into a's basin
    print(score_path(task, a, b)["loss_barrier"], score_path(task, a, aligned)["loss_barrier"])

INR zoos score each network against its own image: pass `target=zoo.meta["target"][i]` to
`method.align` and `score_path` for the networks' target index (both networks of a pair share it).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.evaluation import metrics
from bench.evaluation.curves import curve_summary, curves
from bench.evaluation.repair import repair_merged
from bench.execution.specs import resolve_zoo
from methods import METHODS, MethodSpec, make_method
from zoos.graph_space import GraphSpace
from zoos.space import Layer, Params, WeightSpace
from zoos.symmetry import select
from zoos.tasks import STATISTICS_BATCH, ClassifierTask, Task, make_task
from zoos.trace import state_params, trace_space
from zoos.zoo import Zoo
from zoos.zoo import load_zoo as _load_stored


def load_zoo(name_or_path: str | os.PathLike, results: str | os.PathLike = "results", data: str = "auto") -> Zoo:
    """A stored zoo directory, or PRESET:INDEX (e.g. "default:1"), built into `<results>/zoos/` on first use."""
    path = Path(name_or_path)
    if path.is_dir():
        return _load_stored(path)
    return _load_stored(resolve_zoo(str(name_or_path), Path(results), data, progress=True))


def pair(zoo: Zoo, i: int, j: int) -> tuple[Params, Params]:
    """Networks i and j of the zoo, each as a stack of one."""
    return select(zoo.params, [i]), select(zoo.params, [j])


def score_path(task: Task, a: Params, b: Params, points: int = 25, target: int | None = None) -> dict:
    """The straight path a -> b (one network each) at `points` evenly spaced lambdas: each metric's curve
    (`curve_loss`, ...) and its barrier, area, midpoint and endpoints' mean (`loss_barrier`, ...), as floats."""
    lambdas = torch.linspace(0, 1, points)
    tgt = None if target is None else torch.tensor([int(target)])
    curve = curves(task, a, b, lambdas, tgt)
    out = {"lambdas": lambdas.tolist(), **{f"curve_{k}": v[0].tolist() for k, v in curve.items()}}
    out.update({k: float(v[0]) for k, v in curve_summary(task, curve, lambdas).items()})
    return out


# ---- your own models: align and merge nn.Modules or state dicts ---------------------------------------------


class DataTask(ClassifierTask):
    """A classifier task on the caller's data (`data=(inputs, labels)`): the batch that data-reading methods
    read, that BatchNorm statistics are recounted on and that the report's barriers are scored on. Without
    data, a method or score that would read some says so in one line."""

    def __init__(self, space, inputs: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        Task.__init__(self, space)
        self.dataset, self.n_eval, self.seed, self.input_scaling = "user", None, 0, "none"
        self.x = None if inputs is None else torch.as_tensor(inputs).float()
        self.y = None if labels is None else torch.as_tensor(labels).long()

    def _need(self, labels: bool = False) -> None:
        if self.x is None or (labels and self.y is None):
            raise ValueError(f"this reads {'labelled ' if labels else ''}data: pass data=(inputs, labels)")

    @property
    def _eval(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._need(labels=True)
        return self.x, self.y

    def inputs(self) -> torch.Tensor:
        self._need()
        return self.x

    def data(self):
        self._need()
        return (self.x,) if self.y is None else (self.x, self.y)

    def train_batch(self, n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """n of the given examples (all when there are fewer), a seeded draw."""
        self._need()
        idx = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(seed))[:n]
        return self.x[idx], (None if self.y is None else self.y[idx])


@dataclass
class Report:
    """What `align` / `merge` did: the method (spec), whether it is exact (moves only along symmetry orbits),
    wall seconds, the method's own diagnostics (`info`, e.g. its objective), the largest output change of
    the aligned networks relative to the largest output (exact methods: ~1e-6) and, with labelled data,
    scores: `align` the loss / accuracy barrier of the straight path before (naive) and after alignment,
    `merge` each input's loss / accuracy, the merged network's, and after the statistics correction."""

    method: str
    exact: bool
    seconds: float
    info: dict = field(default_factory=dict)
    deviation: float | None = None
    scores: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f"{self.method}: {'exact' if self.exact else 'inexact'}, {self.seconds:.2g} s"]
        if self.deviation is not None:
            parts.append(f"deviation {self.deviation:.1e}")
        parts += [f"{k} {v:.4g}" for k, v in self.scores.items() if isinstance(v, float)]
        return ", ".join(parts)


def _is_module(model) -> bool:
    return isinstance(model, torch.nn.Module)


def _input_shape(module: torch.nn.Module, data, input_shape) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if data is not None:
        return tuple(_inputs(data).shape[1:])
    first = next((m for m in module.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)), None)
    if isinstance(first, torch.nn.Linear):
        return (first.in_features,)
    raise ValueError(f"{type(module).__name__}: pass input_shape=(channels, height, width) or data=(inputs, labels)")


def _inputs(data) -> torch.Tensor:
    return torch.as_tensor(data[0] if isinstance(data, tuple | list) else data).float()


def _labels(data) -> torch.Tensor | None:
    return torch.as_tensor(data[1]) if isinstance(data, tuple | list) and len(data) > 1 else None


def _as_stack(space: GraphSpace) -> WeightSpace | None:
    """A plain chain of linear layers (each with a bias, each followed by at most one activation) written as a
    stack of layers, the form that layer-wise methods (activation matching, OTFusion, ZipIt!, CCA) read."""
    if len(space.input_shape) != 1:
        return None
    layers, ops = [], [op for op in space.ops if op.kind not in ("input", "output")]
    for op in ops:
        if op.kind == "linear" and op.bias:
            layers.append(Layer(op.name, "linear", op.n_in, op.n_out))
        elif op.kind == "act" and layers and layers[-1].act == "identity" and op.act in ("relu", "tanh", "identity"):
            layers[-1] = Layer(layers[-1].name, "linear", layers[-1].n_in, layers[-1].n_out, act=op.act)
        else:
            return None
    if not layers or layers[-1].act != "identity":
        return None
    return WeightSpace(space.name, tuple(layers), space.input_shape)


def _space(models: list, module, data, input_shape):
    """The weight space of the models' architecture (traced from the first nn.Module given, or `module`)."""
    template = next((m for m in models if _is_module(m)), module)
    if template is None:
        raise ValueError("state dicts: pass module=<an instance of their architecture> (its space is traced with "
                         "torch.fx)")
    graph = trace_space(template, _input_shape(template, data, input_shape))
    return _as_stack(graph) or graph, template


def _params(space, models: list) -> Params:
    states = [m.state_dict() if _is_module(m) else m for m in models]
    nets = [state_params(space, s) if isinstance(space, GraphSpace) else _stack_params(space, s) for s in states]
    return {k: torch.cat([n[k] for n in nets]) for k in space.shapes()}


def _stack_params(space: WeightSpace, state: dict) -> Params:
    shapes = space.shapes()
    extra = sorted(k for k in state if k not in shapes)
    missing = sorted(k for k in shapes if k not in state)
    if extra or missing:
        raise ValueError(f"{space.name}: state dict {'lacks ' + ', '.join(missing[:4]) if missing else ''}"
                         f"{'; ' if extra and missing else ''}{'has extra ' + ', '.join(extra[:4]) if extra else ''}")
    return {k: state[k].detach().float().unsqueeze(0) for k in shapes}


def _like(model, params: Params, i: int = 0):
    """Network i of `params` in the form `model` came in: a copy of the module, or a state dict (same keys,
    same dtypes; entries outside the weight space, e.g. BatchNorm's step counter, kept)."""
    state = model.state_dict() if _is_module(model) else model
    new = {k: (params[k][i].to(v.dtype).clone() if k in params else v.clone()) for k, v in state.items()}
    if not _is_module(model):
        return new
    out = copy.deepcopy(model)
    out.load_state_dict(new)
    return out


def _prepare(spec: MethodSpec, space, params: Params, data, seed: int):
    method = spec.build(seed)
    if method.learned or method.reference:
        raise ValueError(f"{spec}: a {'learned' if method.learned else 'reference'} method needs a zoo (bench run)")
    n = next(iter(params.values())).shape[0]
    zoo = Zoo("user", space, params, pd.DataFrame({"id": range(n), "split": "train"}),
              {"kind": "classifier", "dataset": "user", "n_eval": None})
    task = DataTask(space, None if data is None else _inputs(data), None if data is None else _labels(data))
    reason = method.skip(zoo)
    if reason:
        raise ValueError(reason)
    if method.needs != "data-free" and data is None:
        raise ValueError(f"{spec} reads {method.needs}: pass data=(inputs, labels)")
    method.setup(zoo, task)
    return method, task


@torch.no_grad()
def _deviation(space, task: DataTask, moved: Params, original: Params) -> float:
    x = task.x
    if x is None:  # no data: random inputs of the architecture's shape
        x = torch.randn(64, *space.input_shape, generator=torch.Generator().manual_seed(0))
    return float(metrics.functional_deviation(space.forward(moved, x), space.forward(original, x)).max())


def align(model_a, model_b, method: str = "git-rebasin", data=None, *, module=None, input_shape=None,
          seed: int = 0, points: int = 11):
    """`model_b` brought into `model_a`'s basin: `(aligned_b, report)`.

    Models are `nn.Module`s or state dicts (then `module=` gives their architecture) of any architecture
    `zoos.trace.trace_space` accepts; `aligned_b` comes back in the form `model_b` came in. `method` is any
    spec `bench methods` lists (`"git-rebasin[init=identity]"`). `data=(inputs, labels)` is read by the methods
    that read data and scores the path in the report (loss and accuracy barrier, naive and aligned, over
    `points` points); without it data-free methods run and the report has no scores. See `Report`.
    """
    space, _ = _space([model_a, model_b], module, data, input_shape)
    params = _params(space, [model_a, model_b])
    a, b = select(params, [0]), select(params, [1])
    spec = MethodSpec.parse(method)
    m, task = _prepare(spec, space, params, data, seed)
    start = time.perf_counter()
    out = m.align(a, b)
    seconds = time.perf_counter() - start
    aligned = out.others if out.ref_transform is None else out.maps().apply(space, b)
    report = Report(str(spec), m.exact, seconds, dict(out.info),
                    _deviation(space, task, aligned, b) if m.exact else None)
    if task.y is not None:
        lambdas = torch.linspace(0, 1, points)
        for label, other in (("naive", b), ("aligned", aligned)):
            summary = curve_summary(task, curves(task, a, other, lambdas), lambdas)
            report.scores.update({f"{k.split('_')[0]}_barrier_{label}": float(v[0])
                                  for k, v in summary.items() if k.endswith("_barrier")})
    return _like(model_b, aligned), report


def merge(models: list, method: str = "git-rebasin", data=None, *, module=None, input_shape=None, seed: int = 0,
          repair: bool = True):
    """One network from N: `(merged, report)`, in the form the first model came in.

    As `align` for models, `method` and `data`. With data, the merged network's statistics are corrected on
    its inputs when `repair` (BatchNorm: running statistics recounted; otherwise REPAIR's per-unit
    correction), and the report scores each input, the merged network and the corrected one.
    """
    if len(models) < 2:
        raise ValueError(f"merge takes at least two models, got {len(models)}")
    space, _ = _space(list(models), module, data, input_shape)
    params = _params(space, list(models))
    spec = MethodSpec.parse(method)
    m, task = _prepare(spec, space, params, data, seed)
    start = time.perf_counter()
    out = m.merge(params)
    seconds = time.perf_counter() - start
    merged = out.merged
    report = Report(str(spec), m.exact, seconds, dict(out.info),
                    _deviation(space, task, out.frame, params) if m.exact and out.transform is not None else None)
    if task.x is not None and repair:
        merged = repair_merged(space, out.merged, out.frame, task.train_batch(STATISTICS_BATCH)[0])
    if task.y is not None:
        inputs = task.evaluate(params)
        report.scores.update({f"{k}_inputs_mean": float(v.mean()) for k, v in inputs.items()})
        report.scores.update({f"{k}_merged": float(v[0]) for k, v in task.evaluate(out.merged).items()})
        if merged is not out.merged:
            report.scores.update({f"{k}_merged_repaired": float(v[0]) for k, v in task.evaluate(merged).items()})
    return _like(models[0], merged), report


__all__ = ["METHODS", "Report", "Zoo", "align", "load_zoo", "make_method", "make_task", "merge", "pair",
           "score_path"]
