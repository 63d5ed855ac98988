"""A diagnostic for personalised key frames: the same model with the user taken out.

``MeanUserFrames`` scores each frame by the average of a model's frame scores over a fixed
sample of users, so every user gets the same frame order. If a model's key frames are truly
personal, it beats its own mean-user version; if not, its gain over RND is a global (often
popularity-like) preference that needs no personalisation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepared import PreparedData
from jifr.models.base import Recommender
from jifr.models.frames import FrameStore

PAIR_BUDGET = 2**16  # (user, item) pairs scored per call of the wrapped model


class MeanUserFrames(Recommender):
    name = "mean_user"
    ranks_items = False
    ranks_frames = True
    trainable = False

    def __init__(self, model: Recommender, data: PreparedData, max_users: int = 1024, seed: int = 0) -> None:
        super().__init__()
        if not model.ranks_frames:
            raise ValueError(f"{model.model_name} does not rank key frames")
        self.model = model.eval()
        self.model_name = f"{model.model_name}@mean_user"
        self.config = {"model": model.model_name, "max_users": max_users, "seed": seed}
        device = model.device
        self.store = FrameStore(data.frames, device)
        rng = np.random.default_rng(seed)
        sample = rng.choice(data.n_users, size=min(max_users, data.n_users), replace=False)
        self.users = torch.as_tensor(np.sort(sample), device=device)
        width = int(self.store.counts.max()) if len(self.store.counts) else 0
        n_items = len(self.store.counts)
        self.table = torch.full((n_items, width), float("-inf"), device=device)  # mean frame scores, -inf pads
        self.filled = torch.zeros(n_items, dtype=torch.bool, device=device)

    @torch.no_grad()
    def _fill(self, items: Tensor) -> None:
        """Mean frame scores of ``items`` over the user sample, a block of items at a time."""
        n_users = len(self.users)
        step = max(1, PAIR_BUDGET // n_users)
        visual = self.model.frame_scores_are_visual
        for start in range(0, len(items), step):
            block = items[start : start + step]
            if visual:  # each frame projected once for all users
                scores = self.model.mean_visual_frame_scores(self.users, block)
            else:
                scores = self.model.score_frames(self.users.repeat(len(block)), block.repeat_interleave(n_users))
                scores = scores.view(len(block), n_users, -1).mean(1)
            self.table[block, : scores.shape[1]] = scores
            self.filled[block] = True

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        missing = torch.unique(items[~self.filled[items]])
        if len(missing):
            self._fill(missing)
        width = int(self.store.counts[items].max()) if len(items) else 0
        return self.table[items, :width]
