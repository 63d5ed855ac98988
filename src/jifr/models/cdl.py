"""CDL (Lei et al., CVPR 2016, "Comparative Deep Learning of Hybrid Representations for Image
Recommendations"): a user network and an image network map into one d-dimensional space, and
a comparative loss asks a user's liked images to lie closer to the user than other images.

    h_a    = mean_{i in I_a} mean_{k in S_i} c_k     the user's visual history
    f(x)   = W_2 relu(W_1 x + b_1) + b_2             f_U and f_I, each its own weights
    s_ak   = f_U(h_a) . f_I(c_k)                     the key-frame score
    r_ai   = mean_{k in S_i} s_ak = f_U(h_a) . mean_{k in S_i} f_I(c_k)   the item score
    loss   = -ln sigmoid(r_ai - r_aj) + l2 (||W_1||^2 + ||W_2||^2 of both networks)

Content only: there are no free user or item embeddings, so this is the paper comparison's row
without a collaborative signal, and a new item or a new frame is scored from its features alone.

Adaptations of the paper:
- pre-extracted frame features c_k replace the end-to-end CNN of the image branch, and the
  two-branch networks are two small MLPs (Linear -> ReLU -> Linear) on those features;
- the data is implicit user-item feedback, so the comparison is between a user's training item
  and a sampled negative item (the shared BPR loss on r_ai - r_aj), not between two images;
- the user branch's input is the user's visual history h_a, the mean over the user's training
  items I_a of each item's mean frame feature (each item counts once, however many frames it has);
- the paper compares by distance in the shared space; the dot product is used instead because it
  makes the item score exactly linear in the frames' embeddings: the mean of the frame scores is
  the dot product with the item's mean frame embedding, which is cached once for full ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jifr.models.base import (
    ModelInputs,
    Recommender,
    broadcast_dot,
    linear,
    mean_over_training_items,
    product_into,
    seeded_generator,
    squared_norm,
)
from jifr.models.frames import FrameStore, frame_means, project_frames_through, scatter_rows


@dataclass(frozen=True)
class CDLConfig:
    # Chosen on the validation split of MovieLens-Bundles: l2 = 1e-3 cost 0.02-0.03 NDCG@10
    # (seeds 0 and 1) and 1e-2 about 0.1 (seed 0); anything in [0, 3e-4] did about equally well
    # (0.30-0.32). dim 64 and hidden_dim 128 did no better than 32 and 64.
    dim: int = 32  # d, the shared space of f_U and f_I
    hidden_dim: int = 64  # width of the hidden layer of each network
    l2: float = 1e-4  # on W_1 and W_2 of both networks (global, once per batch)

    def __post_init__(self) -> None:
        if min(self.dim, self.hidden_dim) < 1 or self.l2 < 0:
            raise ValueError("dim and hidden_dim must be >= 1 and l2 >= 0")


def two_layer(in_dim: int, hidden_dim: int, out_dim: int, generator: torch.Generator) -> nn.Sequential:
    """Linear -> ReLU -> Linear, both layers with a bias."""
    return nn.Sequential(linear(in_dim, hidden_dim, generator), nn.ReLU(), linear(hidden_dim, out_dim, generator))


class CDL(Recommender):
    name = "cdl"
    writes_scores_into = True
    ranks_items = True
    ranks_frames = True
    frame_scores_are_visual = True
    user_history: Tensor  # (n_users, D) buffer: h_a

    def __init__(self, config: CDLConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        generator = seeded_generator(seed)
        self.config = config
        self.store = FrameStore(inputs.frames)
        self.user_network = two_layer(self.store.dim, config.hidden_dim, config.dim, generator)  # f_U
        self.image_network = two_layer(self.store.dim, config.hidden_dim, config.dim, generator)  # f_I
        self.register_buffer(
            "user_history", mean_over_training_items(inputs, self.store.item_means()), persistent=False
        )

    def user_embeddings(self, users: Tensor) -> Tensor:
        """(B, d) f_U(h_a) of ``users`` (B,)."""
        return self.user_network(self.user_history[users])

    def item_embeddings(self, items: Tensor, into: Tensor | None = None) -> Tensor:
        """(n, d) mean_k f_I(c_k) over the frames of ``items`` (n,); f_I runs once per frame.
        Out of training the features are read into ``into`` where given (``FrameStore.features``)."""
        rows, mask = self.store.padded_frames(items)
        features = self.store.training_features(rows[mask]) if self.training else self.store.features(rows[mask], into)
        frames = scatter_rows(self.frame_terms(features), mask)  # (n, F_max, d)
        return frames.sum(1) / mask.sum(1, keepdim=True)

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        items, inverse = torch.unique(torch.cat([positives, negatives.flatten()]), return_inverse=True)
        item_all = self.item_embeddings(items)  # each distinct frame of the batch once
        n = len(users)
        # F.embedding as the gather: its CPU backward is deterministic, unlike tensor[index]'s.
        item_pos = F.embedding(inverse[:n], item_all)
        item_neg = F.embedding(inverse[n:].view_as(negatives), item_all)
        user = self.user_embeddings(users)
        pos, neg = (user * item_pos).sum(-1), (user[:, None, :] * item_neg).sum(-1)
        return pos, neg, self.weight_penalty()

    def weight_penalty(self) -> Tensor:
        """l2 times the squared norm of the weight matrices of f_U and f_I (biases are free)."""
        weights = [m.weight for net in (self.user_network, self.image_network) for m in net if isinstance(m, nn.Linear)]
        return self.config.l2 * squared_norm(*weights)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """(B,) r_ai = f_U(h_a) . mean_k f_I(c_k)."""
        return (self.user_embeddings(users) * self.item_embeddings(items)).sum(-1)

    def compute_item_cache(self) -> dict[str, Tensor]:
        """mean_k f_I(c_k) of every item, one chunk of items at a time."""
        buffer = self.store.chunk_buffer()  # each chunk's features, in memory reused
        return {"items": torch.cat([self.item_embeddings(chunk, buffer) for chunk in self.store.item_chunks()])}

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        return product_into(self.user_embeddings(users), self.item_cache()["items"], out)

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        """(B, F_max) s_ak = f_U(h_a) . f_I(c_k) of every frame of each item, -inf padded."""
        return self.visual_frame_scores(users, items)

    def frame_terms(self, features: Tensor) -> Tensor:
        """f_I(c_k) of each frame, (m, d): its first layer, over many frames, through
        ``project_frames_through``."""
        first, activation, second = self.image_network
        return second(activation(project_frames_through(cast(nn.Linear, first), features)))

    def frame_scores_of_terms(self, users: Tensor, terms: Tensor, slot: Tensor) -> Tensor:
        """f_U(h_a) . f_I(c_k); f_U runs once per distinct user."""
        return (self._frame_users(users) * F.embedding(slot, terms)).sum(-1)

    def frame_score_grid(self, users: Tensor, terms: Tensor) -> Tensor:
        return broadcast_dot(self._frame_users(users), terms)

    def _frame_users(self, users: Tensor) -> Tensor:
        """f_U(h_a) of each of ``users``, computed once per distinct user."""
        distinct, inverse = torch.unique(users, return_inverse=True)
        return F.embedding(inverse, self.user_embeddings(distinct))

    new_item_score = "its usual score, r_ai = f_U(h_a) . mean_k f_I(c_k): CDL has no free item parameters"

    def new_item_scores(self, users: Tensor, features: Tensor, counts: Tensor) -> Tensor:
        """(B, n_new) f_U(h_a) . mean_k f_I(c_k), as for any item."""
        return self.user_embeddings(users) @ frame_means(self.frame_terms(features), counts).T
