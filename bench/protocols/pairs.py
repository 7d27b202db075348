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
    pick,
    register,
    target,
    timed_align,
)
from zoos.symmetry import select
from zoos.zoo import Zoo


@register
@dataclass
class Pairs(Protocol):
    name = "pairs"
    metrics = curve_metrics()
    options = {"n_pairs": Option("int", 1, 100_000)}
    n_pairs: int = 16

    def units(self, zoo: Zoo) -> list[Unit]:
        pool = zoo.indices(self.split)  # an empty split has no units (see gaps), never other networks
        meta = zoo.meta
        if zoo.task.get("kind") == "inr":
            # two independent fits of the same image: an INR is only ever scored against its own image
            by_image = meta.loc[pool].groupby("target").groups
            pairs = [(int(ix[0]), int(ix[1])) for _, ix in sorted(by_image.items()) if len(ix) >= 2]
            pairs = [pairs[i] for i in pick(list(range(len(pairs))), self.n_pairs, self.seed)]
        else:
            shuffled = pick(pool, len(pool), self.seed)
            pairs = list(zip(shuffled[0::2], shuffled[1::2], strict=False))[: self.n_pairs]
        return [Unit(f"pair={a}-{b}", (a, b)) for a, b in pairs]

    def gaps(self, zoo: Zoo) -> list[str]:
        if zoo.task.get("kind") == "inr" and not self.units(zoo):
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
