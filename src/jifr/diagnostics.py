"""Attention diagnostics: does JIFR's attention do anything, or is it uniform in disguise?

Reported with every JIFR result as the pseudo-protocol ``attention``:
- ``alpha_entropy_ratio``: mean over items with two or more frames of H(alpha_i) / ln |S_i|,
  the entropy of the content attention (eq. 7) relative to uniform. 1 = exactly uniform, lower
  = the attention prefers some frames.
- ``alpha_max``: mean over those items of the largest alpha_ij, and ``alpha_uniform_max`` the
  same for uniform weights (mean of 1 / |S_i|), to compare with.
- ``alpha_logit_spread``: mean over those items of max_j - min_j of the logits of eq. (6);
  0 = uniform. Weights shrunk to ~1e-7 by L2 show here as a spread near 0.
- ``beta_visual_mean`` and ``beta_visual_std``: mean and standard deviation over the held-out
  (user, item) pairs of the part of beta_ai2 (eq. 10), the weight of the visual score. Both are
  1/2 and 0 with rating attention off; a std near 0 means beta is a constant, not attention.
"""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np
import torch

from jifr.data.prepared import PreparedData
from jifr.evaluate import ProtocolResult
from jifr.models.frames import masked_softmax
from jifr.models.jifr import JIFR

MAX_PAIRS = 50_000  # held-out pairs scored for beta (evenly spaced when there are more)
ITEM_BATCH = 1024


def has_attention_diagnostics(model: object) -> TypeGuard[JIFR]:
    return isinstance(model, JIFR)


@torch.no_grad()
def attention_diagnostics(model: JIFR, data: PreparedData, part: str = "test") -> ProtocolResult:
    model.eval()
    content = _content_statistics(model, data)
    beta = _visual_weights(model, data, part)
    metrics = content | {
        "beta_visual_mean": float(beta.mean()) if len(beta) else 0.5,
        "beta_visual_std": float(beta.std()) if len(beta) > 1 else 0.0,
    }
    details = {
        "part": part,
        "content_attention": model.config.content_attention,
        "rating_attention": model.config.rating_attention,
        "n_items_with_several_frames": int((data.frames.counts >= 2).sum()),
        "n_pairs_for_beta": len(beta),
    }
    return ProtocolResult("attention", metrics, {}, len(beta), details)


def _content_statistics(model: JIFR, data: PreparedData) -> dict[str, float]:
    items = model.on_device(torch.as_tensor(np.flatnonzero(data.frames.counts >= 2)))
    if not len(items):
        return {"alpha_entropy_ratio": 1.0, "alpha_max": 1.0, "alpha_uniform_max": 1.0, "alpha_logit_spread": 0.0}
    entropy, largest, spread = [], [], []
    for start in range(0, len(items), ITEM_BATCH):
        logits, mask = model.content_logits(items[start : start + ITEM_BATCH])
        alpha = masked_softmax(logits, mask)
        n_frames = mask.sum(1).double()
        plogp = torch.where(mask, alpha * torch.log(alpha.clamp_min(1e-30)), 0.0)
        entropy.append(-plogp.sum(1).double() / torch.log(n_frames))
        largest.append(alpha.max(1).values.double())
        high = logits.masked_fill(~mask, -math.inf).max(1).values
        low = logits.masked_fill(~mask, math.inf).min(1).values
        spread.append((high - low).double())
    uniform = 1.0 / data.frames.counts[data.frames.counts >= 2]
    return {
        "alpha_entropy_ratio": float(torch.cat(entropy).mean()),
        "alpha_max": float(torch.cat(largest).mean()),
        "alpha_uniform_max": float(uniform.mean()),
        "alpha_logit_spread": float(torch.cat(spread).mean()),
    }


def _visual_weights(model: JIFR, data: PreparedData, part: str) -> np.ndarray:
    pairs = data.part(part)
    chosen = np.unique(np.linspace(0, len(pairs) - 1, MAX_PAIRS).astype(np.int64)) if len(pairs) > MAX_PAIRS else None
    users = pairs.users if chosen is None else pairs.users[chosen]
    items = pairs.items if chosen is None else pairs.items[chosen]
    weights = [
        model.visual_weight(
            model.on_device(torch.as_tensor(users[s : s + ITEM_BATCH])),
            model.on_device(torch.as_tensor(items[s : s + ITEM_BATCH])),
        )
        for s in range(0, len(users), ITEM_BATCH)
    ]
    return torch.cat(weights).double().cpu().numpy() if weights else np.zeros(0)
