"""Training: mini-batch Adam on the BPR objective with fresh negatives every epoch and early
stopping on validation NDCG (full ranking), keeping the best weights.

A model built with frame feedback (jifr.models.feedback) also takes a slice of the training
frame feedback at every step, in a fresh random order every epoch, so one epoch passes over the
interactions and the feedback once each; without frame feedback nothing of this runs and the
random streams are those of plain BPR training.

With a state directory, everything the next epoch depends on (weights, Adam state, the
sampler's and torch's RNG states, early-stopping state, history) is saved after every epoch, so
an interrupted run resumes at its last completed epoch and ends with the same weights as an
uninterrupted one (``jifr.training_state``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepared import FrameFeedback, PreparedData
from jifr.data.sampling import PositiveSet, sample_negatives
from jifr.errors import TrainingDivergedError
from jifr.evaluate import evaluate_full
from jifr.models.base import Recommender, bpr_loss
from jifr.progress import ProgressLog, progress_bar
from jifr.training_state import TrainingState, load_training_state, remove_training_state, save_training_state

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 1024  # positives per step; each brings n_negatives (u, i, j) triplets
    n_negatives: int = 10  # per positive, resampled every epoch (paper, section 3.1)
    learning_rate: float = 5e-3
    seed: int = 0
    eval_every: int = 1  # epochs between validation runs
    patience: int = 5  # validation runs without improvement before stopping
    metric: str = "NDCG@10"  # full-ranking validation metric used for early stopping

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.n_negatives, self.eval_every, self.patience) < 1:
            raise ValueError("epochs, batch_size, n_negatives, eval_every and patience must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if not (self.metric.startswith(("HR@", "NDCG@")) and self.metric.split("@")[1].isdigit()):
            raise ValueError(f"metric must look like 'NDCG@10' or 'HR@10', got {self.metric!r}")


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

    optimizer: torch.optim.Optimizer
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
    """
    if resume and state_dir is None:
        raise ValueError("resume=True needs the state_dir to resume from")
    if not model.trainable:
        return History()
    if state_dir is not None and not resume:  # a state left by an earlier run must not be resumed later
        remove_training_state(state_dir)
    if data.feedback is not None and len(data.feedback) and model.feedback_head() is None:
        log.info(
            "%s does not learn from frame feedback: the %d feedback rows are unused",
            model.model_name,
            len(data.feedback),
        )
    started = time.perf_counter()
    loop = _start(model, data, config, state_dir if resume else None)
    positives = PositiveSet(data.train.csr(data.n_users, data.n_items))
    while not loop.finished:
        loop.epoch += 1
        record: dict[str, Any] = {"epoch": loop.epoch}
        record["loss"] = _train_epoch(model, data, config, positives, loop, show_progress)
        _validate(model, data, config, loop, record)
        record["seconds"] = round(loop.earlier_seconds + time.perf_counter() - started, 3)
        _end_epoch(config, loop, record, callbacks)
        if state_dir is not None:  # after the callbacks: an epoch is complete once they have run
            save_training_state(state_dir, _snapshot(model, data, config, loop, time.perf_counter() - started))
    model.load_state_dict(loop.best_state)
    model.eval()
    loop.history.seconds = loop.earlier_seconds + time.perf_counter() - started
    return loop.history


def _end_epoch(config: TrainConfig, loop: _Loop, record: dict[str, Any], callbacks: Sequence[EpochCallback]) -> None:
    """Record and report the epoch, and decide whether training is over."""
    loop.history.epochs.append(record)
    log.info("epoch %s", " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    for callback in callbacks:
        callback(record)
    loop.finished = loop.epoch >= config.epochs or loop.stale >= config.patience
    if loop.stale >= config.patience:
        best = loop.history.best_epoch
        log.info("early stop: no %s gain in %d validations; best epoch %d", config.metric, loop.stale, best)


def run_identity(model: Recommender, data: PreparedData, config: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    return {
        "model": model.model_name,
        "model_config": dataclasses.asdict(model.config),
        "train_config": dataclasses.asdict(config),
        "data_fingerprint": data.fingerprint,
    }


def _start(model: Recommender, data: PreparedData, config: TrainConfig, resume_from: Path | None) -> _Loop:
    """A fresh loop, or the one saved in ``resume_from`` with the model and RNGs restored."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loop = _Loop(optimizer, np.random.default_rng(config.seed), History(), copy.deepcopy(model.state_dict()))
    if resume_from is None:
        return loop
    saved = load_training_state(resume_from, run_identity(model, data, config))
    if saved is None:
        log.info("no training state in %s; starting at epoch 1", resume_from)
        return loop
    model.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    loop.rng.bit_generator.state = saved.numpy_rng
    torch.set_rng_state(saved.torch_rng)
    history = saved.history
    loop.history = History(history["epochs"], history["best_epoch"], history["best_metric"], history["seconds"])
    loop.best_state, loop.stale, loop.epoch, loop.finished = saved.best_model, saved.stale, saved.epoch, saved.finished
    loop.earlier_seconds = history["seconds"]
    what = "training had already finished" if saved.finished else "resuming"
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
        optimizer=loop.optimizer.state_dict(),
        numpy_rng=dict(loop.rng.bit_generator.state),
        torch_rng=torch.get_rng_state(),
        history=loop.history.as_dict() | {"seconds": loop.earlier_seconds + seconds},
        stale=loop.stale,
    )


def _validate(model: Recommender, data: PreparedData, config: TrainConfig, loop: _Loop, record: dict[str, Any]) -> None:
    """Every ``eval_every`` epochs and at the last one, score the validation split and keep the
    best weights. The first validation always counts as best: untrained weights never win."""
    if not len(data.valid):  # nothing to choose by: the last epoch is the best
        loop.history.best_epoch, loop.best_state = loop.epoch, model.state_dict()
        return
    if loop.epoch % config.eval_every and loop.epoch < config.epochs:
        return
    k = int(config.metric.split("@")[1])
    value = evaluate_full(model, data, "valid", ks=(k,)).metrics[config.metric]
    record[f"valid_{config.metric}"] = value
    if loop.history.best_epoch == 0 or value > loop.history.best_metric:
        loop.history.best_epoch, loop.history.best_metric, loop.stale = loop.epoch, value, 0
        loop.best_state = copy.deepcopy(model.state_dict())
    else:
        loop.stale += 1


def _train_epoch(
    model: Recommender,
    data: PreparedData,
    config: TrainConfig,
    positives: PositiveSet,
    loop: _Loop,
    show_progress: bool,
) -> float:
    """One pass over the training positives in a fresh random order; returns the mean loss."""
    model.train()
    order = loop.rng.permutation(len(data.train))
    users_all, items_all = data.train.users[order], data.train.items[order]
    negatives_all = sample_negatives(users_all, config.n_negatives, positives, loop.rng)
    starts = range(0, len(order), config.batch_size)
    feedback = _feedback_batches(model, data, len(starts), loop.rng)
    bar = progress_bar(starts, enabled=show_progress, desc=f"epoch {loop.epoch}", leave=False, unit="batch")
    ticker = ProgressLog(log, f"epoch {loop.epoch}", len(starts), "batches", bar, enabled=show_progress)
    total = 0.0
    for index, start in enumerate(bar, start=1):
        batch = slice(start, start + config.batch_size)
        users, pos = torch.as_tensor(users_all[batch]), torch.as_tensor(items_all[batch])
        pos_scores, neg_scores, penalty = model.triplet_scores(users, pos, torch.as_tensor(negatives_all[batch]))
        loss = bpr_loss(pos_scores, neg_scores) + penalty
        logged = next(feedback) if feedback is not None else None
        if logged is not None and len(logged[0]):
            loss = loss + model.frame_feedback_loss(*logged)
        value = float(loss.detach())
        if not math.isfinite(value):  # stop before the step spreads NaN into every weight
            raise TrainingDivergedError(loop.epoch, index, len(starts), value, config.learning_rate)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        total += value * len(users)
        bar.set_postfix(loss=f"{value:.4f}")
        ticker.update(index)
    return total / len(order)


def _feedback_batches(
    model: Recommender, data: PreparedData, n_batches: int, rng: np.random.Generator
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]] | None:
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
