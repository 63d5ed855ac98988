"""Reading the frame-feature store: ``.npy`` + ids, ``.safetensors`` or Parquet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jifr.errors import DataError

NPY_NAME = "frame_features.npy"
NPY_IDS_NAME = "frame_features.ids.txt"
SAFETENSORS_NAME = "frame_features.safetensors"
PARQUET_NAME = "frame_features.parquet"
FEATURE_DTYPES = (np.float16, np.float32)


@dataclass
class FrameFeatures:
    """``values[r]`` is the feature row of frame ``frame_ids[r]``; ``values`` may be a memmap."""

    path: Path
    frame_ids: np.ndarray  # (L,) str
    values: np.ndarray  # (L, D) float16 | float32

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


def find_feature_store(directory: Path) -> Path:
    """The feature file of a dataset directory; exactly one of the three forms must exist."""
    found = [directory / n for n in (NPY_NAME, SAFETENSORS_NAME, PARQUET_NAME) if (directory / n).exists()]
    if not found:
        raise DataError(
            directory, f"no frame features ({NPY_NAME} + {NPY_IDS_NAME}, {SAFETENSORS_NAME} or {PARQUET_NAME})"
        )
    if len(found) > 1:
        raise DataError(directory, f"several feature stores ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def read_frame_features(path: Path) -> FrameFeatures:
    """Open a feature store, memory-mapping ``.npy`` files; checks shape, dtype and the id count."""
    readers = {".npy": _read_npy, ".safetensors": _read_safetensors, ".parquet": _read_parquet}
    frame_ids, values = readers[path.suffix](path)
    if values.ndim != 2:
        raise DataError(path, f"features must be a 2-d (frames, dim) array, got shape {values.shape}")
    if values.dtype not in FEATURE_DTYPES:
        raise DataError(path, f"features must be float16 or float32, got {values.dtype}")
    if len(frame_ids) != values.shape[0]:
        raise DataError(path, f"{values.shape[0]} feature rows but {len(frame_ids)} frame ids")
    _check_unique(path, frame_ids)
    return FrameFeatures(path=path, frame_ids=frame_ids, values=values)


def _check_unique(path: Path, frame_ids: np.ndarray) -> None:
    _, first, counts = np.unique(frame_ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(np.flatnonzero(counts > 1)[0])
        rows = np.flatnonzero(frame_ids == frame_ids[first[dup]])
        raise DataError(path, f"frame id '{frame_ids[first[dup]]}' has several feature rows", row=int(rows[1]) + 1)


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ids_path = path.with_name(NPY_IDS_NAME)
    if not ids_path.exists():
        raise DataError(path, f"the frame-id list {ids_path.name} is missing beside it")
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(path, f"not a readable .npy array: {exc}") from None
    frame_ids = np.array(read_id_lines(ids_path), dtype=str)
    if (np.char.str_len(frame_ids) == 0).any():
        row = int(np.flatnonzero(np.char.str_len(frame_ids) == 0)[0]) + 1
        raise DataError(ids_path, "empty frame id", row=row)
    return frame_ids, values


def read_id_lines(path: Path) -> list[str]:
    """One id per line. Only ``\\n`` (or ``\\r\\n``) ends a line: ``str.splitlines`` would also
    split ids at characters such as U+0085 or U+2028 and shift every id after them."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _read_safetensors(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            if "features" not in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                raise DataError(path, "no tensor named 'features'")
            values = f.get_tensor("features")
    except (SafetensorError, TypeError) as exc:  # TypeError: a dtype NumPy lacks (bfloat16)
        raise DataError(path, f"not a readable .safetensors file: {exc}") from None
    if "frame_ids" not in metadata:
        raise DataError(path, "no 'frame_ids' entry in the metadata (a JSON list of frame ids)")
    try:
        ids = json.loads(metadata["frame_ids"])
    except json.JSONDecodeError as exc:
        raise DataError(path, f"metadata 'frame_ids' is not a JSON list: {exc}") from None
    # A JSON string would otherwise be split into one-character ids.
    if not isinstance(ids, list) or not all(isinstance(x, str | int) for x in ids):
        raise DataError(path, "metadata 'frame_ids' must be a JSON list of frame ids (strings)")
    return np.array([str(x) for x in ids], dtype=str), values


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    for column in ("frame_id", "feature"):
        if column not in table.column_names:
            raise DataError(path, f"missing column '{column}'")
    if table.num_rows == 0:
        raise DataError(path, "the feature table has no rows")
    # A null must not become the id 'None'.
    ids_column = pc.cast(table.column("frame_id"), pa.string()).fill_null("")
    frame_ids = np.asarray(ids_column.to_numpy(zero_copy_only=False)).astype(str)
    if (np.char.str_len(frame_ids) == 0).any():
        row = int(np.flatnonzero(np.char.str_len(frame_ids) == 0)[0]) + 1
        raise DataError(path, "empty frame id", row=row)
    features = table.column("feature").combine_chunks()
    if features.null_count:
        raise DataError(path, "missing feature", row=_first_null_row(features))
    lengths = np.asarray(pc.list_value_length(features).to_numpy(zero_copy_only=False))
    if (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0]) + 1
        raise DataError(path, f"feature has {lengths[bad - 1]} values, expected {lengths[0]} like row 1", row=bad)
    flat = features.flatten().to_numpy(zero_copy_only=False)
    values = np.asarray(flat).reshape(len(frame_ids), -1)
    if values.dtype == np.float64:
        values = values.astype(np.float32)
    return frame_ids, values


def _first_null_row(column: pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))[0]) + 1


def first_non_finite_row(values: np.ndarray, chunk_rows: int = 8192) -> int | None:
    """0-based index of the first row holding NaN or inf, scanning in chunks (memmap friendly)."""
    for start in range(0, values.shape[0], chunk_rows):
        block = np.asarray(values[start : start + chunk_rows])
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            return start + int(np.flatnonzero(bad)[0])
    return None
