"""ACF (Chen et al., SIGIR 2017, "Attentive Collaborative Filtering"), item recommendation only.

A user is their own vector plus an attention-weighted sum of the auxiliary vectors of the items
in their history R(a); each history item is seen through an attention over its frames:

    x_lm        = E c_lm                                               frame m of item l, projected
    beta(a,l,m) = softmax_m( w2 . ReLU(W2u u_a + W2x x_lm + b2) )       component-level attention
    xbar_l      = sum_m beta(a,l,m) x_lm
    alpha(a,l)  = softmax_{l in R(a)}( w1 . ReLU(W1u u_a + W1v v_l + W1p p_l + W1x xbar_l + b1) )
                                                                       item-level attention
    r_ai        = (u_a + sum_{l in R(a)} alpha(a,l) p_l) . v_i

u (users), v and p (items) are free embeddings; p_l is item l's "auxiliary" vector, used only
when l appears in a history. Adaptations to this library's data and protocol:

- The components are an item's frames, with pre-extracted features c_lm reduced by a learned
  projection E (feature_dim -> frame_dim), instead of CNN region features learned end to end.
- Implicit user-item feedback only (BPR loss, shared with the other models).
- R(a) is the user's training items. A user with more than ``history_cap`` of them keeps a
  seeded uniform sample of that many (drawn once, at construction; entries in item order).
- When a training positive i is scored, the history entry l == i is masked out of that
  triplet's item-level attention, so the model cannot score i by looking i up in its own
  history; the triplet's negatives are scored with that same user vector (negatives are never
  in the history). ``score`` and ``score_all`` use the full history: the held-out items they
  rank are never training items.
- The item-level attention takes xbar_l, the output of this user's component-level attention
  over item l's frames, as item l's content input.
- An empty softmax (a history holding only the positive, an item without frames) gives zero
  weights, so a zero sum, rather than NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.data.prepared import Interactions
from jifr.models.base import (
    ModelInputs,
    Recommender,
    linear,
    normal_embedding,
    product_into,
    seeded_generator,
    squared_norm,
)
from jifr.models.frames import FrameStore, masked_softmax, project_frames_through, scatter_rows

# (users x history x frames x attention_dim) cells of the component attention per score_all chunk.
CELL_BUDGET = 2**22
FRAME_TERMS = ("frames", "frame_key", "frame_mask")  # the item terms with one row per frame


@dataclass(frozen=True)
class ACFConfig:
    dim: int = 32  # of u_a, v_i and p_l
    frame_dim: int = 32  # of x_lm = E c_lm
    attention_dim: int = 32  # hidden size of both attention networks (rows of W1*, W2*)
    # Attention cost grows with the history length. On MovieLens-Bundles (ml-100k) the median
    # training history is 28 items (75th percentile 57, max 157), so 50 keeps 69% of histories
    # whole; keeping all (cap 160) took 1.4x the time per epoch for no better validation NDCG@10
    # after 3 epochs (0.303 against 0.307). A cap above the longest history changes nothing.
    history_cap: int = 50
    l2: float = 1e-3  # on u_a, v_i, v_j of each triplet and the batch's history p_l, over the batch size
    l2_attention: float = 1e-3  # on E, W1*, w1, W2*, w2 (global, once per batch)

    def __post_init__(self) -> None:
        if min(self.dim, self.frame_dim, self.attention_dim, self.history_cap) < 1:
            raise ValueError("dim, frame_dim, attention_dim and history_cap must be >= 1")
        if min(self.l2, self.l2_attention) < 0:
            raise ValueError("L2 weights must be >= 0")


def user_histories(
    train: Interactions, n_users: int, n_items: int, cap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, width) training items of each user in increasing order, 0-padded, and the mask
    of real entries; width = min(cap, longest history). A user with more than ``cap`` distinct
    items keeps a uniform sample of ``cap`` of them, drawn from ``rng``."""
    csr = train.csr(n_users, n_items)
    csr.sum_duplicates()  # distinct items, sorted within each user
    counts = np.diff(csr.indptr)
    users = np.repeat(np.arange(n_users), counts)
    by_key = np.lexsort((rng.random(len(users)), users))  # each user's items in random order
    rank = np.arange(len(users)) - csr.indptr[users[by_key]]
    kept = np.sort(by_key[rank < cap])  # back to (user, item) order
    kept_users, kept_items = users[kept], csr.indices[kept].astype(np.int64)
    kept_counts = np.minimum(counts, cap)
    column = np.arange(len(kept)) - (np.cumsum(kept_counts) - kept_counts)[kept_users]
    width = int(kept_counts.max()) if n_users else 0
    history = np.zeros((n_users, width), dtype=np.int64)
    mask = np.zeros((n_users, width), dtype=bool)
    history[kept_users, column] = kept_items
    mask[kept_users, column] = True
    return history, mask


def attention_weights(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``mask``; all-zero weights where a row has no entry."""
    empty = ~mask.any(-1, keepdim=True)
    return masked_softmax(logits, mask | empty) * mask


def pad_frames(values: Tensor, width: int) -> Tensor:
    """``values`` (n, F, ...) zero-padded (False for masks) to (n, width, ...)."""
    out = values.new_zeros(values.shape[0], width, *values.shape[2:])
    out[:, : values.shape[1]] = values
    return out


class ACF(Recommender):
    name = "acf"
    writes_scores_into = True
    ranks_frames = False
    history: Tensor  # (n_users, width) buffer: R(a), the items of each user's history, 0-padded
    history_mask: Tensor  # (n_users, width) buffer: the real entries of ``history``

    def __init__(self, config: ACFConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        g = seeded_generator(seed)
        self.config = config
        self.store = FrameStore(inputs.frames)
        d, k, h = config.dim, config.frame_dim, config.attention_dim
        self.user_embedding = normal_embedding(inputs.n_users, d, g)  # u_a
        self.item_embedding = normal_embedding(inputs.n_items, d, g)  # v_i
        self.item_auxiliary = normal_embedding(inputs.n_items, d, g)  # p_l
        self.frame_projection = linear(self.store.dim, k, g, bias=False)  # E
        self.item_attention_user = linear(d, h, g)  # W1u and b1
        self.item_attention_item = linear(d, h, g, bias=False)  # W1v
        self.item_attention_auxiliary = linear(d, h, g, bias=False)  # W1p
        self.item_attention_frames = linear(k, h, g, bias=False)  # W1x
        self.item_attention_out = linear(h, 1, g, bias=False)  # w1
        self.frame_attention_user = linear(d, h, g)  # W2u and b2
        self.frame_attention_frame = linear(k, h, g, bias=False)  # W2x
        self.frame_attention_out = linear(h, 1, g, bias=False)  # w2
        # Derived from the data and the seed, so rebuilt (not stored) when a checkpoint loads.
        history, mask = user_histories(
            inputs.train, inputs.n_users, inputs.n_items, config.history_cap, np.random.default_rng(seed)
        )
        self.register_buffer("history", torch.from_numpy(history), persistent=False)
        self.register_buffer("history_mask", torch.from_numpy(mask), persistent=False)

    # ---- item side ---------------------------------------------------------------------------
    def item_terms(self, items: Tensor, into: Tensor | None = None) -> dict[str, Tensor]:
        """What the attention needs of history items ``items`` (n,), independent of the user:
        p_l (n, d), W1v v_l + W1p p_l (n, h), and over each item's frames (n, F_max): x_lm,
        W2x x_lm and the mask of real frames. Each frame's features are projected once
        (``project_frames_through``): in training gathered from the copy training keeps
        (``FrameStore.training_features``), otherwise read into ``into`` where given
        (``FrameStore.features``)."""
        rows, frame_mask = self.store.padded_frames(items)
        frame_rows = rows[frame_mask]
        features = self.store.training_features(frame_rows) if self.training else self.store.features(frame_rows, into)
        projected = project_frames_through(self.frame_projection, features)  # x_lm = E c_lm
        auxiliary = self.item_auxiliary(items)
        return {
            "auxiliary": auxiliary,
            "item_key": self.item_attention_item(self.item_embedding(items)) + self.item_attention_auxiliary(auxiliary),
            "frames": scatter_rows(projected, frame_mask),
            "frame_key": scatter_rows(self.frame_attention_frame(projected), frame_mask),
            "frame_mask": frame_mask,
        }

    def compute_item_cache(self) -> dict[str, Tensor]:
        """``item_terms`` of every item (one chunk of items at a time), and v_i."""
        buffer = self.store.chunk_buffer()  # each chunk's features, in memory reused
        chunks = [self.item_terms(chunk, buffer) for chunk in self.store.item_chunks()]
        width = max((c["frame_mask"].shape[1] for c in chunks), default=0)
        cache = {key: torch.cat([pad_frames(c[key], width) for c in chunks]) for key in FRAME_TERMS}
        cache |= {key: torch.cat([c[key] for c in chunks]) for key in ("auxiliary", "item_key")}
        return cache | {"item": self.item_embedding.weight.detach()}

    # ---- user side ---------------------------------------------------------------------------
    def history_attention(
        self, users: Tensor, terms: dict[str, Tensor], slots: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Item-level attention logits (U, width) and p_l (U, width, d) of the history of
        ``users`` (U,), whose entries are rows ``slots`` (U, width) of ``terms`` (``item_terms``)
        where ``mask`` (U, width) holds. Logits are 0 where it does not.

        The attention runs on the real entries only, packed into one axis of (user, l) pairs.
        F.embedding does the gathers: its CPU backward is deterministic, unlike tensor[index]'s.
        """
        pair_user, pair_item = mask.nonzero()[:, 0], slots[mask]
        u = self.user_embedding(users)
        frames, frame_key = terms["frames"], terms["frame_key"]
        x = F.embedding(pair_item, frames.flatten(1)).view(-1, *frames.shape[1:])  # x_lm, (pairs, F_max, k)
        x_key = F.embedding(pair_item, frame_key.flatten(1)).view(-1, *frame_key.shape[1:])  # W2x x_lm
        hidden = F.relu(x_key + F.embedding(pair_user, self.frame_attention_user(u))[:, None, :])
        beta = attention_weights(self.frame_attention_out(hidden).squeeze(-1), terms["frame_mask"][pair_item])
        frame_mean = (beta[..., None] * x).sum(1)  # xbar_l = sum_m beta(a,l,m) x_lm, (pairs, k)
        hidden = F.relu(
            F.embedding(pair_user, self.item_attention_user(u))
            + F.embedding(pair_item, terms["item_key"])
            + self.item_attention_frames(frame_mean)
        )
        logits = self.item_attention_out(hidden).squeeze(-1)
        return logits.new_zeros(mask.shape).masked_scatter(mask, logits), F.embedding(slots, terms["auxiliary"])

    def user_vectors(self, users: Tensor) -> Tensor:
        """(B, d) u_a + sum_l alpha(a,l) p_l over each user's full history, in chunks of users
        that bound the component attention's memory."""
        terms = self.item_cache()
        width = self.history.shape[1] * terms["frame_mask"].shape[1] * self.config.attention_dim
        step = max(1, CELL_BUDGET // max(width, 1))
        blocks = []
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
            logits, auxiliary = self.history_attention(chunk, terms, self.history[chunk], self.history_mask[chunk])
            alpha = attention_weights(logits, self.history_mask[chunk])
            blocks.append(self.user_embedding(chunk) + (alpha[:, None, :] @ auxiliary).squeeze(1))
        return torch.cat(blocks) if blocks else torch.zeros(0, self.config.dim, device=self.device)

    # ---- training and ranking ----------------------------------------------------------------
    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # The attention runs once per distinct user of the batch over the distinct items of their
        # histories; only the softmax differs between triplets (each excludes its positive).
        distinct_users, user_slot = torch.unique(users, return_inverse=True)
        history, history_mask = self.history[distinct_users], self.history_mask[distinct_users]
        items, item_slot = torch.unique(history[history_mask], return_inverse=True)
        slots = torch.zeros_like(history).masked_scatter(history_mask, item_slot)
        terms = self.item_terms(items)
        logits, auxiliary = self.history_attention(distinct_users, terms, slots, history_mask)
        logits = F.embedding(user_slot, logits)  # (B, width)
        auxiliary = F.embedding(user_slot, auxiliary.flatten(1)).view(len(users), *auxiliary.shape[1:])
        own = self.history[users] == positives[:, None]  # l == i: no leakage of the positive
        alpha = attention_weights(logits, self.history_mask[users] & ~own)
        u = self.user_embedding(users)
        user_vector = u + (alpha[:, None, :] @ auxiliary).squeeze(1)
        v_pos, v_neg = self.item_embedding(positives), self.item_embedding(negatives)
        pos = (user_vector * v_pos).sum(-1)
        neg = (v_neg @ user_vector[:, :, None]).squeeze(-1)
        embeddings = squared_norm(u, v_pos, v_neg, terms["auxiliary"])
        return pos, neg, self.config.l2 * embeddings / len(users) + self.weight_penalty()

    def weight_penalty(self) -> Tensor:
        """l2_attention times the squared norm of E and of the attention weights (not biases)."""
        layers = (
            self.frame_projection,
            self.item_attention_user,
            self.item_attention_item,
            self.item_attention_auxiliary,
            self.item_attention_frames,
            self.item_attention_out,
            self.frame_attention_user,
            self.frame_attention_frame,
            self.frame_attention_out,
        )
        return self.config.l2_attention * squared_norm(*(layer.weight for layer in layers))

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.user_vectors(users) * self.item_embedding(items)).sum(-1)

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        return product_into(self.user_vectors(users), self.item_cache()["item"], out)

    def new_item_refusal(self) -> str:
        return (
            f"{self.model_name} cannot score a new item: an item's score is (u_a + history) . v_i, its free "
            "embedding v_i alone (its frames enter only the histories of users who interacted with it), "
            "and a new item has no interactions to learn v_i from"
        )
