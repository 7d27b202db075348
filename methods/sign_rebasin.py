"""Sign/scale-aware re-basin: weight matching over the full symmetry group of each layer.

- Odd activations (sine, tanh): matching over signed permutations (assignment on |C|, sign from
  C; see `weight_matching(signed=True)`).
- ReLU: both networks are first brought to the exact positive-scale canonical form (unit-norm
  incoming rows), which removes the scale symmetry; then they are permutation-matched. The
  reference is transformed too (function-preserving), hence `canonicalizes_ref`.
"""

from methods.base import Hyper
from methods.weight_matching import WeightMatching
from zoos.canonical import scale_canonical


class SignRebasin(WeightMatching):
    name = "sign-rebasin"
    signed = True
    canonicalizes_ref = True
    search_space = {**WeightMatching.search_space, "scale_canonical": Hyper("bool", True)}

    def align_pair(self, ref, others, target=None):
        if self.hp["scale_canonical"] and "scale" in self.space.groups.values():
            ref, others = scale_canonical(self.space, ref), scale_canonical(self.space, others)
        return ref, self.align(ref, others, target)
