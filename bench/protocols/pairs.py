"""`pairs`: independently trained networks aligned pairwise and interpolated.

INR zoos pair two independent fits of one image (both scored against that image); classifier
zoos pair networks drawn at random from the evaluation split.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.protocols.base import (
    Endpoints,
    Option,
    Protocol,
    Unit,
    curve_metrics,
    info_columns,
    interpolation_rows,
    register,
    timed_align,
)
from zoos.symmetry import select
from zoos.tasks import draw_groups, target, task_class
from zoos.zoo import Zoo


@register
@dataclass
class Pairs(Protocol):
    name = "pairs"
    metrics = curve_metrics()
    options = {"n_pairs": Option("int", 1, 100_000)}
    n_pairs: int = 16

    def units(self, zoo: Zoo) -> list[Unit]:
        # INRs: two independent fits of the same image (an INR is only ever scored against its own image)
        return [Unit(f"pair={a}-{b}", (a, b)) for a, b in draw_groups(zoo, self.split, 2, self.n_pairs, self.seed)]

    def gaps(self, zoo: Zoo) -> list[str]:
        if task_class(zoo).per_network_target and not self.units(zoo):
            return [f"no units: no image has two INRs in split {self.split!r} (pairs need two fits of one image; "
                    f"a zoo with one INR per image, like DWSNets', has none)"]
        return super().gaps(zoo)

    def run(self, method, zoo, task, units):
        ends = []
        for unit in units:
            ref, other = select(zoo.params, unit.a), select(zoo.params, unit.b)
            out, seconds = timed_align(method, ref, other, target(zoo, unit.a))
            ends.append(Endpoints(out, ref, other, (unit.a, unit.b), {"align_s": seconds, **info_columns(out.info)}))
        return interpolation_rows(self, method, zoo, task, units, ends)
