"""VBPR (He & McAuley, AAAI 2016): r_ai = beta_i + u_a.v_i + w_a.(E f_i) + beta'.f_i.

The item's visual feature f_i is the mean of its frames' features. Because the visual terms are
linear in f_i, the item's visual score is the mean of its frames' scores w_a.(E c_k) + beta'.c_k,
which is what ``score_frames`` returns. With frame feedback in the data it adds a frame bias
learned from the log (jifr.models.feedback).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jifr.models.base import (
    ModelInputs,
    Recommender,
    broadcast_dot,
    linear,
    normal_embedding,
    product_into,
    seeded_generator,
    squared_norm,
)
from jifr.models.feedback import (
    DEFAULT_FEEDBACK_WEIGHT,
    DEFAULT_L2_FRAME_BIAS,
    check_feedback_settings,
    feedback_head,
)
from jifr.models.frames import FrameStore, frame_means


@dataclass(frozen=True)
class VBPRConfig:
    collab_dim: int = 32
    visual_dim: int = 32
    l2: float = 1e-3  # on u, v, w and the item biases of each batch
    l2_projection: float = 1e-2  # on E and beta' (global)
    frame_feedback_weight: float = DEFAULT_FEEDBACK_WEIGHT  # of the frame-feedback loss (with frame feedback)
    l2_frame_bias: float = DEFAULT_L2_FRAME_BIAS  # on the frame bias b_k, q (with frame feedback)

    def __post_init__(self) -> None:
        check_feedback_settings(self.frame_feedback_weight, self.l2_frame_bias)
        if min(self.collab_dim, self.visual_dim) < 1 or min(self.l2, self.l2_projection) < 0:
            raise ValueError("dimensions must be >= 1 and L2 weights >= 0")


class VBPR(Recommender):
    name = "vbpr"
    writes_scores_into = True
    ranks_frames = True
    frame_scores_are_visual = True
    item_features: Tensor  # (n_items, D) buffer: mean frame feature f_i

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
        head = feedback_head(config, inputs, self.store.dim, self.name)
        if head is not None:  # created last: the weights above are the same with or without it
            self.frame_feedback = head

    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Collaborative vector, projected visual vector and total bias of ``items``."""
        features = self.item_features[items]
        bias = self.item_bias(items).squeeze(-1) + self.visual_bias(features).squeeze(-1)
        return self.item_collab(items), self.projection(features), bias

    def _pair_scores(self, users: Tensor, v: Tensor, x: Tensor, bias: Tensor) -> Tensor:
        """Scores of users (B,) with item terms of shape (B, d) / (B,) or (B, n, d) / (B, n)."""
        u, w = self.user_collab(users), self.user_visual(users)
        if v.dim() == 3:
            u, w = u[:, None, :], w[:, None, :]
        return bias + (u * v).sum(-1) + (w * x).sum(-1)

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Item terms once per unique item of the batch; F.embedding gathers (deterministic backward).
        items, inverse = torch.unique(torch.cat([positives, negatives.flatten()]), return_inverse=True)
        v_all, x_all, b_all = self._item_terms(items)
        n = len(users)
        slots = {"pos": inverse[:n], "neg": inverse[n:].view_as(negatives)}
        terms = {
            k: (F.embedding(s, v_all), F.embedding(s, x_all), F.embedding(s, b_all[:, None]).squeeze(-1))
            for k, s in slots.items()
        }
        pos, neg = self._pair_scores(users, *terms["pos"]), self._pair_scores(users, *terms["neg"])
        item_bias = self.item_bias(items).squeeze(-1)
        norms = squared_norm(self.user_collab(users), self.user_visual(users), terms["pos"][0], terms["neg"][0])
        norms = norms + squared_norm(
            F.embedding(slots["pos"], item_bias[:, None]), F.embedding(slots["neg"], item_bias[:, None])
        )
        penalty = self.config.l2 * norms / n
        penalty = penalty + self.config.l2_projection * squared_norm(self.projection.weight, self.visual_bias.weight)
        return pos, neg, penalty

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self._pair_scores(users, *self._item_terms(items))

    def compute_item_cache(self) -> dict[str, Tensor]:
        v, x, b = self._item_terms(torch.arange(self.item_features.shape[0], device=self.device))
        return {"collab": v, "visual": x, "bias": b}

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        """beta_i + gamma_u.gamma_i + theta_u.(E f_i), summed in that order, in place (the same
        bits as three tensors added, without two (B, n_items) temporaries; with ``out``, the
        visual product goes into reused memory, ``scratch``)."""
        cache = self.item_cache()
        scores = product_into(self.user_collab(users), cache["collab"], out)
        scores.add_(cache["bias"][None, :])  # bias + gamma_u.gamma_i: float addition commutes
        if out is None:
            return scores.add_(self.user_visual(users) @ cache["visual"].T)
        with self.scratch("visual", len(users), len(cache["visual"])) as visual:
            return scores.add_(product_into(self.user_visual(users), cache["visual"], visual))

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        return self.visual_frame_scores(users, items)

    def frame_terms(self, features: Tensor) -> Tensor:
        """[E c_k, beta' . c_k] of each frame, (m, d + 1)."""
        return torch.cat([self.projection(features), self.visual_bias(features)], dim=1)

    def frame_scores_of_terms(self, users: Tensor, terms: Tensor, slot: Tensor) -> Tensor:
        """theta_u . (E c_k) + beta' . c_k."""
        gathered = F.embedding(slot, terms)
        return (self.user_visual(users) * gathered[:, :-1]).sum(-1) + gathered[:, -1]

    def frame_score_grid(self, users: Tensor, terms: Tensor) -> Tensor:
        return broadcast_dot(self.user_visual(users), terms[:, :-1]) + terms[:, -1:]

    new_item_score = (
        "gamma_i = 0 and beta_i = 0, the prior means of the item's free embedding and bias: "
        "r_ai = theta_a.(E f_i) + beta'.f_i, the visual terms alone"
    )

    def new_item_scores(self, users: Tensor, features: Tensor, counts: Tensor) -> Tensor:
        """(B, n_new) theta_a . (E f_i) + beta' . f_i, f_i the mean of the item's frame features."""
        means = frame_means(features, counts)  # f_i
        return self.visual_bias(means).squeeze(-1)[None, :] + self.user_visual(users) @ self.projection(means).T
