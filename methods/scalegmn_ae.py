"""ScaleGMN autoencoder as an alignment method (Boufalis et al., "Symmetry-Aware Graph Metanetwork
Autoencoders: Model Merging through Parameter Canonicalization").

An encoder invariant to the network's symmetry group maps every member of an orbit to one latent;
the decoder turns the latent into one parameter vector, a learned canonical representative.
Alignment is therefore encode-then-decode, applied to *both* ends of a pair: `align` returns the
decoded reference and the decoded others, and the protocols interpolate between them. Not exact:
decoding changes the function, and the harness records the reconstruction cost.

Training (`fit`): the reconstruction is judged by function, not by weights - INRs by the MSE between
the images rendered by the original and the decoded network, classifiers by
T^2 KL(softmax(z_orig / T) || softmax(z_rec / T)) on a fixed set of training images. AdamW, linear
warmup, gradient clipping, early stopping on the zoo's 'val' split, best checkpoint kept.

Checkpoints live in the harness's checkpoint store (`fit(zoo, store)`), under `<name>-<key>/`, the
key hashing the zoo's content and split,
the space, the task, the hyperparameters, the seed and a code version:
- `last.pt`: everything needed to resume (model, best model, optimizer, scheduler, generator
  state, epoch, history), written after every epoch; only tensors and plain containers, read back
  through the harness's one guarded reader (`zoos.files.load_tensors`: a regular file, sized, zip members
  sized, `torch.load(weights_only=True)`), as `best.safetensors` is;
- `best.safetensors` + `done.json`: the final model and its summary, written when training ends.
Every file is written to a temporary name and renamed into place, so a kill leaves either the old
or the new version. A later `fit` with the same key loads the final model, or resumes from
`last.pt` (bit-identical to an uninterrupted run on the same machine).

Measured scale (`bench ae study`, results/autoencoder.md; d = 64, 2 CPU cores): decoded test SIRENs
reach 11.9 / 12.8 / 14.4 dB against the ground truth with 192 / 1000 / 4000 training INRs (the
originals 27.1 dB, the mean training image 11.2 dB) and name their own image 9% / 22% / 45% of the
time: better with data, far from the paper's setting (55k INRs, `FULL`), which needs a GPU.
Models committed under results/pretrained/ are served by `pretrained=<name>` (checked against the
zoo: architecture, data, no held-out image among its training images, sha256).

Augmentation by random group actions is available (`augment`), but off by default: the ScaleGMN
encoder is exactly invariant, so it would only re-feed the same latent; for the permutation-only
ablation `augment=S` is a different method (learned, approximate scale invariance).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from safetensors.torch import load, save
from tqdm.auto import tqdm

from methods.base import Aligner, Alignment, CheckpointStore, Hyper, Merged
from zoos.devices import DEVICES, resolve_device
from zoos.files import clean_temp_files, load_tensors, read_input, write_bytes_atomic
from zoos.space import Params, WeightSpace
from zoos.symmetry import random_action, select
from zoos.tasks import inr_grid, make_task

if TYPE_CHECKING:  # torch_geometric takes seconds to import: only methods that build a model pay for it
    from methods.scalegmn import GraphAutoencoder

PRETRAINED_ENV = "REBASIN_PRETRAINED"  # where committed models are looked up; default: the repository's


def pretrained_root() -> Path:
    return Path(os.environ.get(PRETRAINED_ENV) or Path(__file__).resolve().parents[1] / "results" / "pretrained")


VERSION = 2  # bump when a change to the model or training makes old checkpoints wrong


# ---- reconstruction losses (per network, [B]) ----------------------------------------------------
class RenderLoss:
    """INRs: MSE between the images rendered by the original and by the decoded network."""

    clip = 10.0  # the gradient-norm clip when the `clip` hyperparameter is 0

    def __init__(self, space: WeightSpace, size: int = 28):
        self.space, self.grid = space, inr_grid(size)

    @classmethod
    def for_task(cls, task, hp: dict) -> RenderLoss:
        return cls(task.space, task.size)

    def reference(self, params: Params) -> torch.Tensor:
        return self.space.forward(params, self.grid.to(_device_of(params)))[..., 0]

    def __call__(self, decoded: Params, reference: torch.Tensor) -> torch.Tensor:
        return ((self.reference(decoded) - reference) ** 2).mean(1)


class LogitKLLoss:
    """Classifiers: T^2 KL(softmax(z_orig/T) || softmax(z_rec/T)) averaged over a fixed image set."""

    clip = 5.0

    def __init__(self, space: WeightSpace, images: torch.Tensor, temperature: float = 0.6):
        self.space, self.images, self.t = space, images, temperature

    @classmethod
    def for_task(cls, task, hp: dict) -> LogitKLLoss:
        return cls(task.space, task.method_inputs(hp["n_images"]), hp["temperature"])

    def reference(self, params: Params) -> torch.Tensor:
        return F.log_softmax(self.space.forward(params, self.images.to(_device_of(params))) / self.t, -1)

    def __call__(self, decoded: Params, reference: torch.Tensor) -> torch.Tensor:
        log_q = self.reference(decoded)
        kl = (reference.exp() * (reference - log_q)).sum(-1)  # [B, n_images]
        return self.t ** 2 * kl.mean(1)


# the reconstruction loss of each task kind (see `Aligner.tasks`)
LOSSES = {"inr": RenderLoss, "classifier": LogitKLLoss}


def _device_of(params: Params) -> torch.device:
    return next(iter(params.values())).device


def _chunked(fn, params: Params, size: int = 256) -> torch.Tensor:
    n = next(iter(params.values())).shape[0]
    return torch.cat([fn(select(params, slice(s, min(s + size, n)))) for s in range(0, n, size)])


def chunk_size(model: GraphAutoencoder) -> int:
    """Networks per forward pass: a batch is split so that one layer's edge features stay under ~4M floats
    (measured on 2 cores: 16-32 networks at d = 128 run at one rate per network, 64 at half of it, as
    the allocator starts mapping fresh pages for every large tensor)."""
    if model.encoder.in_scale.device.type != "cpu":  # the allocator's cliff is a CPU effect: one pass on a GPU
        return 2**31
    t = model.encoder.template
    return max(1, 2**22 // (t.n_edges * model.encoder.d))


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def accumulate(model: GraphAutoencoder, loss_fn, params: Params, reference: torch.Tensor, graph: str = "dense",
               precision: str = "fp32") -> torch.Tensor:
    """Mean reconstruction loss of a batch, its gradient accumulated into the model chunk by chunk
    (the same gradient as one pass, up to float rounding). Returns the loss (detached)."""
    n, chunk = reference.shape[0], chunk_size(model)
    device = reference.device
    total = reference.new_zeros(())
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        with autocast(device, precision):
            loss = loss_fn(model(select(params, sl), graph), reference[sl]).float().sum() / n
        if not torch.isfinite(loss):
            return loss.detach()
        loss.backward()
        total = total + loss.detach()
    return total


def _atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, lambda fh: fh.write(data))


def _warn_damaged(path: Path, error: BaseException) -> None:
    reason = f"{type(error).__name__}: {error}".splitlines()[0][:160]
    print(f"bench: warning: {path}: unreadable checkpoint ({reason}); training again", file=sys.stderr)


def _to(params: Params, device, dtype=None) -> Params:
    return {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in params.items()}


# ---- committed models ------------------------------------------------------------------------------
# what a committed model fixes: everything that shapes the network or how it is used (not training-only
# knobs such as the device, nor the pretrained name itself)
MODEL_HP = ("hidden", "decoder_hidden", "n_layers", "latent", "graph", "precision", "n_images", "temperature")


def read_pretrained(name: str) -> tuple[dict, bytes]:
    """(manifest, weight bytes) of the committed model `name`; OSError/ValueError when unreadable."""
    directory = pretrained_root() / name
    return json.loads(read_input(directory / "manifest.json", 2**24)), read_input(directory / "best.safetensors")


def pretrained_mismatch(name: str, zoo, method: str = "scalegmn-ae", read: tuple[dict, bytes] | None = None
                        ) -> str | None:
    """Why the committed model `name` cannot serve `zoo` (None when it can): missing or altered files, another
    architecture, data or method, or a zoo whose validation/test images it was trained on. `read`: what
    `read_pretrained` returned, when the caller has it already."""
    directory = pretrained_root() / name
    redo = "(write one with `bench ae study --kinds inr`)"
    try:
        manifest, weights = read or read_pretrained(name)
    except (OSError, ValueError) as error:
        return f"{method}[pretrained={name}]: no usable committed model in {directory} ({error}) {redo}"
    if hashlib.sha256(weights).hexdigest() != manifest.get("sha256"):
        return f"{method}[pretrained={name}]: {directory}/best.safetensors does not match its manifest {redo}"
    if manifest.get("method") != method or manifest.get("version") != VERSION:
        return (f"{method}[pretrained={name}]: trained as {manifest.get('method')} version {manifest.get('version')}, "
                f"this code is {method} version {VERSION} {redo}")
    if manifest.get("space") != zoo.space.to_json():
        return f"{method}[pretrained={name}]: trained on {manifest.get('space_name')} networks, not {zoo.space.name}"
    source = zoo.task.get("source", zoo.task.get("dataset"))
    if manifest.get("source") != source:
        return f"{method}[pretrained={name}]: trained on {manifest.get('source')} networks, this zoo is {source}"
    if "image_index" in zoo.meta:
        held_out = zoo.meta.loc[zoo.meta.split != "train", "image_index"]
        leaked = set(held_out.tolist()) & set(manifest.get("train_images", []))
        if leaked:
            return (f"{method}[pretrained={name}]: trained on {len(leaked)} image(s) of this zoo's validation/test "
                    "networks; scoring on them would leak")
    return None


def write_pretrained(method: ScaleGMNAutoencoder, zoo, name: str, command: str, recipe: dict, root: Path) -> Path:
    """Commit-ready copy of a trained model: <root>/<name>-<sha8>/{best.safetensors, manifest.json}."""
    state = {k: v.detach().cpu().contiguous() for k, v in method.model.state_dict().items()}
    weights = save(state)
    digest = hashlib.sha256(weights).hexdigest()
    directory = Path(root) / f"{name}-{digest[:8]}"
    train = zoo.indices("train")[: method.hp["n_train"] or None]
    images = sorted(set(zoo.meta["image_index"].to_numpy()[train].tolist())) if "image_index" in zoo.meta else []
    manifest = {"name": directory.name, "method": method.name, "version": VERSION, "sha256": digest,
                "hp": {k: method.hp[k] for k in MODEL_HP}, "training_hp": method.hp, "seed": method.seed,
                "space": zoo.space.to_json(), "space_name": zoo.space.name,
                "source": zoo.task.get("source", zoo.task.get("dataset")), "zoo_recipe": recipe,
                "zoo_hash": zoo.content_hash(), "train_images": images, "command": command,
                "fit_info": {k: v for k, v in method.fit_info.items() if not isinstance(v, list | dict)}}
    directory.mkdir(parents=True, exist_ok=True)
    _atomic(directory / "best.safetensors", weights)
    _atomic(directory / "manifest.json", json.dumps(manifest, indent=1, default=str).encode())
    return directory


# ---- the method -----------------------------------------------------------------------------------
class ScaleGMNAutoencoder(Aligner):
    name = "scalegmn-ae"
    display_name = "ScaleGMN autoencoder"
    description = "scale/sign-equivariant graph metanetwork encoder and MLP decoder: a learned canonical form"
    citation = ('Boufalis et al., '
                '"Symmetry-Aware Graph Metanetwork Autoencoders: Model Merging through Parameter '
                'Canonicalization", 2025')
    arxiv = "2511.12601"
    version = VERSION
    exact = False
    learned = True
    needs = "trained-model"
    stack_only = True
    equivariant = True  # False: the permutation-only GNN ablation
    # SMALL defaults: a few hundred INRs train in ~2-3 minutes on 2 CPU cores. FULL: paper-sized.
    search_space = {
        "hidden": Hyper("int", 16, 2, 1024, log=True),  # d: GNN width; decoder latent -> 2d -> 4d
        "decoder_hidden": Hyper("int", 0, 0, 4096),  # decoder latent -> 2h -> 4h; 0: h = hidden (the paper)
        # message-passing layers; 0: one per weight layer, so the output nodes see every input-to-output path
        "n_layers": Hyper("int", 0, 0, 16),
        "latent": Hyper("int", 128, 2, 4096, log=True),
        "epochs": Hyper("int", 80, 1, 100_000, log=True),
        "n_train": Hyper("int", 0, 0, 10_000_000),  # train on the first n networks of the 'train' split; 0: all
        "batch_size": Hyper("int", 16, 1, 4096, log=True),
        "lr": Hyper("float", 1e-3, 1e-6, 1.0, log=True),
        "weight_decay": Hyper("float", 0.01, 0.0, 1.0),
        "warmup": Hyper("int", 100, 0, 1_000_000),  # linear warmup steps, at most a tenth of all steps
        "clip": Hyper("float", 0.0, 0.0, 1e6),  # gradient-norm clip; 0: 10 for INRs, 5 for classifiers
        "patience": Hyper("int", 20, 1, 1_000_000),  # epochs without a better validation loss
        "augment": Hyper("cat", "none", choices=("none", "P", "S", "PS")),
        "n_images": Hyper("int", 256, 1, 60_000, log=True),  # classifiers: fixed image set for the KL
        "temperature": Hyper("float", 0.6, 1e-3, 100.0, log=True),
        "merge_latent": Hyper("bool", False),
        # a committed model under results/pretrained/<name> (written by `bench ae study`): used as is, its
        # recipe replaces the model hyperparameters above; skipped on zoos it does not apply to
        "pretrained": Hyper("name", ""),  # merge: decode the mean latent instead of averaging decodings
        "device": Hyper("cat", "cpu", choices=DEVICES),
        # dense: message passing over the zoo's shared graph (fast); pyg: the torch-geometric reference
        "graph": Hyper("cat", "dense", choices=("dense", "pyg")),
        # bf16: mixed-precision autocast for training and encoding (~1.6x on CPUs with AVX512-BF16)
        "precision": Hyper("cat", "fp32", choices=("fp32", "bf16")),
    }
    # the reference's model and schedule (METHODS.md): 150 epochs for INRs, 300 for the CNN zoo
    FULL = {"hidden": 128, "n_layers": 4, "latent": 128, "epochs": 150, "batch_size": 128, "warmup": 1000,
            "patience": 50}
    FULL_CNN = {**FULL, "batch_size": 64, "epochs": 300}
    FULL_BY_TASK = {"inr": FULL, "classifier": FULL_CNN}  # the paper-sized preset of each task kind

    def __init__(self, seed: int = 0, **hyper):
        super().__init__(seed, **hyper)
        self.log_fn: Callable[[dict, int], None] | None = None  # log_fn(metrics, epoch), e.g. MLflow
        self.model: GraphAutoencoder | None = None
        self.fit_info: dict = {}
        self.checkpoint_dir: Path | None = None

    # ---- setup -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return resolve_device(self.hp["device"])

    def build(self, space: WeightSpace) -> GraphAutoencoder:
        from methods.scalegmn import GraphAutoencoder

        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG alone
            torch.manual_seed(self.seed)
            hp = self.hp
            return GraphAutoencoder(space, hp["hidden"], hp["n_layers"] or len(space.layers), hp["latent"],
                                    equivariant=self.equivariant, decoder_hidden=hp["decoder_hidden"] or None)

    def skip(self, zoo) -> str | None:
        reason = super().skip(zoo)
        if reason is None and self.hp["pretrained"]:
            reason = pretrained_mismatch(self.hp["pretrained"], zoo, self.name)
        return reason

    def cache_key(self, zoo) -> str:
        # merge_latent acts after training; the device changes float rounding, so it keys (as resolved)
        hp = {**{k: v for k, v in self.hp.items() if k != "merge_latent"}, "device": self.device.type}
        # the model's state layout too, so that an architecture change never loads an old checkpoint
        layout = [(k, list(v.shape)) for k, v in self.build(zoo.space).state_dict().items()]
        blob = json.dumps({"method": self.name, "version": VERSION, "hp": hp, "seed": self.seed,
                           "zoo": zoo.content_hash(), "split": list(zoo.meta["split"]), "layout": layout,
                           "space": zoo.space.to_json(), "task": zoo.task}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def make_loss(self, zoo):
        task = self.task if self.task is not None else make_task(zoo)
        return LOSSES[task.kind].for_task(task, self.hp)

    # ---- training ----------------------------------------------------------------------------
    def fit(self, zoo, store: CheckpointStore | None = None, progress: bool = False) -> None:
        """Train on the zoo's training split, or load the checkpoint `store` holds (None: train, keep nothing)."""
        if self.hp["pretrained"]:
            return self._load_pretrained(zoo)
        name = f"{self.name}-{self.cache_key(zoo)}"
        ckpt = self.checkpoint_dir = store.directory(name) if store is not None else None
        # a concurrent run training the same model waits here, then loads it
        with store.lock(name) if store is not None else nullcontext():
            if ckpt is not None and ckpt.is_dir():
                clean_temp_files(ckpt, max_age_s=0)  # of a process killed mid-write (we hold the lock)
            return self._fit(zoo, ckpt, progress)

    def _fit(self, zoo, ckpt: Path | None, progress: bool) -> None:
        space = zoo.space
        self.space = space
        model = self.build(space)
        if ckpt is not None and (ckpt / "done.json").is_file():
            try:
                model.load_state_dict(load_tensors(ckpt / "best.safetensors"))
                self.model = model.to(self.device).eval()
                self.fit_info = {**json.loads(read_input(ckpt / "done.json", 2**20)), "cached": True}
                return
            except Exception as error:  # noqa: BLE001 - a damaged cache entry is trained again, not fatal
                _warn_damaged(ckpt / "best.safetensors", error)
                model = self.build(space)

        train_idx, val_idx = zoo.indices("train"), zoo.indices("val")
        if not train_idx:
            raise ValueError(f"{self.name}: zoo {zoo.name} has no networks in its 'train' split")
        if self.hp["n_train"]:
            if self.hp["n_train"] > len(train_idx):
                raise ValueError(f"{self.name}[n_train={self.hp['n_train']}]: zoo {zoo.name} has only "
                                 f"{len(train_idx)} training networks")
            train_idx = train_idx[:self.hp["n_train"]]
        if not val_idx:  # hold out a tenth of the training networks
            cut = max(1, len(train_idx) // 10)
            if len(train_idx) < 2:
                raise ValueError(f"{self.name}: zoo {zoo.name} has too few networks to train and validate")
            train_idx, val_idx = train_idx[cut:], train_idx[:cut]
        device = self.device
        loss_fn = self.make_loss(zoo)
        train_p = _to(select(zoo.params, train_idx), device, torch.float32)
        val_p = _to(select(zoo.params, val_idx), device, torch.float32)
        with torch.no_grad():
            train_ref, val_ref = _chunked(loss_fn.reference, train_p), _chunked(loss_fn.reference, val_p)
        model.set_scales(train_p)
        model.to(device)
        self.model = model
        self.fit_info = self._train(model, space, loss_fn, (train_p, train_ref), (val_p, val_ref), ckpt, progress)
        self.model = model.eval()

    def _train(self, model, space, loss_fn, train, val, ckpt: Path | None, progress: bool) -> dict:
        hp = self.hp
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        n_train = train[1].shape[0]
        warmup = min(hp["warmup"], hp["epochs"] * math.ceil(n_train / hp["batch_size"]) // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
        st, best_state = self._start(model, space, loss_fn, val, ckpt, (opt, sched, gen))
        bar = tqdm(total=hp["epochs"], initial=st["epoch"], desc=self.name, unit="epoch", leave=False,
                   disable=not progress)
        while st["epoch"] < hp["epochs"] and st["bad_epochs"] < hp["patience"]:
            start, cpu_start = time.perf_counter(), time.process_time()
            train_loss = self._epoch(model, space, loss_fn, train, (opt, sched, gen), st)
            val_loss = self._val_loss(model, loss_fn, val)
            st["epoch"] += 1
            st["seconds"] += time.perf_counter() - start
            st["cpu_seconds"] += time.process_time() - cpu_start  # all threads: the cost on an idle machine
            if val_loss < st["best_val"]:
                st["best_val"], st["best_epoch"], st["bad_epochs"] = val_loss, st["epoch"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                st["bad_epochs"] += 1
            metrics = {"train_loss": train_loss, "val_loss": val_loss, "lr": opt.param_groups[0]["lr"],
                       "epoch_seconds": time.perf_counter() - start}
            st["history"].append(metrics)
            if ckpt is not None:
                saved = {"model": model.state_dict(), "best_model": best_state, "opt": opt.state_dict(),
                         "sched": sched.state_dict(), "gen": gen.get_state(), "state": st}
                buffer = io.BytesIO()
                torch.save(saved, buffer)
                _atomic(ckpt / "last.pt", buffer.getvalue())
            bar.update(1)
            bar.set_postfix(train=f"{metrics['train_loss']:.4g}", val=f"{val_loss:.4g}")
            if self.log_fn is not None:
                self.log_fn(metrics, st["epoch"])
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        return self._finish(model, st, n_train, val, ckpt)

    def _start(self, model, space, loss_fn, val, ckpt: Path | None, optimiser) -> tuple[dict, dict | None]:
        """(training state, best model state so far): resumed from the checkpoint's last epoch if one is
        readable (model, optimiser, schedule and generator restored), else fresh (the initial validation loss
        measured, the run's config written)."""
        opt, sched, gen = optimiser
        st = {"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
              "seconds": 0.0, "cpu_seconds": 0.0, "skipped_steps": 0, "initial_val": math.nan, "resumed_from": -1}
        saved = None
        if ckpt is not None and (ckpt / "last.pt").is_file():
            try:
                saved = load_tensors(ckpt / "last.pt")  # the one guarded reader; tensors move to the device below
            except Exception as error:  # noqa: BLE001 - a damaged checkpoint: train from the start
                _warn_damaged(ckpt / "last.pt", error)
        if saved is not None:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            gen.set_state(saved["gen"].cpu())
            return {**saved["state"], "resumed_from": saved["state"]["epoch"]}, saved["best_model"]
        st["initial_val"] = self._val_loss(model, loss_fn, val)
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
            config = {"method": self.name, "hp": self.hp, "seed": self.seed, "space": space.name,
                      "version": VERSION}
            _atomic(ckpt / "config.json", json.dumps(config, indent=2).encode())
        return st, None

    def _epoch(self, model, space, loss_fn, train, optimiser, st: dict) -> float:
        """One pass over the training networks in a seeded order; the mean training loss of the applied steps."""
        hp = self.hp
        opt, sched, gen = optimiser
        train_p, train_ref = train
        clip = hp["clip"] or loss_fn.clip
        model.train()
        order = torch.randperm(train_ref.shape[0], generator=gen)
        total, count = 0.0, 0
        for s in range(0, train_ref.shape[0], hp["batch_size"]):
            idx = order[s:s + hp["batch_size"]].to(train_ref.device)
            p = select(train_p, idx)
            if hp["augment"] != "none":
                p = _to(random_action(space, _to(p, "cpu"), hp["augment"], gen)[0], train_ref.device)
            opt.zero_grad(set_to_none=True)
            loss = accumulate(model, loss_fn, p, train_ref[idx], hp["graph"], hp["precision"])
            if not torch.isfinite(loss):  # a diverging batch is skipped, not applied
                st["skipped_steps"] += 1
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            st["step"] += 1
            total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)

    def _finish(self, model, st: dict, n_train: int, val, ckpt: Path | None) -> dict:
        """The training summary (`fit_info`); with a checkpoint directory, the best model and it are kept there."""
        info = {"train_seconds": st["seconds"], "train_cpu_seconds": st["cpu_seconds"], "epochs": st["epoch"],
                "steps": st["step"],
                "best_epoch": st["best_epoch"], "best_val_loss": st["best_val"], "initial_val_loss": st["initial_val"],
                "skipped_steps": st["skipped_steps"], "resumed_from": st["resumed_from"], "n_train": n_train,
                "n_val": val[1].shape[0], "n_model_params": sum(p.numel() for p in model.parameters()),
                "history": st["history"], "cached": False}
        if ckpt is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            _atomic(ckpt / "best.safetensors", save(state))
            _atomic(ckpt / "done.json", json.dumps(info, indent=1).encode())
        return info

    def _load_pretrained(self, zoo) -> None:
        name = self.hp["pretrained"]
        try:
            read = read_pretrained(name)
        except (OSError, ValueError):
            read = None  # pretrained_mismatch names the problem
        reason = pretrained_mismatch(name, zoo, self.name, read)
        if reason is not None:
            raise ValueError(reason)
        manifest, weights = read
        self.hp.update({k: v for k, v in manifest["hp"].items() if k in MODEL_HP})
        self.space = zoo.space
        model = self.build(zoo.space)
        model.load_state_dict(load(weights))  # the very bytes whose sha256 was just checked
        self.model = model.to(self.device).eval()
        self.checkpoint_dir = pretrained_root() / name
        self.fit_info = {**manifest["fit_info"], "cached": True, "pretrained": name}

    @torch.no_grad()
    def _val_loss(self, model, loss_fn, val) -> float:
        model.eval()
        params, ref = val
        n = ref.shape[0]
        total = 0.0
        chunk = chunk_size(model)
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            with autocast(ref.device, self.hp["precision"]):
                total += loss_fn(model(select(params, sl), self.hp["graph"]), ref[sl]).float().sum().item()
        return total / n

    # ---- use -----------------------------------------------------------------------------------
    def _model(self) -> GraphAutoencoder:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(zoo, task) or fit(zoo) before aligning")
        return self.model

    @torch.no_grad()
    def encode(self, params: Params) -> torch.Tensor:
        """Latents [N, latent] (invariant to the symmetry group for the ScaleGMN)."""
        model = self._model().eval()
        dtype = model.encoder.in_scale.dtype

        def encode(p):
            with autocast(self.device, self.hp["precision"]):
                return model.encode(_to(p, self.device, dtype), self.hp["graph"]).to(dtype)
        return _chunked(encode, params, chunk_size(model)).cpu()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> Params:
        model = self._model().eval()
        parts = [model.decode(z[s:s + 256].to(self.device, model.encoder.in_scale.dtype))
                 for s in range(0, z.shape[0], 256)]
        return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}

    def canonicalize(self, params: Params) -> Params:
        """Encode then decode: every member of an orbit maps to the same network."""
        dtype = next(iter(params.values())).dtype
        return _to(self.decode(self.encode(params)), "cpu", dtype)

    def align(self, ref: Params, others: Params, target: int | None = None) -> Alignment:
        """The decoded ref and the decoded others: the two ends to interpolate between."""
        z_ref, z_others = self.encode(ref), self.encode(others)
        info = {"latent_distance": float((z_others - z_ref).norm(dim=1).mean()), "latent_norm": float(z_ref.norm())}
        dtype = next(iter(ref.values())).dtype
        return Alignment(_to(self.decode(z_ref), "cpu", dtype), _to(self.decode(z_others), "cpu", dtype), info=info)

    def interpolate_latent(self, a: Params, b: Params, lambdas) -> Params:
        """Decodings of (1 - l) z_a + l z_b for each l (a and b single networks): len(lambdas) networks."""
        za, zb = self.encode(a), self.encode(b)
        lam = torch.as_tensor(lambdas, dtype=za.dtype).reshape(-1, 1)
        dtype = next(iter(a.values())).dtype
        return _to(self.decode((1 - lam) * za + lam * zb), "cpu", dtype)

    def merge(self, models: Params, target: int | None = None) -> Merged:
        """Average of the decoded models (or, with merge_latent, the decoding of the mean latent)."""
        if not self.hp["merge_latent"]:
            return super().merge(models, target)
        dtype = next(iter(models.values())).dtype
        z = self.encode(models)
        merged = _to(self.decode(z.mean(0, keepdim=True)), "cpu", dtype)
        return Merged(merged, _to(self.decode(z), "cpu", dtype))


class GNNAutoencoder(ScaleGMNAutoencoder):
    """Ablation: the same autoencoder with a permutation-only graph encoder (Neural Graphs style)."""

    name = "gnn-ae"
    display_name = "GNN autoencoder (ablation)"
    description = "the ScaleGMN autoencoder with a permutation-only GNN encoder"
    citation = ('Boufalis et al., '
                '"Symmetry-Aware Graph Metanetwork Autoencoders: Model Merging through Parameter '
                'Canonicalization", 2025')
    arxiv = "2511.12601"
    equivariant = False
