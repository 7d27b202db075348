"""Naive averaging: no alignment at all, the baseline every barrier is compared with."""

from methods.base import Aligner, unchanged


class Naive(Aligner):
    name = "naive"
    display_name = "Naive averaging"
    description = "plain averaging of the weights, no alignment"

    def align(self, ref, others, target=None):
        return unchanged(self.space, ref, others)
