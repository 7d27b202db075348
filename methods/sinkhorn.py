"""Sinkhorn re-basin (Pena et al., CVPR 2023), generic over the weight space.

Every hidden-unit permutation p is relaxed to an unconstrained matrix X_p; the Sinkhorn operator
(entropic regularisation tau, log domain, a fixed number of row/column normalisations) maps it to
a doubly stochastic P_p, which acts on B's parameters as a matrix along every axis p touches.
AdamW on the X's minimises one of three objectives, with gradients obtained by unrolling the
Sinkhorn iterations (autograd through them):

- "l2":  ||theta_A - pi_P(theta_B)||^2 (data-free);
- "mid": task loss of (theta_A + pi_P(theta_B)) / 2;
- "rnd": task loss of (1 - l) theta_A + l pi_P(theta_B), l ~ U(0, 1) drawn every step.

The result is always a hard permutation (linear assignment on each soft P), applied exactly, so
the aligned network computes the same function as the input. The best hard solution seen at a
few checkpoints (by the deterministic objective: l2, or the midpoint loss) is kept.

Speed: all permutations of one size share one Sinkhorn call, each normalisation is one fused
`log_softmax`, and the M networks of one `align` call are optimised together as a batch (the
pairs stay independent), so the per-step Python overhead is paid once per batch, not per pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.assignment import assignment
from methods.base import Aligner, Alignment, Hyper
from methods.weight_matching import weight_matching
from zoos.devices import DEVICES, resolve_device
from zoos.space import Params, WeightSpace
from zoos.symmetry import GroupElement, apply_perms, select, sq_distance, stack


def log_sinkhorn(x: torch.Tensor, tau: float = 1.0, n_iter: int = 20) -> torch.Tensor:
    """log S_tau(x) for x [..., n, n]: alternate row and column normalisation in the log domain.

    Ends on a column normalisation, so columns sum to 1 exactly and rows up to convergence.
    Plain torch ops: autograd differentiates through the unrolled iterations. Each normalisation
    `u - logsumexp(u)` is one fused `log_softmax` (with a fused backward): ~4x faster than
    logsumexp + subtraction on these small matrices, where per-op overhead dominates.
    """
    log_p = x / tau if tau != 1 else x
    for _ in range(n_iter):
        log_p = torch.log_softmax(log_p, dim=-1)  # rows
        log_p = torch.log_softmax(log_p, dim=-2)  # columns
    return log_p


def sinkhorn(x: torch.Tensor, tau: float = 1.0, n_iter: int = 20) -> torch.Tensor:
    """Doubly stochastic S_tau(x) (batched over leading axes): exp(log_sinkhorn(x, tau, n_iter)).

    Computed in the scaling form (`_ScaledSinkhorn`): the same iterates with vectors instead of
    matrices. Where its dynamic range would under- or overflow it falls back to the log domain.
    """
    if x.shape[-1] >= SCALED_FROM:
        try:
            return _ScaledSinkhorn.apply(x, tau, n_iter)
        except _OutOfRange:
            pass
    return log_sinkhorn(x, tau, n_iter).exp()


# From this size on the scaling form is faster (measured fwd+bwd, 20 iterations, 1 thread: equal at
# n = 64, 1.6x at 128, 5x at 512); below it per-op overhead dominates and the fused log_softmax wins.
SCALED_FROM = 64


class _OutOfRange(ArithmeticError):
    pass


class _ScaledSinkhorn(torch.autograd.Function):
    """S_tau(x) = diag(a) K diag(b), K = exp(x / tau - rowmax), by the scaling iterations
    a <- 1 / (K b), b <- 1 / (K^T a) (b = 1 first). These are exactly the log-domain iterates of
    `log_sinkhorn` (row then column normalisation, n_iter times), so this is the same function with
    the same gradient as unrolling them, in exact arithmetic; in floats they agree to rounding.

    Why: every log-domain normalisation reads and writes the whole n x n matrix several times,
    forward and backward (autograd keeps all 2 n_iter of them). Here an iteration is two
    matrix-vector products, and the backward through all of them collects the vector adjoints and
    forms the matrix adjoint with two [n, T] x [T, n] products. Adjoints, from P = a K b^T:
    abar = (G o K) b, bbar = (G o K)^T a; through b_t = 1 / (K^T a_t): s = -b_t^2 bbar_t,
    abar_t = K s (+ the direct term for the last a), Kbar += a_t s^T; through a_t = 1 / (K b_{t-1}):
    s' = -a_t^2 abar_t, bbar_{t-1} = K^T s', Kbar += s' b_{t-1}^T; then xbar = (G o P + K o Kbar) / tau.
    The row shift cancels in P, so it carries no gradient.
    """

    @staticmethod
    def forward(ctx, x, tau, n_iter):
        shape, n = x.shape, x.shape[-1]
        # 3-D bmm with ROW vectors: v^T K runs ~3x faster than K v here, and matmul's broadcasting
        # costs more than the product at small n
        x3 = x.reshape(-1, n, n)
        k = torch.exp((x3 - x3.amax(-1, keepdim=True)) / tau)  # row max 1: rows never underflow
        if bool((k.amax(-2) < torch.finfo(x.dtype).tiny ** 0.5).any()):  # a column would vanish
            raise _OutOfRange
        kt = k.transpose(-1, -2)
        b = k.new_ones(k.shape[0], 1, n)  # [B, 1, n]
        a_s, b_s = [], [b]
        for _ in range(n_iter):
            a = torch.bmm(b, kt).reciprocal_()  # (K b)^T
            b = torch.bmm(a, k).reciprocal_()  # (K^T a)^T
            a_s.append(a)
            b_s.append(b)
        p = a.transpose(-1, -2) * k * b
        if not bool(torch.isfinite(p.amax())):  # amax propagates NaN: one pass instead of isfinite's three
            raise _OutOfRange
        ctx.tau = tau
        ctx.save_for_backward(k, torch.cat(a_s, 1), torch.cat(b_s, 1), p)
        return p.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        k, a_all, b_all, p = ctx.saved_tensors  # a_all [B, T, n] (row t = a_t); b_all [B, T + 1, n], b_0 = 1 first
        shape = g.shape
        g = g.reshape(p.shape)
        kt = k.transpose(-1, -2)
        steps = a_all.shape[1]
        gk = g * k
        neg_a2, neg_b2 = -a_all * a_all, -b_all * b_all  # d(1/s)/ds = -(1/s)^2 for every iterate at once
        abar_last = torch.bmm(b_all[:, -1:], gk.transpose(-1, -2))  # P's own dependence on the last a and b
        bbar = torch.bmm(a_all[:, -1:], gk)
        s_b, s_a = [None] * steps, [None] * steps
        for t in range(steps - 1, -1, -1):
            s_b[t] = neg_b2[:, t + 1 : t + 2] * bbar
            abar = torch.bmm(s_b[t], kt)
            if t == steps - 1:
                abar += abar_last
            s_a[t] = neg_a2[:, t : t + 1] * abar
            bbar = torch.bmm(s_a[t], k)
        # Kbar = sum_t a_t s_b[t]^T + s_a[t] b_{t-1}^T, as two [n, T] x [T, n] products
        kbar = torch.bmm(a_all.transpose(-1, -2), torch.cat(s_b, 1))
        kbar.baddbmm_(torch.cat(s_a, 1).transpose(-1, -2), b_all[:, :-1])
        return ((g * p).addcmul_(k, kbar) / ctx.tau).reshape(shape), None, None


def soft_permute(space: WeightSpace, b: Params, mats: dict[str, torch.Tensor]) -> Params:
    """Apply (soft) permutation matrices: new unit i = sum_j mats[p][i, j] old unit j, on every axis p touches.

    The same contraction serves producing axes (P @ W) and consuming axes (W @ P^T), so linear and
    conv parameters alike go through one matmul per (parameter, axis). `b` holds one network
    without a batch axis (mats [n, n]) or N networks with a leading axis (mats [n, n], shared, or
    [N, n, n], one per network). A one-hot matrix with P[i, perm[i]] = 1 reproduces `apply_perms`.
    """
    out = {}
    for name, t in b.items():
        offset = t.dim() - len(space.axes[name])  # 1 when a leading network axis is present
        plain = len(space.axes[name]) <= 2  # biases and linear weights: no reshapes (fewer autograd nodes)
        for axis, p in enumerate(space.axes[name]):
            if p is None or p not in mats:
                continue
            m = mats[p]
            if plain and axis == 0 and len(space.axes[name]) == 1:  # bias: P b
                t = (m @ t.unsqueeze(-1)).squeeze(-1)
            elif plain and axis == 0:  # incoming weights: P W
                t = m @ t
            elif plain:  # outgoing weights: W P^T
                t = t @ m.transpose(-1, -2)
            else:
                moved = t.movedim(axis + offset, offset)  # [(N,) n, ...]
                flat = moved.reshape(*moved.shape[: offset + 1], -1)
                t = (m @ flat).reshape(moved.shape).movedim(offset, axis + offset)
        out[name] = t
    return out


def hard_perm(mat: torch.Tensor) -> torch.Tensor:
    """Nearest permutation to a soft matrix [n, n]: argmax_perm sum_i P[i, perm[i]] (linear assignment)."""
    score = mat.detach().double().cpu().numpy()
    return torch.from_numpy(assignment(score)).long()  # ties (e.g. duplicated units) -> identity


class _AdamW:
    """torch.optim.AdamW's update (default betas and eps, weight decay 0.01), in place, gradients consumed.

    The same arithmetic as torch's single-tensor AdamW without its per-call bookkeeping, which at
    small widths cost as much as the Sinkhorn forward (~0.3-0.5 ms a step)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        self.params, self.lr, self.betas, self.eps, self.wd, self.t = params, lr, betas, eps, weight_decay, 0
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, math.sqrt(1 - b2**self.t)
        for p, (m, v) in zip(self.params, self.state, strict=True):
            g, p.grad = p.grad, None
            p.mul_(1 - self.lr * self.wd)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / c2).add_(self.eps), value=-self.lr / c1)


class SinkhornRebasin(Aligner):
    name = "sinkhorn-rebasin"
    display_name = "Sinkhorn re-basin"
    description = "soft permutations through a log-domain Sinkhorn operator, rounded by assignment"
    citation = 'Peña et al., "Re-basin via implicit Sinkhorn differentiation", CVPR 2023'
    arxiv = "2212.12042"
    needs = "labels"  # the mid/rnd objectives score training data (INRs: the target image); l2 reads none
    search_space = {
        "tau": Hyper("float", 1.0, 0.05, 10.0, log=True),
        "n_iter": Hyper("int", 20, 5, 100),
        "steps": Hyper("int", 100, 10, 1000),
        "lr": Hyper("float", 0.1, 1e-3, 1.0, log=True),
        "objective": Hyper("cat", "mid", choices=("l2", "mid", "rnd")),
        "init": Hyper("cat", "identity", choices=("identity", "weight-matching")),
        # classifier tasks: training images in the fixed batch of the task loss (the CNN forward dominates)
        "batch": Hyper("int", 512, 16, 4096, log=True),
        "device": Hyper("cat", "cpu", choices=DEVICES),  # where the relaxed problem runs (LAP rounding: CPU)
    }
    noise = 0.1  # reference init: I + 0.1 N(0, 1)
    checkpoints = 10  # hard solutions scored this many times along the run (plus the start)
    max_pairs = 64  # pairs optimised together in one batch (task objectives: also bounded by task.chunk())

    def _objective(self, a: Params, b_perm: Params, lam: torch.Tensor, target) -> torch.Tensor:
        """Per-pair objective [M]: a is [1, ...], b_perm [M, ...], lam [M] interpolation weights."""
        if self.hp["objective"] == "l2":
            return sq_distance(a, b_perm)
        m = lam.shape[0]
        theta = {}
        for k in a:
            w = lam.reshape(-1, *[1] * (a[k].dim() - 1))
            theta[k] = (1 - w) * a[k] + w * b_perm[k]
        return self.task.task_loss(theta, None if target is None else target.expand(m), n=self.hp["batch"])

    def _target(self, target):
        if self.hp["objective"] == "l2":
            return None
        if self.task is None:
            raise ValueError(f"{self.name}: objective {self.hp['objective']!r} needs a task (call setup first, "
                             "or use objective=l2)")
        try:
            return self.task.loss_target(target)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error} for objective {self.hp['objective']!r}") from None

    def match(self, a: Params, b: Params, target=None, generator: torch.Generator | None = None):
        """Align M networks b [M, ...] to a [1, ...], all pairs optimised at once (they are independent:
        the loss is a sum over pairs and AdamW acts elementwise). Returns (perms {p: [M, n]}, stats).
        """
        space, hp = self.space, self.hp
        dev = resolve_device(hp["device"])
        generator = generator or torch.Generator().manual_seed(self.seed)  # CPU draws: the same on any device
        a = {k: v.detach().float().to(dev) for k, v in a.items()}
        b = {k: v.detach().float().to(dev) for k, v in b.items()}
        m = next(iter(b.values())).shape[0]

        if hp["init"] == "weight-matching":
            found = [weight_matching(space, {k: v[0].cpu() for k, v in a.items()},
                                     {k: v[i].cpu() for k, v in b.items()}, generator=generator)[0] for i in range(m)]
            start = {p: torch.stack([f[p] for f in found]) for p in space.perm_sizes}
        else:
            start = {p: torch.arange(n).expand(m, n) for p, n in space.perm_sizes.items()}
        # Permutations of equal size share one [M, K, n, n] tensor: one Sinkhorn call per size, not per perm.
        groups: dict[int, list[str]] = {}
        for p, n in space.perm_sizes.items():
            groups.setdefault(n, []).append(p)
        xs = {}
        for n, names in groups.items():
            one_hot = torch.stack([F.one_hot(start[p], n).float() for p in names], dim=1)
            xs[n] = (one_hot + self.noise * torch.randn(one_hot.shape, generator=generator)).to(dev).requires_grad_()

        def soft_mats() -> dict[str, torch.Tensor]:
            mats = {}
            for n, names in groups.items():
                mats.update(zip(names, sinkhorn(xs[n], hp["tau"], hp["n_iter"]).unbind(1), strict=True))
            return mats

        # Hard candidates are scored by a deterministic objective: l2, or the midpoint loss.
        fixed_lam = torch.full((m,), 0.5, device=dev)

        @torch.no_grad()
        def score_hard(perms) -> torch.Tensor:
            return self._objective(a, apply_perms(space, b, perms), fixed_lam, target)

        best_perms = {p: v.clone() for p, v in start.items()}
        best = score_hard(best_perms)
        opt = _AdamW(list(xs.values()), lr=hp["lr"])
        every = max(1, hp["steps"] // self.checkpoints)
        # The l2 objective scales with the weights squared, and AdamW's eps (1e-8) swamps gradients ~1e-12:
        # with weights ~1e-6 the X's did not move. Dividing each pair's loss by a constant of its own
        # (||A||^2 + ||B||^2, permutation-invariant) makes the gradients scale-free; the minimiser, the
        # hard scores and the reported history stay in the original units. Task losses are not homogeneous
        # in the weights, so they are left alone.
        if hp["objective"] == "l2":
            norm = sum((v**2).flatten(1).sum(1) for v in (*a.values(), *b.values()))
            norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)  # all-zero networks: zero loss, zero gradient
        else:
            norm = torch.ones(m, device=dev)
        history = []
        for step in range(1, hp["steps"] + 1):
            lam = torch.rand(m, generator=generator).to(dev) if hp["objective"] == "rnd" else fixed_lam
            values = self._objective(a, soft_permute(space, b, soft_mats()), lam, target)
            (values / norm).sum().backward()
            opt.step()
            history.append(values.sum().item() / m)
            if step % every == 0 or step == hp["steps"]:
                with torch.no_grad():
                    mats = soft_mats()
                perms = {p: torch.stack([hard_perm(mat) for mat in mats[p]]) for p in mats}
                value = score_hard(perms)
                better = value < best
                best = torch.where(better, value, best)
                better = better.cpu()  # the permutations live on the CPU (LAP rounding)
                for p in best_perms:
                    best_perms[p][better] = perms[p][better]
        return best_perms, {"objective": best.cpu(), "history": history}

    def align(self, ref, others, target=None):
        t = self._target(target)
        m = next(iter(others.values())).shape[0]
        # Pairs optimised together: overhead per step is shared, so batching pays off; but with a task loss
        # on conv nets the batched (grouped) conv is slower per network on CPU than one net at a time
        # (measured 46 vs 31 ms fwd+bwd per CNN-zoo net at 8 vs 1), so those go one by one.
        if self.hp["objective"] == "l2":
            size = self.max_pairs
        elif self.space.has_conv:
            size = 1
        else:
            size = max(1, min(self.max_pairs, self.task.chunk()))
        generator = torch.Generator().manual_seed(self.seed)
        out, objective, history, perms_all = [], [], torch.zeros(self.hp["steps"]), []
        for start in range(0, m, size):
            b = select(others, slice(start, min(m, start + size)))
            perms, s = self.match(ref, b, t, generator)
            out.append(apply_perms(self.space, b, perms))
            perms_all.append(perms)
            objective.append(s["objective"])
            history += torch.tensor(s["history"]) * len(s["objective"]) / m
        # history: mean soft objective per step (the relaxed problem's trace; tests and diagnostics)
        info = {"objective": float(torch.cat(objective).mean()), "soft_objective": float(history[-1]),
                "steps": float(self.hp["steps"]), "history": history.tolist()}
        perms = {p: torch.cat([q[p] for q in perms_all]) for p in perms_all[0]}
        return Alignment(ref, stack(out), GroupElement(perms, {}), None, info)
