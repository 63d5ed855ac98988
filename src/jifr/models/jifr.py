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

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.device import CPU
from jifr.models import rating_attention
from jifr.models.base import (
    FrameCache,
    ModelInputs,
    PrunedTopK,
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
from jifr.models.frames import FrameStore, frame_mask, frame_means, masked_softmax, project_frames, scatter_rows
from jifr.parallel import run_in_parts

Attention = Literal["avg", "att"]
FLOAT32_EPS = torch.finfo(torch.float32).eps
INF = float("inf")
# r_ai = c + beta (c' - c) and its bounds are each within three roundings of their exact values;
# this many float32 epsilons of a bound on |c| and |c'| cover them with room to spare.
ROUNDING_SLACK = 8 * FLOAT32_EPS
BLOCK_BUDGET = 2**26  # values of the (users x items x hidden) ReLU input at once, off the CPU
Arrays = tuple[np.ndarray, ...]  # a compiled loop's inputs of one kind (rating_attention)
PROBES = 32  # likely top items per user scored first, for pruned_top_k's threshold (at least k)
# Below this, sums and differences of a few float32 values stay finite (float32 overflows at 3.4e38).
SAFE_MAGNITUDE = 1e30


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
    writes_scores_into = True
    ranks_frames = True
    frame_scores_are_visual = True
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
        return self._item_visual_and_frames(items)[0]

    def _item_visual_and_frames(
        self, items: Tensor, into: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x_i of ``items`` (n,) and, with content attention, the features (F, D) of their frames
        (item after item; read into ``into`` where given, ``FrameStore.features``) and those
        frames' P c_k (F, d2), which eq. (5) computes on the way."""
        if self.config.content_attention == "avg":
            return self.projection(self.item_features[items]), None, None
        rows, mask = self.store.padded_frames(items)  # each frame the batch needs, once
        features = self.store.training_features(rows[mask]) if self.training else self.store.features(rows[mask], into)
        projected, frame_inputs = self._frame_projections(features)
        return self._attend(self.item_collab(items), projected, frame_inputs, mask), features, projected

    def attended_visual(self, item_collab: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        """(n, d2) x_i of eq. (5) from v_i (n, d1) and the features (F, D) of the items' frames,
        which fill the True cells of ``mask`` (n, F_max) row by row."""
        return self._attend(item_collab, *self._frame_projections(features), mask)

    def _frame_projections(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """P c_j (F, d2) and W0 c_j (F, d0) of frames with ``features`` (F, D), eqs. (5) and (6),
        in one product with [P; W0] (one pass over the features, and one for the weights'
        gradients: the same values as two products, faster), as float32."""
        projected, frame_inputs = project_frames(features, self.projection.weight, self.attention_input.weight)
        return projected.float(), frame_inputs.float()

    def _attend(self, item_collab: Tensor, projected: Tensor, frame_inputs: Tensor, mask: Tensor) -> Tensor:
        """x_i = sum_j alpha_ij P c_j, eq. (5), given the frames' P c_j and W0 c_j (F, d)."""
        alpha = self.content_weights(item_collab, scatter_rows(frame_inputs, mask), mask)
        return (alpha[..., None] * scatter_rows(projected, mask)).sum(1)

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
            return torch.zeros(mask.shape, device=mask.device), mask
        frame_inputs = scatter_rows(self.attention_input(self.store.features(rows[mask])), mask)
        return self._content_logits(self.item_collab(items), frame_inputs), mask

    def visual_weight(self, users: Tensor, items: Tensor) -> Tensor:
        """(B,) beta_ai2 of eq. (10), the weight of the visual score w_a.x_i in r_ai (1/2 with
        rating_attention="avg"). In eval mode x_i comes from the item cache, as ranking reads it,
        rather than from each item's frames again."""
        if self.config.rating_attention == "avg":
            return torch.full((len(users),), 0.5, device=users.device)
        x = self.item_visual(items) if self.training else self.item_cache()["visual"][items]
        u, w, v = self.user_collab(users), self.user_visual(users), self.item_collab(items)
        collab_logit, visual_logit = self._rating_logits(u, w, v, x)
        return torch.sigmoid(visual_logit - collab_logit)

    def _rating_logits(self, u: Tensor, w: Tensor, v: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """The two logits of eq. (9), for [u_a, v_i] and [w_a, x_i]."""
        # One slice of W2 for both logits: slicing it twice would sum its gradient in another order.
        w2_user, w2_item = self._split_w2()
        bias = self.rating_hidden.bias
        collab_logit = self.rating_logit(u @ w2_user.T + bias, v @ w2_item.T)
        return collab_logit, self.rating_logit(w @ w2_user.T + bias, x @ w2_item.T)

    # ---- pair scores -----------------------------------------------------------------------
    def fuse(self, collab: Tensor, visual: Tensor, collab_logit: Tensor, visual_logit: Tensor) -> Tensor:
        """Eq. (8) with beta from the two attention logits (eq. 10), or beta = 1/2 each."""
        if self.config.rating_attention == "avg":
            return 0.5 * (collab + visual)
        return mix(collab, visual, torch.sigmoid(visual_logit - collab_logit))  # = exp(b2) / (exp(b1) + exp(b2))

    def rating_logit(self, user_part: Tensor, item_part: Tensor) -> Tensor:
        """w2 . f(W2 [a, b]) given W2's two halves already applied to a and b, eq. (9)."""
        return self.rating_out(F.relu(user_part + item_part)).squeeze(-1)

    def _split_w2(self) -> tuple[Tensor, Tensor]:
        d1 = self.config.collab_dim
        return self.rating_hidden.weight[:, :d1], self.rating_hidden.weight[:, d1:]

    def _user_part(self, vectors: Tensor) -> Tensor:
        """W2's user half, plus its bias, applied to user vectors (u_a or w_a; ..., d1); for
        scoring (training's logits slice W2 once for both, ``_rating_logits``)."""
        w2_user, _ = self._split_w2()
        return vectors @ w2_user.T + self.rating_hidden.bias

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
        """x_i for every item and, with rating attention, the item half of W2 applied to v_i and
        to x_i (hidden_dim, n_items), its range over the items (hidden_dim, 2), and the largest
        norm of v_i and of x_i. In eval mode, with content attention, also every frame's P c_k
        (``FrameCache``), which eq. (5) computes on the way."""
        collects_frames = self.config.content_attention == "att" and not self.training and self._frame_cache is None
        frames = FrameCache(self) if collects_frames else None  # unless the frame cache came first
        visual, buffer = [], self.store.chunk_buffer()  # each chunk's features, in memory reused
        for chunk in self.store.item_chunks():
            x, features, projected = self._item_visual_and_frames(chunk, buffer)
            visual.append(x)
            if frames is not None and features is not None:
                first, end = int(self.store.indptr[chunk[0]]), int(self.store.indptr[chunk[-1] + 1])
                frames.add(torch.arange(first, end, device=self.device), features, projected)
        cache = {"collab": self.item_collab.weight.detach()}
        cache["visual"] = torch.cat(visual) if visual else torch.zeros(0, self.config.visual_dim, device=self.device)
        cache |= frames.entries() if frames is not None else {}
        if self.config.rating_attention == "att":
            _, w2_item = self._split_w2()
            for name, vectors in (("collab", cache["collab"]), ("visual", cache["visual"])):
                parts = (w2_item @ vectors.T).contiguous()  # (hidden_dim, n_items), hidden-major
                ends = torch.aminmax(parts, dim=1) if parts.shape[1] else (parts.new_zeros(parts.shape[0]),) * 2
                cache |= {f"{name}_w2": parts, f"{name}_w2_range": torch.stack(ends, dim=1)}
                cache[f"{name}_norm"] = vectors.norm(dim=1).max() if len(vectors) else vectors.new_zeros(())
            w2 = self.rating_out.weight[0]
            terms = [_pair_terms(w2, cache["collab_w2"]), _pair_terms(w2, cache["visual_w2"])]
            cache["pair_terms"] = torch.cat(terms, 1)  # (n_items, 6), collab then visual
            cache["guess"] = self._mean_user_visual_weight(cache["collab_w2"], cache["visual_w2"])
        return cache

    def _mean_user_visual_weight(self, collab_item: Tensor, visual_item: Tensor) -> Tensor:
        """(n_items,) beta_ai2 of each item for the mean user (u_a and w_a averaged over the
        users), given W2's item parts (hidden_dim, n_items): ``pruned_top_k``'s guess of which
        items score best."""
        collab_user = self._user_part(self.user_collab.weight.mean(0))
        visual_user = self._user_part(self.user_visual.weight.mean(0))
        visual_logit = self.rating_logit(visual_user[None], visual_item.T)
        return torch.sigmoid(visual_logit - self.rating_logit(collab_user[None], collab_item.T))

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        if out is None:
            return self._scores_of_dot_products(users, *self._dot_products(users))
        with self._dot_product_scratch(len(users)) as into:
            return self._scores_of_dot_products(users, *self._dot_products(users, into), out=out)

    def _scores_of_dot_products(
        self, users: Tensor, collab: Tensor, visual: Tensor, out: Tensor | None = None
    ) -> Tensor:
        """Eq. (8) of ``users`` (B,) and every item given their dot products (B, n_items), in
        place in ``collab`` without rating attention, or into ``out`` where given."""
        if self.config.rating_attention == "avg":  # fuse's 0.5 * (collab + visual), in place
            return collab.add_(visual).mul_(0.5) if out is None else torch.add(collab, visual, out=out).mul_(0.5)
        cache = self.item_cache()
        inputs = (collab, visual, *self._user_parts(users), cache["collab_w2"], cache["visual_w2"])
        return self._attended_grid(*inputs, out=out)

    @contextlib.contextmanager
    def _dot_product_scratch(self, n_users: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Reused memory (``Recommender.scratch``) for the two (B, n_items) dot-product blocks."""
        n_items = self.item_collab.num_embeddings
        with self.scratch("collab", n_users, n_items) as collab, self.scratch("visual", n_users, n_items) as visual:
            yield collab, visual

    def pruned_top_k(
        self,
        users: Tensor,
        k: int,
        excluded: tuple[Tensor, Tensor] | None,
        asked: tuple[Tensor, Tensor] | None = None,
    ) -> PrunedTopK | None:
        """With rating attention, on the CPU: the compiled ``rating_attention.top_k``, which runs
        the attention only on the items whose upper bound reaches the k-th best exact score of
        a few likely top items. r_ai = u_a.v_i + beta_ai2 (w_a.x_i - u_a.v_i) (eq. 8) moves
        monotonically with beta_ai2, which lies within the user's range over all items
        (``_visual_weight_range``) and within a range of the pair's own (``_pair_terms``).
        Without rating attention the score is a sum of two dot products: nothing to prune; nor
        where a weight is not finite or so large that a score could overflow (ranking then sorts
        ``score_all``, whose NaN it knows how to treat)."""
        if self.config.rating_attention == "avg" or self.device.type != "cpu":
            return None  # off the CPU, score_all's attention runs in torch on the device
        with self._dot_product_scratch(len(users)) as into:  # the dot products, read by the loop
            pruning = self._pruning_inputs(users, into)
            if pruning is None:
                return None
            inputs, guess, bounds = pruning
            asked_scores = torch.empty(0 if asked is None else len(asked[0]), device=CPU)  # written in place
            if asked is not None:  # before the excluded pairs are marked: they may be asked for
                rows, columns = _arrays(*asked)
                rating_attention.pair_scores(rows, columns, inputs, asked_scores.numpy())
            if excluded is not None:
                inputs[0][excluded[0].numpy(), excluded[1].numpy()] = np.nan  # u.v: never kept
            values = torch.full((len(users), k), -INF, device=CPU)  # the outputs, written in place
            items = torch.full((len(users), k), -1, dtype=torch.long, device=CPU)
            scored = torch.zeros(len(users), dtype=torch.long, device=CPU)
            outputs = (values.numpy(), items.numpy(), scored.numpy())
            arrays = [inputs, guess, bounds, min(max(PROBES, k), inputs[0].shape[1]), outputs]
            run_in_parts(rating_attention.top_k, rating_attention.top_k_parallel, arrays, len(users))
            return PrunedTopK(values, items, scored, asked_scores)

    def pruning_upper_bounds(self, users: Tensor) -> Tensor:
        """(B, n_items) the upper bound on each score that ``pruned_top_k`` prunes with (it never
        fills such a matrix: this is for checking it), for a model whose weights allow pruning."""
        pruning = self._pruning_inputs(users)
        if pruning is None:
            raise ValueError("this model's weights are not finite (or too large) for pruned ranking")
        inputs, _, bounds = pruning
        out = torch.empty(inputs[0].shape, device=CPU)  # written in place
        rating_attention.upper_bounds(inputs[0], inputs[1], bounds, out.numpy())
        return out

    def _pruning_inputs(
        self, users: Tensor, into: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Arrays, np.ndarray, Arrays] | None:
        """``rating_attention.top_k``'s inputs: the attention's (the dot products, W2's parts and
        w2, as ``rating_attention.grid`` takes them), the guessed beta of each item, and what
        bounds a pair (the pair terms of items and users, each user's beta range and rounding
        slacks). None unless every dot product and every logit sum is below ``SAFE_MAGNITUDE``:
        then no score is NaN or infinite."""
        cache = self.item_cache()
        collab_user, visual_user = self._user_parts(users)
        largest, gap_magnitude = self._largest_dot_product(users), self._gap_magnitude(collab_user, visual_user)
        if not bool((largest < SAFE_MAGNITUDE).all() and (gap_magnitude < SAFE_MAGNITUDE).all()):  # NaN: False
            return None
        collab, visual = self._dot_products(users, into)
        w2 = self.rating_out.weight[0]
        inputs = _arrays(collab, visual, collab_user, visual_user, cache["collab_w2"], cache["visual_w2"], w2)
        margin = _gap_error(gap_magnitude, len(w2))
        beta_range = self._visual_weight_range(collab_user, visual_user, margin)
        user_terms = torch.cat([_pair_terms(w2, collab_user.T), _pair_terms(w2, visual_user.T)], 1)
        bounds = _arrays(cache["pair_terms"], user_terms, beta_range, ROUNDING_SLACK * largest, margin)
        return tuple(inputs), _arrays(cache["guess"])[0], tuple(bounds)

    def _largest_dot_product(self, users: Tensor) -> Tensor:
        """(B,) a bound on |u_a.v_i| and |w_a.x_i| over all items (Cauchy-Schwarz), for the
        rounding slack of ``pruned_top_k`` without a pass over the items."""
        cache = self.item_cache()
        collab = self.user_collab(users).norm(dim=1) * cache["collab_norm"]
        return torch.maximum(collab, self.user_visual(users).norm(dim=1) * cache["visual_norm"])

    def _visual_weight_range(self, collab_user: Tensor, visual_user: Tensor, error: Tensor) -> Tensor:
        """(B, 2) the smallest and the largest beta_ai2 (eq. 10) of each user over all items, by
        interval arithmetic over the range of W2's item half across the items (float64), the gap
        widened by ``error`` (``_gap_error``, (B,)) and the sigmoid by a float32 epsilon."""
        cache = self.item_cache()
        w2 = self.rating_out.weight[0].double()[:, None]  # (hidden_dim, 1)
        visual_user, collab_user = visual_user.T.double(), collab_user.T.double()  # (hidden_dim, B)
        visual_range, collab_range = cache["visual_w2_range"].double(), cache["collab_w2_range"].double()
        visual_low, visual_high = _logit_range(w2, visual_user, visual_range)
        collab_low, collab_high = _logit_range(w2, collab_user, collab_range)
        low = torch.sigmoid(visual_low - collab_high - error) - FLOAT32_EPS
        high = torch.sigmoid(visual_high - collab_low + error) + FLOAT32_EPS
        return torch.stack([low, high], 1).clamp(0, 1).float()

    def _gap_magnitude(self, collab_user: Tensor, visual_user: Tensor) -> Tensor:
        """(B,) float64: sum_h |w2_h| (|user parts_h| + the largest |item parts_h|) over both
        logits of eq. (9), given W2's user parts (B, hidden_dim): a bound on the magnitude of
        every term the compiled attention's gap adds."""
        cache = self.item_cache()
        w2 = self.rating_out.weight[0].double()
        magnitude = visual_user.double().abs() + cache["visual_w2_range"].double().abs().amax(1)
        magnitude = magnitude + collab_user.double().abs() + cache["collab_w2_range"].double().abs().amax(1)
        return (w2 * magnitude).abs().sum(1)

    def _dot_products(self, users: Tensor, into: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(B, n_items) u_a.v_i and w_a.x_i of ``users`` (B,) with every item; written into
        ``into``'s two tensors where given (``_dot_product_scratch``; values without a gradient)."""
        cache = self.item_cache()
        collab, visual = (None, None) if into is None else into
        return (
            product_into(self.user_collab(users), cache["collab"], collab),
            product_into(self.user_visual(users), cache["visual"], visual),
        )

    def _user_parts(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """The user half of W2, plus its bias, applied to u_a and to w_a: (B, hidden_dim) each."""
        return self._user_part(self.user_collab(users)), self._user_part(self.user_visual(users))

    def _attended_grid(
        self,
        collab: Tensor,
        visual: Tensor,
        collab_user: Tensor,
        visual_user: Tensor,
        collab_item: Tensor,
        visual_item: Tensor,
        out: Tensor | None = None,
    ) -> Tensor:
        """(B, N) eq. (8) with the beta of eqs. (9)-(10) for B users and N items whose u_a.v_i and
        w_a.x_i are ``collab`` and ``visual`` (B, N), from the user parts of W2 (``_user_parts``,
        (B, hidden_dim)) and its item parts (hidden_dim, N), in the compiled loop whose
        operations ``pruned_top_k`` also runs (``jifr.models.rating_attention``), so that the
        two agree bit for bit. Off the CPU, the same equations in torch on the device, a block
        of items at a time. Into ``out`` where given (``score_all``'s)."""
        inputs = (collab, visual, collab_user, visual_user, collab_item, visual_item, self.rating_out.weight[0])
        if collab.device.type != "cpu":
            return _attended_blocks(inputs, out)
        out = torch.empty(collab.shape, device=CPU) if out is None else out
        arrays = [tuple(_arrays(*inputs)), out.numpy()]  # out: written in place
        run_in_parts(rating_attention.grid, rating_attention.grid_parallel, arrays, collab.shape[0])
        return out

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        """l_ak = w_a . (P c_k) for every frame k of each item, eq. (4), plus the frame bias with
        frame feedback; (B, F_max), -inf padded."""
        return self.visual_frame_scores(users, items)

    def frame_terms(self, features: Tensor) -> Tensor:
        """P c_k of each frame (m, d2)."""
        return self.projection(features)

    def frame_scores_of_terms(self, users: Tensor, terms: Tensor, slot: Tensor) -> Tensor:
        """w_a . (P c_k), eq. (4)."""
        return (self.user_visual(users) * F.embedding(slot, terms)).sum(-1)

    def frame_score_grid(self, users: Tensor, terms: Tensor) -> Tensor:
        return broadcast_dot(self.user_visual(users), terms)

    # ---- new items -----------------------------------------------------------------------------
    new_item_score = (
        "v_i = 0, the prior mean of the free item embedding: r_ai = beta_1 u_a.0 + beta_2 w_a.x_i, "
        "with x_i from eq. (5) (its content attention run with v_i = 0; eq. (1) without content "
        "attention) and beta from eqs. (9)-(10) on [u_a, 0] and [w_a, x_i] (1/2 each without rating attention)"
    )

    def new_item_scores(self, users: Tensor, features: Tensor, counts: Tensor) -> Tensor:
        """Eq. (8) for items without interactions, v_i = 0: the operations ``score_all`` applies
        to a catalogue item whose v_i is 0 (see ``new_item_score``), (B, n_new)."""
        item_collab = torch.zeros(len(counts), self.config.collab_dim, device=features.device)  # v_i = 0
        if self.config.content_attention == "avg":
            x = self.projection(frame_means(features, counts))  # eq. (1)
        else:
            x = self.attended_visual(item_collab, features, frame_mask(counts))
        visual = self.user_visual(users) @ x.T  # w_a . x_i
        collab = torch.zeros_like(visual)  # u_a . v_i
        if self.config.rating_attention == "avg":
            return self.fuse(collab, visual, collab, visual)
        _, w2_item = self._split_w2()
        return self._attended_grid(collab, visual, *self._user_parts(users), w2_item @ item_collab.T, w2_item @ x.T)


def _arrays(*tensors: Tensor) -> list[np.ndarray]:
    """C-contiguous NumPy views (copies where needed) of detached tensors, the compiled loops'
    inputs (their output is written in place: never passed through here)."""
    return [np.ascontiguousarray(t.detach().numpy()) for t in tensors]


def _attended_blocks(inputs: tuple[Tensor, ...], out: Tensor | None = None) -> Tensor:
    """``JIFR._attended_grid`` in torch, for a model on a GPU: eqs. (8)-(10) over blocks of items
    small enough that the (B, block, hidden_dim) ReLU input stays within ``BLOCK_BUDGET`` values;
    ``inputs`` as ``rating_attention.grid`` takes them."""
    collab, visual, collab_user, visual_user, collab_item, visual_item, w2 = inputs
    out = torch.empty_like(collab) if out is None else out
    block = max(1, BLOCK_BUDGET // max(collab.shape[0] * len(w2), 1))
    for start in range(0, collab.shape[1], block):
        items = slice(start, start + block)
        collab_logit = F.relu(collab_user[:, None, :] + collab_item[:, items].T[None]) @ w2
        visual_logit = F.relu(visual_user[:, None, :] + visual_item[:, items].T[None]) @ w2
        out[:, items] = mix(collab[:, items], visual[:, items], torch.sigmoid(visual_logit - collab_logit))
    return out


def mix(collab: Tensor, visual: Tensor, beta_visual: Tensor) -> Tensor:
    """Eq. (8), beta_1 u_a.v_i + beta_2 w_a.x_i with beta_1 = 1 - beta_2."""
    return collab + beta_visual * (visual - collab)


def _gap_error(magnitude: Tensor, hidden_dim: int) -> Tensor:
    """A bound on how far the compiled attention's float32 gap (the difference of the two logits
    of eq. 9) can be from its exact value, given ``JIFR._gap_magnitude``: (hidden_dim + 8)
    float32 epsilons of it, about twice the sum's rounding, which leaves room for the float64
    rounding of the bounds that use it."""
    return (hidden_dim + 8) * FLOAT32_EPS * magnitude + 1e-12


def _pair_terms(w2: Tensor, parts: Tensor) -> Tensor:
    """(n, 3) float64: sum_h w2_h f(y_h), sum_h min(0, w2_h y_h) and sum_h max(0, w2_h y_h) of W2's
    parts y (hidden_dim, n) of n users or items, f = ReLU. A ReLU moves by at most the move of
    its input, so w2_h f(x_h + y_h) lies within w2_h f(x_h) + [min(0, w2_h y_h), max(0, w2_h y_h)],
    and within the same with x and y swapped: summed over h, the logit w2 . f(x + y) of eq. (9)
    of a user part x and an item part y lies within two ranges made of one user term and one
    item term each (``rating_attention._logit_low`` and ``_logit_high`` take the tighter ends), without a pass over
    the hidden units per pair."""
    w, y = w2.double()[:, None], parts.double()
    weighted = w * y
    return torch.stack([(w * F.relu(y)).sum(0), weighted.clamp(max=0).sum(0), weighted.clamp(min=0).sum(0)], 1)


def _logit_range(w2: Tensor, user: Tensor, item_range: Tensor) -> tuple[Tensor, Tensor]:
    """(B,) the smallest and the largest w2 . f(user + item) of eq. (9) over items whose W2 item
    half lies, unit by unit, within ``item_range`` (hidden_dim, 2); ``user`` is (hidden_dim, B).
    ReLU is increasing, so each hidden unit's term is extreme at an end of its range."""
    at_min, at_max = w2 * F.relu(user + item_range[:, :1]), w2 * F.relu(user + item_range[:, 1:])
    return torch.minimum(at_min, at_max).sum(0), torch.maximum(at_min, at_max).sum(0)
