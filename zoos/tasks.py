"""What a zoo's networks are for, and how one scores them, batched over many networks.

- INR task: render the 28x28 grid; loss = pixel MSE against the network's target image; PSNR.
- Classifier task: logits on a fixed evaluation set; loss = cross-entropy, accuracy.

`evaluate(params, target)` scores M networks at once (`target[m]` is network m's target image
for INRs, ignored for classifiers) in chunks sized to bound memory.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
import torch.nn.functional as F

from zoos.data import load_images
from zoos.space import Params, WeightSpace


def inr_grid(size: int = 28) -> torch.Tensor:
    """DWSNets grid: meshgrid 'xy' of linspace(-1, 1), row-major; pixel (i, j) -> (x=col_j, y=row_i)."""
    lin = torch.linspace(-1, 1, size)
    x, y = torch.meshgrid(lin, lin, indexing="xy")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def classifier_inputs(images: torch.Tensor) -> torch.Tensor:
    """CNN Zoo preprocessing: [0, 1] grey -> [-1, 1], channel axis added."""
    return (images * 2 - 1).unsqueeze(1)


def _chunks(m: int, size: int):
    for start in range(0, m, size):
        yield slice(start, min(start + size, m))


class Task:
    kind: str
    metrics: tuple[str, ...]
    higher_is_better: dict[str, bool]

    def __init__(self, space: WeightSpace):
        self.space = space

    def inputs(self) -> torch.Tensor:
        raise NotImplementedError

    def chunk(self) -> int:
        """Networks per forward pass: keeps the widest activation tensor near 64M floats."""
        x = self.inputs()
        widest = max(layer.n_out for layer in self.space.layers)
        per_net = x.shape[0] * widest * max(1, math.prod(x.shape[2:]) // 4)
        return max(1, 64_000_000 // per_net)

    @torch.no_grad()
    def outputs(self, params: Params) -> torch.Tensor:
        """[M, B, out] on the task's inputs."""
        m = next(iter(params.values())).shape[0]
        x = self.inputs()
        return torch.cat([self.space.forward({k: v[s] for k, v in params.items()}, x)
                          for s in _chunks(m, self.chunk())])

    @torch.no_grad()
    def evaluate(self, params: Params, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = next(iter(params.values())).shape[0]
        out: dict[str, list] = {k: [] for k in self.metrics}
        for s in _chunks(m, self.chunk()):
            y = self.space.forward({k: v[s] for k, v in params.items()}, self.inputs())
            for k, v in self.score(y, None if target is None else target[s]).items():
                out[k].append(v)
        return {k: torch.cat(v) for k, v in out.items()}

    def score(self, outputs: torch.Tensor, target) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def task_loss(self, params: Params, target: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable training loss per network [M] (task-loss objectives, e.g. Sinkhorn Mid)."""
        raise NotImplementedError


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

    def score(self, outputs, target):
        mse = ((outputs[..., 0] - self.targets[target].flatten(1)) ** 2).mean(dim=1)
        return {"loss": mse, "psnr": -10 * torch.log10(mse.clamp_min(1e-12))}

    def task_loss(self, params, target=None):
        return self.score(self.space.forward(params, self.grid), target)["loss"]

    def render(self, params: Params) -> torch.Tensor:
        return self.outputs(params)[..., 0].reshape(-1, self.size, self.size)


class ClassifierTask(Task):
    kind = "classifier"
    metrics = ("loss", "acc")
    higher_is_better = {"loss": False, "acc": True}

    def __init__(self, space: WeightSpace, dataset: str = "auto", n_eval: int = 2000, seed: int = 0):
        super().__init__(space)
        self.dataset, self.n_eval, self.seed = dataset, n_eval, seed

    @cached_property
    def _eval(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = load_images(self.dataset, "test")
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[: self.n_eval]
        return classifier_inputs(images[idx]), labels[idx]

    def inputs(self) -> torch.Tensor:
        return self._eval[0]

    def train_batch(self, n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch of training images (REPAIR statistics, task-loss objectives)."""
        images, labels = load_images(self.dataset, "train")
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        return classifier_inputs(images[idx]), labels[idx]

    def task_loss(self, params, target=None, n: int = 512):
        """Cross-entropy on a fixed training batch of n images (never the evaluation set)."""
        if getattr(self, "_train", None) is None or len(self._train[0]) != n:
            self._train = self.train_batch(n)
        x, y = self._train
        logits = self.space.forward(params, x)
        m = logits.shape[0]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(m), reduction="none")
        return loss.reshape(m, -1).mean(1)

    def score(self, outputs, target):
        labels = self._eval[1]
        m = outputs.shape[0]
        loss = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), labels.repeat(m), reduction="none")
        acc = (outputs.argmax(-1) == labels).float().mean(1)
        return {"loss": loss.reshape(m, -1).mean(1), "acc": acc}


def make_task(zoo) -> Task:
    kind = zoo.task.get("kind")
    if kind == "inr":
        return InrTask(zoo.space, zoo.targets)
    if kind == "classifier":
        return ClassifierTask(zoo.space, zoo.task.get("dataset", "auto"), zoo.task.get("n_eval", 2000))
    raise ValueError(f"zoo {zoo.name}: unknown task kind {kind!r}")
