"""Git Re-Basin's straight-through estimator (Ainsworth et al., ICLR 2023, section 3.3; "STE").

Reference: samuela/git-re-basin, `src/mnist_mlp_ste2.py` (the version the paper reports; the earlier
`src/mnist_mlp_ste.py` optimised relaxed permutation matrices instead), commit
7a989c1b2562361be4f04070f87da8d518d22c55, with its `src/weight_matching.py` as the projection.
Reimplemented here on the harness's weight spaces and its `weight_matching`; no code is shared.

A proxy network theta~ (initialised at A, as in the reference) is trained so that B, permuted to
match it, interpolates well with A. Each step:

1. project the proxy onto B's permutation orbit: P = weight matching with the proxy as reference
   and B permuted, warm-started from the previous step's P (the reference's `init_perm`; here B is
   handed over already permuted by it, with `init=identity`, and the two are composed);
2. the straight-through network B' = P(B) + theta~ - stopgrad(theta~): its value is P(B), its
   gradient goes to theta~;
3. the task loss (cross-entropy; INRs: the task's MSE) of the midpoint (A + B') / 2 on a
   training batch - the reference uses lambda = 1/2 throughout, it draws none. Classifiers: the
   next `batch` images of shuffled passes over a pool of `steps * batch` training images (all of
   them when there are fewer; with the reference's budget, epochs over the training set as there),
   drawn once per `align` call with `task.train_examples`; INRs: the target image, every pixel;
4. one step of SGD with momentum on theta~.

The permutation kept is the one with the lowest step loss seen (the reference's `best_perm`,
compared on each step's own batch as there). The first step's P is plain weight matching of B
to A (the proxy starts at A), so that is always a candidate. B is returned with the kept hard
permutation applied: exact, the aligned network computes B's function.

Hyperparameters and the reference's values: `lr` 1e-2 and `momentum` 0.9 (optax.sgd), `batch` 1000,
`max_sweeps` 100 (the inner matching's `max_iter`): all as there. `steps`: the reference runs 250
epochs of 60 batches over MNIST's 60,000 images (15,000 steps, each with a full weight matching);
the default here is 50 steps, seconds per pair for a 784-512-512-512-10 MLP on one CPU core
(~0.1 s a step: the matching and a forward and backward pass of 1000 images).
`steps=15000` runs the reference's budget.
`init` only sets the first matching (later ones are warm-started): the reference starts it from
the identity (`init=identity`); the default `forward` is this harness's `git-rebasin` default, so
that (same seed) the first candidate is what `git-rebasin` returns.

Left out: the reference subtracts the endpoints' mean training loss from the loss it reports (a
constant: no effect on the gradients or on which permutation is kept). As there, only
permutations are matched (no signs for odd activations; permutations are exact for any
activation). Networks with BatchNorm are scored with the statistics they carry, as in the other
task-loss objective (`sinkhorn-rebasin`); the harness recounts them only when it evaluates paths.
"""

from __future__ import annotations

import torch

from methods.base import Aligner, Alignment, Hyper
from methods.weight_matching import apply_matching, as_element, weight_matching
from zoos.space import Params
from zoos.symmetry import select, stack, stack_elements


class StraightThrough(Aligner):
    name = "ste"
    display_name = "Git Re-Basin (STE)"
    description = "straight-through estimator: the midpoint's task loss trained through hard permutations"
    citation = 'Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023'
    arxiv = "2209.04836"
    exact = True
    needs = "labels"  # the task loss reads training images and labels (INRs: the target image)
    tasks = ("inr", "classifier")
    search_space = {
        "steps": Hyper("int", 50, 1, 20000, log=True),
        "lr": Hyper("float", 1e-2, 1e-5, 1.0, log=True),
        "momentum": Hyper("float", 0.9, 0.0, 0.99),
        # classifier tasks: training images per step (INRs: every pixel of the target image, always)
        "batch": Hyper("int", 1000, 16, 8192, log=True),
        "max_sweeps": Hyper("int", 100, 1, 1000),
        "init": Hyper("cat", "forward", choices=("forward", "identity")),
    }

    def _target(self, target) -> torch.Tensor | None:
        if self.task is None:
            raise ValueError(f"{self.name}: the midpoint task loss needs a task (call setup first)")
        try:
            return self.task.loss_target(target)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None

    def _batches(self, generator: torch.Generator):
        """Training batches (x, y), endlessly: consecutive slices of shuffled passes over training examples;
        None for a task that draws none (INRs: the loss reads the target image).

        The pool is `steps * batch` training examples drawn once (all of them when there are fewer), so a
        short run reads no more than it uses."""
        steps, batch = self.hp["steps"], self.hp["batch"]
        pool = self.task.train_examples(steps * batch, seed=self.seed)
        return None if pool is None else self._slices(*pool, batch, generator)

    @staticmethod
    def _slices(x: torch.Tensor, y: torch.Tensor, batch: int, generator: torch.Generator):
        batch = min(batch, len(x))
        order = torch.empty(0, dtype=torch.long)
        while True:
            while len(order) < batch:
                order = torch.cat([order, torch.randperm(len(x), generator=generator)])
            idx, order = order[:batch], order[batch:]
            yield x[idx], y[idx]


    def match(self, a: Params, b: Params, target, generator: torch.Generator, batches):
        """One pair, a and b [1, ...]: returns (perms {p: [n]}, best loss, step of the best, losses per step)."""
        space, hp = self.space, self.hp
        a = {k: v.detach().float() for k, v in a.items()}
        b = {k: v.detach().float() for k, v in b.items()}
        proxy = {k: v.clone().requires_grad_() for k, v in a.items()}
        opt = torch.optim.SGD(list(proxy.values()), lr=hp["lr"], momentum=hp["momentum"])
        perms = {p: torch.arange(n) for p, n in space.perm_sizes.items()}
        moved = b  # B with `perms` applied
        best, best_step, best_perms, history = float("inf"), 0, perms, []
        for step in range(1, hp["steps"] + 1):
            with torch.no_grad():
                found, _, _ = weight_matching(space, {k: v[0] for k, v in proxy.items()},
                                              {k: v[0] for k, v in moved.items()}, max_sweeps=hp["max_sweeps"],
                                              generator=generator, init=hp["init"] if step == 1 else "identity")
                # found acts on B already permuted by `perms`: unit i is B's unit perms[found[i]]
                perms = {p: perms[p][found[p]] for p in perms}
                moved = apply_matching(space, moved, found, {})
            straight = {k: moved[k] + proxy[k] - proxy[k].detach() for k in proxy}  # value P(B), gradient to proxy
            loss = self.task.step_loss({k: (a[k] + straight[k]) / 2 for k in a},
                                       None if batches is None else next(batches), target)
            value = loss.item()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.name}: the midpoint loss is not finite at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(value)
            if value < best:
                best, best_step, best_perms = value, step, perms
        return best_perms, best, best_step, history

    def align(self, ref, others, target=None) -> Alignment:
        t = self._target(target)
        generator = torch.Generator().manual_seed(self.seed)
        batches = self._batches(generator)
        out, elements, best, first, at = [], [], [], [], []
        for i in range(next(iter(others.values())).shape[0]):
            b = select(others, i)
            perms, loss, step, history = self.match(ref, b, t, generator, batches)
            out.append(apply_matching(self.space, b, perms, {}))
            elements.append(as_element(perms, {}))
            best.append(loss)
            first.append(history[0])
            at.append(step)
        n = len(best)
        # objective: the kept permutation's midpoint loss (on its step's batch); first_objective: step 1's,
        # i.e. weight matching to A; best_step: when the kept one was found (1: weight matching's was kept)
        info = {"objective": sum(best) / n, "first_objective": sum(first) / n, "best_step": sum(at) / n,
                "steps": float(self.hp["steps"])}
        return Alignment(ref, stack(out), stack_elements(elements), None, info)
