"""Canonicalisation baseline (Pittorino et al.): one zoo-wide reference, then exact canonical forms.

`fit` picks the reference (the first training network of the zoo, in its own canonical form).
Every network is matched to it (signed permutations for odd activations, after the scale
canonical form for ReLU), then put in the exact sign/scale canonical form. Both endpoints of a
pair are canonicalised this way, so permutations are broken only as well as matching to the
reference manages, while the rescaling symmetries are broken exactly.
"""

import torch

from methods.base import Aligner, Alignment
from methods.weight_matching import apply_matching, as_element, weight_matching
from zoos.canonical import canonical_form
from zoos.symmetry import GroupElement, select, stack, stack_elements


class Canonical(Aligner):
    name = "canonical"
    display_name = "Canonicalisation"
    description = "match to one zoo reference, then the exact sign/scale canonical form"
    citation = ('Pittorino et al., '
                '"Deep Networks on Toroids: Removing Symmetries Reveals the Structure of Flat Regions in the '
                'Landscape Geometry", ICML 2022')
    arxiv = "2202.03038"
    multi_model = True  # every network goes to one zoo-wide frame: its maps compose through it
    version = 2  # 2: a unit with negligible incoming weights is dead in the scale canonical form (was: inf/NaN)

    def fit(self, zoo, store=None, progress=False):
        first = (zoo.indices("train") or zoo.indices())[0]
        self.zoo_reference = canonical_form(zoo.space, select(zoo.params, first))

    def canonicalize(self, params) -> tuple[dict, GroupElement]:
        """Each of the N networks matched to the zoo reference, then in canonical form; and the map applied."""
        space, ref = self.space, {k: v[0] for k, v in self.zoo_reference.items()}
        out, elements = [], []
        for i in range(next(iter(params.values())).shape[0]):
            net, first = canonical_form(space, select(params, i), element=True)
            perms, signs, _ = weight_matching(space, ref, {k: v[0] for k, v in net.items()}, signed=True,
                                              generator=torch.Generator().manual_seed(self.seed))
            done, last = canonical_form(space, apply_matching(space, net, perms, signs), element=True)
            out.append(done)
            elements.append(last.compose(as_element(perms, signs)).compose(first))
        return stack(out), stack_elements(elements)

    def align(self, ref, others, target=None) -> Alignment:
        (ref_out, ref_map), (out, maps) = self.canonicalize(ref), self.canonicalize(others)
        return Alignment(ref_out, out, maps, ref_map)
