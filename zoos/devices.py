"""Which device torch work runs on: `cpu`, `cuda` (or `cuda:N`), or `auto` (CUDA when torch sees it).

Asking for CUDA where torch has none is refused up front, in one line, rather than deep inside a
training loop. On the CPU every code path is the one that runs without any device flag.
"""

from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda", "auto")


class DeviceError(ValueError):
    """A device this machine's torch cannot use."""


def resolve_device(name: str | torch.device = "cpu") -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r} (use one of {', '.join(DEVICES)})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name}: CUDA is not available to this torch {torch.__version__} "
                          "(use cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name}: only cpu and cuda are supported")
    return device


def training_fork_context():
    """The multiprocessing context of forked workers that train networks. torch's first optimizer imports
    torch._dynamo (over a second); imported here, before the fork, every worker inherits it."""
    import torch._dynamo  # noqa: F401

    return torch.multiprocessing.get_context("fork")
