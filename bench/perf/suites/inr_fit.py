"""`inr-fit`: stacked fitting of 64 SIRENs vs fitting them one at a time (the same code at N=1, the
autograd reference loop, and a textbook nn.Module + torch.optim.Adam loop)."""

from __future__ import annotations

import torch

from bench.perf.timing import side_by_side, timing_rows


def _textbook_fit(space, init, image, steps: int, lr: float = 5e-3) -> None:
    """How one SIREN is usually fitted: an nn.Module, autograd, torch.optim.Adam, MSELoss."""
    from zoos.tasks import inr_grid

    net = space.to_module(init)
    grid, target = inr_grid(image.shape[-1]), image.reshape(-1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(grid), target)
        loss.backward()
        opt.step()


def inr_fitting(n: int = 64, steps: int = 50, repeats: int = 3, singles: int = 8, hidden: int = 32) -> list[dict]:
    """Stacked fitting of n SIRENs vs one after another (same steps, images, init). The loops' time per
    network is flat, so they fit `singles` networks and report per network."""
    from zoos.data import load_images
    from zoos.inr import dwsnets_init, fit_inrs, fit_inrs_autograd
    from zoos.space import siren_space
    from zoos.symmetry import select

    space = siren_space(hidden)
    images = load_images("auto")[0][:n]
    init = dwsnets_init(space, list(range(n)))
    singles = min(n, singles)

    def loop(fit):
        def run():
            for i in range(singles):
                fit(space, select(init, i), images[i : i + 1], steps)
        return run

    cases = {
        "batched": lambda: fit_inrs(space, init, images, steps),
        "one-at-a-time (same kernel, N=1)": loop(fit_inrs),
        "one-at-a-time (autograd, N=1)": loop(fit_inrs_autograd),
        "one-at-a-time (nn.Module + Adam)": loop(lambda s, p, im, k: _textbook_fit(s, p, im[0], k)),
    }
    per = {name: (n if name == "batched" else singles) * steps for name in cases}  # per network-step
    return timing_rows("inr-fit", side_by_side(cases, repeats), per, networks=n, steps=steps, width=hidden)
