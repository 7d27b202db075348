"""`lap-share`: weight matching's CPU time over the time of its own LAP solves, on trained MLPs."""

from __future__ import annotations

import statistics
import time

import torch

from bench.perf.suites.alignment import prepared_method
from bench.perf.timing import measure, stats


def trained_mlp(width: int, seed: int, steps: int = 300, batch: int = 128) -> dict:
    """A Fashion-MNIST (digits as fallback) ReLU MLP 784-w-w-w-10 after `steps` Adam steps (lr 1e-3,
    PyTorch's default init, seeded), as one network [1, ...] with `mlp_space` names."""
    from zoos.data import load_images

    images, labels = load_images("auto")
    x = (images.flatten(1) * 2 - 1).float()
    torch.manual_seed(seed)
    widths = [x.shape[1], width, width, width, 10]
    layers = [torch.nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)]
    net = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.ReLU())][:-1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {f"seq.{i}.{k}": getattr(layer, k).detach().clone()[None]
            for i, layer in enumerate(layers) for k in ("weight", "bias")}


class _LapClock:
    """CPU seconds spent inside scipy's `linear_sum_assignment` by every matcher, while active."""

    def __enter__(self):
        import methods.assignment as where

        self.where, self.solve, self.seconds = where, where.linear_sum_assignment, 0.0

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return self.solve(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        where.linear_sum_assignment = timed
        return self

    def __exit__(self, *exc):
        self.where.linear_sum_assignment = self.solve


LAP_SHARE_METHODS = ("git-rebasin", "sign-rebasin")


def lap_share(widths=(128, 256, 512, 1024), repeats: int = 3, steps: int = 300) -> list[dict]:
    """Weight matching's CPU time per pair against the CPU time of its own LAP solves (scipy's
    `linear_sum_assignment`, timed inside the same call), on two trained MLPs 784-w-w-w-10 per width
    (seeds 0 and 1). Everything else (cost matrices, tie rules, applying the result) is overhead."""
    from zoos.space import mlp_space

    rows = []
    for w in widths:
        print(f"perf: lap-share: training two 784-{w}-{w}-{w}-10 MLPs ...", flush=True)
        space = mlp_space([784, w, w, w, 10])
        a, b = trained_mlp(w, 0, steps), trained_mlp(w, 1, steps)
        methods = {label: prepared_method(label, space, None) for label in LAP_SHARE_METHODS}
        times = {label: {"cpu": [], "wall": [], "lap": []} for label in methods}
        for m in methods.values():
            m.align(a, b)  # warm-up
        for _ in range(repeats):
            for label, m in methods.items():
                with _LapClock() as clock:
                    cpu, wall, _ = measure(lambda m=m, a=a, b=b: m.align(a, b))
                times[label]["cpu"].append(cpu)
                times[label]["wall"].append(wall)
                times[label]["lap"].append(clock.seconds)
        for label, t in times.items():
            ratios = [c / max(s, 1e-12) for c, s in zip(t["cpu"], t["lap"], strict=True)]
            rows.append({"group": "lap-share", "case": label, "width": w, **stats(t),
                         "per_item_s": stats(t)["median_s"], "lap_s": statistics.median(t["lap"]),
                         "lap_ratio": statistics.median(ratios)})
    return rows


LAP_SHARE_TARGET = 1.2  # weight matching's CPU time over its own LAP solves' time, at most
