"""Constant baseline: every network maps to one fixed network of the zoo, whatever the input.

It shows what a method that ignores its input scores in every table: its path between two
"aligned" endpoints is flat (a zero barrier), so only metrics measured against the original
networks (the path excess, reconstruction cost, identification rate) can tell it apart from a
real alignment. The fixed network is the training split's best (lowest task loss: INRs against
their own image, classifiers on a fixed training batch, never the evaluation data).
"""

from __future__ import annotations

import torch

from methods.base import Aligner, Alignment
from zoos.symmetry import select
from zoos.tasks import targets


class Constant(Aligner):
    name = "constant"
    display_name = "Constant (reference)"
    description = "every network mapped to one fixed network (the training split's best); never ranked"
    exact = False
    reference = True  # a reference row: shown in every table, never ranked
    needs = "labels"

    def skip(self, zoo) -> str | None:
        if not zoo.indices("train"):  # never a network of the evaluation split
            return "constant returns the training split's best network; this zoo has no training network"
        return super().skip(zoo)

    def fit(self, zoo, store=None, progress=False):
        pool = zoo.indices("train")
        params = select(zoo.params, pool)
        with torch.no_grad():
            loss = self.task.selection_loss(params, targets(zoo, pool))
        self.index = pool[int(torch.argmin(loss))]
        self.network = select(zoo.params, self.index)

    def align(self, ref, others, target=None) -> Alignment:
        m = next(iter(others.values())).shape[0]
        fixed = {k: v.to(others[k].dtype) for k, v in self.network.items()}
        return Alignment(fixed, {k: v.expand(m, *v.shape[1:]).clone() for k, v in fixed.items()},
                         info={"index": float(self.index)})
