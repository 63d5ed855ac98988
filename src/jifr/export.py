"""Every user's top-K items with their personalised key frames, as one Parquet file.

Columns: ``user_id``, ``rank`` (1 = best), ``item_id``, ``score``, ``new`` (an item added after
training, ``jifr items add``) and, for models that rank frames, ``key_frame_id`` and
``key_frame_score`` (the item's best frame for this user, ties to its earlier frame, as in
``jifr recommend``). Users come in index order, each with their items best first; a user gets
fewer than k rows when fewer items remain. Known items (any split) are left out unless
``exclude_seen=False``. A run's new items are merged with the catalogue's top k exactly as the
service merges them (``jifr.items.score``).

Users are ranked a chunk at a time (``jifr.ranking.top_k_items``) and each chunk becomes a row
group of the file, so memory stays bounded at any number of users. The file is written under a
temporary name in the same directory and renamed into place when complete. Its Parquet metadata
marks it as a jifr export: an existing file is replaced only with ``force``, and only when jifr
wrote it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import jifr
from jifr.data.prepared import ItemFrames, PreparedData
from jifr.items.score import merge_top_k, new_frame_orders, new_item_scores
from jifr.items.store import NewItems
from jifr.models.base import Recommender
from jifr.outputs import OutputError, atomic_path
from jifr.progress import ProgressLog, progress_bar
from jifr.ranking import top_k_items

log = logging.getLogger(__name__)

MARKER_KEY = b"jifr_output"  # in the file's Parquet key-value metadata
MARKER_VALUE = b"export"
ROW_BUDGET = 2**16  # (user, item) rows per chunk of users (one Parquet row group)
FRAME_CELLS = 2**24  # frame feature values gathered per score_frames call
INF, NAN = float("inf"), float("nan")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    users: int
    rows: int


def export_schema(ranks_frames: bool) -> pa.Schema:
    fields = [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("new", pa.bool_(), nullable=False),
    ]
    if ranks_frames:
        fields += [pa.field("key_frame_id", pa.string()), pa.field("key_frame_score", pa.float32())]
    metadata = {MARKER_KEY: MARKER_VALUE, b"jifr_version": jifr.__version__.encode()}
    return pa.schema(fields, metadata=metadata)


def is_jifr_export(path: Path) -> bool:
    """Whether ``path`` is a Parquet file that jifr wrote as an export."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return metadata.get(MARKER_KEY) == MARKER_VALUE


def check_export_path(path: str | Path, force: bool = False) -> None:
    """Refuse (OutputError) an ``path`` that is a directory, a file jifr did not write as an
    export, or an earlier export when ``force`` is not set."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a directory; --out names the Parquet file to write")
    if not path.exists() and not path.is_symlink():
        return
    if not is_jifr_export(path):
        raise OutputError(path, "exists and is not a jifr export; refusing to overwrite it (choose a new --out)")
    if not force:
        raise OutputError(path, "already holds a jifr export; pass --force to replace it")


@torch.no_grad()
def key_frames(
    model: Recommender, frames: ItemFrames, users: torch.Tensor, items: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Each (user, item) pair's key frame: (P,) frame rows (-1 for an item without frames) and
    (P,) scores. The key frame is the best-scored one, ties towards the item's earlier frame; a
    NaN score never wins over a number."""
    if not len(items):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    counts = torch.as_tensor(frames.counts)
    step = max(1, FRAME_CELLS // max(1, int(counts.max()) * frames.features.shape[1]))
    rows, scores = torch.full((len(items),), -1), torch.full((len(items),), NAN)
    for start in range(0, len(items), step):
        block = slice(start, start + step)
        frame_scores = model.score_frames(users[block], items[block])  # (b, F_max), -inf padded
        if not frame_scores.shape[1]:  # none of these items has a frame
            continue
        slot = torch.nan_to_num(frame_scores, nan=-INF, posinf=INF, neginf=-INF).argmax(1)  # first of equal maxima
        has_frames = counts[items[block]] > 0
        first = torch.as_tensor(frames.indptr)[items[block]]
        rows[block] = torch.where(has_frames, first + slot, -1)
        scores[block] = torch.where(has_frames, frame_scores.gather(1, slot[:, None])[:, 0], NAN)
    return rows.numpy(), scores.numpy()


def recommendations_table(
    model: Recommender,
    data: PreparedData,
    users: np.ndarray,
    k: int,
    exclude_seen: bool = True,
    new: NewItems | None = None,
) -> pa.Table:
    """The export's rows for ``users`` (indices), in the export's schema, ``new`` items merged in."""
    user_tensor = torch.as_tensor(users, dtype=torch.long)
    scores, items = top_k_items(model, user_tensor, k, data.n_items, data.interacted if exclude_seen else None)
    extra = new_item_scores(model, users, new) if new is not None else np.zeros((len(users), 0), np.float32)
    chosen = merge_top_k(scores.numpy(), extra, k)  # (B, k) columns of [catalogue top k | new items]
    row, rank = np.nonzero(chosen >= 0)
    column = chosen[row, rank]
    is_new = column >= k
    catalogue = ~is_new
    item = np.empty(len(row), dtype=np.int64)  # a catalogue item's index, or a new item's in ``new``
    score = np.empty(len(row), dtype=np.float32)
    item[catalogue], score[catalogue] = (
        items.numpy()[row[catalogue], column[catalogue]],
        scores.numpy()[row[catalogue], column[catalogue]],
    )
    item[is_new], score[is_new] = column[is_new] - k, extra[row[is_new], column[is_new] - k]
    item_ids = np.empty(len(row), dtype=object)
    item_ids[catalogue] = data.item_ids[item[catalogue]]
    if is_new.any():
        assert new is not None
        item_ids[is_new] = [new.item_ids[j] for j in item[is_new].tolist()]
    columns = {
        "user_id": data.user_ids[users[row]],
        "rank": (rank + 1).astype(np.int32),
        "item_id": item_ids,
        "score": score,
        "new": is_new,
    }
    if model.ranks_frames:
        frame_ids = np.full(len(row), None, dtype=object)
        frame_scores = np.full(len(row), np.nan, dtype=np.float32)
        frame_rows, best = key_frames(
            model, data.frames, torch.as_tensor(users[row[catalogue]]), torch.as_tensor(item[catalogue])
        )
        has_frame = frame_rows >= 0
        frame_ids[catalogue] = np.where(has_frame, data.frame_ids[np.maximum(frame_rows, 0)], None)
        frame_scores[catalogue] = np.where(has_frame, best, np.nan)
        if is_new.any():
            assert new is not None
            orders = new_frame_orders(model, users[row[is_new]].tolist(), item[is_new].tolist(), new)
            frame_ids[is_new] = [new.frame_ids[int(rows[0])] for rows, _ in orders]
            frame_scores[is_new] = [float(values[0]) for _, values in orders]
        columns["key_frame_id"], columns["key_frame_score"] = frame_ids, frame_scores
    schema = export_schema(model.ranks_frames)
    return pa.table({name: pa.array(values, type=schema.field(name).type) for name, values in columns.items()}, schema)


def export_recommendations(
    model: Recommender,
    data: PreparedData,
    out: str | Path,
    k: int = 50,
    *,
    exclude_seen: bool = True,
    force: bool = False,
    show_progress: bool = True,
    new: NewItems | None = None,
) -> ExportSummary:
    """Write every user's top-``k`` items (with key frames, for models that rank frames) to the
    Parquet file ``out``, the ``new`` items (``jifr.items.score.scored_new_items``) merged in; see
    the module docstring for the columns and the guarantees."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not model.ranks_items:
        raise ValueError(f"{model.model_name} does not rank items; export needs a model that does")
    out = Path(out)
    check_export_path(out, force)
    model.eval()  # keeps the item cache of a model already in eval mode
    step = max(1, ROW_BUDGET // max(k, 1))
    bar = progress_bar(total=data.n_users, enabled=show_progress, desc="export", unit="user")
    ticker = ProgressLog(log, "exported", data.n_users, "users", bar, enabled=show_progress)
    rows = 0
    schema = export_schema(model.ranks_frames)
    with bar, atomic_path(out) as temporary, pq.ParquetWriter(temporary, schema) as writer:
        for start in range(0, data.n_users, step):
            users = np.arange(start, min(start + step, data.n_users))
            table = recommendations_table(model, data, users, k, exclude_seen, new)
            writer.write_table(table)
            rows += table.num_rows
            bar.update(len(users))
            ticker.update(int(users[-1]) + 1)
    log.info("wrote %d recommendations of %d users to %s", rows, data.n_users, out)
    return ExportSummary(out, data.n_users, rows)
