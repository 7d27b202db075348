"""OTFusion (Singh & Jaggi, NeurIPS 2020): layer-wise optimal transport between the units of A and B.

From the input side, each hidden layer's units are matched by an optimal-transport plan T between
A's and B's units (uniform marginals) for the cost

- `cost=weights`: squared distance of the units' incoming weights and bias, B's incoming weights
  first mapped through the plan of the layer before (data-free), or
- `cost=activations`: squared distance of the units' activations on a fixed batch of the zoo's
  training inputs (`methods.activations`);

B's layer is then carried into A's units by T scaled to rows summing to one (a unit of the result is
the plan-weighted mean of B's units), on every axis the layer's units touch. The plans are computed
by POT: `otfusion` solves exactly (`ot.emd`); with equal widths its plan is a vertex of the
transport polytope, a permutation, applied exactly, so the aligned network computes the same
function. `otfusion-sinkhorn` solves the entropic problem (`ot.sinkhorn`, log domain, `reg`
relative to the largest cost): a soft plan, which averages units and changes the function.
Widths must match within a zoo here, but the plan itself would fuse B into A's size.
"""

from __future__ import annotations

import numpy as np
import ot
import torch

from methods.activations import hidden_features, method_inputs
from methods.base import Aligner, Alignment, Hyper
from methods.sinkhorn import soft_permute
from zoos.symmetry import GroupElement, apply_perms, select, stack


class OTFusion(Aligner):
    name = "otfusion"
    display_name = "OTFusion"
    description = "layer-wise exact optimal transport between units (weights or activations)"
    citation = 'Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020'
    arxiv = "1910.05653"
    stack_only = True
    search_space = {"cost": Hyper("cat", "weights", choices=("weights", "activations")),
                    "batch": Hyper("int", 512, 16, 8192, log=True)}

    def __init__(self, seed: int = 0, **hyper):
        super().__init__(seed, **hyper)
        self.needs = "activations" if self.hp["cost"] == "activations" else "data-free"

    def _plan(self, cost: np.ndarray) -> np.ndarray:
        n_a, n_b = cost.shape
        return ot.emd(np.full(n_a, 1.0 / n_a), np.full(n_b, 1.0 / n_b), cost)

    def plans(self, a, b, x: torch.Tensor | None, errors: list | None = None) -> dict[str, torch.Tensor]:
        """Row-normalised plans {p: [n_A, n_B]} for one pair (a, b with N = 1); `errors` collects each plan's
        worst column-marginal error |n_B * column sum - 1| (0 for an exact plan)."""
        space, mats = self.space, {}
        features = None if x is None else (hidden_features(space, a, x), hidden_features(space, b, x))
        for i, (p, layer) in enumerate(zip(space.perm_sizes, space.layers, strict=False)):
            if features is not None:
                fa, fb = features[0][i][0].double().T, features[1][i][0].double().T  # [units, samples]
            else:  # incoming weights and bias, B's inputs already carried into A's units
                moved = soft_permute(space, {k: v[0].double() for k, v in b.items()}, mats)
                fa = torch.cat([a[layer.weight][0].double().flatten(1), a[layer.bias][0].double()[:, None]], 1)
                fb = torch.cat([moved[layer.weight].flatten(1), moved[layer.bias][:, None]], 1)
            cost = torch.cdist(fa, fb).pow(2).numpy()
            plan = torch.from_numpy(self._plan(cost))
            if errors is not None:
                errors.append(float((plan.sum(0) * plan.shape[1] - 1).abs().max()))
            mats[p] = plan / plan.sum(1, keepdim=True).clamp_min(1e-300)
        return mats

    def align(self, ref, others, target=None) -> Alignment:
        x = method_inputs(self.task, self.hp["batch"], self.seed) if self.needs == "activations" else None
        out, perms, errors = [], [], []
        for m in range(next(iter(others.values())).shape[0]):
            b = select(others, m)
            mats = self.plans(ref, b, x, errors)
            if self.exact:  # a permutation plan: applied as one, exactly
                perm = {p: t.argmax(1)[None] for p, t in mats.items()}
                if not all(torch.equal(t.argmax(1).sort().values, torch.arange(len(t))) for t in mats.values()):
                    raise ValueError("otfusion: the exact plan is not a permutation")
                out.append(apply_perms(self.space, b, perm))
                perms.append(perm)
            else:
                moved = soft_permute(self.space, {k: v[0].double() for k, v in b.items()}, mats)
                out.append({k: v[None].to(ref[k].dtype) for k, v in moved.items()})
        transform = None
        if self.exact:
            transform = GroupElement({p: torch.cat([q[p] for q in perms]) for p in self.space.perm_sizes}, {})
        return Alignment(ref, stack(out), transform, None, {"marginal_error": max(errors)})


class OTFusionEntropic(OTFusion):
    name = "otfusion-sinkhorn"
    display_name = "OTFusion (Sinkhorn)"
    description = "layer-wise entropic optimal transport: soft plans that average units"
    citation = 'Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020'
    arxiv = "1910.05653"
    exact = False
    # 3: at most 1000 log-domain iterations (POT's default), marginals to 1e-6 where reached; plans are
    # row-normalised before use, and the worst column-marginal error is reported (`marginal_error`)
    version = 3
    search_space = {**OTFusion.search_space, "reg": Hyper("float", 0.01, 1e-4, 10.0, log=True)}

    def _plan(self, cost: np.ndarray) -> np.ndarray:
        n_a, n_b = cost.shape
        scale = max(float(cost.max()), 1e-300)
        return ot.sinkhorn(np.full(n_a, 1.0 / n_a), np.full(n_b, 1.0 / n_b), cost / scale, self.hp["reg"],
                           method="sinkhorn_log", numItermax=1000, stopThr=1e-6, warn=False)
