"""`bench ae train|eval`: train the symmetry-aware autoencoders on a stored zoo and inspect them.

Training is the method's own `fit`, set up as every run sets methods up (`prepare_method`, with the
checkpoint store under `--results`: keyed on zoo + hyperparameters, resumable after a kill); this
module adds the command-line entry points and an evaluation
of what a researcher checks first: reconstruction quality on held-out networks and latent
invariance under random group actions.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.execution.batch import prepare_method
from bench.execution.checkpoints import CheckpointStore
from methods import METHODS, MethodSpec, UnknownMethod, format_spec, parse_method
from zoos.names import unknown_name
from zoos.symmetry import ACTIONS, random_action, select
from zoos.tasks import make_task, targets
from zoos.zoo import SPLITS, load_zoo


def autoencoders() -> list[str]:
    """Registered methods that `bench ae` can train and inspect: those with an encoder and a decoder."""
    return sorted(n for n, cls in METHODS.items() if callable(getattr(cls, "encode", None))
                  and callable(getattr(cls, "decode", None)))


def check_autoencoder(spec: str) -> tuple[str, dict]:
    """(name, given hyperparameters) of `spec`, refused in one line unless it names an autoencoder: before any
    zoo is read or any model trained (a plain aligner has no encoder, no fit_info, nothing to evaluate)."""
    name, given = parse_method(spec)
    if name not in METHODS:
        raise UnknownMethod(unknown_name("method", name, METHODS))
    if name not in autoencoders():
        raise ValueError(f"--method {name}: not an autoencoder; `bench ae` trains and evaluates "
                         f"{', '.join(autoencoders()) or 'none registered'} (align with `bench run --methods {name}`)")
    return name, given


def trained(zoo_dir, spec: str = "scalegmn-ae", full: bool = False, results: Path = Path("results")):
    """(zoo, task, method) with the method fitted (trained, or loaded from the checkpoint store of `results`)."""
    name, given = check_autoencoder(spec)
    zoo = load_zoo(zoo_dir)
    task = make_task(zoo)
    if full:  # paper-sized preset for bigger machines; values given in the spec still win
        cls = METHODS[name]
        preset = cls.FULL_BY_TASK[task.kind]
        spec = format_spec(name, {**{k: v for k, v in preset.items() if k in cls.search_space}, **given})
    method, _ = prepare_method(MethodSpec.parse(spec), 0, zoo, task, CheckpointStore.for_results(results),
                               progress=True)
    return zoo, task, method


@torch.no_grad()
def evaluate(zoo, task, method, split: str = "test", n_actions: int = 4) -> dict:
    """Reconstruction metrics on `split` and the largest relative latent change under P/S/PS. Only `split`'s
    networks are scored: an empty split is an error naming it, never a fallback to the whole zoo."""
    idx = zoo.indices(split)
    if not idx:
        raise ValueError(f"split {split!r} of zoo {zoo.name!r} holds no networks: nothing to evaluate")
    params = select(zoo.params, idx)
    target = targets(zoo, idx)
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
    if args.ae_command == "eval" and args.split not in SPLITS:  # before any training
        raise ValueError(f"--split {args.split!r}: expected one of {', '.join(SPLITS)}")
    zoo, task, method = trained(args.zoo, args.method, args.full, args.results)
    info = {k: v for k, v in method.fit_info.items() if not isinstance(v, list | dict)}
    print(json.dumps({"method": method.name, "checkpoint": str(getattr(method, "checkpoint_dir", "")), **info},
                     indent=2, default=str))
    if args.ae_command == "eval":
        print(json.dumps(evaluate(zoo, task, method, args.split), indent=2))
    return 0
