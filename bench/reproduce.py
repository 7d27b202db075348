"""`bench reproduce <paper>`: a paper's headline experiment in its own regime, beside its reference code.

Runs the paper's benchmarks (`bench.execution.reproductions`: zoos trained with the paper's recipe, its
protocol and methods; resumable by key), then, where the reference package is installed in a virtualenv
of its own (`--peer-rebasin PYTHON`), aligns the very same pairs with it and scores its output with our
evaluation; finally writes `results/reproductions.md` (and its figure) from everything measured so far.
What the paper published, and the rule each number is held to, is declared here (`REPORTS`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.execution.reproductions import GR_STE
from bench.report.reproductions import Setting, markdown_table, settings_table, trend, trend_figure, trend_lines
from bench.store.results import PEERS_FILE, TIMES_FILE

REPORT_FILE = "reproductions.md"


@dataclass(frozen=True)
class Report:
    """What a reproduction's section shows: settings against published numbers, trends, notes."""

    title: str
    zoos: dict  # label -> (benchmark name, index of the zoo in it)
    settings: tuple[Setting, ...]
    trends: dict = field(default_factory=dict)  # title -> ({zoo label: x}, x name, variants)
    peers: dict = field(default_factory=dict)  # peer name -> (venv flag, script, settings, zoo labels)
    notes: tuple[str, ...] = ()


def _spec(text: str) -> str:
    """A method spec as rows name it."""
    from methods import normalise_spec

    return normalise_spec(text)


_GR_FIG = "~0 (Fig. 2, MNIST, read from the figure)"
GIT_REBASIN_REPORT = Report(
    title="Git Re-Basin: MLP 784-512-512-512-10",
    zoos={"mlp-512": ("git-rebasin-mlp", 0),
          **{f"mlp-512-e{e}": ("git-rebasin-epochs", i) for i, e in enumerate((1, 2, 5, 10))},
          **{f"mlp-{w}": ("git-rebasin-widths", i) for i, w in enumerate((32, 64, 128, 256))}},
    settings=(
        Setting("naive averaging", "mlp-512", "naive", "loss_barrier",
                "large (Fig. 2)"),
        Setting("weight matching", "mlp-512", "git-rebasin", "loss_barrier", _GR_FIG,
                at_most=0.05),
        Setting("weight matching, rebasin (PyPI) on the same pairs", "mlp-512", "peer:rebasin", "loss_barrier",
                _GR_FIG, at_most=0.05),
        Setting("activation matching", "mlp-512", "activation-matching[batch=8192]", "loss_barrier",
                _GR_FIG, at_most=0.05),
        Setting("straight-through estimator (200 steps)", "mlp-512", _spec(GR_STE), "loss_barrier", _GR_FIG,
                at_most=0.05),
        Setting("weight matching (accuracy barrier)", "mlp-512", "git-rebasin",
                "acc_barrier", "~0 (Fig. 2)", at_most=0.01),
    ),
    trends={
        "barrier vs training epoch (width 512)": (
            {"mlp-512-e1": 1, "mlp-512-e2": 2, "mlp-512-e5": 5, "mlp-512-e10": 10, "mlp-512": 20}, "epoch",
            ("naive", "git-rebasin")),
        "barrier vs hidden width (20 epochs)": (
            {"mlp-32": 32, "mlp-64": 64, "mlp-128": 128, "mlp-256": 256, "mlp-512": 512}, "hidden width",
            ("naive", "git-rebasin")),
    },
    peers={"rebasin": ("peer_rebasin", "peer_rebasin.py", {"max_sweeps": 100}, ("mlp-512",))},
    notes=("Published: Ainsworth et al. (2023), Fig. 2 (MNIST MLP): after weight matching, activation matching and "
           "the STE the test loss along the path stays at the endpoints' (barrier ~ 0); naive averaging crosses a "
           "barrier of ~1 nat. Read from the figure: the paper tabulates no number.",
           "Barrier = the leaderboard's `loss_barrier`: max over 25 points of the test loss minus the line between "
           "the endpoints' losses (as the reference's `src/mnist_mlp_weight_matching.py`), on all 10,000 "
           "Fashion-MNIST test images; n = disjoint pairs of independently trained networks (different seeds).",
           "Paper's barrier-vs-epoch figure (src/mnist_barrier_vs_epoch_plot.py) shows epochs 1-25 of its MNIST "
           "MLP; its width study is on CIFAR-10 VGG-16 / ResNet-20 (x1-x32): our width trend is the MLP's."),
)

_SR_FIG = "~0 (LMC figure, MNIST)"
SR_OBJECTIVES = {o: f"sinkhorn-rebasin[batch=1000,objective={o},steps=180]" for o in ("l2", "mid", "rnd")}
SINKHORN_REPORT = Report(
    title="Sinkhorn re-basin: MLP 784-512-512-10",
    zoos={"mlp-512x2": ("sinkhorn-rebasin-mlp", 0)},
    settings=(
        Setting("naive averaging", "mlp-512x2", "naive", "loss_barrier", "~1.2 at the midpoint"),
        Setting("weight matching", "mlp-512x2", "git-rebasin", "loss_barrier", _SR_FIG, at_most=0.05),
        *(Setting(f"Sinkhorn, {o} objective", "mlp-512x2", _spec(v), "loss_barrier", _SR_FIG, at_most=0.05)
          for o, v in SR_OBJECTIVES.items()),
        Setting("Sinkhorn, l2, sinkhorn-rebasin (PyPI) on the same pairs", "mlp-512x2", "peer:sinkhorn-rebasin l2",
                "loss_barrier", _SR_FIG, at_most=0.05),
        # every barrier here is ~0, so the figure's ordering is tested where it is drawn: the midpoint loss
        *(Setting(f"midpoint loss, {label}", "mlp-512x2", variant, "loss_mid", published)
          for label, variant, published in (("naive", "naive", "~1.25"), ("weight matching", "git-rebasin", "~0.1"),
                                            *((f"Sinkhorn {o}", _spec(v), "~0.07-0.1")
                                              for o, v in SR_OBJECTIVES.items()))),
        Setting("Mid's midpoint loss at most Rnd's", "mlp-512x2", _spec(SR_OBJECTIVES["rnd"]), "loss_mid",
                "Mid < Rnd (figure)", versus=_spec(SR_OBJECTIVES["mid"]), at_least=0.0),
        Setting("Mid's midpoint loss at most L2's", "mlp-512x2", _spec(SR_OBJECTIVES["l2"]), "loss_mid",
                "Mid < L2 (figure)", versus=_spec(SR_OBJECTIVES["mid"]), at_least=0.0),
        Setting("Mid's midpoint loss at most weight matching's", "mlp-512x2", "git-rebasin", "loss_mid",
                "Mid < WM (figure)", versus=_spec(SR_OBJECTIVES["mid"]), at_least=0.0),
    ),
    peers={"sinkhorn-rebasin l2": ("peer_sinkhorn", "peer_sinkhorn.py",
                                   {"objective": "l2", "steps": 180, "tau": 1.0, "n_iter": 20, "lr": 0.1},
                                   ("mlp-512x2",))},
    notes=("Published: Pena et al. (2023), LMC figure (repository docs/images/lmc.png; MNIST, two hidden layers): "
           "midpoint loss ~0.07-0.1 for every re-basin method against ~1.25 for naive, order Mid < Rnd < STE < L2 "
           "< WM (read from the figure; no table).",
           "Barrier = the leaderboard's `loss_barrier` over 50 points (the reference's), all 10,000 test images; "
           "rule for 'reproduced': the barrier's CI upper end at most 0.05 (a midpoint at the endpoints' loss, as "
           "the figure shows), and for the figure's ordering a paired difference of midpoint losses (`loss_mid`, "
           "the loss at lambda = 1/2) whose CI stays at or above 0. Midpoint losses are Fashion-MNIST's, higher "
           "than MNIST's.",),
)



def _merged(n: int, label: str, variant: str, metric: str, published: str, **kw) -> Setting:
    """A setting read from the merges of N networks of the C2M3 zoo."""
    return Setting(f"N={n}: {label}", "mlp-c2m3", variant, metric, published, protocol="merge",
                   where=(("n_models", n),), **kw)


C2M3_REPORT = Report(
    title="C2M3: merging MLPs 784-512-512-512-256-10",
    zoos={"mlp-c2m3": ("c2m3-mlp", 0)},
    settings=tuple(
        s for n in (3, 5) for s in (
            _merged(n, "naive, merged accuracy", "naive", "acc_merged", "0.03"),
            _merged(n, "MergeMany, merged accuracy", "mergemany", "acc_merged", "0.86"),
            _merged(n, "C2M3, merged accuracy", "c2m3", "acc_merged", "0.87"),
            _merged(n, "C2M3, merged accuracy after REPAIR", "c2m3", "acc_merged_repair", "0.87"),
            _merged(n, "pairwise weight matching to the first, merged accuracy", "git-rebasin", "acc_merged",
                    "(not in the table)"),
            _merged(n, "C2M3 at least MergeMany (-0.01)", "c2m3", "acc_merged", "C2M3 0.87 vs MergeMany 0.86",
                    versus="mergemany", at_least=-0.01),
            _merged(n, "C2M3 far above naive (+0.5)", "c2m3", "acc_merged", "C2M3 0.87 vs naive 0.03",
                    versus="naive", at_least=0.5),
            _merged(n, "cycle error of pairwise weight matching", "git-rebasin", "cycle_error",
                    "non-zero for pairwise methods"),
            _merged(n, "cycle error of C2M3 (a control: 0 by construction)", "c2m3", "cycle_error",
                    "0 by construction"),  # a control: no verdict
        )),
    notes=("Published: Crisostomi et al. (2024), results table (repository README, misc/figures/results.png; "
           "EMNIST letters MLP, test): naive accuracy 0.03 / loss 3.28, MergeMany 0.86 / 1.13, C2M3 0.87 / 1.10, "
           "the same with REPAIR; 26 classes, so only the ordering carries over to Fashion-MNIST.",
           "Accuracy on all 10,000 Fashion-MNIST test images; a unit is a group of N networks; REPAIR corrects "
           "the merged network's hidden-unit statistics toward the inputs' on 512 training images.",),
)

_CNN_NOTE = "no number (figure only)"
CNN_ZOO_REPORT = Report(
    title="The Small CNN Zoo's recipe: 86 epochs, sampled hyperparameters",
    zoos={"cnn-zoo": ("cnn-zoo-recipe", 0)},
    settings=(
        Setting("pairs: naive", "cnn-zoo", "naive", "loss_barrier", _CNN_NOTE),
        Setting("pairs: weight matching", "cnn-zoo", "git-rebasin", "loss_barrier", _CNN_NOTE),
        Setting("pairs: weight matching, accuracy barrier", "cnn-zoo", "git-rebasin", "acc_barrier", _CNN_NOTE),
        Setting("pairs: C2M3", "cnn-zoo", "c2m3", "loss_barrier", _CNN_NOTE),
        Setting("pairs: weight matching below naive", "cnn-zoo", "naive", "loss_barrier",
                "alignment lowers the barrier (every re-basin paper)", versus="git-rebasin", at_least=0.0),
        *(Setting(f"merge N={n}: {v}, merged accuracy after REPAIR", "cnn-zoo", v, "acc_merged_repair",
                  "-", protocol="merge", where=(("n_models", n),))
          for n in (2, 3, 5) for v in ("naive", "git-rebasin", "mergemany", "c2m3")),
    ),
    notes=("Published: Boufalis et al., CNN experiment (figure only): the autoencoder lowers the barrier between "
           "random CNN Zoo pairs at a cost in reconstructed accuracy.",
           "What this zoo adds: the claims report's CNN zoos train 3 epochs; these networks train the CNN Zoo's 86.",),
)
RESNET20_REPORT = Report(title="Git Re-Basin: ResNet-20 at its widths", zoos={}, settings=())

REPORTS = {"git-rebasin": GIT_REBASIN_REPORT, "sinkhorn-rebasin": SINKHORN_REPORT, "c2m3": C2M3_REPORT,
           "cnn-zoo": CNN_ZOO_REPORT, "resnet20": RESNET20_REPORT}


def main(args) -> int:
    from bench.execution.reproductions import get

    papers = args.papers or list(REPORTS)
    for paper in papers:
        get(paper)  # an unknown name is refused before any work
    if not args.report_only:
        for paper in papers:
            _run(paper, args)
    if args.into and not args.report_only:
        raise ValueError("--into is for --report-only (a run writes its report beside its rows)")
    for path in write(args.results, papers=tuple(REPORTS), into=args.into):
        print(f"wrote {path}")
    return 0


def _run(paper: str, args) -> None:
    from bench.execution.reproductions import get
    from bench.execution.runner import RunOptions, run_benchmark

    opts = RunOptions(results=args.results, device=args.device, progress=not args.quiet)
    for bench in get(paper).benchmarks:
        start = time.perf_counter()
        summary = run_benchmark(bench, None, opts)
        _add_time(args.results, paper, bench.name, time.perf_counter() - start, summary.done)
        print(f"{paper} / {bench.name}: {summary.done} run, {summary.skipped} already done, "
              f"{summary.failed} failed")
    report = REPORTS[paper]
    for name, (flag, script, settings, labels) in report.peers.items():
        python = getattr(args, flag, None)
        if python:
            _run_peer(args.results, paper, name, python, script, settings, labels, opts)


def _add_time(results: Path, paper: str, bench: str, seconds: float, units: int) -> None:
    """Wall time spent running a benchmark, summed over the invocations that ran units (resumes add up)."""
    from zoos.files import write_bytes_atomic

    path = results / TIMES_FILE
    times = json.loads(path.read_text()) if path.is_file() else {}
    entry = times.setdefault(f"{paper}/{bench}", {"seconds": 0.0, "units": 0})
    if units:
        entry["seconds"] += seconds
        entry["units"] += units
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lambda fh: fh.write(json.dumps(times, indent=1, sort_keys=True).encode()))


def built_zoos(results: Path, paper: str, device: str = "cpu", cards: bool = False) -> dict:
    """Setting label -> (its benchmark, its zoo), for the zoos already built; each zoo is loaded once.
    `cards`: their spec and metadata only (`ZooCard`: what a report describes; an archive may hold no weights)."""
    from bench.execution.plan import RunOptions, zoo_directory
    from bench.execution.reproductions import get
    from zoos.zoo import load_zoo, load_zoo_card

    benches = {b.name: b for b in get(paper).benchmarks}
    out = {}
    for label, (bench, index) in REPORTS[paper].zoos.items():
        directory = zoo_directory(benches[bench].zoos[index], RunOptions(results=results, device=device))
        if (directory / "spec.json").is_file():
            out[label] = (benches[bench], (load_zoo_card if cards else load_zoo)(directory))
    return out


def _run_peer(results: Path, paper: str, name: str, python: str, script: str, settings: dict, labels, opts) -> None:
    """Align the pairs units of `labels`' zoos with a reference package; score them as our rows are scored."""
    import torch

    from bench.evaluation.curves import curve_summary, curves
    from bench.perf.peer_runs import peer_available, run_peer, write_job
    from bench.protocols import make_protocol
    from zoos.symmetry import select
    from zoos.tasks import make_task

    why = peer_available(python)
    if why is not None:
        print(f"{paper}: peer {name} skipped ({why})")
        return
    records, built = [], built_zoos(results, paper)
    for label in labels:
        bench, zoo = built[label]
        task = make_task(zoo)
        options = dict(bench.protocols["pairs"])
        lambdas = torch.linspace(0, 1, options["lambdas"])
        units = make_protocol("pairs", seed=bench.seed, **options).units(zoo)
        pairs = {f"u{i}": (zoo.space, select(zoo.params, u.a), select(zoo.params, u.b), None, None)
                 for i, u in enumerate(units)}
        with tempfile.TemporaryDirectory() as tmp:
            job, out = Path(tmp) / "job", Path(tmp) / "out"
            write_job(job, pairs, {**settings, "seed": bench.seed})
            got = run_peer(python, script, job, out)
            for i, unit in enumerate(units):
                record = {"zoo_hash": zoo.content_hash(), "zoo": zoo.name, "unit": unit.name, "peer": name,
                          "error": got.get("_error")}
                aligned_path = out / f"u{i}.safetensors"
                if record["error"] is None and aligned_path.is_file():
                    record.update(_score_peer(task, pairs[f"u{i}"], aligned_path, lambdas, curves, curve_summary))
                    record["seconds"] = got.get(f"u{i}", {}).get("seconds", math.nan)
                elif record["error"] is None:
                    record["error"] = "the peer wrote no aligned network"
                records.append(record)
    _save_peers(results, pd.DataFrame(records))
    print(f"{paper}: peer {name} aligned {sum(r['error'] is None for r in records)} of {len(records)} pairs")


def _score_peer(task, pair, aligned_path: Path, lambdas, curves, curve_summary) -> dict:
    import torch

    from zoos.files import load_tensors

    _, a, b, _, _ = pair
    aligned = {k: v.unsqueeze(0) for k, v in load_tensors(aligned_path, floats=True).items()}
    summary = curve_summary(task, curves(task, a, aligned, lambdas), lambdas)
    before, after = task.outputs(b), task.outputs(aligned)
    deviation = float((after - before).abs().max() / before.abs().max().clamp_min(1e-12))
    return {"loss_barrier": float(summary["loss_barrier"][0]), "acc_barrier": float(summary["acc_barrier"][0]),
            "deviation": deviation, "exact": bool(deviation < 1e-4 and torch.isfinite(after).all())}


def _save_peers(results: Path, new: pd.DataFrame) -> None:
    from zoos.files import check_parquet, write_bytes_atomic

    path = results / PEERS_FILE
    old = pd.read_parquet(check_parquet(path)) if path.exists() else pd.DataFrame()
    both = pd.concat([old, new], ignore_index=True) if len(old) else new
    both = both.drop_duplicates(["zoo_hash", "unit", "peer"], keep="last")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, lambda fh: both.to_parquet(fh, index=False))


def write(results: Path, papers=tuple(REPORTS), into: Path | None = None) -> list[Path]:
    """results/reproductions.md (+ one figure per paper with trends) from the table and the peers' rows; `into`:
    write them there instead (the tables of an archive, `bench archive`, beside the other reports)."""
    from bench.execution.reproductions import get
    from bench.store.results import ResultStore
    from zoos.files import check_parquet, read_input, write_bytes_atomic
    from zoos.recipes import describe

    if into is not None:
        into.mkdir(parents=True, exist_ok=True)
    table = ResultStore(results).table() if (results / "rows").is_dir() else pd.DataFrame()
    peers = pd.read_parquet(check_parquet(results / PEERS_FILE)) if (results / PEERS_FILE).exists() else pd.DataFrame()
    times = json.loads(read_input(results / TIMES_FILE, 2**24)) if (results / TIMES_FILE).exists() else {}
    lines = ["# The papers' headline results, reproduced in their own regimes", "",
             "Written by `bench reproduce` (resumable; `--report-only` rewrites this file from the table). Each "
             "number: mean [95% BCa bootstrap CI] (n units). A verdict holds a number to the published figure by "
             "the rule in its row; `-` where the paper gives no number to hold it to.", ""]
    written = []
    for paper in papers:
        spec, report = get(paper), REPORTS[paper]
        built = built_zoos(results, paper, cards=True)
        zoos = {label: zoo.content_hash() for label, (_, zoo) in built.items()}
        lines += [f"## {report.title}", "", f"Paper: {spec.paper}", ""]
        for label in report.zoos:
            if label in built:
                zoo = built[label][1]
                lines.append(f"- zoo `{label}` ({zoo.name}, {len(zoo)} networks, test accuracy "
                             f"{zoo.meta['test_accuracy'].min():.3f}-{zoo.meta['test_accuracy'].max():.3f}): "
                             f"{describe(zoo.task.get('config', {}))}")
            else:
                lines.append(f"- zoo `{label}`: not built yet")
        lines += [""]
        lines += markdown_table(["setting", "metric", "published", "ours", "verdict", "rule"],
                                settings_table(table, peers, zoos, report.settings))
        panels = {}
        for title, (labels, x_name, variants) in report.trends.items():
            frame = trend(table, zoos, labels, variants, "loss_barrier")
            lines += ["", f"### {title}: loss_barrier", ""] + trend_lines(frame, x_name)
            if not frame.empty and frame["n"].sum():
                panels[title] = (frame, x_name)
        if panels:
            figure = (into or results) / f"reproduction_{paper.replace('-', '_')}.png"
            trend_figure(panels, "test loss barrier", figure)
            written.append(figure)
            lines += ["", f"![{report.title}]({figure.name})"]
        spent = {k.split("/", 1)[1]: v for k, v in times.items() if k.startswith(f"{paper}/")}
        if spent:
            lines += ["", "Wall time of `bench reproduce " + paper + "` on this machine (units, scoring and zoos it "
                      "built; summed over resumed invocations): " + ", ".join(
                          f"{k} {v['seconds'] / 60:.1f} min for {v['units']} units" for k, v in sorted(spent.items()))]
        lines += ["", f"Budget: {spec.budget}", "", "Deviations from the paper's regime:", ""]
        lines += [f"- {d}" for d in spec.deviations] + [f"- {n}" for n in report.notes]
        lines += [f"- not runnable here: {n}" for n in spec.not_runnable] + [""]
    path = (into or results) / REPORT_FILE
    text = "\n".join(lines) + "\n"
    write_bytes_atomic(path, lambda fh: fh.write(text.encode()))
    return [path, *written]
