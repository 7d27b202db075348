"""What a method that changes the function makes of each network, against the original (and what the task
adds, `Task.reconstruction_scores`: e.g. the ground-truth image of an INR): the autoencoder study's
reconstruction columns."""

from __future__ import annotations

import torch

from bench.evaluation.collapse import signatures
from zoos.symmetry import select


@torch.no_grad()
def reconstruction(zoo, task, method) -> dict:
    """What the decoded test networks compute, against their originals (and the ground truth for INRs)."""
    idx = zoo.indices("test")
    params = select(zoo.params, idx)
    decoded = method.align(select(params, [0]), params).others  # what the method makes of each network
    out_o, out_d = task.comparable(task.outputs(params)), task.comparable(task.outputs(decoded))
    mean = out_o.mean(0, keepdim=True)
    r2 = 1 - ((out_d - out_o) ** 2).sum() / ((out_o - mean) ** 2).sum()
    sig_o, sig_d = signatures(task, params), signatures(task, decoded)
    nearest = task.distances(sig_d, sig_o).argmin(1)
    res = {"n_test": len(idx), "r2": float(r2), "ident": float((nearest == torch.arange(len(idx))).double().mean()),
           "ident_chance": 1 / len(idx)}
    return {**res, **task.reconstruction_scores(zoo, idx, params, decoded, out_o, out_d, nearest)}
