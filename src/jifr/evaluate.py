"""Evaluation protocols: items (paper's sampled protocol and full ranking) and key frames.

- ``item_paper``: per user, candidates = the user's held-out positives + 1,000 items sampled
  uniformly without replacement from the items the user never interacted with (in any part of
  the split); repeated with recorded seeds, reported as mean and sample std (ddof=1) over repeats.
- ``item_full``: candidates = every item except the user's training (and, when testing,
  validation) positives.
- ``keyframe``: per held-out (user, item) pair with frame likes, the item's frames are ranked by
  the model's frame score; liked frames are the positives.
- ``keyframe_exposed``: per held-out (user, item) pair, only the frames the user was exposed to
  (``frame_exposures``) are ranked; liked frames are the positives. Pairs with fewer than two
  exposed frames, or without contrast (no exposed frame liked, or all liked), are skipped and
  counted. A frame the user never saw is not a candidate, so a model cannot score by telling
  which frames the user saw (exposure, popularity) from which they liked (taste).

Item metrics are averaged over users with at least one held-out positive; key-frame metrics over
(user, item) pairs. Metric definitions are in ``jifr.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from jifr.data.prepared import PreparedData
from jifr.data.sampling import sample_unrated
from jifr.device import CPU
from jifr.metrics import hr_ndcg, ideal_dcg, pessimistic_positions
from jifr.models.base import Recommender

ITEM_KS = (5, 10, 15, 20, 25, 30)
FRAME_KS = (1, 2, 3, 5)
PROTOCOLS = ("item_paper", "item_full", "keyframe", "keyframe_exposed")
SCORE_BUDGET = 2**25  # user x item scores held at once


@dataclass
class ProtocolResult:
    """Mean (and std over repeats, where repeated) of each metric, with what was averaged."""

    protocol: str
    metrics: dict[str, float]
    std: dict[str, float]
    n_queries: int
    details: dict[str, object]

    def as_dict(self) -> dict[str, object]:
        return {"metrics": self.metrics, "std": self.std, "n_queries": self.n_queries} | self.details


def _user_chunks(users: np.ndarray, n_items: int) -> Iterator[np.ndarray]:
    step = max(1, SCORE_BUDGET // max(n_items, 1))
    for start in range(0, len(users), step):
        yield users[start : start + step]


def _padded_positives(matrix: sp.csr_matrix, users: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """(B, P_max) item indices of each user's positives in ``matrix``, and the (B, P_max) mask,
    on ``device``."""
    rows = matrix[users]
    counts = torch.as_tensor(np.diff(rows.indptr), device=device)
    width = int(counts.max()) if len(users) else 0
    mask = torch.arange(width, device=device)[None, :] < counts[:, None]
    items = torch.zeros(mask.shape, dtype=torch.long, device=device)
    items[mask] = torch.as_tensor(rows.indices, dtype=torch.long, device=device)
    return items, mask


def _on(like: Tensor, values: np.ndarray) -> Tensor:
    """``values`` as a tensor on the device of ``like``."""
    return torch.as_tensor(values, device=like.device)


def _exclusion(data: PreparedData, part: str) -> sp.csr_matrix:
    """Known positives that are not candidates: train, plus valid when evaluating on test."""
    parts = ["train"] if part == "valid" else ["train", "valid"]
    return sum(data.part(p).csr(data.n_users, data.n_items) for p in parts).tocsr()


@torch.no_grad()
def evaluate_full(
    model: Recommender, data: PreparedData, part: str = "test", ks: tuple[int, ...] = ITEM_KS
) -> ProtocolResult:
    """Full-ranking item evaluation, chunked over users (bounded memory at any catalogue size)."""
    sums, n_users = full_ranking_sums(model, data, part, ks)
    metrics = {name: total / max(n_users, 1) for name, total in sums.items()}
    return ProtocolResult(
        "item_full", metrics, {}, n_users, {"part": part, "candidates": "all items except known positives"}
    )


@torch.no_grad()
def full_ranking_sums(
    model: Recommender,
    data: PreparedData,
    part: str = "test",
    ks: tuple[int, ...] = ITEM_KS,
    shard: tuple[int, int] = (0, 1),
) -> tuple[dict[str, float], int]:
    """The sums of HR@K and NDCG@K (full ranking) over the users with a held-out positive in
    ``part``, and the number of those users. ``shard=(r, n)`` takes every n-th of them from the
    r-th: one process's share of an evaluation split over n (the shares' sums add up to the whole)."""
    model.eval()
    held_out = data.part(part).csr(data.n_users, data.n_items)
    excluded = _exclusion(data, part)
    users = np.flatnonzero(np.diff(held_out.indptr))[shard[0] :: shard[1]]
    sums = {name: 0.0 for k in ks for name in (f"HR@{k}", f"NDCG@{k}")}
    prunes = True  # until the model declines: then the other chunks go straight to score_all
    for chunk in _user_chunks(users, data.n_items):
        metrics = _pruned_metrics(model, chunk, held_out, excluded, ks) if prunes else None
        if metrics is None:
            prunes = False
            with model.reused_scores(torch.as_tensor(chunk), data.n_items) as scores:
                exclude_rows = excluded[chunk].tocoo()
                scores[_on(scores, exclude_rows.row), _on(scores, exclude_rows.col)] = float("-inf")
                metrics = _rank_held_out(scores, held_out, chunk, ks)
        for name, values in metrics.items():
            sums[name] += float(values.sum())
    return sums, len(users)


def _pruned_metrics(
    model: Recommender, chunk: np.ndarray, held_out: sp.csr_matrix, excluded: sp.csr_matrix, ks: tuple[int, ...]
) -> dict[str, Tensor] | None:
    """``_rank_held_out``'s metrics from the model's pruned ranking (``Recommender.pruned_top_k``;
    None where it has none): a positive's pessimistic position up to max(ks) needs only its own
    score and the best max(ks) scores of the negatives (every item but the user's known and
    held-out ones), with ``score_all``'s bits, so the metrics are the same."""
    n_items = held_out.shape[1]
    items, mask = _padded_positives(held_out, chunk, CPU)
    rows, columns = mask.nonzero(as_tuple=True)
    positives = (rows, items[mask])
    known = excluded[chunk].tocoo()
    not_negative = (
        torch.cat([torch.as_tensor(known.row, dtype=torch.long), rows]),
        torch.cat([torch.as_tensor(known.col, dtype=torch.long), positives[1]]),
    )
    k = min(max(ks), n_items)
    pruned = model.pruned_top_k(model.on_device(torch.as_tensor(chunk)), k, not_negative, positives)
    if pruned is None:
        return None
    positive = torch.full(mask.shape, float("-inf"), device=CPU)
    positive[rows, columns] = pruned.asked
    # A held-out positive that is also known is out, as the other path's -inf makes it.
    pair_keys = rows.numpy() * n_items + positives[1].numpy()
    also_known = torch.as_tensor(np.isin(pair_keys, known.row.astype(np.int64) * n_items + known.col))
    positive[rows[also_known], columns[also_known]] = float("-inf")
    return hr_ndcg(pessimistic_positions(positive, pruned.values, max(ks)), mask.sum(1), ks)


def _rank_held_out(
    scores: Tensor, held_out: sp.csr_matrix, chunk: np.ndarray, ks: tuple[int, ...]
) -> dict[str, Tensor]:
    """HR@K and NDCG@K of ``chunk``'s held-out positives from its users' ``scores`` (B, n_items),
    known items at -inf. ``scores`` (the block's reused memory) ends with the positives at -inf
    too: the negatives, ranked in place rather than in a copy of the block."""
    items, mask = _padded_positives(held_out, chunk, scores.device)
    positive = torch.gather(scores, 1, items).masked_fill(~mask, float("-inf"))
    scores[mask.nonzero()[:, 0], items[mask]] = float("-inf")
    positions = pessimistic_positions(positive, scores, max(ks))
    return hr_ndcg(positions, mask.sum(1), ks)


@torch.no_grad()
def evaluate_sampled(
    model: Recommender,
    data: PreparedData,
    part: str = "test",
    ks: tuple[int, ...] = ITEM_KS,
    n_negatives: int = 1000,
    repeats: int = 10,
    seed: int = 0,
) -> ProtocolResult:
    """The paper's protocol: held-out positives + ``n_negatives`` never-interacted items, repeated."""
    model.eval()
    held_out = data.part(part).csr(data.n_users, data.n_items)
    interacted = data.interacted
    users = np.flatnonzero(np.diff(held_out.indptr))
    seeds = [seed + r for r in range(repeats)]
    generators = [np.random.default_rng(s) for s in seeds]
    sums = np.zeros((repeats, 2 * len(ks)))
    names = [name for k in ks for name in (f"HR@{k}", f"NDCG@{k}")]
    chunks = list(_user_chunks(users, data.n_items))  # the first is the largest
    keys = np.empty((len(chunks[0]) if chunks else 0, data.n_items))  # the negatives' keys, reused chunk after chunk
    for chunk in chunks:
        with model.reused_scores(torch.as_tensor(chunk), data.n_items) as scores:
            items, mask = _padded_positives(held_out, chunk, scores.device)
            positive = torch.gather(scores, 1, items).masked_fill(~mask, float("-inf"))
            for r, rng in enumerate(generators):
                sampled, valid = sample_unrated(interacted[chunk], n_negatives, rng, keys[: len(chunk)])
                negative = torch.gather(scores, 1, _on(scores, sampled)).masked_fill(~_on(scores, valid), float("-inf"))
                values = hr_ndcg(pessimistic_positions(positive, negative, max(ks)), mask.sum(1), ks)
                sums[r] += [float(values[name].sum()) for name in names]
    per_repeat = sums / max(len(users), 1)
    metrics = dict(zip(names, per_repeat.mean(0).tolist(), strict=True))
    # Sample std, as ``compare`` reports over seeds: the repeats are a sample of negative draws.
    spread = per_repeat.std(0, ddof=1) if repeats > 1 else np.zeros(len(names))
    std = dict(zip(names, spread.tolist(), strict=True))
    details = {
        "part": part,
        "n_negatives": n_negatives,
        "repeats": repeats,
        "seeds": seeds,
        "std_definition": "sample standard deviation over repeats (ddof=1); 0.0 with one repeat",
    }
    return ProtocolResult("item_paper", metrics, std, len(users), details)


@dataclass
class KeyFrameQueries:
    """(user, item) pairs to rank frames for, with (B, F_max) masks over each item's frame slots:
    the liked frames (positives) and the candidates (the frames ranked)."""

    users: Tensor
    items: Tensor
    liked: Tensor
    frame_counts: Tensor
    candidates: Tensor

    @property
    def n_candidates(self) -> Tensor:
        return self.candidates.sum(1)


def _pair_grid(
    data: PreparedData, users: np.ndarray, items: np.ndarray, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The unique (user, item) pairs of (user, item, frame) triples: their keys, users, items and
    frame counts, and the (pairs, F_max) mask of the triples' frames."""
    pair_keys, pair_index = np.unique(users * data.n_items + items, return_inverse=True)
    pair_users, pair_items = pair_keys // data.n_items, pair_keys % data.n_items
    counts = np.diff(data.frames.indptr)[pair_items]
    marked = np.zeros((len(pair_keys), int(counts.max()) if len(counts) else 0), dtype=bool)
    marked[pair_index.ravel(), frames - data.frames.indptr[items]] = True
    return pair_keys, pair_users, pair_items, counts, marked


def keyframe_queries(data: PreparedData, part: str = "test") -> KeyFrameQueries:
    """``keyframe``: held-out pairs with frame likes; every frame of the item is a candidate."""
    likes = data.likes_of(part)
    _, users, items, counts, liked = _pair_grid(data, likes.users, likes.items, likes.frames)
    width = liked.shape[1]
    candidates = np.arange(width)[None, :] < counts[:, None]
    return KeyFrameQueries(*(torch.as_tensor(a) for a in (users, items, liked, counts, candidates)))


def keyframe_exposed_queries(data: PreparedData, part: str = "test") -> tuple[KeyFrameQueries, dict[str, int]]:
    """``keyframe_exposed``: held-out pairs whose exposed frames (the candidates) are at least two,
    some but not all of them liked; and the counts of the held-out pairs skipped, by reason."""
    exposures = data.exposures_of(part)
    pair_keys, users, items, counts, exposed = _pair_grid(data, exposures.users, exposures.items, exposures.frames)
    likes = data.likes_of(part)
    like_keys = likes.users * data.n_items + likes.items
    known = np.isin(like_keys, pair_keys)  # every like is an exposure in a checked dataset
    liked = np.zeros_like(exposed)
    liked[np.searchsorted(pair_keys, like_keys[known]), (likes.frames - data.frames.indptr[likes.items])[known]] = True
    liked &= exposed
    n_exposed, n_liked = exposed.sum(1), liked.sum(1)
    few = n_exposed < 2
    none_liked = ~few & (n_liked == 0)
    all_liked = ~few & (n_liked == n_exposed)
    keep = ~(few | none_liked | all_liked)
    n_held_out = len(np.unique(data.part(part).users * data.n_items + data.part(part).items))
    skipped = {
        "pairs_held_out": n_held_out,
        # held-out pairs without any exposure count here too
        "skipped_fewer_than_2_exposed": int(few.sum()) + n_held_out - len(pair_keys),
        "skipped_no_exposed_frame_liked": int(none_liked.sum()),
        "skipped_all_exposed_frames_liked": int(all_liked.sum()),
    }
    arrays = (users[keep], items[keep], liked[keep], counts[keep], exposed[keep])
    return KeyFrameQueries(*(torch.as_tensor(a) for a in arrays)), skipped


def _rank_frames(model: Recommender, q: KeyFrameQueries, ks: tuple[int, ...], batch: int) -> dict[str, float]:
    """Mean HR@K / NDCG@K over the queries, ranking each query's candidate frames."""
    sums: dict[str, float] = {}
    for start in range(0, len(q.users), batch):
        b = slice(start, start + batch)
        scores = model.score_frames(model.on_device(q.users[b]), model.on_device(q.items[b]))  # (B, F_max)
        liked = model.on_device(q.liked[b, : scores.shape[1]])
        # Non-candidates (padding past an item's frames, unexposed frames) are out whatever the
        # model put there (even NaN).
        out = ~model.on_device(q.candidates[b, : scores.shape[1]])
        positive = scores.masked_fill(~liked | out, float("-inf"))
        negative = scores.masked_fill(liked | out, float("-inf"))
        values = hr_ndcg(pessimistic_positions(positive, negative, max(ks)), liked.sum(1), ks)
        for name, v in values.items():
            sums[name] = sums.get(name, 0.0) + float(v.sum())
    n = len(q.users)
    return {name: total / max(n, 1) for name, total in sums.items()}


@torch.no_grad()
def evaluate_keyframes(
    model: Recommender, data: PreparedData, part: str = "test", ks: tuple[int, ...] = FRAME_KS, batch: int = 4096
) -> ProtocolResult:
    """Key-frame HR@K / NDCG@K over held-out (user, item) pairs that have frame likes."""
    model.eval()
    q = keyframe_queries(data, part)
    metrics = _rank_frames(model, q, ks, batch)
    n = len(q.users)
    all_liked = int((q.liked.sum(1) == q.frame_counts).sum())
    details = {
        "part": part,
        "pairs_all_frames_liked": all_liked,
        "mean_frames": float(q.frame_counts.double().mean()) if n else 0.0,
    }
    return ProtocolResult("keyframe", metrics, {}, n, details)


@torch.no_grad()
def evaluate_keyframes_exposed(
    model: Recommender, data: PreparedData, part: str = "test", ks: tuple[int, ...] = FRAME_KS, batch: int = 4096
) -> ProtocolResult:
    """Key-frame HR@K / NDCG@K among the frames each user was exposed to (``keyframe_exposed``)."""
    model.eval()
    q, skipped = keyframe_exposed_queries(data, part)
    metrics = _rank_frames(model, q, ks, batch)
    n = len(q.users)
    details: dict[str, object] = {"part": part, "candidates": "the frames the user was exposed to"}
    details |= skipped
    details |= {
        "mean_exposed_frames": float(q.n_candidates.double().mean()) if n else 0.0,
        "mean_liked_frames": float(q.liked.sum(1).double().mean()) if n else 0.0,
        "mean_frames": float(q.frame_counts.double().mean()) if n else 0.0,
    }
    return ProtocolResult("keyframe_exposed", metrics, {}, n, details)


def _random_order_expectation(n: Tensor, m: Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean over queries of the expected HR@K / NDCG@K of a uniformly random order of n
    candidates of which m are positives (see ``random_keyframe_expectation``)."""
    n = n.double()
    out = {}
    for k in ks:
        top = torch.clamp(n, max=k)
        out[f"HR@{k}"] = float((top / n).mean()) if len(n) else 0.0
        out[f"NDCG@{k}"] = float((m / n * ideal_dcg(top.long(), k) / ideal_dcg(m, k)).mean()) if len(n) else 0.0
    return out


def random_keyframe_expectation(
    data: PreparedData, part: str = "test", ks: tuple[int, ...] = FRAME_KS
) -> dict[str, float]:
    """Analytic expected HR@K / NDCG@K of a uniformly random frame order (RND).

    With n frames of which m are liked, each position holds a liked frame with probability m/n:
    E[HR@K] = min(K, n) / n and E[NDCG@K] = (m/n) sum_{r <= min(K, n)} 1/log2(r+1) / IDCG@K(m).
    """
    q = keyframe_queries(data, part)
    return _random_order_expectation(q.frame_counts, q.liked.sum(1), ks)


def random_keyframe_exposed_expectation(
    data: PreparedData, part: str = "test", ks: tuple[int, ...] = FRAME_KS
) -> dict[str, float]:
    """RND's analytic expectation for ``keyframe_exposed``: the formula of
    ``random_keyframe_expectation`` with n = the user's exposed frames, m = the liked ones,
    averaged over the pairs the protocol keeps."""
    q, _ = keyframe_exposed_queries(data, part)
    return _random_order_expectation(q.n_candidates, q.liked.sum(1), ks)
