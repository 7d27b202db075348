"""What a zoo's networks are for, and how one scores them, batched over many networks.

- INR task: render the 28x28 grid; loss = pixel MSE against the network's target image; PSNR.
- Classifier task: logits on a fixed evaluation set; loss = cross-entropy, accuracy.

`evaluate(params, target)` scores M networks at once (`target[m]` is network m's target image
for INRs, ignored for classifiers) in chunks sized to bound memory.

A task class owns everything that differs between task kinds, so that nothing else asks which kind a
zoo has: per-network targets (`targets`) and the groups that can be scored together (`draw_groups`),
what a zoo of the kind must hold (`check_zoo`), the inputs data-reading methods and statistics
corrections read, the function signature collapse checks compare, a method's training loss, and the
reconstruction scores. `TASKS` maps a zoo's `task["kind"]` to its class (`task_class`, `make_task`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from functools import cached_property
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from zoos.data import load_images
from zoos.recipes import describe
from zoos.space import Params, WeightSpace

TARGETS_KEY = "__targets__"  # an INR zoo's target images, in its weights file beside the parameters


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

    def task_loss(self, params: Params, target: torch.Tensor | None = None, n: int = 512) -> torch.Tensor:
        """Differentiable training loss per network [M] (task-loss objectives, e.g. Sinkhorn Mid), on a fixed
        batch of n training examples where the task draws some."""
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

    # ---- what differs between task kinds, for the zoo as a whole (no data loaded) ---------------
    # whether each network is scored against a target of its own (an INR's image): networks scored
    # together (a pair, a merged group) must then share it
    per_network_target: ClassVar[bool] = False

    @classmethod
    def for_zoo(cls, zoo) -> Task:
        raise NotImplementedError

    @classmethod
    def check_zoo(cls, zoo, bad: Callable[[str, str], Exception]) -> None:
        """Raise `bad(part, message)` unless `zoo` holds what this task and the protocols need."""

    @classmethod
    def targets(cls, zoo, indices: list[int]) -> torch.Tensor | None:
        """Each network's target index (`evaluate`'s `target`), None for a task without per-network targets."""
        return None

    @classmethod
    def groups(cls, zoo, pool: list[int], size: int, count: int, seed: int, overlapping: bool
               ) -> list[tuple[int, ...]]:
        """`draw_groups` on the networks `pool` of one split."""
        if overlapping:  # each group its own draw (merge); a pool smaller than `size` has none
            if len(pool) < size:
                return []
            return [tuple(sorted(pick(pool, size, seed * 7919 + size * 101 + g))) for g in range(count)]
        shuffled = pick(pool, len(pool), seed)
        return [tuple(shuffled[i : i + size]) for i in range(0, len(shuffled) - size + 1, size)][:count]

    @classmethod
    def recipe(cls, zoo) -> str:
        """How the zoo's networks were trained, in one line ("" when its spec does not record it)."""
        return ""

    # ---- what differs between task kinds, on the task's data ----------------------------------
    def statistics_inputs(self, n: int | None = None) -> torch.Tensor:
        """The inputs statistics corrections (REPAIR, BatchNorm recounts) are measured on (classifiers: n
        training images, default STATISTICS_BATCH; an INR's are its whole grid)."""
        return self.inputs()

    def input_sample(self, n: int) -> torch.Tensor:
        """The first n of the task's inputs (an INR's are one domain, its grid: all of them)."""
        return self.inputs()[:n]

    def method_inputs(self, n: int, seed: int = 0) -> torch.Tensor:
        """The batch a data-based method may read (never evaluation data); n and seed where there is a draw."""
        return self.inputs()

    def loss_target(self, index: int | None) -> torch.Tensor | None:
        """`task_loss`'s target for one network whose target index is `index` (see `targets`)."""
        return None

    def train_examples(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A seeded draw of n training examples (inputs, labels) a method may train on; None for a task
        whose training data is the network's own target."""
        return None

    def step_loss(self, params: Params, batch, target: torch.Tensor | None) -> torch.Tensor:
        """One network's [1, ...] training loss (a scalar) on `batch` (drawn from `train_examples`)."""
        raise NotImplementedError

    def selection_loss(self, params: Params, target: torch.Tensor | None) -> torch.Tensor:
        """Loss [M] by which a method may pick among networks: never on the evaluation data."""
        raise NotImplementedError

    def signature(self, outputs: torch.Tensor) -> torch.Tensor:
        """What networks compute, one row per network, from their outputs [M, B, out] (collapse checks)."""
        return outputs.flatten(1)

    def distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[M, P] function distances between signature rows of x and y."""
        return torch.cdist(x.double(), y.double())

    def comparable(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs as a reconstruction's R^2 compares them."""
        return outputs

    def reconstruction_scores(self, zoo, indices: list[int], params: Params, decoded: Params,
                              outputs: torch.Tensor, decoded_outputs: torch.Tensor, nearest: torch.Tensor) -> dict:
        """The task's own reconstruction columns for networks `indices` of `zoo` (`params`), decoded by a method
        (`decoded`); outputs are `comparable`, nearest[m] the original nearest to decoded network m."""
        return {}


class InrTask(Task):
    kind = "inr"
    metrics = ("loss", "psnr")
    higher_is_better = {"loss": False, "psnr": True}
    per_network_target = True

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

    def task_loss(self, params, target=None, n: int = 512):
        # n: a classifier's batch size; an INR's loss reads every pixel of its image
        return self.score(self.space.forward(params, _on(self.grid, params)), target)["loss"]

    def data(self):
        return (self.targets,)

    def render(self, params: Params) -> torch.Tensor:
        return self.outputs(params)[..., 0].reshape(-1, self.size, self.size)

    @classmethod
    def for_zoo(cls, zoo) -> InrTask:
        return cls(zoo.space, zoo.targets)

    @classmethod
    def check_zoo(cls, zoo, bad) -> None:
        if zoo.space.input_shape != (2,):
            raise bad("spec", f"an INR zoo takes 2-D pixel coordinates, not input_shape {zoo.space.input_shape}")
        t = zoo.targets
        if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t) or t.dim() != 3 or not len(t) \
                or t.shape[1] != t.shape[2] or not t.shape[1]:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else "none"
            raise bad("weights", f"an INR zoo needs its target images as float {TARGETS_KEY} [images, size, size], "
                                 f"found {got}")
        if not torch.isfinite(t).all():
            raise bad("weights", f"{TARGETS_KEY} contains NaN or inf pixels")
        target = zoo.meta.get("target")
        if target is None or not pd.api.types.is_integer_dtype(target) or target.isna().any():
            raise bad("metadata", f"an INR zoo needs an integer column 'target' (found "
                                  f"{'none' if target is None else target.dtype})")
        if not target.between(0, len(t) - 1).all():
            raise bad("metadata", f"'target' indices outside the {len(t)} images")

    @classmethod
    def targets(cls, zoo, indices):
        return torch.as_tensor(zoo.meta["target"].to_numpy()[indices], dtype=torch.long)

    @classmethod
    def groups(cls, zoo, pool, size, count, seed, overlapping):
        # fits of one image: an INR is only ever scored against its own image (so groups never overlap)
        by_image = zoo.meta.loc[pool].groupby("target").groups
        fits = [tuple(int(i) for i in ix[:size]) for _, ix in sorted(by_image.items()) if len(ix) >= size]
        return [fits[i] for i in pick(list(range(len(fits))), count, seed + size if overlapping else seed)]

    def input_sample(self, n):
        return self.inputs()

    def loss_target(self, index):
        if index is None:
            raise ValueError("an INR task needs the target image index")
        return torch.as_tensor(index, dtype=torch.long).reshape(1)

    def step_loss(self, params, batch, target):
        return self.task_loss(params, target)[0]  # every pixel of the target image, whatever the batch

    def selection_loss(self, params, target):
        return self.evaluate(params, target)["loss"]  # against each network's own image, its training data

    def reconstruction_scores(self, zoo, indices, params, decoded, outputs, decoded_outputs, nearest):
        """Against the ground-truth images too: PSNR of the decoded and the original renders, and whether the
        nearest original shows the same image."""
        target = torch.as_tensor(zoo.meta["target"].to_numpy()[indices])
        images = zoo.targets[target].flatten(1).to(outputs.dtype)
        render_o, render_d = outputs.flatten(1), decoded_outputs.flatten(1)
        res = dict(psnr_gt=float(psnr(((render_d - images) ** 2).mean(1)).mean()),
                   psnr_gt_original=float(psnr(((render_o - images) ** 2).mean(1)).mean()),
                   psnr_original=float(psnr(((render_d - render_o) ** 2).mean(1)).mean()),
                   ident_image=float((target[nearest] == target).double().mean()),
                   ident_image_chance=1 / len(set(target.tolist())))
        train_images = zoo.targets[torch.as_tensor(sorted(set(zoo.meta["target"].to_numpy()[zoo.indices("train")])))]
        mean_image = train_images.flatten(1).mean(0).to(outputs.dtype)
        res["psnr_gt_mean_image"] = float(psnr(((mean_image - images) ** 2).mean(1)).mean())
        return res


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
        # per size (REPAIR and task losses may ask for others); set here, as subclasses (bench.api's DataTask)
        # need not call __init__
        cache = self.__dict__.setdefault("_train_batches", {})
        if n not in cache:
            cache[n] = self.train_batch(n)
        return cache[n]

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

    @classmethod
    def for_zoo(cls, zoo) -> ClassifierTask:
        return cls(zoo.space, zoo.task.get("dataset", "auto"), zoo.task.get("n_eval", 2000),
                   input_scaling=zoo.task.get("input_scaling", "signed"))

    @classmethod
    def check_zoo(cls, zoo, bad) -> None:
        shape = zoo.space.input_shape
        if len(shape) not in (1, 3):
            raise bad("spec", f"a classifier zoo takes images [channels, height, width] (or flattened, [pixels], "
                              f"for an MLP), not input_shape {shape}")
        n_eval, dataset = zoo.task.get("n_eval", 1), zoo.task.get("dataset", "auto")
        if not isinstance(dataset, str) or (n_eval is not None and (isinstance(n_eval, bool)
                                                                    or not isinstance(n_eval, int) or n_eval < 1)):
            raise bad("spec", f"task: dataset {dataset!r} must be a string and n_eval {n_eval!r} "
                              f"a positive integer or null (the full test split)")

    @classmethod
    def recipe(cls, zoo) -> str:
        return describe(zoo.task.get("config", {}))

    def statistics_inputs(self, n: int | None = None):
        return self.fixed_train_batch(n or STATISTICS_BATCH)[0]  # never the evaluation set

    def method_inputs(self, n, seed=0):
        return self.train_batch(n, seed)[0]

    def train_examples(self, n, seed=0):
        return self.train_batch(n, seed)

    def step_loss(self, params, batch, target):
        x, y = batch
        return F.cross_entropy(self.space.forward(params, x)[0], y)

    def selection_loss(self, params, target):
        # on the fixed training batch, 64 networks at a time
        m = next(iter(params.values())).shape[0]
        return torch.cat([self.task_loss({k: v[s : s + 64] for k, v in params.items()}) for s in range(0, m, 64)])

    def signature(self, outputs):
        return outputs.argmax(-1)  # predicted classes

    def distances(self, x, y):
        return (x[:, None, :] != y[None, :, :]).float().mean(-1)  # disagreement rate

    def comparable(self, outputs):
        return outputs.softmax(-1)  # probabilities, not logits (whose scale is arbitrary)

    def reconstruction_scores(self, zoo, indices, params, decoded, outputs, decoded_outputs, nearest):
        """Accuracy before and after decoding, and how often the decoded network predicts as the original."""
        acc_o, acc_d = self.evaluate(params)["acc"].double(), self.evaluate(decoded)["acc"].double()
        return dict(acc_original=float(acc_o.mean()), acc_decoded=float(acc_d.mean()),
                    acc_lost=float((acc_o - acc_d).mean()),
                    agreement=float((outputs.argmax(-1) == decoded_outputs.argmax(-1)).double().mean()))


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


TASKS: dict[str, type[Task]] = {cls.kind: cls for cls in (InrTask, ClassifierTask)}  # a zoo's task["kind"]


def task_class(zoo) -> type[Task]:
    """The task class of `zoo` (by its spec's task kind; no data is loaded)."""
    kind = zoo.task.get("kind")
    if kind not in TASKS:
        raise ValueError(f"zoo {zoo.name}: unknown task kind {kind!r}")
    return TASKS[kind]


def make_task(zoo) -> Task:
    return task_class(zoo).for_zoo(zoo)


def pick(indices: list[int], k: int, seed: int) -> list[int]:
    """k of `indices` in a seeded random order."""
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
    return [indices[i] for i in order[:k]]


def targets(zoo, indices: list[int]) -> torch.Tensor | None:
    """Each network's target index (an INR's image), None for a task without per-network targets."""
    return task_class(zoo).targets(zoo, indices)


def target(zoo, index: int) -> int | None:
    """One network's target index (see `targets`)."""
    found = targets(zoo, [index])
    return None if found is None else int(found[0])


def draw_groups(zoo, split: str, size: int, count: int, seed: int, overlapping: bool = False
                ) -> list[tuple[int, ...]]:
    """Up to `count` seeded groups of `size` networks of `split` that can be scored together.

    Tasks with per-network targets draw fits of one target (INRs: the first `size` fits of an image,
    `count` images drawn by `seed`). Other tasks draw from the whole split: disjoint runs of one shuffle
    by `seed`, or, `overlapping`, each group a draw of its own (members sorted; groups may share
    networks). `overlapping` also mixes `size` into the seed, as merge has always drawn (INRs: seed +
    size; others: seed * 7919 + size * 101 + group), so that each size gets groups of its own. An empty
    split has no groups, never networks of other splits."""
    pool = zoo.indices(split)
    return task_class(zoo).groups(zoo, pool, size, count, seed, overlapping)
