"""JIFR (Wu et al., IJCAI 2019): joint item and key-frame recommendation, eqs. (4)-(10).

    x_i    = sum_j alpha_ij P c_j                                  eq. (5)
    alpha  = softmax_j( w1 . f(W1 [v_i, W0 c_j]) )  over i's frames  eqs. (6)-(7)
    r_ai   = beta_1 u_a.v_i + beta_2 w_a.x_i                       eq. (8)
    beta   = softmax( w2 . f(W2 [u_a, v_i]), w2 . f(W2 [w_a, x_i]) ) eqs. (9)-(10)
    l_ak   = w_a . (P c_k)                                         eq. (4), the key-frame score

With frame feedback in the data (``frame_feedback``), the key-frame score gains a frame bias
learned from the log, l_ak = w_a . (P c_k) + b_k + q . c_k (jifr.models.feedback).

f is ReLU. ``content_attention="avg"`` replaces alpha by 1/|S_i| (eq. 1) and
``rating_attention="avg"`` sets beta_1 = beta_2 = 1/2; avg/avg is JIFR_NA (Table 2).
The attention layers W1 and W2 carry a bias, which the paper's equations leave implicit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.models.base import ModelInputs, Recommender, linear, normal_embedding, seeded_generator, squared_norm
from jifr.models.feedback import (
    DEFAULT_FEEDBACK_WEIGHT,
    DEFAULT_L2_FRAME_BIAS,
    check_feedback_settings,
    feedback_head,
)
from jifr.models.frames import FrameStore, masked_softmax, scatter_rows

Attention = Literal["avg", "att"]
PAIR_BUDGET = 2**24  # (users x items x hidden) cells per score_all block of the rating attention


@dataclass(frozen=True)
class JIFRConfig:
    collab_dim: int = 32  # d1
    visual_dim: int = 32  # d2
    attention_dim: int = 32  # output size of W0
    hidden_dim: int = 32  # rows of W1 and W2
    content_attention: Attention = "att"
    rating_attention: Attention = "att"
    l2: float = 1e-3  # lambda_1 on u, v, w of each batch (Theta_1 in eq. 3)
    l2_projection: float = 1e-2  # on P (global); unregularised, P can memorise items
    # Chosen on the validation split of MovieLens-Bundles (README, "Choosing JIFR's attention
    # L2"): any L2 on W0 (0.001 included) drives the content attention to exactly uniform.
    l2_attention_input: float = 0.0  # on W0
    l2_attention: float = 0.3  # on W1, w1, W2, w2
    frame_feedback_weight: float = DEFAULT_FEEDBACK_WEIGHT  # of the frame-feedback loss (with frame feedback)
    l2_frame_bias: float = DEFAULT_L2_FRAME_BIAS  # on the frame bias b_k, q (with frame feedback)

    def __post_init__(self) -> None:
        check_feedback_settings(self.frame_feedback_weight, self.l2_frame_bias)
        for name in ("content_attention", "rating_attention"):
            if getattr(self, name) not in ("avg", "att"):
                raise ValueError(f"{name} must be 'avg' or 'att', got {getattr(self, name)!r}")
        if min(self.collab_dim, self.visual_dim, self.attention_dim, self.hidden_dim) < 1:
            raise ValueError("all dimensions must be >= 1")
        if min(self.l2, self.l2_projection, self.l2_attention_input, self.l2_attention) < 0:
            raise ValueError("L2 weights must be >= 0")
        if self.rating_attention == "att" and self.collab_dim != self.visual_dim:
            raise ValueError("rating attention shares W2 between [u,v] and [w,x]: collab_dim must equal visual_dim")

    def unused_settings(self) -> dict[str, str]:
        """The settings this configuration ignores, each with the reason.

        W0 (``attention_dim``, ``l2_attention_input``) exists only with content attention; the
        hidden layers W1 and W2 (``hidden_dim``, ``l2_attention``) only with either attention.
        """
        content, rating = self.content_attention == "att", self.rating_attention == "att"
        if not content and not rating:
            reason = "its attention is switched off (content_attention=avg, rating_attention=avg)"
            return dict.fromkeys(("attention_dim", "hidden_dim", "l2_attention_input", "l2_attention"), reason)
        if not content:
            reason = "its content attention is switched off (content_attention=avg)"
            return dict.fromkeys(("attention_dim", "l2_attention_input"), reason)
        return {}


class JIFR(Recommender):
    name = "jifr"
    ranks_frames = True
    item_features: Tensor  # (n_items, D) buffer, content_attention="avg" only

    def __init__(self, config: JIFRConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        g = seeded_generator(seed)
        self.config = config
        self.store = FrameStore(inputs.frames)
        d1, d2, h = config.collab_dim, config.visual_dim, config.hidden_dim
        self.user_collab = normal_embedding(inputs.n_users, d1, g)  # u_a
        self.item_collab = normal_embedding(inputs.n_items, d1, g)  # v_i
        self.user_visual = normal_embedding(inputs.n_users, d2, g)  # w_a
        self.projection = linear(self.store.dim, d2, g, bias=False)  # P
        if config.content_attention == "att":
            self.attention_input = linear(self.store.dim, config.attention_dim, g, bias=False)  # W0
            self.content_hidden = linear(d1 + config.attention_dim, h, g)  # W1
            self.content_out = linear(h, 1, g, bias=False)  # w1
        else:
            # With uniform weights x_i = P (mean_k c_k): the item means are all it needs.
            self.register_buffer("item_features", self.store.item_means(), persistent=False)
        if config.rating_attention == "att":
            self.rating_hidden = linear(2 * d1, h, g)  # W2
            self.rating_out = linear(h, 1, g, bias=False)  # w2
        head = feedback_head(config, inputs, self.store.dim, self.name)
        if head is not None:  # created last: the weights above are the same with or without it
            self.frame_feedback = head

    # ---- item side -------------------------------------------------------------------------
    def item_visual(self, items: Tensor) -> Tensor:
        """(n, d2) visual item vectors x_i of ``items`` (n,), eq. (1) or eq. (5)."""
        if self.config.content_attention == "avg":
            return self.projection(self.item_features[items])
        rows, mask = self.store.padded_frames(items)  # each frame the batch needs, once
        features = self.store.features(rows[mask])  # (F, D)
        projected = scatter_rows(self.projection(features), mask)  # P c_j, (n, F_max, d2)
        alpha = self.content_weights(self.item_collab(items), scatter_rows(self.attention_input(features), mask), mask)
        return (alpha[..., None] * projected).sum(1)

    def content_weights(self, item_collab: Tensor, frame_inputs: Tensor, mask: Tensor) -> Tensor:
        """alpha_ij (n, F_max) of eqs. (6)-(7) from v_i (n, d1) and W0 c_j (n, F_max, d0)."""
        return masked_softmax(self._content_logits(item_collab, frame_inputs), mask)

    def _content_logits(self, item_collab: Tensor, frame_inputs: Tensor) -> Tensor:
        """(n, F_max) w1 . f(W1 [v_i, W0 c_j]), eq. (6), before the softmax."""
        v = item_collab[:, None, :].expand(-1, frame_inputs.shape[1], -1)
        hidden = F.relu(self.content_hidden(torch.cat([v, frame_inputs], dim=-1)))
        return self.content_out(hidden).squeeze(-1)

    def content_logits(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(n, F_max) attention logits of eq. (6) for the frames of ``items`` (n,), and the mask
        of real frames. With content_attention="avg" every logit is 0 (alpha is uniform)."""
        rows, mask = self.store.padded_frames(items)
        if self.config.content_attention == "avg":
            return torch.zeros(mask.shape), mask
        frame_inputs = scatter_rows(self.attention_input(self.store.features(rows[mask])), mask)
        return self._content_logits(self.item_collab(items), frame_inputs), mask

    def visual_weight(self, users: Tensor, items: Tensor) -> Tensor:
        """(B,) beta_ai2 of eq. (10), the weight of the visual score w_a.x_i in r_ai (1/2 with
        rating_attention="avg")."""
        if self.config.rating_attention == "avg":
            return torch.full((len(users),), 0.5)
        u, w, v, x = self.user_collab(users), self.user_visual(users), self.item_collab(items), self.item_visual(items)
        collab_logit, visual_logit = self._rating_logits(u, w, v, x)
        return torch.sigmoid(visual_logit - collab_logit)

    def _rating_logits(self, u: Tensor, w: Tensor, v: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """The two logits of eq. (9), for [u_a, v_i] and [w_a, x_i]."""
        w2_user, w2_item = self._split_w2()
        bias = self.rating_hidden.bias
        collab_logit = self.rating_logit(u @ w2_user.T + bias, v @ w2_item.T)
        return collab_logit, self.rating_logit(w @ w2_user.T + bias, x @ w2_item.T)

    # ---- pair scores -----------------------------------------------------------------------
    def fuse(self, collab: Tensor, visual: Tensor, collab_logit: Tensor, visual_logit: Tensor) -> Tensor:
        """Eq. (8) with beta from the two attention logits (eq. 10), or beta = 1/2 each."""
        if self.config.rating_attention == "avg":
            return 0.5 * (collab + visual)
        beta_visual = torch.sigmoid(visual_logit - collab_logit)  # = exp(b2) / (exp(b1) + exp(b2))
        return collab + beta_visual * (visual - collab)

    def rating_logit(self, user_part: Tensor, item_part: Tensor) -> Tensor:
        """w2 . f(W2 [a, b]) given W2's two halves already applied to a and b, eq. (9)."""
        return self.rating_out(F.relu(user_part + item_part)).squeeze(-1)

    def _split_w2(self) -> tuple[Tensor, Tensor]:
        d1 = self.config.collab_dim
        return self.rating_hidden.weight[:, :d1], self.rating_hidden.weight[:, d1:]

    def _pair_scores(self, users: Tensor, v: Tensor, x: Tensor) -> Tensor:
        """Scores of users (B,) with item vectors v, x of shape (B, d) or (B, n, d)."""
        u, w = self.user_collab(users), self.user_visual(users)
        if v.dim() == 3:
            u, w = u[:, None, :], w[:, None, :]
        collab, visual = (u * v).sum(-1), (w * x).sum(-1)
        if self.config.rating_attention == "avg":
            return self.fuse(collab, visual, collab, visual)
        return self.fuse(collab, visual, *self._rating_logits(u, w, v, x))

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        items, inverse = torch.unique(torch.cat([positives, negatives.flatten()]), return_inverse=True)
        v_all, x_all = self.item_collab(items), self.item_visual(items)
        n = len(users)
        pos_slot, neg_slot = inverse[:n], inverse[n:].view_as(negatives)
        # F.embedding as the gather: its CPU backward is deterministic, unlike tensor[index]'s.
        v_pos, x_pos = F.embedding(pos_slot, v_all), F.embedding(pos_slot, x_all)
        v_neg, x_neg = F.embedding(neg_slot, v_all), F.embedding(neg_slot, x_all)
        pos, neg = self._pair_scores(users, v_pos, x_pos), self._pair_scores(users, v_neg, x_neg)
        embeddings = squared_norm(self.user_collab(users), self.user_visual(users), v_pos, v_neg)
        return pos, neg, self.config.l2 * embeddings / n + self.weight_penalty()

    def weight_penalty(self) -> Tensor:
        """Separate L2 on P, on W0 and on the attention networks (global, once per batch)."""
        c = self.config
        penalty = c.l2_projection * squared_norm(self.projection.weight)
        if c.content_attention == "att":
            penalty = penalty + c.l2_attention_input * squared_norm(self.attention_input.weight)
            penalty = penalty + c.l2_attention * squared_norm(self.content_hidden.weight, self.content_out.weight)
        if c.rating_attention == "att":
            penalty = penalty + c.l2_attention * squared_norm(self.rating_hidden.weight, self.rating_out.weight)
        return penalty

    # ---- ranking -----------------------------------------------------------------------------
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self._pair_scores(users, self.item_collab(items), self.item_visual(items))

    def compute_item_cache(self) -> dict[str, Tensor]:
        """x_i for every item, and the item half of W2 applied to v_i and x_i."""
        visual = torch.cat([self.item_visual(chunk) for chunk in self.store.item_chunks()])
        cache = {"collab": self.item_collab.weight.detach(), "visual": visual}
        if self.config.rating_attention == "att":
            _, w2_item = self._split_w2()
            cache |= {"collab_w2": cache["collab"] @ w2_item.T, "visual_w2": visual @ w2_item.T}
        return cache

    def score_all(self, users: Tensor) -> Tensor:
        cache = self.item_cache()
        u, w = self.user_collab(users), self.user_visual(users)
        collab, visual = u @ cache["collab"].T, w @ cache["visual"].T
        if self.config.rating_attention == "avg":
            return self.fuse(collab, visual, collab, visual)
        w2_user, _ = self._split_w2()
        bias = self.rating_hidden.bias
        collab_user, visual_user = u @ w2_user.T + bias, w @ w2_user.T + bias
        step = max(1, PAIR_BUDGET // (len(cache["collab"]) * self.config.hidden_dim))
        blocks = []
        for s in range(0, len(users), step):  # bounded memory: (step, n_items, hidden) at a time
            b = slice(s, s + step)
            collab_logit = self.rating_logit(collab_user[b, None, :], cache["collab_w2"][None])
            visual_logit = self.rating_logit(visual_user[b, None, :], cache["visual_w2"][None])
            blocks.append(self.fuse(collab[b], visual[b], collab_logit, visual_logit))
        return torch.cat(blocks)

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        """l_ak = w_a . (P c_k) for every frame k of each item, eq. (4), plus the frame bias with
        frame feedback; (B, F_max), -inf padded."""
        return self.visual_frame_scores(users, items)

    def personal_frame_scores(self, users: Tensor, features: Tensor, slot: Tensor) -> Tensor:
        """w_a . (P c_k), eq. (4)."""
        return (self.user_visual(users) * F.embedding(slot, self.projection(features))).sum(-1)
