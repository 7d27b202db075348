"""The PyPI peers (and this project at an earlier commit) run in a subprocess of their own python: the
pairs to align are written as a job (safetensors + job.json), a script of `bench/perf/peers/` aligns
them and writes its results back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

PEERS_DIR = Path(__file__).parent / "peers"


PEERS = {  # label -> (flag, script, settings, our method it is compared with)
    "rebasin (PyPI)": ("rebasin", "peer_rebasin.py", {"max_sweeps": 100}, "git-rebasin"),
    "sinkhorn-rebasin l2 (PyPI)": ("sinkhorn", "peer_sinkhorn.py",
                                   {"objective": "l2", "steps": 100, "tau": 1.0, "n_iter": 20, "lr": 0.1},
                                   "sinkhorn-l2"),
    "sinkhorn-rebasin mid (PyPI)": ("sinkhorn", "peer_sinkhorn.py",
                                    {"objective": "mid", "steps": 100, "tau": 1.0, "n_iter": 20, "lr": 0.1},
                                    "sinkhorn-mid"),
}


def write_job(job_dir: Path, pairs: dict, settings: dict) -> None:
    """Pairs (our names, no batch axis) + the spec for a peer script; INR pairs carry grid and pixels."""
    from safetensors.torch import save_file

    job_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, (sp, a, b, task, target) in pairs.items():
        files = {"a": f"{case_id}.a.safetensors", "b": f"{case_id}.b.safetensors"}
        save_file({k: v[0].contiguous() for k, v in a.items()}, str(job_dir / files["a"]))
        save_file({k: v[0].contiguous() for k, v in b.items()}, str(job_dir / files["b"]))
        if task is not None:
            files["data"] = f"{case_id}.data.safetensors"
            save_file({"inputs": task.grid.contiguous(), "targets": task.targets[target].reshape(-1, 1).contiguous()},
                      str(job_dir / files["data"]))
        cases.append({"id": case_id, "spec": sp.to_json(), **files})
    # one spec per job: the cases of a job share the architecture family but not the width
    (job_dir / "job.json").write_text(json.dumps({"settings": settings, "cases": cases}, indent=1))


def run_peer(python: str, script: str, job_dir: Path, out_dir: Path, timeout: float = 3600,
             pythonpath: Path | None = None) -> dict:
    """Run one peer script over a job; returns its results.json ({} and a message when it fails).
    `pythonpath`: the tree the script imports the project from (the baseline); None for real peers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # a peer venv must not see the project
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    try:
        out = subprocess.run([python, str(PEERS_DIR / script), str(job_dir), str(out_dir)], capture_output=True,
                             text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"_error": f"{type(error).__name__}: {error}"}
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"_error": lines[-1] if lines else f"exit {out.returncode}"}
    return json.loads((out_dir / "results.json").read_text())


def peer_available(python: str | None, module: str = "rebasin") -> str | None:
    """None when `python` can import the peer, else why not."""
    if not python:
        return "not given"
    if not Path(python).exists():
        return f"{python} does not exist"
    check = subprocess.run([python, "-c", f"import {module}, safetensors, torch"], capture_output=True, text=True)
    if check.returncode != 0:
        lines = check.stderr.strip().splitlines()
        return lines[-1] if lines else "import failed"
    return None
