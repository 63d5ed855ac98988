"""The recommendation service: one trained run, loaded once, answering requests by raw ids.

Everything a request needs is prepared at load time: the model with its item cache, the frame
table with each frame's image file (checked once), dicts from raw user, item and frame ids to
indices, the training items of each user, the popularity order for the fallback, and the new
items added to the run after training (``RUN/new-items``, jifr.items).

New items are ranked with the catalogue (jifr.items.score): the catalogue's exact top k merged
with every new item's score, a catalogue item first on an exact tie. Their frames are ranked for
each user like any frame. ``add_item`` stores one (checked, encoded, written atomically under a
lock) and makes it visible to the next request. The popularity fallback lists catalogue items
only: a new item has no interactions to be popular with.

The mean user's frame order (``MEAN_USER``) is the model's frame scores averaged over a fixed,
seeded sample of at most 1024 users (the ``@mean_user`` row of ``jifr compare``): one order
for everyone, against which a user's personal order can be compared.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import scipy.sparse as sp
import torch

import jifr
from jifr.checkpoint import load_checkpoint
from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.items.add import NewItemUpload, add_item, run_encoder
from jifr.items.encode import MAX_IMAGE_PIXELS, RunEncoder
from jifr.items.score import mean_user_new_frames, new_frame_orders, recommend_with_new_items
from jifr.items.store import MAX_FRAMES, NewItems, load_new_items, store_dir
from jifr.models.base import Recommender
from jifr.models.diagnostic import MeanUserFrames
from jifr.ranking import top_k_items
from jifr.recommend import FrameTable, ranked_frames, recommend_for_users
from jifr.serve import schemas

log = logging.getLogger(__name__)

MEAN_USER_SAMPLE = 1024
MEAN_USER = (
    f"the model's frame scores averaged over a seeded sample of at most {MEAN_USER_SAMPLE} users "
    "(seed 0; every user when there are fewer): one frame order for everyone"
)


class NotFoundError(LookupError):
    """A request names a user, item or frame the run does not know (or a frame without an image)."""


def image_files(frames: FrameTable, data: PreparedData) -> list[Path | None]:
    """Each frame's image file, or None where the dataset names none or it does not exist.
    Paths are absolute in a prepared dataset; a relative one is taken from the dataset's source."""
    if "path" not in frames:
        return [None] * len(frames["frame_id"])
    source = Path(str(data.meta.get("source", data.directory)))
    out: list[Path | None] = []
    for name in frames["path"].tolist():
        path = (source / name) if name and not Path(name).is_absolute() else Path(name)
        out.append(path if name and path.is_file() else None)
    return out


@dataclass
class Service:
    run_dir: Path
    model: Recommender
    data: PreparedData
    description: dict[str, Any]
    frames: FrameTable
    images: list[Path | None]
    users: dict[str, int]
    items: dict[str, int]
    frame_rows: dict[str, int]
    training: sp.csr_matrix  # (n_users, n_items) the training split, indices sorted
    popularity: np.ndarray  # (n_items,) item indices, most training interactions first
    popularity_counts: np.ndarray  # (n_items,) training interactions of each item
    mean_user: MeanUserFrames | None  # None: the model does not rank frames
    new_items: NewItems  # items added after training; replaced whole (a snapshot) by add_item
    encoder: RunEncoder  # encodes a new item's images as the run's frames were
    new_mean_user: dict[str, list[schemas.ScoredFrame]] = field(default_factory=dict)  # by new item id
    mean_user_orders: dict[int, list[schemas.ScoredFrame]] = field(default_factory=dict)  # by catalogue item
    frame_fields: dict[int, dict[str, Any]] = field(default_factory=dict)  # by frame row: Service.frame
    adding: threading.Lock = field(default_factory=threading.Lock)  # one add_item at a time in this process
    # One model call at a time: torch already spreads one call over the cores, and the mean
    # user's table and the model's item cache are filled lazily, by whichever call comes first.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, run_dir: str | Path, device: torch.device | None = None) -> Service:
        """Load a run (``jifr train``) for serving, its model on ``device`` (default: the CPU);
        a missing or damaged run is a DataError."""
        run_dir = Path(run_dir)
        model, data, description = load_checkpoint(run_dir, device=device)
        if not model.ranks_items:
            raise DataError(run_dir, f"{model.model_name} does not rank items; serving needs a model that does")
        frames = data.frame_table()
        counts = np.bincount(data.train.items, minlength=data.n_items)
        training = data.train.csr(data.n_users, data.n_items)
        training.sort_indices()
        service = cls(
            run_dir=run_dir,
            model=model,
            data=data,
            description=description,
            frames=frames,
            images=image_files(frames, data),
            users={str(u): i for i, u in enumerate(data.user_ids.tolist())},
            items={str(i): k for k, i in enumerate(data.item_ids.tolist())},
            frame_rows={str(f): k for k, f in enumerate(data.frame_ids.tolist())},
            training=training,
            popularity=np.argsort(-counts, kind="stable"),
            popularity_counts=counts,
            mean_user=MeanUserFrames(model, data, MEAN_USER_SAMPLE, seed=0) if model.ranks_frames else None,
            new_items=load_new_items(run_dir, int(data.frames.features.shape[1]), data.frames.features.dtype),
            encoder=run_encoder(data),
        )
        _ = data.interacted  # built once here rather than by concurrent first requests
        # Warm-up: item-only quantities are computed, and compiled loops loaded, here rather than
        # by the first request.
        model.item_cache()
        if data.n_users and data.n_items:
            top_k_items(model, torch.zeros(1, dtype=torch.long), 1, data.n_items)
        log.info(
            "serving %s from %s: %d users, %d items (+ %d new)",
            model.model_name,
            run_dir,
            data.n_users,
            data.n_items,
            len(service.new_items),
        )
        return service

    # ---- lookups --------------------------------------------------------------------------
    def user(self, user_id: str) -> int:
        if user_id not in self.users:
            raise NotFoundError(f"unknown user '{user_id}'")
        return self.users[user_id]

    def item(self, item_id: str) -> int:
        if item_id not in self.items:
            raise NotFoundError(f"unknown item '{item_id}'")
        return self.items[item_id]

    def image(self, frame_id: str) -> Path:
        """The image file of a frame, looked up by id (a request never names a path); a new
        item's frame has its uploaded image in the run's new-items store, under a name jifr chose."""
        new = self.new_items
        if frame_id in new.frame_index:
            name = new.images[new.frame_index[frame_id]]
            path = None if name is None else store_dir(self.run_dir) / name
        elif frame_id in self.frame_rows:
            path = self.images[self.frame_rows[frame_id]]
        else:
            raise NotFoundError(f"unknown frame '{frame_id}'")
        if path is None:
            raise NotFoundError(f"frame '{frame_id}' has no image file")
        if not path.is_file():
            raise NotFoundError(f"the image file of frame '{frame_id}' is missing: {path.name}")
        return path

    def search_users(self, prefix: str, limit: int) -> schemas.UserMatches:
        """User ids starting with ``prefix``: the ids are sorted, so the matches are one run."""
        ids = self.data.user_ids
        start = int(np.searchsorted(ids, prefix, side="left"))
        found = [str(u) for u in ids[start : start + limit + 1].tolist() if str(u).startswith(prefix)]
        return schemas.UserMatches(prefix=prefix, users=found[:limit], more=len(found) > limit)

    # ---- frames ---------------------------------------------------------------------------
    def frame(self, row: int, score: float | None = None) -> dict[str, Any]:
        """Catalogue frame ``row`` as the API shows it: id, title and image URL (and ``score``).
        Each frame's fields are worked out once and kept."""
        out = self.frame_fields.get(row)
        if out is None:
            frame_id = str(self.frames["frame_id"][row])
            title = str(self.frames["title"][row]) if "title" in self.frames and self.frames["title"][row] else None
            url = f"/v1/frames/{quote(frame_id, safe='')}/image" if self.images[row] is not None else None
            out = self.frame_fields[row] = {"frame_id": frame_id, "title": title, "image_url": url}
        return out if score is None else out | {"score": score}

    def new_frame(self, new: NewItems, row: int, score: float | None = None) -> dict[str, Any]:
        """A new item's frame (row ``row`` of ``new``) as ``frame`` gives a catalogue frame."""
        frame_id = new.frame_ids[row]
        url = f"/v1/frames/{quote(frame_id, safe='')}/image" if new.images[row] is not None else None
        out: dict[str, Any] = {"frame_id": frame_id, "title": None, "image_url": url}
        return out if score is None else out | {"score": score}

    def scored_new_frames(self, new: NewItems, rows: np.ndarray, scores: np.ndarray) -> list[schemas.ScoredFrame]:
        pairs = zip(rows.tolist(), scores.tolist(), strict=True)
        return [schemas.ScoredFrame(**self.new_frame(new, row, score)) for row, score in pairs]

    def scored_frames(self, rows: np.ndarray, scores: np.ndarray) -> list[schemas.ScoredFrame]:
        """Catalogue frames ``rows`` with their ``scores``. The fields are jifr's own (``frame``),
        so the objects are built without validating them again."""
        return [
            schemas.ScoredFrame.model_construct(**self.frame(r), score=s)
            for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def mean_user_frames(self, items: list[int]) -> dict[int, list[schemas.ScoredFrame]]:
        """The mean user's frame order of each item (empty for models that do not rank frames),
        computed once per item and kept: it does not depend on the request."""
        if self.mean_user is None or not items:
            return {i: [] for i in items}
        missing = sorted(set(items) - self.mean_user_orders.keys())
        if missing:
            with self.lock:
                orders = ranked_frames(
                    self.mean_user, self.data, torch.zeros(len(missing), dtype=torch.long), torch.tensor(missing)
                )
            for item, order in zip(missing, orders, strict=True):
                self.mean_user_orders[item] = self.scored_frames(*order)
        return {i: self.mean_user_orders[i] for i in items}

    def new_mean_user_frames(self, new: NewItems, item: int) -> list[schemas.ScoredFrame]:
        """The mean user's frame order of new item ``item`` of ``new`` (kept: a new item never changes)."""
        if self.mean_user is None:
            return []
        item_id = new.item_ids[item]
        if item_id not in self.new_mean_user:
            with self.lock:
                rows, scores = mean_user_new_frames(self.model, self.mean_user.users, item, new)
            self.new_mean_user[item_id] = self.scored_new_frames(new, rows, scores)
        return self.new_mean_user[item_id]

    def title(self, item: int) -> str | None:
        titles = self.data.meta.get("item_titles") or []
        return str(titles[item]) if titles and titles[item] else None

    # ---- recommendations ------------------------------------------------------------------
    def recommend(
        self, user_ids: list[str], k: int, exclude_seen: bool = True, fallback: schemas.Fallback = "none"
    ) -> list[schemas.UserRecommendations]:
        """Top-``k`` items of each user, scored in one batch. An unknown user is a NotFoundError,
        unless ``fallback`` is "popular": then it gets the most popular items, marked as such."""
        unknown = list(dict.fromkeys(u for u in user_ids if u not in self.users))
        if unknown and fallback != "popular":
            shown = ", ".join(f"'{u}'" for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise NotFoundError(f"unknown user{'s' if len(unknown) > 1 else ''} {shown} (fallback=popular serves them)")
        known = list(dict.fromkeys(u for u in user_ids if u in self.users))
        indices, new = [self.users[u] for u in known], self.new_items
        with self.lock:
            lists = recommend_for_users(
                self.model, self.data, indices, k, exclude_seen, self.frames, describe=self.scored_frames
            )
            lists = recommend_with_new_items(self.model, indices, lists, k, new)
        popular = self.popularity[:k].tolist() if unknown else []
        catalogue = [self.items[e["item_id"]] for entries in lists for e in entries if "new_item" not in e]
        mean = self.mean_user_frames(catalogue + popular)
        own = {
            u: [self.recommended_item(e, mean, new) for e in entries] for u, entries in zip(known, lists, strict=True)
        }
        fallback_items = [self.popular_item(rank, item, mean[item]) for rank, item in enumerate(popular)]
        name = self.model.model_name
        return [
            schemas.UserRecommendations(user_id=u, model=name, exclude_seen=exclude_seen, items=own[u])
            if u in own
            else schemas.UserRecommendations(
                user_id=u, model=name, fallback="popular", exclude_seen=exclude_seen, items=fallback_items
            )
            for u in user_ids
        ]

    def recommended_item(
        self, entry: dict[str, Any], mean: dict[int, list[schemas.ScoredFrame]], new: NewItems
    ) -> schemas.RecommendedItem:
        """An entry of ``recommend_for_users`` (or, for a new item, ``recommend_with_new_items``)
        with image URLs and the mean user's order added."""
        if "new_item" in entry:
            frames = [schemas.ScoredFrame(**self.new_frame(new, f["row"], f["score"])) for f in entry.get("frames", [])]
            return schemas.RecommendedItem(
                rank=entry["rank"],
                item_id=entry["item_id"],
                title=entry.get("title"),
                score=entry["score"],
                key_frame=frames[0] if frames else None,
                frames=frames,
                mean_user_frames=self.new_mean_user_frames(new, entry["new_item"]),
                new=True,
            )
        item = self.items[entry["item_id"]]
        frames = entry.get("frames", [])  # scored_frames
        return schemas.RecommendedItem(
            rank=entry["rank"],
            item_id=entry["item_id"],
            title=self.title(item),
            score=entry["score"],
            key_frame=frames[0] if frames else None,
            frames=frames,
            mean_user_frames=mean[item],
        )

    def popular_item(self, rank: int, item: int, mean: list[schemas.ScoredFrame]) -> schemas.RecommendedItem:
        """A popularity fallback item: its frames (and key frame) in the mean user's order."""
        return schemas.RecommendedItem(
            rank=rank + 1,
            item_id=str(self.data.item_ids[item]),
            title=self.title(item),
            score=float(self.popularity_counts[item]),
            key_frame=mean[0] if mean else None,
            frames=mean,
            mean_user_frames=mean,
        )

    def item_frames(self, user_id: str, item_id: str) -> schemas.ItemFrames:
        """One item's frames ranked for one user, beside the mean user's order."""
        user, new = self.user(user_id), self.new_items
        if item_id in new.item_index:
            return self.new_item_frames(user_id, user, new, new.item_index[item_id])
        item = self.item(item_id)
        if self.mean_user is None:
            raise NotFoundError(f"{self.model.model_name} does not rank key frames")
        with self.lock:
            ((rows, scores),) = ranked_frames(self.model, self.data, torch.tensor([user]), torch.tensor([item]))
        frames = self.scored_frames(rows, scores)
        return schemas.ItemFrames(
            user_id=user_id,
            item_id=item_id,
            title=self.title(item),
            model=self.model.model_name,
            key_frame=frames[0],
            frames=frames,
            mean_user_frames=self.mean_user_frames([item])[item],
        )

    def new_item_frames(self, user_id: str, user: int, new: NewItems, item: int) -> schemas.ItemFrames:
        """``item_frames`` of a new item: its frames scored from their features for the user."""
        if self.mean_user is None:
            raise NotFoundError(f"{self.model.model_name} does not rank key frames")
        with self.lock:
            ((rows, scores),) = new_frame_orders(self.model, [user], [item], new)
        frames = self.scored_new_frames(new, rows, scores)
        return schemas.ItemFrames(
            user_id=user_id,
            item_id=new.item_ids[item],
            title=new.titles[item],
            model=self.model.model_name,
            key_frame=frames[0],
            frames=frames,
            mean_user_frames=self.new_mean_user_frames(new, item),
        )

    # ---- new items ------------------------------------------------------------------------
    def add_item(self, upload: NewItemUpload) -> schemas.NewItemAdded:
        """Check, encode and store a new item (jifr.items.add); the next request ranks it. A
        NewItemError (nothing written) when it cannot be added."""
        with self.adding:
            catalogue = (self.items, self.frame_rows)
            self.new_items = add_item(self.run_dir, self.model, self.data, upload, self.encoder, catalogue)
        new = self.new_items
        item = new.item_index[upload.item_id]
        log.info("added new item %s (%d frames)", upload.item_id, len(new.frame_rows(item)))
        return schemas.NewItemAdded(
            item_id=new.item_ids[item],
            title=new.titles[item],
            frames=[schemas.Frame(**self.new_frame(new, row)) for row in new.frame_rows(item)],
            n_new_items=len(new),
        )

    def new_items_info(self) -> schemas.NewItemsInfo:
        model = self.model
        return schemas.NewItemsInfo(
            count=len(self.new_items),
            scoring=model.new_item_score if model.scores_new_items() else None,
            refusal=None if model.scores_new_items() else model.new_item_refusal(),
            image_encoder=self.encoder.name,
            max_frames=MAX_FRAMES,
            max_request_bytes=schemas.MAX_NEW_ITEM_BYTES,
            max_image_pixels=MAX_IMAGE_PIXELS,
        )

    def training_items(self, user_id: str) -> schemas.TrainingItems:
        """The items the user's training split holds, each with its frames (what the model saw)."""
        indptr = self.data.frames.indptr
        items = [
            schemas.HistoryItem(
                item_id=str(self.data.item_ids[item]),
                title=self.title(item),
                frames=[schemas.Frame(**self.frame(row)) for row in range(int(indptr[item]), int(indptr[item + 1]))],
            )
            for item in self.training[self.user(user_id)].indices.tolist()
        ]
        return schemas.TrainingItems(user_id=user_id, items=items)

    def info(self) -> schemas.Info:
        d = self.description
        data = schemas.DataInfo(
            fingerprint=self.data.fingerprint,
            n_users=self.data.n_users,
            n_items=self.data.n_items,
            n_frames=len(self.data.frame_ids),
            n_interactions={p: len(self.data.part(p)) for p in ("train", "valid", "test")},
            frames_with_images=sum(path is not None for path in self.images),
        )
        return schemas.Info(
            model=self.model.model_name,
            ranks_frames=self.model.ranks_frames,
            config={"model": d["model_config"], "train": d.get("train_config"), "seed": d["seed"]},
            data=data,
            jifr_version=jifr.__version__,
            trained_with=d.get("jifr_version"),
            mean_user=MEAN_USER,
            new_items=self.new_items_info(),
        )
