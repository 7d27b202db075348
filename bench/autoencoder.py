"""`bench ae train|eval`: train the symmetry-aware autoencoders on a stored zoo and inspect them.

Training is the method's own `fit` (cached checkpoint keyed on zoo + hyperparameters, resumable
after a kill, progress bar); this module adds the command-line entry points and an evaluation
of what a researcher checks first: reconstruction quality on held-out networks and latent
invariance under random group actions.
"""

from __future__ import annotations

import json

import torch

from methods import make_method, parse_method
from zoos.symmetry import ACTIONS, random_action, select
from zoos.tasks import make_task
from zoos.zoo import load_zoo


def trained(zoo_dir, spec: str = "scalegmn-ae", full: bool = False):
    """(zoo, task, method) with the method fitted (trained, or loaded from its checkpoint)."""
    zoo = load_zoo(zoo_dir)
    task = make_task(zoo)
    name, given = parse_method(spec)
    method = make_method(name)
    if full:  # paper-sized preset for bigger machines; values given in the spec still win
        preset = method.FULL_CNN if zoo.task.get("kind") == "classifier" else method.FULL
        method = make_method(name, **{k: v for k, v in preset.items() if k in method.search_space}, **given)
    else:
        method = make_method(spec)
    method.setup(zoo, task)
    return zoo, task, method


@torch.no_grad()
def evaluate(zoo, task, method, split: str = "test", n_actions: int = 4) -> dict:
    """Reconstruction metrics on `split` and the largest relative latent change under P/S/PS."""
    idx = zoo.indices(split) or zoo.indices()
    params = select(zoo.params, idx)
    target = torch.tensor(zoo.meta["target"].to_numpy()[idx]) if zoo.task.get("kind") == "inr" else None
    before = task.evaluate(params, target)
    after = task.evaluate(method.canonicalize(params), target)
    out = {"networks": len(idx), "split": split}
    for k in before:
        out[f"{k}_original"] = float(before[k].mean())
        out[f"{k}_reconstructed"] = float(after[k].mean())
    z = method.encode(params)
    for kind in ACTIONS:
        worst = 0.0
        for s in range(n_actions):
            moved, _, _ = random_action(zoo.space, params, kind, torch.Generator().manual_seed(s))
            worst = max(worst, float(((method.encode(moved) - z).norm(dim=-1) / z.norm(dim=-1)).max()))
        out[f"latent_change_{kind}"] = worst
    return out


def main(args) -> int:
    zoo, task, method = trained(args.zoo, args.method, args.full)
    info = {k: v for k, v in method.fit_info.items() if not isinstance(v, list | dict)}
    print(json.dumps({"method": method.name, "checkpoint": str(getattr(method, "checkpoint_dir", "")), **info},
                     indent=2, default=str))
    if args.ae_command == "eval":
        print(json.dumps(evaluate(zoo, task, method, args.split), indent=2))
    return 0
