"""What every peer script shares: read a job written by `bench perf`, build plain nn.Modules, write results.

Runs inside the PEER's virtualenv (torch + safetensors + the peer), never inside the project's, so
it imports neither the project nor anything the peer venv lacks. A job directory holds

- `job.json`: {"settings": {...}, "cases": [{"id", "spec": <WeightSpace JSON>, "a", "b", "data"?}]}
- one safetensors file per network (our parameter names, no batch axis), and for task objectives the
  inputs and targets (`data`);

and the script writes, into its output directory, `<id>.safetensors` (the aligned B, our names) and
`results.json` ({id: {"seconds", "cpu_seconds", ...}}).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class SpaceNet(nn.Module):
    """The network a WeightSpace JSON describes (linear / conv layers, activations, global average pool)."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        layers = []
        for layer in spec["layers"]:
            if layer["kind"] == "linear":
                layers.append(nn.Linear(layer["n_in"], layer["n_out"]))
            else:
                layers.append(nn.Conv2d(layer["n_in"], layer["n_out"], layer["kernel"], stride=layer["stride"]))
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        w0 = self.spec.get("w0", 1.0)
        for layer, module in zip(self.spec["layers"], self.layers, strict=True):
            x = module(x)
            act = layer["act"]
            if act == "relu":
                x = torch.relu(x)
            elif act == "tanh":
                x = torch.tanh(x)
            elif act == "sin":
                x = torch.sin(w0 * x)
            if layer.get("pool"):
                x = x.mean(dim=(-2, -1))
        offset = self.spec.get("output_offset", 0.0)
        return x + offset if offset else x


def to_module(spec: dict, params: dict[str, torch.Tensor]) -> SpaceNet:
    net = SpaceNet(spec)
    with torch.no_grad():
        for layer, module in zip(spec["layers"], net.layers, strict=True):
            module.weight.copy_(params[f"{layer['name']}.weight"])
            module.bias.copy_(params[f"{layer['name']}.bias"])
    return net


def from_module(spec: dict, net: nn.Module) -> dict[str, torch.Tensor]:
    """Our parameter names from a SpaceNet (or a copy of one), in layer order."""
    out = {}
    for layer, module in zip(spec["layers"], net.layers, strict=True):
        out[f"{layer['name']}.weight"] = module.weight.detach().clone().contiguous()
        out[f"{layer['name']}.bias"] = module.bias.detach().clone().contiguous()
    return out


def example_input(spec: dict, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *spec["input_shape"], generator=torch.Generator().manual_seed(0))


def run(align) -> None:
    """`python <peer script> JOB_DIR OUT_DIR`: align every case with `align(spec, settings, case, job_dir)`,
    which returns (aligned params, {timing fields}), on one thread as `bench perf` pins it, after one
    untimed warm-up call. Cases come smallest first; once one takes longer than settings["budget_s"],
    the rest are marked skipped."""
    torch.set_num_threads(1)
    job_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    job = json.loads((job_dir / "job.json").read_text())
    settings = job["settings"]
    if job["cases"]:  # one untimed call first (imports, tracing caches), as `bench perf` warms its own methods up
        first = job["cases"][0]
        align(json.loads(first["spec"]), settings, first, job_dir)
    results, over = {}, False
    for case in job["cases"]:
        if over:
            results[case["id"]] = {"skipped": True}
            continue
        spec = json.loads(case["spec"])
        wall, cpu = time.perf_counter(), time.process_time()
        aligned, info = align(spec, settings, case, job_dir)
        results[case["id"]] = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                               **info}
        over = results[case["id"]]["cpu_seconds"] > settings.get("budget_s", float("inf"))
        save_file(aligned, str(out_dir / f"{case['id']}.safetensors"))
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))


def load_pair(job_dir: Path, case: dict) -> tuple[dict, dict]:
    return load_file(str(job_dir / case["a"])), load_file(str(job_dir / case["b"]))
