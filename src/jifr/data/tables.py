"""Reading the tables of a dataset directory (CSV, TSV or Parquet) with precise errors."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jifr.errors import DataError

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


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
    found = [directory / f"{stem}{s}" for s in TABLE_SUFFIXES if (directory / f"{stem}{s}").exists()]
    if len(found) > 1:
        raise DataError(directory, f"several '{stem}' tables ({', '.join(p.name for p in found)}); keep one")
    if not found:
        if required:
            raise DataError(directory, f"no '{stem}' table (expected {stem}.csv, .tsv or .parquet)")
        return None
    return found[0]


def _read_arrow(path: Path, id_columns: list[str]) -> pa.Table:
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty (a header row is required)")
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        return _read_delimited(path, id_columns)
    except (pa.ArrowInvalid, OSError) as exc:
        if "Empty CSV file" in str(exc):
            raise DataError(path, "the file is empty (a header row is required)") from None
        if "Expected" in str(exc) and "columns, got" in str(exc):
            _raise_ragged_row(path)
        raise DataError(path, f"cannot be parsed: {exc}") from None


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix == ".tsv" else ","


def _read_delimited(path: Path, id_columns: list[str]) -> pa.Table:
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=_delimiter(path)),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in id_columns}, strings_can_be_null=False
        ),
    )


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


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def _string_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
    values = np.asarray(column.fill_null("").to_numpy(zero_copy_only=False)).astype(str)
    bad = nulls | (np.char.str_len(values) == 0)
    if bad.any():
        raise DataError(path, f"empty value in column '{name}'", row=_first_bad_row(bad))
    if np.char.find(values, "\n").max(initial=-1) >= 0:
        raise DataError(path, f"line break inside an id in column '{name}'")
    return values


def _number_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = np.asarray(column.to_numpy(zero_copy_only=False)).astype(str)
        bad = np.isnan(np.array([_try_float(t) for t in text], dtype=np.float64))
        row = _first_bad_row(bad) if bad.any() else None
        raise DataError(path, f"column '{name}' must be numeric", row=row) from None
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(path, f"missing or non-finite '{name}'", row=_first_bad_row(~np.isfinite(values)))
    return values


def _try_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_table(
    path: Path,
    ids: list[str],
    optional_ids: tuple[str, ...] = (),
    optional_numbers: tuple[str, ...] = (),
) -> Table:
    """Read a table; ``ids`` are required string columns, the optional ones are kept when present.

    Row numbers in errors are 1-based data rows (the header is not counted).
    """
    table = _read_arrow(path, ids + list(optional_ids))
    missing = [c for c in ids if c not in table.column_names]
    if missing:
        raise DataError(
            path,
            f"missing column(s) {', '.join(missing)}; found {', '.join(table.column_names) or 'none'}",
        )
    if table.num_rows == 0:
        raise DataError(path, "the file has a header but no rows")
    columns = {c: _string_column(path, table, c) for c in ids}
    for c in optional_ids:
        if c in table.column_names:
            columns[c] = np.asarray(table.column(c).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
    for c in optional_numbers:
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
