"""Serving-side recommendation: top-K items, each with its personalised key frame.

The command line (``jifr recommend``) and the service (``jifr serve``) share these functions:
items are ranked by ``jifr.ranking.top_k_items`` for a batch of users at once, and the frames of
all the recommended (user, item) pairs are scored in batched ``score_frames`` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.items.score import public_new_entries, recommend_with_new_items, scored_new_items
from jifr.models.base import Recommender
from jifr.ranking import top_k_items

FRAME_PAIR_BUDGET = 2**14  # (user, item) pairs whose frames are scored in one call

FrameTable = dict[str, np.ndarray]  # PreparedData.frame_table(): frame_id, item_id[, path][, title]


def user_index(data: PreparedData, user: str) -> int:
    where = np.flatnonzero(data.user_ids == user)
    if not len(where):
        raise DataError(data.directory, f"unknown user '{user}' (not in the prepared data)")
    return int(where[0])


@torch.no_grad()
def ranked_frames(
    model: Recommender, data: PreparedData, users: torch.Tensor, items: torch.Tensor
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each (user, item) pair ((P,) users, (P,) items): the item's frame rows (global frame
    indices) in the user's order, best first (ties: the item's earlier frame), and their scores."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    indptr = data.frames.indptr
    for start in range(0, len(items), FRAME_PAIR_BUDGET):
        block = items[start : start + FRAME_PAIR_BUDGET]
        pair_users = model.on_device(users[start : start + FRAME_PAIR_BUDGET])
        scores = model.score_frames(pair_users, model.on_device(block)).cpu().numpy()  # (b, F_max)
        for row, item in zip(scores, block.tolist(), strict=True):
            first, count = int(indptr[item]), int(indptr[item + 1] - indptr[item])
            order = np.argsort(-row[:count], kind="stable")
            out.append((first + order, row[order]))
    return out


def describe_frames(table: FrameTable, rows: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """Frames as dicts: frame_id, score and, where the dataset has them, title and path."""
    out = []
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        frame: dict[str, Any] = {"frame_id": str(table["frame_id"][row]), "score": float(score)}
        for column in ("title", "path"):
            if column in table and table[column][row]:
                frame[column] = str(table[column][row])
        out.append(frame)
    return out


@torch.no_grad()
def recommend_for_users(
    model: Recommender,
    data: PreparedData,
    users: Sequence[int] | np.ndarray,
    k: int = 10,
    exclude_seen: bool = True,
    frame_table: FrameTable | None = None,
    describe: Callable[[np.ndarray, np.ndarray], list[Any]] | None = None,
) -> list[list[dict[str, Any]]]:
    """Top-``k`` items of each user (indices), best first, as dicts: rank, item_id, score,
    title (when the dataset has titles) and, for models that rank frames, ``frames`` (every frame
    of the item in the user's order, with scores) and ``key_frame`` (the first of them).

    With ``exclude_seen`` every item the user interacted with, in any split, is left out; fewer
    than ``k`` items come back when fewer remain. ``frame_table`` saves re-reading it per call.
    ``describe(rows, scores)`` turns an item's frame rows and scores, in the user's order, into
    its ``frames`` (default: ``describe_frames`` dicts).
    A negative ``k`` or a model that does not rank items is a ValueError (``top_k_items``).
    """
    user_tensor = torch.as_tensor(np.asarray(users, dtype=np.int64))
    exclude = data.interacted if exclude_seen else None
    scores, items = top_k_items(model, user_tensor, k, data.n_items, exclude)  # (B, k), -1 padded
    kept = items >= 0
    pair_users, pair_items = user_tensor[:, None].expand_as(items)[kept], items[kept]
    frames = None
    if model.ranks_frames and len(pair_items):
        if describe is None:
            table = frame_table if frame_table is not None else data.frame_table()
            describe = partial(describe_frames, table)
        frames = iter(ranked_frames(model, data, pair_users, pair_items))
    titles = data.meta.get("item_titles") or []
    results = []
    for user_scores, user_items in zip(scores.tolist(), items.tolist(), strict=True):
        entries = []
        for rank, (score, item) in enumerate(zip(user_scores, user_items, strict=True)):
            if item < 0:
                break
            entry: dict[str, Any] = {"rank": rank + 1, "item_id": str(data.item_ids[item]), "score": float(score)}
            if titles:
                entry["title"] = titles[item]
            if frames is not None and describe is not None:
                entry["frames"] = describe(*next(frames))
                entry["key_frame"] = entry["frames"][0]
            entries.append(entry)
        results.append(entries)
    return results


def recommend_for_user(
    model: Recommender,
    data: PreparedData,
    user: str,
    k: int = 10,
    exclude_seen: bool = True,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Top-``k`` items of ``user`` (raw id); for visual models each item carries every frame's
    key-frame score, best first, and the chosen key frame is the first.

    With ``exclude_seen`` (the default) every item the user is known to have interacted with, in
    the training, validation or test split, is left out. ``k = 0`` gives an empty list; fewer
    than ``k`` items come back when fewer remain. With ``run_dir``, the run's new items
    (``jifr items add``) are ranked with the catalogue, exactly as the service ranks them, and
    marked ``"new": true``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not model.ranks_items:
        raise ValueError(f"{model.model_name} does not rank items; recommend needs a model that does")
    index = user_index(data, user)
    lists = recommend_for_users(model, data, [index], k, exclude_seen)
    new = scored_new_items(run_dir, model, data) if run_dir is not None else None
    if new is None or run_dir is None:
        return {"user_id": user, "model": model.model_name, "items": lists[0]}
    merged = recommend_with_new_items(model, [index], lists, k, new)[0]
    return {"user_id": user, "model": model.model_name, "items": public_new_entries(merged, new, run_dir)}


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
