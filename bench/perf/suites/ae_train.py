"""`ae-train`: autoencoder training throughput (networks per second of optimiser steps: forward, backward,
AdamW) at the reference model size (d = 128, 4 layers) on 2 threads, the torch-geometric path as it
trained before (one pass per batch) beside the dense shared-graph path (chunked batches), in float32
and bfloat16 autocast, at batch 16 and the reference batch 128."""

from __future__ import annotations

import torch

from bench.perf.timing import side_by_side, stats

AE_CASES = (  # (label, graph, precision, chunked)
    ("pyg fp32, one pass per batch (before)", "pyg", "fp32", False),
    ("dense fp32, chunked", "dense", "fp32", True),
    ("dense bf16, chunked", "dense", "bf16", True),
)


def autoencoder_training(hidden: int = 128, n_layers: int = 4, batches=(16, 128), repeats: int = 3,
                         threads: int = 2) -> list[dict]:
    """Training steps per second of the INR autoencoder (SIREN 2-32-32-1, DWSNets-initialised networks
    rendered by RenderLoss), each case with its own model and optimiser, interleaved. Throughput is
    wall time on `threads` threads (the machine's two cores), so per_item_s here is wall seconds."""
    try:
        from methods.scalegmn_ae import RenderLoss, ScaleGMNAutoencoder, accumulate, autocast
    except ImportError as error:
        print(f"perf: ae-train suite skipped ({error})", flush=True)
        return []
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        space = siren_space()
        loss_fn = RenderLoss(space)
        rows = []
        for batch in batches:
            params = dwsnets_init(space, list(range(batch)))
            with torch.no_grad():
                reference = loss_fn.reference(params)
            cases, per = {}, {}
            for label, graph, precision, chunked in AE_CASES:
                model = ScaleGMNAutoencoder(hidden=hidden, n_layers=n_layers).build(space)
                model.set_scales(params)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

                def step(model=model, opt=opt, graph=graph, precision=precision, chunked=chunked, params=params,
                         reference=reference):
                    opt.zero_grad(set_to_none=True)
                    if chunked:
                        accumulate(model, loss_fn, params, reference, graph, precision)
                    else:
                        with autocast(reference.device, precision):
                            loss_fn(model(params, graph), reference).mean().backward()
                    opt.step()
                cases[label], per[label] = step, batch
            times = side_by_side(cases, repeats)
            for label, t in times.items():
                st = stats(t)
                rows.append({"group": "ae-train", "case": label, **st, "per_item_s": st["wall_median_s"] / batch,
                             "networks": batch, "width": hidden, "depth": n_layers, "threads": threads})
        return rows
    finally:
        torch.set_num_threads(before)
