"""Non-learning floors: item popularity for items, random order (RND) for key frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from jifr.models.base import ModelInputs, Recommender, seeded_generator
from jifr.models.frames import FrameStore


@dataclass(frozen=True)
class NoConfig:
    """These models have no hyperparameters."""


class Popularity(Recommender):
    """Ranks items by their number of training interactions, the same for every user."""

    name = "pop"
    writes_scores_into = True
    trainable = False
    item_counts: Tensor  # (n_items,) training interactions per item

    def __init__(self, config: NoConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        counts = np.bincount(inputs.train.items, minlength=inputs.n_items).astype(np.float32)
        self.register_buffer("item_counts", torch.from_numpy(counts))

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.item_counts[items]

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        every = self.item_counts[None, :].expand(len(users), -1)
        return every if out is None else out.copy_(every)


class RandomFrames(Recommender):
    """RND: each frame score is an independent uniform draw; a fixed seed makes runs repeatable."""

    name = "rnd"
    ranks_items = False
    ranks_frames = True
    trainable = False

    def __init__(self, config: NoConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.store = FrameStore(inputs.frames)
        self.generator = seeded_generator(seed)

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        _, mask = self.store.padded_frames(items)
        scores = torch.rand(mask.shape, generator=self.generator).to(mask.device)  # the same draws anywhere
        return scores.masked_fill(~mask, float("-inf"))
