"""Git Re-Basin's MergeMany (Ainsworth et al., ICLR 2023, Algorithm 3), generic over the weight space.

Every model starts unpermuted. A round visits the models in a random order and weight-matches
model m (in its current alignment, so permutations and signs are warm-started) to the mean of all
the other models in their current alignment; a match is only accepted when it brings the model
closer to that mean, so the objective rises monotonically. Rounds repeat until one changes no
permutation (the mean has stopped moving) or `max_iter` rounds have run. The merge is the mean of
the aligned models.

All models end in one common frame (no model is held fixed), so the per-model permutations play
the role of C2M3's maps to the universe, and pairwise maps composed through it are cycle-consistent.
"""

from __future__ import annotations

import time

import torch

from methods.base import Aligner, Alignment, Hyper, Merged
from methods.c2m3 import Perms, pairwise_alignment, universe_merge
from methods.weight_matching import apply_matching, weight_matching
from zoos.space import Params, WeightSpace
from zoos.symmetry import select, stack


def _inner(a: Params, b: Params) -> float:
    return sum((a[k].double() * b[k].double()).sum().item() for k in a)


def _match(space: WeightSpace, target: Params, current: Params, signed: bool, max_sweeps: int, generator):
    """Weight-match the model as currently aligned to the target; never returns a worse matching.

    Coordinate descent from the identity is a warm start (it only accepts improvements, so rounds
    increase the MergeMany objective monotonically and terminate); the forward-greedy start can
    escape a poor first alignment. Keep whichever matches the target better.
    """
    best = None
    for init in ("identity", "forward"):
        p, s, _ = weight_matching(space, target, current, signed=signed, max_sweeps=max_sweeps, generator=generator,
                                  init=init)
        moved = {k: v[0] for k, v in apply_matching(space, {k: v[None] for k, v in current.items()}, p, s).items()}
        score = _inner(target, moved)
        if best is None or score > best[0] + 1e-9 * abs(best[0]):
            best = (score, p, s)
    return best[1], best[2]


def merge_many(space: WeightSpace, models: Params, *, max_iter: int = 100, max_sweeps: int = 100,
               signed: bool = False, seed: int = 0) -> tuple[list[Perms], list[Perms], int]:
    """Per-model (perms, signs) into the common frame, and the number of rounds run."""
    n = next(iter(models.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    singles = [{k: v[m] for k, v in models.items()} for m in range(n)]
    perms: list[Perms] = [{p: torch.arange(s) for p, s in space.perm_sizes.items()} for _ in range(n)]
    signs: list[Perms] = [{} for _ in range(n)]
    aligned = [dict(s) for s in singles]
    rounds = 0
    for rounds in range(1, max_iter + 1):
        moved = False
        for m in torch.randperm(n, generator=generator).tolist():
            others = [aligned[j] for j in range(n) if j != m]
            target = {k: torch.stack([o[k] for o in others]).mean(0) for k in models}
            p1, s1 = _match(space, target, aligned[m], signed, max_sweeps, generator)
            if any(not torch.equal(v, torch.arange(len(v))) for v in p1.values()) or \
                    any(bool((v < 0).any()) for v in s1.values()):
                moved = True
            # compose with the current alignment: unit i = s1[i] s0[p1[i]] * original[p0[p1[i]]]
            p = {q: perms[m][q][p1[q]] for q in p1}
            s = {q: s1[q] * signs[m].get(q, torch.ones_like(s1[q]))[p1[q]] for q in s1}
            perms[m], signs[m] = p, s
            aligned[m] = {k: v[0] for k, v in apply_matching(space, select(models, m), p, s).items()}
        if not moved:
            break
    return perms, signs, rounds


class MergeMany(Aligner):
    name = "mergemany"
    display_name = "MergeMany"
    description = "N-model weight matching of each model to the mean of the others"
    citation = 'Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023'
    arxiv = "2209.04836"
    multi_model = True
    search_space = {
        "max_iter": Hyper("int", 100, 1, 10000),
        "max_sweeps": Hyper("int", 100, 1, 1000),
        "signed": Hyper("bool", False),
    }

    def _run(self, models: Params):
        start = time.perf_counter()
        perms, signs, rounds = merge_many(self.space, models, max_iter=self.hp["max_iter"],
                                          max_sweeps=self.hp["max_sweeps"], signed=self.hp["signed"], seed=self.seed)
        return perms, signs, {"rounds": float(rounds), "seconds": time.perf_counter() - start}

    def merge(self, models, target=None) -> Merged:
        """The average in the common frame; `frame` holds all N models there."""
        return universe_merge(self.space, models, *self._run(models))

    def align(self, ref, others, target=None) -> Alignment:
        models = stack([ref, others])
        return pairwise_alignment(self.space, models, *self._run(models))
