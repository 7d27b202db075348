"""Canonicalisation baseline (Pittorino et al.): one zoo-wide reference, then exact canonical forms.

`fit` picks the reference (the first training network of the zoo, in its own canonical form).
Every network is matched to it (signed permutations for odd activations, after the scale
canonical form for ReLU), then put in the exact sign/scale canonical form. Both endpoints of a
pair are canonicalised this way, so permutations are broken only as well as matching to the
reference manages, while the rescaling symmetries are broken exactly.
"""

import torch

from methods.base import Aligner
from methods.weight_matching import apply_matching, weight_matching
from zoos.canonical import canonical_form
from zoos.symmetry import select, stack


class Canonical(Aligner):
    name = "canonical"
    canonicalizes_ref = True

    def fit(self, zoo):
        first = (zoo.indices("train") or zoo.indices())[0]
        self.reference = canonical_form(zoo.space, select(zoo.params, first))

    def canonicalize(self, params):
        """Each of the N networks matched to the zoo reference, then in canonical form."""
        space, ref = self.space, {k: v[0] for k, v in self.reference.items()}
        out = []
        for i in range(next(iter(params.values())).shape[0]):
            net = canonical_form(space, select(params, i))
            perms, signs, _ = weight_matching(space, ref, {k: v[0] for k, v in net.items()}, signed=True,
                                              generator=torch.Generator().manual_seed(self.seed))
            out.append(canonical_form(space, apply_matching(space, net, perms, signs)))
        return stack(out)

    def align(self, ref, others, target=None):
        return self.canonicalize(others)

    def align_pair(self, ref, others, target=None):
        return self.canonicalize(ref), self.canonicalize(others)
