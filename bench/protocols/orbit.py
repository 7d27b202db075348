"""`orbit`: a network, a random group element (P, S or PS) and weight noise N(0, eps^2).

The transformed copy is aligned back to the network and interpolated. `recovered` says whether
the method undid the planted element exactly: its output on the noisy copy equals its output on
the noisy copy with the planted element undone. Methods that return no group element (the constant
reference, autoencoders) leave it empty: they undo nothing, whatever their output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.protocols.base import (
    Endpoints,
    Metric,
    Option,
    Protocol,
    Unit,
    curve_metrics,
    info_columns,
    interpolation_rows,
    register,
    timed_align,
)
from zoos.symmetry import ACTIONS, add_noise, apply_perms, apply_scales, invert, random_action, select
from zoos.tasks import pick, target
from zoos.zoo import Zoo


@register
@dataclass
class Orbit(Protocol):
    name = "orbit"
    metrics = curve_metrics() + (Metric("recovered", "recovered", True, trials=1),
                                 Metric("recovery_error", "recovery error", role="diagnostic"))
    sections = ("action", "eps")
    options = {"n_nets": Option("int", 1, 100_000), "actions": Option("choice", choices=ACTIONS, many=True),
               "eps": Option("float", 0.0, 10.0, many=True)}
    n_nets: int = 8
    actions: tuple[str, ...] = ACTIONS
    eps: tuple[float, ...] = (0.0, 1e-3, 1e-2, 5e-2)

    def units(self, zoo: Zoo) -> list[Unit]:
        nets = pick(zoo.indices(self.split), self.n_nets, self.seed)  # an empty split has no units
        return [Unit(f"net={n} action={act} eps={eps:g}", (n,), act, float(eps))
                for n in nets for act in self._actions(zoo) for eps in self.eps]

    def _actions(self, zoo: Zoo) -> list[str]:
        """The actions that plant something: with no scaling group anywhere, S is the identity and PS is P."""
        scales = any(group != "none" for group in zoo.space.groups.values())
        return [act for act in self.actions if scales or "S" not in act]

    def gaps(self, zoo: Zoo) -> list[str]:
        dropped = [act for act in self.actions if act not in self._actions(zoo)]
        out = [f"action {act}: {zoo.space.name} has no scaling group (BatchNorm, residual sums or identity "
               f"activations remove it), "
               f"so it would plant {'nothing' if act == 'S' else 'P'}: not run" for act in dropped]
        return out + super().gaps(zoo)

    def run(self, method, zoo, task, units):
        return interpolation_rows(self, method, zoo, task, units, [self._one(method, zoo, u) for u in units])

    def _one(self, method, zoo, unit):
        space = zoo.space
        gen = torch.Generator().manual_seed(unit.seed)
        ref = select(zoo.params, unit.a)
        moved, perms, scales = random_action(space, ref, unit.action, gen)
        moved = add_noise(moved, unit.eps, gen)
        tgt = target(zoo, unit.a)
        out, seconds = timed_align(method, ref, moved, tgt)
        error = recovered = float("nan")  # a method that returns no group element recovers nothing: empty
        if out.transform is not None:
            # the noisy copy with the planted element undone: g^-1 = S^-1 P^-1
            truth = apply_scales(space, apply_perms(space, moved, invert(perms)),
                                 {p: 1 / s for p, s in scales.items()})
            again = out if unit.eps == 0 else method.align(truth, moved, tgt)
            num = sum(((again.others[k] - again.ref[k]) ** 2).sum() for k in again.ref)
            den = sum((again.ref[k] ** 2).sum() for k in again.ref)
            error = float((num / den).sqrt())
            recovered = float(error < 1e-4)
        extra = {"action": unit.action, "eps": unit.eps, "align_s": seconds, "recovery_error": error,
                 "recovered": recovered, **info_columns(out.info)}
        return Endpoints(out, ref, moved, (unit.a, unit.a), extra)
