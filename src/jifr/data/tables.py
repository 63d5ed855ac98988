"""Reading the tables of a dataset directory (CSV, TSV or Parquet) with precise errors."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jifr.data.file_checks import (
    ID_MAX_CHARS,
    TEXT_MAX_CHARS,
    check_readable_file,
    check_unique_names,
    check_utf8_text,
    find_runaway_quote_in_file,
    path_exists,
    read_header_names,
)
from jifr.errors import DataError

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_NUMBER_SCAN_ROWS = 65536


@dataclass
class Table:
    """Columns of one table as NumPy arrays: ids as str, numbers as float64.

    ``rows`` holds each row's 1-based data-row number in the file (header excluded), so errors
    still name the right row after duplicates have been removed.
    """

    path: Path
    columns: dict[str, np.ndarray]
    rows: np.ndarray | None = None  # (n,) int64; None means 1..n

    def file_row(self, index: int) -> int:
        """The file's data-row number (1-based) of row ``index`` (0-based) of this table."""
        return index + 1 if self.rows is None else int(self.rows[index])

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns


def find_table(directory: Path, stem: str, required: bool = True) -> Path | None:
    """The one file ``stem.{csv,tsv,parquet}`` in ``directory``; error if none (when required) or several."""
    found = [directory / f"{stem}{s}" for s in TABLE_SUFFIXES if path_exists(directory / f"{stem}{s}")]
    if len(found) > 1:
        raise DataError(directory, f"several '{stem}' tables ({', '.join(p.name for p in found)}); keep one")
    if not found:
        if required:
            raise DataError(directory, f"no '{stem}' table (expected {stem}.csv, .tsv or .parquet)")
        return None
    return found[0]


def _read_arrow(path: Path, id_columns: list[str], text_columns: list[str]) -> pa.Table:
    if check_readable_file(path) == 0:
        raise DataError(path, "the file is empty (a header row is required)")
    if path.suffix == ".parquet":
        return read_parquet(path)
    return _read_delimited(path, id_columns, text_columns)


def read_parquet(path: Path) -> pa.Table:
    """A Parquet file as an Arrow table; unreadable files and repeated column names are DataErrors."""
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(path, f"not a readable Parquet file: {_first_line(exc)}") from None
    check_unique_names(path, names, where="in the schema")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(path, f"not a readable Parquet file: {_first_line(exc)}") from None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The start of an error message: parser messages can quote a whole malformed row."""
    text = str(exc).split("\n", 1)[0]
    return text if len(text) <= limit else text[:limit] + "..."


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix == ".tsv" else ","


def _read_delimited(path: Path, id_columns: list[str], text_columns: list[str]) -> pa.Table:
    check_utf8_text(path)
    check_unique_names(path, read_header_names(path, _delimiter(path)))
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=_delimiter(path)),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in id_columns + text_columns}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        _explain_parse_error(path, exc)
    _check_csv_text(path, table, id_columns)
    return table


def _check_csv_text(path: Path, table: pa.Table, id_columns: list[str]) -> None:
    """Every text column, used or not. Values never span lines: a line break inside one means a
    stray quote that swallowed the following rows (lost rows, or one huge value)."""
    text = [name for name in table.column_names if pa.types.is_string(table.column(name).type)]
    for name in text:
        broken = _first_true(pc.match_substring(table.column(name), "\n"))
        if broken is not None:
            _raise_if_runaway_quote(path)
            raise DataError(path, f"line break inside a value of column '{name}'", row=broken + 1)
    for name in text:
        _check_lengths(path, table.column(name), name, ID_MAX_CHARS if name in id_columns else TEXT_MAX_CHARS)


def _explain_parse_error(path: Path, exc: BaseException) -> NoReturn:
    if "Empty CSV file" in str(exc):
        raise DataError(path, "the file is empty (a header row is required)") from None
    _raise_if_runaway_quote(path)
    if "Expected" in str(exc) and "columns, got" in str(exc):
        _raise_ragged_row(path)
    raise DataError(path, f"cannot be parsed: {_first_line(exc)}") from None


def _raise_if_runaway_quote(path: Path) -> None:
    line = find_runaway_quote_in_file(path, _delimiter(path))
    if line is not None:
        row = line - 1 if line > 1 else None
        problem = "a quoted value starts here and runs past the end of its line (an unbalanced quote?)"
        raise DataError(path, problem, row=row)


def _raise_ragged_row(path: Path) -> None:
    """Re-read serially (row numbers are only known then) to name the row with a wrong field count."""
    found: list[pacsv.InvalidRow] = []

    def record(row: pacsv.InvalidRow) -> str:
        found.append(row)
        return "error"  # stop at the first one

    with contextlib.suppress(pa.ArrowInvalid):  # raised at the first bad row, once recorded
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=_delimiter(path), invalid_row_handler=record),
        )
    if found:
        bad = found[0]
        row = None if bad.number is None else bad.number - 1  # physical line -> data row
        raise DataError(path, f"{bad.actual_columns} field(s) where the header has {bad.expected_columns}", row=row)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """0-based index of the first true value of a boolean Arrow array, or None."""
    index = pc.index(mask, True).as_py()
    return None if index is None or index < 0 else int(index)


def _check_lengths(path: Path, column: pa.ChunkedArray, name: str, limit: int) -> None:
    """Reject values longer than ``limit`` characters before anything is copied into NumPy
    (a fixed-width string array costs rows x longest value)."""
    lengths = pc.utf8_length(column)
    over = _first_true(pc.fill_null(pc.greater(lengths, limit), False))
    if over is None:
        return
    n = lengths[over].as_py()
    raise DataError(path, f"a value in column '{name}' has {n:,} characters (at most {limit:,})", row=over + 1)


def _text_column(path: Path, table: pa.Table, name: str, limit: int) -> pa.ChunkedArray:
    """Column ``name`` as Arrow strings of at most ``limit`` characters (nulls kept)."""
    column = table.column(name)
    if not pa.types.is_string(column.type):
        try:
            column = pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(path, f"column '{name}' must hold text, got {column.type}") from None
    _check_lengths(path, column, name, limit)
    return column


def _to_str_array(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.fill_null("").to_numpy(zero_copy_only=False)).astype(str)


def _id_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = _text_column(path, table, name, ID_MAX_CHARS)
    empty = _first_true(pc.fill_null(pc.equal(pc.utf8_length(column), 0), True))
    if empty is not None:
        raise DataError(path, f"empty value in column '{name}'", row=empty + 1)
    broken = _first_true(pc.or_(pc.match_substring(column, "\n"), pc.match_substring(column, "\r")))
    if broken is not None:
        raise DataError(path, f"line break inside an id in column '{name}'", row=broken + 1)
    return _to_str_array(column)


def _number_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise DataError(path, f"column '{name}' must be numeric, got {kind}", row=1)
        column = _text_column(path, table, name, ID_MAX_CHARS)
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(path, f"column '{name}' must be numeric", row=_first_non_number(column)) from None
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(path, f"missing or non-finite '{name}'", row=int(np.flatnonzero(~np.isfinite(values))[0]) + 1)
    return values


def _first_non_number(column: pa.ChunkedArray) -> int | None:
    """1-based row of the first value that is not a number, reading a slice of rows at a time."""
    for start in range(0, len(column), _NUMBER_SCAN_ROWS):
        for offset, text in enumerate(column.slice(start, _NUMBER_SCAN_ROWS).to_pylist()):
            if text is not None and _try_float(text) is None:
                return start + offset + 1
    return None


def _try_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_table(
    path: Path,
    ids: list[str],
    optional_ids: tuple[str, ...] = (),
    optional_numbers: tuple[str, ...] = (),
    numbers: tuple[str, ...] = (),
) -> Table:
    """Read a table; ``ids`` are required string columns and ``numbers`` required numeric ones,
    the optional ones are kept when present.

    ``optional_ids`` are free text (paths, titles). Row numbers in errors are 1-based data rows
    (the header is not counted).
    """
    table = _read_arrow(path, ids, list(optional_ids))
    missing = [c for c in (*ids, *numbers) if c not in table.column_names]
    if missing:
        found = ", ".join(repr(c) if c != c.strip() or not c else c for c in table.column_names)
        raise DataError(path, f"missing column(s) {', '.join(missing)}; found {found or 'none'}")
    if table.num_rows == 0:
        raise DataError(path, "the file has a header but no rows")
    columns = {c: _id_column(path, table, c) for c in ids}
    for c in optional_ids:
        if c in table.column_names:
            columns[c] = _to_str_array(_text_column(path, table, c, TEXT_MAX_CHARS))
    for c in (*numbers, *optional_numbers):
        if c in table.column_names:
            columns[c] = _number_column(path, table, c)
    return Table(path=path, columns=columns)


def drop_duplicates(table: Table, key: list[str], what: str) -> Table:
    """Remove rows whose ``key`` columns repeat an earlier row; the count is logged as a warning."""
    codes = [np.unique(table[c], return_inverse=True)[1].ravel() for c in key]
    order = np.lexsort(codes[::-1])  # stable: within a group of equal keys, file order
    same_as_previous = np.ones(max(len(order) - 1, 0), dtype=bool)
    for c in codes:
        same_as_previous &= c[order[1:]] == c[order[:-1]]
    keep = np.sort(order[np.r_[True, ~same_as_previous]])
    if len(keep) == len(table):
        return table
    log.warning(
        "%s: removed %d duplicate %s row(s) (same %s)",
        table.path.name,
        len(table) - len(keep),
        what,
        ",".join(key),
    )
    rows = np.arange(1, len(table) + 1) if table.rows is None else table.rows
    columns = {c: v[keep] for c, v in table.columns.items()}
    return Table(path=table.path, columns=columns, rows=rows[keep])
