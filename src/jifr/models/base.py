"""What every model answers, the shared BPR loss and the inputs models are built from."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jifr.data.prepared import FrameFeedback, Interactions, ItemFrames, PreparedData
from jifr.device import CPU, reused_memory
from jifr.models.frames import FrameStore
from jifr.parallel import run_in_parts

if TYPE_CHECKING:
    from jifr.models.feedback import FrameFeedbackHead

FRAME_TERMS = "frame_terms"  # item cache: (n_frames, t) every frame's frame_terms
FRAME_BIAS = "frame_bias"  # item cache, with frame feedback: (n_frames,) every frame's bias b_k + q . c_k
GRID_CELLS = 2**21  # (frames x users x dim) products per block of broadcast_dot: 8 MB, kept in cache


@dataclass
class ModelInputs:
    """The data-derived sizes and arrays a model is built from (never trained, never saved)."""

    n_users: int
    n_items: int
    frames: ItemFrames
    train: Interactions
    feedback: FrameFeedback | None = None  # training frame feedback, when the data has some

    @classmethod
    def from_data(cls, data: PreparedData) -> ModelInputs:
        feedback = data.feedback if data.feedback is not None and len(data.feedback) else None
        return cls(data.n_users, data.n_items, data.frames, data.train, feedback)


@dataclass(frozen=True)
class PrunedTopK:
    """A block of users' best k items, found by scoring few items exactly
    (``Recommender.pruned_top_k``); on the CPU."""

    values: Tensor  # (B, k) scores, best first; -inf where fewer than k items can be recommended
    items: Tensor  # (B, k) item indices; -1 there
    scored: Tensor  # (B,) how many items each user's ranking scored exactly
    asked: Tensor  # (n,) the exact scores (``score_all``'s bits) of the pairs asked for


def bpr_loss(positive: Tensor, negative: Tensor) -> Tensor:
    """Mean of -ln sigmoid(r_ai - r_aj) over all (positive, negative) pairs.

    Eq. (3) of the paper prints sigma(r_ai - r_aj) without the logarithm; the BPR criterion it
    cites (Rendle et al. 2009) and every implementation use the log-sigmoid, as we do.
    ``positive`` is (B,), ``negative`` is (B, n_neg).
    """
    return -F.logsigmoid(positive[:, None] - negative).mean()


def config_from_dict(config_type: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass, rejecting unknown keys instead of silently ignoring them."""
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {config_type.__name__} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return config_type(**values)


class Recommender(nn.Module):
    """Base class. Item models implement ``score`` and ``score_all``; visual models also
    ``score_frames``. Trainable models implement ``triplet_scores``.

    Item-only quantities used by ``score_all`` are computed once and cached while the model is
    in eval mode; switching to train mode drops the cache.
    """

    name: ClassVar[str] = "base"
    ranks_items: ClassVar[bool] = True
    ranks_frames: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    # score_frames is visual_frame_scores: the personal frame score plus the frame bias
    frame_scores_are_visual: ClassVar[bool] = False
    writes_scores_into: ClassVar[bool] = False  # score_all takes out (score_all_into)
    # What the score of a new item (frames, no interactions) is, or None where the model cannot
    # score one (``new_item_scores``); ``jifr.items`` adds such items to a served run.
    new_item_score: ClassVar[str | None] = None
    config: Any
    model_name: str  # the registry name it was built under (e.g. "jifr_na")
    store: FrameStore  # the item->frame store, in models that use frames

    def __init__(self) -> None:
        super().__init__()
        self.model_name = self.name
        self._item_cache: dict[str, Tensor] | None = None
        self._frame_cache: dict[str, Tensor] | None = None
        self._scratch: dict[str, Tensor] = {}  # ``scratch``'s buffers not in use, by name

    @property
    def device(self) -> torch.device:
        """Where the model's weights are and its tensors are made (``place``)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return self.store.device if hasattr(self, "store") else CPU

    def place(self, device: torch.device) -> Recommender:
        """Move the weights, buffers and frame store to ``device``; the model then answers there
        (indices given on any device, results on this one). Caches are dropped."""
        self._item_cache = self._frame_cache = None
        self._scratch = {}
        if hasattr(self, "store"):
            self.store.to(device)
        return self.to(device)

    def on_device(self, index: Tensor) -> Tensor:
        """``index`` (from the caller, often on the CPU) on the model's device."""
        return index.to(self.device, non_blocking=True)

    def train(self, mode: bool = True) -> Recommender:
        """Set the mode; the item cache is dropped on entering training, but kept by ``eval()``
        on a model already in eval mode (its weights have not changed), which returns at once:
        the model sets its submodules' modes, and serving calls ``eval()`` on every request."""
        if not mode and not self.training:
            return self
        self._item_cache = self._frame_cache = None
        self._scratch = {}
        return super().train(mode)

    @contextlib.contextmanager
    def scratch(self, name: str, rows: int, columns: int) -> Iterator[Tensor]:
        """A (rows, columns) float32 tensor on the model's device, of undefined values, for use
        inside the ``with`` block: memory reused from one block of a name to the next (grown
        where it needs more). Ranking and evaluation write their (users x items) blocks there
        instead of into fresh memory, whose first touch (page faults) costs more than the
        products that fill it. A block checks its buffer out: another thread's block of the same
        name meanwhile gets a buffer of its own, and one buffer per name is kept between blocks.
        Dropped with the caches (``train``, ``place``)."""
        # pop is atomic: no two blocks get the same buffer
        buffer = reused_memory(self._scratch.pop(name, None), rows * columns, torch.float32, self.device)
        try:
            yield buffer[: rows * columns].view(rows, columns)
        finally:
            self._scratch[name] = buffer

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._item_cache = self._frame_cache = None  # new weights: item-only quantities are stale
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def item_cache(self) -> dict[str, Tensor]:
        """Item-only tensors for scoring, built on first use in eval mode."""
        if self.training or self._item_cache is None:
            with torch.no_grad():
                cache = self.compute_item_cache()
            if self.training:
                return cache
            self._item_cache = cache
        return self._item_cache

    def frame_cache(self) -> dict[str, Tensor]:
        """Eval mode, for a model whose frame scores are visual: every frame's ``frame_terms``
        and, with frame feedback, its bias (``FrameCache``), built on first use in one pass over
        the features, or taken from the item cache where computing it brought them on the way
        (JIFR's x_i); empty where the terms would take more memory than the features."""
        if self._frame_cache is None:
            built = self._item_cache if self._item_cache is not None and FRAME_TERMS in self._item_cache else None
            if built is not None:
                self._frame_cache = {name: built[name] for name in (FRAME_TERMS, FRAME_BIAS) if name in built}
            else:
                frames = FrameCache(self)
                with torch.no_grad():
                    for rows in self.store.frame_blocks():
                        if not frames.add(rows, self.store.features(rows)):
                            break
                self._frame_cache = frames.entries()
        return self._frame_cache

    def compute_item_cache(self) -> dict[str, Tensor]:
        return {}

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scores of (B,) positives and (B, n_neg) negatives of (B,) users, and the L2 penalty."""
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """(B,) predicted preference r_ai of each (user, item) pair."""
        raise NotImplementedError(f"{self.name} does not rank items")

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        """(B, n_items) predicted preferences of each user for every item. In a model whose
        ``writes_scores_into`` is True, ``out`` (a (B, n_items) float32 tensor on the model's
        device) takes the same values, without a gradient, and is returned; a model of one's own
        may leave ``out`` out of its signature (``score_all_into`` then copies)."""
        raise NotImplementedError(f"{self.name} does not rank items")

    def score_all_into(self, users: Tensor, out: Tensor) -> Tensor:
        """``score_all(users)``'s values in ``out`` (B, n_items), without a gradient, returned:
        ranking and evaluation pass memory they reuse block after block (``scratch``), whose
        first touch would otherwise cost more than the product that fills it. Written there
        directly by models whose ``score_all`` takes ``out`` (``writes_scores_into``), copied
        for the others."""
        if self.writes_scores_into:
            return self.score_all(users, out=out)
        with torch.no_grad():
            return out.copy_(self.score_all(users))

    @contextlib.contextmanager
    def reused_scores(self, users: Tensor, n_items: int) -> Iterator[Tensor]:
        """``score_all(users)``'s (B, n_items) values for the ``with`` block, in memory reused from
        one block to the next (``scratch``, ``score_all_into``): how ranking and evaluation score
        a block of users, as a fresh block's page faults cost more than the product that fills it."""
        with self.scratch("scores", len(users), n_items) as reused:
            yield self.score_all_into(self.on_device(users), reused)

    def pruned_top_k(
        self,
        users: Tensor,
        k: int,
        excluded: tuple[Tensor, Tensor] | None,
        asked: tuple[Tensor, Tensor] | None = None,
    ) -> PrunedTopK | None:
        """The ``k`` best items of ``users`` (B,), for a model whose full score is costly: found
        by scoring exactly only the items that bounds on the score let reach the top, with what
        ``jifr.ranking.top_k_items`` promises (``score_all``'s bits, a stable order, the pairs
        ``excluded`` never kept), and the exact scores of the pairs ``asked`` for; pairs are
        (rows into ``users``, items), on the CPU. No score may be NaN where this answers. None
        (the default) where ``score_all`` is itself cheap, e.g. a dot product, or where this
        model cannot prune these users: the callers then use ``score_all``."""
        return None

    def score_frames(self, users: Tensor, items: Tensor) -> Tensor:
        """(B, F_max) key-frame scores of each item's frames; -inf pads items with fewer frames."""
        raise NotImplementedError(f"{self.name} does not rank key frames")

    # ---- frame feedback (jifr.models.feedback) ---------------------------------------------
    def feedback_head(self) -> FrameFeedbackHead | None:
        """The frame-bias head of a model trained with frame feedback, else None."""
        head = self._modules.get("frame_feedback")
        return head  # type: ignore[return-value]

    def personal_frame_scores(self, users: Tensor, features: Tensor, slot: Tensor) -> Tensor:
        """(n,) the model's own score of frame ``slot[r]`` of ``features`` (m, D) for ``users[r]``
        (n,); each distinct frame's features are projected once."""
        return self.frame_scores_of_terms(users, self.frame_terms(features), slot)

    def frame_terms(self, features: Tensor) -> Tensor:
        """(m, t) what a personal frame score needs of each frame, from its features (m, D),
        before any user enters (P c_k for JIFR)."""
        raise NotImplementedError(f"{self.name} does not score frames from their features")

    def frame_scores_of_terms(self, users: Tensor, terms: Tensor, slot: Tensor) -> Tensor:
        """(n,) the personal score of frame ``slot[r]`` for ``users[r]`` (n,), from the frames'
        ``frame_terms`` (m, t)."""
        raise NotImplementedError(f"{self.name} does not score frames from their features")

    def frame_score_grid(self, users: Tensor, terms: Tensor) -> Tensor:
        """(m, U) ``frame_scores_of_terms`` of every frame (its terms, (m, t)) for every one of
        ``users`` (U,). This default scores the m x U pairs one by one; the visual models do the
        same operations broadcast (``broadcast_dot``), with the same values bit for bit."""
        n = len(terms)
        slot = torch.arange(n, device=terms.device).repeat_interleave(len(users))
        return self.frame_scores_of_terms(users.repeat(n), terms, slot).view(n, len(users))

    def frame_feedback_loss(self, users: Tensor, frames: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        """The weighted frame-feedback loss of logged (user, frame, label) rows (jifr.models.feedback)."""
        head = self.feedback_head()
        if head is None:
            raise ValueError(f"{self.model_name} was built without frame feedback")
        distinct, slot = torch.unique(frames, return_inverse=True)
        features = self.store.features(distinct)
        personal = self.personal_frame_scores(users, features, slot)
        return head.loss(personal, distinct, features, slot, labels, weights)

    def visual_frame_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """``score_frames`` of a model whose frame score is ``personal_frame_scores`` plus, with
        frame feedback, the frame bias."""

        def personal(terms: Tensor, mask: Tensor) -> Tensor:
            slot = torch.arange(len(terms), device=terms.device)
            return self.frame_scores_of_terms(users[mask.nonzero()[:, 0]], terms, slot)

        return self._padded_frame_scores(items, personal)

    def mean_visual_frame_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """(n, F_max) ``visual_frame_scores`` of each of ``items`` (n,) averaged over ``users``
        (U,), -inf padded; each frame's features are read and projected once, not once per user."""

        def mean_personal(terms: Tensor, mask: Tensor) -> Tensor:
            return self.frame_score_grid(users, terms).mean(1)

        return self._padded_frame_scores(items, mean_personal)

    def _padded_frame_scores(self, items: Tensor, personal: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """(n, F_max) ``personal(terms, mask)`` of the frames of ``items`` (their ``frame_terms``)
        plus, with frame feedback, the frame bias; -inf pads items with fewer frames. In eval
        mode the terms and biases come from ``frame_cache`` where it holds them."""
        rows, mask = self.store.padded_frames(items)
        frame_rows = rows[mask]
        cache = {} if self.training else self.frame_cache()
        head = self.feedback_head()
        if FRAME_TERMS in cache:
            scores = personal(cache[FRAME_TERMS][frame_rows], mask)
            if head is not None:
                scores = scores + cache[FRAME_BIAS][frame_rows]
        else:
            features = self.store.features(frame_rows)
            scores = personal(self.frame_terms(features), mask)
            if head is not None:
                scores = scores + head.bias(frame_rows, features)
        out = torch.full(mask.shape, float("-inf"), device=mask.device)
        out[mask] = scores
        return out

    # ---- new items (jifr.items) ------------------------------------------------------------
    def scores_new_items(self) -> bool:
        """Whether ``new_item_scores`` can score items without interactions."""
        return self.ranks_items and self.new_item_score is not None

    def new_item_scores(self, users: Tensor, features: Tensor, counts: Tensor) -> Tensor:
        """(B, n_new) scores of items that came after training, from their frames alone.

        ``features`` (L, D) are the new items' frame features, item after item, and ``counts``
        (n_new,) the frames of each (>= 1). What a model learned from an item's interactions
        (its free embedding, its bias) takes its value under the model's prior, the minimiser of
        its regularisers: 0 for an L2 penalty. ``new_item_score`` says what that leaves.
        """
        raise NotImplementedError(self.new_item_refusal())

    def new_item_refusal(self) -> str:
        """Why this model cannot score a new item (a model with a content side overrides
        ``new_item_scores`` and never says it)."""
        return (
            f"{self.model_name} cannot score a new item: it scores items only through what it learned "
            "from their interactions, and a new item has none (models that can: jifr, vbpr, vpoi, cdl)"
        )

    def new_frame_scores(self, users: Tensor, features: Tensor, slot: Tensor) -> Tensor:
        """(n,) the key-frame score of frame ``slot[r]`` of ``features`` (m, D), a frame that came
        after training, for ``users[r]`` (n,): ``personal_frame_scores`` plus, with frame feedback,
        the frame bias's visual part q . c_k (the free b_k of a frame never shown is 0)."""
        scores = self.personal_frame_scores(users, features, slot)
        head = self.feedback_head()
        if head is not None:
            scores = scores + F.embedding(slot, head.visual(features)).squeeze(-1)
        return scores


class FrameCache:
    """Collects every frame's ``frame_terms`` and, with frame feedback, its frame bias, block by
    block of frames in order, for a model's item cache: ``entries()`` is empty where the terms
    take more memory than the features they stand for (they are then computed from the features
    each time)."""

    def __init__(self, model: Recommender) -> None:
        self.model, self.head = model, model.feedback_head()
        self.feature_bytes = model.store.dim * model.store.frames.features.dtype.itemsize
        self.terms: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.too_large = False

    def add(self, rows: Tensor, features: Tensor, terms: Tensor | None = None) -> bool:
        """Add frames ``rows`` (the next block) with their features and, when already computed,
        their terms; False once the terms have proved too large to keep."""
        if self.too_large:
            return False
        terms = self.model.frame_terms(features) if terms is None else terms
        if terms.shape[1] * terms.element_size() > self.feature_bytes:
            self.too_large = True
            return False
        self.terms.append(terms)
        if self.head is not None:
            self.biases.append(self.head.bias(rows, features))
        return True

    def entries(self) -> dict[str, Tensor]:
        if self.too_large or not self.terms:
            return {}
        entries = {FRAME_TERMS: torch.cat(self.terms)}
        return entries | ({FRAME_BIAS: torch.cat(self.biases)} if self.head is not None else {})


def mean_over_training_items(inputs: ModelInputs, item_values: Tensor) -> Tensor:
    """(n_users, D) the mean of ``item_values`` (n_items, D) over each user's distinct training
    items (a repeated interaction counts once); zeros for a user without any."""
    from jifr.models.sparse_rows import csr_times_dense, csr_times_dense_parallel  # compiled on first use

    train = (inputs.train.csr(inputs.n_users, inputs.n_items) > 0).astype(np.float64)
    counts = np.asarray(train.sum(axis=1)).ravel()
    normalised = sp.diags(1.0 / np.maximum(counts, 1.0)) @ train  # each row: 1 / its count
    # float64 sums of float32 values (widened exactly), each row rounded to float32 once written
    means = np.empty((inputs.n_users, item_values.shape[1]), dtype=np.float32)
    dense = np.ascontiguousarray(item_values.detach().cpu().numpy())
    arrays = [normalised.indptr.astype(np.int64), normalised.indices.astype(np.int64), normalised.data, dense, means]
    run_in_parts(csr_times_dense, csr_times_dense_parallel, arrays, inputs.n_users)  # = normalised @ dense
    return torch.from_numpy(means).to(item_values.device)


def seeded_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def normal_embedding(n: int, dim: int, generator: torch.Generator, std: float = 0.1) -> nn.Embedding:
    embedding = nn.Embedding(n, dim)
    nn.init.normal_(embedding.weight, std=std, generator=generator)
    return embedding


def linear(in_dim: int, out_dim: int, generator: torch.Generator, bias: bool = True) -> nn.Linear:
    """A linear layer with Xavier-uniform weights drawn from ``generator`` (reproducible)."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.xavier_uniform_(layer.weight, generator=generator)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def product_into(left: Tensor, right: Tensor, out: Tensor | None) -> Tensor:
    """``left @ right.T``; into ``out`` where given (``Recommender.score_all``'s ``out``: the
    same product, so the same values, without a gradient)."""
    if out is None:
        return left @ right.T
    with torch.no_grad():
        return torch.matmul(left, right.T, out=out)


def broadcast_dot(users: Tensor, terms: Tensor) -> Tensor:
    """(m, U) ``(users[a] * terms[k]).sum(-1)`` of every row of ``terms`` (m, d) with every row
    of ``users`` (U, d): the products and sums of the pairs scored one by one, bit for bit, a
    block of rows at a time so that the block's (rows x U x d) products stay in cache."""
    step = max(1, GRID_CELLS // max(users.numel(), 1))
    blocks = [(terms[s : s + step, None, :] * users[None, :, :]).sum(-1) for s in range(0, len(terms), step)]
    return torch.cat(blocks) if blocks else terms.new_zeros(0, len(users))


def squared_norm(*tensors: Tensor) -> Tensor:
    return sum((t.pow(2).sum() for t in tensors), torch.zeros((), device=tensors[0].device))


def as_index(values: np.ndarray | Tensor) -> Tensor:
    return torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values, dtype=torch.long)
