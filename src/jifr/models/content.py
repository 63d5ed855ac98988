"""A no-learning content baseline for key frames: cosine between a user's visual profile (the
mean feature of the frames of the user's training items) and each candidate frame.

``center=True`` subtracts the mean feature of all frames first; pooled CNN features are
non-negative, so without it every cosine is dominated by their shared mean direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.models.base import ModelInputs, Recommender
from jifr.models.frames import FrameStore


@dataclass(frozen=True)
class ContentCosineConfig:
    center: bool = False  # subtract the mean feature of all frames from profiles and frames


class ContentCosine(Recommender):
    name = "content_cosine"
    ranks_items = False
    ranks_frames = True
    trainable = False
    profiles: Tensor  # (n_users, D) unit-length visual profile of each user
    frame_mean: Tensor  # (D,) subtracted before the cosine when center=True, else zeros

    def __init__(self, config: ContentCosineConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.store = FrameStore(inputs.frames)
        counts = self.store.counts.double()
        item_sums = self.store.item_means().double() * counts[:, None]  # (n_items, D)
        train = inputs.train.csr(inputs.n_users, inputs.n_items).astype(np.float64)  # binary
        frame_totals = torch.from_numpy(train @ counts.numpy())  # frames of each user's training items
        sums = torch.from_numpy(train @ item_sums.numpy())  # (n_users, D) sum of those frames' features
        profile = sums / frame_totals.clamp(min=1)[:, None]
        mean = item_sums.sum(0) / counts.sum().clamp(min=1)
        mean = mean if config.center else torch.zeros_like(mean)
        self.register_buffer("frame_mean", mean.float(), persistent=False)
        self.register_buffer("profiles", F.normalize(profile - mean, dim=1).float(), persistent=False)

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        rows, mask = self.store.padded_frames(items)
        frames = F.normalize(self.store.features(rows.flatten()) - self.frame_mean, dim=1).view(*rows.shape, -1)
        scores = (frames * self.profiles[users][:, None, :]).sum(-1)
        return scores.masked_fill(~mask, float("-inf"))
