"""`align`: alignment time per pair of every exact method vs width (32..512) and depth, on SIREN INRs
(MLP; pairs = two fits of one image, so the loss barrier is cheap to take) and on the CNN Zoo net
(random init, L2 only), with the objective reached beside the time; the PyPI peers `rebasin` and
`sinkhorn-rebasin`, when given a python that has them, align the very same pairs in a subprocess
(`bench/perf/peer_runs.py`) and we score their outputs the same way."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from bench.perf.baseline import BASELINE_METHODS
from bench.perf.peer_runs import PEERS, run_peer, write_job
from bench.perf.suites.evaluation import LAMBDAS
from bench.perf.timing import measure, stats

METHODS = {  # label -> method spec; "mid" needs a task, so it runs on INRs only
    "git-rebasin": "git-rebasin",
    "sign-rebasin": "sign-rebasin",
    "sinkhorn-l2": "sinkhorn-rebasin[objective=l2]",
    "sinkhorn-mid": "sinkhorn-rebasin[objective=mid]",
    "c2m3": "c2m3",
}


def peer_table(baseline: str | None = None) -> dict:
    """PEERS, plus this project's own methods at the baseline commit (label "<method> @ <rev>")."""
    table = dict(PEERS)
    if baseline:
        for label in BASELINE_METHODS:
            table[f"{label} @ {baseline}"] = ("baseline", "peer_baseline.py", {"method": METHODS[label]}, label)
    return table


def make_pair(kind: str, width: int, depth: int = 2, seed: int = 0, fit_steps: int = 300):
    """(space, a [1], b [1], task, target) for one alignment case.

    mlp: SIREN 2-width^depth-1, two independent fits of one image (DWSNets init, Adam), so that
    the INR loss barrier is a cheap, meaningful objective; cnn: the CNN Zoo net with `width`
    channels, two random PyTorch-default inits (task-free: L2 only)."""
    from zoos.space import cnn_zoo_space, siren_space

    if kind == "mlp":
        from zoos.data import load_images
        from zoos.inr import dwsnets_init, fit_inrs
        from zoos.tasks import InrTask

        space = siren_space(width, depth)
        image = load_images("auto")[0][seed : seed + 1]
        fitted, _ = fit_inrs(space, dwsnets_init(space, [2 * seed, 2 * seed + 1]), image.expand(2, -1, -1), fit_steps)
        a, b = {k: v[:1] for k, v in fitted.items()}, {k: v[1:] for k, v in fitted.items()}
        return space, a, b, InrTask(space, image), 0
    if kind == "cnn":
        space = cnn_zoo_space("relu", channels=width)
        g = torch.Generator().manual_seed(seed)
        nets = []
        for _ in range(2):
            net = {}
            for layer in space.layers:
                bound = 1 / math.sqrt(layer.n_in * layer.kernel * layer.kernel)
                net[layer.weight] = (torch.rand(1, *layer.weight_shape(), generator=g) * 2 - 1) * bound
                net[layer.bias] = (torch.rand(1, layer.n_out, generator=g) * 2 - 1) * bound
            nets.append(net)
        return space, nets[0], nets[1], None, None
    raise ValueError(f"unknown perf spec kind {kind!r} (mlp | cnn)")


def prepared_method(label: str, space, task):
    from bench.execution.batch import prepare_method
    from methods import MethodSpec

    return prepare_method(MethodSpec.parse(METHODS[label]), 0, SimpleNamespace(space=space), task)[0]


def score(space, ref, aligned, task, target, x: torch.Tensor, original) -> dict:
    """Objectives reached: squared L2 distance, loss barrier (tasks only), functional deviation."""
    from bench.evaluation.curves import curve_summary, curves
    from zoos.symmetry import sq_distance

    out = {"l2": float(sq_distance(ref, aligned))}
    y0, y1 = space.forward(original, x), space.forward(aligned, x)
    out["deviation"] = float((y1 - y0).abs().max() / y0.abs().max().clamp_min(1e-12))
    if task is not None:
        lambdas = torch.linspace(0, 1, LAMBDAS)
        t = torch.tensor([target])
        out["barrier"] = float(curve_summary(task, curves(task, ref, aligned, lambdas, t), lambdas)["loss_barrier"])
    return out


@dataclass
class _Measured:
    """One (spec kind, depth) of the suite: its pair per width and what was measured on them."""

    kind: str
    depth: int
    pairs: dict  # width -> (space, a, b, task, target)
    x: torch.Tensor  # inputs of the functional-deviation check
    budget_s: float
    times: dict = field(default_factory=dict)  # (label, width) -> {"cpu": [...], "wall": [...]}
    results: dict = field(default_factory=dict)  # (label, width) -> objectives reached (first repetition)
    notes: dict = field(default_factory=dict)  # label -> why it was cut short or failed
    limit: dict = field(default_factory=dict)  # label -> the width it first went over budget at

    def case_id(self, width: int) -> str:
        return f"{self.kind}-d{self.depth}-w{width}"


def _time_ours(m: _Measured, labels: list[str], rep: int) -> None:
    """One repetition of our methods over every width; a method over budget is not repeated there and not
    run at larger widths."""
    for w, (sp, a, b, task, target) in m.pairs.items():
        for lab in labels:
            cpu_so_far = m.times[(lab, w)]["cpu"]
            if w > m.limit.get(lab, math.inf) or (rep and cpu_so_far and cpu_so_far[0] > m.budget_s):
                continue
            method = prepared_method(lab, sp, task)
            cpu, wall, res = measure(lambda method=method, a=a, b=b, t=target: method.align(a, b, t))
            ref, out = res.ref, res.others
            m.times[(lab, w)]["cpu"].append(cpu)
            m.times[(lab, w)]["wall"].append(wall)
            if rep == 0:
                m.results[(lab, w)] = score(sp, ref, out, task, target, m.x, b)
                if cpu > m.budget_s:
                    m.limit[lab] = w
                    m.notes[lab] = f"one pair > {m.budget_s:g} s at width {w}: not repeated, no larger widths"


def _time_peer(m: _Measured, label: str, script: str, python: str, job: Path, out_dir: Path,
               pythonpath: Path | None) -> None:
    """One repetition of a peer: it aligns the job's pairs in its own process and reports its times; its
    outputs are scored as ours are (once)."""
    from zoos.files import load_tensors

    got = run_peer(python, script, job, out_dir, pythonpath=pythonpath)
    if "_error" in got:
        m.notes[label] = f"failed: {got['_error']}"
        return
    for w, (sp, a, b, task, target) in m.pairs.items():
        r = got.get(m.case_id(w))
        if r is None or r.get("skipped"):
            if r is not None:
                m.notes[label] = f"one pair > {m.budget_s:g} s: larger widths not run"
            continue
        m.times[(label, w)]["cpu"].append(r["cpu_seconds"])
        m.times[(label, w)]["wall"].append(r["seconds"])
        if (label, w) not in m.results:
            aligned = load_tensors(out_dir / f"{m.case_id(w)}.safetensors", floats=True)
            aligned = {k: v[None] for k, v in aligned.items()}
            m.results[(label, w)] = {**score(sp, a, aligned, task, target, m.x, b),
                                     **{k: v for k, v in r.items() if k.endswith("_seconds")}}


def _rows_of(m: _Measured, table: dict) -> list[dict]:
    rows = []
    for (lab, w), t in m.times.items():
        if not t["cpu"]:
            continue
        sp, a, b, task, target = m.pairs[w]
        before = score(sp, a, b, task, target, m.x, b)
        peer_of = table[lab][3] if lab in table else None
        rows.append({"group": "align", "spec": m.kind, "depth": m.depth, "width": w, "case": lab, **stats(t),
                     "per_item_s": stats(t)["median_s"], "peer_of": peer_of,
                     **{f"{k}_after": m.results[(lab, w)].get(k) for k in ("l2", "barrier", "deviation")},
                     "l2_before": before["l2"], "barrier_before": before.get("barrier"),
                     "note": m.notes.get(lab, "")})
    return rows


def alignment(specs=(("mlp", 2), ("mlp", 4), ("cnn", 3)), widths=(32, 64, 128, 256, 512), repeats: int = 3,
              methods=tuple(METHODS), peers: dict[str, str | None] | None = None, budget_s: float = 30.0,
              fit_steps: int = 300, baseline: tuple[str, Path] | None = None) -> list[dict]:
    """Time per pair and objective of each method (and peer) vs width, per (spec kind, depth).

    A method (or peer) that needs more than `budget_s` CPU seconds for one pair at some width is
    not repeated there and not run at larger widths (the row says so); everything else runs
    `repeats` times, methods interleaved within a repetition, peers after ours in each repetition."""
    peers = dict(peers or {})
    table = peer_table(baseline[0] if baseline else None)
    if baseline:
        peers["baseline"] = sys.executable
    rows = []
    for kind, depth in specs:
        print(f"perf: align {kind} depth {depth}: fitting/building pairs ...", flush=True)
        pairs = {w: make_pair(kind, w, depth, fit_steps=fit_steps) for w in widths}
        labels = [m for m in methods if not (m == "sinkhorn-mid" and kind != "mlp")]
        peer_labels = [p for p in table if peers.get(table[p][0]) and not ("mid" in p and kind != "mlp")]
        x = torch.randn(16, *pairs[widths[0]][0].input_shape, generator=torch.Generator().manual_seed(1))
        measured = _Measured(kind, depth, pairs, x, budget_s)
        measured.times = {(lab, w): {"cpu": [], "wall": []} for lab in labels + peer_labels for w in widths}
        tmp = Path(tempfile.mkdtemp(prefix="bench-perf-"))
        try:
            for label in peer_labels:
                settings = table[label][2]
                write_job(tmp / label.replace(" ", "_"), {measured.case_id(w): pairs[w] for w in widths},
                          {**settings, "budget_s": budget_s})
            for lab in labels:  # one untimed call each (first-call costs), at the smallest width
                sp, a, b, task, target = pairs[widths[0]]
                prepared_method(lab, sp, task).align(a, b, target)
            for rep in range(repeats):
                _time_ours(measured, labels, rep)
                for label in peer_labels:
                    flag, script, _, _ = table[label]
                    name = label.replace(" ", "_")
                    _time_peer(measured, label, script, peers[flag], tmp / name, tmp / f"out-{name}-{rep}",
                               baseline[1] if flag == "baseline" else None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows += _rows_of(measured, table)
    return rows
