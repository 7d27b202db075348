"""`bench ae study`: how the ScaleGMN autoencoder scales with its training set.

One zoo per kind whose test and validation networks are fixed while the training split grows:
- INR: the default zoo's 160 images x 2 fits (so its val/test split and its test pairs are the
  default benchmark's) plus `extra_train_images` single fits, all in the train split; the
  autoencoder trains on the first n of the train split (`n_train`), the default zoo's 192 first;
- CNN: one larger ReLU CNN zoo (same hyperparameter ranges as the default), n of its train split.

Every size is a variant of one recipe (`STUDY_RECIPES`) run through `bench run`'s machinery into a
results directory of its own (`<results>/ae-study`: rows, zoos, checkpoints; resumable, nothing of
the main benchmark touched), with naive, signed matching and the constant network as reference rows.
The report (`results/autoencoder.md`, `autoencoder.png`) adds what only the decoded test networks
show: PSNR against the ground truth and against the original render (INR) or accuracy lost and
prediction agreement (CNN), R^2 of decoded against original functions, how often the nearest
original is the own source (network; for INRs also the image), beside the pairs and orbit rows'
path excess and barrier (mean, 95% CI, n).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.evaluation.reconstruction import reconstruction
from bench.execution.batch import prepare_method
from bench.execution.checkpoints import CheckpointStore
from bench.execution.plan import RunOptions
from bench.execution.presets import Benchmark, ZooRecipe
from bench.execution.runner import run_benchmark
from bench.execution.zoo_cache import get_zoo
from bench.report.stats import mean_ci
from bench.store.results import MEASUREMENTS_FILE, ResultStore
from methods import MethodSpec, format_spec
from methods.scalegmn_ae import ScaleGMNAutoencoder, write_pretrained
from zoos.files import check_parquet, read_input, write_bytes_atomic
from zoos.tasks import make_task

REFERENCES = ("naive", "sign-rebasin", "constant")
PROTOCOLS = {"pairs": dict(n_pairs=32, lambdas=7),
             "orbit": dict(n_nets=16, actions=("P", "PS"), eps=(1e-2,), lambdas=7)}


@dataclass(frozen=True)
class StudyRecipe:
    name: str  # "inr" | "cnn" | "paper"
    zoo: ZooRecipe
    model: dict  # autoencoder hyperparameters shared by every size
    sizes: tuple[tuple[int, int], ...]  # (training networks, epochs)
    export: bool = False  # copy the largest autoencoder to <results>/pretrained (`export_largest`)

    def specs(self) -> list[str]:
        return [format_spec("scalegmn-ae", {**self.model, "n_train": n, "epochs": e}) for n, e in self.sizes]

    def benchmark(self) -> Benchmark:
        return Benchmark(f"ae-study-{self.name}", zoos=(self.zoo,), protocols=PROTOCOLS,
                         methods=(*REFERENCES, *self.specs()))


# d = 64, 4 layers, bf16 autocast: ~120 networks/s on 2 cores. Epochs shrink as sets grow, the largest
# set still getting the most optimiser steps; the whole study takes about 45 minutes on 2 cores.
STUDY_RECIPES = {
    "inr": StudyRecipe(
        "inr", ZooRecipe("inr", dict(n_images=160, fits_per_image=2, steps=1000, extra_train_images=3808)),
        dict(hidden=64, n_layers=4, latent=128, batch_size=32, precision="bf16", warmup=500, patience=30),
        ((192, 150), (1000, 60), (4000, 30)), export=True),
    "cnn": StudyRecipe(
        "cnn", ZooRecipe("cnn", dict(activation="relu", n_nets=320, epochs=3, n_eval=256, splits=(0.8, 0.05, 0.15))),
        dict(hidden=64, n_layers=4, latent=128, batch_size=32, precision="bf16", warmup=500, patience=30),
        ((12, 150), (64, 100), (256, 40))),
    # the reference's INR setting, for a GPU: 55k training networks (the default zoo's 192 first, the
    # same val/test networks), d = 128, 4 layers, batch 128, warmup 1000, 150 epochs, float32
    "paper": StudyRecipe(
        "paper", ZooRecipe("inr", dict(n_images=160, fits_per_image=2, steps=1000, extra_train_images=54_808)),
        {**{k: v for k, v in ScaleGMNAutoencoder.FULL.items() if k != "epochs"}, "device": "auto"},
        ((55_000, ScaleGMNAutoencoder.FULL["epochs"]),), export=True),
}
TRIAL_STUDY = "inr"  # the study whose zoo `bench.perf.gpu --ae-trial` trains on: its rows are the trial's comparison


def study_root(results: Path) -> Path:
    return Path(results) / "ae-study"


def run_study(results: Path = Path("results"), kinds=("inr", "cnn"), progress: bool = True) -> pd.DataFrame:
    """Run (or resume) each study (`STUDY_RECIPES` names), then write `autoencoder.md` and `.png` into `results`."""
    root = study_root(results)
    opts = RunOptions(results=root, threads=2, progress=progress, mirror=False, report=False)
    for kind in kinds:
        if kind == "paper" and not torch.cuda.is_available():
            print("ae study: warning: the paper setting has no accelerator here and takes days on a CPU (estimate in "
                  "autoencoder.md's paper section); it resumes where a kill stopped it", flush=True)
        run_benchmark(STUDY_RECIPES[kind].benchmark(), opts=opts)
        if STUDY_RECIPES[kind].export:
            print(f"ae study: committed-model copy of the largest {kind} autoencoder: {export_largest(results, kind)}",
                  flush=True)
    table = study_table(results, kinds, remeasure=True)
    write_report(table, Path(results))
    return table


def export_largest(results: Path, name: str) -> Path:
    """Copy the study's largest autoencoder to <results>/pretrained/<name>-<source>-<n>-<sha8>, where
    `scalegmn-ae[pretrained=...]` finds it (for results other than the repository's, set REBASIN_PRETRAINED)."""
    recipe = STUDY_RECIPES[name]
    root = study_root(results)
    zoo = get_zoo(recipe.zoo, root / "zoos", progress=False)
    largest = max(range(len(recipe.sizes)), key=lambda i: recipe.sizes[i][0])
    n, spec = recipe.sizes[largest][0], recipe.specs()[largest]
    method, _ = prepare_method(MethodSpec.parse(spec), 0, zoo, make_task(zoo), CheckpointStore.for_results(root))
    source = zoo.task.get("source", "data")
    return write_pretrained(method, zoo, f"{name}-{source}-{n}", f"bench ae study --kinds {name}",
                            {"kind": recipe.zoo.kind, **recipe.zoo.options}, Path(results) / "pretrained")


# ---- measurements --------------------------------------------------------------------------------
def _protocol_stats(rows: pd.DataFrame, variant: str, metric: str) -> dict:
    out = {}
    for protocol in PROTOCOLS:
        r = rows[(rows.variant == variant) & (rows.protocol == protocol) & rows.error.isna()]
        for col in (f"{metric}_excess", f"{metric}_barrier"):
            if col in r:
                mean, low, high, n = mean_ci(r[col].tolist())
                out.update({f"{protocol}_{col}": mean, f"{protocol}_{col}_low": low,
                            f"{protocol}_{col}_high": high, f"{protocol}_n": n})
    return out


MEASUREMENTS = MEASUREMENTS_FILE  # per (study, method): training record and reconstruction scores


def study_table(results: Path, kinds=("inr", "cnn"), remeasure: bool = False) -> pd.DataFrame:
    """One row per (study, method variant): its measurements (`measurements`) and the protocol statistics
    of its rows (mean, 95% CI, n of the pairs and orbit units)."""
    root = study_root(results)
    rows = ResultStore(root).table()
    if "error" not in rows:
        rows["error"] = None
    records = []
    for _, rec in measurements(results, kinds, remeasure).iterrows():
        rec = rec.to_dict()
        rows_k = rows[rows.zoo_hash == rec["zoo_hash"]] if len(rows) else rows
        rec.update(_protocol_stats(rows_k, rec["method"], "loss") if len(rows_k) else {})
        records.append(rec)
    return pd.DataFrame(records)


def measurements(results: Path, kinds=("inr", "cnn"), remeasure: bool = False) -> pd.DataFrame:
    """The decoded test networks' scores and each autoencoder's training record, measured from the zoos'
    weights and the checkpoints and kept in `<results>/ae-study/measurements.parquet`, so that the report
    regenerates from the rows and that file alone (an archive holds no weights or checkpoints).

    The stored file is used when it covers the requested studies on the zoos present (by content hash, read
    from the zoos' cards) and `remeasure` is off; otherwise the study's zoos and checkpoints are read again."""
    from bench.execution.plan import zoo_directory
    from zoos.zoo import load_zoo_card

    root = study_root(results)
    path = root / MEASUREMENTS
    cards = {}
    for name in kinds:
        directory = zoo_directory(STUDY_RECIPES[name].zoo, RunOptions(results=root))
        if not (directory / "spec.json").is_file():
            raise ValueError(f"{root / 'zoos'}: no {name} study zoo there (run `bench ae study --kinds {name}`)")
        cards[name] = load_zoo_card(directory).content_hash()
    if path.is_file() and not remeasure:
        stored = pd.read_parquet(check_parquet(path))
        wanted = {(name, cards[name], str(MethodSpec.parse(text)))
                  for name in kinds for text in (*REFERENCES, *STUDY_RECIPES[name].specs())}
        keys = list(zip(stored.study, stored.zoo_hash, stored.method, strict=True))
        if wanted <= set(keys):  # every study, on the zoo present, every method
            return stored[[k in wanted for k in keys]].reset_index(drop=True)
    table = _measure(root, kinds)
    write_bytes_atomic(path, lambda fh: table.to_parquet(fh, index=False))
    return table


def _measure(root: Path, kinds) -> pd.DataFrame:
    records = []
    for name in kinds:
        recipe = STUDY_RECIPES[name]
        zoo = get_zoo(recipe.zoo, root / "zoos", progress=False)
        task = make_task(zoo)
        for text in (*REFERENCES, *recipe.specs()):
            spec = MethodSpec.parse(text)
            rec = {"study": name, "kind": recipe.zoo.kind, "zoo": zoo.name, "zoo_hash": zoo.content_hash(),
                   "method": str(spec), "n_train": math.nan}
            if spec.name == "scalegmn-ae":
                store = CheckpointStore.for_results(root)
                probe = spec.build()
                if not (store.directory(f"{probe.name}-{probe.cache_key(zoo)}") / "done.json").is_file():
                    print(f"ae study: {spec} is not trained yet (run `bench ae study`); left out", flush=True)
                    continue  # the report never trains: it reads what the study run left
                method, _ = prepare_method(spec, 0, zoo, task, store)
                info = method.fit_info
                rec.update(n_train=info["n_train"], epochs=info["epochs"], best_epoch=info["best_epoch"],
                           train_minutes=info["train_seconds"] / 60, best_val_loss=info["best_val_loss"],
                           networks_per_s=info["n_train"] * info["epochs"] / max(info["train_seconds"], 1e-9))
                rec.update(reconstruction(zoo, task, method))
            elif spec.name == "constant":
                method, _ = prepare_method(spec, 0, zoo, task)
                rec.update(reconstruction(zoo, task, method))
            records.append(rec)
    return pd.DataFrame(records)


# ---- report ----------------------------------------------------------------------------------------
def _ci(r, col: str, digits: int = 3) -> str:
    mean = r.get(col, math.nan)
    if mean is None or not math.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} [{r[col + '_low']:.{digits}f}, {r[col + '_high']:.{digits}f}]"


def _num(value, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def projection(table: pd.DataFrame, column: str, goal: float) -> float | None:
    """Training-set size at which a straight line in log10(n_train) through the autoencoder rows reaches
    `goal` (None: fewer than 2 sizes, or no improvement with size)."""
    ae = table[table.n_train.notna() & table[column].notna()] if column in table else table.iloc[:0]
    if len(ae) < 2:
        return None
    slope, intercept = np.polyfit(np.log10(ae.n_train.astype(float)), ae[column].astype(float), 1)
    if slope <= 0:
        return None
    return float(10 ** ((goal - intercept) / slope))


def ground_truth(study: pd.DataFrame) -> bool:
    """Whether a study's networks were scored against ground-truth images (INRs: see
    `Task.reconstruction_scores`): its report shows those columns, a classifier study's accuracies."""
    return "psnr_gt" in study and bool(study["psnr_gt"].notna().any())


def write_report(table: pd.DataFrame, results: Path) -> None:
    lines = ["# The autoencoder against its training-set size (`bench ae study`)", "",
             "Rows: reference methods, then the ScaleGMN autoencoder (its recipe under each heading; AdamW, "
             "lr 1e-3, weight decay 0.01) trained on the first n networks of the zoo's train split. "
             "Reconstruction columns: mean over the zoo's test networks (n_test). Protocol columns: mean "
             "[95% bootstrap CI] over the units of the default protocols on the same test networks, loss "
             "path excess (against the original endpoints; the rank key) and barrier (between the method's "
             "own endpoints). Units: loss = rendered-image MSE (INR) or cross-entropy (CNN); PSNR in dB; "
             "ident = fraction of decoded test networks whose nearest original (by rendered image / by "
             "predictions) is their own source, chance = 1 / n_test. A negative excess means the path stays below "
             "the originals' mean loss: an orbit copy carries N(0, 0.01^2) weight noise, which a SIREN (w0 = 30) "
             "does not survive, so a decoding of it can score better than the noisy original; on CNNs the constant "
             "network is the best training network, better than the average test network.", ""]
    for name, sub in table.groupby("study", sort=False):
        inr = ground_truth(sub)
        recipe = STUDY_RECIPES.get(name)
        lines += [f"## {name.upper()}{' (the reference setting)' if name == 'paper' else ''}: zoo `{sub.zoo.iloc[0]}`",
                  ""]
        if recipe is not None:
            model = ", ".join(f"{k}={v}" for k, v in recipe.model.items())
            lines += [f"Zoo recipe `{recipe.zoo.kind}{recipe.zoo.options}`; autoencoder `scalegmn-ae[{model}]`, "
                      "epochs per size as listed (early stopping on the validation split).", ""]
        recon = (["PSNR vs GT", "PSNR vs original", "R^2", "ident (net)", "ident (image)"] if inr
                 else ["acc decoded", "acc lost", "agreement", "R^2 (probs)", "ident (net)"])
        header = ["method", "n train", "epochs (best)", "train min", *recon, "pairs excess", "pairs barrier",
                  "orbit excess", "orbit barrier", "n pairs / orbit"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in sub.iterrows():
            trained = math.isfinite(r.n_train)
            if inr:
                cells = [_num(r.get("psnr_gt"), 2), _num(r.get("psnr_original"), 2), _num(r.get("r2")),
                         _num(r.get("ident")), _num(r.get("ident_image"))]
            else:
                cells = [_num(r.get("acc_decoded")), _num(r.get("acc_lost")), _num(r.get("agreement")),
                         _num(r.get("r2")), _num(r.get("ident"))]
            lines.append("| " + " | ".join([
                f"`{r.method}`" if not trained else "scalegmn-ae",
                f"{int(r.n_train)}" if trained else "",
                f"{int(r.epochs)} ({int(r.best_epoch)})" if trained else "",
                _num(r.get("train_minutes"), 1) if trained else "", *cells,
                _ci(r, "pairs_loss_excess"), _ci(r, "pairs_loss_barrier"), _ci(r, "orbit_loss_excess"),
                _ci(r, "orbit_loss_barrier"), f"{_num(r.get('pairs_n'), 0)} / {_num(r.get('orbit_n'), 0)}"]) + " |")
        first = sub[sub.n_test.notna()].iloc[0] if "n_test" in sub and sub.n_test.notna().any() else None
        if first is not None:
            chance = f"ident chance {first.ident_chance:.3f} (net)"
            if inr:
                chance += (f", {first.ident_image_chance:.3f} (image); originals {first.psnr_gt_original:.2f} dB vs "
                           f"GT; the mean training image {first.psnr_gt_mean_image:.2f} dB vs GT")
            else:
                chance += f"; originals' accuracy {first.acc_original:.3f}"
            lines += ["", f"n_test = {int(first.n_test)}; {chance}."]
        if inr:
            ae = sub[sub.n_train.notna()]
            met = ae[(ae.psnr_gt >= 20) & (ae.ident >= 0.5)] if len(ae) else ae
            verdict = f"met by n = {int(met.n_train.min())}" if len(met) else "not met"
            lines += ["", "Target (issue 18): nearest original is the own source in >= 50% of test networks at "
                      f">= 20 dB PSNR against the ground truth: {verdict}."]
            if not len(met) and len(ae):
                per_net = (ae.train_minutes * 60 / (ae.n_train * ae.epochs)).median()
                for col, goal, label in (("psnr_gt", 20.0, "20 dB"), ("ident", 0.5, "ident 0.5")):
                    n = projection(sub, col, goal)
                    if n is None:
                        lines.append(f"- {label}: the measured sizes show no gain with size; no projection.")
                    else:
                        hours = n * ae.epochs.min() * per_net / 3600
                        lines.append(
                            f"- {label}: a straight line in log10(n) through the {len(ae)} sizes reaches it at "
                            f"n ~ {n:,.0f} training networks; at {int(ae.epochs.min())} epochs and the measured "
                            f"{per_net * 1e3:.1f} ms per network-epoch that is ~{hours:,.1f} h on this CPU "
                            "(an extrapolation from few points: an order of magnitude, not a promise).")
        lines.append("")
    lines += paper_estimate_section(results)
    trial = results / "ae_gpu_trial.json"
    if trial.is_file():
        lines += gpu_trial_section(json.loads(read_input(trial, 2**20)), table)
    path = results / "autoencoder.md"
    write_bytes_atomic(path, lambda fh: fh.write("\n".join(lines).encode()))
    figure(table, results / "autoencoder.png")


def paper_estimate_section(results: Path) -> list[str]:
    """Training time of the `paper` study, from measured throughput at its model size (d = 128, 4 layers):
    this CPU's `bench perf --suites ae-train` rows and, where present, an accelerator's `perf_gpu` rows."""
    recipe = STUDY_RECIPES.get("paper")
    if recipe is None:
        return []
    n, epochs = recipe.sizes[0]
    work = n * epochs
    rows = []
    for path, group, label in ((results / "perf.parquet", "ae-train", "this CPU (2 threads)"),
                               (results / "perf_gpu.parquet", None, "accelerator")):
        try:
            table = pd.read_parquet(check_parquet(path))
        except (OSError, ValueError):
            continue
        if group is not None:  # bench perf: the dense path at the largest batch measured
            sub = table[(table.get("group") == group) & table.case.str.startswith("dense")]
            sub = sub[sub.networks == sub.networks.max()] if len(sub) else sub
            rows += [(f"{label}, {r.case.split(',')[0]} (batch {int(r.networks)})", r.per_item_s)
                     for _, r in sub.iterrows()]
        else:
            sub = table[table.case.str.startswith("ae-train") & (table.device != "cpu")]
            rows += [(f"{r.accelerator}, {r.case.removeprefix('ae-train ')} ({r.work})", r.per_unit)
                     for _, r in sub.iterrows()]
    if not rows:
        return []
    lines = ["## The paper preset: what it would take", "",
             f"`bench ae study --kinds paper` trains the reference setting: {n:,} training INRs x {epochs} epochs = "
             f"{work / 1e6:.2f}M network-steps at d = 128, 4 layers, batch 128 (fitting its zoo, {n:,} SIRENs, "
             "comes on top). Estimated from measured training throughput (validation passes not counted):", "",
             "| where | s per network-step | estimated training time |", "|---|---|---|"]
    for label, per in rows:
        hours = work * per / 3600
        lines.append(f"| {label} | {per:.3g} | {hours:,.1f} h |")
    try:
        fits = pd.read_parquet(check_parquet(results / "perf_gpu.parquet"))
        fits = fits[fits.case == "inr-fit"]
    except (OSError, ValueError):
        fits = None
    if fits is not None and len(fits):
        steps = recipe.zoo.options.get("steps", 1000)
        lines += ["", f"Fitting its {n:,} SIRENs ({steps} steps each), from the `perf_gpu` fitting rows: " + "; ".join(
            f"{r.device} ({r.accelerator if r.device != 'cpu' else f'{r.cpu_threads} threads'}) "
            f"{n * r.per_unit * steps / 1000 / 3600:,.2f} h" for _, r in fits.iterrows()) + "."]
    return lines + [""]


def gpu_trial_section(trial: dict, table: pd.DataFrame) -> list[str]:
    """The reference-size model trained on an accelerator (`python -m bench.perf.gpu --ae-trial`)."""
    same = table[(table.study == TRIAL_STUDY) & table.n_train.notna()]
    lines = ["## The reference model size on an accelerator", "",
             f"`python -m bench.perf.gpu --ae-trial <study INR zoo> --ae-epochs {trial['epochs']}` on "
             f"{trial['accelerator']} (torch {trial['torch']}): `scalegmn-ae` with "
             + ", ".join(f"{k}={v}" for k, v in trial["hp"].items()) + f", float32, trained on the study zoo's "
             f"{trial['n_train']} training networks ({trial['epochs']} epochs, best {trial['best_epoch']}, "
             f"{trial['train_seconds'] / 60:.1f} min), scored on the same {trial['n_test']} test networks:", "",
             "| model | n train | PSNR vs GT | PSNR vs original | R^2 | ident (net) | ident (image) |",
             "|---|---|---|---|---|---|---|",
             f"| d = 128, accelerator | {trial['n_train']} | {trial['psnr_gt']:.2f} | {trial['psnr_original']:.2f} | "
             f"{trial['r2']:.3f} | {trial['ident']:.3f} | {trial['ident_image']:.3f} |"]
    for _, r in same.iterrows():
        lines.append(f"| study (CPU) | {int(r.n_train)} | {r.psnr_gt:.2f} | {r.psnr_original:.2f} | {r.r2:.3f} | "
                     f"{r.ident:.3f} | {r.ident_image:.3f} |")
    if trial.get("zoo_hash") not in set(table.get("zoo_hash", [])) and "zoo_hash" in table:
        lines += ["", "(the trial's zoo is not this study's zoo: compare with care)"]
    return lines + [""]


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = list(dict.fromkeys(table.study))
    fig, axes = plt.subplots(len(studies), 3, figsize=(13, 3.6 * len(studies)), squeeze=False)
    for row, name in zip(axes, studies, strict=True):
        sub = table[table.study == name]
        inr = ground_truth(sub)
        ae = sub[sub.n_train.notna()].sort_values("n_train")
        refs = sub[sub.n_train.isna()]
        first = ae.iloc[0] if len(ae) else None
        quality = "psnr_gt" if inr else "acc_decoded"
        row[0].plot(ae.n_train, ae[quality], "o-", label="decoded")
        if first is not None and inr:
            row[0].axhline(first.psnr_gt_original, ls="--", c="k", label="originals")
            row[0].axhline(first.psnr_gt_mean_image, ls=":", c="grey", label="mean training image")
            row[0].axhline(20, ls="-.", c="C3", lw=0.8, label="target 20 dB")
        elif first is not None:
            row[0].axhline(first.acc_original, ls="--", c="k", label="originals")
        row[0].set(xscale="log", xlabel="training networks", ylabel="PSNR vs ground truth (dB)" if inr
                   else "test accuracy", title=f"{name.upper()}: reconstruction")
        row[1].plot(ae.n_train, ae.ident, "o-", label="ident (network)")
        row[1].plot(ae.n_train, ae.r2, "s-", label="R^2 decoded vs original")
        if first is not None:
            row[1].axhline(first.ident_chance, ls=":", c="grey", label="ident by chance")
        row[1].set(xscale="log", xlabel="training networks", title=f"{name.upper()}: does it identify its source?")
        col = "pairs_loss_excess"
        if col in ae:
            row[2].errorbar(ae.n_train, ae[col], yerr=[ae[col] - ae[col + "_low"], ae[col + "_high"] - ae[col]],
                            fmt="o-", label="scalegmn-ae")
            for i, (_, r) in enumerate(refs.iterrows()):
                if math.isfinite(r.get(col, math.nan)):
                    row[2].axhline(r[col], ls="--", c=f"C{i + 1}", label=r.method)
        row[2].set(xscale="log", xlabel="training networks", ylabel="pairs loss path excess",
                   title=f"{name.upper()}: honest path metric (lower is better)")
        for ax in row:
            ax.legend(fontsize=7)
            if len(ae):  # the sizes themselves as ticks: log-scale minor labels collide
                ax.set_xticks(ae.n_train.tolist(), [f"{int(n)}" for n in ae.n_train])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)
