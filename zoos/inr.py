"""INR zoo generator: many SIRENs fitted at once to 28x28 grey images (DWSNets conventions).

All networks of a chunk are stacked and fitted together: the loss is the sum of the per-network
pixel MSEs and Adam is elementwise, so this is exactly the same as fitting each network alone
(checked in the tests), only much faster. `fits_per_image` independent seeds per image give the
pairs of independently fitted INRs of one image that the `pairs` protocol needs.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from tqdm.auto import tqdm

from zoos.data import load_images, resolve_source
from zoos.space import Params, WeightSpace, siren_space
from zoos.tasks import inr_grid
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
             progress: tqdm | None = None) -> tuple[Params, torch.Tensor]:
    """Fit N stacked SIRENs (init [N,...]) to images [N, H, W] by full-batch Adam; returns (params, mse [N])."""
    grid = inr_grid(images.shape[-1])
    target = images.flatten(1)
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


def build_inr_zoo(source: str = "auto", n_images: int = 256, fits_per_image: int = 2, steps: int = 1000,
                  lr: float = 5e-3, hidden: int = 32, depth: int = 2, seed: int = 0, chunk: int = 512,
                  progress: bool = True) -> Zoo:
    """Fit `fits_per_image` SIRENs to each of `n_images` images drawn (seeded) from `source`'s train split."""
    source = resolve_source(source)
    images, labels = load_images(source, "train")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n_images]
    targets = images[pick]
    space = siren_space(hidden, depth)
    n = len(pick) * fits_per_image
    target_of = torch.arange(len(pick)).repeat_interleave(fits_per_image)
    fit_seeds = [seed * 1_000_003 + i for i in range(n)]
    # split by image so that both fits of one image land in the same split
    image_split = assign_splits(len(pick), seed=seed)
    parts, mses = [], []
    n_chunks = -(-n // chunk)
    bar = tqdm(total=steps * n_chunks, desc=f"fitting {n} INRs ({n_chunks} stacked chunk(s))", unit="step",
               disable=not progress)
    for start in range(0, n, chunk):
        idx = slice(start, min(start + chunk, n))
        params, mse = fit_inrs(space, dwsnets_init(space, fit_seeds[idx]), targets[target_of[idx]], steps, lr, bar)
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
        "fit": torch.arange(n).remainder(fits_per_image).numpy(),
        "fit_seed": fit_seeds,
        "mse": mse.numpy(),
        "psnr": (-10 * torch.log10(mse)).numpy(),
        "split": [image_split[t] for t in target_of.tolist()],
    })
    config = dict(source=source, n_images=n_images, fits_per_image=fits_per_image, steps=steps, lr=lr,
                  hidden=hidden, depth=depth, seed=seed)
    task = {"kind": "inr", "source": source, "config": config}
    return Zoo(f"inr-{source}", space, params, meta, task, targets)
