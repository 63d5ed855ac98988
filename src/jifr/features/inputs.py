"""Lists of (frame_id, image path) to encode: from a folder of images or an item_frames table."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jifr.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")

FrameImage = tuple[str, Path]  # (frame_id, image path)


def images_from_path(path: Path) -> list[FrameImage]:
    """The images of a folder (`images_from_directory`) or of an item_frames table."""
    path = Path(path)
    if path.is_dir():
        return images_from_directory(path)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return images_from_item_frames(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    raise DataError(path, f"expected a folder of images or a table ({', '.join(TABLE_SUFFIXES)})")


def images_from_directory(directory: Path) -> list[FrameImage]:
    """Every image directly inside `directory`, sorted by file name; the frame id is the stem.

    Raises DataError when the folder holds no image or two files share a stem (a.jpg, a.png).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, "not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(directory, f"no image files ({', '.join(IMAGE_SUFFIXES)})")
    first_with_stem: dict[str, Path] = {}
    for file in files:
        if file.stem in first_with_stem:
            raise DataError(
                file,
                f"frame id {file.stem!r} is also the stem of {first_with_stem[file.stem].name}",
            )
        first_with_stem[file.stem] = file
    return [(file.stem, file) for file in files]


def images_from_item_frames(table_path: Path) -> list[FrameImage]:
    """The (frame_id, path) pairs of an item_frames table (docs/format.md), in row order.

    Relative paths are resolved against the table's folder. Exact duplicate rows are dropped
    with a warning; an empty path, or one frame id with two paths, raises DataError naming
    the row (1-based, header excluded).
    """
    table_path = Path(table_path)
    table = _read_table(table_path)
    for column in ("frame_id", "path"):
        if column not in table.column_names:
            found = ", ".join(table.column_names)
            raise DataError(table_path, f"missing required column {column!r} (found: {found})")
    if table.num_rows == 0:
        raise DataError(table_path, "the table has no rows")
    frame_ids = _text_column(table, "frame_id")
    paths = _text_column(table, "path")
    return _pairs(table_path, frame_ids, paths)


def _read_table(path: Path) -> pa.Table:
    """Read a CSV, TSV or Parquet table; `frame_id` and `path` are read as text."""
    if not path.is_file():
        raise DataError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(path, f"unsupported table type {suffix!r} (use .csv, .tsv or .parquet)")
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        text = {"frame_id": pa.string(), "path": pa.string()}
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types=text),
        )
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(path, f"cannot read the table: {error}") from error


def _text_column(table: pa.Table, name: str) -> list[str | None]:
    """A column as Python strings (ids are text, never numbers); nulls stay None."""
    return table.column(name).cast(pa.string()).to_pylist()


def _pairs(table_path: Path, frame_ids: list[str | None], paths: list[str | None]) -> list[FrameImage]:
    base = table_path.parent
    seen: dict[str, tuple[str, int]] = {}  # frame_id -> (path text, first row)
    pairs: list[FrameImage] = []
    duplicates = 0
    for row, (frame_id, path) in enumerate(zip(frame_ids, paths, strict=True), start=1):
        if not frame_id:
            raise DataError(table_path, "empty frame_id", row=row)
        if path is None or not path.strip():
            raise DataError(table_path, f"empty path for frame {frame_id!r}", row=row)
        if frame_id in seen:
            if seen[frame_id][0] != path:
                first_path, first_row = seen[frame_id]
                problem = f"frame {frame_id!r} has path {path!r} but row {first_row} gives {first_path!r}"
                raise DataError(table_path, problem, row=row)
            duplicates += 1
            continue
        seen[frame_id] = (path, row)
        pairs.append((frame_id, base / path))  # an absolute `path` replaces `base`
    if duplicates:
        logger.warning("%s: dropped %d duplicate frame rows", table_path, duplicates)
    return pairs
