"""Training: mini-batch Adam on the BPR objective with fresh negatives every epoch and early
stopping on validation NDCG (full ranking), keeping the best weights.

BPR can instead train with per-sample SGD compiled with numba (``optimizer="sgd"``,
``jifr.sgd``): the same epochs, orders and negatives, one SGD step per (user, positive,
negative) triplet instead of one Adam step per batch, in one process.

A model built with frame feedback (jifr.models.feedback) also takes a slice of the training
frame feedback at every step, in a fresh random order every epoch, so one epoch passes over the
interactions and the feedback once each; without frame feedback nothing of this runs and the
random streams are those of plain BPR training.

With a state directory, everything the next epoch depends on (weights, Adam state if any, the
sampler's and torch's RNG states, early-stopping state, history) is saved after every epoch, so
an interrupted run resumes at its last completed epoch and ends with the same weights as an
uninterrupted one (``jifr.training_state``).

Inside a torch.distributed process group (torchrun; ``jifr.distributed``), each step's global
batch of ``batch_size`` positives is split over the ranks and the model is replicated with
DistributedDataParallel: every rank draws the same epoch from the same seeded generator and takes
its part of each batch, so N ranks follow the single-process run up to floating-point summation
order. Frame feedback is not split: every rank computes each step's feedback loss. Validation
splits the users over the ranks; rank 0 alone writes the training state.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from jifr import distributed
from jifr.allocator import keep_freed_memory
from jifr.data.prepared import FrameFeedback, PreparedData
from jifr.data.sampling import PositiveSet, sample_negatives
from jifr.device import CPU, autocast, check_precision
from jifr.distributed import Ranks
from jifr.errors import TrainingDivergedError
from jifr.evaluate import evaluate_full, full_ranking_sums
from jifr.models.base import Recommender, bpr_loss
from jifr.models.bpr import BPR
from jifr.models.frames import frame_product
from jifr.progress import ProgressLog, progress_bar
from jifr.training_state import TrainingState, load_training_state, remove_training_state, save_training_state

log = logging.getLogger(__name__)
OPTIMIZERS = ("adam", "sgd")
EpochCallback = Callable[[dict[str, Any]], None]
Feedback = tuple[Tensor, Tensor, Tensor, Tensor]  # (users, frames, labels, weights) of logged rows


@dataclass(frozen=True)
class Batch:
    """One step's examples, on the model's device: the users and items of B positives, their
    (B, n_neg) negatives and, for a model with frame feedback, the step's logged
    (users, frames, labels, weights) rows (None without)."""

    users: Tensor
    positives: Tensor
    negatives: Tensor
    feedback: Feedback | None = None

    @classmethod
    def of(
        cls,
        users: np.ndarray,
        positives: np.ndarray,
        negatives: np.ndarray,
        feedback: Feedback | None,
        device: torch.device,
    ) -> Batch:
        """The batch of these arrays, moved to ``device``."""
        arrays = (users, positives, negatives)
        user, positive, negative = (torch.as_tensor(a).to(device, non_blocking=True) for a in arrays)
        logged = None if feedback is None else cast(Feedback, tuple(t.to(device, non_blocking=True) for t in feedback))
        return cls(user, positive, negative, logged)

    def __len__(self) -> int:
        return len(self.users)

    def rows(self, start: int, stop: int) -> Batch:
        """The positives [start, stop) with their negatives; the feedback rows whole."""
        return Batch(self.users[start:stop], self.positives[start:stop], self.negatives[start:stop], self.feedback)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 1024  # positives per Adam step; each brings n_negatives (u, i, j) triplets; unused by sgd
    n_negatives: int = 10  # per positive, resampled every epoch (paper, section 3.1)
    learning_rate: float = 5e-3  # Adam's, or sgd's step size per triplet
    seed: int = 0
    eval_every: int = 1  # epochs between validation runs
    patience: int = 5  # validation runs without improvement before stopping
    metric: str = "NDCG@10"  # full-ranking validation metric used for early stopping
    # "adam": mini-batch Adam, every model. "sgd": BPR only, one compiled SGD step per triplet
    # (jifr.sgd), weight decay lr * l2 per step with the model's l2 (Rendle's and Cornac's BPR)
    optimizer: str = "adam"
    # "fp32", or "bf16": the step's matrix products in bfloat16 (torch.autocast; Adam only)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.n_negatives, self.eval_every, self.patience) < 1:
            raise ValueError("epochs, batch_size, n_negatives, eval_every and patience must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if not (self.metric.startswith(("HR@", "NDCG@")) and self.metric.split("@")[1].isdigit()):
            raise ValueError(f"metric must look like 'NDCG@10' or 'HR@10', got {self.metric!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        check_precision(self.precision)
        if self.precision != "fp32" and self.optimizer == "sgd":
            raise ValueError("precision 'bf16' applies to optimizer 'adam': the sgd solver computes in float32")

    def record(self) -> dict[str, Any]:
        """The settings as results, checkpoints and training states record them. Adam and fp32,
        the defaults, are left out: runs recorded before the optimizer and the precision could be
        chosen trained with them, and their records still match (a comparison reuses them, a
        training state resumes)."""
        values = dataclasses.asdict(self)
        for name, default in (("optimizer", "adam"), ("precision", "fp32")):
            if values[name] == default:
                del values[name]
        return values


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("-inf")
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "seconds": self.seconds,
        }


@dataclass
class _Loop:
    """What one epoch hands to the next; all of it is saved in the training state."""

    optimizer: torch.optim.Optimizer | None  # None with the sgd solver, which keeps no state
    rng: np.random.Generator  # orders the positives and samples the negatives
    history: History
    best_state: dict[str, Tensor]
    stale: int = 0  # validations without improvement
    epoch: int = 0  # completed epochs
    finished: bool = False
    earlier_seconds: float = 0.0  # training time before this call (of an interrupted run)


def fit(
    model: Recommender,
    data: PreparedData,
    config: TrainConfig,
    show_progress: bool = True,
    callbacks: Sequence[EpochCallback] = (),
    state_dir: Path | None = None,
    resume: bool = False,
) -> History:
    """Train ``model`` in place and leave it holding its best validation weights.

    ``state_dir``: save the training state there after every epoch. ``resume``: continue from
    the state found there (from epoch 1 when there is none); it must come from the same model,
    model config, training config and data, else ValueError. A finished state only restores
    the best weights. Raises TrainingDivergedError when the loss becomes NaN or infinite.

    In a torch.distributed process group every rank calls ``fit`` alike (the callbacks run on
    every rank, with the same records); ``batch_size`` must be a multiple of the number of ranks.
    ``config.optimizer="sgd"`` trains BPR alone, in one process (``check_optimizer``).
    """
    if resume and state_dir is None:
        raise ValueError("resume=True needs the state_dir to resume from")
    frame_product()  # recorded with the weights (checkpoints, results): a bad value stops here, before training
    if not model.trainable:
        return History()
    ranks = distributed.current()
    check_optimizer(model.model_name, config, ranks.size, model.device)
    _check_ranks(model, data, config, ranks)
    if state_dir is not None and not resume:  # a state left by an earlier run must not be resumed later
        stale_state = state_dir
        distributed.on_main(lambda: remove_training_state(stale_state), ranks)
    if data.feedback is not None and len(data.feedback) and model.feedback_head() is None and ranks.is_main:
        log.info(
            "%s does not learn from frame feedback: the %d feedback rows are unused",
            model.model_name,
            len(data.feedback),
        )
    started = time.perf_counter()
    loop = _start(model, data, config, state_dir if resume else None, ranks)
    positives = PositiveSet(data.train.csr(data.n_users, data.n_items))
    steps = None if loop.optimizer is None else _steps(model, loop.optimizer, config.precision, ranks)
    draws = _EpochDraws(data, config.n_negatives, positives, ahead=steps is None)
    with keep_freed_memory(), draws:  # a step reuses the pages the step before freed (jifr.allocator)
        while not loop.finished:
            loop.epoch += 1
            record: dict[str, Any] = {"epoch": loop.epoch}
            shown = show_progress and ranks.is_main
            record["loss"] = _train_epoch(model, data, config, loop, draws, shown, steps)
            _validate(model, data, config, loop, record, ranks)
            record["seconds"] = round(loop.earlier_seconds + time.perf_counter() - started, 3)
            _end_epoch(config, loop, record, callbacks, ranks.is_main)
            if state_dir is not None:  # after the callbacks: an epoch is complete once they have run
                _save_state(state_dir, _snapshot(model, data, config, loop, time.perf_counter() - started), ranks)
    model.load_state_dict(loop.best_state)
    model.eval()
    loop.history.seconds = loop.earlier_seconds + time.perf_counter() - started
    return loop.history


def check_optimizer(model_name: str, config: TrainConfig, processes: int = 1, device: torch.device = CPU) -> None:
    """ValueError unless ``config.optimizer`` can train model ``model_name`` in ``processes``
    processes on ``device``: Adam trains every model; the compiled SGD solver trains BPR, in one
    process, on the CPU."""
    if config.optimizer == "adam":
        return
    if model_name != "bpr":
        raise ValueError(f"optimizer 'sgd' trains bpr only, not {model_name}; use optimizer 'adam' (the default)")
    if processes > 1:
        raise ValueError(f"optimizer 'sgd' runs in one process, not {processes}: its steps follow each other in order")
    if device.type != "cpu":
        raise ValueError(f"optimizer 'sgd' runs on the CPU, not {device}: use device cpu, or optimizer 'adam'")


def _check_ranks(model: Recommender, data: PreparedData, config: TrainConfig, ranks: Ranks) -> None:
    """Every rank must train the same run, on equal parts of each batch."""
    if ranks.size == 1:
        return
    distributed.check_batch_split(config.batch_size, ranks.size)
    distributed.check_same_everywhere(run_identity(model, data, config), "model, settings or data", ranks)


def _save_state(state_dir: Path, state: TrainingState, ranks: Ranks) -> None:
    distributed.on_main(lambda: save_training_state(state_dir, state), ranks)


def _end_epoch(
    config: TrainConfig, loop: _Loop, record: dict[str, Any], callbacks: Sequence[EpochCallback], report: bool
) -> None:
    """Record the epoch (and, when ``report``, log it), and decide whether training is over."""
    loop.history.epochs.append(record)
    if report:
        shown = (f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        log.info("epoch %s", " ".join(shown))
    for callback in callbacks:
        callback(record)
    loop.finished = loop.epoch >= config.epochs or loop.stale >= config.patience
    if loop.stale >= config.patience and report:
        best = loop.history.best_epoch
        log.info("early stop: no %s gain in %d validations; best epoch %d", config.metric, loop.stale, best)


def run_identity(model: Recommender, data: PreparedData, config: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    return {
        "model": model.model_name,
        "model_config": dataclasses.asdict(model.config),
        "train_config": config.record(),
        "data_fingerprint": data.fingerprint,
    }


def _start(
    model: Recommender, data: PreparedData, config: TrainConfig, resume_from: Path | None, ranks: Ranks
) -> _Loop:
    """A fresh loop, or the one saved in ``resume_from`` with the model and RNGs restored (read
    by rank 0 and sent to the other ranks)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate) if config.optimizer == "adam" else None
    loop = _Loop(optimizer, np.random.default_rng(config.seed), History(), copy.deepcopy(model.state_dict()))
    if resume_from is None:
        return loop
    identity = run_identity(model, data, config)
    saved = distributed.on_main(lambda: load_training_state(resume_from, identity), ranks)
    if saved is None:
        if ranks.is_main:
            log.info("no training state in %s; starting at epoch 1", resume_from)
        return loop
    model.load_state_dict(saved.model)
    if optimizer is not None:
        optimizer.load_state_dict(saved.optimizer)
    loop.rng.bit_generator.state = saved.numpy_rng
    torch.set_rng_state(saved.torch_rng)
    history = saved.history
    loop.history = History(history["epochs"], history["best_epoch"], history["best_metric"], history["seconds"])
    loop.best_state, loop.stale, loop.epoch, loop.finished = saved.best_model, saved.stale, saved.epoch, saved.finished
    loop.earlier_seconds = history["seconds"]
    what = "training had already finished" if saved.finished else "resuming"
    if ranks.is_main:
        log.info("%s after epoch %d (best epoch %d), from %s", what, saved.epoch, loop.history.best_epoch, resume_from)
    return loop


def _snapshot(
    model: Recommender, data: PreparedData, config: TrainConfig, loop: _Loop, seconds: float
) -> TrainingState:
    """The state after ``loop.epoch`` epochs (tensors are copied when written)."""
    return TrainingState(
        identity=run_identity(model, data, config),
        epoch=loop.epoch,
        finished=loop.finished,
        model=model.state_dict(),
        best_model=loop.best_state,
        optimizer=loop.optimizer.state_dict() if loop.optimizer is not None else {"state": {}, "param_groups": []},
        numpy_rng=dict(loop.rng.bit_generator.state),
        torch_rng=torch.get_rng_state(),
        history=loop.history.as_dict() | {"seconds": loop.earlier_seconds + seconds},
        stale=loop.stale,
    )


def _validate(
    model: Recommender, data: PreparedData, config: TrainConfig, loop: _Loop, record: dict[str, Any], ranks: Ranks
) -> None:
    """Every ``eval_every`` epochs and at the last one, score the validation split and keep the
    best weights. The first validation always counts as best: untrained weights never win."""
    if not len(data.valid):  # nothing to choose by: the last epoch is the best
        loop.history.best_epoch, loop.best_state = loop.epoch, model.state_dict()
        return
    if loop.epoch % config.eval_every and loop.epoch < config.epochs:
        return
    value = _validation_metric(model, data, config.metric, ranks)
    record[f"valid_{config.metric}"] = value
    if loop.history.best_epoch == 0 or value > loop.history.best_metric:
        loop.history.best_epoch, loop.history.best_metric, loop.stale = loop.epoch, value, 0
        loop.best_state = copy.deepcopy(model.state_dict())
    else:
        loop.stale += 1


def _validation_metric(model: Recommender, data: PreparedData, metric: str, ranks: Ranks) -> float:
    """The full-ranking validation ``metric``. Over several ranks, each ranks a share of the users
    and the metric sums and user counts are added up, so that every rank gets the same value."""
    ks = (int(metric.split("@")[1]),)
    if ranks.size == 1:
        return evaluate_full(model, data, "valid", ks=ks).metrics[metric]
    sums, n_users = full_ranking_sums(model, data, "valid", ks, shard=(ranks.rank, ranks.size))
    total, count = distributed.all_sum([sums[metric], n_users], model.device)
    return total / max(count, 1.0)


Samples = tuple[np.ndarray, np.ndarray, np.ndarray]  # an epoch's users, positives, (n, n_neg) negatives


class _EpochDraws:
    """Each epoch's order of the training positives and its negatives, drawn from the loop's
    generator at the epoch's start. With ``ahead`` (the SGD solver, whose compiled loop releases
    the GIL), the next epoch's are drawn on a second thread while this one trains and validates,
    from a copy of the generator: the draws do not depend on the weights, so they are the ones
    the next epoch would draw itself, and the loop's generator moves past them only when that
    epoch takes them (a training state saved in between resumes with the same draws)."""

    def __init__(self, data: PreparedData, n_negatives: int, positives: PositiveSet, ahead: bool) -> None:
        self.data, self.n_negatives, self.positives = data, n_negatives, positives
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jifr-draws") if ahead else None
        self.next: tuple[Mapping[str, Any], Future[tuple[Samples, Mapping[str, Any]]]] | None = None

    def __enter__(self) -> _EpochDraws:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def take(self, rng: np.random.Generator, last: bool = False) -> Samples:
        """This epoch's draws (the generator moves past them) and, unless it is the ``last``
        epoch, the next epoch's started."""
        start = rng.bit_generator.state
        if self.next is not None and self.next[0] == start:
            samples, end = self.next[1].result()
            rng.bit_generator.state = end
        else:
            samples = self.draw(rng)
        self.next = None
        if self.pool is not None and not last:
            ahead = np.random.Generator(type(rng.bit_generator)())
            ahead.bit_generator.state = rng.bit_generator.state
            self.next = (
                rng.bit_generator.state,
                self.pool.submit(lambda: (self.draw(ahead), ahead.bit_generator.state)),
            )
        return samples

    def draw(self, rng: np.random.Generator) -> Samples:
        order = rng.permutation(len(self.data.train))
        users, items = self.data.train.users[order], self.data.train.items[order]
        return users, items, sample_negatives(users, self.n_negatives, self.positives, rng)


def _train_epoch(
    model: Recommender,
    data: PreparedData,
    config: TrainConfig,
    loop: _Loop,
    draws: _EpochDraws,
    show_progress: bool,
    steps: _Steps | None,
) -> float:
    """One pass over the training positives in a fresh random order; returns the mean loss.
    ``steps`` takes the Adam steps; None runs the epoch with the SGD solver."""
    model.train()
    users_all, items_all, negatives_all = draws.take(loop.rng, last=loop.epoch >= config.epochs)
    if steps is None:
        return _sgd_epoch(model, config, (users_all, items_all, negatives_all), loop.epoch)
    starts = range(0, len(users_all), config.batch_size)
    feedback = _feedback_batches(model, data, len(starts), loop.rng)
    device = model.device
    bar = progress_bar(starts, enabled=show_progress, desc=f"epoch {loop.epoch}", leave=False, unit="batch")
    ticker = ProgressLog(log, f"epoch {loop.epoch}", len(starts), "batches", bar, enabled=show_progress)
    total = 0.0
    for index, start in enumerate(bar, start=1):
        batch = slice(start, start + config.batch_size)
        logged = next(feedback) if feedback is not None else None

        def check(value: float, index: int = index) -> None:  # before the step spreads NaN into every weight
            if not math.isfinite(value):
                raise TrainingDivergedError(loop.epoch, index, len(starts), value, config.learning_rate)

        value = steps(Batch.of(users_all[batch], items_all[batch], negatives_all[batch], logged, device), check)
        total += value * len(users_all[batch])
        bar.set_postfix(loss=f"{value:.4f}")
        ticker.update(index)
    return total / len(users_all)


def _sgd_epoch(model: Recommender, config: TrainConfig, samples: Samples, epoch: int) -> float:
    """One SGD step per triplet of ``samples`` (users (n,), positives (n,), negatives (n, n_neg)),
    in order, in place on BPR's float32 embedding tables; returns the mean BPR loss. The loss of
    the first triplet whose score is not finite raises TrainingDivergedError before its step
    (its positive's index counts as the batch). ``fit`` has checked that the model is BPR."""
    bpr = cast(BPR, model)
    users, items, negatives = samples
    user_factors = bpr.user_collab.weight.detach().numpy()  # (n_users, d) float32, sharing the weights' memory
    item_factors = bpr.item_collab.weight.detach().numpy()  # (n_items, d)
    from jifr.sgd import bpr_sgd_epoch  # compiled (or loaded from numba's cache) on first use

    total, done = bpr_sgd_epoch(
        user_factors, item_factors, users, items, negatives, config.learning_rate, bpr.config.l2
    )
    if done < len(users):
        raise TrainingDivergedError(epoch, done + 1, len(users), total, config.learning_rate)
    return float(total / negatives.size)


def _feedback_batches(
    model: Recommender, data: PreparedData, n_batches: int, rng: np.random.Generator
) -> Iterator[Feedback] | None:
    """The training frame feedback in ``n_batches`` near-equal slices of a fresh random order,
    as (users, frames, labels, weights) tensors; None for a model without a frame-feedback head.
    With fewer feedback rows than batches, the last steps take none."""
    if model.feedback_head() is None:
        return None
    if data.feedback is None or not len(data.feedback):
        raise ValueError(f"{model.model_name} was built with frame feedback but the data has none")
    feedback: FrameFeedback = data.feedback
    slices = np.array_split(rng.permutation(len(feedback)), n_batches)
    return (
        (
            torch.as_tensor(feedback.users[rows]),
            torch.as_tensor(feedback.frames[rows]),
            torch.as_tensor(feedback.labels[rows]),
            torch.as_tensor(feedback.weights[rows]),
        )
        for rows in slices
    )


# ---- one optimizer step -----------------------------------------------------------------------
class _Objective(nn.Module):
    """The loss of one step as a module, so that DistributedDataParallel can wrap the call (models
    answer ``triplet_scores``, not ``forward``)."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, scale: float | None = None) -> Tensor:
        """BPR loss and penalty of the batch's triplets (times ``scale``), plus the feedback loss."""
        pos_scores, neg_scores, penalty = self.model.triplet_scores(batch.users, batch.positives, batch.negatives)
        loss = bpr_loss(pos_scores.float(), neg_scores.float()) + penalty
        if scale is not None:
            loss = scale * loss
        if batch.feedback is not None and len(batch.feedback[0]):
            loss = loss + self.model.frame_feedback_loss(*batch.feedback)
        return loss


@dataclass
class _Steps:
    """Takes one optimizer step per global batch: in this process alone, or, over several
    ranks, on this rank's part of the batch with the gradients averaged over the ranks."""

    objective: nn.Module  # an _Objective; over several ranks, wrapped in DDP
    optimizer: torch.optim.Optimizer
    ranks: Ranks
    device: torch.device
    precision: str  # TrainConfig.precision: the forward pass runs under its autocast
    unreduced: list[nn.Parameter]  # left out of DDP; averaged after the backward pass

    def __call__(self, batch: Batch, check: Callable[[float], None]) -> float:
        """The step's loss over the global batch; ``check`` sees it before the weights change."""
        if self.ranks.size > 1:
            return self._rank_step(batch, check)
        with autocast(self.device, self.precision):
            loss = self.objective(batch)
        value = float(loss.detach())
        check(value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return value

    def _rank_step(self, batch: Batch, check: Callable[[float], None]) -> float:
        start, stop = distributed.shard_bounds(len(batch), self.ranks)
        scale = distributed.share_scale(stop - start, len(batch), self.ranks)
        if start == stop:  # fewer positives than ranks: a zero-weighted row keeps every rank's backward alike
            start, stop = 0, 1
        with autocast(self.device, self.precision):
            loss = self.objective(batch.rows(start, stop), scale)
        total = distributed.start_sum(loss.detach() / self.ranks.size)  # the global batch's loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the ranks here
        value = total()
        check(value)
        distributed.average_gradients(self.unreduced)
        self.optimizer.step()
        return value


def _steps(model: Recommender, optimizer: torch.optim.Optimizer, precision: str, ranks: Ranks) -> _Steps:
    """The step function of ``fit``. Over several ranks the model is replicated with DDP, except
    the frame-feedback head: only the feedback loss reaches it, and in steps without feedback
    rows nothing does, while DDP expects every parameter it holds in every step (or a search for
    unused ones at every step). Its gradients are averaged apart, and when no rank has one (no
    feedback rows) it keeps none, as in one process."""
    objective, device = _Objective(model), model.device
    if ranks.size == 1:
        return _Steps(objective, optimizer, ranks, device, precision, [])
    head = model.feedback_head()
    unreduced = list(head.parameters()) if head is not None else []
    replicated = distributed.replicate(objective, device, unreduced)
    return _Steps(replicated, optimizer, ranks, device, precision, unreduced)
