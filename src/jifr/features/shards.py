"""One feature store extracted in shards (by separate processes or machines), then merged.

``extract_features(..., shard=Shard(i, n))`` (``jifr features extract ... --shard i/n``) encodes
the i-th of n parts of the inputs into ``<stem>.shard-i-of-n.npy`` + ``.ids.txt`` +
``.extract.json``, resumable like a whole run. The parts are runs of whole batches, the very
batches of an unsharded run, so the merged store is byte for byte the unsharded one (on the
same machine and torch thread count, as for a resumed run).

``merge_shards(out_dir)`` (``jifr features merge OUT``) checks that all n shards are finished
and were cut from the same inputs with the same settings, writes ``<stem>.npy`` and
``<stem>.ids.txt`` as an unsharded run would (each to a temporary name, renamed into place once
both are complete) and then removes the shard files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import jifr
from jifr.errors import DataError
from jifr.features.store import FeatureStoreWriter, _truncate_npy_rows
from jifr.outputs import OutputError, allocate_npy, fsync_path, reports_full_disk, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

_COPY_ROWS = 65536  # rows copied at a time while merging


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count`` of an extraction's inputs."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 1 <= I <= N in I/N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/4"`` -> Shard(2, 4)."""
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if found is None:
            raise ValueError(f"a shard is I/N (e.g. 2/4, the second of four), not {text!r}")
        return cls(int(found[1]), int(found[2]))

    def stem(self, stem: str) -> str:
        """The file stem of this shard's part of the store ``stem``."""
        return f"{stem}.shard-{self.index}-of-{self.count}"

    def bounds(self, n_inputs: int, batch_size: int) -> tuple[int, int]:
        """[start, stop) of this shard's inputs: a run of whole batches, near-equal across shards."""
        n_batches = -(-n_inputs // batch_size)
        if self.count > n_batches:
            raise ValueError(
                f"{n_inputs} images make {n_batches} batch(es) of {batch_size}, too few for {self.count} shards; "
                f"use at most {n_batches} shards or a smaller batch size"
            )
        first, last = (self.index - 1) * n_batches // self.count, self.index * n_batches // self.count
        return first * batch_size, min(last * batch_size, n_inputs)

    def record(self, bounds: tuple[int, int], n_inputs: int, run_fingerprint: str, skipped: int) -> dict[str, Any]:
        """What the shard's ``.extract.json`` says of it, for ``merge_shards`` to check."""
        return {
            "shard": {
                "index": self.index,
                "count": self.count,
                "inputs": list(bounds),
                "n_inputs": n_inputs,
                "run_fingerprint": run_fingerprint,  # of all inputs and the settings: equal in every shard
                "skipped": skipped,
            }
        }


@dataclass(frozen=True)
class MergeResult:
    features_path: Path
    ids_path: Path
    n_written: int
    n_skipped: int  # images the shards left out (--skip-bad)
    n_shards: int


def merge_shards(out_dir: Path, stem: str = "frame_features", overwrite: bool = False) -> MergeResult:
    """Assemble the finished shards of ``stem`` in ``out_dir`` into ``<stem>.npy`` + ``.ids.txt``.

    Raises DataError when there is no shard, when some are not finished, or when they come from
    other inputs or settings (or do not match their records); FileExistsError when the store is
    already there and ``overwrite`` is False; OutputError when that store was not written by jifr.
    """
    out_dir = Path(out_dir)
    shards = _finished_shards(out_dir, stem)
    _check_complete(out_dir, stem, shards)
    store = FeatureStoreWriter(out_dir, stem)
    if store.finished_exists() and not overwrite:
        raise FileExistsError(f"{store.features_path} already exists (pass overwrite=True, --overwrite)")
    if store.finished_exists() and not store.written_by_jifr():
        raise OutputError(store.features_path, "was not written by jifr; refusing to replace it")
    arrays = [_shard_rows(out_dir, stem, info) for info in shards]
    ids = [_shard_ids(out_dir, stem, info) for info in shards]
    first = shards[0]["shard"]
    rows = _write_store(store, arrays, ids, first["n_inputs"])
    record = {"written_by": "jifr features extract", "fingerprint": first["run_fingerprint"], "rows": rows}
    record |= {"features_sha256": sha256_file(store.features_path), "encoder": shards[0].get("encoder")}
    write_json_atomic(store.record_path, record | {"merged_shards": len(shards), "jifr_version": jifr.__version__})
    for info in shards:  # superseded by the store, which is in place
        for suffix in (".npy", ".ids.txt", ".extract.json"):
            (out_dir / f"{_shard_stem(stem, info)}{suffix}").unlink(missing_ok=True)
    skipped = sum(info["shard"]["skipped"] for info in shards)
    logger.info("merged %d shards: %d feature rows into %s", len(shards), rows, store.features_path)
    return MergeResult(store.features_path, store.ids_path, rows, skipped, len(shards))


def _shard_stem(stem: str, info: dict[str, Any]) -> str:
    return Shard(info["shard"]["index"], info["shard"]["count"]).stem(stem)


def _finished_shards(out_dir: Path, stem: str) -> list[dict[str, Any]]:
    """The records of the finished shards of ``stem``, by index; DataError when there is none."""
    records = []
    for path in sorted(out_dir.glob(f"{stem}.shard-*-of-*.extract.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            info = record["shard"]
            int(info["index"]), int(info["count"]), int(info["n_inputs"]), str(info["run_fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(path, "not a shard record written by `jifr features extract --shard`") from None
        records.append(record)
    if not records:
        raise DataError(out_dir, f"no finished shards of {stem} to merge (from `jifr features extract --shard I/N`)")
    return sorted(records, key=lambda record: (record["shard"]["count"], record["shard"]["index"]))


def _check_complete(out_dir: Path, stem: str, shards: list[dict[str, Any]]) -> None:
    """DataError unless the shards are all n parts of one extraction."""
    splits = sorted({(info["shard"]["count"], info["shard"]["run_fingerprint"]) for info in shards})
    if len(splits) > 1:
        described = ", ".join(f"{count} shards of inputs/settings {fingerprint[:12]}" for count, fingerprint in splits)
        raise DataError(
            out_dir,
            f"the shards of {stem} come from different extractions ({described}): other inputs, settings or shard "
            "counts; remove the stale shard files and extract them again",
        )
    count = shards[0]["shard"]["count"]
    missing = sorted(set(range(1, count + 1)) - {info["shard"]["index"] for info in shards})
    if missing:
        unfinished = ", ".join(f"{index}/{count}" for index in missing)
        raise DataError(
            out_dir,
            f"incomplete: shard(s) {unfinished} of {stem} are not finished; run "
            f"`jifr features extract ... --shard I/{count}` for each, then merge again",
        )


def _shard_rows(out_dir: Path, stem: str, info: dict[str, Any]) -> np.ndarray:
    """The shard's (rows, D) array, memory-mapped, checked against its record."""
    path = out_dir / f"{_shard_stem(stem, info)}.npy"
    if "features_sha256" in info and path.is_file() and sha256_file(path) != info["features_sha256"]:
        raise DataError(path, "changed since its extraction (its SHA-256 differs from its record); extract it again")
    try:
        values = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(path, f"unreadable shard ({error}); extract this shard again with --overwrite") from None
    if values.ndim != 2 or len(values) != info["rows"]:
        raise DataError(path, f"shape {values.shape} does not match its record ({info['rows']} rows)")
    return values


def _shard_ids(out_dir: Path, stem: str, info: dict[str, Any]) -> list[str]:
    path = out_dir / f"{_shard_stem(stem, info)}.ids.txt"
    try:
        ids = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(path, f"unreadable shard ({error}); extract this shard again with --overwrite") from None
    if len(ids) != info["rows"]:
        raise DataError(path, f"{len(ids)} frame ids for {info['rows']} feature rows in its record")
    return ids


def _write_store(store: FeatureStoreWriter, arrays: list[np.ndarray], ids: list[list[str]], n_inputs: int) -> int:
    """Write the concatenated rows and ids under their final names; the number of rows.

    The array is laid out as an unsharded run lays it out (allocated for every input, then cut
    to the rows written), so that the bytes are the same."""
    shapes = {(values.shape[1], values.dtype.str) for values in arrays}
    if len(shapes) > 1:
        raise DataError(store.out_dir, f"the shards differ in feature width or type: {sorted(shapes)}")
    (dim, dtype), rows = shapes.pop(), sum(len(values) for values in arrays)
    features_partial = store.out_dir / f".{store.features_path.name}.merge.npy"
    ids_partial = store.out_dir / f".{store.ids_path.name}.merge"
    try:
        with reports_full_disk(store.features_path):
            merged = allocate_npy(features_partial, (n_inputs, dim), np.dtype(dtype))
            start = 0
            for values in arrays:
                for offset in range(0, len(values), _COPY_ROWS):
                    block = values[offset : offset + _COPY_ROWS]
                    merged[start + offset : start + offset + len(block)] = block
                start += len(values)
            merged.flush()
            del merged
            if rows < n_inputs:
                _truncate_npy_rows(features_partial, rows)
            ids_partial.write_text("".join(f"{frame_id}\n" for part in ids for frame_id in part), encoding="utf-8")
            for path in (features_partial, ids_partial):
                fsync_path(path)
        # Both files are durable before either takes its final name.
        os.replace(features_partial, store.features_path)
        os.replace(ids_partial, store.ids_path)
    finally:
        features_partial.unlink(missing_ok=True)
        ids_partial.unlink(missing_ok=True)
    return rows
