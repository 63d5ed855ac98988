"""Bad input: every problem is a DataError naming the file, the row and the problem.

Also: duplicates are removed with a counted warning, filtering is logged with counts, and the
three table formats and three feature-store forms give the same prepared data.

The handmade directory (tests/conftest.py) has, in file order:
  interactions.csv  u{u},i{i},{10u+i} for u, i in 0..2 (rows 1..9)
  item_frames.csv   i0,f00 / i0,f01 / i1,f10 / i1,f11 / i2,f20 / i2,f21 (rows 1..6)
  frame_features    6 rows, 4-d, in the same frame order
  frame_likes.csv   u0,i1,f10 / u2,i2,f21 (rows 1..2)
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import write_csv, write_features
from safetensors.numpy import save_file

from jifr.data import file_checks
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.raw import load_raw_dataset
from jifr.errors import DataError

KEEP_ALL = PrepareConfig(min_user_interactions=1, min_item_interactions=1)
FRAMES = ["f00", "f01", "f10", "f11", "f20", "f21"]
HEADERS = {
    "interactions": "user_id,item_id,timestamp",
    "item_frames": "item_id,frame_id",
    "frame_likes": "user_id,item_id,frame_id",
}


def lines(path: Path) -> list[str]:
    """The data rows of a CSV (header excluded)."""
    return path.read_text(encoding="utf-8").splitlines()[1:]


def append_rows(directory: Path, stem: str, rows: list[str]) -> None:
    path = directory / f"{stem}.csv"
    write_csv(path, HEADERS[stem], lines(path) + rows)


def load_error(directory: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_raw_dataset(directory)
    return info.value


def prepare_error(directory: Path, out: Path) -> DataError:
    with pytest.raises(DataError) as info:
        prepare_dataset(directory, out, KEEP_ALL)
    return info.value


def assert_names(error: DataError, file: str, row: int | None, *phrases: str) -> None:
    """The message names ``file``, exactly ``row`` (or no row) and every phrase."""
    text = str(error)
    assert file in text, text
    assert error.row == row, text
    if row is None:
        assert ", row " not in text, text
    else:
        assert f"{file}, row {row}: " in text, text
    for phrase in phrases:
        assert phrase in text, text


# --- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "header", "missing"),
    [
        ("interactions", "user_id,timestamp", "item_id"),
        ("interactions", "item,user", "user_id, item_id"),
        ("item_frames", "item_id,frame", "frame_id"),
        ("frame_likes", "user_id,item_id", "frame_id"),
    ],
)
def test_missing_columns(handmade_dir: Path, stem: str, header: str, missing: str) -> None:
    n_fields = header.count(",") + 1
    write_csv(handmade_dir / f"{stem}.csv", header, [",".join(["x"] * n_fields)])
    error = load_error(handmade_dir)
    assert_names(error, f"{stem}.csv", None, f"missing column(s) {missing}", f"found {header.replace(',', ', ')}")


@pytest.mark.parametrize("stem", ["interactions", "item_frames", "frame_likes"])
def test_empty_file(handmade_dir: Path, stem: str) -> None:
    (handmade_dir / f"{stem}.csv").write_bytes(b"")
    assert_names(load_error(handmade_dir), f"{stem}.csv", None, "the file is empty")


def test_empty_parquet_file(handmade_dir: Path) -> None:
    """A 0-byte Parquet file is reported as empty, not as an Arrow parse failure."""
    (handmade_dir / "interactions.csv").unlink()
    (handmade_dir / "interactions.parquet").write_bytes(b"")
    assert_names(load_error(handmade_dir), "interactions.parquet", None, "the file is empty")


@pytest.mark.parametrize("stem", ["interactions", "item_frames", "frame_likes"])
def test_header_only_file(handmade_dir: Path, stem: str) -> None:
    write_csv(handmade_dir / f"{stem}.csv", HEADERS[stem], [])
    assert_names(load_error(handmade_dir), f"{stem}.csv", None, "header but no rows")


def test_header_only_parquet(handmade_dir: Path) -> None:
    (handmade_dir / "item_frames.csv").unlink()
    empty = pa.table({"item_id": pa.array([], pa.string()), "frame_id": pa.array([], pa.string())})
    pq.write_table(empty, handmade_dir / "item_frames.parquet")
    assert_names(load_error(handmade_dir), "item_frames.parquet", None, "header but no rows")


@pytest.mark.parametrize(
    ("stem", "row", "bad", "column"),
    [
        ("interactions", 5, "u1,,11", "item_id"),
        ("interactions", 1, ",i0,0", "user_id"),
        ("item_frames", 3, "i1,", "frame_id"),
        ("frame_likes", 2, ",i2,f21", "user_id"),
    ],
)
def test_empty_id(handmade_dir: Path, stem: str, row: int, bad: str, column: str) -> None:
    path = handmade_dir / f"{stem}.csv"
    rows = lines(path)
    rows[row - 1] = bad
    write_csv(path, HEADERS[stem], rows)
    assert_names(load_error(handmade_dir), f"{stem}.csv", row, f"empty value in column '{column}'")


def test_null_id_in_parquet(handmade_dir: Path) -> None:
    (handmade_dir / "interactions.csv").unlink()
    users = pa.array(["u0", "u1", None, "u2"], pa.string())
    items = pa.array(["i0", "i1", "i2", "i0"], pa.string())
    pq.write_table(pa.table({"user_id": users, "item_id": items}), handmade_dir / "interactions.parquet")
    assert_names(load_error(handmade_dir), "interactions.parquet", 3, "empty value in column 'user_id'")


def test_row_with_too_few_fields(handmade_dir: Path) -> None:
    path = handmade_dir / "interactions.csv"
    rows = lines(path)
    rows[3] = "u1,i0"
    write_csv(path, HEADERS["interactions"], rows)
    assert_names(load_error(handmade_dir), "interactions.csv", 4, "2 field(s)", "header has 3")


@pytest.mark.parametrize(
    ("value", "phrase"), [("abc", "'timestamp' must be numeric"), ("", "missing or non-finite 'timestamp'")]
)
def test_bad_timestamp(handmade_dir: Path, value: str, phrase: str) -> None:
    path = handmade_dir / "interactions.csv"
    rows = lines(path)
    rows[3] = f"u1,i0,{value}"
    write_csv(path, HEADERS["interactions"], rows)
    assert_names(load_error(handmade_dir), "interactions.csv", 4, phrase)


def test_two_interactions_tables(handmade_dir: Path) -> None:
    csv_text = (handmade_dir / "interactions.csv").read_text()
    (handmade_dir / "interactions.tsv").write_text(csv_text.replace(",", "\t"))
    error = load_error(handmade_dir)
    assert_names(error, str(handmade_dir), None, "several 'interactions' tables")
    assert "interactions.csv" in str(error) and "interactions.tsv" in str(error)


def test_missing_interactions_table(handmade_dir: Path) -> None:
    (handmade_dir / "interactions.csv").unlink()
    assert_names(load_error(handmade_dir), str(handmade_dir), None, "no 'interactions' table")


# --- consistency between tables ----------------------------------------------------------------


def test_unknown_item_in_interactions(handmade_dir: Path) -> None:
    append_rows(handmade_dir, "interactions", ["u0,i9,99"])
    assert_names(load_error(handmade_dir), "interactions.csv", 10, "item 'i9' has no frames", "item_frames.csv")


def test_frame_without_feature_row(handmade_dir: Path) -> None:
    append_rows(handmade_dir, "item_frames", ["i2,f22"])
    error = load_error(handmade_dir)
    assert_names(error, "item_frames.csv", 7, "frame 'f22' has no row in frame_features.npy")


def test_frame_of_two_items(handmade_dir: Path) -> None:
    append_rows(handmade_dir, "item_frames", ["i2,f00"])
    error = load_error(handmade_dir)
    assert_names(error, "item_frames.csv", 7, "frame 'f00' belongs to several items")


@pytest.mark.parametrize(
    ("like", "what"),
    [("u9,i1,f10", "unknown user 'u9'"), ("u0,i9,f10", "unknown item 'i9'"), ("u0,i1,f99", "unknown frame 'f99'")],
)
def test_unknown_id_in_frame_likes(handmade_dir: Path, like: str, what: str) -> None:
    append_rows(handmade_dir, "frame_likes", [like])
    assert_names(load_error(handmade_dir), "frame_likes.csv", 3, what)


def test_liked_frame_of_another_item(handmade_dir: Path) -> None:
    append_rows(handmade_dir, "frame_likes", ["u0,i1,f20"])
    error = load_error(handmade_dir)
    assert_names(error, "frame_likes.csv", 3, "frame 'f20' is not a frame of item 'i1'")


# Regression: row numbers were counted in the de-duplicated table, so each duplicate above the
# bad row shifted the reported row up by one.
@pytest.mark.parametrize(
    ("stem", "extra", "file_row", "phrase"),
    [
        ("interactions", ["u0,i0,0", "u0,i9,99"], 11, "item 'i9' has no frames"),
        ("item_frames", ["i0,f00", "i2,f00"], 8, "frame 'f00' belongs to several items"),
        ("item_frames", ["i1,f10", "i1,f10", "i2,f22"], 9, "frame 'f22' has no row"),
        ("frame_likes", ["u0,i1,f10", "u9,i1,f10"], 4, "unknown user 'u9'"),
        ("frame_likes", ["u2,i2,f21", "u0,i1,f20"], 4, "frame 'f20' is not a frame of item 'i1'"),
    ],
)
def test_rows_after_removed_duplicates(
    handmade_dir: Path, stem: str, extra: list[str], file_row: int, phrase: str
) -> None:
    append_rows(handmade_dir, stem, extra)
    assert_names(load_error(handmade_dir), f"{stem}.csv", file_row, phrase)


# --- the feature store --------------------------------------------------------------------------


def handmade_features() -> np.ndarray:
    return np.arange(24, dtype=np.float32).reshape(6, 4)


def write_safetensors(directory: Path, frame_ids: list[str], values: np.ndarray, **metadata: str) -> None:
    meta = {"frame_ids": json.dumps(frame_ids)} | metadata
    save_file({"features": values}, str(directory / "frame_features.safetensors"), metadata=meta)


def write_parquet_features(directory: Path, frame_ids: list[str], rows: list[list[float]]) -> None:
    table = pa.table({"frame_id": frame_ids, "feature": pa.array(rows, pa.list_(pa.float32()))})
    pq.write_table(table, directory / "frame_features.parquet")


def use_store(directory: Path, form: str, frame_ids: list[str], values: np.ndarray) -> str:
    """Replace the handmade .npy store by ``form``; returns the store's file name."""
    for name in ("frame_features.npy", "frame_features.ids.txt"):
        (directory / name).unlink()
    if form == "npy":
        write_features(directory, frame_ids, values)
        return "frame_features.npy"
    if form == "safetensors":
        write_safetensors(directory, frame_ids, values)
        return "frame_features.safetensors"
    write_parquet_features(directory, frame_ids, values.tolist())
    return "frame_features.parquet"


@pytest.mark.parametrize("form", ["npy", "safetensors", "parquet"])
@pytest.mark.parametrize(("value", "row"), [(np.nan, 5), (np.inf, 2), (-np.inf, 6)])
def test_non_finite_feature(handmade_dir: Path, tmp_path: Path, form: str, value: float, row: int) -> None:
    values = handmade_features()
    values[row - 1, 2] = value
    name = use_store(handmade_dir, form, FRAMES, values)
    error = prepare_error(handmade_dir, tmp_path / "prepared")
    assert_names(error, name, row, "NaN or infinite value", f"frame '{FRAMES[row - 1]}'")
    # Regression: the half-written output used to stay behind.
    assert not (tmp_path / "prepared.partial").exists()
    assert not (tmp_path / "prepared").exists()


def test_non_finite_feature_of_unused_frame_is_ignored(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = np.vstack([handmade_features(), np.full((1, 4), np.nan, dtype=np.float32)])
    write_features(handmade_dir, [*FRAMES, "unused"], values)
    with caplog.at_level(logging.WARNING):
        data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert data.frames.n_frames == 6 and np.isfinite(data.frames.features).all()
    assert "frame_features.npy: 1 feature row(s) belong to no item" in caplog.text


def test_feature_rows_and_ids_differ(handmade_dir: Path) -> None:
    (handmade_dir / "frame_features.ids.txt").write_text("\n".join(FRAMES[:5]) + "\n")
    assert_names(load_error(handmade_dir), "frame_features.npy", None, "6 feature rows but 5 frame ids")


def test_npy_without_id_list(handmade_dir: Path) -> None:
    (handmade_dir / "frame_features.ids.txt").unlink()
    assert_names(load_error(handmade_dir), "frame_features.npy", None, "frame_features.ids.txt is missing")


def test_parquet_store_with_inconsistent_dimension(handmade_dir: Path) -> None:
    use_store(handmade_dir, "parquet", FRAMES, handmade_features())
    rows = handmade_features().tolist()
    rows[3] = rows[3][:3]
    write_parquet_features(handmade_dir, FRAMES, rows)
    error = load_error(handmade_dir)
    assert_names(error, "frame_features.parquet", 4, "feature has 3 values, expected 4")


def test_parquet_store_with_null_frame_id(handmade_dir: Path) -> None:
    use_store(handmade_dir, "parquet", FRAMES, handmade_features())
    write_parquet_features(handmade_dir, [*FRAMES[:2], None, *FRAMES[3:]], handmade_features().tolist())
    assert_names(load_error(handmade_dir), "frame_features.parquet", 3, "empty frame id")


def test_safetensors_without_frame_ids(handmade_dir: Path) -> None:
    use_store(handmade_dir, "safetensors", FRAMES, handmade_features())
    save_file({"features": handmade_features()}, str(handmade_dir / "frame_features.safetensors"))
    error = load_error(handmade_dir)
    assert_names(error, "frame_features.safetensors", None, "no 'frame_ids' entry in the metadata")


def test_safetensors_frame_ids_not_a_list(handmade_dir: Path) -> None:
    """Regression: a JSON string was split into one-character frame ids."""
    use_store(handmade_dir, "safetensors", FRAMES, handmade_features())
    path = handmade_dir / "frame_features.safetensors"
    save_file({"features": handmade_features()}, str(path), metadata={"frame_ids": '"abcdef"'})
    assert_names(load_error(handmade_dir), "frame_features.safetensors", None, "must be a JSON list")


def test_unreadable_safetensors(handmade_dir: Path) -> None:
    use_store(handmade_dir, "safetensors", FRAMES, handmade_features())
    (handmade_dir / "frame_features.safetensors").write_bytes(b"not a safetensors file at all")
    assert_names(load_error(handmade_dir), "frame_features.safetensors", None, "not a readable")


@pytest.mark.parametrize("form", ["npy", "safetensors", "parquet"])
def test_duplicate_frame_id_in_store(handmade_dir: Path, form: str) -> None:
    ids = [*FRAMES[:3], "f00", *FRAMES[4:]]
    name = use_store(handmade_dir, form, ids, handmade_features())
    assert_names(load_error(handmade_dir), name, 4, "frame id 'f00' has several feature rows")


def test_missing_feature_store(handmade_dir: Path) -> None:
    for name in ("frame_features.npy", "frame_features.ids.txt"):
        (handmade_dir / name).unlink()
    assert_names(load_error(handmade_dir), str(handmade_dir), None, "no frame features")


def test_two_feature_stores(handmade_dir: Path) -> None:
    write_safetensors(handmade_dir, FRAMES, handmade_features())
    error = load_error(handmade_dir)
    assert_names(error, str(handmade_dir), None, "several feature stores")


# --- malformed files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "row", "bad"),
    [
        ("interactions.csv", 5, 'u1,"i1,11'),  # pyarrow saw a row with too few fields
        ("interactions.csv", 5, 'u1,i1,"11'),  # the rest of the file became one timestamp
        ("item_frames.csv", 6, 'i2,"f21'),
        ("interactions.tsv", 3, 'u0\t"i0\t0'),
    ],
    ids=["mid-row", "last-field", "last-row", "tsv"],
)
def test_unbalanced_quote(handmade_dir: Path, name: str, row: int, bad: str) -> None:
    stem, suffix = name.split(".")
    rows = lines(handmade_dir / f"{stem}.csv")
    (handmade_dir / f"{stem}.csv").unlink()
    rows[row - 1] = bad
    sep = "\t" if suffix == "tsv" else ","
    rows = [r.replace(",", sep) for r in rows]
    write_csv(handmade_dir / name, HEADERS[stem].replace(",", sep), rows)
    assert_names(load_error(handmade_dir), name, row, "a quoted value starts here and runs past the end of its line")


def test_unbalanced_quote_costs_no_memory_per_row(handmade_dir: Path) -> None:
    """Regression: the rest of the file became one field and the column was copied into a NumPy
    array of rows x that field's length (about 16 GiB for a real file; about 200 MB here)."""
    rows = [f"i{k},f{k}" for k in range(4000)]
    rows[2000] = 'i2000,"f2000'
    write_csv(handmade_dir / "item_frames.csv", HEADERS["item_frames"], rows)
    tracemalloc.start()
    try:
        error = load_error(handmade_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_names(error, "item_frames.csv", 2001, "unbalanced quote")
    assert peak < 32 * 2**20, peak


def test_stray_quotes_swallowing_rows(handmade_dir: Path) -> None:
    """Two stray quotes swallow the rows between them into one id: named where it starts."""
    path = handmade_dir / "item_frames.csv"
    rows = lines(path)
    rows[1], rows[4] = 'i0,"f01', 'i2,f2"0'
    write_csv(path, HEADERS["item_frames"], rows)
    assert_names(load_error(handmade_dir), "item_frames.csv", 2, "runs past the end of its line (an unbalanced quote?)")


@pytest.mark.parametrize(
    ("stem", "extra", "row", "bad", "phrase"),
    [
        ("interactions", "", 6, "u" * 1025 + ",i2,12", "column 'user_id' has 1,025 characters (at most 1,024)"),
        ("item_frames", ",title", 4, "i1,f11," + "t" * 8193, "column 'title' has 8,193 characters (at most 8,192)"),
    ],
    ids=["user-id", "title"],
)
def test_over_long_value(handmade_dir: Path, stem: str, extra: str, row: int, bad: str, phrase: str) -> None:
    path = handmade_dir / f"{stem}.csv"
    rows = [line + extra.replace(",", ",x") for line in lines(path)]
    rows[row - 1] = bad
    write_csv(path, HEADERS[stem] + extra, rows)
    assert_names(load_error(handmade_dir), f"{stem}.csv", row, phrase)


def test_over_long_frame_id_in_id_list(handmade_dir: Path) -> None:
    write_features(handmade_dir, [*FRAMES[:3], "f" * 2000, *FRAMES[4:]], handmade_features())
    assert_names(load_error(handmade_dir), "frame_features.ids.txt", 4, "frame id of 2,000 characters")


@pytest.mark.parametrize(
    ("content", "row", "phrase"),
    [
        (np.random.default_rng(0).bytes(2048), None, "not a UTF-8 text table: byte 0x82 in the header"),
        (gzip.compress(b"user_id,item_id\nu0,i0\n"), None, "is gzip-compressed data, not a UTF-8 text table"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), None, "is a PNG image"),
        ("user_id,item_id\nu0,i0\nu1,i1\nu2,i2\nJos\xe9,i0\n".encode("latin-1"), 4, "byte 0xE9 is not valid UTF-8"),
        (b"user_id,item_id\nu0,i0\nu1,i\x001\n", 2, "a NUL byte (binary content)"),
        (b"user_id,item_id\nu0,i0\nu1,i\xc3", 2, "byte 0xC3 is not valid UTF-8"),
    ],
    ids=["random-bytes", "gzip", "png", "latin-1", "nul-byte", "cut-character"],
)
def test_not_utf8_text(handmade_dir: Path, content: bytes, row: int | None, phrase: str) -> None:
    """Regression: binary files were reported as empty, and undecodable bytes named no file."""
    (handmade_dir / "interactions.csv").write_bytes(content)
    assert_names(load_error(handmade_dir), "interactions.csv", row, phrase)


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5])
def test_encoding_checked_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int) -> None:
    """Characters and rows cut by the chunked reads are still decoded and counted correctly."""
    monkeypatch.setattr(file_checks, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "t.csv"
    path.write_text("user_id,item_id\nJ\u00f6rg,i0\n\u00e9\u00e9\u00e9,i1\nu2,\u20ac\U0001f600\n", encoding="utf-8")
    file_checks.check_utf8_text(path)
    path.write_bytes(path.read_bytes() + "\u00e9\u00e9,i\u00e9".encode() + b"\xff\n")
    with pytest.raises(DataError) as info:
        file_checks.check_utf8_text(path)
    assert_names(info.value, "t.csv", 4, "byte 0xFF is not valid UTF-8")


def reference_runaway_quote(text: str) -> int | None:
    """The quoting rules, one character at a time: where the first quoted field that runs past
    the end of its line (or the file) starts."""
    line, start, state = 1, None, "field start"
    for ch in text:
        if state == "quoted" and ch == "\n":
            return start
        if state == "quoted":
            state = "quote seen" if ch == '"' else "quoted"
        elif state == "quote seen" and ch == '"':
            state = "quoted"
        elif ch in ",\n":
            state, start = "field start", None
        elif state == "field start" and ch == '"':
            state, start = "quoted", line
        else:
            state, start = "unquoted", None
        line += ch == "\n"
    return start if state == "quoted" else None


def test_quote_scanner_agrees_with_the_rules() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice('a,"\n') for _ in range(rng.randrange(25)))
        size = rng.randrange(1, 7)
        data = text.encode()
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert file_checks.find_runaway_quote(chunks, ",") == reference_runaway_quote(text), (text, size)


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('x,y\n"1","a "" b"\n2,"c"\n3,d"e\n', None),  # doubled quotes, quotes inside unquoted fields
        ('x,y\n1,a\n2,"b ""c\n3,d\n', 3),
        ('x,y\n1,""\n2,"""\n', 3),
    ],
)
def test_quotes_followed_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int, text: str, line: int | None
) -> None:
    monkeypatch.setattr(file_checks, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    assert file_checks.find_runaway_quote_in_file(path, ",") == line


@pytest.mark.parametrize(
    ("form", "name", "corrupt", "phrase"),
    [
        ("npy", "frame_features.npy", lambda b: b"", "the file is empty"),  # was "Aborted."
        ("npy", "frame_features.npy", lambda b: b[:-8], "shorter than the header's shape and dtype say"),
        ("npy", "frame_features.npy", lambda b: b[:10] + b"{'descr': <f4 (((" + b[27:], "the header is corrupt"),
        ("npy", "frame_features.ids.txt", lambda b: b"", "the file is empty"),
        ("safetensors", "frame_features.safetensors", lambda b: b"", "the file is empty"),
        ("safetensors", "frame_features.safetensors", lambda b: b[:-10], "not a readable .safetensors file"),
        ("parquet", "frame_features.parquet", lambda b: b"", "the file is empty"),
        ("parquet", "frame_features.parquet", lambda b: b[: len(b) // 2], "not a readable Parquet file"),
    ],
    ids=[
        "empty-npy",
        "truncated-npy",
        "corrupt-npy-header",
        "empty-ids",
        "empty-st",
        "truncated-st",
        "empty-pq",
        "truncated-pq",
    ],
)
def test_empty_or_truncated_feature_file(
    handmade_dir: Path, form: str, name: str, corrupt: Callable[[bytes], bytes], phrase: str
) -> None:
    use_store(handmade_dir, form, FRAMES, handmade_features())
    path = handmade_dir / name
    path.write_bytes(corrupt(path.read_bytes()))
    assert_names(load_error(handmade_dir), name, None, phrase)


def test_binary_frame_id_list(handmade_dir: Path) -> None:
    (handmade_dir / "frame_features.ids.txt").write_bytes(b"f00\nf01\n\x89PNG\x00\xff\n")
    error = load_error(handmade_dir)
    assert_names(error, "frame_features.ids.txt", 3, "not a UTF-8 text file of frame ids")


@pytest.mark.parametrize(
    "name",
    ["interactions.csv", "frame_likes.csv", "frame_features.npy", "frame_features.ids.txt", "frame_features.parquet"],
)
def test_directory_instead_of_file(handmade_dir: Path, name: str) -> None:
    if name == "frame_features.parquet":
        use_store(handmade_dir, "parquet", FRAMES, handmade_features())
    (handmade_dir / name).unlink()
    (handmade_dir / name).mkdir()
    assert_names(load_error(handmade_dir), name, None, "is a directory, not a file")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_column_named_twice(handmade_dir: Path, fmt: str) -> None:
    path = handmade_dir / "interactions.csv"
    if fmt == "csv":
        write_csv(path, "user_id,item_id,item_id", ["u0,i0,i1"])
        assert_names(load_error(handmade_dir), "interactions.csv", None, "column 'item_id' appears twice in the header")
        return
    path.unlink()
    columns = [pa.array(["u0"]), pa.array(["i0"]), pa.array(["i1"])]
    table = pa.Table.from_arrays(columns, names=["user_id", "item_id", "item_id"])
    pq.write_table(table, handmade_dir / "interactions.parquet")
    error = load_error(handmade_dir)
    assert_names(error, "interactions.parquet", None, "column 'item_id' appears twice in the schema")


# --- duplicates and filtering are reported, not errors -------------------------------------------


@pytest.mark.parametrize(
    ("stem", "extra", "what"),
    [
        ("interactions", ["u0,i0,0", "u1,i2,5", "u0,i0,7"], "interaction"),
        ("item_frames", ["i0,f00", "i2,f21", "i0,f00"], "item-frame"),
        ("frame_likes", ["u0,i1,f10", "u0,i1,f10", "u2,i2,f21"], "frame-like"),
    ],
)
def test_duplicates_removed_with_counted_warning(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, stem: str, extra: list[str], what: str
) -> None:
    reference = prepare_dataset(handmade_dir, tmp_path / "reference", KEEP_ALL)
    append_rows(handmade_dir, stem, extra)
    with caplog.at_level(logging.WARNING, logger="jifr.data"):
        data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{stem}.csv: removed 3 duplicate {what} row(s)" in "\n".join(warnings)
    assert data.fingerprint == reference.fingerprint


def test_no_duplicate_warning_without_duplicates(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="jifr.data"):
        prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert "duplicate" not in caplog.text


def test_interaction_keeps_its_first_timestamp(handmade_dir: Path) -> None:
    append_rows(handmade_dir, "interactions", ["u0,i1,500"])
    raw = load_raw_dataset(handmade_dir)
    users, items = raw.interactions["user_id"], raw.interactions["item_id"]
    assert len(users) == 9
    assert raw.interactions["timestamp"][(users == "u0") & (items == "i1")].tolist() == [1.0]


def test_likes_of_filtered_users_are_counted(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """u3 has one interaction; with min 2 per user the k-core removes u3 and drops its 2 likes."""
    append_rows(handmade_dir, "interactions", ["u3,i0,30"])
    append_rows(handmade_dir, "frame_likes", ["u3,i0,f00", "u3,i0,f01"])
    config = PrepareConfig(min_user_interactions=2, min_item_interactions=1)
    with caplog.at_level(logging.INFO, logger="jifr.data"):
        data = prepare_dataset(handmade_dir, tmp_path / "prepared", config)
    assert data.user_ids.tolist() == ["u0", "u1", "u2"]
    assert len(data.likes) == 2
    assert data.meta["filtering"]["frame_likes_removed"] == 2
    assert "frame_likes.csv: 2 frame like(s) dropped" in caplog.text


def test_k_core_removals_are_logged_with_counts(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """u3 (one interaction, with i3) goes in round 1; i3 then has no user left."""
    append_rows(handmade_dir, "interactions", ["u3,i3,30"])
    append_rows(handmade_dir, "item_frames", ["i3,f30"])
    write_features(handmade_dir, [*FRAMES, "f30"], np.arange(28, dtype=np.float32).reshape(7, 4))
    config = PrepareConfig(min_user_interactions=2, min_item_interactions=1)
    with caplog.at_level(logging.INFO, logger="jifr.data"):
        data = prepare_dataset(handmade_dir, tmp_path / "prepared", config)
    assert "k-core round 1: removed 1 interaction(s)" in caplog.text
    assert "k-core removed 1 interactions, 1 users, 1 items" in caplog.text
    assert data.meta["filtering"] == {
        "interactions_read": 10,
        "interactions_removed_by_k_core": 1,
        "users_removed_by_k_core": 1,
        "items_removed_by_k_core": 1,
        "frames_of_removed_items": 1,
        "frame_likes_removed": 0,
    }


def test_nothing_survives_the_k_core(handmade_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no interaction survives the k-core filter"):
        prepare_dataset(handmade_dir, tmp_path / "prepared", PrepareConfig(min_user_interactions=4))


# --- every format gives the same prepared data ----------------------------------------------------


def convert_tables(directory: Path, fmt: str) -> None:
    """Rewrite every CSV table of ``directory`` as ``fmt`` (csv, tsv or parquet)."""
    for path in sorted(directory.glob("*.csv")):
        if fmt == "csv":
            continue
        header = path.read_text().splitlines()[0].split(",")
        id_types = {c: pa.string() for c in header if c != "timestamp"}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=id_types))
        if fmt == "tsv":
            options = pacsv.WriteOptions(delimiter="\t", quoting_style="none")
            pacsv.write_csv(table, path.with_suffix(".tsv"), write_options=options)
        else:
            pq.write_table(table, path.with_suffix(".parquet"))
        path.unlink()


@pytest.mark.parametrize("form", ["npy", "safetensors", "parquet"])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_every_format_prepares_the_same_data(handmade_dir: Path, tmp_path: Path, fmt: str, form: str) -> None:
    write_csv(handmade_dir / "items.csv", "item_id,title", ["i0,Zero", "i1,One", "i2,Two"])
    reference = prepare_dataset(handmade_dir, tmp_path / "reference", KEEP_ALL)
    convert_tables(handmade_dir, fmt)
    use_store(handmade_dir, form, FRAMES, handmade_features())
    for stem in ("interactions", "item_frames", "frame_likes", "items"):
        assert [p.suffix for p in handmade_dir.glob(f"{stem}.*")] == [f".{fmt}"]
    data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert data.fingerprint == reference.fingerprint
    np.testing.assert_array_equal(data.frames.features, handmade_features())
    assert data.frames.features.dtype == np.float32
    assert data.meta["item_titles"] == ["Zero", "One", "Two"]
    assert len(data.likes) == 2


def test_fingerprint_sees_the_features(handmade_dir: Path, tmp_path: Path) -> None:
    """The format test above could not fail if features were left out of the fingerprint."""
    reference = prepare_dataset(handmade_dir, tmp_path / "reference", KEEP_ALL)
    values = handmade_features()
    values[3, 1] += 0.5
    write_features(handmade_dir, FRAMES, values)
    assert prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL).fingerprint != reference.fingerprint
