"""The new items of a run, kept beside it so that a restarted service still has them.

RUN/new-items/
    index.json            the commit record: the features file it belongs to and its SHA-256,
                          the feature width and type, and the items in the order they came, each
                          with its title and frames (frame id, stored image or null)
    features-NNNNNN.npy   (n_frames, D) the new items' frame features, item after item, in the
                          run's feature dtype; NNNNNN counts the items, so every add writes a new file
    images/NNNNNN.EXT     an uploaded frame image, named by its frame's row (never by the name a
                          client gave it), with the extension of its decoded format
    .lock                 held (flock) by whoever writes

Adding an item rewrites the store without touching what the index names: the item's images
first, then a new features file, then ``index.json``, each to a temporary name that is flushed
and renamed. The index is the commit point, so a crash at any moment leaves the previous store
whole; files it no longer names are removed after the rename. Every write happens under the
lock, after re-reading the store, so concurrent writers (threads of a service, a service and
``jifr items add``) each add their item and lose none.

Limits: at most ``MAX_FRAMES`` frames per item, ids of at most 1024 characters on one line,
titles of at most 8192 characters. The store is rewritten on every add (features of all new
items), so it suits the items that come between two trainings, not a second catalogue.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import jifr
from jifr.data.file_checks import ID_MAX_CHARS, TEXT_MAX_CHARS
from jifr.errors import DataError
from jifr.outputs import atomic_open, atomic_path, sha256_file, write_json_atomic

STORE_DIR_NAME = "new-items"
INDEX_NAME = "index.json"
IMAGES_DIR_NAME = "images"
LOCK_NAME = ".lock"
STORE_FORMAT = 1
MAX_FRAMES = 64  # frames of one new item
_FEATURES_FILE = re.compile(r"features-\d{6,}\.npy")
_IMAGE_FILE = re.compile(r"images/\d{6,}\.[a-z0-9]{1,8}")


class NewItemError(ValueError):
    """A new item cannot be added; nothing was written."""


class NewItemInvalid(NewItemError):
    """The item itself is malformed: ids, frames, features or images."""


class NewItemConflict(NewItemError):
    """The item is well formed but this run cannot take it: a duplicate id, a model that cannot
    score new items, images where the run's encoder is unknown."""


@dataclass(frozen=True)
class StoredImage:
    """An uploaded frame image as it will be stored: the file's bytes and its extension."""

    data: bytes
    suffix: str  # ".png", ".jpg", ...


@dataclass(frozen=True)
class NewItem:
    """A checked new item, ready to store: ``features`` (F, D) in the run's feature dtype, all
    finite; ``images`` one per frame, or None when the features came precomputed."""

    item_id: str
    title: str | None
    frame_ids: tuple[str, ...]
    features: np.ndarray
    images: tuple[StoredImage, ...] | None = None


@dataclass(frozen=True)
class NewItems:
    """The new items of a run, as the store holds them (an immutable snapshot)."""

    item_ids: tuple[str, ...]
    titles: tuple[str | None, ...]
    indptr: np.ndarray  # (n + 1,) the frames of item j are rows indptr[j]:indptr[j + 1]
    frame_ids: tuple[str, ...]
    images: tuple[str | None, ...]  # each frame's image, relative to the store, or None
    features: np.ndarray  # (n_frames, D) in the run's feature dtype

    @classmethod
    def empty(cls, dim: int, dtype: np.dtype) -> NewItems:
        return cls((), (), np.zeros(1, dtype=np.int64), (), (), np.zeros((0, dim), dtype=dtype))

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def counts(self) -> np.ndarray:
        """(n,) frames of each new item."""
        return np.diff(self.indptr)

    @functools.cached_property
    def item_index(self) -> dict[str, int]:
        return {item: j for j, item in enumerate(self.item_ids)}

    @functools.cached_property
    def frame_index(self) -> dict[str, int]:
        return {frame: row for row, frame in enumerate(self.frame_ids)}

    def frame_rows(self, item: int) -> range:
        return range(int(self.indptr[item]), int(self.indptr[item + 1]))


def store_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STORE_DIR_NAME


# ---- checks ---------------------------------------------------------------------------------
def checked_id(value: str, what: str) -> str:
    """``value`` as an id: non-empty, one line without control characters, at most 1024 characters."""
    if not value or not value.strip():
        raise NewItemInvalid(f"the {what} is empty")
    if len(value) > ID_MAX_CHARS:
        raise NewItemInvalid(f"the {what} has {len(value)} characters; at most {ID_MAX_CHARS}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise NewItemInvalid(f"the {what} {value[:80]!r} holds a line break or another control character")
    return value


def checked_frame_ids(item_id: str, frame_ids: list[str] | tuple[str, ...] | None, n_frames: int) -> tuple[str, ...]:
    """The frame ids of an item with ``n_frames`` frames: the given ones (as many as frames, no
    repeats), or ``ITEM-1``, ``ITEM-2``, ... when none are given."""
    if n_frames < 1:
        raise NewItemInvalid("a new item needs at least one frame")
    if n_frames > MAX_FRAMES:
        raise NewItemInvalid(f"{n_frames} frames; a new item has at most {MAX_FRAMES}")
    if not frame_ids:
        return tuple(f"{item_id}-{k}" for k in range(1, n_frames + 1))
    if len(frame_ids) != n_frames:
        raise NewItemInvalid(f"{len(frame_ids)} frame ids for {n_frames} frames; give one per frame, or none")
    ids = tuple(checked_id(frame, "frame id") for frame in frame_ids)
    repeated = sorted({frame for frame in ids if ids.count(frame) > 1})
    if repeated:
        raise NewItemInvalid(f"frame id {repeated[0]!r} is given more than once")
    return ids


def checked_title(title: str | None) -> str | None:
    if title is None or title == "":
        return None
    if len(title) > TEXT_MAX_CHARS:
        raise NewItemInvalid(f"the title has {len(title)} characters; at most {TEXT_MAX_CHARS}")
    return title


def checked_features(values: Any, dim: int, dtype: np.dtype) -> np.ndarray:
    """(F, D) frame features in the run's dtype: a 2-d array of numbers, D = ``dim``, finite
    once stored (a value beyond float16's range would become infinite)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise NewItemInvalid("the features are not an array of numbers") from None
    if array.ndim >= 1 and len(array) == 0:
        raise NewItemInvalid("a new item needs at least one frame")
    if array.ndim != 2:
        raise NewItemInvalid(f"the features must be a (frames, {dim}) array, got shape {array.shape}")
    if len(array) > MAX_FRAMES:
        raise NewItemInvalid(f"{len(array)} frames; a new item has at most {MAX_FRAMES}")
    if array.shape[1] != dim:
        raise NewItemInvalid(
            f"each frame's features must have {dim} values (the run's feature size), got {array.shape[1]}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        stored = array.astype(dtype)
    bad = ~np.isfinite(stored).all(axis=1)
    if bad.any():
        frame = int(np.flatnonzero(bad)[0]) + 1
        reason = "NaN or infinite" if not np.isfinite(array[frame - 1]).all() else f"beyond the range of {dtype}"
        raise NewItemInvalid(f"the features of frame {frame} hold a value that is {reason}")
    return stored


def check_unique(item: NewItem, known_items: Callable[[str], bool], known_frames: Callable[[str], bool]) -> None:
    """NewItemConflict when the item's id or one of its frame ids is already taken."""
    if known_items(item.item_id):
        raise NewItemConflict(f"item '{item.item_id}' already exists")
    taken = [frame for frame in item.frame_ids if known_frames(frame)]
    if taken:
        raise NewItemConflict(f"frame '{taken[0]}' already exists; give the new item's frames other ids")


# ---- reading --------------------------------------------------------------------------------
def load_new_items(run_dir: Path, dim: int, dtype: np.dtype) -> NewItems:
    """The run's new items (none when it has no store); a damaged store is a DataError."""
    index_path = store_dir(run_dir) / INDEX_NAME
    if not index_path.is_file():
        return NewItems.empty(dim, dtype)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        return _from_index(index_path.parent, index, dim, np.dtype(dtype))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(index_path, f"damaged new-items store: {exc}") from None


def _from_index(directory: Path, index: dict[str, Any], dim: int, dtype: np.dtype) -> NewItems:
    if index["format"] != STORE_FORMAT:
        raise ValueError(f"unknown format {index['format']!r}")
    if index["feature_dim"] != dim or index["feature_dtype"] != dtype.name:
        raise ValueError(f"features of {index['feature_dim']} x {index['feature_dtype']}, the run has {dim} x {dtype}")
    name = index["features"]
    if not _FEATURES_FILE.fullmatch(name):
        raise ValueError(f"features file {name!r}")
    path = directory / name
    if not path.is_file() or sha256_file(path) != index["features_sha256"]:
        raise ValueError(f"{name} is missing or is not the file the index records (SHA-256)")
    features = np.load(path, allow_pickle=False)
    items = index["items"]
    frames = [frame for item in items for frame in item["frames"]]
    if features.shape != (len(frames), dim) or features.dtype != dtype:
        raise ValueError(f"{name} holds {features.shape} {features.dtype}, the index {len(frames)} frames")
    images = tuple(frame["image"] for frame in frames)
    if any(image is not None and not _IMAGE_FILE.fullmatch(image) for image in images):
        raise ValueError("an image entry that is not a file of the store")
    return NewItems(
        item_ids=tuple(str(item["item_id"]) for item in items),
        titles=tuple(item["title"] for item in items),
        indptr=np.r_[0, np.cumsum([len(item["frames"]) for item in items])].astype(np.int64),
        frame_ids=tuple(str(frame["frame_id"]) for frame in frames),
        images=images,
        features=features,
    )


# ---- writing --------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[Path]:
    """Hold the store's lock (created with the store's folder on first use); yields the folder."""
    directory = store_dir(run_dir)
    directory.mkdir(exist_ok=True)
    with open(directory / LOCK_NAME, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def append_item(run_dir: Path, item: NewItem, check: Callable[[NewItems], None]) -> NewItems:
    """Add ``item`` to the run's store and return the store with it. Under the lock, the store
    is re-read and ``check(current)`` may refuse the item (e.g. an id another writer took)."""
    dim, dtype = item.features.shape[1], item.features.dtype
    with locked(run_dir) as directory:
        current = load_new_items(run_dir, dim, dtype)
        check(current)
        first = len(current.frame_ids)
        images: list[str | None] = [None] * len(item.frame_ids)
        for k, image in enumerate(item.images or ()):
            relative = f"{IMAGES_DIR_NAME}/{first + k:06d}{image.suffix}"
            with atomic_open(directory / relative, "wb") as handle:
                handle.write(image.data)
            images[k] = relative
        features = np.concatenate([current.features, item.features])
        name = f"features-{len(current) + 1:06d}.npy"
        with atomic_path(directory / name) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, features, allow_pickle=False)
            checksum = sha256_file(temporary)
        updated = NewItems(
            item_ids=(*current.item_ids, item.item_id),
            titles=(*current.titles, item.title),
            indptr=np.r_[current.indptr, first + len(item.frame_ids)].astype(np.int64),
            frame_ids=(*current.frame_ids, *item.frame_ids),
            images=(*current.images, *images),
            features=features,
        )
        write_json_atomic(directory / INDEX_NAME, _index(updated, name, checksum), indent=1)
        _remove_unnamed(directory, name, updated)
    return updated


def _index(items: NewItems, features_name: str, checksum: str) -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "written_by": "jifr items add",
        "jifr_version": jifr.__version__,
        "feature_dim": int(items.features.shape[1]),
        "feature_dtype": items.features.dtype.name,
        "features": features_name,
        "features_sha256": checksum,
        "items": [
            {
                "item_id": item_id,
                "title": items.titles[j],
                "frames": [{"frame_id": items.frame_ids[r], "image": items.images[r]} for r in items.frame_rows(j)],
            }
            for j, item_id in enumerate(items.item_ids)
        ],
    }


def _remove_unnamed(directory: Path, features_name: str, items: NewItems) -> None:
    """Remove the features files and images of the store that its index no longer names
    (earlier generations, and what an interrupted add left)."""
    named = {features_name, *(image for image in items.images if image is not None)}
    candidates = [*directory.glob("features-*.npy"), *directory.glob(f"{IMAGES_DIR_NAME}/*")]
    for path in candidates:
        if path.relative_to(directory).as_posix() not in named and path.is_file():
            path.unlink(missing_ok=True)
