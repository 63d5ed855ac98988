"""Reading the frame-feature store: ``.npy`` + ids, ``.safetensors`` or Parquet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jifr.data.file_checks import ID_MAX_CHARS, check_readable_file, check_utf8_text, path_exists
from jifr.data.tables import read_parquet
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
    found = [directory / n for n in (NPY_NAME, SAFETENSORS_NAME, PARQUET_NAME) if path_exists(directory / n)]
    if not found:
        raise DataError(
            directory, f"no frame features ({NPY_NAME} + {NPY_IDS_NAME}, {SAFETENSORS_NAME} or {PARQUET_NAME})"
        )
    if len(found) > 1:
        raise DataError(directory, f"several feature stores ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def read_frame_features(path: Path) -> FrameFeatures:
    """Open a feature store, memory-mapping ``.npy`` files; checks shape, dtype and the id count."""
    if check_readable_file(path) == 0:
        raise DataError(path, "the file is empty")
    readers = {".npy": _read_npy, ".safetensors": _read_safetensors, ".parquet": _read_parquet}
    frame_ids, values = readers[path.suffix](path)
    if values.ndim != 2:
        raise DataError(path, f"features must be a 2-d (frames, dim) array, got shape {values.shape}")
    if values.dtype not in FEATURE_DTYPES:
        raise DataError(path, f"features must be float16 or float32, got {values.dtype}")
    if values.shape[1] == 0:
        raise DataError(path, f"features have no values (shape {values.shape}); each row needs at least one")
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


def _checked_ids(path: Path, ids: list[str]) -> np.ndarray:
    """``ids`` as a NumPy str array, once none is empty, over-long or broken over lines."""
    for row, frame_id in enumerate(ids, start=1):
        if not frame_id:
            raise DataError(path, "empty frame id", row=row)
        if len(frame_id) > ID_MAX_CHARS:
            raise DataError(path, f"frame id of {len(frame_id):,} characters (at most {ID_MAX_CHARS:,})", row=row)
        if "\n" in frame_id or "\r" in frame_id:
            raise DataError(path, "line break inside a frame id", row=row)
    return np.array(ids, dtype=str)


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ids_path = path.with_name(NPY_IDS_NAME)
    if not path_exists(ids_path):
        raise DataError(path, f"the frame-id list {ids_path.name} is missing beside it")
    values = _load_npy(path)
    return read_frame_id_file(ids_path), values


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a corrupt header can fail inside NumPy's header parser
        if "mmap length is greater than file size" in str(exc):
            problem = "the data is shorter than the header's shape and dtype say (truncated?)"
        elif isinstance(exc, EOFError):
            problem = "the file ends early (truncated?)"
        elif isinstance(exc, ValueError):
            problem = str(exc).split("\n", 1)[0][:300]
        else:
            problem = f"the header is corrupt ({type(exc).__name__})"
        raise DataError(path, f"not a readable .npy array: {problem}") from None


def read_frame_id_file(path: Path) -> np.ndarray:
    """The frame ids of a ``.npy`` store, one per line, each checked."""
    if check_readable_file(path) == 0:
        raise DataError(path, "the file is empty (one frame id per line is required)")
    check_utf8_text(path, header_lines=0, what="a UTF-8 text file of frame ids")
    return _checked_ids(path, read_id_lines(path))


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
    except TypeError as exc:  # a dtype NumPy lacks (bfloat16)
        raise DataError(path, f"features must be float16 or float32 ({exc})") from None
    except (SafetensorError, OSError, ValueError) as exc:
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
    return _checked_ids(path, [str(x) for x in ids]), values


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = read_parquet(path)
    for column in ("frame_id", "feature"):
        if column not in table.column_names:
            raise DataError(path, f"missing column '{column}'")
    if table.num_rows == 0:
        raise DataError(path, "the feature table has no rows")
    frame_ids = _parquet_frame_ids(path, table.column("frame_id"))
    features = table.column("feature").combine_chunks()
    kind = features.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise DataError(path, f"column 'feature' must hold lists of numbers, got {kind}")
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


def _parquet_frame_ids(path: Path, column: pa.ChunkedArray) -> np.ndarray:
    try:
        ids = pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(path, f"column 'frame_id' must hold text, got {column.type}") from None
    return _checked_ids(path, ids.fill_null("").to_pylist())  # a null must not become the id 'None'


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
