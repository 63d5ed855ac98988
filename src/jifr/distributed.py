"""Training on several processes with torch.distributed: one process per rank, started by
torchrun (``torchrun --nproc-per-node N -m jifr train ...``, or ``jifr train --nproc N``).

What is shared and what is split (``jifr.train`` uses these pieces):

- every rank draws the epoch's order of the positives, their negatives and the frame-feedback
  order from the same seeded generator, so all ranks hold the same epoch; of each step's global
  batch of ``batch_size`` positives, rank r takes the r-th contiguous part (``shard_bounds``);
- each rank's loss is scaled by ``size * n_r / n`` (its share of the n positives), so that the
  gradients DistributedDataParallel averages over the ranks are those of the loss over the
  global batch (``share_scale``, ``replicate``);
- validation scores every ``size``-th user on each rank and sums the metric sums and counts
  over ranks (``all_sum``), so every rank takes the same early-stopping decision;
- files are written by rank 0 alone (``on_main``), and its errors reach every rank.

"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from jifr.errors import MainRankFailed

if TYPE_CHECKING:
    import typer

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's rank among ``size`` processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks()


def current() -> Ranks:
    """The rank and size of the default process group; a single process when there is none."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return SINGLE


def launched_size() -> int:
    """The number of processes torchrun started (its WORLD_SIZE); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: torch.device | None = None) -> Iterator[Ranks]:
    """Join the process group that torchrun describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) and leave it at the end; a single process outside torchrun.
    ``device``: where the model is (default: the CPU), which decides the backend."""
    device = torch.device("cpu") if device is None else device
    if launched_size() <= 1:
        yield SINGLE
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # Imported before the group exists: imported later, as the first optimizer does, it keeps a
    # reference to the group, whose gloo threads then outlive destroy_process_group and, freeing
    # a collective's tensors while the interpreter shuts down, abort the process (torch 2.13).
    importlib.import_module("torch._dynamo")

    dist.init_process_group(backend_for(device))
    try:
        yield current()
        dist.barrier()  # no rank tears its connections down while another still uses them
    finally:
        dist.destroy_process_group()


# ---- the global batch, split -------------------------------------------------------------------
def shard_bounds(n: int, ranks: Ranks) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous part of n rows: near-equal parts, the first
    ``n % size`` of them one row longer."""
    base, extra = divmod(n, ranks.size)
    start = ranks.rank * base + min(ranks.rank, extra)
    return start, start + base + int(ranks.rank < extra)


def check_batch_split(batch_size: int, processes: int) -> None:
    """ValueError unless ``batch_size`` positives split into ``processes`` equal parts."""
    if batch_size % processes:
        suggestion = max(batch_size // processes, 1) * processes
        raise ValueError(
            f"batch size {batch_size} is not a multiple of the {processes} processes: each process takes "
            f"batch size / {processes} positives of every step (e.g. --batch-size {suggestion})"
        )


def share_scale(n_rank: int, n: int, ranks: Ranks) -> float:
    """What this rank's mean loss over its ``n_rank`` of the n positives is multiplied by.

    A loss of the form mean over rows + (sum over rows) / n + a weight penalty W is, over the
    global batch, sum_r (n_r / n) * (rank r's loss). DDP divides the sum of the ranks' gradients
    by ``size``, so rank r's loss is scaled by size * n_r / n; W's gradient then adds up to
    exactly one W's, whatever the parts' sizes. Equal parts make the scale exactly 1.
    """
    return ranks.size * n_rank / n


def replicate(model: nn.Module, device: torch.device, unreduced: Sequence[nn.Parameter] = ()) -> nn.Module:
    """``model`` (whose ``forward`` computes one rank's step loss) wrapped in DDP, which averages
    its gradients over the ranks during the backward pass.

    Buffers are data that every rank derives alike: they are neither broadcast nor synchronised.
    ``unreduced``: parameters DDP leaves alone (it expects every parameter it holds to take part
    in every step); ``average_gradients`` averages them after the backward pass.
    """
    ignored = {id(p) for p in unreduced}
    names = [name for name, _ in model.named_buffers()]
    names += [name for name, parameter in model.named_parameters() if id(parameter) in ignored]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    device_ids = None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def average_gradients(parameters: Sequence[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the ranks, in one collective, as DDP does
    (sum over ranks, divided by their number). A parameter that no rank used in this step keeps
    no gradient, so that Adam leaves it alone, as in one process; one that only some ranks used
    counts as zero on the others."""
    if not parameters:
        return
    device = parameters[0].device
    used = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters]
    flat = torch.cat([*grads, used])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for parameter, used_anywhere in zip(parameters, flat[-len(parameters) :].tolist(), strict=True):
        average = flat[offset : offset + parameter.numel()].view_as(parameter)
        offset += parameter.numel()
        if used_anywhere == 0:
            continue
        if parameter.grad is None:
            parameter.grad = average.clone()
        else:
            parameter.grad.copy_(average)


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The sums over ranks of ``values``, in float64 (the same on every rank)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def start_sum(value: Tensor) -> Callable[[], float]:
    """Start summing a scalar over ranks; the returned function waits for the sum."""
    tensor = value.detach().reshape(1).to(torch.float64)
    work = dist.all_reduce(tensor, async_op=True)

    def wait() -> float:
        if work is not None:
            work.wait()
        return float(tensor[0])

    return wait


# ---- rank 0 alone -----------------------------------------------------------------------------
def on_main(action: Callable[[], T], ranks: Ranks) -> T:
    """Run ``action`` on rank 0 only and give its result to every rank. When it raises, rank 0
    raises the error and the other ranks raise MainRankFailed with its message, so no rank
    waits for one that has stopped."""
    if ranks.size == 1:
        return action()
    outcome: list[Any] = [None]
    error: Exception | None = None
    if ranks.is_main:
        try:
            outcome[0] = (True, action())
        except Exception as exc:  # every rank must learn of it, whatever it is
            error, outcome[0] = exc, (False, f"{type(exc).__name__}: {exc}")
    dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    succeeded, value = outcome[0]
    if not succeeded:
        raise MainRankFailed(f"rank 0 failed: {value}")
    return value


def check_same_everywhere(value: Any, what: str, ranks: Ranks) -> None:
    """ValueError on every rank unless every rank holds the same ``value`` (JSON-like)."""
    if ranks.size == 1:
        return
    values: list[Any] = [None] * ranks.size
    dist.all_gather_object(values, value)
    differing = [rank for rank, other in enumerate(values) if other != values[0]]
    if differing:
        raise ValueError(
            f"the ranks differ in {what}: rank(s) {differing} differ from rank 0; start every process with "
            "the same command and the same data"
        )


def broadcast_from_main(value: T, ranks: Ranks) -> T:
    """Rank 0's ``value`` on every rank (sent in memory, pickled by torch.distributed)."""
    if ranks.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- launching torchrun -----------------------------------------------------------------------
def launch(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``python -m jifr ARGUMENTS`` in ``nproc`` processes on this machine under torchrun
    (a standalone rendezvous on a free port); the exit status of torchrun."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "jifr",
        *arguments,
    ]
    # torchrun would set one thread per process itself, with a warning; say it here instead.
    environment = {"OMP_NUM_THREADS": "1"} | dict(os.environ)
    log.info("starting %d processes: %s", nproc, " ".join(command))
    return subprocess.run(command, env=environment, check=False).returncode


def command_arguments(context: typer.Context, leave_out: Sequence[str] = ()) -> list[str]:
    """The command line that repeats the command of ``context`` with the values it was given
    (its parameters except ``leave_out``), after the parent command's flags (e.g. --verbose)."""
    arguments = _parameter_arguments(context.parent, ()) if context.parent is not None else []
    arguments.append(context.info_name or "")
    return arguments + _parameter_arguments(context, leave_out)


def _parameter_arguments(context: Any, leave_out: Sequence[str]) -> list[str]:
    positional: list[str] = []
    options: list[str] = []
    for parameter in context.command.params:
        value = context.params.get(parameter.name)
        if parameter.name in leave_out or value is None:
            continue
        if parameter.param_type_name == "argument":
            positional.append(str(value))
        elif getattr(parameter, "is_flag", False):
            if value or parameter.secondary_opts:
                options.append(parameter.opts[0] if value else parameter.secondary_opts[0])
        else:
            values = value if parameter.multiple else [value]
            options += [text for item in values for text in (parameter.opts[0], str(item))]
    return positional + options
