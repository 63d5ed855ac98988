"""Adding a new item to a run: the one function behind ``jifr items add`` and ``POST /v1/items``."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jifr.data.prepared import PreparedData
from jifr.items.encode import RunEncoder, decode_image
from jifr.items.store import (
    NewItem,
    NewItemConflict,
    NewItemInvalid,
    NewItems,
    append_item,
    check_unique,
    checked_features,
    checked_frame_ids,
    checked_id,
    checked_title,
)
from jifr.models.base import Recommender


@dataclass(frozen=True)
class NewItemUpload:
    """A new item as it arrives: its frames as image files (their bytes) or as precomputed
    features ((F, D) numbers), never both; frame ids are optional (``ITEM-1``, ``ITEM-2``, ...)."""

    item_id: str
    title: str | None = None
    frame_ids: tuple[str, ...] = ()
    images: tuple[bytes, ...] = ()
    features: Any = None


def run_encoder(data: PreparedData) -> RunEncoder:
    """The encoder of the run's frame features, as its prepared data records it (or none)."""
    return RunEncoder(data.meta.get("frame_encoder"), int(data.frames.features.shape[1]))


def add_item(
    run_dir: Path,
    model: Recommender,
    data: PreparedData,
    upload: NewItemUpload,
    encoder: RunEncoder,
    catalogue: tuple[Container[str], Container[str]],
) -> NewItems:
    """Check, encode and store a new item; returns the run's new items with it.

    ``catalogue`` holds the run's item ids and frame ids, which a new item may not reuse (nor
    those of earlier new items). NewItemConflict when the model cannot score new items, an id
    is taken or images come where the run's encoder is unknown; NewItemInvalid when the item is
    malformed (empty or repeated ids, no frames or too many, features of the wrong size or not
    finite, a file that is not an image). Nothing is written unless the item is accepted.
    """
    if not model.scores_new_items():
        raise NewItemConflict(model.new_item_refusal())
    item_id, title = checked_id(upload.item_id, "item id"), checked_title(upload.title)
    if upload.images and upload.features is not None:
        raise NewItemInvalid("give the frames' images or their features, not both")
    dim, dtype = int(data.frames.features.shape[1]), data.frames.features.dtype
    features = None if upload.features is None else checked_features(upload.features, dim, dtype)
    frame_ids = checked_frame_ids(item_id, upload.frame_ids, len(upload.images if features is None else features))
    items, frames = catalogue

    def check(current: NewItems) -> None:
        candidate = NewItem(item_id, title, frame_ids, np.zeros((0, 0)))
        check_unique(
            candidate,
            lambda i: i in items or i in current.item_index,
            lambda f: f in frames or f in current.frame_index,
        )

    check(NewItems.empty(dim, dtype))  # the catalogue's ids, before any work; the store's under its lock
    if features is not None:
        return append_item(run_dir, NewItem(item_id, title, frame_ids, features), check)
    encoder.encoder()  # a run without a known encoder refuses images before decoding them
    decoded = [decode_image(image, position) for position, image in enumerate(upload.images, start=1)]
    encoded = checked_features(encoder.encode([pixels for pixels, _ in decoded]), dim, dtype)
    return append_item(run_dir, NewItem(item_id, title, frame_ids, encoded, tuple(s for _, s in decoded)), check)
