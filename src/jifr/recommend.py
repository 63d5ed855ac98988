"""Serving-side recommendation: top-K items, each with its personalised key frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.models.base import Recommender


def user_index(data: PreparedData, user: str) -> int:
    where = np.flatnonzero(data.user_ids == user)
    if not len(where):
        raise DataError(data.directory, f"unknown user '{user}' (not in the prepared data)")
    return int(where[0])


@torch.no_grad()
def recommend_for_user(
    model: Recommender, data: PreparedData, user: str, k: int = 10, exclude_seen: bool = True
) -> dict[str, Any]:
    """Top-``k`` items of ``user`` (raw id); for visual models each item carries every frame's
    key-frame score, best first, and the chosen key frame is the first.

    With ``exclude_seen`` (the default) every item the user is known to have interacted with, in
    the training, validation or test split, is left out. ``k = 0`` gives an empty list; fewer
    than ``k`` items come back when fewer remain.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not model.ranks_items:
        raise ValueError(f"{model.model_name} does not rank items; recommend needs a model that does")
    model.eval()
    u = user_index(data, user)
    scores = model.score_all(torch.tensor([u]))[0].clone()
    if exclude_seen:
        scores[torch.as_tensor(data.interacted[u].indices)] = float("-inf")
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum()))).indices
    if not len(top):
        return {"user_id": user, "model": model.model_name, "items": []}
    frames = data.frame_table()
    titles = data.meta.get("item_titles") or []
    frame_scores = model.score_frames(torch.full((len(top),), u), top) if model.ranks_frames else None
    items = []
    for rank, item in enumerate(top.tolist()):
        entry: dict[str, Any] = {"rank": rank + 1, "item_id": str(data.item_ids[item]), "score": float(scores[item])}
        if titles:
            entry["title"] = titles[item]
        if frame_scores is not None:
            entry["frames"] = _ranked_frames(data, frames, item, frame_scores[rank])
            entry["key_frame"] = entry["frames"][0]
        items.append(entry)
    return {"user_id": user, "model": model.model_name, "items": items}


def _ranked_frames(
    data: PreparedData, frames: dict[str, np.ndarray], item: int, scores: torch.Tensor
) -> list[dict[str, Any]]:
    start, stop = int(data.frames.indptr[item]), int(data.frames.indptr[item + 1])
    order = torch.argsort(scores[: stop - start], descending=True, stable=True).tolist()
    out = []
    for slot in order:
        row = start + slot
        frame: dict[str, Any] = {"frame_id": str(data.frame_ids[row]), "score": float(scores[slot])}
        for column in ("title", "path"):
            if column in frames and frames[column][row]:
                frame[column] = str(frames[column][row])
        out.append(frame)
    return out


def format_recommendations(recommendations: dict[str, Any]) -> str:
    lines = [f"user {recommendations['user_id']} ({recommendations['model']})"]
    for item in recommendations["items"]:
        title = f" {item['title']}" if "title" in item else ""
        lines.append(f"{item['rank']:3d}. {item['item_id']}{title}  score {item['score']:.4f}")
        if "key_frame" in item:
            key = item["key_frame"]
            label = key.get("title") or key["frame_id"]
            where = f"  [{key['path']}]" if "path" in key else ""
            others = ", ".join(f"{f['frame_id']}={f['score']:.3f}" for f in item["frames"])
            lines.append(f"     key frame: {label}{where}\n     all frames: {others}")
    return "\n".join(lines)
