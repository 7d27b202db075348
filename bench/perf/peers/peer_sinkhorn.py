"""Sinkhorn re-basin by the PyPI package `sinkhorn-rebasin` (Pena et al.'s code), on pairs written by
`bench perf`. Run with the peer venv's python: `python peer_sinkhorn.py JOB_DIR OUT_DIR`.

Its API as installed (sinkhorn-rebasin 0.0.2, module `rebasin`, read from site-packages):
`RebasinNet(model_b, input_shape)` traces the model (torchviz) and holds one matrix per
permutation, initialised I + 0.1 N(0, 1); in training mode `pi()` returns model_b with every
soft permutation S(P) applied (log-domain Sinkhorn forward, implicit-differentiation backward);
`rebasin.loss.DistL2Loss(model_a)(model)` is the mean squared weight distance and
`MidLoss(model_a, criterion)(model, x, y)` the criterion at the midpoint; in eval mode `pi()`
applies the hard permutations (LAP on each matrix). We run it with our defaults (tau 1, 20
Sinkhorn iterations, AdamW lr 0.1, the same number of steps) so that the two are comparable.
"""

import copy
import time

import torch
from _common import from_module, load_pair, run, to_module
from rebasin import RebasinNet
from rebasin.loss import DistL2Loss, MidLoss
from safetensors.torch import load_file


def align(spec, settings, case, job_dir):
    a, b = load_pair(job_dir, case)
    model_a, model_b = to_module(spec, a), to_module(spec, b)
    torch.manual_seed(settings.get("seed", 0))
    start = time.perf_counter()
    pi = RebasinNet(model_b, input_shape=(1, *spec["input_shape"]), tau=settings["tau"], n_iter=settings["n_iter"])
    if settings["objective"] == "l2":
        criterion = DistL2Loss(model_a)
        loss_of = criterion
    else:
        data = load_file(str(job_dir / case["data"]))
        x, y = data["inputs"], data["targets"]
        criterion = MidLoss(model_a, torch.nn.MSELoss())

        def loss_of(model):
            return criterion(model, x, y)
    opt = torch.optim.AdamW(pi.p.parameters(), lr=settings["lr"])
    pi.train()
    built = time.perf_counter()
    for _ in range(settings["steps"]):
        loss = loss_of(pi())
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = time.perf_counter()
    pi.eval()
    aligned = copy.deepcopy(pi())
    return from_module(spec, aligned), {"init_seconds": built - start, "steps_seconds": trained - built,
                                        "final_loss": float(loss)}


if __name__ == "__main__":
    run(align)
