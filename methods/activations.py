"""What data-based methods read: a fixed batch of the zoo's own inputs and the hidden features on it.

The batch is declared and never test data: a classifier zoo's training images (a seeded draw of
`n`), an INR zoo's pixel-coordinate grid (the INR's whole input domain). A method that reads it
sets `needs = "activations"` (see `methods.base.DATA_NEEDS`) and takes its size as a hyperparameter.
"""

from __future__ import annotations

from itertools import islice

import torch

from zoos.space import Params, WeightSpace


def method_inputs(task, n: int, seed: int = 0) -> torch.Tensor:
    """The batch a data-based method may read (module docstring)."""
    if task is None:
        raise ValueError("this method reads activations: it needs the zoo's task (call setup first)")
    return task.method_inputs(n, seed)


@torch.no_grad()
def hidden_features(space: WeightSpace, params: Params, x: torch.Tensor) -> list[torch.Tensor]:
    """Post-activations of every hidden layer (entry i: the units permutation P{i} acts on), each
    [N, samples, units]; a conv feature map contributes each spatial position as a sample."""
    n = next(iter(params.values())).shape[0]
    return [h if h.dim() == 3 else h.movedim(2, -1).reshape(n, -1, layer.n_out)
            for layer, h in islice(space.hidden(params, x), len(space.layers) - 1)]


def correlation(fa: torch.Tensor, fb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of every unit of A [1 or N, samples, n] with every unit of B [N, samples, n]:
    [N, n, n] (float64). A unit that never varies correlates 0 with everything."""
    def standard(f):
        f = f.double()
        f = f - f.mean(1, keepdim=True)
        return f / f.pow(2).mean(1, keepdim=True).sqrt().clamp_min(eps)
    za, zb = standard(fa), standard(fb)
    return torch.matmul(za.transpose(1, 2), zb) / fa.shape[1]
