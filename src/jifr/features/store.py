"""Writing the `.npy` + `.ids.txt` frame-feature store (docs/format.md) so that it can resume.

While a run is in progress the folder holds

- `<stem>.partial.npy`: a preallocated (n_inputs, D) array, written row by row through a
  memory map; rows past `rows` are garbage;
- `<stem>.progress.json`: how far the run got, flushed after every batch (after the rows
  themselves), with a fingerprint of the inputs and settings.

On success the array is cut to the rows written and both files are renamed to their final
names, `<stem>.npy` and `<stem>.ids.txt`, with `os.replace` (atomic on one file system).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import jifr
from jifr.outputs import (
    allocate_npy,
    fsync_path,
    reports_full_disk,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)

logger = logging.getLogger(__name__)

_PROGRESS_FORMAT = 1


@dataclass(frozen=True)
class ExtractProgress:
    """How far an extraction got; what the progress file holds and callbacks receive."""

    fingerprint: str  # hash of the inputs and settings; a mismatch means start over
    n_inputs: int
    next_input: int = 0  # inputs consumed (written or skipped), always a batch boundary
    rows: int = 0  # feature rows written
    skipped: tuple[tuple[str, str, str], ...] = ()  # (frame_id, path, reason)

    def advanced(self, next_input: int, new_rows: int, skipped: list[tuple[str, str, str]]) -> ExtractProgress:
        """The progress after one more batch."""
        return replace(
            self,
            next_input=next_input,
            rows=self.rows + new_rows,
            skipped=self.skipped + tuple(skipped),
        )


class FeatureStoreWriter:
    """The files of one feature store being written into `out_dir`."""

    def __init__(self, out_dir: Path, stem: str = "frame_features") -> None:
        self.out_dir = Path(out_dir)
        self.features_path = self.out_dir / f"{stem}.npy"
        self.ids_path = self.out_dir / f"{stem}.ids.txt"
        self.partial_path = self.out_dir / f"{stem}.partial.npy"
        self.progress_path = self.out_dir / f"{stem}.progress.json"
        self.record_path = self.out_dir / f"{stem}.extract.json"  # written last: jifr made this store
        self._rows: np.memmap | None = None

    def finished_exists(self) -> bool:
        """True when a completed store (either final file) is already there."""
        return self.features_path.exists() or self.ids_path.exists()

    def written_by_jifr(self) -> bool:
        """True when the store there was completed by this writer (its record file says so)."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and record.get("written_by") == "jifr features extract"

    def resume(self, fingerprint: str, n_inputs: int, dim: int, dtype: np.dtype) -> ExtractProgress:
        """The progress of an earlier run with the same fingerprint, else a fresh start (logged)."""
        fresh = ExtractProgress(fingerprint=fingerprint, n_inputs=n_inputs)
        saved = self._read_progress()
        if saved is None:
            return fresh
        if saved.fingerprint != fingerprint:
            logger.warning(
                "%s: inputs, encoder or settings changed since the interrupted run; starting over",
                self.progress_path,
            )
            return fresh
        if not self._partial_matches((n_inputs, dim), dtype):
            logger.warning("%s is missing or has another shape; starting over", self.partial_path)
            return fresh
        logger.info("resuming %s: %d of %d images already done", self.out_dir, saved.next_input, n_inputs)
        return saved

    def open_rows(self, progress: ExtractProgress, dim: int, dtype: np.dtype) -> None:
        """Open the (n_inputs, dim) array to write into: reopened when resuming, else created."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if progress.next_input > 0:
            self._rows = np.lib.format.open_memmap(self.partial_path, mode="r+")
            return
        shape = (progress.n_inputs, dim)
        self._rows = allocate_npy(self.partial_path, shape, dtype)
        self.commit(progress)

    def write_rows(self, start: int, values: np.ndarray) -> None:
        """Store (n, dim) `values` as rows start .. start + n - 1 (cast to the store's dtype)."""
        self._opened()[start : start + len(values)] = values

    def commit(self, progress: ExtractProgress) -> None:
        """Make the rows durable first, then record them as done (atomic file replace)."""
        self._opened().flush()
        record = {"format": _PROGRESS_FORMAT, **asdict(progress)}
        write_text_atomic(self.progress_path, json.dumps(record))

    def close(self) -> None:
        """Flush and release the memory map (the files stay, so that a rerun can resume)."""
        if self._rows is not None:
            self._rows.flush()
            self._rows = None  # the last reference: CPython unmaps the file here

    def finish(self, progress: ExtractProgress, frame_ids: list[str], details: dict[str, Any] | None = None) -> None:
        """Cut the array to the rows written and give both files their final names; ``details``
        join the record file."""
        self.close()
        if progress.rows < progress.n_inputs:
            _truncate_npy_rows(self.partial_path, progress.rows)
        ids_partial = self.ids_path.with_name(self.ids_path.name + ".partial")
        with reports_full_disk(self.ids_path):
            ids_partial.write_text("".join(f"{frame_id}\n" for frame_id in frame_ids), encoding="utf-8")
            for path in (self.partial_path, ids_partial):
                fsync_path(path)
        # Both files are durable before either takes its final name.
        os.replace(self.partial_path, self.features_path)
        os.replace(ids_partial, self.ids_path)
        record = {"written_by": "jifr features extract", "fingerprint": progress.fingerprint, "rows": progress.rows}
        record["features_sha256"] = sha256_file(self.features_path)  # ties the record to these very rows
        write_json_atomic(self.record_path, record | (details or {}) | {"jifr_version": jifr.__version__})
        self.progress_path.unlink(missing_ok=True)

    def _opened(self) -> np.memmap:
        if self._rows is None:
            raise RuntimeError("open_rows must be called first")
        return self._rows

    def _read_progress(self) -> ExtractProgress | None:
        if not self.progress_path.is_file():
            return None
        try:
            record = json.loads(self.progress_path.read_text(encoding="utf-8"))
            if record.pop("format") != _PROGRESS_FORMAT:
                return None
            record["skipped"] = tuple(tuple(entry) for entry in record["skipped"])
            return ExtractProgress(**record)
        except (ValueError, KeyError, TypeError):
            logger.warning("%s is unreadable; starting over", self.progress_path)
            return None

    def _partial_matches(self, shape: tuple[int, int], dtype: np.dtype) -> bool:
        if not self.partial_path.is_file():
            return False
        try:
            existing = np.load(self.partial_path, mmap_mode="r")
        except (ValueError, OSError):
            return False
        return existing.shape == shape and existing.dtype == dtype


def frame_encoder_of(features_path: Path) -> dict[str, Any] | None:
    """The encoder that wrote the feature store ``features_path`` (``encoders.encoder_record``:
    name, dim, weights_sha256), read from the record ``jifr features extract`` left beside it.

    None where there is no such record (features from elsewhere, e.g. synthetic ones, or from a
    jifr that did not record the encoder) or where the features file is no longer the one the
    record describes (its SHA-256 differs): then nothing is known of how its rows were made.
    """
    record_path = features_path.with_suffix(".extract.json")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != "jifr features extract":
        return None
    encoder = record.get("encoder")
    if not isinstance(encoder, dict) or not isinstance(encoder.get("name"), str):
        return None
    if record.get("features_sha256") != sha256_file(features_path):
        logger.warning(
            "%s: the features differ from the ones %s describes; their encoder is unknown",
            features_path,
            record_path.name,
        )
        return None
    return dict(encoder)


def _truncate_npy_rows(path: Path, n_rows: int) -> None:
    """Keep the first `n_rows` rows of a C-ordered 2-d `.npy` file, in place, in O(1).

    The header keeps its byte length (the shape only gets shorter, the slack is the
    format's own space padding) and the data after the kept rows is cut off.
    """
    with open(path, "r+b") as file:
        version = np.lib.format.read_magic(file)
        preamble = file.tell() + (2 if version == (1, 0) else 4)  # + the header-length field
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        data_offset = file.tell()
        if fortran_order or len(shape) != 2 or n_rows > shape[0]:
            raise ValueError(f"{path}: cannot keep {n_rows} rows of a {shape} array")
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (n_rows, shape[1]),
        }
        room = data_offset - preamble - 1  # the header ends with a newline
        if len(repr(header)) > room:
            raise ValueError(f"{path}: the new header does not fit in the old one")
        text = repr(header).ljust(room) + "\n"
        file.seek(preamble)
        file.write(text.encode("latin1"))
        file.truncate(data_offset + n_rows * shape[1] * dtype.itemsize)
