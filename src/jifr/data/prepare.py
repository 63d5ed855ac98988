"""From a dataset directory to a prepared dataset: validate, k-core filter, index, split, save."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import jifr
from jifr.data.filtering import k_core_mask
from jifr.data.frame_features import FrameFeatures
from jifr.data.prepared import (
    FEATURES_NAME,
    FrameFeedback,
    FrameLikes,
    Interactions,
    ItemFrames,
    PreparedData,
    save_prepared,
    write_frame_table,
)
from jifr.data.raw import RawDataset, load_raw_dataset
from jifr.data.splits import SplitConfig, split_interactions
from jifr.data.tables import Table
from jifr.errors import DataError
from jifr.features.store import frame_encoder_of
from jifr.outputs import allocate_npy, staged_directory

log = logging.getLogger(__name__)
COPY_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class PrepareConfig:
    """Preprocessing as in the paper: 5-core filtering and a seeded random 70/10/20 split."""

    min_user_interactions: int = 5
    min_item_interactions: int = 5
    split: SplitConfig = field(default_factory=SplitConfig)
    # Share of the (user, item) pairs with frame feedback whose feedback is kept for training,
    # a subset drawn with the split seed (learning curves); 1 keeps all of it.
    frame_feedback_share: float = 1.0

    def __post_init__(self) -> None:
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise ValueError("k-core thresholds must be >= 1")
        if not 0.0 <= self.frame_feedback_share <= 1.0:
            raise ValueError(f"frame_feedback_share must be in [0, 1], got {self.frame_feedback_share}")


def prepare_dataset(
    source: str | Path, out: str | Path, config: PrepareConfig | None = None, *, force: bool = False
) -> PreparedData:
    """Validate ``source`` (docs/format.md), filter, index and split it, and save it to ``out``.

    ``out`` appears only when complete. It must not exist, be empty, or (with ``force``) hold an
    earlier prepared dataset; a directory jifr did not write, or one holding ``source``, is refused.
    """
    config = config or PrepareConfig()
    out = Path(out)
    with staged_directory(out, "prepared", force=force, inputs=[source]) as staging:
        raw = load_raw_dataset(source)
        data = _index_and_split(raw, config, staging)
        save_prepared(data)
    data.directory = out
    data.frames.features = np.load(out / FEATURES_NAME, mmap_mode="r")
    return data


def _codes(values: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``vocabulary`` (all values must be present)."""
    return np.searchsorted(vocabulary, values).astype(np.int64)


def _index_and_split(raw: RawDataset, config: PrepareConfig, out: Path) -> PreparedData:
    filter_log: dict[str, Any] = {"interactions_read": len(raw.interactions)}
    users_raw, items_raw = raw.interactions["user_id"], raw.interactions["item_id"]
    all_users, all_items = np.unique(users_raw), np.unique(items_raw)
    keep = k_core_mask(
        _codes(users_raw, all_users),
        _codes(items_raw, all_items),
        config.min_user_interactions,
        config.min_item_interactions,
    )
    if not keep.any():
        raise DataError(raw.interactions.path, "no interaction survives the k-core filter; lower the thresholds")
    user_ids, item_ids = np.unique(users_raw[keep]), np.unique(items_raw[keep])
    filter_log |= {
        "interactions_removed_by_k_core": int((~keep).sum()),
        "users_removed_by_k_core": len(all_users) - len(user_ids),
        "items_removed_by_k_core": len(all_items) - len(item_ids),
    }
    users, items = _codes(users_raw[keep], user_ids), _codes(items_raw[keep], item_ids)
    timestamps = raw.interactions["timestamp"][keep] if "timestamp" in raw.interactions else None
    frames, frame_ids, frame_columns, n_frames_dropped = _index_frames(raw, item_ids, out)
    filter_log["frames_of_removed_items"] = n_frames_dropped
    if n_frames_dropped:
        log.warning(
            "%s: %d frame(s) dropped: their items have no interactions left after filtering",
            raw.item_frames.path.name,
            n_frames_dropped,
        )
    likes, n_likes_dropped = _index_triples(raw.frame_likes, "like", user_ids, item_ids, frame_ids, users, items)
    filter_log["frame_likes_removed"] = n_likes_dropped
    exposures = None
    if raw.frame_exposures is not None:
        exposures, n_exposures_dropped = _index_triples(
            raw.frame_exposures, "exposure", user_ids, item_ids, frame_ids, users, items
        )
        filter_log["frame_exposures_removed"] = n_exposures_dropped
    part = split_interactions(users, timestamps, config.split)
    splits = {
        name: Interactions(users[part == k], items[part == k]) for k, name in enumerate(("train", "valid", "test"))
    }
    feedback = None
    if raw.frame_feedback is not None:
        feedback = _index_feedback(raw.frame_feedback, user_ids, item_ids, frame_ids, splits, config, filter_log)
    write_frame_table(out, frame_columns)
    meta = _meta(raw, config, filter_log, user_ids, item_ids, frames, splits, likes)
    if exposures is not None:
        meta["n_frame_exposures"] = len(exposures)
    if feedback is not None:
        meta["n_frame_feedback"] = len(feedback)
    data = PreparedData(
        out,
        user_ids,
        item_ids,
        frame_ids,
        frames,
        likes=likes,
        meta=meta,
        exposures=exposures,
        feedback=feedback,
        **splits,
    )
    meta["fingerprint"] = _fingerprint(data, frame_features_digest=meta.pop("_features_digest"))
    _log_summary(meta)
    return data


def _index_frames(
    raw: RawDataset, item_ids: np.ndarray, out: Path
) -> tuple[ItemFrames, np.ndarray, dict[str, np.ndarray], int]:
    """Order frames by item (then by file order), copy their features in that order, check them."""
    table = raw.item_frames
    kept = np.isin(table["item_id"], item_ids)
    rows = np.flatnonzero(kept)
    item_codes = _codes(table["item_id"][rows], item_ids)
    rows = rows[np.argsort(item_codes, kind="stable")]
    indptr = np.r_[0, np.cumsum(np.bincount(item_codes, minlength=len(item_ids)))].astype(np.int64)
    frame_ids = table["frame_id"][rows]
    order = np.argsort(raw.features.frame_ids)
    feature_rows = order[np.searchsorted(raw.features.frame_ids[order], frame_ids)]
    features = _copy_features(raw.features, feature_rows, out / FEATURES_NAME)
    columns = {"frame_id": frame_ids, "item_id": table["item_id"][rows]}
    for optional in ("path", "title"):
        if optional in table:
            columns[optional] = table[optional][rows]
    if "path" in columns:
        columns["path"] = _absolute_paths(raw.directory, columns["path"])
    return ItemFrames(indptr, features), frame_ids, columns, int((~kept).sum())


def _absolute_paths(directory: Path, paths: np.ndarray) -> np.ndarray:
    resolved = [p if not p or Path(p).is_absolute() else str((directory / p).resolve()) for p in paths.tolist()]
    return np.array(resolved, dtype=str)


def _copy_features(source: FrameFeatures, rows: np.ndarray, path: Path) -> np.ndarray:
    """Stream ``source.values[rows]`` into a new .npy in chunks, rejecting NaN / inf."""
    values = source.values
    target = allocate_npy(path, (len(rows), values.shape[1]), values.dtype)
    for start in range(0, len(rows), COPY_CHUNK_ROWS):
        chunk_rows = rows[start : start + COPY_CHUNK_ROWS]
        block = np.asarray(values[np.sort(chunk_rows)])[np.argsort(np.argsort(chunk_rows))]
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            source_row = int(chunk_rows[np.flatnonzero(bad)[0]])
            frame = source.frame_ids[source_row]
            problem = f"NaN or infinite value in the features of frame '{frame}'"
            raise DataError(source.path, problem, row=source_row + 1)
        target[start : start + len(chunk_rows)] = block
    target.flush()
    return target


def _index_triples(
    table: Table | None,
    what: str,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    frame_ids: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
) -> tuple[FrameLikes, int]:
    """Frame likes or exposures in index space, keeping those of kept (user, item) interactions."""
    empty = np.zeros(0, dtype=np.int64)
    if table is None:
        return FrameLikes(empty, empty, empty), 0
    known = np.isin(table["user_id"], user_ids) & np.isin(table["item_id"], item_ids)
    lu = _codes(table["user_id"][known], user_ids)
    li = _codes(table["item_id"][known], item_ids)
    order = np.argsort(frame_ids)
    lf = order[np.searchsorted(frame_ids[order], table["frame_id"][known])].astype(np.int64)
    # A like or an exposure can only be evaluated where the user interacted with the item.
    interacted = np.isin(lu * len(item_ids) + li, users * len(item_ids) + items)
    n_dropped = len(table) - int(interacted.sum())
    if n_dropped:
        log.warning(
            "%s: %d frame %s(s) dropped (user or item removed by filtering, or no interaction with the item)",
            table.path.name,
            n_dropped,
            what,
        )
    return FrameLikes(lu[interacted], li[interacted], lf[interacted]), n_dropped


def _index_feedback(
    table: Table,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    frame_ids: np.ndarray,
    splits: dict[str, Interactions],
    config: PrepareConfig,
    filter_log: dict[str, Any],
) -> FrameFeedback:
    """Frame feedback in index space, for training only.

    Rows of users or items removed by filtering are dropped, and so is all feedback on the
    (user, item) pairs of the validation and test splits: those pairs' frame likes are what the
    key-frame protocols score. With ``frame_feedback_share`` < 1, the feedback of a seeded subset
    of the remaining pairs is kept. Every count is logged and recorded in the filtering log.
    """
    known = np.isin(table["user_id"], user_ids) & np.isin(table["item_id"], item_ids)
    users, items = _codes(table["user_id"][known], user_ids), _codes(table["item_id"][known], item_ids)
    order = np.argsort(frame_ids)
    frames = order[np.searchsorted(frame_ids[order], table["frame_id"][known])].astype(np.int64)
    labels = table["label"][known].astype(np.float32)
    weights = (1.0 / table["propensity"][known] if "propensity" in table else np.ones(len(users))).astype(np.float32)
    keys = users * len(item_ids) + items
    held_out = np.isin(
        keys, np.concatenate([p.users * len(item_ids) + p.items for n, p in splits.items() if n != "train"])
    )
    pairs = np.unique(keys[~held_out])
    rng = np.random.default_rng([config.split.seed, 1])  # a stream of its own, apart from the split's
    chosen = rng.permutation(pairs)[: int(round(config.frame_feedback_share * len(pairs)))]
    keep = ~held_out & np.isin(keys, chosen)
    counts = {
        "frame_feedback_read": len(table),
        "frame_feedback_removed": int((~known).sum()),
        "frame_feedback_held_out": int(held_out.sum()),
        "frame_feedback_left_out_by_share": int((~held_out).sum() - keep.sum()),
    }
    filter_log |= counts
    log.info(
        "%s: %d frame feedback row(s) read; %d of removed users or items, %d on validation or test pairs "
        "(held out), %d left out by frame_feedback_share=%g; %d kept for training",
        table.path.name,
        len(table),
        counts["frame_feedback_removed"],
        counts["frame_feedback_held_out"],
        counts["frame_feedback_left_out_by_share"],
        config.frame_feedback_share,
        int(keep.sum()),
    )
    return FrameFeedback(users[keep], items[keep], frames[keep], labels[keep], weights[keep])


def _meta(
    raw: RawDataset,
    config: PrepareConfig,
    filter_log: dict[str, Any],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    frames: ItemFrames,
    splits: dict[str, Interactions],
    likes: FrameLikes,
) -> dict[str, Any]:
    return {
        "source": str(raw.directory.resolve()),
        "jifr_version": jifr.__version__,
        "config": asdict(config),
        "filtering": filter_log,
        "n_users": len(user_ids),
        "n_items": len(item_ids),
        "n_frames": frames.n_frames,
        "feature_dim": int(frames.features.shape[1]),
        "feature_dtype": str(frames.features.dtype),
        # The encoder that made the features, when `jifr features extract` did: serving encodes a
        # new item's images with it (jifr.items); None for features from elsewhere.
        "frame_encoder": frame_encoder_of(raw.features.path),
        "n_interactions": {name: len(part) for name, part in splits.items()},
        "n_frame_likes": len(likes),
        "item_titles": [raw.item_titles.get(i, "") for i in item_ids.tolist()] if raw.item_titles else [],
        "_features_digest": _digest_array(frames.features),
    }


def _digest_array(values: np.ndarray) -> str:
    digest = hashlib.sha256()
    for start in range(0, values.shape[0], COPY_CHUNK_ROWS):
        digest.update(np.ascontiguousarray(values[start : start + COPY_CHUNK_ROWS]).tobytes())
    return digest.hexdigest()


def _fingerprint(data: PreparedData, frame_features_digest: str) -> str:
    """SHA-256 over ids, split, item->frame structure, likes, exposures (only when the dataset has
    them, so the fingerprint of a dataset without exposures does not depend on them) and features:
    the data's identity."""
    digest = hashlib.sha256(frame_features_digest.encode())
    for ids in (data.user_ids, data.item_ids, data.frame_ids):
        digest.update("\n".join(ids.tolist()).encode())
    for part in (data.train, data.valid, data.test):
        digest.update(part.users.tobytes() + part.items.tobytes())
    digest.update(data.frames.indptr.tobytes())
    digest.update(data.likes.users.tobytes() + data.likes.items.tobytes() + data.likes.frames.tobytes())
    if data.exposures is not None:
        exposures = data.exposures
        digest.update(b"frame_exposures")
        digest.update(exposures.users.tobytes() + exposures.items.tobytes() + exposures.frames.tobytes())
    if data.feedback is not None:
        digest.update(b"frame_feedback")
        for name in FrameFeedback.FIELDS:
            digest.update(getattr(data.feedback, name).tobytes())
    return digest.hexdigest()[:16]


def _log_summary(meta: dict[str, Any]) -> None:
    f = meta["filtering"]
    log.info(
        "read %d interactions; k-core removed %d interactions, %d users, %d items; kept %d users, %d items, %d frames",
        f["interactions_read"],
        f["interactions_removed_by_k_core"],
        f["users_removed_by_k_core"],
        f["items_removed_by_k_core"],
        meta["n_users"],
        meta["n_items"],
        meta["n_frames"],
    )
    exposures = f", {meta['n_frame_exposures']} frame exposures" if "n_frame_exposures" in meta else ""
    log.info("split %s; %d frame likes%s kept", meta["n_interactions"], meta["n_frame_likes"], exposures)
