"""INR zoo generator: many SIRENs fitted at once to 28x28 grey images (DWSNets conventions).

All networks of a chunk are stacked and fitted together: the loss is the sum of the per-network
pixel MSEs and Adam is elementwise, so this is exactly the same as fitting each network alone
(checked in the tests), only much faster. `fits_per_image` independent seeds per image give the
pairs of independently fitted INRs of one image that the `pairs` protocol needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from zoos.data import load_images, resolve_source
from zoos.devices import training_fork_context
from zoos.files import WorkerError, check_memory
from zoos.options import option
from zoos.space import Params, WeightSpace, siren_space
from zoos.tasks import inr_grid, psnr
from zoos.zoo import Zoo, assign_splits


def dwsnets_init(space: WeightSpace, seeds: list[int]) -> Params:
    """DWSNets' init as it ran: every sine layer U(+-sqrt(6/in)/w0), zero biases; output layer
    PyTorch's default Linear init. One generator per network, so a network's init depends only
    on its seed (not on how networks are chunked)."""
    out: dict[str, list] = {k: [] for k in space.shapes()}
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        for layer in space.layers:
            fan_in = layer.n_in
            if layer.act == "sin":
                bound = math.sqrt(6 / fan_in) / space.w0
                w = (torch.rand(layer.n_out, fan_in, generator=g) * 2 - 1) * bound
                b = torch.zeros(layer.n_out)
            else:
                bound = 1 / math.sqrt(fan_in)
                w = (torch.rand(layer.n_out, fan_in, generator=g) * 2 - 1) * bound
                b = (torch.rand(layer.n_out, generator=g) * 2 - 1) * bound
            out[layer.weight].append(w)
            out[layer.bias].append(b)
    return {k: torch.stack(v) for k, v in out.items()}


def fit_inrs(space: WeightSpace, init: Params, images: torch.Tensor, steps: int = 1000, lr: float = 5e-3,
             progress: tqdm | None = None, device: str | torch.device = "cpu",
             workers: int = 1) -> tuple[Params, torch.Tensor]:
    """Fit N stacked SIRENs (init [N,...]) to images [N, H, W] by full-batch Adam; returns (params, mse [N]).

    On the CPU, sine MLPs with one output (every INR space we build) take a hand-written
    forward/backward (`_SirenKernel`, cache-sized chunks); any other space, and any other device, the
    plain autograd loop (`fit_inrs_autograd`: on a GPU one pass over all N is what pays). Both compute
    the same gradients of the same loss and take the same Adam steps. Results come back on the CPU.

    `workers` > 1 (CPU kernel only) splits the networks over that many single-threaded processes:
    the kernel's products are too small for intra-op threads to pay (2 threads: 1.1x), separate
    processes scale. The networks are independent, so the result is the same bit for bit.
    """
    device = torch.device(device)
    if device.type != "cpu":
        on = {k: v.to(device) for k, v in init.items()}
        params, mse = fit_inrs_autograd(space, on, images.to(device), steps, lr, progress)
        return {k: v.cpu() for k, v in params.items()}, mse.cpu()
    if not _SirenKernel.supports(space):
        return fit_inrs_autograd(space, init, images, steps, lr, progress)
    if workers > 1 and len(images) > 1:
        return _fit_in_processes(space, init, images, steps, lr, progress, min(workers, len(images)))
    kernel = _SirenKernel(space, images.shape[-1])
    target = images.flatten(1).float()
    n = target.shape[0]
    names = list(space.shapes())
    # every network's parameters in one row of a flat [N, P] tensor: one Adam update for all per step
    flat = torch.cat([init[k].detach().reshape(n, -1).float() for k in names], 1)
    grad = torch.zeros_like(flat)
    params, grads = space.unflatten(flat), space.unflatten(grad)  # views into the flat tensors
    adam = _Adam(flat, lr)
    chunks = [slice(s, min(s + kernel.chunk, n)) for s in range(0, n, kernel.chunk)]
    for _ in range(steps):
        for c in chunks:  # cache-sized groups of networks: the [n, pixels, hidden] buffers stay in cache
            kernel.grad({k: v[c] for k, v in params.items()}, target[c], {k: v[c] for k, v in grads.items()})
        adam.step(grad)
        if progress is not None:
            progress.update()
    out = {k: v.clone() for k, v in space.unflatten(flat).items()}
    with torch.no_grad():
        mse = ((space.forward(out, kernel.grid)[..., 0] - target) ** 2).mean(1)
    return out, mse


def fit_inrs_autograd(space: WeightSpace, init: Params, images: torch.Tensor, steps: int = 1000, lr: float = 5e-3,
                      progress: tqdm | None = None) -> tuple[Params, torch.Tensor]:
    """The reference fitting loop: autograd through `space.forward`, torch's Adam (any space)."""
    grid = inr_grid(images.shape[-1]).to(images.device)
    target = images.flatten(1).float()
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        mse = ((space.forward(params, grid)[..., 0] - target) ** 2).mean(1)
        mse.sum().backward()  # per-network losses are independent: their sum fits each alone
        opt.step()
        if progress is not None:
            progress.update()
    with torch.no_grad():
        mse = ((space.forward(params, grid)[..., 0] - target) ** 2).mean(1)
    return {k: v.detach() for k, v in params.items()}, mse


class _Adam:
    """torch.optim.Adam's update (default betas, eps, no weight decay) on one tensor, in place.

    The same arithmetic as torch's single-tensor Adam, without its per-call Python bookkeeping
    (~1-2 ms a step, as much as the gradient of a few networks)."""

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps, self.t = param, lr, betas, eps, 0
        self.m, self.v = torch.zeros_like(param), torch.zeros_like(param)

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))


class _Ticks:
    """A progress bar stand-in inside a worker: reports steps to the parent."""

    def __init__(self, queue, index: int):
        self.queue, self.index = queue, index

    def update(self, n: int = 1) -> None:
        self.queue.put(("step", self.index, n))


def _fit_part(space, init, images, steps, lr, queue, index) -> None:
    torch.set_num_threads(1)
    try:
        params, mse = fit_inrs(space, init, images, steps, lr, _Ticks(queue, index))
        # numpy arrays travel by value; torch tensors would travel as file descriptors of a process that exits
        queue.put(("done", index, ({k: v.numpy() for k, v in params.items()}, mse.numpy())))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("error", index, f"{type(error).__name__}: {error}"))


def _fit_in_processes(space, init, images, steps, lr, progress, workers) -> tuple[Params, torch.Tensor]:
    """`fit_inrs` with the networks split into `workers` contiguous parts, one forked process each."""
    import queue as queues

    ctx = training_fork_context()
    channel = ctx.Queue()
    parts = torch.arange(len(images)).tensor_split(workers)
    procs = [ctx.Process(target=_fit_part, daemon=True,
                         args=(space, {k: v[idx] for k, v in init.items()}, images[idx], steps, lr, channel, i))
             for i, idx in enumerate(parts)]
    for proc in procs:
        proc.start()
    done, ticks, shown = {}, [0] * workers, 0
    try:
        while len(done) < workers:
            try:
                kind, i, payload = channel.get(timeout=1.0)
            except queues.Empty:
                dead = [p.exitcode for i, p in enumerate(procs) if i not in done and p.exitcode is not None]
                if dead:
                    raise WorkerError(f"INR fitting: a worker process died (exit code {dead[0]}; killed, or out "
                                      f"of memory)") from None
                continue
            if kind == "error":
                raise WorkerError(f"INR fitting worker: {' '.join(str(payload).split())}")
            if kind == "done":
                done[i] = payload
            else:
                ticks[i] += payload
                if progress is not None and min(ticks) > shown:  # the bar counts steps of the slowest part
                    progress.update(min(ticks) - shown)
                    shown = min(ticks)
    finally:
        for proc in procs:
            if proc.is_alive() and len(done) < workers:
                proc.terminate()
            proc.join()
    params = {k: torch.cat([torch.from_numpy(done[i][0][k]) for i in range(workers)]) for k in init}
    return params, torch.cat([torch.from_numpy(done[i][1]) for i in range(workers)])


class _SirenKernel:
    """Loss gradient of stacked sine MLPs on the pixel grid, forward and backward written out.

    With u_l = w0 (W_l h_{l-1} + b_l), h_l = sin(u_l), y = W_L h_{L-1} + b_L + offset and the
    per-network loss mean_pixels (y - t)^2, the backward is g_{L-1} = (dy W_L) * cos(u_{L-1}),
    g_{l-1} = (g_l (w0 W_l)) * cos(u_{l-1}), dW_l = w0 g_l^T h_{l-1}, db_l = w0 sum g_l.

    Why not autograd: its graph costs ~1-2 ms per step, most of the time of one small network,
    and it keeps w0 z, sin and cos as separate fresh tensors. Here w0 is folded into the small
    weight matrices, cos overwrites u in place, and every full-size tensor is a buffer reused
    across steps. sin and cos are most of the work; on the first layer they are reused: the grid
    is a product of one coordinate list per axis, so u_1 at pixel (row i, column j) is
    c_i + a_j with a_j = w0 W[:, 0] x_j and c_i = w0 (W[:, 1] y_i + b), and
    sin(c + a) = sin c cos a + cos c sin a, cos(c + a) = cos c cos a - sin c sin a: 4 x 28
    transcendentals per unit instead of 2 x 784, then four cheap broadcast products.
    """

    CACHE_FLOATS = 1 << 18  # floats per [n, pixels, hidden] buffer (1 MB): the working set stays in cache

    @staticmethod
    def supports(space: WeightSpace) -> bool:
        *hidden, last = space.layers
        return (bool(hidden) and hidden[0].n_in == 2 and all(layer.kind == "linear" for layer in space.layers)
                and all(layer.act == "sin" for layer in hidden) and last.act == "identity" and last.n_out == 1)

    def __init__(self, space: WeightSpace, size: int):
        self.space, self.size, self.grid = space, size, inr_grid(size)
        self.lin = torch.linspace(-1, 1, size)  # inr_grid: pixel (i, j) is (x, y) = (lin[j], lin[i])
        widest = max(layer.n_out for layer in space.layers[:-1])
        self.chunk = max(1, self.CACHE_FLOATS // (len(self.grid) * widest))
        self.buffers: dict[int, dict] = {}

    def _buffers(self, n: int) -> dict:
        if n not in self.buffers:
            p = len(self.grid)
            hidden = self.space.layers[:-1]
            self.buffers[n] = {
                "c": [torch.empty(n, p, layer.n_out) for layer in hidden],  # u, then cos(u)
                "h": [torch.empty(n, p, layer.n_out) for layer in hidden],  # sin(u)
                "g": [torch.empty(n, p, layer.n_out) for layer in hidden],  # dloss / dh, then dloss / du
            }
        return self.buffers[n]

    def _first_layer(self, w: torch.Tensor, b: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        """h = sin(u_1), c = cos(u_1) by the angle-addition formulas ([n, pixels, units] buffers)."""
        n, units, s = w.shape[0], w.shape[1], self.size
        lin = self.lin[None, :, None]
        a = w[:, None, :, 0] * lin  # [n, column j, unit]
        r = torch.addcmul(b[:, None, :], w[:, None, :, 1], lin)  # [n, row i, unit]
        sa, ca, sr, cr = a.sin()[:, None], a.cos()[:, None], r.sin()[:, :, None], r.cos()[:, :, None]
        h4, c4 = h.view(n, s, s, units), c.view(n, s, s, units)
        torch.mul(sr, ca, out=h4).addcmul_(cr, sa)
        torch.mul(cr, ca, out=c4).addcmul_(sr, sa, value=-1.0)

    @torch.no_grad()
    def grad(self, params: Params, target: torch.Tensor, grads: Params) -> torch.Tensor:
        """Write d(sum of per-network MSEs)/d params into `grads` (views); returns the MSEs [n]."""
        space, w0 = self.space, self.space.w0
        *hidden, last = space.layers
        n = target.shape[0]
        buf = self._buffers(n)
        scaled = [params[layer.weight] * w0 for layer in hidden]  # w0 folded into the small matrices
        self._first_layer(scaled[0], params[hidden[0].bias] * w0, buf["h"][0], buf["c"][0])
        h = buf["h"][0]
        for i in range(1, len(hidden)):
            u = torch.baddbmm((params[hidden[i].bias] * w0).unsqueeze(1), h, scaled[i].transpose(1, 2),
                              out=buf["c"][i])
            h = buf["h"][i]
            # numpy's vectorised float32 sin/cos run ~2.7x faster than torch's here (0.53 vs 1.43 ns an element,
            # measured on this CPU), and they are a third of a step; the buffers are shared, nothing is copied
            np.sin(u.numpy(), out=h.numpy())
            np.cos(u.numpy(), out=u.numpy())
        y = torch.baddbmm(params[last.bias].unsqueeze(1), h, params[last.weight].transpose(1, 2))[..., 0]
        r = y.add_(space.output_offset).sub_(target)
        mse = (r * r).mean(1)
        dy = r.mul_(2.0 / r.shape[1])  # d mean((y - t)^2) / dy
        grads[last.weight].copy_(torch.bmm(dy.unsqueeze(1), h))
        grads[last.bias].copy_(dy.sum(1, keepdim=True))
        g = torch.mul(dy.unsqueeze(2), params[last.weight], out=buf["g"][-1])  # d loss / d h_{L-1}
        for i in range(len(hidden) - 1, -1, -1):
            layer = hidden[i]
            g.mul_(buf["c"][i])  # d loss / d u_i = d loss / d h_i * cos(u_i)
            if i:
                grads[layer.weight].copy_(torch.bmm(g.transpose(1, 2), buf["h"][i - 1])).mul_(w0)
            else:
                grads[layer.weight].copy_(torch.matmul(self.grid.T, g).transpose(1, 2)).mul_(w0)
            grads[layer.bias].copy_(g.sum(1)).mul_(w0)
            if i:
                g = torch.bmm(g, scaled[i], out=buf["g"][i - 1])
        return mse


def image_draw(n_available: int, n_images: int, extra_train_images: int = 0, seed: int = 0
               ) -> tuple[torch.Tensor, list[str]]:
    """Which training images an INR zoo fits (indices into the source's train split) and each one's split:
    by image, so that every fit of one image lands in the same split; extra images are all 'train'."""
    if n_images + extra_train_images > n_available:
        raise ValueError(f"the source has {n_available} training images, fewer than the {n_images} + "
                         f"{extra_train_images} asked for")
    pick = torch.randperm(n_available, generator=torch.Generator().manual_seed(seed))[:n_images + extra_train_images]
    return pick, assign_splits(n_images, seed=seed) + ["train"] * extra_train_images


def inr_bytes(space: WeightSpace, n: int, chunk: int = 512, pixels: int = 28 * 28) -> int:
    """Memory an INR build needs, roughly: the fitting kernel's three [networks, pixels, units] buffers per
    hidden layer for one stacked chunk, and every network's parameters with gradients and Adam's moments
    (twice over: the fitted chunks and the zoo)."""
    hidden = space.layers[:-1]
    buffers = 3 * min(chunk, n) * pixels * sum(layer.n_out for layer in hidden) * 4
    return buffers + 6 * 4 * n * space.n_params


_COUNT = dict(type=int, low=1)  # a flag's range: a positive integer


@dataclass(frozen=True)
class InrZooConfig:
    """The `inr` zoo kind's options (`build_inr_zoo`'s); the fields with a flag are what `bench zoo build inr`
    takes."""

    n_images: int = option(64, "--images", "number of images (default: {default})", **_COUNT)
    fits_per_image: int = option(2, "--fits-per-image", "independent fits per image (default: {default})", **_COUNT)
    extra_train_images: int = option(0, "--extra-train-images", "N more images fitted once each, all in the train "
                                     "split (default: {default})", type=int, low=0, metavar="N")
    steps: int = option(1000, "--steps", "Adam steps per fit (default: {default})", **_COUNT)
    lr: float = option(5e-3, "--lr", "learning rate (default: {default})", type=float, low=0.0, high=1e3)
    hidden: int = option(32, "--hidden", "hidden width (default: {default})", **_COUNT)
    depth: int = option(2, "--depth", "hidden layers (default: {default})", **_COUNT)
    seed: int = option(0, "--seed", "(default: {default})", type=int, low=0, high=2**31 - 1)
    chunk: int = 512  # SIRENs fitted as one stack


def build_inr_kind(options: dict, data: str, workers: int, progress: bool, checkpoints: Path | None,
                   device: str) -> Zoo:
    """The `inr` zoo kind: SIRENs fitted on `device` (the zoo's cache entry names a device other than the CPU)."""
    return build_inr_zoo(source=data, progress=progress, device=device, workers=workers,
                         **asdict(InrZooConfig(**options)))


def build_inr_zoo(source: str = "auto", n_images: int = 256, fits_per_image: int = 2, steps: int = 1000,
                  lr: float = 5e-3, hidden: int = 32, depth: int = 2, seed: int = 0, chunk: int = 512,
                  progress: bool = True, extra_train_images: int = 0, device: str | torch.device = "cpu",
                  workers: int = 2) -> Zoo:
    """Fit `fits_per_image` SIRENs to each of `n_images` images drawn (seeded) from `source`'s train split.

    `extra_train_images` more images (the next ones of the same draw) are fitted once each and all go to
    the 'train' split: more training networks for learned methods, while the first `n_images` images,
    their networks and their train/val/test split stay exactly those of the zoo without extras.
    `workers`: CPU processes sharing the fitting (the same zoo whatever the number).
    """
    source = resolve_source(source)
    space = siren_space(hidden, depth)
    n = n_images * fits_per_image + extra_train_images
    images, labels = load_images(source, "train")
    # the more specific refusal first: more images asked for than the source has
    pick, image_split = image_draw(len(images), n_images, extra_train_images, seed)
    check_memory(f"INR zoo of {n} SIRENs ({hidden} wide, {depth} deep)", inr_bytes(space, n, chunk))
    targets = images[pick]
    target_of = torch.cat([torch.arange(n_images).repeat_interleave(fits_per_image),
                           torch.arange(n_images, n_images + extra_train_images)])
    n = len(target_of)
    fit_seeds = [seed * 1_000_003 + i for i in range(n)]
    parts, mses = [], []
    n_chunks = -(-n // chunk)
    bar = tqdm(total=steps * n_chunks, desc=f"fitting {n} INRs ({n_chunks} stacked chunk(s))", unit="step",
               disable=not progress)
    for start in range(0, n, chunk):
        idx = slice(start, min(start + chunk, n))
        params, mse = fit_inrs(space, dwsnets_init(space, fit_seeds[idx]), targets[target_of[idx]], steps, lr, bar,
                               device, workers)
        parts.append(params)
        mses.append(mse)
    bar.close()
    params = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    mse = torch.cat(mses)
    meta = pd.DataFrame({
        "id": range(n),
        "target": target_of.numpy(),
        "image_index": pick[target_of].numpy(),
        "label": labels[pick][target_of].numpy(),
        "fit": torch.cat([torch.arange(n_images * fits_per_image).remainder(fits_per_image),
                          torch.zeros(extra_train_images, dtype=torch.long)]).numpy(),
        "fit_seed": fit_seeds,
        "mse": mse.numpy(),
        "psnr": psnr(mse).numpy(),
        "split": [image_split[t] for t in target_of.tolist()],
    })
    config = dict(source=source, n_images=n_images, fits_per_image=fits_per_image, steps=steps, lr=lr,
                  hidden=hidden, depth=depth, seed=seed)
    if extra_train_images:  # absent otherwise, so that existing zoos keep their config and keys
        config["extra_train_images"] = extra_train_images
    if torch.device(device).type != "cpu":  # fitted elsewhere: the same recipe, other float rounding
        config["device"] = str(device)
    task = {"kind": "inr", "source": source, "config": config}
    return Zoo(f"inr-{source}", space, params, meta, task, targets)
