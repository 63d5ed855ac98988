"""Training: mini-batch Adam on the BPR objective with fresh negatives every epoch and early
stopping on validation NDCG (full ranking), keeping the best weights."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from jifr.data.prepared import PreparedData
from jifr.data.sampling import PositiveSet, sample_negatives
from jifr.evaluate import evaluate_full
from jifr.models.base import Recommender, bpr_loss

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


def fit(
    model: Recommender,
    data: PreparedData,
    config: TrainConfig,
    show_progress: bool = True,
    callbacks: Sequence[EpochCallback] = (),
) -> History:
    """Train ``model`` in place and leave it holding its best validation weights."""
    history = History()
    if not model.trainable:
        return history
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    positives = PositiveSet(data.train.csr(data.n_users, data.n_items))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    best_state, stale = copy.deepcopy(model.state_dict()), 0
    k = int(config.metric.split("@")[1])
    for epoch in range(1, config.epochs + 1):
        record = {
            "epoch": epoch,
            "loss": _train_epoch(model, data, config, positives, optimizer, rng, show_progress, epoch),
        }
        if len(data.valid) and epoch % config.eval_every == 0:
            record[f"valid_{config.metric}"] = value = evaluate_full(model, data, "valid", ks=(k,)).metrics[
                config.metric
            ]
            if value > history.best_metric:
                history.best_epoch, history.best_metric, stale = epoch, value, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        record["seconds"] = round(time.perf_counter() - started, 3)
        history.epochs.append(record)
        log.info(
            "epoch %s", " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        )
        for callback in callbacks:
            callback(record)
        if stale >= config.patience:
            log.info(
                "early stop: no %s gain in %d validations; best epoch %d", config.metric, stale, history.best_epoch
            )
            break
    if not len(data.valid):
        history.best_epoch, best_state = len(history.epochs), model.state_dict()
    model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - started
    return history


def _train_epoch(
    model: Recommender,
    data: PreparedData,
    config: TrainConfig,
    positives: PositiveSet,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    show_progress: bool,
    epoch: int,
) -> float:
    """One pass over the training positives in a fresh random order; returns the mean loss."""
    model.train()
    order = rng.permutation(len(data.train))
    users_all, items_all = data.train.users[order], data.train.items[order]
    negatives_all = sample_negatives(users_all, config.n_negatives, positives, rng)
    starts = range(0, len(order), config.batch_size)
    total, bar = 0.0, tqdm(starts, desc=f"epoch {epoch}", leave=False, disable=not show_progress, unit="batch")
    for start in bar:
        batch = slice(start, start + config.batch_size)
        users, pos = torch.as_tensor(users_all[batch]), torch.as_tensor(items_all[batch])
        pos_scores, neg_scores, penalty = model.triplet_scores(users, pos, torch.as_tensor(negatives_all[batch]))
        loss = bpr_loss(pos_scores, neg_scores) + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(users)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return total / len(order)
