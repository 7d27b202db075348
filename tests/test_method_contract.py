"""The contract every registered method keeps (scikit-learn's `check_estimator` is the model): the same checks
for every name in the registry, so a new method is checked the moment it is registered.

- its spec round-trips (`MethodSpec.parse(str(spec)) == spec`) and builds the hyperparameters it names;
- it declares what it reads (`needs`) and which zoos it refuses (`skip`), and keeps to it: a data-free method
  aligns without touching data, a zoo of an undeclared task kind or a graph for a stack-only method is refused;
- an exact method preserves the function of every network it moves, on an MLP, a CNN and a graph space
  (residual sums, BatchNorm), within the harness's EXACT_TOLERANCE;
- a seed determines its results.
Networks are tiny and budgets minimal (learned methods train for one epoch), so this stays fast.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from bench.evaluation.metrics import functional_deviation
from bench.protocols.base import EXACT_TOLERANCE
from methods import METHODS, MethodSpec, normalise_spec
from methods.base import DATA_NEEDS
from tests.conftest import random_params
from zoos.space import cnn_zoo_space, mlp_space
from zoos.symmetry import select
from zoos.tasks import make_task
from zoos.trace import state_params, trace_space
from zoos.zoo import Zoo

NAMES = list(METHODS)  # the registry, not a hand-kept list
EXACT = [name for name in NAMES if METHODS[name].exact]
N_NETS = 4  # 2 train (learned methods and `constant` fit there), 2 test
# iteration budgets and data batches, set to their declared minimum
BUDGETS = ("steps", "max_iter", "max_sweeps", "epochs", "n_iter", "patience", "warmup", "batch")
TINY_MODEL = {"hidden": 4, "n_layers": 1, "latent": 8, "batch_size": 8, "n_images": 16}  # learned methods' models


def small_spec(name: str) -> MethodSpec:
    """The method with its budgets at their declared minimum (and a tiny model if it learns one)."""
    space = METHODS[name].search_space
    params = {k: max(int(h.low or 1), 1) for k, h in space.items() if k in BUDGETS and h.kind == "int"}
    if METHODS[name].learned:
        params.update({k: v for k, v in TINY_MODEL.items() if k in space})
    return MethodSpec.of(name, params)


# ---- the three weight spaces ------------------------------------------------------------------------
def _resnet(seed: int) -> nn.Module:
    """A one-block ResNet with random weights and trained-like BatchNorm statistics, in evaluation mode."""
    from zoos.models import ResNet

    torch.manual_seed(seed)
    module = ResNet(width=4, blocks=1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return module.eval()


def _zoo(kind: str) -> Zoo:
    if kind == "graph":
        space = trace_space(_resnet(0), (1, 28, 28))
        nets = [state_params(space, _resnet(s).state_dict()) for s in range(N_NETS)]
        params = {k: torch.cat([n[k] for n in nets]) for k in nets[0]}
    else:
        space = mlp_space([784, 12, 10, 10], "relu") if kind == "mlp" else cnn_zoo_space("relu", 4)
        params = random_params(space, N_NETS, seed=1, scale=0.2)
    meta = pd.DataFrame({"id": range(N_NETS), "split": ["train", "train", "test", "test"]})
    return Zoo(f"contract-{kind}", space, params, meta, {"kind": "classifier", "dataset": "digits", "n_eval": 64})


ZOOS = {kind: _zoo(kind) for kind in ("mlp", "cnn", "graph")}


@pytest.fixture(scope="module")
def tasks():
    return {kind: make_task(zoo) for kind, zoo in ZOOS.items()}


def _set_up(spec: MethodSpec, zoo: Zoo, task, seed: int = 0):
    method = spec.build(seed)
    method.setup(zoo, task)
    return method


def _pair(zoo: Zoo):
    test = zoo.indices("test")
    return select(zoo.params, test[:1]), select(zoo.params, test[1:])


# ---- specs and declarations -------------------------------------------------------------------------
def _other_value(h):
    """A valid value of a hyperparameter other than its default (None: none to pick)."""
    if h.kind == "bool":
        return not h.default
    if h.kind == "cat":
        return next((c for c in h.choices if c != h.default), None)
    if h.kind in ("int", "float"):
        for bound in (h.high, h.low):
            if bound is not None and bound != h.default:
                return int(bound) if h.kind == "int" else float(bound)
    return None


@pytest.mark.parametrize("name", NAMES)
def test_specs_round_trip_and_build_what_they_name(name):
    space = METHODS[name].search_space
    assert MethodSpec.parse(name) == MethodSpec(name) and str(MethodSpec(name)) == name
    given = {k: v for k, h in space.items() if (v := _other_value(h)) is not None}
    spec = MethodSpec.of(name, given)
    assert MethodSpec.parse(str(spec)) == spec and str(spec) == normalise_spec(str(spec))
    assert MethodSpec.parse(f" {name}[{','.join(f'{k} = {v}' for k, v in given.items())}] ") == spec
    assert spec.replace(**{k: space[k].default for k in given}) == MethodSpec(name)  # defaults are left out
    buildable = {k: v for k, v in given.items() if k != "device"}  # no accelerator here
    method = MethodSpec.of(name, buildable).build()
    assert all(method.hp[k] == v for k, v in buildable.items())
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        MethodSpec.parse(f"{name}[no_such_option=1]")


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_honoured_by_skip(name):
    cls = METHODS[name]
    method = small_spec(name).build()
    assert method.needs in DATA_NEEDS and set(cls.tasks) and not (cls.exact and cls.learned)
    other_kind = SimpleNamespace(name="other", space=ZOOS["mlp"].space, task={"kind": "no-such-task"},
                                 indices=ZOOS["mlp"].indices)
    assert method.skip(other_kind), "a zoo of a task kind the method does not declare must be refused"
    graph = method.skip(ZOOS["graph"])
    if cls.stack_only:
        assert graph and "stack of layers" in graph
    assert method.skip(ZOOS["mlp"]) is None  # an MLP classifier zoo is what every method handles


class NoData:
    """A task whose data cannot be read: what a data-free method is set up with."""

    READS = ("train_batch", "fixed_train_batch", "inputs", "data", "task_loss")

    def __init__(self, task):
        self._task = task

    def __getattr__(self, name):
        if name in self.READS:
            raise AssertionError(f"a data-free method read the task's {name}")
        return getattr(self._task, name)


@pytest.mark.parametrize("name", [n for n in NAMES if not METHODS[n].learned and not METHODS[n].reference])
def test_data_free_methods_read_no_data(name, tasks):
    spec = small_spec(name)
    if spec.build().needs != "data-free":
        pytest.skip(f"{name} declares it reads {spec.build().needs}")
    method = _set_up(spec, ZOOS["mlp"], NoData(tasks["mlp"]))
    method.align(*_pair(ZOOS["mlp"]))


# ---- behaviour --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(ZOOS))
@pytest.mark.parametrize("name", EXACT)
def test_exact_methods_preserve_the_function(name, kind, tasks):
    zoo, task, spec = ZOOS[kind], tasks[kind], small_spec(name)
    reason = spec.build().skip(zoo)
    if reason:
        assert kind == "graph" and METHODS[name].stack_only, reason  # the only refusal the declarations allow
        pytest.skip(reason)
    method = _set_up(spec, zoo, task)
    x = task.inputs()[:32]
    ref, other = _pair(zoo)
    out = method.align(ref, other)
    assert functional_deviation(zoo.space.forward(out.others, x), zoo.space.forward(other, x)).max() <= EXACT_TOLERANCE
    assert functional_deviation(zoo.space.forward(out.ref, x), zoo.space.forward(ref, x)).max() <= EXACT_TOLERANCE
    models = select(zoo.params, zoo.indices("test"))
    merged = method.merge(models)
    if merged.transform is not None:  # the inputs in the merged frame still compute their functions
        assert functional_deviation(zoo.space.forward(merged.frame, x),
                                    zoo.space.forward(models, x)).max() <= EXACT_TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_determines_the_results(name, tasks):
    zoo, task, spec = ZOOS["mlp"], tasks["mlp"], small_spec(name)
    ref, other = _pair(zoo)
    first, second = (_set_up(spec, zoo, task, seed=3).align(ref, other) for _ in range(2))
    for k in first.others:
        assert torch.equal(first.others[k], second.others[k]), (name, k)
        assert torch.equal(first.ref[k], second.ref[k]), (name, k)
