"""Sign/scale-aware re-basin: weight matching over the full symmetry group of each layer.

- Odd activations (sine, tanh): matching over signed permutations (assignment on |C|, sign from
  C; see `weight_matching(signed=True)`).
- ReLU: both networks are first brought to the exact positive-scale canonical form (unit-norm
  incoming rows), which removes the scale symmetry; then they are permutation-matched. The
  reference is transformed too (function-preserving): the alignment's `ref_transform`.
"""

from methods.base import Alignment, Hyper
from methods.weight_matching import WeightMatching
from zoos.canonical import scale_canonical


class SignRebasin(WeightMatching):
    name = "sign-rebasin"
    display_name = "Sign/scale re-basin"
    description = "weight matching over signed permutations; ReLU nets first in positive-scale canonical form"
    citation, arxiv = "", ""  # this harness's extension of Git Re-Basin's weight matching
    signed = True
    version = 2  # 2: a unit with negligible incoming weights is dead in the scale canonical form (was: inf/NaN)
    search_space = {**WeightMatching.search_space, "scale_canonical": Hyper("bool", True)}

    def align(self, ref, others, target=None) -> Alignment:
        if not (self.hp["scale_canonical"] and "scale" in self.space.groups.values()):
            return self.match(ref, others)
        ref, ref_scaled = scale_canonical(self.space, ref, element=True)
        others, scaled = scale_canonical(self.space, others, element=True)
        out = self.match(ref, others)
        return Alignment(out.ref, out.others, out.transform.compose(scaled), ref_scaled, out.info)
