"""Load and validate a dataset directory (docs/format.md) into raw-id tables."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jifr.data.file_checks import check_readable_directory
from jifr.data.frame_features import FrameFeatures, find_feature_store, read_frame_features
from jifr.data.tables import Table, drop_duplicates, find_table, read_table
from jifr.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class RawDataset:
    """A validated dataset directory; ids are still raw strings."""

    directory: Path
    interactions: Table  # user_id, item_id[, timestamp]
    item_frames: Table  # item_id, frame_id[, path][, title]
    features: FrameFeatures
    frame_likes: Table | None  # user_id, item_id, frame_id
    item_titles: dict[str, str]


def _first_not_in(values: np.ndarray, known: np.ndarray) -> int | None:
    """0-based index of the first value not in ``known``, or None."""
    missing = ~np.isin(values, known)
    return int(np.flatnonzero(missing)[0]) if missing.any() else None


def load_raw_dataset(directory: str | Path) -> RawDataset:
    """Read every table of a dataset directory and check that they agree with each other."""
    directory = Path(directory)
    check_readable_directory(directory)
    interactions = _read_interactions(directory)
    item_frames = _read_item_frames(directory)
    features = read_frame_features(find_feature_store(directory))
    _check_frames_have_features(item_frames, features)
    _check_items_have_frames(interactions, item_frames)
    likes = _read_frame_likes(directory, interactions, item_frames)
    return RawDataset(directory, interactions, item_frames, features, likes, _read_titles(directory))


def _read_interactions(directory: Path) -> Table:
    path = find_table(directory, "interactions")
    assert path is not None
    table = read_table(path, ["user_id", "item_id"], optional_numbers=("timestamp",))
    return drop_duplicates(table, ["user_id", "item_id"], "interaction")


def _read_item_frames(directory: Path) -> Table:
    path = find_table(directory, "item_frames")
    assert path is not None
    table = read_table(path, ["item_id", "frame_id"], optional_ids=("path", "title"))
    table = drop_duplicates(table, ["item_id", "frame_id"], "item-frame")
    frame_ids, first, counts = np.unique(table["frame_id"], return_index=True, return_counts=True)
    if (counts > 1).any():
        frame = frame_ids[np.flatnonzero(counts > 1)[0]]
        second = int(np.flatnonzero(table["frame_id"] == frame)[1])
        raise DataError(
            path,
            f"frame '{frame}' belongs to several items (a frame belongs to one item)",
            row=table.file_row(second),
        )
    return table


def _require_known(table: Table, column: str, known: np.ndarray, problem: Callable[[str], str]) -> None:
    """Raise for the first row whose ``column`` value is not in ``known``; ``problem`` describes the value."""
    i = _first_not_in(table[column], known)
    if i is not None:
        raise DataError(table.path, problem(str(table[column][i])), row=table.file_row(i))


def _check_frames_have_features(item_frames: Table, features: FrameFeatures) -> None:
    _require_known(
        item_frames, "frame_id", features.frame_ids, lambda f: f"frame '{f}' has no row in {features.path.name}"
    )
    unused = int((~np.isin(features.frame_ids, item_frames["frame_id"])).sum())
    if unused:
        log.warning("%s: %d feature row(s) belong to no item and are ignored", features.path.name, unused)


def _check_items_have_frames(interactions: Table, item_frames: Table) -> None:
    _require_known(
        interactions,
        "item_id",
        item_frames["item_id"],
        lambda i: f"item '{i}' has no frames in {item_frames.path.name}",
    )


def _read_frame_likes(directory: Path, interactions: Table, item_frames: Table) -> Table | None:
    path = find_table(directory, "frame_likes", required=False)
    if path is None:
        return None
    columns = ["user_id", "item_id", "frame_id"]
    likes = drop_duplicates(read_table(path, columns), columns, "frame-like")
    _require_known(likes, "user_id", interactions["user_id"], lambda v: f"unknown user '{v}'")
    _require_known(likes, "item_id", item_frames["item_id"], lambda v: f"unknown item '{v}'")
    _require_known(likes, "frame_id", item_frames["frame_id"], lambda v: f"unknown frame '{v}'")
    order = np.argsort(item_frames["frame_id"])
    where = np.searchsorted(item_frames["frame_id"][order], likes["frame_id"])
    wrong = item_frames["item_id"][order][where] != likes["item_id"]
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        frame, item = likes["frame_id"][i], likes["item_id"][i]
        raise DataError(path, f"frame '{frame}' is not a frame of item '{item}'", row=likes.file_row(i))
    return likes


def _read_titles(directory: Path) -> dict[str, str]:
    path = find_table(directory, "items", required=False)
    if path is None:
        return {}
    table = read_table(path, ["item_id"], optional_ids=("title",))
    if "title" not in table:
        return {}
    return dict(zip(table["item_id"].tolist(), table["title"].tolist(), strict=True))
