"""CCA Merge (Horoi et al., ICML 2024, "Harmony in Diversity"): align B to A by linear maps, not permutations.

Per hidden layer, canonical correlation analysis of A's and B's unit activations on a fixed batch
of the zoo's training inputs (`methods.activations`) gives canonical directions in which the two
models' features agree best. With whitening S_aa^{-1/2}, S_bb^{-1/2} and the SVD
S_aa^{-1/2} S_ab S_bb^{-1/2} = U diag(rho) V^T, B's features in A's basis are M h_B with
M = S_aa^{1/2} U V^T S_bb^{-1/2}; B's weights become M_l W_l M_{l-1}^{-1} (bias M_l b). A
permutation is the special case M = P. A general M does not commute with the activation, so B's
function changes: this is a merging method (the harness records what it costs), whose `merge`
averages the models in A's basis. Two copies of one network give M = I and that network back.
Covariances are regularised by `reg` times their mean variance. ReLU nets need it: their dead and
near-dead units make S^{-1/2} explode (reg 1e-4 gave merged losses up to 45 on the default ReLU CNN
zoo's training networks); 0.1, the default, was best there (mean merged loss 1.12 over 6 pairs of
training networks, against 1.39 at 0.01 and 1.13 at 1) and as good as any on the tanh zoo. As reg
grows, M tends to the orthogonal Procrustes map U V^T of the cross-covariance.
"""

from __future__ import annotations

import torch

from methods.activations import hidden_features, method_inputs
from methods.base import Aligner, Alignment, Hyper
from zoos.space import WeightSpace
from zoos.symmetry import stack


def _sqrt_and_inverse(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(values.max() * 1e-15)
    return (vectors * values.sqrt()) @ vectors.T, (vectors * values.rsqrt()) @ vectors.T


def cca_map(fa: torch.Tensor, fb: torch.Tensor, reg: float) -> torch.Tensor:
    """M [n, n] with A's features ~ M (B's features), from samples fa, fb [samples, n].

    Units that never vary (dead ReLUs) carry no signal, so their canonical directions are arbitrary:
    a sign flip there revives a dead unit and changes the function. When both models have equally
    many, those are matched to each other in order and the canonical analysis runs on the rest."""
    fa, fb = fa.double(), fb.double()
    dead_a, dead_b = _constant(fa), _constant(fb)
    if dead_a.any() and int(dead_a.sum()) == int(dead_b.sum()) and not dead_a.all():
        m = torch.zeros(fa.shape[1], fb.shape[1], dtype=torch.float64)
        live_a, live_b = torch.nonzero(~dead_a)[:, 0], torch.nonzero(~dead_b)[:, 0]
        m[live_a[:, None], live_b[None, :]] = cca_map(fa[:, live_a], fb[:, live_b], reg)
        m[torch.nonzero(dead_a)[:, 0], torch.nonzero(dead_b)[:, 0]] = 1.0
        return m
    fa, fb = fa - fa.mean(0), fb - fb.mean(0)
    s = fa.shape[0]
    saa, sbb, sab = fa.T @ fa / s, fb.T @ fb / s, fa.T @ fb / s
    eye = torch.eye(len(saa), dtype=saa.dtype)
    saa = saa + reg * max(float(saa.diagonal().mean()), 1e-30) * eye
    sbb = sbb + reg * max(float(sbb.diagonal().mean()), 1e-30) * eye
    (ra, ia), (_, ib) = _sqrt_and_inverse(saa), _sqrt_and_inverse(sbb)
    u, _, vt = torch.linalg.svd(ia @ sab @ ib)
    return ra @ u @ vt @ ib


def _constant(f: torch.Tensor) -> torch.Tensor:
    """Units whose activations do not vary over the samples (relative to the liveliest unit)."""
    var = f.var(0)
    return var <= 1e-12 * max(float(var.max()), 1e-300)


def _along(t: torch.Tensor, axis: int, mat: torch.Tensor) -> torch.Tensor:
    """new[i] = sum_j mat[i, j] t[j] along `axis`."""
    return torch.tensordot(mat, t, dims=([1], [axis])).movedim(0, axis)


def map_units(space: WeightSpace, b: dict, produce: dict[str, torch.Tensor], consume: dict[str, torch.Tensor]) -> dict:
    """One network (no batch axis) with every hidden layer's units linearly remapped: on producing axes
    new[i] = sum_j produce[p][i, j] old[j], on consuming axes new[..., i] = sum_j old[..., j] consume[p][j, i].
    A permutation matrix P with consume = P^T is `apply_perms`; consume = produce^{-1} keeps linear layers'
    products unchanged."""
    out = {}
    for name, t in b.items():
        t = t.double()
        for axis, p in enumerate(space.axes[name]):
            if p is not None:
                t = _along(t, axis, produce[p] if axis == 0 else consume[p].T)
        out[name] = t
    return out


class CCAMerge(Aligner):
    name = "cca-merge"
    display_name = "CCA Merge"
    description = "per-layer linear maps from canonical correlation of activations"
    citation = ('Horoi, Oliva & Wolf, '
                '"Harmony in Diversity: Merging Neural Networks with Canonical Correlation Analysis", ICML 2024')
    arxiv = "2407.05385"
    exact = False
    needs = "activations"
    stack_only = True
    version = 3  # 2: default reg 0.1 (was 1e-4); 3: dead units matched to dead units
    search_space = {"batch": Hyper("int", 512, 16, 8192, log=True), "reg": Hyper("float", 0.1, 1e-8, 10.0, log=True)}

    def align(self, ref, others, target=None) -> Alignment:
        x = method_inputs(self.task, self.hp["batch"], self.seed)
        fa, fb = hidden_features(self.space, ref, x), hidden_features(self.space, others, x)
        out = []
        for m in range(next(iter(others.values())).shape[0]):
            maps = {p: cca_map(a[0], b[m], self.hp["reg"]) for p, a, b in zip(self.space.perm_sizes, fa, fb,
                                                                                  strict=True)}
            inverse = {p: torch.linalg.inv(v) for p, v in maps.items()}
            moved = map_units(self.space, {k: v[m] for k, v in others.items()}, maps, inverse)
            out.append({k: v[None].to(others[k].dtype) for k, v in moved.items()})
        return Alignment(ref, stack(out), None, None, {})
