"""Weight spaces: an architecture's parameter layout, its symmetry group and a batched forward.

A `WeightSpace` is a feed-forward stack of linear / 3x3-conv layers written in PyTorch
`state_dict` names and layouts (`[out, in]`, `[out, in, kh, kw]`). From the stack it derives the
permutation spec (which permutation acts on each axis of each parameter, git-re-basin's
`axes_to_perm`), each permutation's scaling group (sign for odd activations, positive scale for
ReLU) and a forward pass for N networks at once. Methods only read `axes`, `perm_sizes` and
`groups`, so they work on any space.

Conventions. Every tensor of a parameter batch has a leading network axis N. A permutation is
an index vector `p` with "new unit i = old unit p[i]"; axis 0 of a weight or bias is the side
that *produces* a unit (incoming weights), any later axis *consumes* it (outgoing weights).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]

ACTIVATIONS = ("identity", "relu", "tanh", "sin")
# Which rescalings commute with an activation: sign flips for odd ones, positive scaling for ReLU.
SCALING_GROUP = {"identity": "none", "relu": "scale", "tanh": "sign", "sin": "sign"}


class SpecError(ValueError):
    """A weight space or parameter set that does not fit together."""


class ParamLayout:
    """What every weight space offers besides its forward: named parameter shapes (`shapes()`), the
    permutation spec (`axes`, `perm_sizes`, `groups`) and the operations on parameter sets that
    need nothing else. `WeightSpace` (a stack of layers) and `zoos.graph_space.GraphSpace` (any
    feed-forward graph) share them."""

    axes: dict[str, tuple[str | None, ...]]
    perm_sizes: dict[str, int]
    groups: dict[str, str]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes().values())

    def touches(self, perm: str) -> list[tuple[str, int]]:
        """(parameter, axis) pairs a permutation acts on; axis 0 produces, later axes consume."""
        return [(name, ax) for name, ps in self.axes.items() for ax, p in enumerate(ps) if p == perm]

    def check(self, params: Params, where: str = "parameters") -> int:
        """Validate names, shapes, dtype and finiteness; return the batch size N.

        Messages start with `where: ` (no prefix when `where` is empty)."""
        at = f"{where}: " if where else ""
        shapes = self.shapes()
        missing = sorted(set(shapes) - set(params))
        unknown = sorted(map(str, set(params) - set(shapes)))
        if missing:
            raise SpecError(f"{at}missing parameter(s) {', '.join(missing)} for weight space {self.name}")
        if unknown:
            raise SpecError(f"{at}parameter(s) {', '.join(unknown)} not in weight space {self.name}")
        n = None
        for name, shape in shapes.items():
            t = params[name]
            if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t):
                raise SpecError(f"{at}{name} has dtype {getattr(t, 'dtype', type(t).__name__)}, "
                                f"expected a floating point tensor")
            if t.dim() == 0 or tuple(t.shape[1:]) != shape:
                raise SpecError(f"{at}{name} has shape {tuple(t.shape[1:])}, expected {shape}")
            n = t.shape[0] if n is None else n
            if t.shape[0] != n:
                raise SpecError(f"{at}{name} holds {t.shape[0]} networks, others {n}")
            if not torch.isfinite(t).all():
                raise SpecError(f"{at}{name} contains NaN or inf weights")
        return n

    def flatten(self, params: Params) -> torch.Tensor:
        n = next(iter(params.values())).shape[0]
        return torch.cat([params[k].reshape(n, -1) for k in self.shapes()], dim=1)

    def unflatten(self, flat: torch.Tensor) -> Params:
        """Per-parameter tensors [N, *shape]; views into `flat` (no copy) whenever strides allow."""
        out, i = {}, 0
        for k, s in self.shapes().items():
            size = math.prod(s)
            out[k] = flat[:, i : i + size].reshape(flat.shape[0], *s)
            i += size
        return out

    @property
    def widest(self) -> int:
        """The most units any layer produces (sizes activation buffers)."""
        raise NotImplementedError

    @property
    def has_conv(self) -> bool:
        raise NotImplementedError

    @property
    def stacked(self) -> bool:
        """A stack of layers (`layers`), which layer-by-layer readers need; False for graph spaces."""
        raise NotImplementedError

    @property
    def has_batchnorm(self) -> bool:
        """Whether networks of this space carry BatchNorm running statistics (none in a stack of layers)."""
        return False

    def activate(self, z: torch.Tensor, act: str) -> torch.Tensor:
        if act == "relu":
            return torch.relu(z)
        if act == "tanh":
            return torch.tanh(z)
        if act == "sin":
            return torch.sin(self.w0 * z)
        return z


@dataclass(frozen=True)
class Layer:
    name: str  # module prefix: parameters are f"{name}.weight" and f"{name}.bias"
    kind: str  # "linear" | "conv"
    n_in: int
    n_out: int
    act: str = "identity"  # activation applied after this layer
    kernel: int = 1
    stride: int = 1
    pool: bool = False  # global average pooling after the activation (conv -> dense)

    @property
    def weight(self) -> str:
        return f"{self.name}.weight"

    @property
    def bias(self) -> str:
        return f"{self.name}.bias"

    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "conv":
            return (self.n_out, self.n_in, self.kernel, self.kernel)
        return (self.n_out, self.n_in)


@dataclass(frozen=True)
class WeightSpace(ParamLayout):
    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]  # per example, e.g. (2,) or (1, 28, 28)
    w0: float = 1.0  # sine frequency: sin(w0 * z) (SIREN)
    output_offset: float = 0.0  # added to the output (DWSNets SIRENs add 0.5)
    axes: dict[str, tuple[str | None, ...]] = field(init=False, compare=False, repr=False)
    perm_sizes: dict[str, int] = field(init=False, compare=False, repr=False)
    groups: dict[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        for i, layer in enumerate(self.layers):
            if layer.act not in ACTIVATIONS:
                known = ", ".join(ACTIVATIONS)
                raise SpecError(f"layer {layer.name}: unknown activation {layer.act!r} (known: {known})")
            if layer.kind not in ("linear", "conv"):
                raise SpecError(f"layer {layer.name}: unknown kind {layer.kind!r}")
            if i and self.layers[i - 1].n_out != layer.n_in:
                raise SpecError(f"layer {layer.name}: takes {layer.n_in} inputs,"
                                f" previous gives {self.layers[i - 1].n_out}")
        axes, sizes, groups = {}, {}, {}
        previous = None
        for i, layer in enumerate(self.layers):
            hidden = i < len(self.layers) - 1
            perm = f"P{i}" if hidden else None
            if perm:
                sizes[perm] = layer.n_out
                groups[perm] = SCALING_GROUP[layer.act]
            spatial = (None, None) if layer.kind == "conv" else ()
            axes[layer.weight] = (perm, previous, *spatial)
            axes[layer.bias] = (perm,)
            previous = perm
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "perm_sizes", sizes)
        object.__setattr__(self, "groups", groups)

    # ---- layout ---------------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for layer in self.layers:
            out[layer.weight] = layer.weight_shape()
            out[layer.bias] = (layer.n_out,)
        return out

    @property
    def widest(self) -> int:
        return max(layer.n_out for layer in self.layers)

    @property
    def has_conv(self) -> bool:
        return any(layer.kind == "conv" for layer in self.layers)

    @property
    def stacked(self) -> bool:
        return True

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs of N networks: x is [B, *input_shape] (shared) or [N, B, *input_shape].

        Returns [N, B, n_out]. Linear layers use one batched matmul; conv layers one grouped conv
        with the N networks as groups.
        """
        n = params[self.layers[0].weight].shape[0]
        if n > 1 and not x.is_cuda and self.has_conv:
            # on CPU a loop of ordinary convs beats one grouped conv over the networks (~1.7x, measured)
            shared = x.dim() == len(self.input_shape) + 1
            return torch.cat([self.forward({k: v[i : i + 1] for k, v in params.items()}, x if shared else x[i : i + 1])
                              for i in range(n)])
        for _, h in self.hidden(params, x):
            pass
        return h + self.output_offset if self.output_offset else h

    def hidden(self, params: Params, x: torch.Tensor,
               adjust: Callable[[int, Layer, torch.Tensor], torch.Tensor] | None = None
               ) -> Iterator[tuple[Layer, torch.Tensor]]:
        """The forward pass of N networks layer by layer: yields (layer, h) for every layer in order, h its
        activation (pooled where the layer pools) [N, B, n_out(, H, W)], which the next layer reads; the last
        layer's is the output before `output_offset`. x is [B, *input_shape] (shared) or [N, B, *input_shape].
        `adjust(index, layer, z)` sees each pre-activation z and returns the one to activate (REPAIR measures
        and corrects them there). A layer is computed only when the caller asks for it."""
        n = params[self.layers[0].weight].shape[0]
        h = x.unsqueeze(0).expand(n, *x.shape) if x.dim() == len(self.input_shape) + 1 else x
        for i, layer in enumerate(self.layers):
            z = self.preactivation(layer, params[layer.weight], params[layer.bias], h)
            # z is not kept past its activation: peak memory as a plain forward
            h = self.postactivation(layer, z if adjust is None else adjust(i, layer, z))
            del z
            yield layer, h

    @staticmethod
    def preactivation(layer: Layer, w: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One layer of N networks: h [N, B, ...] -> pre-activation [N, B, n_out(, H, W)]."""
        if layer.kind == "linear":
            return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        n, batch = h.shape[:2]
        # [N, B, C, H, W] -> [B, N*C, H, W]; networks become conv groups
        g = h.transpose(0, 1).reshape(batch, n * layer.n_in, *h.shape[-2:])
        g = F.conv2d(g, w.reshape(n * layer.n_out, layer.n_in, layer.kernel, layer.kernel), b.reshape(-1),
                     stride=layer.stride, groups=n)
        return g.reshape(batch, n, layer.n_out, *g.shape[-2:]).transpose(0, 1)

    def postactivation(self, layer: Layer, z: torch.Tensor) -> torch.Tensor:
        """The layer's activation, then its pooling."""
        h = self.activate(z, layer.act)
        return h.mean(dim=(-2, -1)) if layer.pool else h

    def to_module(self, params: Params, index: int = 0) -> torch.nn.Module:
        """An ordinary nn.Module computing network `index` (for users and as a cross-check)."""
        return _Module(self, {k: v[index].detach().clone() for k, v in params.items()})

    # ---- serialisation --------------------------------------------------------------------
    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k not in ("axes", "perm_sizes", "groups")}
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WeightSpace:
        """The space `to_json` wrote. Any other text raises SpecError (it comes from files on disk)."""
        try:
            d = json.loads(text)
        except (ValueError, TypeError, RecursionError) as e:
            raise SpecError(f"weight space: not valid JSON ({e})") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d) -> WeightSpace:
        """`from_json` on parsed JSON: checks every field's type and that shapes flow through the forward."""
        _fields(d, "weight space", {"name", "layers", "input_shape"}, {"w0", "output_offset"})
        if not isinstance(d["layers"], list) or not d["layers"]:
            raise SpecError("weight space: 'layers' must be a non-empty list")
        layers = tuple(_layer(x, i) for i, x in enumerate(d["layers"]))
        names = [layer.name for layer in layers]
        if len(set(names)) < len(names):
            raise SpecError(f"weight space: layer names repeat ({', '.join(names)})")
        name, shape, numbers = space_fields(d, "weight space")
        space = cls(name, layers, shape, **numbers)
        _check_flow(space)
        return space


def space_fields(d: dict, what: str) -> tuple[str, tuple[int, ...], dict[str, float]]:
    """The fields every stored space has: name, input shape, and the numbers w0 and output_offset."""
    shape = d.get("input_shape")
    if not isinstance(shape, list) or not shape or not all(_count(s) for s in shape):
        raise SpecError(f"{what}: input_shape {shape!r} must be a list of positive integers")
    numbers = {}
    for key, default in (("w0", 1.0), ("output_offset", 0.0)):
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{what}: {key} {v!r} must be a finite number")
        numbers[key] = float(v)
    return _text(d.get("name"), f"{what}: name"), tuple(shape), numbers


def _text(v, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise SpecError(f"{what} {v!r} must be a non-empty string")
    return v


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _fields(d, what: str, required: set[str], optional: set[str]) -> None:
    if not isinstance(d, dict):
        raise SpecError(f"{what}: expected a JSON object, got {type(d).__name__}")
    missing, unknown = required - set(d), set(d) - required - optional
    if missing or unknown:
        raise SpecError(f"{what}: missing key(s) {sorted(missing) or 'none'}, "
                        f"unknown key(s) {sorted(unknown) or 'none'}")


def _layer(d, i: int) -> Layer:
    _fields(d, f"layer {i}", {"name", "kind", "n_in", "n_out"}, {"act", "kernel", "stride", "pool"})
    d = {"act": "identity", "kernel": 1, "stride": 1, "pool": False, **d}
    for key in ("name", "kind", "act"):
        _text(d[key], f"layer {i}: {key}")
    for key in ("n_in", "n_out", "kernel", "stride"):
        if not _count(d[key]):
            raise SpecError(f"layer {i}: {key} {d[key]!r} must be a positive integer")
    if not isinstance(d["pool"], bool):
        raise SpecError(f"layer {i}: pool {d['pool']!r} must be true or false")
    return Layer(**d)


def _check_flow(space: WeightSpace) -> None:
    """What `forward` needs beyond layer-to-layer widths: the input fits the first layer, convs come
    first with kernels that fit their input, and the last conv pools before any dense layer."""
    first, shape = space.layers[0], space.input_shape
    if first.kind == "linear" and shape != (first.n_in,):
        raise SpecError(f"weight space: input_shape {list(shape)} does not fit layer {first.name} "
                        f"({first.n_in} inputs)")
    if first.kind == "conv" and (len(shape) != 3 or shape[0] != first.n_in):
        raise SpecError(f"weight space: input_shape {list(shape)} is not [{first.n_in}, height, width] "
                        f"for conv layer {first.name}")
    size, spatial = list(shape[1:]), first.kind == "conv"
    for layer in space.layers:
        if layer.kind == "linear" and (spatial or layer.pool):
            raise SpecError(f"layer {layer.name}: a dense layer needs a pooled input and cannot pool")
        if layer.kind == "conv":
            if not spatial:
                raise SpecError(f"layer {layer.name}: a conv layer after a dense or pooled layer")
            size = [(s - layer.kernel) // layer.stride + 1 for s in size]
            if min(size) < 1:
                raise SpecError(f"layer {layer.name}: its {layer.kernel}x{layer.kernel} kernel is larger "
                                f"than its input")
            spatial = not layer.pool
    if spatial:
        raise SpecError(f"layer {space.layers[-1].name}: the last conv layer must pool")


class _Module(torch.nn.Module):
    def __init__(self, space: WeightSpace, state: Params):
        super().__init__()
        self.space = space
        self.layers = torch.nn.ModuleDict()
        for layer in space.layers:
            if layer.kind == "linear":
                m = torch.nn.Linear(layer.n_in, layer.n_out)
            else:
                m = torch.nn.Conv2d(layer.n_in, layer.n_out, layer.kernel, stride=layer.stride)
            m.weight.data.copy_(state[layer.weight])
            m.bias.data.copy_(state[layer.bias])
            self.layers[layer.name.replace(".", "_")] = m

    def forward(self, x):
        for layer in self.space.layers:
            x = self.space.activate(self.layers[layer.name.replace(".", "_")](x), layer.act)
            if layer.pool:
                x = x.mean(dim=(-2, -1))
        return x + self.space.output_offset


# ---- the architectures we ship ---------------------------------------------------------------
def mlp_space(widths: list[int], act: str = "relu", prefix: str = "seq", w0: float = 1.0,
              output_offset: float = 0.0, name: str | None = None) -> WeightSpace:
    """An MLP widths[0] -> ... -> widths[-1] with `act` after every hidden layer."""
    layers = tuple(
        Layer(f"{prefix}.{i}", "linear", widths[i], widths[i + 1], act if i < len(widths) - 2 else "identity")
        for i in range(len(widths) - 1)
    )
    return WeightSpace(name or f"mlp-{act}-{'-'.join(map(str, widths))}", layers, (widths[0],), w0, output_offset)


def siren_space(hidden: int = 32, depth: int = 2) -> WeightSpace:
    """DWSNets SIREN [2, 32, 32, 1]: sin(30 (W x + b)) hidden layers, linear output + 0.5."""
    return mlp_space([2] + [hidden] * depth + [1], act="sin", w0=30.0, output_offset=0.5,
                     name=f"siren-2-{'-'.join([str(hidden)] * depth)}-1")


def cnn_zoo_space(act: str = "relu", channels: int = 16, image: int = 28, in_channels: int = 1,
                  classes: int = 10) -> WeightSpace:
    """Unterthiner et al.'s CNN Zoo net: 3 x (3x3 conv, stride 2, valid) -> global avg pool -> dense."""
    layers = (
        Layer("conv1", "conv", in_channels, channels, act, 3, 2),
        Layer("conv2", "conv", channels, channels, act, 3, 2),
        Layer("conv3", "conv", channels, channels, act, 3, 2, pool=True),
        Layer("fc", "linear", channels, classes),
    )
    return WeightSpace(f"cnnzoo-{act}-{channels}", layers, (in_channels, image, image))
