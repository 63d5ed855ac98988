"""Where models run and in what precision: ``--device cpu|cuda|auto`` and ``--precision fp32|bf16``.

A model is built on the CPU (its seeded initialisation is the same everywhere) and then placed
on its device with ``Recommender.place``; every tensor it creates afterwards is created there.
``bf16`` runs the step's matrix products in bfloat16 under ``torch.autocast`` (weights, their
gradients and the optimizer stay float32); scoring and evaluation stay float32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from jifr import distributed

CPU = torch.device("cpu")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """The torch device that ``name`` asks for: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (a GPU
    where CUDA is available, else the CPU). In a process that torchrun started, ``cuda`` and
    ``auto`` mean the process's own GPU (``LOCAL_RANK``). ValueError for anything else, and for
    a GPU that this machine does not have."""
    spec = name.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and distributed.launched_size() > 1:
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU (torch {torch.__version__})")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device(spec)


def reused_memory(
    buffer: torch.Tensor | None, numel: int, dtype: torch.dtype, device: torch.device, headroom: float = 0.0
) -> torch.Tensor:
    """A flat tensor of at least ``numel`` values of ``dtype`` on ``device``: ``buffer`` where it
    is one (memory reused from one call to the next, its pages already there), else a new one
    with ``headroom`` (a fraction of ``numel``) to spare for a larger next call."""
    if buffer is not None and buffer.numel() >= numel and buffer.dtype == dtype and _same_device(buffer.device, device):
        return buffer
    return torch.empty(numel + int(numel * headroom), dtype=dtype, device=device)


def _same_device(actual: torch.device, asked: torch.device) -> bool:
    """Whether a tensor on ``actual`` is on ``asked``, where ``cuda`` without an index is the
    current GPU (a tensor's device always has its index)."""
    if actual.type != asked.type:
        return False
    if asked.index is None and asked.type == "cuda":
        return actual.index == torch.cuda.current_device()
    return asked.index is None or actual.index == asked.index


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def product_dtype(device: torch.device) -> torch.dtype:
    """The type matrix products on ``device`` run in here: bfloat16 inside ``autocast`` with
    bf16, else float32."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Matrix products in bfloat16 on ``device`` with ``precision="bf16"``; nothing with fp32."""
    check_precision(precision)
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield
