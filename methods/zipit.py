"""ZipIt! (Stoica et al., ICLR 2024): merge networks feature by feature, within and across models.

Per hidden layer, the N n features of N models (activations on a fixed batch of the zoo's training
inputs, `methods.activations`) are merged greedily, most correlated first, until n remain; a merged
feature is the mean of its members and is correlated afresh with the rest. A group holds at most N
features and, with `same_model=false`, at most one per model (for two models: pairs, the paper's
algorithm; cross-model pairs only make it a matching). For N > 2 the greedy order can leave no pair
within those limits before n groups remain; then the size limit, and if need be the other, is lifted.
The "zip" M (n x N n) averages each group; the next layer reads a
group's unit wherever it read one of its members (the "unzip" U, N n x n). The merged layer is
M blockdiag(W_1..W_N) U = mean_m (N M_m W_m U_m): each model's term is its network carried into the
merged units, which `merge` returns as the frame and `align` as the two endpoints (their midpoint is
the zipped network). A group inside one model sums its features, so the terms compute other
functions: an inexact merging method. Copies of one network group each unit with its copies and
give that network back. Partial zipping (stopping at a layer and keeping several heads) yields a
network outside the zoo's architecture, so it is not offered here.
"""

from __future__ import annotations

import numpy as np
import torch

from methods.activations import hidden_features, method_inputs
from methods.base import Aligner, Alignment, Hyper, Merged
from methods.cca_merge import map_units
from zoos.space import Params, WeightSpace
from zoos.symmetry import select, stack


def greedy_groups(features: torch.Tensor, n_models: int, same_model: bool) -> list[list[int]]:
    """Groups of the N n features [samples, N n] (model-major order), most correlated first, n groups."""
    f = features.double()
    total = f.shape[1]
    n = total // n_models

    def standard(x):
        x = x - x.mean(0)
        return x / x.pow(2).mean(0).sqrt().clamp_min(1e-8)

    z = standard(f)
    corr = (z.T @ z / len(z)).numpy()
    groups = {i: [i] for i in range(total)}
    model = np.arange(total) // n

    def allowed(i, j, cap=True):
        if cap and len(groups[i]) + len(groups[j]) > n_models:
            return False
        return same_model or not set(model[groups[i]]) & set(model[groups[j]])

    score = corr.copy()
    np.fill_diagonal(score, -np.inf)
    if not same_model:
        score[model[:, None] == model[None, :]] = -np.inf
    while len(groups) > n:
        flat = int(np.argmax(score))
        i, j = divmod(flat, total)
        if not np.isfinite(score[i, j]):  # stuck (N > 2 only): lift the size cap, then the one-per-model rule
            pairs = [(a, b) for a in groups for b in groups if a < b]
            pairs = [ab for ab in pairs if allowed(*ab, cap=False)] or pairs
            i, j = max(pairs, key=lambda ab: corr[ab[0], ab[1]])
        i, j = min(i, j), max(i, j)
        groups[i] += groups.pop(j)
        score[j, :] = score[:, j] = -np.inf
        score[i, :] = score[:, i] = -np.inf
        partners = [k for k in groups if k != i and allowed(i, k)]  # none once a group is full (N = 2: a pair)
        if partners:
            merged = standard(f[:, groups[i]].mean(1, keepdim=True))[:, 0]
            for k in partners:
                member = z[:, k] if len(groups[k]) == 1 else standard(f[:, groups[k]].mean(1, keepdim=True))[:, 0]
                score[i, k] = score[k, i] = corr[i, k] = corr[k, i] = float(member @ merged) / len(z)
    return sorted(groups.values())  # by first member: groups holding model 0's unit k come in its order


def zip_models(space: WeightSpace, models: Params, x: torch.Tensor, same_model: bool) -> Params:
    """Each model's term N M_m W_m U_m [N] (module docstring): their mean is the zipped network."""
    count = next(iter(models.values())).shape[0]
    features = hidden_features(space, models, x)  # per layer [N, samples, n]
    produce = [dict() for _ in range(count)]
    consume = [dict() for _ in range(count)]
    for p, f in zip(space.perm_sizes, features, strict=True):
        n = space.perm_sizes[p]
        zip_m = torch.zeros(n, count * n, dtype=torch.float64)
        unzip = torch.zeros(count * n, n, dtype=torch.float64)
        for k, group in enumerate(greedy_groups(f.permute(1, 0, 2).reshape(f.shape[1], -1), count, same_model)):
            zip_m[k, group] = 1.0 / len(group)
            unzip[group, k] = 1.0
        for m in range(count):
            produce[m][p] = count * zip_m[:, m * n : (m + 1) * n]
            consume[m][p] = unzip[m * n : (m + 1) * n]
    terms = [map_units(space, {k: v[m] for k, v in models.items()}, produce[m], consume[m]) for m in range(count)]
    return {k: torch.stack([t[k] for t in terms]).to(models[k].dtype) for k in models}


class ZipIt(Aligner):
    name = "zipit"
    display_name = "ZipIt!"
    description = "greedy merging of the most correlated features, within and across models"
    citation = 'Stoica et al., "ZipIt! Merging Models from Different Tasks without Training", ICLR 2024'
    arxiv = "2305.03053"
    exact = False
    needs = "activations"
    stack_only = True
    search_space = {"batch": Hyper("int", 512, 16, 8192, log=True), "same_model": Hyper("bool", True)}

    def align(self, ref, others, target=None) -> Alignment:
        if next(iter(others.values())).shape[0] != 1:  # A's term depends on B: one pair per call
            raise ValueError("zipit aligns one pair at a time (its reference term depends on the other network)")
        terms = zip_models(self.space, stack([ref, others]), self._inputs(), self.hp["same_model"])
        return Alignment(select(terms, 0), select(terms, 1), None, None, {})

    def merge(self, models, target=None) -> Merged:
        frame = zip_models(self.space, models, self._inputs(), self.hp["same_model"])
        return Merged({k: v.mean(0, keepdim=True) for k, v in frame.items()}, frame, None, {})

    def _inputs(self) -> torch.Tensor:
        return method_inputs(self.task, self.hp["batch"], self.seed)
