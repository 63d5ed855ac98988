"""Ranking metrics computed from pessimistic ranks.

For one query (a user, or a (user, item) pair for key frames) with positives P and negatives N:
- position of a positive: 1 + the number of candidates ranked above it, where a negative with an
  equal score counts as above (ties are broken pessimistically);
- non-finite scores: ``-inf`` marks padding and non-candidates; a positive scored NaN or ``+inf``
  is a miss and a negative scored NaN ranks above every positive (a diverged model scores 0);
- HR@K = |{p : position(p) <= K}| / |P|  (recall-style: fraction of the positives in the top K);
- NDCG@K = DCG@K / IDCG@K, DCG@K = sum_{position(p) <= K} 1 / log2(position(p) + 1),
  IDCG@K = sum_{r=1}^{min(K, |P|)} 1 / log2(r + 1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def pessimistic_positions(positive: Tensor, negative: Tensor, k_max: int) -> Tensor:
    """1-based positions of each query's positives, exact up to ``k_max``.

    ``positive`` (B, P) and ``negative`` (B, N) hold scores, ``-inf`` marking padding and
    non-candidates. Returns (B, P) float positions, sorted best first; ``inf`` for padding.
    Positions beyond ``k_max`` are only guaranteed to be > ``k_max``.

    A broken score never helps the model: a positive scored NaN or ``+inf`` is a miss (position
    ``inf``), and a negative scored NaN ranks above every positive. Comparisons with NaN are
    always False, so without this a model that diverged to NaN would score a perfect ranking.
    """
    broken = torch.isnan(positive) | torch.isposinf(positive)
    k = min(k_max, negative.shape[1])
    # torch.topk ranks NaN above every number (on the CPU and on CUDA), so a row's best k hold
    # its NaN negatives first; made +inf there, they are what making them +inf before the topk
    # gives, without a copy of ``negative`` (at full ranking, every score of the chunk's users).
    top = torch.topk(negative, k, dim=1).values if k > 0 else negative[:, :0]
    top = top.masked_fill(torch.isnan(top), float("inf"))
    # Broken positives sort last, as padding does, so they do not push real positives down.
    ordered = torch.sort(positive.masked_fill(broken, float("-inf")), dim=1, descending=True).values
    ahead = (top[:, None, :] >= ordered[:, :, None]).sum(-1)  # negatives at or above, capped at k
    rank_among_positives = torch.arange(1, positive.shape[1] + 1, device=positive.device)[None, :]
    positions = (ahead + rank_among_positives).to(torch.float64)
    return positions.masked_fill(torch.isneginf(ordered), float("inf"))


def ideal_dcg(n_positive: Tensor, k: int) -> Tensor:
    """(B,) IDCG@k for queries with ``n_positive`` (B,) positives."""
    device = n_positive.device
    gains = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64, device=device), torch.cumsum(gains, 0)])
    return cumulative[n_positive.clamp(max=k)]


def hr_ndcg(positions: Tensor, n_positive: Tensor, ks: tuple[int, ...]) -> dict[str, Tensor]:
    """Per-query HR@K and NDCG@K, each (B,), from (B, P) positions and (B,) positive counts."""
    discounts = 1.0 / torch.log2(positions + 1.0)
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = positions <= k
        out[f"HR@{k}"] = hit.sum(1).double() / n_positive
        out[f"NDCG@{k}"] = (discounts * hit).sum(1) / ideal_dcg(n_positive, k)
    return out
