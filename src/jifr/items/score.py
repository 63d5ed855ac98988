"""New items in rankings: their scores, their frames' orders, and an exact merge with the catalogue.

The catalogue's top K comes from ``jifr.ranking.top_k_items`` (through ``recommend_for_users``);
every new item is scored (``Recommender.new_item_scores``); the union's top K is one stable sort
of the two, the catalogue's entries first, so on an exact tie a catalogue item ranks before a new
item (and a new item before a later one). No user has interacted with a new item, so excluding
known items never removes one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.items.store import NewItems, load_new_items, store_dir
from jifr.models.base import Recommender

log = logging.getLogger(__name__)


def scored_new_items(run_dir: Path, model: Recommender, data: PreparedData) -> NewItems | None:
    """The run's new items, to rank with the catalogue (``jifr recommend``, ``jifr export``);
    None when it has none. A store the model cannot score is a DataError (``jifr items add``
    never writes one)."""
    new = load_new_items(run_dir, int(data.frames.features.shape[1]), data.frames.features.dtype)
    if not len(new):
        return None
    if not model.scores_new_items():
        raise DataError(store_dir(run_dir), f"holds {len(new)} new item(s), but {model.new_item_refusal()}")
    log.info("ranking %d new item(s) of %s with the catalogue", len(new), store_dir(run_dir))
    return new


def _features(model: Recommender, new: NewItems) -> torch.Tensor:
    return model.on_device(torch.from_numpy(np.asarray(new.features, dtype=np.float32)))


@torch.no_grad()
def new_item_scores(model: Recommender, users: Sequence[int] | np.ndarray, new: NewItems) -> np.ndarray:
    """(B, n_new) the new items' scores for ``users`` (indices); NaN counts as -inf, as in ranking."""
    user_tensor = torch.as_tensor(np.asarray(users, dtype=np.int64))
    if not len(new) or not len(user_tensor):
        return np.zeros((len(user_tensor), len(new)), dtype=np.float32)
    counts = model.on_device(torch.as_tensor(new.counts))
    scores = model.new_item_scores(model.on_device(user_tensor), _features(model, new), counts).cpu().numpy()
    return np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf)


@torch.no_grad()
def new_frame_orders(
    model: Recommender, users: Sequence[int], items: Sequence[int], new: NewItems
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each (user, new item) pair: the item's frame rows (in ``new``) in the user's order,
    best first (ties: the earlier frame), and their scores (``Recommender.new_frame_scores``)."""
    rows = [np.asarray(new.frame_rows(item)) for item in items]
    if not rows:
        return []
    pair_users = torch.as_tensor(np.repeat(np.asarray(users, dtype=np.int64), [len(r) for r in rows]))
    slot = torch.as_tensor(np.concatenate(rows))
    on_device = model.new_frame_scores(model.on_device(pair_users), _features(model, new), model.on_device(slot))
    scores = on_device.cpu().numpy()
    out, start = [], 0
    for item_rows in rows:
        block = scores[start : start + len(item_rows)]
        order = np.argsort(-block, kind="stable")
        out.append((item_rows[order], block[order]))
        start += len(item_rows)
    return out


@torch.no_grad()
def mean_user_new_frames(
    model: Recommender, sample: torch.Tensor, item: int, new: NewItems
) -> tuple[np.ndarray, np.ndarray]:
    """A new item's frame rows in the mean user's order: each frame's score averaged over the
    ``sample`` of users (the service's mean user), best first, and those mean scores."""
    rows = np.asarray(new.frame_rows(item))
    pair_users = model.on_device(sample.repeat_interleave(len(rows)))
    slot = model.on_device(torch.as_tensor(np.tile(rows, len(sample))))
    mean = model.new_frame_scores(pair_users, _features(model, new), slot).view(len(sample), len(rows)).mean(0)
    scores = mean.cpu().numpy()
    order = np.argsort(-scores, kind="stable")
    return rows[order], scores[order]


def merge_top_k(top: np.ndarray, extra: np.ndarray, k: int) -> np.ndarray:
    """(B, k) columns of ``[top | extra]`` holding each row's best ``k``, best first; -1 where
    fewer than k have a score above -inf. ``top`` (B, t) is a ranked top list (-inf padded),
    ``extra`` (B, m) more candidates; the sort is stable, so ties keep ``top`` first."""
    both = np.concatenate([top, extra], axis=1).astype(np.float64)
    order = np.argsort(-both, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(both, order, 1) > -np.inf, order, -1)


def recommend_with_new_items(
    model: Recommender, users: Sequence[int], lists: list[list[dict[str, Any]]], k: int, new: NewItems
) -> list[list[dict[str, Any]]]:
    """``recommend_for_users``' lists (each user's catalogue top ``k``) with the new items merged
    in exactly (``merge_top_k``). A new item's entry holds rank, item_id, score, ``new_item``
    (its index in ``new``) and, for models that rank frames, ``frames`` ({"frame_id", "score",
    "row"}, best first; "row" indexes ``new``) and ``key_frame``."""
    if not len(new) or not lists:
        return lists
    extra = new_item_scores(model, users, new)
    top = np.full((len(lists), k), -np.inf)
    for row, entries in enumerate(lists):
        top[row, : len(entries)] = [entry["score"] for entry in entries]
    chosen = merge_top_k(top, extra, k)
    picks = (
        [(row, int(c) - k) for row in range(len(lists)) for c in chosen[row] if c >= k] if model.ranks_frames else []
    )
    orders = iter(new_frame_orders(model, [users[r] for r, _ in picks], [j for _, j in picks], new))
    merged = []
    for row, entries in enumerate(lists):
        out = []
        for rank, column in enumerate(c for c in chosen[row].tolist() if c >= 0):
            entry = dict(entries[column]) if column < k else _new_entry(new, column - k, float(extra[row, column - k]))
            if column >= k and model.ranks_frames:
                rows, scores = next(orders)
                entry["frames"] = [
                    {"frame_id": new.frame_ids[r], "score": float(s), "row": int(r)}
                    for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
                ]
                entry["key_frame"] = entry["frames"][0]
            out.append(entry | {"rank": rank + 1})
        merged.append(out)
    return merged


def _new_entry(new: NewItems, item: int, score: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"item_id": new.item_ids[item], "score": score, "new_item": item}
    if new.titles[item]:
        entry["title"] = new.titles[item]
    return entry


def public_new_entries(entries: list[dict[str, Any]], new: NewItems, run_dir: Path) -> list[dict[str, Any]]:
    """``recommend_with_new_items``' entries as ``jifr recommend`` prints them: a new item is
    marked ``"new": true`` and its frames carry their image's path (where it was uploaded) rather
    than their row in the store."""
    out = []
    for entry in entries:
        if "new_item" not in entry:
            out.append(entry)
            continue
        public = {key: value for key, value in entry.items() if key not in ("new_item", "frames", "key_frame")}
        public["new"] = True
        if "frames" in entry:
            public["frames"] = [_public_frame(frame, new, run_dir) for frame in entry["frames"]]
            public["key_frame"] = public["frames"][0]
        out.append(public)
    return out


def _public_frame(frame: dict[str, Any], new: NewItems, run_dir: Path) -> dict[str, Any]:
    image = new.images[frame["row"]]
    public = {"frame_id": frame["frame_id"], "score": frame["score"]}
    return public | ({"path": str(store_dir(run_dir) / image)} if image is not None else {})
