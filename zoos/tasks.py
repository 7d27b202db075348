"""What a zoo's networks are for, and how one scores them, batched over many networks.

- INR task: render the 28x28 grid; loss = pixel MSE against the network's target image; PSNR.
- Classifier task: logits on a fixed evaluation set; loss = cross-entropy, accuracy.

`evaluate(params, target)` scores M networks at once (`target[m]` is network m's target image
for INRs, ignored for classifiers) in chunks sized to bound memory.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property

import pandas as pd
import torch
import torch.nn.functional as F

from zoos.data import load_images
from zoos.space import Params, WeightSpace


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1] from their mean squared error."""
    return -10 * torch.log10(mse.clamp_min(1e-12))


def inr_grid(size: int = 28) -> torch.Tensor:
    """DWSNets grid: meshgrid 'xy' of linspace(-1, 1), row-major; pixel (i, j) -> (x=col_j, y=row_i)."""
    lin = torch.linspace(-1, 1, size)
    x, y = torch.meshgrid(lin, lin, indexing="xy")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def classifier_inputs(images: torch.Tensor) -> torch.Tensor:
    """CNN Zoo preprocessing: [0, 1] grey -> [-1, 1], channel axis added."""
    return (images * 2 - 1).unsqueeze(1)


def scale_inputs(images: torch.Tensor, scaling: str = "signed") -> torch.Tensor:
    """Grey images in [0, 1] as a recipe feeds them: "signed" (CNN Zoo, [-1, 1]) or "unit" (pixels / 255,
    as Git Re-Basin's ByteToFloat), channel axis added."""
    if scaling == "signed":
        return classifier_inputs(images)
    if scaling == "unit":
        return images.unsqueeze(1)
    if scaling == "mnist_standard":
        return ((images - 0.1307) / 0.3081).unsqueeze(1)
    raise ValueError(f"unknown input scaling {scaling!r} (known: signed, unit, mnist_standard)")


def grid_sine_mlp(space: WeightSpace) -> bool:
    """Sine MLPs on 2-D coordinates (SIRENs): `grid_forward` can render them."""
    if not space.stacked:
        return False
    *hidden, _ = space.layers
    return (bool(hidden) and hidden[0].n_in == 2 and all(layer.kind == "linear" for layer in space.layers)
            and all(layer.act == "sin" for layer in hidden))


def grid_first_layer(w: torch.Tensor, b: torch.Tensor, size: int, out: torch.Tensor,
                     cos_out: torch.Tensor | None = None) -> None:
    """sin (and cos) of the first layer's pre-activation u = w x + b on the `inr_grid` pixels, w [n, units, 2]
    and b [n, units] already scaled by w0; out and cos_out are [n, pixels, units] buffers.

    The grid is a product of one coordinate list per axis (pixel (i, j) is x = lin[j], y = lin[i]), so
    u = r_i + a_j with a_j = w[:, 0] x_j and r_i = w[:, 1] y_i + b, and the angle-addition formulas
    sin(r + a) = sin r cos a + cos r sin a, cos(r + a) = cos r cos a - sin r sin a give both from
    4 x size transcendentals per unit instead of 2 x size^2: sin and cos dominate a SIREN's cost.
    """
    n, units = w.shape[:2]
    lin = torch.linspace(-1, 1, size, dtype=w.dtype, device=w.device)[None, :, None]
    a = w[:, None, :, 0] * lin  # [n, column j, unit]
    r = torch.addcmul(b[:, None, :], w[:, None, :, 1], lin)  # [n, row i, unit]
    sa, ca, sr, cr = a.sin()[:, None], a.cos()[:, None], r.sin()[:, :, None], r.cos()[:, :, None]
    torch.mul(sr, ca, out=out.view(n, size, size, units)).addcmul_(cr, sa)
    if cos_out is not None:
        torch.mul(cr, ca, out=cos_out.view(n, size, size, units)).addcmul_(sr, sa, value=-1.0)


@torch.no_grad()
def grid_forward(space: WeightSpace, params: Params, size: int) -> torch.Tensor:
    """`space.forward(params, inr_grid(size))` for sine MLPs ([N, pixels, out]), with the first layer's
    sines from `grid_first_layer` and the other sines taken in place."""
    *hidden, last = space.layers
    w0 = space.w0
    first = hidden[0]
    n = params[first.weight].shape[0]
    h = params[first.weight].new_empty(n, size * size, first.n_out)
    grid_first_layer(params[first.weight] * w0, params[first.bias] * w0, size, h)
    for layer in hidden[1:]:  # bmm then an in-place bias add: cheaper than baddbmm's broadcast bias here
        h = torch.bmm(h, (params[layer.weight] * w0).transpose(1, 2)).add_((params[layer.bias] * w0).unsqueeze(1))
        h.sin_()
    y = torch.bmm(h, params[last.weight].transpose(1, 2)).add_(params[last.bias].unsqueeze(1))
    return y.add_(space.output_offset) if space.output_offset else y


# Floats in the widest activation of one evaluation chunk (4 MB): small enough to stay in cache, large
# enough that per-op overhead is spread over ~40 SIRENs (measured optimum, 2.5x faster than 1600 at once).
CACHE_FLOATS = 1 << 20


def _on(t: torch.Tensor, like: Params | torch.Tensor) -> torch.Tensor:
    """t on the device of `like` (a tensor, or the first tensor of a parameter dict); no copy when already there."""
    ref = like if isinstance(like, torch.Tensor) else next(iter(like.values()))
    return t.to(ref.device)


def _chunks(m: int, size: int):
    for start in range(0, m, size):
        yield slice(start, min(start + size, m))


class Task:
    """Scores networks on a task's data. Networks are scored on `device` (set with `to`; the data moves
    there when used) and every score comes back on the CPU; on the CPU nothing is moved or copied."""

    kind: str
    metrics: tuple[str, ...]
    higher_is_better: dict[str, bool]

    def __init__(self, space: WeightSpace):
        self.space = space
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> Task:
        self.device = torch.device(device)
        return self

    def inputs(self) -> torch.Tensor:
        raise NotImplementedError

    def chunk(self) -> int:
        """Networks per forward pass: keeps the widest activation tensor near 64M floats."""
        x = self.inputs()
        widest = self.space.widest
        per_net = x.shape[0] * widest * max(1, math.prod(x.shape[2:]) // 4)
        return max(1, 64_000_000 // per_net)

    def eval_chunk(self) -> int:
        """Networks per forward pass when scoring (no gradients): `chunk()` unless a task knows better."""
        return self.chunk()

    def forward(self, params: Params) -> torch.Tensor:
        """[M, B, out] on the task's inputs, one pass (no chunking), on the parameters' device."""
        return self.space.forward(params, _on(self.inputs(), params))

    def _slice(self, params: Params, s: slice) -> Params:
        return {k: v[s].to(self.device) for k, v in params.items()}

    @torch.no_grad()
    def outputs(self, params: Params) -> torch.Tensor:
        """[M, B, out] on the task's inputs."""
        m = next(iter(params.values())).shape[0]
        return torch.cat([self.forward(self._slice(params, s)).cpu() for s in _chunks(m, self.eval_chunk())])

    @torch.no_grad()
    def evaluate(self, params: Params, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = next(iter(params.values())).shape[0]
        out: dict[str, list] = {k: [] for k in self.metrics}
        for s in _chunks(m, self.eval_chunk()):
            y = self.forward(self._slice(params, s))
            for k, v in self.score(y, None if target is None else target[s]).items():
                out[k].append(v.cpu())
        return {k: torch.cat(v) for k, v in out.items()}

    def score(self, outputs: torch.Tensor, target) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def ensemble(self, outputs: torch.Tensor) -> torch.Tensor:
        """The output ensemble of N networks' outputs [N, B, out] -> [1, B, out] (mean output)."""
        return outputs.mean(0, keepdim=True)

    def task_loss(self, params: Params, target: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable training loss per network [M] (task-loss objectives, e.g. Sinkhorn Mid)."""
        raise NotImplementedError

    def data(self) -> tuple[torch.Tensor, ...]:
        """Every tensor a score or a training batch is computed from, after preprocessing."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of the data this task scores against (so a result key changes with it): e.g. which
        data set "auto" resolved to on this machine, and the images after preprocessing."""
        h = hashlib.sha256(f"{self.kind}:{type(self).__name__}".encode())
        for t in self.data():
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
        return h.hexdigest()[:16]


class InrTask(Task):
    kind = "inr"
    metrics = ("loss", "psnr")
    higher_is_better = {"loss": False, "psnr": True}

    def __init__(self, space: WeightSpace, targets: torch.Tensor):
        super().__init__(space)
        self.targets = targets.float()
        self.size = targets.shape[-1]

    @cached_property
    def grid(self) -> torch.Tensor:
        return inr_grid(self.size)

    def inputs(self) -> torch.Tensor:
        return self.grid

    def eval_chunk(self) -> int:
        # scoring only: a few dozen networks at a time, so that activations stay in cache; training-time
        # batches (task-loss objectives) keep `chunk()`, and so does an accelerator (no cache to fit)
        if self.device.type != "cpu":
            return self.chunk()
        widest = self.space.widest
        return max(1, CACHE_FLOATS // (len(self.grid) * widest))

    def forward(self, params):
        # the angle-addition first layer pays off from a few networks on (more, smaller ops)
        if grid_sine_mlp(self.space) and next(iter(params.values())).shape[0] >= 4:
            return grid_forward(self.space, params, self.size)
        return super().forward(params)

    def score(self, outputs, target):
        mse = ((outputs[..., 0] - _on(self.targets[target].flatten(1), outputs)) ** 2).mean(dim=1)
        return {"loss": mse, "psnr": psnr(mse)}

    def task_loss(self, params, target=None):
        return self.score(self.space.forward(params, _on(self.grid, params)), target)["loss"]

    def data(self):
        return (self.targets,)

    def render(self, params: Params) -> torch.Tensor:
        return self.outputs(params)[..., 0].reshape(-1, self.size, self.size)


class ClassifierTask(Task):
    kind = "classifier"
    metrics = ("loss", "acc")
    higher_is_better = {"loss": False, "acc": True}

    def __init__(self, space: WeightSpace, dataset: str = "auto", n_eval: int | None = 2000, seed: int = 0,
                 input_scaling: str = "signed"):
        # n_eval: a seeded sample of that many test images; None: the whole test split
        super().__init__(space)
        self.dataset, self.n_eval, self.seed, self.input_scaling = dataset, n_eval, seed, input_scaling

    @cached_property
    def _eval(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = load_images(self.dataset, "test")
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[: self.n_eval]
        return self._shaped(scale_inputs(images[idx], self.input_scaling)), labels[idx]

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        """An MLP's first layer reads the image flattened."""
        return x.flatten(1) if len(self.space.input_shape) == 1 else x

    def inputs(self) -> torch.Tensor:
        return self._eval[0]

    def data(self):
        images, labels = load_images(self.dataset, "train")  # the pool REPAIR and task-loss batches come from
        return (*self._eval, images, labels)

    def train_batch(self, n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch of training images (REPAIR statistics, task-loss objectives)."""
        images, labels = load_images(self.dataset, "train")
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        return self._shaped(scale_inputs(images[idx], self.input_scaling)), labels[idx]

    def fixed_train_batch(self, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """`train_batch(n)`, drawn once and kept (task-loss objectives, statistics corrections)."""
        if getattr(self, "_train", None) is None or len(self._train[0]) != n:
            self._train = self.train_batch(n)
        return self._train

    def task_loss(self, params, target=None, n: int = 512):
        """Cross-entropy on a fixed training batch of n images (never the evaluation set)."""
        x, y = (_on(t, params) for t in self.fixed_train_batch(n))
        logits = self.space.forward(params, x)
        m = logits.shape[0]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(m), reduction="none")
        return loss.reshape(m, -1).mean(1)

    def ensemble(self, outputs):
        """Mean predicted probabilities, as log-probabilities (scored like logits)."""
        return torch.log_softmax(outputs, -1).exp().mean(0, keepdim=True).clamp_min(1e-30).log()

    def score(self, outputs, target):
        labels = _on(self._eval[1], outputs)
        m = outputs.shape[0]
        loss = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), labels.repeat(m), reduction="none")
        acc = (outputs.argmax(-1) == labels).float().mean(1)
        return {"loss": loss.reshape(m, -1).mean(1), "acc": acc}


# training images that statistics corrections (REPAIR, BatchNorm recounts) are measured on
STATISTICS_BATCH = 512


def zoo_fingerprint(zoo, task: Task) -> str:
    """What changes a result besides the weights: the architecture's spec (activation, w0, output
    offset), the task's options, the metadata (splits, INR targets), and the data scored against."""
    meta = zoo.meta.drop(columns=[c for c in zoo.meta.columns if zoo.meta[c].dtype == object
                                  and not zoo.meta[c].map(lambda v: v is None or isinstance(v, str)).all()])
    parts = {"space": zoo.space.to_json(), "task": zoo.task, "data": task.fingerprint(),
             "meta": hashlib.sha256(pd.util.hash_pandas_object(meta, index=True).to_numpy().tobytes()).hexdigest(),
             "meta_columns": list(map(str, zoo.meta.columns))}
    if zoo.space.has_batchnorm:  # paths and combinations are scored with recounted statistics (bench.evaluation)
        parts["statistics"] = f"BatchNorm recounted on {STATISTICS_BATCH} training images"
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_task(zoo) -> Task:
    kind = zoo.task.get("kind")
    if kind == "inr":
        return InrTask(zoo.space, zoo.targets)
    if kind == "classifier":
        return ClassifierTask(zoo.space, zoo.task.get("dataset", "auto"), zoo.task.get("n_eval", 2000),
                              input_scaling=zoo.task.get("input_scaling", "signed"))
    raise ValueError(f"zoo {zoo.name}: unknown task kind {kind!r}")
