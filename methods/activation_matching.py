"""Git Re-Basin activation matching (Ainsworth et al., ICLR 2023), generic over the weight space.

For each hidden layer, the cross-correlation of A's and B's unit activations over a fixed batch of
the zoo's training inputs (`methods.activations`) is maximised by one linear assignment. A unit's
activations do not depend on how earlier layers are ordered, so every layer is solved once and
independently: no coordinate descent. `signed=true` (odd activations: sine, tanh) matches on
|correlation| and gives a unit the sign of its correlation, undoing sign flips as well.
"""

from __future__ import annotations

import torch

from methods.activations import correlation, hidden_features, method_inputs
from methods.assignment import signed_assignment
from methods.base import Aligner, Alignment, Hyper
from methods.weight_matching import apply_matching, as_element
from zoos.symmetry import select, stack, stack_elements


class ActivationMatching(Aligner):
    name = "activation-matching"
    display_name = "Git Re-Basin (AM)"
    description = "activation matching: one assignment per layer on unit activation correlations"
    citation = 'Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023'
    arxiv = "2209.04836"
    needs = "activations"
    stack_only = True
    search_space = {"batch": Hyper("int", 512, 16, 8192, log=True), "signed": Hyper("bool", False)}

    def align(self, ref, others, target=None) -> Alignment:
        x = method_inputs(self.task, self.hp["batch"], self.seed)
        corr = [correlation(a, b) for a, b in zip(hidden_features(self.space, ref, x),
                                                  hidden_features(self.space, others, x), strict=True)]
        out, elements = [], []
        for m in range(next(iter(others.values())).shape[0]):
            perms, signs = {}, {}
            for p, c in zip(self.space.perm_sizes, corr, strict=True):
                signed = self.hp["signed"] and self.space.groups[p] == "sign"
                cols, s = signed_assignment(c[m].numpy(), signed)
                perms[p] = torch.from_numpy(cols).long()
                if s is not None:
                    signs[p] = torch.from_numpy(s).float()
            out.append(apply_matching(self.space, select(others, m), perms, signs))
            elements.append(as_element(perms, signs))
        return Alignment(ref, stack(out), stack_elements(elements), None, {})
