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
    frame_exposures: Table | None = None  # user_id, item_id, frame_id: the frames each user was shown
    frame_feedback: Table | None = None  # user_id, item_id, frame_id, label[, propensity]: logged frame clicks


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
    likes = _read_frame_table(directory, "frame_likes", "frame-like", interactions, item_frames)
    exposures = _read_frame_table(directory, "frame_exposures", "frame-exposure", interactions, item_frames)
    if likes is not None and exposures is not None:
        _check_likes_were_exposed(likes, exposures)
    feedback = _read_frame_feedback(directory, interactions, item_frames)
    titles = _read_titles(directory)
    return RawDataset(directory, interactions, item_frames, features, likes, titles, exposures, feedback)


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


def _read_frame_table(directory: Path, stem: str, what: str, interactions: Table, item_frames: Table) -> Table | None:
    """An optional (user, item, frame) table (``frame_likes``, ``frame_exposures``), checked."""
    path = find_table(directory, stem, required=False)
    if path is None:
        return None
    columns = ["user_id", "item_id", "frame_id"]
    table = drop_duplicates(read_table(path, columns), columns, what)
    _check_frame_rows(table, interactions, item_frames)
    return table


def _read_frame_feedback(directory: Path, interactions: Table, item_frames: Table) -> Table | None:
    """The optional ``frame_feedback`` table: one row per logged display of a frame, with its
    0/1 ``label`` (clicked or liked) and, optionally, the ``propensity`` in (0, 1] with which the
    logging policy chose that frame. Repeated rows are repeated displays and are all kept."""
    path = find_table(directory, "frame_feedback", required=False)
    if path is None:
        return None
    table = read_table(path, ["user_id", "item_id", "frame_id"], numbers=("label",), optional_numbers=("propensity",))
    _check_frame_rows(table, interactions, item_frames)
    labels = table["label"]
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"label must be 0 or 1, got {labels[i]:g}", row=table.file_row(i))
    if "propensity" in table:
        propensity = table["propensity"]
        bad = (propensity <= 0) | (propensity > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problem = f"propensity must be in (0, 1] (the probability the frame was shown), got {propensity[i]:g}"
            raise DataError(path, problem, row=table.file_row(i))
    return table


def _check_frame_rows(table: Table, interactions: Table, item_frames: Table) -> None:
    """Every row names a known user, a known item and a frame of that item."""
    path = table.path
    _require_known(table, "user_id", interactions["user_id"], lambda v: f"unknown user '{v}'")
    _require_known(table, "item_id", item_frames["item_id"], lambda v: f"unknown item '{v}'")
    _require_known(table, "frame_id", item_frames["frame_id"], lambda v: f"unknown frame '{v}'")
    order = np.argsort(item_frames["frame_id"])
    where = np.searchsorted(item_frames["frame_id"][order], table["frame_id"])
    wrong = item_frames["item_id"][order][where] != table["item_id"]
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        frame, item = table["frame_id"][i], table["item_id"][i]
        raise DataError(path, f"frame '{frame}' is not a frame of item '{item}'", row=table.file_row(i))


def _check_likes_were_exposed(likes: Table, exposures: Table) -> None:
    """Every frame like is also an exposure (a user can only like a frame they were shown).

    Both tables are checked already, so a frame names its item and (user, frame) is the key.
    """
    if not len(likes):
        return
    users = np.unique(np.concatenate([likes["user_id"], exposures["user_id"]]), return_inverse=True)[1]
    frames = np.unique(np.concatenate([likes["frame_id"], exposures["frame_id"]]), return_inverse=True)[1]
    keys = users.astype(np.int64) * (int(frames.max()) + 1) + frames
    i = _first_not_in(keys[: len(likes)], keys[len(likes) :])
    if i is not None:
        user, item, frame = (likes[c][i] for c in ("user_id", "item_id", "frame_id"))
        problem = (
            f"user '{user}' likes frame '{frame}' of item '{item}' but was not exposed to it "
            f"in {exposures.path.name} (every frame like must also be an exposure)"
        )
        raise DataError(likes.path, problem, row=likes.file_row(i))


def _read_titles(directory: Path) -> dict[str, str]:
    path = find_table(directory, "items", required=False)
    if path is None:
        return {}
    table = read_table(path, ["item_id"], optional_ids=("title",))
    if "title" not in table:
        return {}
    return dict(zip(table["item_id"].tolist(), table["title"].tolist(), strict=True))
