"""`merge`: N networks merged into one.

Records the merged network's loss/accuracy (PSNR for INRs) against the endpoints' mean, the same
after REPAIR (for BatchNorm networks: after resetting BatchNorm's statistics), and the
cycle-consistency error of the method's pairwise maps over triples.

INR groups are fits of one image (so N is at most the zoo's fits per image); classifier groups
are drawn from the evaluation split only: a size the split cannot fill has no groups, and `gaps`
names it (never a fallback to the whole zoo, whose training networks learned methods have seen).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.evaluation.cycles import all_triples, mean_cycle_error
from bench.evaluation.repair import repair_merged
from bench.protocols.base import Metric, Option, Protocol, Unit, info_columns, register
from methods.base import Aligner, Merged
from zoos.space import Params
from zoos.symmetry import GroupElement, select
from zoos.tasks import STATISTICS_BATCH, draw_groups, pick, target, task_class
from zoos.zoo import Zoo


def _merge_metrics() -> tuple[Metric, ...]:
    out = [Metric("loss_merged", "merged loss", role="rank")]
    for score, hib in (("acc", True), ("psnr", True)):
        out += [Metric(f"{score}_merged", f"merged {score}", hib),
                Metric(f"{score}_merged_repair", f"merged {score} (REPAIR)", hib),
                Metric(f"{score}_endpoints", f"{score} of the inputs (mean)", hib),
                Metric(f"{score}_gap", f"merged {score} minus the inputs'", hib),
                Metric(f"{score}_ensemble", f"{score} of the output ensemble", hib)]
    out += [Metric("cycle_error", "cycle error"),
            Metric("loss_endpoints", "loss of the inputs (mean)", role="diagnostic"),
            Metric("loss_gap", "merged loss minus the inputs'", role="diagnostic"),
            Metric("loss_ensemble", "loss of the output ensemble", role="diagnostic"),
            Metric("loss_merged_repair", "merged loss (REPAIR)", role="diagnostic"),
            Metric("merge_s", "merge s", role="runtime")]
    return tuple(out)


def pairwise_maps(method: Aligner, models: Params, merged: Merged,
                  target: int | None = None) -> Callable[[int, int], GroupElement]:
    """The map a <- b for any two of `models`: through the merge's common frame for multi-model methods
    (whose maps are meant to compose), else from aligning b to a with the method itself."""
    if method.multi_model and merged.transform is not None:
        to_frame = merged.transform
        return lambda a, b: to_frame.select(a).inverse().compose(to_frame.select(b))
    return lambda a, b: method.align(select(models, a), select(models, b), target).maps()  # INRs: one image


@register
@dataclass
class Merge(Protocol):
    name = "merge"
    metrics = _merge_metrics()
    sections = ("n_models",)
    options = {"sizes": Option("int", 2, 128, many=True), "n_groups": Option("int", 1, 100_000),
               "repair": Option("bool"), "max_triples": Option("int", 0, 10_000),
               "repair_images": Option("int", 2, 60_000)}
    later_options = {"repair_images": STATISTICS_BATCH}
    sizes: tuple[int, ...] = (2, 3, 5, 8)
    n_groups: int = 2
    repair: bool = True
    max_triples: int = 6
    repair_images: int = STATISTICS_BATCH  # training images REPAIR measures unit statistics on (classifiers)

    def units(self, zoo: Zoo) -> list[Unit]:
        # each size its own groups (INRs: fits of one image; classifiers: drawn from the split, a size
        # the split cannot fill has none: a gap, never networks of other splits)
        return [Unit(f"n={n} nets={'-'.join(map(str, g))}", g) for n in self.sizes
                for g in draw_groups(zoo, self.split, n, self.n_groups, self.seed, overlapping=True)]

    def run(self, method, zoo, task, units):
        return [self._one(method, zoo, task, unit) for unit in units]

    def gaps(self, zoo: Zoo) -> list[str]:
        have = {u.name.split(" ")[0] for u in self.units(zoo)}
        if task_class(zoo).per_network_target:
            why = " (INR zoos merge fits of one image)"
        else:
            why = f" (split {self.split!r} holds {len(zoo.indices(self.split))} network(s))"
        return [f"n={n}: no group of {n} networks{why}" for n in self.sizes if f"n={n}" not in have]

    def _one(self, method, zoo, task, unit: Unit) -> dict:
        members = list(unit.nets)
        models = select(zoo.params, members)
        tgt_index = target(zoo, members[0])
        start = time.perf_counter()
        out = method.merge(models, tgt_index)
        seconds = time.perf_counter() - start
        tgt = None if tgt_index is None else torch.tensor([tgt_index])
        outputs = task.outputs(models)  # the inputs scored one by one and as an ensemble
        ends = task.score(outputs, None if tgt is None else tgt.repeat(len(members)))
        row = {"unit": unit.name, "a": members[0], "n_models": len(members), "merge_s": seconds,
               **info_columns(out.info)}
        ensemble = task.score(task.ensemble(outputs), tgt)
        for k, v in task.evaluate(out.merged, tgt).items():
            row[f"{k}_merged"], row[f"{k}_endpoints"] = float(v[0]), float(ends[k].mean())
            row[f"{k}_gap"] = row[f"{k}_merged"] - row[f"{k}_endpoints"]
            row[f"{k}_ensemble"] = float(ensemble[k][0])
        if self.repair:
            repaired = repair_merged(zoo.space, out.merged, out.frame, task.statistics_inputs(self.repair_images))
            for k, v in task.evaluate(repaired, tgt).items():
                row[f"{k}_merged_repair"] = float(v[0])
        row["cycle_error"] = float("nan")
        if method.exact and len(members) >= 3:
            triples = all_triples(len(members))
            triples = [triples[i] for i in pick(list(range(len(triples))), self.max_triples, self.seed)]
            row["cycle_error"] = mean_cycle_error(pairwise_maps(method, models, out, tgt_index), triples)
        return row
