"""Learning key frames from logged frame feedback (``frame_feedback`` in docs/format.md).

Eq. (4) scores a frame by the user's visual taste alone, w_a . (P c_k), and nothing in
item-level feedback can teach a model that some frames appeal to almost everyone. Where a
platform logs which frame it showed and whether it was clicked, a model with a
``FrameFeedbackHead`` adds a frame bias to its key-frame score,

    l_ak = personal_ak + b_k + q . c_k

(a free per-frame term b_k and a visual term q . c_k), and trains it, together with the shared
user and projection weights, on the log: a logistic loss on ``l_ak + b_0`` (an intercept that
cancels in every ranking) for each logged (user, frame, label), weighted by 1 / propensity when
the log has propensities and normalised by the sum of the weights (self-normalised inverse
propensity weighting). The loss joins the BPR loss of each training step, times
``frame_feedback_weight``. Without frame feedback a model has no head and is exactly the model
of the paper.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jifr.models.base import ModelInputs, squared_norm

DEFAULT_FEEDBACK_WEIGHT = 1.0
DEFAULT_L2_FRAME_BIAS = 1e-3


class FrameFeedbackHead(nn.Module):
    """The frame bias b_k + q . c_k, its intercept and the frame-feedback loss."""

    def __init__(self, n_frames: int, feature_dim: int, weight: float, l2: float) -> None:
        super().__init__()
        self.weight, self.l2 = weight, l2
        self.free = nn.Embedding(n_frames, 1)  # b_k
        self.visual = nn.Linear(feature_dim, 1, bias=False)  # q
        self.intercept = nn.Parameter(torch.zeros(()))  # b_0: calibrates the click logit, ranks nothing
        nn.init.zeros_(self.free.weight)
        nn.init.zeros_(self.visual.weight)

    def bias(self, frames: Tensor, features: Tensor) -> Tensor:
        """(n,) b_k + q . c_k of frames ``frames`` (n,) with features (n, D)."""
        return self.free(frames).squeeze(-1) + self.visual(features).squeeze(-1)

    def loss(
        self, personal: Tensor, frames: Tensor, features: Tensor, slot: Tensor, labels: Tensor, weights: Tensor
    ) -> Tensor:
        """Weighted logistic loss of the logged labels plus the L2 on the bias terms, times the
        head's weight. ``personal`` (n,) is the model's own score of each logged row; the rows
        show the distinct ``frames`` (m,) with ``features`` (m, D), row r showing ``frames[slot[r]]``."""
        bias = F.embedding(slot, self.bias(frames, features)[:, None]).squeeze(-1)
        logits = personal + bias + self.intercept
        per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        fit = (weights * per_row).sum() / weights.sum()
        penalty = self.l2 * (
            squared_norm(F.embedding(slot, self.free.weight)) / len(slot) + squared_norm(self.visual.weight)
        )
        return self.weight * fit + penalty


def feedback_head(config: Any, inputs: ModelInputs, feature_dim: int, model: str) -> FrameFeedbackHead | None:
    """The head a model needs for ``inputs``: one when the data has frame feedback, else None.

    ``config`` carries ``frame_feedback_weight`` and ``l2_frame_bias``; changing them for data
    without frame feedback is an error rather than a setting that silently does nothing.
    """
    if inputs.feedback is None or not len(inputs.feedback):
        changed = [
            name
            for name, default in (
                ("frame_feedback_weight", DEFAULT_FEEDBACK_WEIGHT),
                ("l2_frame_bias", DEFAULT_L2_FRAME_BIAS),
            )
            if getattr(config, name) != default
        ]
        if changed:
            raise ValueError(f"{model}: {', '.join(changed)} need frame feedback (a frame_feedback table) in the data")
        return None
    return FrameFeedbackHead(inputs.frames.n_frames, feature_dim, config.frame_feedback_weight, config.l2_frame_bias)


def check_feedback_settings(weight: float, l2: float) -> None:
    if weight < 0 or l2 < 0:
        raise ValueError("frame_feedback_weight and l2_frame_bias must be >= 0")
