"""CNN zoo generator: Unterthiner et al.'s small CNN trained on Fashion-MNIST with varied hyperparameters;
with `widths`, plain MLPs 784-w1-..-wk-10 trained the same way (the `mlp` zoo kind).

Each network samples its hyperparameters (activation fixed per zoo; seed, optimizer, learning
rate, L2, dropout, init, train fraction) from a seeded `CnnZooConfig`. Batching many CNNs did not
pay on CPU (ZOOS.md), so networks train one after another in single-threaded worker processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm

from zoos.data import DataError, check_classifier_data, load_images, resolve_source
from zoos.devices import training_fork_context
from zoos.files import ResourceError, WorkerError, check_input, check_memory, write_bytes_atomic
from zoos.options import option, redefault
from zoos.recipes import RECIPES, lr_factor
from zoos.space import WeightSpace, cnn_zoo_space, mlp_space
from zoos.tasks import scale_inputs
from zoos.zoo import Zoo, ZooError, assign_splits

IMAGE_PIXELS = 28 * 28
CLASSES = 10
INITS = ("glorot_normal", "he_normal", "orthogonal", "normal", "truncated_normal", "lecun_normal", "pytorch_default")
# training fields beyond the CNN Zoo's sampled ones, with the values every zoo had before they existed: a
# config records them only when they differ, so older zoos keep their keys (zoos.recipes reads them back)
TRAINING_DEFAULTS = dict(input_scaling="signed", schedule="constant", warmup_steps=0, restart_epochs=0, grad_clip=0.0,
                         momentum=0.0, weight_decay=0.0, recipe="")
OPTIMIZERS = ("adam", "rmsprop", "sgd")


_COUNT = dict(type=int, low=1)  # a flag's range: a positive integer


@dataclass(frozen=True)
class CnnZooConfig:
    """A zoo of trained classifiers: the options of the `cnn` zoo kind (and, with the subclasses below, of `mlp`,
    `vgg` and `resnet`); the fields with a flag are what `bench zoo build KIND` takes."""

    activation: str = option("relu", "--activation", "(default: {default})", choices=("relu", "tanh"))
    n_nets: int = option(16, "--nets", "number of networks (default: {default})", **_COUNT)
    epochs: int = option(3, "--epochs", "training epochs per network (default: {default}, or the recipe's)", **_COUNT)
    batch_size: int = 128
    train_fraction: tuple[float, ...] = option(
        (0.1, 0.25), "--train-fraction", "training-image fractions, one drawn per network (default: {default}, or "
        "the recipe's)", type=float, low=0.0, high=1.0, nargs="+")
    optimizers: tuple[str, ...] = ("adam",)
    lr: tuple[float, float] = (1e-3, 5e-3)  # log-uniform
    l2: tuple[float, float] = (1e-8, 1e-4)  # log-uniform, on kernels only (Keras convention)
    dropout: tuple[float, float] = (0.0, 0.1)
    inits: tuple[str, ...] = ("glorot_normal", "he_normal", "orthogonal")
    init_std: tuple[float, float] = (1e-2, 0.1)  # log-uniform, for the normal inits
    channels: int = option(16, "--channels", "channels per conv (width; default: {default})", **_COUNT)
    source: str = "auto"
    seed: int = option(0, "--seed", "(default: {default})", type=int, low=0, high=2**31 - 1)
    n_eval: int = 2000  # test images the task scores networks on
    splits: tuple[float, float, float] = option(  # train/val/test fractions of the networks
        (0.6, 0.2, 0.2), "--splits", "fractions of the networks in the train / val / test splits, summing to 1 "
        "(default: {default})", type=float, low=0.0, high=1.0, include_low=True, nargs=3,
        metavar=("TRAIN", "VAL", "TEST"))
    # hidden widths of an MLP 784-w1-..-wk-10 trained instead of the CNN (the `mlp` zoo kind); () = the CNN
    widths: tuple[int, ...] = option((), "--widths", "hidden widths, e.g. 512 512 512", nargs="+", required=True,
                                     **_COUNT)
    # a module of `zoos.models` trained instead ("vgg", "resnet"), `channels` wide; "" = the CNN Zoo net
    arch: str = ""
    blocks: int = option(1, "--blocks", "basic blocks per stage (3: ResNet-20; default: {default})", **_COUNT)
    # vgg: BatchNorm after each conv (without it ReLU keeps its positive-scale group)
    batchnorm: bool = option(True, "--no-batchnorm", "no BatchNorm (ReLU then keeps its positive-scale group, tanh "
                             "its signs)", negates=True)
    # how inputs are scaled: "signed" pixels*2-1 in [-1, 1] (CNN Zoo), "unit" pixels/255 in [0, 1] (Git Re-Basin)
    input_scaling: str = "signed"
    schedule: str = "constant"  # or "warmup_cosine" (zoos.recipes.lr_factor)
    warmup_steps: int = 0
    restart_epochs: int = 0  # cosine_restarts: T_0 in epochs
    grad_clip: float = 0.0  # max global gradient norm (0: none)
    momentum: float = 0.0  # SGD
    weight_decay: float = 0.0  # decoupled (AdamW) when > 0
    # the zoos.recipes entry these fields came from ("" = sampled as above); a recipe's option names one
    recipe: str = option("", "--recipe", "train with a paper's recipe (zoos/recipes.py: optimizer, lr, schedule, "
                         "batch, epochs, init, input scaling); --epochs and --train-fraction override it only when "
                         "given", choices=tuple(sorted(RECIPES)))

    @classmethod
    def from_recipe(cls, name: str, **overrides) -> CnnZooConfig:
        """A zoo trained with a paper's recipe (zoos.recipes); `overrides` (e.g. epochs for a
        barrier-vs-epoch study) are recorded like every field, so they change the key."""
        from zoos.recipes import get

        return cls(**{**get(name).config_fields(), **overrides})

    def space(self):
        if self.arch:
            from zoos.trace import trace_space

            return trace_space(self.module(), (1, 28, 28), name=f"{self.arch}-{self.activation}-{self.channels}"
                               + (f"x{self.blocks}" if self.arch == "resnet" else "") + self._norm_tag)
        if self.widths:
            return mlp_space([IMAGE_PIXELS, *self.widths, 10], self.activation)
        return cnn_zoo_space(self.activation, self.channels)

    def module(self) -> torch.nn.Module:
        """A fresh module of `arch` (its initial weights are replaced by `_init`)."""
        from zoos.models import ARCHITECTURES

        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r} (known: {', '.join(ARCHITECTURES)})")
        if self.arch == "resnet":
            extra = {"blocks": self.blocks}
        else:
            extra = {"batchnorm": self.batchnorm}
        return ARCHITECTURES[self.arch](width=self.channels, activation=self.activation, **extra)

    @property
    def _norm_tag(self) -> str:
        return "-nobn" if self.arch == "vgg" and not self.batchnorm else ""

    def recorded(self) -> dict:
        """The config as the zoo records it; fields at their defaults that older zoos lack are left out, so
        that their task, hence their result keys, stay as they were."""
        cfg = asdict(self)
        for key, default, arch in (("widths", (), None), ("arch", "", None), ("blocks", 1, "resnet"),
                                   ("batchnorm", True, "vgg"), *((k, v, None) for k, v in TRAINING_DEFAULTS.items())):
            if cfg[key] == default or (arch is not None and self.arch != arch):
                del cfg[key]
        return cfg

    def training(self) -> dict:
        """The training fields a network's record carries besides its sampled ones (non-default only)."""
        return {k: getattr(self, k) for k, v in TRAINING_DEFAULTS.items() if k != "recipe" and getattr(self, k) != v}

    @property
    def kind(self) -> str:
        return "mlp" if self.widths else self.arch or "cnn"

    def sample(self, i: int) -> dict:
        """Hyperparameters of network i (deterministic in seed and i)."""
        r = random.Random(self.seed * 1_000_003 + i)

        def log_uniform(lo, hi):
            if lo == hi:  # a recipe's fixed value (a draw is still taken: the stream stays aligned)
                r.random()
                return lo
            return math.exp(r.uniform(math.log(lo), math.log(hi)))

        return dict(seed=self.seed * 1_000_003 + i, activation=self.activation,
                    train_fraction=r.choice(self.train_fraction), optimizer=r.choice(self.optimizers),
                    lr=log_uniform(*self.lr), l2=log_uniform(*self.l2), dropout=r.uniform(*self.dropout),
                    init=r.choice(self.inits), init_std=log_uniform(*self.init_std), **self.training())


class CnnZooNet(torch.nn.Module):
    """The zoo net (CNN, or MLP for `widths`) as a module (dropout after each conv). `params()` gives
    its parameters under the space's names (module names cannot hold the '.' of an MLP's 'seq.0')."""

    def __init__(self, space: WeightSpace, dropout: float = 0.0):
        super().__init__()
        for layer in space.layers:
            module = (torch.nn.Conv2d(layer.n_in, layer.n_out, layer.kernel, layer.stride) if layer.kind == "conv"
                      else torch.nn.Linear(layer.n_in, layer.n_out))
            self.add_module(layer.name.replace(".", "_"), module)
        self.space, self.dropout = space, dropout

    def params(self) -> dict[str, torch.Tensor]:
        return {f"{layer.name}.{k}": getattr(self._layer(layer), k).detach().clone()
                for layer in self.space.layers for k in ("weight", "bias")}

    def _layer(self, layer) -> torch.nn.Module:
        return getattr(self, layer.name.replace(".", "_"))

    def forward(self, x):
        for layer in self.space.layers:
            x = self.space.activate(self._layer(layer)(x), layer.act)
            if layer.kind == "conv":
                x = F.dropout(x, self.dropout, self.training)
            if layer.pool:
                x = x.mean(dim=(-2, -1))
        return x


def _init(net: torch.nn.Module, hp: dict, g: torch.Generator) -> None:
    """Initialise every conv and linear layer (normalisation layers keep PyTorch's ones and zeros)."""
    for module in net.modules():
        if not isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            continue
        w = module.weight
        if hp["init"] == "glorot_normal":
            torch.nn.init.xavier_normal_(w, generator=g)
        elif hp["init"] == "he_normal":
            torch.nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)
        elif hp["init"] == "lecun_normal":  # flax's default Dense / Conv kernel init
            fan_in = w[0].numel()
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # truncated at 2 std, as jax's variance_scaling
            torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=g)
        elif hp["init"] == "orthogonal":
            torch.nn.init.orthogonal_(w, generator=g)
        elif hp["init"] == "normal":
            torch.nn.init.normal_(w, std=hp["init_std"], generator=g)
        elif hp["init"] == "pytorch_default":  # nn.Linear / nn.Conv2d's own reset_parameters, from our generator
            torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
        else:
            torch.nn.init.trunc_normal_(w, std=hp["init_std"], a=-2 * hp["init_std"], b=2 * hp["init_std"],
                                        generator=g)
        if module.bias is not None and hp["init"] == "pytorch_default":
            bound = 1 / math.sqrt(w[0].numel())
            torch.nn.init.uniform_(module.bias, -bound, bound, generator=g)
        elif module.bias is not None:
            torch.nn.init.zeros_(module.bias)


_DATA: dict = {}


def _load_data(source: str) -> None:
    """The training and test images (in [0, 1]; each recipe scales them) into `_DATA`, checked (size, labels)
    in this process: forked workers inherit them, so a missing or wrong data set is one error here, never one
    per worker."""
    if _DATA.get("source") == source:
        return
    images, labels = load_images(source, "train")
    test_images, test_labels = load_images(source, "test")
    for split, (x, y) in (("train", (images, labels)), ("test", (test_images, test_labels))):
        check_classifier_data(source, x, y, (28, 28), CLASSES, split)
    _DATA.update(x=images, y=labels, xt=test_images, yt=test_labels, source=source)


def _worker_init(source: str) -> None:
    torch.set_num_threads(1)  # two single-threaded workers beat one two-threaded trainer here
    _load_data(source)  # nothing to do in a forked worker: the parent loaded them


@torch.no_grad()
def _evaluate(net, x, y) -> tuple[float, float]:
    net.eval()
    logits = torch.cat([net(x[i : i + 2000]) for i in range(0, len(x), 2000)])
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_one(space: WeightSpace, hp: dict, epochs: int, batch_size: int,
              module: torch.nn.Module | None = None, snapshots: dict[int, Path] | None = None) -> tuple[dict, dict]:
    """Train one network in this process (data from `_worker_init`); returns (state_dict, metrics).
    `module` (a zoo architecture's, e.g. a ResNet) is trained instead of the zoo net of `space`.
    `snapshots` {epoch: path}: the network as it is after that epoch is saved there too (with a constant
    learning rate, the network an `epoch`-epoch training would give: one run serves a barrier-vs-epoch study)."""
    g = torch.Generator().manual_seed(hp["seed"])
    torch.manual_seed(hp["seed"])  # dropout masks
    net = CnnZooNet(space, hp["dropout"]) if module is None else module
    _init(net, hp, g)
    scaling = hp.get("input_scaling", "signed")
    n = len(_DATA["x"])
    keep = torch.randperm(n, generator=g)[: int(hp["train_fraction"] * n)]
    x, y = scale_inputs(_DATA["x"][keep], scaling), _DATA["y"][keep]  # only the images it trains on
    x = x.reshape(len(x), *space.input_shape)  # an MLP reads the image flattened
    opt = _optimizer(net, hp)
    per_epoch = math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(
        hp.get("schedule", "constant"), step, epochs * per_epoch, hp.get("warmup_steps", 0), per_epoch,
        hp.get("restart_epochs", 0)))
    kernels = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            if hp["l2"]:
                loss = loss + hp["l2"] * sum((k**2).sum() for k in kernels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if hp.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(net.parameters(), hp["grad_clip"])
            opt.step()
            schedule.step()
        if snapshots and epoch in snapshots and epoch < epochs:
            _save_trained(snapshots[epoch], _trained(net, space, x, y, scaling, module))
    return _trained(net, space, x, y, scaling, module)


def _trained(net, space, x, y, scaling, module) -> tuple[dict, dict]:
    """(state, metrics) of a network as it is now."""
    train_loss, train_acc = _evaluate(net, x[:10000], y[:10000])
    xt = scale_inputs(_DATA["xt"], scaling)
    test_loss, test_acc = _evaluate(net, xt.reshape(len(xt), *space.input_shape), _DATA["yt"])
    metrics = dict(train_loss=train_loss, train_accuracy=train_acc, test_loss=test_loss, test_accuracy=test_acc)
    if module is None:
        return net.params(), metrics
    # evaluation-mode state: BatchNorm's running statistics are part of the network (its step counter is not)
    return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, \
        metrics


def _optimizer(net: torch.nn.Module, hp: dict) -> torch.optim.Optimizer:
    lr, decay = hp["lr"], hp.get("weight_decay", 0.0)
    if hp["optimizer"] == "adam":
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=decay) if decay else \
            torch.optim.Adam(net.parameters(), lr=lr)
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=hp.get("momentum", 0.0), weight_decay=decay)
    return torch.optim.RMSprop(net.parameters(), lr=lr, weight_decay=decay)


def _job(args):
    space, hp, epochs, batch_size, config, snapshots = args
    return train_one(space, hp, epochs, batch_size, config.module() if config.arch else None, snapshots)


def _checkpoint(checkpoints: Path | None, i: int, hp: dict) -> Path | None:
    # named by the network's hyperparameters too: a changed recipe never reuses another's network
    key = hashlib.sha256(json.dumps(hp, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(checkpoints) / f"net-{i:05d}-{key}.safetensors" if checkpoints is not None else None


def _snapshot(directory: Path | None, i: int, hp: dict, epochs: int, batch_size: int, source: str) -> Path | None:
    """Where network i after `epochs` epochs is kept across zoos (everything that shapes it is in the name)."""
    return _checkpoint(directory, i, {**hp, "epochs": epochs, "batch_size": batch_size, "source": source})


def _load_trained(path: Path | None) -> tuple[dict, dict] | None:
    if path is None or not path.is_file():
        return None
    try:
        check_input(path)  # a FIFO, device or oversized file there is trained again, never opened
        with safe_open(path, "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["metrics"])
    except Exception:  # noqa: BLE001 - a damaged checkpoint is trained again
        return None


def _save_trained(path: Path | None, result: tuple[dict, dict]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save({k: v.contiguous() for k, v in result[0].items()}, metadata={"metrics": json.dumps(result[1])})
    write_bytes_atomic(path, lambda fh: fh.write(data))


def _result(future, i: int):
    """A worker's result, or its error as one line (a WorkerError; data and input errors as they were)."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerError(f"training network {i}: a worker process died (killed, or out of memory)") from None
    except (DataError, ZooError, ResourceError):
        raise
    except Exception as error:  # noqa: BLE001 - whatever a worker raised, as one line
        raise WorkerError(f"training network {i}: {type(error).__name__}: {' '.join(str(error).split())}") from None


def _n_params(config: CnnZooConfig) -> tuple[int, int, int]:
    """(parameters of one network, its weight layers, its widest layer), counted without allocating them."""
    if config.arch:
        with torch.device("meta"):
            weights = [p for p in config.module().parameters()]
    else:
        layers = ([IMAGE_PIXELS, *config.widths, CLASSES] if config.widths else None)
        if layers:
            return (sum(a * b + b for a, b in zip(layers, layers[1:], strict=False)), len(layers) - 1,
                    max(layers[1:]))
        with torch.device("meta"):
            weights = list(CnnZooNet(config.space()).parameters())
    kernels = [p for p in weights if p.dim() >= 2]
    return sum(p.numel() for p in weights), len(kernels), max(p.shape[0] for p in kernels)


def estimated_bytes(config: CnnZooConfig, workers: int) -> int:
    """Memory a build needs, roughly: per training process the network, its gradients and Adam's two
    moments, and a batch's activations at every layer (full-size feature maps for convolutions); in
    this process every trained network, stacked twice (the results and the zoo)."""
    n, layers, widest = _n_params(config)
    pixels = 1 if config.widths else IMAGE_PIXELS
    per_worker = 4 * (4 * n + 3 * config.batch_size * widest * pixels * max(layers, 1))
    return max(1, workers) * per_worker + 2 * 4 * n * config.n_nets


def build_cnn_zoo(config: CnnZooConfig = CnnZooConfig(), workers: int = 2, progress: bool = True,
                  checkpoints: Path | None = None, snapshots: tuple[int, ...] = (),
                  snapshot_dir: Path | None = None) -> Zoo:
    """Train the zoo's networks. With `checkpoints` (a directory) every trained network is kept there
    as it finishes, so a build killed midway resumes with the networks still to train. With `snapshot_dir`,
    networks after each epoch in `snapshots` are kept there, and a zoo of fewer epochs takes its networks
    from there instead of training them (constant learning rate only: otherwise the schedule differs)."""
    source = resolve_source(config.source)
    check_memory(f"{config.kind} zoo of {config.n_nets} networks trained by {max(1, workers)} process(es)",
                 estimated_bytes(config, workers))  # before the space is built: a module this wide allocates
    space = config.space()
    hps = [config.sample(i) for i in range(config.n_nets)]
    if config.widths:  # named in each network's record (and so in its checkpoint's key)
        hps = [{**hp, "widths": "-".join(map(str, config.widths))} for hp in hps]
    if config.arch:
        hps = [{**hp, "arch": space.name} for hp in hps]
    shared = snapshot_dir if config.schedule == "constant" else None
    snaps = [{e: _snapshot(shared, i, hp, e, config.batch_size, source) for e in snapshots} if shared else None
             for i, hp in enumerate(hps)]
    jobs = [(space, hp, config.epochs, config.batch_size, config, snap) for hp, snap in zip(hps, snaps, strict=True)]
    paths = [_checkpoint(checkpoints, i, hp) for i, hp in enumerate(hps)]
    results: list = [_load_trained(path) or _load_trained(_snapshot(shared, i, hp, config.epochs, config.batch_size,
                                                                     source))
                     for i, (path, hp) in enumerate(zip(paths, hps, strict=True))]
    todo = [i for i, r in enumerate(results) if r is None]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo),
               desc=f"training {len(jobs)} {config.activation} {config.kind.upper()}s",
               unit="net", disable=not progress)
    if todo:
        _load_data(source)  # checked before any worker starts
    if todo and workers <= 1:
        _worker_init(source)
        for i in todo:
            results[i] = _job(jobs[i])
            _save_trained(paths[i], results[i])
            bar.update()
    elif todo:
        ctx = training_fork_context() if os.name == "posix" else torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(source,)) as pool:
            futures = {pool.submit(_job, jobs[i]): i for i in todo}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = _result(future, i)
                _save_trained(paths[i], results[i])
                bar.update()
    bar.close()
    params = {k: torch.stack([r[0][k] for r in results]) for k in space.shapes()}
    meta = pd.DataFrame([{"id": i, **hp, **r[1]} for i, (hp, r) in enumerate(zip(hps, results, strict=True))])
    meta["split"] = assign_splits(len(meta), config.splits, seed=config.seed)
    cfg = config.recorded() | {"source": source}
    task = {"kind": "classifier", "dataset": source, "n_eval": config.n_eval, "config": cfg}
    if config.input_scaling != "signed":  # the task scores networks on inputs scaled as they were trained
        task["input_scaling"] = config.input_scaling
    # zoos of other widths keep apart by name: MLPs by their widths, CNNs by channels unless the usual 16
    shape = "".join(f"-{w}" for w in config.widths) or ("" if config.channels == 16 else f"-c{config.channels}")
    if config.arch == "resnet":
        shape += f"-b{config.blocks}"
    shape += config._norm_tag
    return Zoo(f"{config.kind}-{config.activation}{shape}-{source}", space, params, meta, task)


@dataclass(frozen=True)
class VggZooConfig(CnnZooConfig):
    """The `vgg` zoo kind: VGG nets trained like the CNN zoo, narrower, shorter and without dropout."""

    epochs: int = redefault(CnnZooConfig, "epochs", 2)
    dropout: tuple[float, float] = (0.0, 0.0)
    channels: int = option(8, "--channels", "first stage's channels (width; default: {default})", **_COUNT)
    arch: str = "vgg"


@dataclass(frozen=True)
class ResnetZooConfig(VggZooConfig):
    """The `resnet` zoo kind: ResNet-20-style nets, trained as the `vgg` kind."""

    arch: str = "resnet"


def trained_zoo(config: type[CnnZooConfig]):
    """The builder of a zoo kind of trained classifiers whose options are `config`'s fields. `recipe` names a
    paper's recipe (zoos.recipes) the other options override; `snapshots` (epochs) keeps networks of those
    epochs where zoos of fewer epochs find them."""
    def build(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None, device: str) -> Zoo:
        options = dict(options)
        snapshots = tuple(options.pop("snapshots", ()))
        recipe = options.pop("recipe", None)
        cfg = config.from_recipe(recipe, source=data, **options) if recipe else config(source=data, **options)
        # trained in worker processes on the CPU whatever the device: small nets, where processes pay more
        return build_cnn_zoo(cfg, workers=workers, progress=progress, checkpoints=checkpoints, snapshots=snapshots,
                             snapshot_dir=checkpoints.parent / "snapshots" if checkpoints is not None else None)
    return build


def build_mlp_kind(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None,
                   device: str) -> Zoo:
    """The `mlp` zoo kind: `CnnZooConfig` with its hidden `widths`, which it needs."""
    if not options.get("widths"):
        raise ValueError("an mlp zoo recipe needs its hidden widths, e.g. widths=(512, 512, 512)")
    return trained_zoo(CnnZooConfig)({**options, "widths": tuple(options["widths"])}, data, workers, progress,
                                     checkpoints, device)
