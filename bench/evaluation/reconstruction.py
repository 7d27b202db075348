"""What a method that changes the function makes of each network, against the original (and, for INRs,
against the ground-truth image): the autoencoder study's reconstruction columns."""

from __future__ import annotations

import torch

from bench.evaluation.collapse import distances, signatures
from zoos.symmetry import select
from zoos.tasks import psnr


@torch.no_grad()
def reconstruction(zoo, task, method) -> dict:
    """What the decoded test networks compute, against their originals (and the ground truth for INRs)."""
    idx = zoo.indices("test")
    params = select(zoo.params, idx)
    decoded = method.align(select(params, [0]), params).others  # what the method makes of each network
    out_o, out_d = task.outputs(params), task.outputs(decoded)
    if task.kind == "classifier":
        out_o, out_d = out_o.softmax(-1), out_d.softmax(-1)
    mean = out_o.mean(0, keepdim=True)
    r2 = 1 - ((out_d - out_o) ** 2).sum() / ((out_o - mean) ** 2).sum()
    sig_o, sig_d = signatures(task, params), signatures(task, decoded)
    nearest = distances(task, sig_d, sig_o).argmin(1)
    res = {"n_test": len(idx), "r2": float(r2), "ident": float((nearest == torch.arange(len(idx))).double().mean()),
           "ident_chance": 1 / len(idx)}
    if task.kind == "inr":
        target = torch.as_tensor(zoo.meta["target"].to_numpy()[idx])
        images = zoo.targets[target].flatten(1).to(out_o.dtype)
        render_o, render_d = out_o.flatten(1), out_d.flatten(1)
        res.update(psnr_gt=float(psnr(((render_d - images) ** 2).mean(1)).mean()),
                   psnr_gt_original=float(psnr(((render_o - images) ** 2).mean(1)).mean()),
                   psnr_original=float(psnr(((render_d - render_o) ** 2).mean(1)).mean()),
                   ident_image=float((target[nearest] == target).double().mean()),
                   ident_image_chance=1 / len(set(target.tolist())))
        train_images = zoo.targets[torch.as_tensor(sorted(set(zoo.meta["target"].to_numpy()[zoo.indices("train")])))]
        mean_image = train_images.flatten(1).mean(0).to(out_o.dtype)
        res["psnr_gt_mean_image"] = float(psnr(((mean_image - images) ** 2).mean(1)).mean())
    else:
        acc_o, acc_d = task.evaluate(params)["acc"].double(), task.evaluate(decoded)["acc"].double()
        res.update(acc_original=float(acc_o.mean()), acc_decoded=float(acc_d.mean()),
                   acc_lost=float((acc_o - acc_d).mean()),
                   agreement=float((out_o.argmax(-1) == out_d.argmax(-1)).double().mean()))
    return res
