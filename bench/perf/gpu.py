"""`bench perf --suites gpu` (or `python -m bench.perf.gpu`): the same work on the CPU and on an accelerator.

Four cases, each run by the very code the harness runs, once with `device="cpu"` and once on the
accelerator, interleaved repetitions, wall-clock medians (the accelerator synchronised before the
clock stops), CPU threads pinned to all of the machine's cores so that the CPU gets its best:
- `inr-fit`: fitting N SIRENs 2-32-32-1 to images (sklearn's digits, upsampled: no download);
- `evaluation`: interpolation curves of INR pairs (25 points);
- `sinkhorn`: Sinkhorn re-basin (L2 and Mid) of SIREN pairs of width 256;
- `ae-train`: ScaleGMN autoencoder training steps at the reference size (d = 128, 4 layers, batch 128).
Beside each time: how far the accelerator's result is from the CPU's (float tolerance expected).
Sized to finish in a few minutes on one modern GPU; results: `<out>/perf_gpu.{md,parquet}`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from zoos.devices import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def compare(cases: dict, repeats: int) -> dict:
    """{(case, device): (median wall s, last result)} with the devices interleaved, after a warm-up."""
    results = {}
    for key, (fn, device) in cases.items():
        timed(fn, device)
    walls = {key: [] for key in cases}
    for _ in range(repeats):
        for key, (fn, device) in cases.items():
            wall, out = timed(fn, device)
            walls[key].append(wall)
            results[key] = out
    return {key: (statistics.median(walls[key]), results[key]) for key in cases}


def _images(n: int) -> torch.Tensor:
    from zoos.data import load_images

    images, _ = load_images("digits", "train")
    return images[torch.arange(n) % len(images)]


def inr_fit(devices, n: int = 1024, steps: int = 100, repeats: int = 3) -> list[dict]:
    from zoos.inr import dwsnets_init, fit_inrs
    from zoos.space import siren_space

    space = siren_space()
    init, images = dwsnets_init(space, list(range(n))), _images(n)
    cases = {("inr-fit", d.type): (lambda d=d: fit_inrs(space, init, images, steps, device=d)[1], d) for d in devices}
    res = compare(cases, repeats)
    cpu_mse = res[("inr-fit", "cpu")][1]
    # SIREN fitting is chaotic: rounding differences grow along each trajectory, so networks are compared
    # by the fit they reach on average, not one by one
    return [{"case": "inr-fit", "device": d, "work": f"{n} SIRENs x {steps} steps", "median_s": t,
             "per_unit": t / n * 1000 / steps, "unit": "s per SIREN per 1000 steps",
             "difference": float((mse.mean() - cpu_mse.mean()).abs() / cpu_mse.mean()),
             "difference_of": "mean final MSE, relative"} for (_, d), (t, mse) in res.items()]


def evaluation(devices, pairs: int = 512, points: int = 25, repeats: int = 3) -> list[dict]:
    from bench.evaluation.curves import curves
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space
    from zoos.tasks import InrTask

    space = siren_space()
    a, b = dwsnets_init(space, list(range(pairs))), dwsnets_init(space, list(range(pairs, 2 * pairs)))
    images = _images(pairs)
    lambdas = torch.linspace(0, 1, points)
    target = torch.arange(pairs)
    cases = {}
    for d in devices:
        task = InrTask(space, images).to(d)
        cases[("evaluation", d.type)] = (lambda task=task: curves(task, a, b, lambdas, target)["loss"], d)
    res = compare(cases, repeats)
    cpu = res[("evaluation", "cpu")][1]
    return [{"case": "evaluation", "device": d, "work": f"{pairs} pairs x {points} points", "median_s": t,
             "per_unit": t / (pairs * points), "unit": "s per network evaluated",
             "difference": float(((c - cpu).abs() / cpu.abs()).max()), "difference_of": "loss curves, max relative"}
            for (_, d), (t, c) in res.items()]


def sinkhorn(devices, width: int = 256, pairs: int = 8, steps: int = 50, repeats: int = 3) -> list[dict]:
    from methods.sinkhorn import SinkhornRebasin
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space
    from zoos.tasks import InrTask

    space = siren_space(width)
    ref, others = dwsnets_init(space, [0]), dwsnets_init(space, list(range(1, pairs + 1)))
    task = InrTask(space, _images(1))
    rows = []
    for objective in ("l2", "mid"):
        cases = {}
        for d in devices:
            method = SinkhornRebasin(objective=objective, steps=steps, device=d.type)
            method.space, method.task = space, task
            cases[(objective, d.type)] = (lambda m=method: m.align(ref, others, target=0).info["objective"], d)
        res = compare(cases, repeats)
        cpu = res[(objective, "cpu")][1]
        rows += [{"case": f"sinkhorn-{objective}", "device": d, "work": f"{pairs} pairs, width {width}, {steps} steps",
                  "median_s": t, "per_unit": t / pairs, "unit": "s per pair",
                  "difference": abs(obj - cpu) / abs(cpu), "difference_of": "objective reached, relative"}
                 for (_, d), (t, obj) in res.items()]
    return rows


def ae_train(devices, batch: int = 128, hidden: int = 128, repeats: int = 3) -> list[dict]:
    from methods.scalegmn_ae import RenderLoss, ScaleGMNAutoencoder, accumulate
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space

    space = siren_space()
    params = dwsnets_init(space, list(range(batch)))
    loss_fn = RenderLoss(space)
    rows = []
    for precision in ("fp32", "bf16"):
        cases = {}
        for d in devices:
            model = ScaleGMNAutoencoder(hidden=hidden, n_layers=4).build(space)
            model.set_scales(params)
            model.to(d)
            p = {k: v.to(d) for k, v in params.items()}
            with torch.no_grad():
                ref = loss_fn.reference(p)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step(model=model, opt=opt, p=p, ref=ref, precision=precision):
                opt.zero_grad(set_to_none=True)
                loss = accumulate(model, loss_fn, p, ref, "dense", precision)
                opt.step()
                return float(loss)
            cases[(precision, d.type)] = (step, d)
        res = compare(cases, repeats)
        rows += [{"case": f"ae-train {precision}", "device": d, "work": f"batch {batch}, d = {hidden}, 4 layers",
                  "median_s": t, "per_unit": t / batch, "unit": "s per network-step", "difference": float("nan"),
                  "difference_of": "(independent models)"} for (_, d), (t, _) in res.items()]
    return rows


def ae_trial(zoo_dir: Path, out: Path, epochs: int = 150, device: str = "auto") -> dict:
    """Train the autoencoder at the reference size (d = 128, 4 layers, batch 128, warmup 1000, float32) on a
    stored zoo's train split on the accelerator, and measure its test reconstruction like `bench ae study`.
    Writes <out>/ae_gpu_trial.json (the study report shows it beside the CPU sizes)."""
    import json

    from bench.evaluation.reconstruction import reconstruction
    from methods.scalegmn_ae import ScaleGMNAutoencoder
    from zoos.tasks import make_task
    from zoos.zoo import load_zoo

    zoo = load_zoo(zoo_dir)
    task = make_task(zoo)
    hp = dict(hidden=128, n_layers=4, latent=128, batch_size=128, warmup=1000, patience=50, epochs=epochs)
    method = ScaleGMNAutoencoder(device=device, **hp)
    method.space, method.task = zoo.space, task
    method.fit(zoo, None, progress=False)
    info = {k: v for k, v in method.fit_info.items() if not isinstance(v, list | dict)}
    result = {"zoo": zoo.name, "zoo_hash": zoo.content_hash(), "hp": hp, "device": str(method.device),
              "accelerator": torch.cuda.get_device_name(method.device) if method.device.type == "cuda" else "none",
              "torch": torch.__version__, **info, **reconstruction(zoo, task, method)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ae_gpu_trial.json").write_text(json.dumps(result, indent=1, default=str))
    return result


# each case's work shrunk by `scale` (a CPU smoke run of the script), never below what the case needs
SCALED = {
    "inr-fit": lambda f: {"n": max(8, int(1024 * f))},
    "evaluation": lambda f: {"pairs": max(4, int(512 * f))},
    "sinkhorn": lambda f: {"width": max(8, int(256 * f)), "steps": max(10, int(50 * f))},
    "ae-train": lambda f: {"batch": max(4, int(128 * f)), "hidden": max(8, int(128 * f))},
}
CASES = {"inr-fit": inr_fit, "evaluation": evaluation, "sinkhorn": sinkhorn, "ae-train": ae_train}


def run(out: Path, device: str = "auto", repeats: int = 3, threads: int | None = None, cases=tuple(CASES),
        scale: float = 1.0) -> pd.DataFrame:
    accel = resolve_device(device)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    devices = [torch.device("cpu")] + ([accel] if accel.type != "cpu" else [])
    rows = []
    for name in cases:
        print(f"perf gpu: {name} ...", flush=True)
        fn = CASES[name]
        kwargs = {"repeats": repeats, **(SCALED[name](scale) if scale != 1.0 else {})}
        rows += fn(devices, **kwargs)
    table = pd.DataFrame(rows)
    name = torch.cuda.get_device_name(accel) if accel.type == "cuda" else "none"
    table = table.assign(accelerator=name, cpu_threads=torch.get_num_threads(), torch=torch.__version__,
                         commit=os.environ.get("REBASIN_COMMIT", ""))
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "perf_gpu.parquet", index=False)
    (out / "perf_gpu.md").write_text(markdown(table))
    return table


def markdown(table: pd.DataFrame) -> str:
    first = table.iloc[0]
    lines = [f"# bench perf gpu: {first.accelerator} vs the CPU ({first.cpu_threads} threads), torch {first.torch}"
             + (f", commit {first.commit[:12]}" if first.commit else ""), "",
             "Wall-clock medians of interleaved repetitions (the accelerator synchronised before each clock read); "
             "speed-up = CPU time / accelerator time for the same work; difference = how far the accelerator's "
             "result is from the CPU's.", "",
             "| case | work | device | median s | per unit | unit | speed-up | difference |",
             "|---|---|---|---|---|---|---|---|"]
    for case, sub in table.groupby("case", sort=False):
        cpu = sub[sub.device == "cpu"].median_s.iloc[0]
        for _, r in sub.iterrows():
            shown = r.device != "cpu" and r.difference == r.difference  # NaN: nothing to compare
            diff = f"{r.difference:.1e} ({r.difference_of})" if shown else ""
            lines.append(f"| {case} | {r.work} | {r.device} | {r.median_s:.4g} | {r.per_unit:.3g} | {r.unit} | "
                         f"{cpu / r.median_s:.1f}x | {diff} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--device", default="auto", help="accelerator to compare with the CPU (default: auto)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the work (e.g. 0.1 for a CPU smoke run)")
    parser.add_argument("--ae-trial", type=Path, metavar="ZOO", help="also train the reference-size autoencoder on "
                        "this stored zoo (ae_gpu_trial.json)")
    parser.add_argument("--ae-epochs", type=int, default=150)
    args = parser.parse_args(argv)
    if args.cases:
        table = run(args.out, args.device, args.repeats, args.threads, tuple(args.cases), args.scale)
        print(markdown(table))
    if args.ae_trial:
        result = ae_trial(args.ae_trial, args.out, args.ae_epochs, args.device)
        print({k: v for k, v in result.items() if k != "hp"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
