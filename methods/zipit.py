"""ZipIt! (Stoica et al., ICLR 2024): merge two networks feature by feature, within and across models.

Per hidden layer, the 2n features of A and B (activations on a fixed batch of the zoo's training
inputs, `methods.activations`) are paired greedily, most correlated first, until n pairs remain;
a pair may join two features of one model (`same_model=true`, the paper's default) or only one
of each (`same_model=false`, then it is a matching). Each pair becomes one unit, the mean of its
two features (the "zip" M, n x 2n); the next layer reads a pair's unit wherever it read either
feature (the "unzip" U, 2n x n). The merged layer is M blockdiag(W_A, W_B) U, which splits as
(S_A W_A U_A + S_B W_B U_B) / 2 with S = 2 M restricted to one model's columns: `align` returns
those two terms as the endpoints (A' and B', whose midpoint is the zipped network), `merge` their
mean. A pair inside one model sums two of its features, so A' and B' compute other functions:
an inexact merging method. Two copies of one network pair each unit with its copy and give that
network back. Partial zipping (stopping at a layer and keeping two heads) yields a network outside
the zoo's architecture, so it is not offered here.
"""

from __future__ import annotations

import numpy as np
import torch

from methods.activations import correlation, hidden_features, method_inputs
from methods.base import Aligner, Alignment, Hyper, Merged
from methods.cca_merge import map_units
from zoos.space import Params, WeightSpace
from zoos.symmetry import select, stack


def greedy_pairs(corr: np.ndarray, same_model: bool) -> list[tuple[int, int]]:
    """Pairs of the 2n features (A's first), most correlated first, each feature in exactly one pair."""
    n2 = len(corr)
    n = n2 // 2
    score = corr.copy()
    np.fill_diagonal(score, -np.inf)
    if not same_model:
        score[:n, :n] = score[n:, n:] = -np.inf
    i, j = np.triu_indices(n2, k=1)
    order = np.argsort(-score[i, j], kind="stable")
    used, pairs = np.zeros(n2, dtype=bool), []
    for k in order:
        a, b = i[k], j[k]
        if not (used[a] or used[b]):
            used[a] = used[b] = True
            pairs.append((int(a), int(b)))
            if len(pairs) == n:
                break
    return sorted(pairs)  # by first member: pairs holding A's unit k come in A's order


def zip_pair(space: WeightSpace, a: Params, b: Params, x: torch.Tensor, same_model: bool) -> tuple[Params, Params]:
    """(A', B') for one pair (N = 1 each): the two halves of the zipped network (module docstring)."""
    features = [torch.cat([fa, fb], 2) for fa, fb in zip(hidden_features(space, a, x), hidden_features(space, b, x),
                                                         strict=True)]
    produce_a, produce_b, consume_a, consume_b = {}, {}, {}, {}
    for p, f in zip(space.perm_sizes, features, strict=True):
        n = space.perm_sizes[p]
        s, u = torch.zeros(n, 2 * n, dtype=torch.float64), torch.zeros(2 * n, n, dtype=torch.float64)
        for k, (i, j) in enumerate(greedy_pairs(correlation(f, f)[0].numpy(), same_model)):
            s[k, i] = s[k, j] = 1.0
            u[i, k] = u[j, k] = 1.0
        produce_a[p], produce_b[p] = s[:, :n], s[:, n:]
        consume_a[p], consume_b[p] = u[:n], u[n:]
    half_a = map_units(space, {k: v[0] for k, v in a.items()}, produce_a, consume_a)
    half_b = map_units(space, {k: v[0] for k, v in b.items()}, produce_b, consume_b)
    return ({k: v[None].to(a[k].dtype) for k, v in half_a.items()},
            {k: v[None].to(b[k].dtype) for k, v in half_b.items()})


class ZipIt(Aligner):
    name = "zipit"
    exact = False
    needs = "activations"
    search_space = {"batch": Hyper("int", 512, 16, 8192, log=True), "same_model": Hyper("bool", True)}

    def align(self, ref, others, target=None) -> Alignment:
        if next(iter(others.values())).shape[0] != 1:  # A' depends on B: one pair per call
            raise ValueError("zipit aligns one pair at a time (its reference half depends on the other network)")
        half_a, half_b = zip_pair(self.space, ref, others, method_inputs(self.task, self.hp["batch"], self.seed),
                                  self.hp["same_model"])
        return Alignment(half_a, half_b, None, None, {})

    def merge(self, models, target=None) -> Merged:
        if next(iter(models.values())).shape[0] != 2:
            raise ValueError(f"zipit merges 2 models, not {next(iter(models.values())).shape[0]}")
        out = self.align(select(models, 0), select(models, 1))
        frame = stack([out.ref, out.others])
        return Merged({k: v.mean(0, keepdim=True) for k, v in frame.items()}, frame, None, {})
