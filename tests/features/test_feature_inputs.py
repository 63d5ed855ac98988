"""Listing the images to encode: a folder of images, or an item_frames table."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jifr.errors import DataError
from jifr.features import images_from_directory, images_from_item_frames, images_from_path


def touch(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")


def test_directory_lists_images_sorted_with_stems_as_ids(tmp_path: Path) -> None:
    touch(tmp_path, "b.png", "a.JPG", "c.webp", "d.bmp", "e.jpeg", "notes.txt", "f.gif")
    (tmp_path / "sub.jpg").mkdir()
    frames = images_from_directory(tmp_path)
    assert [frame_id for frame_id, _ in frames] == ["a", "b", "c", "d", "e"]
    assert frames[0] == ("a", tmp_path / "a.JPG")


def test_directory_rejects_two_files_with_one_stem(tmp_path: Path) -> None:
    touch(tmp_path, "poster.jpg", "poster.png")
    with pytest.raises(DataError, match="'poster' is also the stem of poster.jpg"):
        images_from_directory(tmp_path)


def test_directory_without_images_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "readme.md")
    with pytest.raises(DataError, match="no image files"):
        images_from_directory(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_item_frames_paths_are_relative_to_the_table_or_absolute(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "x.png"
    table = write(
        tmp_path / "item_frames.csv",
        f"item_id,frame_id,path\ni1,007,frames/a.jpg\ni1,7,frames/b.jpg\ni2,f3,{elsewhere}\n",
    )
    frames = images_from_item_frames(table)
    assert frames == [
        ("007", tmp_path / "frames" / "a.jpg"),  # ids are text: 007 and 7 differ
        ("7", tmp_path / "frames" / "b.jpg"),
        ("f3", elsewhere),
    ]


def test_item_frames_tsv_and_parquet(tmp_path: Path) -> None:
    tsv = write(tmp_path / "item_frames.tsv", "item_id\tframe_id\tpath\ni1\tf1\ta b.jpg\n")
    assert images_from_item_frames(tsv) == [("f1", tmp_path / "a b.jpg")]
    parquet = tmp_path / "item_frames.parquet"
    pq.write_table(pa.table({"item_id": [1, 2], "frame_id": [10, 20], "path": ["x.jpg", "y.jpg"]}), parquet)
    assert images_from_path(parquet) == [("10", tmp_path / "x.jpg"), ("20", tmp_path / "y.jpg")]


def test_item_frames_without_path_column_names_the_file(tmp_path: Path) -> None:
    table = write(tmp_path / "item_frames.csv", "item_id,frame_id\ni1,f1\n")
    with pytest.raises(DataError, match="missing required column 'path'") as error:
        images_from_item_frames(table)
    assert error.value.path == str(table)


def test_item_frames_empty_path_names_the_row(tmp_path: Path) -> None:
    table = write(tmp_path / "item_frames.csv", "item_id,frame_id,path\ni1,f1,a.jpg\ni1,f2,\n")
    with pytest.raises(DataError, match="row 2: empty path for frame 'f2'") as error:
        images_from_item_frames(table)
    assert error.value.row == 2


def test_item_frames_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = write(tmp_path / "item_frames.csv", "frame_id,path\nf1,a.jpg\nf1,a.jpg\nf2,b.jpg\n")
    with caplog.at_level(logging.WARNING):
        assert [f for f, _ in images_from_item_frames(table)] == ["f1", "f2"]
    assert "dropped 1 duplicate" in caplog.text
    conflicting = write(tmp_path / "conflict.csv", "frame_id,path\nf1,a.jpg\nf1,b.jpg\n")
    with pytest.raises(DataError, match="row 2: frame 'f1' has path 'b.jpg' but row 1"):
        images_from_item_frames(conflicting)


def test_path_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        images_from_path(tmp_path / "missing")
    with pytest.raises(DataError, match="expected a folder of images or a table"):
        images_from_path(write(tmp_path / "list.txt", "a.jpg\n"))
    with pytest.raises(DataError, match="cannot read the table"):
        images_from_path(write(tmp_path / "empty.csv", ""))
