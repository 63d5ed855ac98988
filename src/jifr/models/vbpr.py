"""VBPR (He & McAuley, AAAI 2016): r_ai = beta_i + u_a.v_i + w_a.(E f_i) + beta'.f_i.

The item's visual feature f_i is the mean of its frames' features. Because the visual terms are
linear in f_i, the item's visual score is the mean of its frames' scores w_a.(E c_k) + beta'.c_k,
which is what ``score_frames`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jifr.models.base import ModelInputs, Recommender, linear, normal_embedding, seeded_generator, squared_norm
from jifr.models.frames import FrameStore


@dataclass(frozen=True)
class VBPRConfig:
    collab_dim: int = 32
    visual_dim: int = 32
    l2: float = 1e-3  # on u, v, w and the item biases of each batch
    l2_projection: float = 1e-2  # on E and beta' (global)

    def __post_init__(self) -> None:
        if min(self.collab_dim, self.visual_dim) < 1 or min(self.l2, self.l2_projection) < 0:
            raise ValueError("dimensions must be >= 1 and L2 weights >= 0")


class VBPR(Recommender):
    name = "vbpr"
    ranks_frames = True

    def __init__(self, config: VBPRConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        generator = seeded_generator(seed)
        self.config = config
        self.store = FrameStore(inputs.frames)
        self.user_collab = normal_embedding(inputs.n_users, config.collab_dim, generator)  # gamma_u
        self.item_collab = normal_embedding(inputs.n_items, config.collab_dim, generator)  # gamma_i
        self.user_visual = normal_embedding(inputs.n_users, config.visual_dim, generator)  # theta_u
        self.item_bias = nn.Embedding(inputs.n_items, 1)  # beta_i
        nn.init.zeros_(self.item_bias.weight)
        self.projection = linear(self.store.dim, config.visual_dim, generator, bias=False)  # E
        self.visual_bias = linear(self.store.dim, 1, generator, bias=False)  # beta'
        nn.init.zeros_(self.visual_bias.weight)
        self.register_buffer("item_features", self.store.item_means(), persistent=False)  # f_i

    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Collaborative vector, projected visual vector and total bias of ``items``."""
        features = self.item_features[items]
        bias = self.item_bias(items).squeeze(-1) + self.visual_bias(features).squeeze(-1)
        return self.item_collab(items), self.projection(features), bias

    def _pair_scores(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of ``users`` (B,) with ``items`` (B,) or (B, n), and their embedding norm."""
        v, x, b = self._item_terms(items)
        u, w = self.user_collab(users), self.user_visual(users)
        if items.dim() == 2:
            u, w = u[:, None, :], w[:, None, :]
        norm = squared_norm(v, self.item_bias(items))
        return b + (u * v).sum(-1) + (w * x).sum(-1), norm

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pos, pos_norm = self._pair_scores(users, positives)
        neg, neg_norm = self._pair_scores(users, negatives)
        user_norm = squared_norm(self.user_collab(users), self.user_visual(users))
        penalty = self.config.l2 * (user_norm + pos_norm + neg_norm) / len(users)
        penalty = penalty + self.config.l2_projection * squared_norm(self.projection.weight, self.visual_bias.weight)
        return pos, neg, penalty

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self._pair_scores(users, items)[0]

    def compute_item_cache(self) -> dict[str, Tensor]:
        v, x, b = self._item_terms(torch.arange(self.item_features.shape[0]))
        return {"collab": v, "visual": x, "bias": b}

    def score_all(self, users: Tensor) -> Tensor:
        cache = self.item_cache()
        return (
            cache["bias"][None, :]
            + self.user_collab(users) @ cache["collab"].T
            + self.user_visual(users) @ cache["visual"].T
        )

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        rows, mask = self.store.padded_frames(items)
        features = self.store.features(rows[mask])
        frame_scores = (self.user_visual(users)[mask.nonzero()[:, 0]] * self.projection(features)).sum(-1)
        frame_scores = frame_scores + self.visual_bias(features).squeeze(-1)
        out = torch.full(mask.shape, float("-inf"))
        out[mask] = frame_scores
        return out
