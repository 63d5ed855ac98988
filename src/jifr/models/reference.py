"""Reference rows for the key-frame table that use data no model may see.

``FrameLikePopularity`` ranks each item's frames by how many training-split frame likes each
frame received (from any user), the same order for every user. Frame likes exist for evaluation
only; this row measures how much of the key-frame task plain frame popularity explains, so that
no popularity shortcut passes for a visual or personal gain. It is not in the model registry and
cannot be trained or served.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepared import PreparedData
from jifr.models.base import Recommender
from jifr.models.frames import FrameStore


class FrameLikePopularity(Recommender):
    name = "frame_pop"
    ranks_items = False
    ranks_frames = True
    trainable = False
    uses_held_out_signal = True  # built from frame likes, which models never see
    like_counts: Tensor  # (n_frames,) training-split likes of each frame

    def __init__(self, data: PreparedData, part: str = "train") -> None:
        super().__init__()
        self.config = {"source": f"frame likes of the {part} split"}
        self.store = FrameStore(data.frames)
        counts = np.bincount(data.likes_of(part).frames, minlength=data.frames.n_frames).astype(np.float32)
        self.register_buffer("like_counts", torch.from_numpy(counts), persistent=False)

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        rows, mask = self.store.padded_frames(items)
        return self.like_counts[rows].masked_fill(~mask, float("-inf"))
