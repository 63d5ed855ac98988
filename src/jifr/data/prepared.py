"""The prepared dataset: contiguous indices, CSR structures and a fixed split, saved once.

On disk (``jifr prepare`` writes it, every model reads it):
    prepared.json        counts, filtering log, split config, fingerprint, version
    arrays.npz           split interactions, item->frame ``indptr``, frame likes and, when the
                         dataset has them, frame exposures and training frame feedback (no pickle)
    users.txt items.txt frames.txt   raw ids, one per line, in index order
    frames.parquet       frame_id, item_id, path, title (for display)
    features.npy         (L, D) features in frame-index order, memory-mapped when loaded
"""

from __future__ import annotations

import contextlib
import functools
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from jifr.data.frame_features import read_id_lines
from jifr.errors import DataError

META_NAME = "prepared.json"
ARRAYS_NAME = "arrays.npz"
FEATURES_NAME = "features.npy"
FRAMES_TABLE_NAME = "frames.parquet"
PARTS = ("train", "valid", "test")


@dataclass
class Interactions:
    """Implicit positives as parallel index arrays."""

    users: np.ndarray  # (n,) int64
    items: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.users)

    def csr(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """(n_users, n_items) binary CSR matrix."""
        data = np.ones(len(self.users), dtype=np.float32)
        return sp.csr_matrix((data, (self.users, self.items)), shape=(n_users, n_items))


@dataclass
class ItemFrames:
    """Item -> frames as CSR: the frames of item ``i`` are rows ``indptr[i]:indptr[i+1]`` of ``features``."""

    indptr: np.ndarray  # (n_items + 1,) int64
    features: np.ndarray  # (L, D) float16 | float32, usually a read-only memmap
    _float32: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def float32_in_memory(self) -> np.ndarray:
        """(L, D) the features as float32 in memory: read and converted once (the same values
        the memory map gives row by row), then kept with these frames."""
        if self._float32 is None:
            in_memory = isinstance(self.features, np.ndarray) and not isinstance(self.features, np.memmap)
            if in_memory and self.features.dtype == np.float32:
                self._float32 = self.features
            else:
                self._float32 = np.asarray(self.features, dtype=np.float32)
        return self._float32

    @property
    def n_frames(self) -> int:
        return int(self.indptr[-1])

    @property
    def counts(self) -> np.ndarray:
        """(n_items,) number of frames per item."""
        return np.diff(self.indptr)

    @property
    def frame_item(self) -> np.ndarray:
        """(L,) the item index of each frame."""
        return np.repeat(np.arange(len(self.indptr) - 1), self.counts)


@dataclass
class FrameLikes:
    """(user, item, frame) index triples used only for key-frame evaluation: the frames users
    liked, or (``PreparedData.exposures``) the frames users were exposed to."""

    users: np.ndarray
    items: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class FrameFeedback:
    """Logged frame displays used for training: (user, item, frame) indices, the 0/1 label and
    the row's weight (1 / propensity, or 1 without propensities). Only pairs outside the
    validation and test splits are kept (``jifr prepare``)."""

    users: np.ndarray  # (n,) int64
    items: np.ndarray  # (n,) int64
    frames: np.ndarray  # (n,) int64, global frame index
    labels: np.ndarray  # (n,) float32, 0 or 1
    weights: np.ndarray  # (n,) float32, > 0

    FIELDS = ("users", "items", "frames", "labels", "weights")

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class PreparedData:
    """Everything a model, a trainer and an evaluator need, in index space."""

    directory: Path
    user_ids: np.ndarray  # (n_users,) str
    item_ids: np.ndarray  # (n_items,) str
    frame_ids: np.ndarray  # (L,) str
    frames: ItemFrames
    train: Interactions
    valid: Interactions
    test: Interactions
    likes: FrameLikes
    meta: dict[str, Any] = field(default_factory=dict)
    exposures: FrameLikes | None = None  # None: the dataset has no frame_exposures table
    feedback: FrameFeedback | None = None  # None: the dataset has no frame_feedback table

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    def splits(self) -> tuple[Interactions, Interactions, Interactions]:
        return self.train, self.valid, self.test

    @functools.cached_property
    def interacted(self) -> sp.csr_matrix:
        """(n_users, n_items) CSR of every known interaction (train, valid and test), indices
        sorted per user; built once per loaded dataset."""
        matrix = sum(p.csr(self.n_users, self.n_items) for p in self.splits()).tocsr()
        matrix.sort_indices()
        return matrix

    def part(self, name: str) -> Interactions:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def likes_of(self, part: str) -> FrameLikes:
        """The frame likes whose (user, item) pair lies in ``part`` of the split."""
        return self._in_part(self.likes, part)

    def exposures_of(self, part: str) -> FrameLikes:
        """The frame exposures whose (user, item) pair lies in ``part`` (none without the table)."""
        if self.exposures is None:
            empty = np.zeros(0, dtype=np.int64)
            return FrameLikes(empty, empty, empty)
        return self._in_part(self.exposures, part)

    def _in_part(self, triples: FrameLikes, part: str) -> FrameLikes:
        pairs = self.part(part)
        keys = pairs.users * self.n_items + pairs.items
        keep = np.isin(triples.users * self.n_items + triples.items, keys)
        return FrameLikes(triples.users[keep], triples.items[keep], triples.frames[keep])

    def frame_table(self) -> dict[str, np.ndarray]:
        """Display columns of the frames (frame_id, item_id, path, title)."""
        table = pq.read_table(self.directory / FRAMES_TABLE_NAME)
        return {c: np.asarray(table.column(c).to_numpy(zero_copy_only=False)).astype(str) for c in table.column_names}


def save_prepared(data: PreparedData) -> None:
    """Write everything but ``features.npy`` (written by the caller, streamed) and the frame table."""
    out = data.directory
    arrays = {f"{p}_{k}": getattr(data.part(p), k) for p in PARTS for k in ("users", "items")}
    arrays |= {"item_frame_indptr": data.frames.indptr}
    arrays |= {f"likes_{k}": getattr(data.likes, k) for k in ("users", "items", "frames")}
    if data.exposures is not None:
        arrays |= {f"exposures_{k}": getattr(data.exposures, k) for k in ("users", "items", "frames")}
    if data.feedback is not None:
        arrays |= {f"feedback_{k}": getattr(data.feedback, k) for k in FrameFeedback.FIELDS}
    np.savez(out / ARRAYS_NAME, **arrays)
    for name, ids in (("users", data.user_ids), ("items", data.item_ids), ("frames", data.frame_ids)):
        (out / f"{name}.txt").write_text("".join(f"{x}\n" for x in ids), encoding="utf-8")
    (out / META_NAME).write_text(json.dumps(data.meta, indent=2, sort_keys=True), encoding="utf-8")


def write_frame_table(directory: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.table({k: pa.array(v.tolist(), pa.string()) for k, v in columns.items()})
    pq.write_table(table, directory / FRAMES_TABLE_NAME)


def _read_ids(path: Path) -> np.ndarray:
    return np.array(read_id_lines(path), dtype=str)


def load_prepared(directory: str | Path) -> PreparedData:
    """Open a prepared dataset; features are memory-mapped, not read into memory.

    A missing, truncated or inconsistent file is a DataError naming it (prepare again).
    """
    directory = Path(directory)
    if not (directory / META_NAME).is_file():
        raise DataError(directory, f"not a prepared dataset (no {META_NAME}); run 'jifr prepare' first")
    with _damaged_file_reported(directory / META_NAME):
        meta = json.loads((directory / META_NAME).read_text(encoding="utf-8"))
    with _damaged_file_reported(directory / ARRAYS_NAME), np.load(directory / ARRAYS_NAME, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
        parts = {p: Interactions(arrays[f"{p}_users"], arrays[f"{p}_items"]) for p in PARTS}
        likes = FrameLikes(arrays["likes_users"], arrays["likes_items"], arrays["likes_frames"])
        exposures = None
        if "exposures_users" in arrays:
            exposures = FrameLikes(arrays["exposures_users"], arrays["exposures_items"], arrays["exposures_frames"])
        feedback = None
        if "feedback_users" in arrays:
            feedback = FrameFeedback(*(arrays[f"feedback_{k}"] for k in FrameFeedback.FIELDS))
    with _damaged_file_reported(directory / FEATURES_NAME):
        features = np.load(directory / FEATURES_NAME, mmap_mode="r", allow_pickle=False)
    ids = {}
    for name in ("users", "items", "frames"):
        with _damaged_file_reported(directory / f"{name}.txt"):
            ids[name] = _read_ids(directory / f"{name}.txt")
    data = PreparedData(
        directory=directory,
        user_ids=ids["users"],
        item_ids=ids["items"],
        frame_ids=ids["frames"],
        frames=ItemFrames(arrays["item_frame_indptr"], features),
        train=parts["train"],
        valid=parts["valid"],
        test=parts["test"],
        likes=likes,
        meta=meta,
        exposures=exposures,
        feedback=feedback,
    )
    _check_sizes(data)
    return data


@contextlib.contextmanager
def _damaged_file_reported(path: Path) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise DataError(path, "missing from the prepared dataset; run 'jifr prepare' again") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"damaged prepared file ({exc}); run 'jifr prepare' again") from None


def _check_sizes(data: PreparedData) -> None:
    """The counts that every model relies on agree across the files."""
    problems = []
    if data.frames.features.ndim != 2 or data.frames.features.shape[0] != len(data.frame_ids):
        problems.append(f"{FEATURES_NAME} has shape {data.frames.features.shape} for {len(data.frame_ids)} frames")
    if len(data.frames.indptr) != data.n_items + 1 or int(data.frames.indptr[-1]) != len(data.frame_ids):
        problems.append("the item->frame index does not match items.txt and frames.txt")
    if any(len(p) and (p.users.max() >= data.n_users or p.items.max() >= data.n_items) for p in data.splits()):
        problems.append("an interaction refers to a user or item beyond users.txt or items.txt")
    feedback = data.feedback
    if feedback is not None and len(feedback):
        if len({len(getattr(feedback, k)) for k in FrameFeedback.FIELDS}) != 1:
            problems.append("the frame feedback arrays differ in length")
        elif feedback.users.max() >= data.n_users or feedback.frames.max() >= len(data.frame_ids):
            problems.append("a frame feedback row refers to a user or frame beyond users.txt or frames.txt")
    if problems:
        problem = f"inconsistent prepared dataset: {'; '.join(problems)}; run 'jifr prepare' again"
        raise DataError(data.directory, problem)
