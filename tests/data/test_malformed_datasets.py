"""Malformed dataset directories: `jifr prepare` ends each with one message and exit code 2.

Each case starts from the valid handmade directory (tests/conftest.py) and breaks one thing. The
command must exit with code 2, print no traceback, raise nothing but SystemExit, and name the
offending file. test_bad_input.py checks the exact rows and wording of many of these problems
through the Python API; here the point is breadth, through the command line.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from conftest import write_csv
from safetensors.numpy import save_file
from typer.testing import CliRunner

from jifr.cli import app

FRAMES = ["f00", "f01", "f10", "f11", "f20", "f21"]
HEADERS = {
    "interactions": "user_id,item_id,timestamp",
    "item_frames": "item_id,frame_id",
    "frame_likes": "user_id,item_id,frame_id",
    "frame_exposures": "user_id,item_id,frame_id",
    "frame_feedback": "user_id,item_id,frame_id,label",
}
# Valid exposures of the handmade dataset: each liked frame and the other frame of its item.
EXPOSED = ["u0,i1,f10", "u0,i1,f11", "u2,i2,f20", "u2,i2,f21"]
FEATURES = np.arange(24, dtype=np.float32).reshape(6, 4)
KEEP_ALL = ["--min-user", "1", "--min-item", "1"]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
RANDOM_BYTES = np.random.default_rng(0).bytes(4096)

# --- ways to break a dataset --------------------------------------------------------------------


def data_rows(directory: Path, stem: str) -> list[str]:
    return (directory / f"{stem}.csv").read_text(encoding="utf-8").splitlines()[1:]


def set_row(directory: Path, stem: str, row: int, text: str) -> None:
    """Replace data row ``row`` (1-based) of ``stem.csv``."""
    rows = data_rows(directory, stem)
    rows[row - 1] = text
    write_csv(directory / f"{stem}.csv", HEADERS[stem], rows)


def append(directory: Path, stem: str, *rows: str) -> None:
    write_csv(directory / f"{stem}.csv", HEADERS[stem], data_rows(directory, stem) + list(rows))


def set_header(directory: Path, stem: str, header: str, fields: int | None = None) -> None:
    """Replace the header; ``fields`` pads every data row to that many fields."""
    rows = data_rows(directory, stem)
    if fields is not None:
        rows = [row + ",x" * (fields - row.count(",") - 1) for row in rows]
    write_csv(directory / f"{stem}.csv", header, rows)


def put(directory: Path, name: str, content: bytes) -> None:
    (directory / name).write_bytes(content)


def edit_bytes(directory: Path, name: str, edit: Callable[[bytes], bytes]) -> None:
    path = directory / name
    path.write_bytes(edit(path.read_bytes()))


def recode(directory: Path, stem: str, row: int, text: str, encoding: str) -> None:
    """Replace data row ``row`` of ``stem.csv`` and save the whole file in ``encoding``."""
    set_row(directory, stem, row, text)
    path = directory / f"{stem}.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))


def to_tsv(directory: Path, stem: str, edit: Callable[[str], str] = lambda text: text.replace(",", "\t")) -> None:
    csv_path = directory / f"{stem}.csv"
    (directory / f"{stem}.tsv").write_text(edit(csv_path.read_text(encoding="utf-8")), encoding="utf-8")
    csv_path.unlink()


def to_parquet(directory: Path, stem: str, columns: list[pa.Array | list[object]], names: list[str]) -> None:
    (directory / f"{stem}.csv").unlink()
    table = pa.Table.from_arrays([pa.array(c) for c in columns], names=names)
    pq.write_table(table, directory / f"{stem}.parquet")


def interactions_parquet(directory: Path, **replace: pa.Array) -> None:
    users = pa.array([f"u{u}" for u in range(3) for _ in range(3)])
    items = pa.array([f"i{i}" for _ in range(3) for i in range(3)])
    columns = {"user_id": users, "item_id": items, "timestamp": pa.array(range(9), pa.int64())}
    columns |= replace
    to_parquet(directory, "interactions", list(columns.values()), list(columns))


def with_column(directory: Path, stem: str, column: str, row: int, value: str) -> None:
    """Add ``column`` to ``stem.csv`` (values v1, v2, ...); data row ``row`` gets ``value`` as written."""
    rows = [f"{line},v{k}" for k, line in enumerate(data_rows(directory, stem), start=1)]
    rows[row - 1] = rows[row - 1].rsplit(",", 1)[0] + "," + value
    write_csv(directory / f"{stem}.csv", f"{HEADERS[stem]},{column}", rows)


def exposures(directory: Path, rows: list[str] = EXPOSED, header: str = HEADERS["frame_exposures"]) -> None:
    """Give the handmade dataset a frame_exposures table."""
    write_csv(directory / "frame_exposures.csv", header, rows)


def feedback(directory: Path, rows: list[str], header: str = HEADERS["frame_feedback"]) -> None:
    """Give the handmade dataset a frame_feedback table."""
    write_csv(directory / "frame_feedback.csv", header, rows)


def all_timestamps(directory: Path, value: str) -> None:
    rows = [f"u{u},i{i},{value}" for u in range(3) for i in range(3)]
    write_csv(directory / "interactions.csv", HEADERS["interactions"], rows)


def as_directory(directory: Path, name: str) -> None:
    path = directory / name
    if path.exists():
        path.unlink()
    (path / "inner").mkdir(parents=True)


def drop_npy(directory: Path) -> None:
    for name in ("frame_features.npy", "frame_features.ids.txt"):
        (directory / name).unlink()


def npy_store(directory: Path, values: np.ndarray, ids: list[str] = FRAMES) -> None:
    np.save(directory / "frame_features.npy", values)
    (directory / "frame_features.ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


def npy_bytes(descr: str, shape: tuple[int, ...], data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def safetensors_store(directory: Path, values: np.ndarray | None = None, ids: list[str] = FRAMES) -> None:
    drop_npy(directory)
    path = directory / "frame_features.safetensors"
    save_file({"features": FEATURES if values is None else values}, str(path), {"frame_ids": json.dumps(ids)})


def raw_safetensors(directory: Path, dtype: str, shape: list[int], nbytes: int) -> None:
    """A store written by hand, for dtypes NumPy cannot write (bfloat16)."""
    drop_npy(directory)
    entry = {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}
    header = json.dumps({"features": entry, "__metadata__": {"frame_ids": json.dumps(FRAMES)}}).encode()
    put(directory, "frame_features.safetensors", struct.pack("<Q", len(header)) + header + bytes(nbytes))


def parquet_store(directory: Path, ids: pa.Array | list[str] = FRAMES, features: pa.Array | None = None) -> None:
    drop_npy(directory)
    if features is None:
        features = pa.array(FEATURES.tolist(), pa.list_(pa.float32()))
    pq.write_table(pa.table({"frame_id": ids, "feature": features}), directory / "frame_features.parquet")


def symlink_loop(directory: Path, name: str) -> None:
    (directory / name).unlink()
    (directory / name).symlink_to(name)


def fifo(directory: Path, name: str) -> None:
    (directory / name).unlink()
    os.mkfifo(directory / name)


def case(case_id: str, file: str, phrase: str, breaker: Callable[[Path], object]) -> object:
    """One malformed dataset: ``breaker`` breaks the handmade directory; the message must name
    ``file`` and contain ``phrase``."""
    return pytest.param(breaker, file, phrase, id=case_id)


NOT_UTF8 = "is not valid UTF-8"
ENCODING = [
    case("random-bytes", "interactions.csv", NOT_UTF8, lambda d: put(d, "interactions.csv", RANDOM_BYTES)),
    case("gzip", "interactions.csv", "gzip", lambda d: edit_bytes(d, "interactions.csv", gzip.compress)),
    case("png", "item_frames.csv", "PNG image", lambda d: put(d, "item_frames.csv", PNG)),
    case("latin-1", "interactions.csv", NOT_UTF8, lambda d: recode(d, "interactions", 4, "Jos\xe9,i0,3", "latin-1")),
    case("utf-16", "frame_likes.csv", NOT_UTF8, lambda d: recode(d, "frame_likes", 1, "u0,i1,f10", "utf-16")),
    case("nul-byte", "item_frames.csv", "NUL byte", lambda d: set_row(d, "item_frames", 3, "i1,f\x0010")),
    case(
        "cut-character", "item_frames.csv", NOT_UTF8, lambda d: edit_bytes(d, "item_frames.csv", lambda b: b + b"\xc3")
    ),
    case(
        "invalid-utf8-tsv",
        "interactions.tsv",
        NOT_UTF8,
        lambda d: (to_tsv(d, "interactions"), edit_bytes(d, "interactions.tsv", lambda b: b.replace(b"i1", b"i\xff"))),
    ),
    case(
        "latin-1-frame-ids",
        "frame_features.ids.txt",
        NOT_UTF8,
        lambda d: edit_bytes(d, "frame_features.ids.txt", lambda b: b.replace(b"f01", b"f\xe91")),
    ),
    case(
        "binary-frame-ids", "frame_features.ids.txt", NOT_UTF8, lambda d: put(d, "frame_features.ids.txt", RANDOM_BYTES)
    ),
    case("binary-items-table", "items.csv", "PNG image", lambda d: put(d, "items.csv", PNG)),
]
UNCLOSED = "unbalanced quote"
SPANS_LINES = "runs past the end of its line"
QUOTING = [
    case("quote-mid-file", "interactions.csv", UNCLOSED, lambda d: set_row(d, "interactions", 5, 'u1,"i1,11')),
    case("quote-last-field", "interactions.csv", UNCLOSED, lambda d: set_row(d, "interactions", 5, 'u1,i1,"11')),
    case("quote-last-row", "item_frames.csv", UNCLOSED, lambda d: set_row(d, "item_frames", 6, 'i2,"f21')),
    case("quote-in-title", "item_frames.csv", UNCLOSED, lambda d: with_column(d, "item_frames", "title", 3, '"A')),
    case("quote-unused-column", "frame_likes.csv", UNCLOSED, lambda d: with_column(d, "frame_likes", "x", 1, '"a')),
    case(
        "quote-header", "frame_likes.csv", UNCLOSED, lambda d: set_header(d, "frame_likes", 'user_id,"item_id,frame_id')
    ),
    case(
        "quote-tsv",
        "interactions.tsv",
        UNCLOSED,
        lambda d: (set_row(d, "interactions", 3, 'u0,"i2,2'), to_tsv(d, "interactions")),
    ),
    case(
        "stray-quotes-swallow-rows",
        "item_frames.csv",
        UNCLOSED,
        lambda d: (set_row(d, "item_frames", 2, 'i0,"f01'), set_row(d, "item_frames", 5, 'i2,f2"0')),
    ),
]
TWICE = "appears twice"
HEADER = [
    case(
        "repeated-column", "interactions.csv", TWICE, lambda d: set_header(d, "interactions", "user_id,item_id,item_id")
    ),
    case(
        "repeated-id",
        "frame_likes.csv",
        TWICE,
        lambda d: set_header(d, "frame_likes", HEADERS["frame_likes"] + ",user_id", 4),
    ),
    case(
        "repeated-blank-name", "item_frames.csv", TWICE, lambda d: set_header(d, "item_frames", "item_id,frame_id,,", 4)
    ),
    case(
        "repeated-parquet-column",
        "interactions.parquet",
        TWICE,
        lambda d: to_parquet(d, "interactions", [["u0"], ["i0"], ["i1"]], ["user_id", "item_id", "item_id"]),
    ),
    case("no-header", "interactions.csv", "missing column", lambda d: set_header(d, "interactions", "u9,i0,90")),
    case("capitals", "item_frames.csv", "missing column", lambda d: set_header(d, "item_frames", "Item_ID,Frame_ID")),
    case(
        "spaces-in-header",
        "interactions.csv",
        "found user_id, ' item_id'",
        lambda d: set_header(d, "interactions", "user_id, item_id, timestamp"),
    ),
    case("commas-in-tsv", "interactions.tsv", "missing column", lambda d: to_tsv(d, "interactions", lambda text: text)),
    case(
        "header-over-64-kib",
        "item_frames.csv",
        "header line is longer",
        lambda d: set_header(d, "item_frames", "item_id,frame_id," + "x" * 70_000, 3),
    ),
]
NUMERIC = "must be numeric"
NON_FINITE = "non-finite 'timestamp'"
TYPES = [
    case("date-timestamps", "interactions.csv", NUMERIC, lambda d: all_timestamps(d, "2020-01-01")),
    case("boolean-timestamps", "interactions.csv", NUMERIC, lambda d: all_timestamps(d, "true")),
    case("nan-timestamp", "interactions.csv", NON_FINITE, lambda d: set_row(d, "interactions", 2, "u0,i1,nan")),
    case(
        "overflowing-timestamp", "interactions.csv", NON_FINITE, lambda d: set_row(d, "interactions", 7, "u2,i0,1e400")
    ),
    case(
        "text-timestamp-parquet",
        "interactions.parquet",
        NUMERIC,
        lambda d: interactions_parquet(d, timestamp=pa.array(["1", "2", "abc"] + ["4"] * 6)),
    ),
    case(
        "list-timestamps-parquet",
        "interactions.parquet",
        NUMERIC,
        lambda d: interactions_parquet(d, timestamp=pa.array([[1.0]] * 9)),
    ),
    case(
        "list-ids-parquet",
        "interactions.parquet",
        "must hold text",
        lambda d: interactions_parquet(d, user_id=pa.array([["u0"]] * 9)),
    ),
    case(
        "non-utf8-ids-parquet",
        "interactions.parquet",
        "must hold text",
        lambda d: interactions_parquet(d, item_id=pa.array([b"i0", b"\xff"] + [b"i1"] * 7, pa.binary())),
    ),
]
TOO_LONG = "characters (at most"
IDS = [
    case("quoted-empty-id", "interactions.csv", "empty value", lambda d: set_row(d, "interactions", 5, 'u1,"",11')),
    case("line-break-in-id", "item_frames.csv", SPANS_LINES, lambda d: set_row(d, "item_frames", 2, 'i0,"f0\n1"')),
    case(
        "carriage-return-in-id",
        "frame_likes.csv",
        "line break",
        lambda d: set_row(d, "frame_likes", 2, 'u2,i2,"f\r21"'),
    ),
    case("long-user-id", "interactions.csv", TOO_LONG, lambda d: set_row(d, "interactions", 6, "u" * 2000 + ",i2,12")),
    case("long-title", "item_frames.csv", TOO_LONG, lambda d: with_column(d, "item_frames", "title", 4, "t" * 10_000)),
    case("long-unused-value", "frame_likes.csv", TOO_LONG, lambda d: with_column(d, "frame_likes", "x", 1, "n" * 9000)),
    case(
        "long-frame-id-in-id-list",
        "frame_features.ids.txt",
        TOO_LONG,
        lambda d: npy_store(d, FEATURES, FRAMES[:5] + ["f" * 5000]),
    ),
    case(
        "blank-line-in-id-list",
        "frame_features.ids.txt",
        "empty frame id",
        lambda d: npy_store(d, FEATURES, ["f00", "f01", ""] + FRAMES[3:]),
    ),
    case("empty-id-list", "frame_features.ids.txt", "is empty", lambda d: put(d, "frame_features.ids.txt", b"")),
    case(
        "empty-id-in-safetensors",
        "frame_features.safetensors",
        "empty frame id",
        lambda d: safetensors_store(d, ids=FRAMES[:5] + [""]),
    ),
    case(
        "long-id-in-parquet-store",
        "frame_features.parquet",
        TOO_LONG,
        lambda d: parquet_store(d, ids=FRAMES[:5] + ["f" * 3000]),
    ),
]
NOT_2D = "must be a 2-d"
NOT_FLOAT = "must be float16 or float32"
DIMENSIONS = [
    case(
        "more-ids-than-rows",
        "frame_features.npy",
        "but 7 frame ids",
        lambda d: npy_store(d, FEATURES, [*FRAMES, "f30"]),
    ),
    case("npy-1d", "frame_features.npy", NOT_2D, lambda d: npy_store(d, FEATURES.ravel()[:6])),
    case("npy-3d", "frame_features.npy", NOT_2D, lambda d: npy_store(d, FEATURES.reshape(6, 2, 2))),
    case("npy-0d", "frame_features.npy", NOT_2D, lambda d: npy_store(d, np.float32(1.0))),
    case("npy-no-columns", "frame_features.npy", "no values", lambda d: npy_store(d, np.zeros((6, 0), np.float32))),
    case("npy-int64", "frame_features.npy", NOT_FLOAT, lambda d: npy_store(d, FEATURES.astype(np.int64))),
    case("npy-float64", "frame_features.npy", NOT_FLOAT, lambda d: npy_store(d, FEATURES.astype(np.float64))),
    case("npy-complex64", "frame_features.npy", NOT_FLOAT, lambda d: npy_store(d, FEATURES.astype(np.complex64))),
    case(
        "npy-object",
        "frame_features.npy",
        "Python objects",
        lambda d: npy_store(d, np.array([[f] for f in FRAMES], object)),
    ),
    case(
        "safetensors-bfloat16",
        "frame_features.safetensors",
        NOT_FLOAT,
        lambda d: raw_safetensors(d, "BF16", [6, 4], 48),
    ),
    case(
        "safetensors-float64",
        "frame_features.safetensors",
        NOT_FLOAT,
        lambda d: safetensors_store(d, FEATURES.astype(np.float64)),
    ),
    case("safetensors-1d", "frame_features.safetensors", NOT_2D, lambda d: safetensors_store(d, FEATURES.ravel())),
    case(
        "safetensors-fewer-ids",
        "frame_features.safetensors",
        "but 4 frame ids",
        lambda d: safetensors_store(d, ids=FRAMES[:4]),
    ),
    case(
        "parquet-store-text-features",
        "frame_features.parquet",
        "lists of numbers",
        lambda d: parquet_store(d, features=pa.array(["1,2"] * 6)),
    ),
    case(
        "parquet-store-empty-features",
        "frame_features.parquet",
        "no values",
        lambda d: parquet_store(d, features=pa.array([[]] * 6, pa.list_(pa.float32()))),
    ),
    case(
        "parquet-store-int-features",
        "frame_features.parquet",
        NOT_FLOAT,
        lambda d: parquet_store(d, features=pa.array([[1, 2]] * 6)),
    ),
    case(
        "parquet-store-list-ids",
        "frame_features.parquet",
        "must hold text",
        lambda d: parquet_store(d, ids=pa.array([[f] for f in FRAMES])),
    ),
]
REFERENCES = [
    case("unknown-item", "interactions.csv", "has no frames", lambda d: append(d, "interactions", "u0,i7,70")),
    case("frame-without-features", "item_frames.csv", "has no row", lambda d: append(d, "item_frames", "i2,f22")),
    case(
        "like-of-another-items-frame",
        "frame_likes.csv",
        "is not a frame of",
        lambda d: append(d, "frame_likes", "u0,i1,f00"),
    ),
    case("like-of-unknown-frame", "frame_likes.csv", "unknown frame", lambda d: append(d, "frame_likes", "u0,i1,f19")),
    case("frame-of-two-items", "item_frames.csv", "several items", lambda d: append(d, "item_frames", "i1,f20")),
]
EXPOSURE_CASES = [
    case(
        "exposure-of-unknown-user",
        "frame_exposures.csv",
        "row 5: unknown user 'u9'",
        lambda d: exposures(d, [*EXPOSED, "u9,i1,f10"]),
    ),
    case("exposure-of-unknown-item", "frame_exposures.csv", "unknown item", lambda d: exposures(d, ["u0,i7,f10"])),
    case("exposure-of-unknown-frame", "frame_exposures.csv", "unknown frame", lambda d: exposures(d, ["u0,i1,f19"])),
    case(
        "exposure-of-another-items-frame",
        "frame_exposures.csv",
        "row 2: frame 'f00' is not a frame of item 'i1'",
        lambda d: exposures(d, ["u0,i1,f10", "u0,i1,f00", "u2,i2,f21"]),
    ),
    case(
        "like-not-exposed",
        "frame_likes.csv",
        "row 2: user 'u2' likes frame 'f21' of item 'i2' but was not exposed to it in frame_exposures.csv",
        lambda d: exposures(d, EXPOSED[:3]),
    ),
    case(
        "like-exposed-to-another-user",
        "frame_likes.csv",
        "row 1: user 'u0' likes frame 'f10'",
        lambda d: exposures(d, ["u1,i1,f10", "u2,i2,f21"]),
    ),
    case(
        "exposures-missing-column",
        "frame_exposures.csv",
        "missing column",
        lambda d: exposures(d, ["u0,i1", "u2,i2"], header="user_id,item_id"),
    ),
    case("exposures-not-utf8", "frame_exposures.csv", NOT_UTF8, lambda d: put(d, "frame_exposures.csv", RANDOM_BYTES)),
    case(
        "exposures-quote",
        "frame_exposures.csv",
        UNCLOSED,
        lambda d: exposures(d, ["u0,i1,f10", 'u0,"i1,f11', "u2,i2,f21"]),
    ),
    case(
        "exposures-directory",
        "frame_exposures.csv",
        "is a directory",
        lambda d: (exposures(d), as_directory(d, "frame_exposures.csv")),
    ),
]
FEEDBACK = ["u0,i1,f10,1", "u0,i1,f11,0", "u1,i0,f00,0"]
FEEDBACK_CASES = [
    case(
        "feedback-unknown-user",
        "frame_feedback.csv",
        "row 4: unknown user 'u9'",
        lambda d: feedback(d, [*FEEDBACK, "u9,i1,f10,1"]),
    ),
    case("feedback-unknown-item", "frame_feedback.csv", "unknown item 'i7'", lambda d: feedback(d, ["u0,i7,f10,1"])),
    case("feedback-unknown-frame", "frame_feedback.csv", "unknown frame 'f19'", lambda d: feedback(d, ["u0,i1,f19,1"])),
    case(
        "feedback-another-items-frame",
        "frame_feedback.csv",
        "row 2: frame 'f00' is not a frame of item 'i1'",
        lambda d: feedback(d, ["u0,i1,f10,1", "u0,i1,f00,0"]),
    ),
    case(
        "feedback-without-label",
        "frame_feedback.csv",
        "missing column(s) label",
        lambda d: feedback(d, ["u0,i1,f10"], header="user_id,item_id,frame_id"),
    ),
    case(
        "feedback-label-2",
        "frame_feedback.csv",
        "row 3: label must be 0 or 1, got 2",
        lambda d: feedback(d, [*FEEDBACK[:2], "u1,i0,f00,2"]),
    ),
    case(
        "feedback-label-half",
        "frame_feedback.csv",
        "label must be 0 or 1, got 0.5",
        lambda d: feedback(d, ["u0,i1,f10,0.5"]),
    ),
    case(
        "feedback-label-text",
        "frame_feedback.csv",
        "row 2: column 'label' must be numeric",
        lambda d: feedback(d, ["u0,i1,f10,1", "u0,i1,f11,yes"]),
    ),
    case(
        "feedback-label-empty",
        "frame_feedback.csv",
        "row 1: missing or non-finite 'label'",
        lambda d: feedback(d, ["u0,i1,f10,", "u0,i1,f11,1"]),
    ),
    case(
        "feedback-propensity-zero",
        "frame_feedback.csv",
        "row 2: propensity must be in (0, 1]",
        lambda d: feedback(d, ["u0,i1,f10,1,0.5", "u0,i1,f11,0,0"], header=HEADERS["frame_feedback"] + ",propensity"),
    ),
    case(
        "feedback-propensity-above-one",
        "frame_feedback.csv",
        "got 1.5",
        lambda d: feedback(d, ["u0,i1,f10,1,1.5"], header=HEADERS["frame_feedback"] + ",propensity"),
    ),
    case(
        "feedback-propensity-nan",
        "frame_feedback.csv",
        "non-finite 'propensity'",
        lambda d: feedback(d, ["u0,i1,f10,1,nan"], header=HEADERS["frame_feedback"] + ",propensity"),
    ),
    case("feedback-header-only", "frame_feedback.csv", "header but no rows", lambda d: feedback(d, [])),
    case("feedback-not-utf8", "frame_feedback.csv", NOT_UTF8, lambda d: put(d, "frame_feedback.csv", RANDOM_BYTES)),
    case(
        "feedback-directory",
        "frame_feedback.csv",
        "is a directory",
        lambda d: (feedback(d, FEEDBACK), as_directory(d, "frame_feedback.csv")),
    ),
]
UNREADABLE_NPY = "not a readable .npy array"
EMPTY_OR_TRUNCATED = [
    case("empty-npy", "frame_features.npy", "is empty", lambda d: put(d, "frame_features.npy", b"")),
    case(
        "truncated-npy",
        "frame_features.npy",
        "truncated",
        lambda d: edit_bytes(d, "frame_features.npy", lambda b: b[:-8]),
    ),
    case(
        "npy-header-cut",
        "frame_features.npy",
        UNREADABLE_NPY,
        lambda d: edit_bytes(d, "frame_features.npy", lambda b: b[:40]),
    ),
    case(
        "npy-garbled-header",
        "frame_features.npy",
        "header is corrupt",
        lambda d: edit_bytes(d, "frame_features.npy", lambda b: b[:10] + b"{'descr': <f4 (((" + b[27:]),
    ),
    case(
        "npy-shape-beyond-file",
        "frame_features.npy",
        "truncated",
        lambda d: put(d, "frame_features.npy", npy_bytes("<f4", (10**12, 4), FEATURES.tobytes())),
    ),
    case(
        "empty-safetensors",
        "frame_features.safetensors",
        "is empty",
        lambda d: (safetensors_store(d), put(d, "frame_features.safetensors", b"")),
    ),
    case(
        "truncated-safetensors",
        "frame_features.safetensors",
        "not a readable .safetensors",
        lambda d: (safetensors_store(d), edit_bytes(d, "frame_features.safetensors", lambda b: b[:-10])),
    ),
    case(
        "safetensors-absurd-header-size",
        "frame_features.safetensors",
        "not a readable .safetensors",
        lambda d: (safetensors_store(d), edit_bytes(d, "frame_features.safetensors", lambda b: b"\xff" * 8 + b[8:])),
    ),
    case(
        "empty-parquet-store",
        "frame_features.parquet",
        "is empty",
        lambda d: (parquet_store(d), put(d, "frame_features.parquet", b"")),
    ),
    case(
        "truncated-parquet-store",
        "frame_features.parquet",
        "not a readable Parquet",
        lambda d: (parquet_store(d), edit_bytes(d, "frame_features.parquet", lambda b: b[: len(b) // 2])),
    ),
    case(
        "truncated-parquet-table",
        "interactions.parquet",
        "not a readable Parquet",
        lambda d: (interactions_parquet(d), edit_bytes(d, "interactions.parquet", lambda b: b[:-30])),
    ),
    case("empty-items-table", "items.parquet", "is empty", lambda d: put(d, "items.parquet", b"")),
]
DIRECTORY = "is a directory"
NOT_A_FILE = [
    case("interactions-directory", "interactions.csv", DIRECTORY, lambda d: as_directory(d, "interactions.csv")),
    case(
        "item-frames-directory",
        "item_frames.parquet",
        DIRECTORY,
        lambda d: ((d / "item_frames.csv").unlink(), as_directory(d, "item_frames.parquet")),
    ),
    case("npy-directory", "frame_features.npy", DIRECTORY, lambda d: as_directory(d, "frame_features.npy")),
    case("id-list-directory", "frame_features.ids.txt", DIRECTORY, lambda d: as_directory(d, "frame_features.ids.txt")),
    case(
        "parquet-store-directory",
        "frame_features.parquet",
        DIRECTORY,
        lambda d: (drop_npy(d), as_directory(d, "frame_features.parquet")),
    ),
    case("likes-fifo", "frame_likes.csv", "not a regular file", lambda d: fifo(d, "frame_likes.csv")),
    case("symlink-loop", "interactions.csv", "symbolic links", lambda d: symlink_loop(d, "interactions.csv")),
]
CASES = (
    ENCODING
    + QUOTING
    + HEADER
    + TYPES
    + IDS
    + DIMENSIONS
    + REFERENCES
    + EXPOSURE_CASES
    + FEEDBACK_CASES
    + EMPTY_OR_TRUNCATED
    + NOT_A_FILE
)


def prepare(dataset: Path, out: Path) -> Result:
    return CliRunner().invoke(app, ["prepare", str(dataset), "--out", str(out), *KEEP_ALL])


def assert_clean_failure(result: Result, file: str, phrase: str) -> None:
    output = result.output
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output
    assert "error: " in output and file in output and phrase in output, output


def test_the_unbroken_dataset_prepares(handmade_dir: Path, tmp_path: Path) -> None:
    """Each case below fails because of its one change, not because of the base dataset."""
    result = prepare(handmade_dir, tmp_path / "out")
    assert result.exit_code == 0, result.output
    exposures(handmade_dir)
    result = prepare(handmade_dir, tmp_path / "with-exposures")
    assert result.exit_code == 0, result.output


def test_there_are_many_cases() -> None:
    assert len(CASES) >= 40
    assert len({p.id for p in CASES}) == len(CASES)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("breaker", "file", "phrase"), CASES)
def test_malformed_dataset(
    handmade_dir: Path, tmp_path: Path, breaker: Callable[[Path], object], file: str, phrase: str
) -> None:
    breaker(handmade_dir)
    out = tmp_path / "out"
    assert not out.exists()
    assert_clean_failure(prepare(handmade_dir, out), file, phrase)
    assert not out.exists()


# --- permissions -------------------------------------------------------------------------------------

UNREADABLE = ["interactions.csv", "frame_features.npy", "frame_features.ids.txt"]


def start_without_read_override(dataset: Path, out: Path) -> subprocess.Popen[str]:
    """`jifr prepare` as root without the capabilities that let root read any file, so that file
    modes apply to it as to any other user."""
    command = [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        sys.executable,
        "-c",
        "from jifr.cli import app; app(prog_name='jifr')",
        "prepare",
        str(dataset),
        "--out",
        str(out),
        *KEEP_ALL,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def prepare_unreadable(datasets: list[Path], outs: list[Path]) -> list[tuple[int, str]]:
    """(exit code, output) of `jifr prepare` on each dataset; as root in subprocesses run side by side."""
    if os.geteuid() != 0:
        results = [prepare(dataset, out) for dataset, out in zip(datasets, outs, strict=True)]
        for result in results:
            assert isinstance(result.exception, SystemExit), repr(result.exception)
        return [(result.exit_code, result.output) for result in results]
    assert shutil.which("setpriv"), "setpriv is needed to test unreadable files as root"
    runs = [start_without_read_override(dataset, out) for dataset, out in zip(datasets, outs, strict=True)]
    return [(run.wait(timeout=120), run.communicate()[0]) for run in runs]


def test_unreadable_files(handmade_dir: Path, tmp_path: Path) -> None:
    datasets = [shutil.copytree(handmade_dir, tmp_path / f"unreadable-{name}") for name in UNREADABLE]
    outs = [tmp_path / f"out-{name}" for name in UNREADABLE]
    for dataset, name in zip(datasets, UNREADABLE, strict=True):
        (dataset / name).chmod(0)
    try:
        results = prepare_unreadable(datasets, outs)
    finally:
        for dataset, name in zip(datasets, UNREADABLE, strict=True):
            (dataset / name).chmod(0o644)
    for name, out, (code, output) in zip(UNREADABLE, outs, results, strict=True):
        assert code == 2, output
        assert "Traceback" not in output, output
        assert f"{name}: cannot be read: permission denied" in output, output
        assert not out.exists()
