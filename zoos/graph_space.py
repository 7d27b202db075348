"""Weight spaces of feed-forward graphs: convolutions of any kernel, stride and padding, linear layers,
BatchNorm, LayerNorm, max / average pooling, flattening and residual additions.

A `GraphSpace` is a list of ops in execution order, each reading earlier ops' outputs by name;
parameters and buffers keep their PyTorch `state_dict` names (`layer1.0.bn1.running_var`). Its
permutation spec follows channels through the graph:

- a conv or linear layer produces a new set of units (its weight's axis 0, its bias);
- normalisations, activations and pooling carry their input's units, and their parameters and
  running statistics are permuted with them (BatchNorm's running mean and variance included: a
  spec that forgot them would change the network's output);
- an addition makes the units of its two inputs one set: every layer writing into a residual
  stream shares one permutation;
- units that reach the input or the output are fixed, and so are channels flattened with a
  spatial extent (a linear layer then reads each channel as a block of H x W inputs, which one
  permutation per axis cannot express; pool to 1 x 1 first to keep their symmetry).

Scaling groups are kept only where they are exact: a set of units with one producer whose output
goes through one activation (then only pooling) into linear maps gets the activation's group
(sign for odd activations; positive scale for ReLU, which max pooling also commutes with). Any
BatchNorm or LayerNorm on the units removes it (normalisation undoes a rescaling only up to its
eps, and LayerNorm's statistics mix units), and so does an addition (both branches would have to
rescale alike, and a stream fed by the input cannot).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F

from zoos.space import ACTIVATIONS, SCALING_GROUP, ParamLayout, Params, SpecError, WeightSpace, space_fields

OP_KINDS = ("input", "conv", "linear", "batchnorm", "layernorm", "act", "maxpool", "avgpool", "gap", "flatten",
            "add", "output")
PRODUCERS = ("conv", "linear")
CARRIERS = ("batchnorm", "layernorm", "act", "maxpool", "avgpool", "gap", "flatten")  # units pass through
FIXED = "<fixed>"  # the class of units that no permutation may move


@dataclass(frozen=True)
class Op:
    name: str  # a module's qualified name (its parameters are `name.weight`, ...) or a graph node's
    kind: str
    inputs: tuple[str, ...] = ()
    n_in: int = 0  # conv / linear
    n_out: int = 0  # conv / linear; batchnorm: channels
    kernel: int = 1  # conv, pooling
    stride: int = 1
    padding: int = 0
    bias: bool = True  # conv / linear have a bias; batchnorm / layernorm are affine
    act: str = "identity"
    eps: float = 1e-5  # batchnorm, layernorm
    shape: tuple[int, ...] = ()  # layernorm's normalized_shape

    def params(self) -> dict[str, tuple[int, ...]]:
        """This op's parameters and buffers (state_dict names) and their shapes."""
        if self.kind == "conv":
            out = {f"{self.name}.weight": (self.n_out, self.n_in, self.kernel, self.kernel)}
        elif self.kind == "linear":
            out = {f"{self.name}.weight": (self.n_out, self.n_in)}
        elif self.kind == "batchnorm":
            out = {f"{self.name}.{k}": (self.n_out,) for k in ("weight", "bias", "running_mean", "running_var")}
            return out if self.bias else {k: v for k, v in out.items() if "running" in k}
        elif self.kind == "layernorm":
            return {f"{self.name}.{k}": self.shape for k in ("weight", "bias")} if self.bias else {}
        else:
            return {}
        if self.bias:
            out[f"{self.name}.bias"] = (self.n_out,)
        return out


class _Classes:
    """Union-find over unit sets, keyed by the op that made them (FIXED absorbs whatever joins it)."""

    def __init__(self):
        self.parent: dict[str, str] = {FIXED: FIXED}

    def add(self, key: str) -> str:
        self.parent.setdefault(key, key)
        return key

    def find(self, key: str) -> str:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            if b == FIXED:
                a, b = b, a
            self.parent[b] = a


@dataclass(frozen=True)
class GraphSpace(ParamLayout):
    name: str
    ops: tuple[Op, ...]
    input_shape: tuple[int, ...]
    w0: float = 1.0  # sine frequency, as in WeightSpace
    output_offset: float = 0.0
    axes: dict[str, tuple[str | None, ...]] = field(init=False, compare=False, repr=False)
    perm_sizes: dict[str, int] = field(init=False, compare=False, repr=False)
    groups: dict[str, str] = field(init=False, compare=False, repr=False)
    out_shapes: dict[str, tuple[int, ...]] = field(init=False, compare=False, repr=False)
    last_read: dict[str, int] = field(init=False, compare=False, repr=False)  # op name -> index of its last reader

    def __post_init__(self):
        shapes = _infer_shapes(self.ops, self.input_shape)
        unit_of, classes, members = _unit_classes(self.ops, shapes)
        perm_of, sizes, groups = {}, {}, {}
        for op in self.ops:  # permutations named in execution order (input to output)
            if op.kind in PRODUCERS:
                root = classes.find(unit_of[op.name])
                if root != FIXED and root not in perm_of:
                    perm_of[root] = f"P{len(perm_of)}"
                    sizes[perm_of[root]] = op.n_out
                    groups[perm_of[root]] = _scaling_group(self.ops, members[root])

        def perm(op_name: str) -> str | None:
            return perm_of.get(classes.find(unit_of[op_name]))

        axes = {}
        for op in self.ops:
            if op.kind in PRODUCERS:
                spatial = (None, None) if op.kind == "conv" else ()
                axes[f"{op.name}.weight"] = (perm(op.name), perm(op.inputs[0]), *spatial)
                if op.bias:
                    axes[f"{op.name}.bias"] = (perm(op.name),)
            elif op.kind in ("batchnorm", "layernorm"):
                channels = len(op.shape) == len(shapes[op.inputs[0]]) or op.kind == "batchnorm"
                for name, shape in op.params().items():
                    axes[name] = ((perm(op.inputs[0]) if channels else None), *(None,) * (len(shape) - 1))
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "perm_sizes", sizes)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "out_shapes", shapes)
        object.__setattr__(self, "last_read", {name: i for i, op in enumerate(self.ops) for name in op.inputs})

    # ---- layout ---------------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for op in self.ops for name, shape in op.params().items()}

    @property
    def widest(self) -> int:
        return max((op.n_out for op in self.ops if op.kind in PRODUCERS), default=1)

    @property
    def has_conv(self) -> bool:
        return any(op.kind == "conv" for op in self.ops)

    @property
    def stacked(self) -> bool:
        return False

    @property
    def has_batchnorm(self) -> bool:
        return any(op.kind == "batchnorm" for op in self.ops)

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, params: Params, x: torch.Tensor, batch_stats: dict | None = None) -> torch.Tensor:
        """Outputs of N networks: x is [B, *input_shape] (shared) or [N, B, *input_shape]; returns
        [N, B, *output]. BatchNorm uses its running statistics (evaluation mode), or with `batch_stats` (a
        dict) the batch's own, as in training mode, and records them there: op name -> (mean, unbiased
        variance), each [N, channels]."""
        shared = x.dim() == len(self.input_shape) + 1
        n = next(iter(params.values())).shape[0] if params else 1
        if n > 1 and not x.is_cuda and self.has_conv and batch_stats is None:
            # on CPU a loop of ordinary convs beats one grouped conv over the networks (as in WeightSpace)
            return torch.cat([self.forward({k: v[i : i + 1] for k, v in params.items()}, x if shared else x[i : i + 1])
                              for i in range(n)])
        values: dict[str, torch.Tensor] = {}
        for i, op in enumerate(self.ops):
            if op.kind == "input":
                values[op.name] = x.unsqueeze(0).expand(n, *x.shape) if shared else x
            else:
                values[op.name] = self.apply(op, params, [values[a] for a in op.inputs], batch_stats)
                self.release(values, i)
        out = values[self.ops[-1].name]
        return out + self.output_offset if self.output_offset else out

    def release(self, values: dict[str, torch.Tensor], i: int) -> None:
        """Drop the activations no op after op i reads (a deep net's activations need not all be held)."""
        for name in self.ops[i].inputs:
            if self.last_read[name] == i:
                values.pop(name, None)

    def apply(self, op: Op, params: Params, args: list[torch.Tensor], batch_stats: dict | None = None) -> torch.Tensor:
        """One op on the activations of N networks, each [N, B, ...]."""
        h = args[0] if args else None
        p = {name.rpartition(".")[2]: params[name] for name in op.params()}
        if op.kind == "linear":
            w = p["weight"].transpose(1, 2)
            return torch.baddbmm(p["bias"].unsqueeze(1), h, w) if op.bias else torch.bmm(h, w)
        if op.kind == "conv":
            n, batch = h.shape[:2]
            g = h.transpose(0, 1).reshape(batch, n * op.n_in, *h.shape[-2:])
            g = F.conv2d(g, p["weight"].reshape(n * op.n_out, op.n_in, op.kernel, op.kernel),
                         p["bias"].reshape(-1) if op.bias else None, stride=op.stride, padding=op.padding, groups=n)
            return g.reshape(batch, n, op.n_out, *g.shape[-2:]).transpose(0, 1)
        if op.kind == "batchnorm":
            view = (h.shape[0], 1, op.n_out) + (1,) * (h.dim() - 3)
            mean, var = p["running_mean"], p["running_var"]
            if batch_stats is not None:  # per network and channel, over batch and positions
                flat = h.movedim(2, -1).reshape(h.shape[0], -1, op.n_out)
                var, mean = torch.var_mean(flat, dim=1, correction=0)
                batch_stats[op.name] = (mean, var * flat.shape[1] / max(flat.shape[1] - 1, 1))
            scale = torch.rsqrt(var + op.eps)
            if op.bias:
                shift = p["bias"] - mean * scale * p["weight"]
                scale = scale * p["weight"]
            else:
                shift = -mean * scale
            return h * scale.reshape(view) + shift.reshape(view)
        if op.kind == "layernorm":
            dims = tuple(range(-len(op.shape), 0))
            var, mean = torch.var_mean(h, dim=dims, keepdim=True, correction=0)
            z = (h - mean) * torch.rsqrt(var + op.eps)
            if op.bias:
                view = (h.shape[0], 1, *op.shape)
                z = z * p["weight"].reshape(view) + p["bias"].reshape(view)
            return z
        if op.kind == "act":
            return self.activate(h, op.act)
        if op.kind in ("maxpool", "avgpool"):
            n, batch = h.shape[:2]
            pool = F.max_pool2d if op.kind == "maxpool" else F.avg_pool2d
            g = pool(h.reshape(n * batch, *h.shape[2:]), op.kernel, op.stride, op.padding)
            return g.reshape(n, batch, *g.shape[1:])
        if op.kind == "gap":
            return h.mean(dim=(-2, -1))
        if op.kind == "flatten":
            return h.flatten(2)
        if op.kind == "add":
            return args[0] + args[1]
        if op.kind == "output":
            return h
        raise SpecError(f"op {op.name}: unknown kind {op.kind!r}")

    # ---- serialisation --------------------------------------------------------------------
    def to_json(self) -> str:
        defaults = Op("", "")
        ops = [{k: v for k, v in asdict(op).items() if k in ("name", "kind") or v != getattr(defaults, k)}
               for op in self.ops]
        d = {"name": self.name, "ops": ops, "input_shape": list(self.input_shape), "w0": self.w0,
             "output_offset": self.output_offset}
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d) -> GraphSpace:
        """The space `to_json` wrote; anything else raises SpecError naming the field."""
        if not isinstance(d, dict) or not isinstance(d.get("ops"), list) or not d["ops"]:
            raise SpecError("graph space: expected an object with a non-empty list 'ops'")
        unknown = set(d) - {"name", "ops", "input_shape", "w0", "output_offset"}
        if unknown:
            raise SpecError(f"graph space: unknown key(s) {sorted(unknown)}")
        ops = tuple(_op(x, i) for i, x in enumerate(d["ops"]))
        name, shape, numbers = space_fields(d, "graph space")
        return cls(name, ops, shape, **numbers)


_OP_TYPES = {f.name: f.type for f in fields(Op)}


def _op(d, i: int) -> Op:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or d.get("kind") not in OP_KINDS:
        raise SpecError(f"graph space: op {i} needs a string 'name' and a 'kind' in {', '.join(OP_KINDS)}")
    unknown = set(d) - set(_OP_TYPES)
    if unknown:
        raise SpecError(f"graph space: op {d['name']}: unknown key(s) {sorted(unknown)}")
    out = dict(d)
    for key in ("inputs", "shape"):
        if key in out:
            if not isinstance(out[key], list):
                raise SpecError(f"graph space: op {d['name']}: {key} must be a list")
            out[key] = tuple(out[key])
    for key in ("n_in", "n_out", "kernel", "stride", "padding"):
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0):
            raise SpecError(f"graph space: op {d['name']}: {key} {out[key]!r} must be a non-negative integer")
    if "bias" in out and not isinstance(out["bias"], bool):
        raise SpecError(f"graph space: op {d['name']}: bias must be true or false")
    if "eps" in out and (isinstance(out["eps"], bool) or not isinstance(out["eps"], int | float) or out["eps"] <= 0):
        raise SpecError(f"graph space: op {d['name']}: eps must be a positive number")
    return Op(**out)


def _infer_shapes(ops: tuple[Op, ...], input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-example output shape of every op; SpecError (naming the op) where the graph does not fit together."""
    shapes: dict[str, tuple[int, ...]] = {}
    if not ops or ops[0].kind != "input" or ops[-1].kind != "output":
        raise SpecError("graph space: ops must start with an input and end with an output")
    for op in ops:
        where = f"graph space: op {op.name} ({op.kind})"
        if op.name in shapes:
            raise SpecError(f"graph space: op name {op.name!r} repeats")
        if op.kind not in OP_KINDS:
            raise SpecError(f"{where}: unknown kind")
        missing = [i for i in op.inputs if i not in shapes]
        if missing:
            raise SpecError(f"{where}: reads {', '.join(missing)}, which no earlier op makes")
        wanted = {"input": 0, "add": 2}.get(op.kind, 1)
        if len(op.inputs) != wanted:
            raise SpecError(f"{where}: takes {wanted} input(s), got {len(op.inputs)}")
        ins = [shapes[i] for i in op.inputs]
        s = ins[0] if ins else tuple(input_shape)
        if op.kind == "conv" or op.kind in ("maxpool", "avgpool", "gap"):
            if len(s) != 3:
                raise SpecError(f"{where}: needs a [channels, height, width] input, got {list(s)}")
        if op.kind == "conv":
            if s[0] != op.n_in or op.n_out < 1 or op.kernel < 1 or op.stride < 1:
                raise SpecError(f"{where}: takes {op.n_in} channels (to {op.n_out}), input has {s[0]}")
            s = (op.n_out, *(_out_size(x, op) for x in s[1:]))
        elif op.kind == "linear":
            if s != (op.n_in,) or op.n_out < 1:
                raise SpecError(f"{where}: takes {op.n_in} features, input is {list(s)}")
            s = (op.n_out,)
        elif op.kind == "batchnorm":
            if s[0] != op.n_out or len(s) not in (1, 3):
                raise SpecError(f"{where}: normalises {op.n_out} channels, input is {list(s)}")
        elif op.kind == "layernorm":
            if not op.shape or tuple(s[len(s) - len(op.shape):]) != op.shape:
                raise SpecError(f"{where}: normalised shape {list(op.shape)} does not end input {list(s)}")
        elif op.kind == "act":
            if op.act not in ACTIVATIONS:
                raise SpecError(f"{where}: unknown activation {op.act!r} (known: {', '.join(ACTIVATIONS)})")
        elif op.kind in ("maxpool", "avgpool"):
            if op.kernel < 1 or op.stride < 1 or 2 * op.padding > op.kernel:
                raise SpecError(f"{where}: kernel {op.kernel}, stride {op.stride}, padding {op.padding} do not pool")
            if op.kind == "avgpool" and op.padding:
                raise SpecError(f"{where}: padded average pooling is not supported")
            s = (s[0], *(_out_size(x, op) for x in s[1:]))
        elif op.kind == "gap":
            s = (s[0],)
        elif op.kind == "flatten":
            s = (math.prod(s),)
        elif op.kind == "add":
            if ins[0] != ins[1]:
                raise SpecError(f"{where}: adds shapes {list(ins[0])} and {list(ins[1])}")
        if min(s) < 1:
            raise SpecError(f"{where}: output shape {list(s)} is empty (kernel larger than its input?)")
        shapes[op.name] = tuple(s)
    return shapes


def _out_size(size: int, op: Op) -> int:
    return (size + 2 * op.padding - op.kernel) // op.stride + 1


def _unit_classes(ops: tuple[Op, ...], shapes: dict) -> tuple[dict[str, str], _Classes, dict[str, list[Op]]]:
    """Which unit set each op's output channels belong to; the sets (union-find); the ops of each set."""
    classes, unit_of = _Classes(), {}
    for op in ops:
        if op.kind == "input":
            unit_of[op.name] = FIXED
        elif op.kind in PRODUCERS:
            unit_of[op.name] = classes.add(op.name)
        else:
            unit_of[op.name] = unit_of[op.inputs[0]]
            if op.kind == "add":
                classes.union(unit_of[op.inputs[0]], unit_of[op.inputs[1]])
            elif op.kind == "flatten" and math.prod(shapes[op.inputs[0]][1:]) > 1:
                classes.union(unit_of[op.name], FIXED)  # channels become blocks of inputs: see the module doc
            elif op.kind == "output":
                classes.union(unit_of[op.name], FIXED)
    members: dict[str, list[Op]] = {}
    for op in ops:
        members.setdefault(classes.find(unit_of[op.name]), []).append(op)
    return unit_of, classes, members


def _scaling_group(ops: tuple[Op, ...], members: list[Op]) -> str:
    """The exact scaling group of one unit set (see the module doc): one producer, then one activation,
    then only pooling; anything else (a normalisation, a sum, a second path) leaves none."""
    producers = [op for op in members if op.kind in PRODUCERS]
    acts = [op for op in members if op.kind == "act"]
    if len(producers) != 1 or len(acts) != 1 or acts[0].inputs != (producers[0].name,):
        return "none"
    readers = [op for op in ops if producers[0].name in op.inputs]
    if readers != acts:  # the pre-activation is read elsewhere too
        return "none"
    group = SCALING_GROUP[acts[0].act]
    allowed = {"avgpool", "gap", "flatten"} | ({"maxpool"} if group == "scale" else set())
    if any(op.kind not in allowed for op in members if op not in producers and op not in acts):
        return "none"
    return group


def stack_graph(space: WeightSpace) -> GraphSpace:
    """A stack of layers written as a graph: the stack is one way to write one, and both give the same
    parameters, permutation spec, scaling groups and forward (tested)."""
    ops, previous = [Op("input", "input")], "input"
    for layer in space.layers:
        ops.append(Op(layer.name, layer.kind, (previous,), layer.n_in, layer.n_out, layer.kernel, layer.stride))
        previous = layer.name
        if layer.act != "identity":
            ops.append(Op(f"{layer.name}:act", "act", (previous,), act=layer.act))
            previous = ops[-1].name
        if layer.pool:
            ops.append(Op(f"{layer.name}:pool", "gap", (previous,)))
            previous = ops[-1].name
    ops.append(Op("output", "output", (previous,)))
    return GraphSpace(space.name, tuple(ops), space.input_shape, space.w0, space.output_offset)


def space_from_dict(d) -> ParamLayout:
    """A stored weight space of either kind: a graph (`ops`) or a stack of layers (`layers`)."""
    if isinstance(d, dict) and "ops" in d:
        return GraphSpace.from_dict(d)
    return WeightSpace.from_dict(d)


__all__ = ["GraphSpace", "Op", "OP_KINDS", "space_from_dict", "stack_graph"]
