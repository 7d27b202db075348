"""A `GraphSpace` derived from a `torch.nn.Module` with `torch.fx`.

The module is traced symbolically; each node becomes an op of the space (modules by their
qualified names, so the space's parameter names are the module's `state_dict` keys). What the
space cannot express is refused with one line naming the module or function: grouped or dilated
convolutions, attention, reshapes other than flattening, anything not listed in `_module_op` and
`_function_op`. The derived space is then run against the module on a random input (evaluation
mode): a spec whose forward differs is refused, never returned.
"""

from __future__ import annotations

import dataclasses
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from zoos.graph_space import GraphSpace, Op
from zoos.space import Params, SpecError

ACTIVATION_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Identity: "identity"}
ACTIVATION_FUNCTIONS = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh", torch.sin: "sin"}
PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity)  # identities in evaluation mode


def _single(value, what: str, where: str) -> int:
    """An int, or a tuple of equal ints (square kernels, strides, paddings)."""
    values = value if isinstance(value, tuple | list) else (value,)
    if not all(isinstance(v, int) for v in values) or len(set(values)) != 1:
        raise SpecError(f"{where}: {what} {value!r} is not square (only equal sizes per axis are supported)")
    return values[0]


def _module_op(name: str, module: nn.Module, inputs: tuple[str, ...]) -> Op | None:
    """The op of one module call; None for identities (dropout); SpecError for what cannot be expressed."""
    where = f"module {name} ({type(module).__name__})"
    if isinstance(module, PASS_THROUGH) and not isinstance(module, nn.Identity):
        return None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or _single(module.dilation, "dilation", where) != 1:
            raise SpecError(f"{where}: grouped or dilated convolutions are not supported")
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise SpecError(f"{where}: padding {module.padding!r} ({module.padding_mode}) is not supported; give it "
                            "as numbers with zero padding")
        return Op(name, "conv", inputs, module.in_channels, module.out_channels,
                  _single(module.kernel_size, "kernel", where), _single(module.stride, "stride", where),
                  _single(module.padding, "padding", where), module.bias is not None)
    if isinstance(module, nn.Linear):
        return Op(name, "linear", inputs, module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        if not module.track_running_stats:
            raise SpecError(f"{where}: BatchNorm without running statistics has no evaluation-mode function")
        return Op(name, "batchnorm", inputs, n_out=module.num_features, bias=module.affine, eps=module.eps)
    if isinstance(module, nn.LayerNorm):
        return Op(name, "layernorm", inputs, bias=module.elementwise_affine and module.bias is not None,
                  eps=module.eps, shape=tuple(module.normalized_shape))
    for kind, act in ACTIVATION_MODULES.items():
        if type(module) is kind:
            return Op(name, "act", inputs, act=act)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        if isinstance(module, nn.MaxPool2d) and (_single(module.dilation, "dilation", where) != 1 or module.ceil_mode):
            raise SpecError(f"{where}: dilated or ceil-mode pooling is not supported")
        if isinstance(module, nn.AvgPool2d) and (module.ceil_mode or module.divisor_override):
            raise SpecError(f"{where}: ceil-mode or divisor-override pooling is not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return Op(name, "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool", inputs,
                  kernel=_single(module.kernel_size, "kernel", where), stride=_single(stride, "stride", where),
                  padding=_single(module.padding, "padding", where))
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if _single(module.output_size, "output size", where) != 1:
            raise SpecError(f"{where}: only global average pooling (output size 1) is supported")
        return Op(name, "gap", inputs)  # its [C, 1, 1] output is flattened by the next op: same as [C]
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise SpecError(f"{where}: only flattening from dimension 1 is supported")
        return Op(name, "flatten", inputs)
    raise SpecError(f"{where}: cannot be expressed as a weight space (supported: Conv2d, Linear, BatchNorm, "
                    "LayerNorm, ReLU, Tanh, pooling, Flatten, Dropout, residual additions)")


def _function_op(node: torch.fx.Node, inputs: tuple[str, ...]) -> Op | None:
    target = node.target
    where = f"{node.op} {getattr(target, '__name__', target)} (node {node.name})"
    if node.op == "call_method":
        if target in ("relu", "tanh", "sin"):
            return Op(node.name, "act", inputs[:1], act=target)
        if target == "add":
            return Op(node.name, "add", inputs)
        if target == "flatten" and tuple(node.args[1:]) in ((1,), (1, -1)):
            return Op(node.name, "flatten", inputs[:1])
        if target == "mean" and _dims(node) in ((2, 3), (-2, -1)):
            return Op(node.name, "gap", inputs[:1])
        raise SpecError(f"{where}: cannot be expressed as a weight space")
    if target in ACTIVATION_FUNCTIONS:
        return Op(node.name, "act", inputs[:1], act=ACTIVATION_FUNCTIONS[target])
    if target in (operator.add, torch.add, operator.iadd):
        return Op(node.name, "add", inputs)
    if target is torch.flatten and tuple(node.args[1:]) in ((1,), (1, -1)):
        return Op(node.name, "flatten", inputs[:1])
    if target is F.adaptive_avg_pool2d and node.args[1:] in ((1,), ((1, 1),)):
        return Op(node.name, "gap", inputs[:1])
    if target is torch.mean and _dims(node) in ((2, 3), (-2, -1)):
        return Op(node.name, "gap", inputs[:1])
    raise SpecError(f"{where}: cannot be expressed as a weight space")


def _dims(node: torch.fx.Node) -> tuple:
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return tuple(dims) if isinstance(dims, list | tuple) else (dims,)


def trace_space(module: nn.Module, input_shape: tuple[int, ...], name: str | None = None,
                check: bool = True) -> GraphSpace:
    """The weight space of `module` on inputs of `input_shape` (per example, e.g. (1, 28, 28))."""
    label = name or type(module).__name__
    try:
        graph = torch.fx.symbolic_trace(module)
    except Exception as error:  # fx raises many types; the user needs the one line
        raise SpecError(f"{label}: torch.fx cannot trace it ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''})") from None
    modules = dict(graph.named_modules())
    ops, alias = [], {}  # alias: fx node name -> the op name holding its value (module ops keep module names)
    for node in graph.graph.nodes:
        inputs = tuple(alias.get(a.name, a.name) for a in node.all_input_nodes)
        if node.op == "placeholder":
            if ops:
                raise SpecError(f"{label}: forward takes more than one input ({node.name})")
            op = Op(node.name, "input")
        elif node.op == "get_attr":
            raise SpecError(f"{label}: forward reads attribute {node.target} directly (parameters must belong to "
                            "supported modules)")
        elif node.op == "call_module":
            op = _module_op(str(node.target), modules[node.target], inputs)
            if op is not None and any(o.name == op.name for o in ops):  # one module called twice
                if op.params():
                    raise SpecError(f"{label}: module {op.name} is called twice (shared weights are not supported)")
                op = dataclasses.replace(op, name=node.name)  # a parameter-free module (torchvision's relu)
        elif node.op in ("call_function", "call_method"):
            if any(not isinstance(a, torch.fx.Node) and a is not None for a in node.args[:2]) and \
                    node.target in (operator.add, torch.add, operator.iadd, "add"):
                raise SpecError(f"{label}: node {node.name} adds a constant (only sums of two branches are supported)")
            op = _function_op(node, inputs)
        else:  # output
            op = Op(node.name, "output", inputs)
        if op is None:
            alias[node.name] = inputs[0]
        else:
            alias[node.name] = op.name
            ops.append(op)
    space = GraphSpace(label, tuple(ops), tuple(input_shape))
    if check:
        verify(space, module)
    return space


def state_params(space: GraphSpace, state: dict) -> Params:
    """One network's `state_dict` as a batch of one, in the space's names; extra entries other than
    BatchNorm's step counter are refused (they would be silently dropped)."""
    shapes = space.shapes()
    extra = sorted(k for k in state if k not in shapes and not k.endswith("num_batches_tracked"))
    if extra:
        raise SpecError(f"{space.name}: state_dict entries {', '.join(extra[:4])} are not in the weight space")
    params = {k: state[k].detach().to(torch.float32).unsqueeze(0) if k in state else None for k in shapes}
    missing = sorted(k for k, v in params.items() if v is None)
    if missing:
        raise SpecError(f"{space.name}: state_dict lacks {', '.join(missing[:4])}")
    space.check(params, space.name)
    return params


@torch.no_grad()
def verify(space: GraphSpace, module: nn.Module, batch: int = 4, tolerance: float = 1e-4) -> float:
    """Max deviation of the space's forward from the module's (evaluation mode, relative to the output's
    largest magnitude); SpecError when it exceeds `tolerance`."""
    was_training = module.training
    module.eval()
    try:
        x = torch.randn(batch, *space.input_shape, generator=torch.Generator().manual_seed(0))
        want = module(x).float()
        got = space.forward(state_params(space, module.state_dict()), x)[0]
    finally:
        module.train(was_training)
    if got.shape != want.shape:
        raise SpecError(f"{space.name}: the derived space outputs {list(got.shape)}, the module {list(want.shape)}")
    deviation = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    if not deviation <= tolerance:
        raise SpecError(f"{space.name}: the derived space computes another function (deviation {deviation:.2g})")
    return deviation


__all__ = ["state_params", "trace_space", "verify"]
