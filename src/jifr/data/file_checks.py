"""Checks that a dataset file can be read as what its name says, before a parser sees it.

Everything here reads files in bounded pieces: a malformed file never costs memory in proportion
to a bad field or line.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from jifr.errors import DataError

CHUNK_BYTES = 1 << 20
ID_MAX_CHARS = 1024  # ids (user, item, frame)
TEXT_MAX_CHARS = 8192  # any other text field of a table (path, title, extra columns)
HEADER_MAX_BYTES = 1 << 16
_ENCODING_HINT = "binary content, or text in another encoding such as Latin-1: save it as UTF-8"
_QUOTE = ord('"')
_LINE_ENDS = (ord("\n"), ord("\r"))
_MAGIC = {
    b"\x1f\x8b": "gzip-compressed data",
    b"\xfd7zXZ\x00": "xz-compressed data",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data",
    b"PK\x03\x04": "a zip archive",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"\x93NUMPY": "a NumPy .npy file",
}


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def path_exists(path: Path) -> bool:
    """Like ``Path.exists``, but a path that cannot be checked (permission denied, a symlink loop)
    is a DataError instead of an OSError."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise DataError(path, f"cannot be read: {_reason(exc)}") from None
    return True


def check_readable_directory(path: Path) -> None:
    """Raise unless ``path`` is a directory whose entries this process may list and open."""
    if not path_exists(path):
        raise DataError(path, "does not exist")
    if not path.is_dir():
        raise DataError(path, "is not a directory")
    try:
        os.listdir(path)
    except OSError as exc:
        raise DataError(path, f"cannot be read: {_reason(exc)}") from None
    if not os.access(path, os.X_OK):
        raise DataError(path, "cannot be read: permission denied")


def check_readable_file(path: Path) -> int:
    """Raise unless ``path`` is a regular file this process may read; returns its size in bytes."""
    try:
        info = path.stat()
    except OSError as exc:
        raise DataError(path, f"cannot be read: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(path, "is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise DataError(path, f"cannot be read: {_reason(exc)}") from None
    return info.st_size


# --- encoding --------------------------------------------------------------------------------------


def check_utf8_text(path: Path, header_lines: int = 1, what: str = "a UTF-8 text table") -> None:
    """Raise at the first byte that is not UTF-8 text (invalid UTF-8 or a NUL byte).

    The error names the row: the physical line minus ``header_lines``.
    """
    line, carry, start = 1, b"", True
    with path.open("rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            chunk = carry + data
            if not chunk:
                return
            if start:
                _reject_known_binary(path, chunk, what)
                start = False
            good, invalid = _valid_utf8_prefix(chunk, final=not data)
            nul = chunk.find(b"\0", 0, good)
            if nul >= 0 or invalid:
                at = nul if nul >= 0 else good
                raise _not_text(path, what, chunk[at], line + chunk.count(b"\n", 0, at), header_lines)
            line += chunk.count(b"\n", 0, good)
            carry = chunk[good:]


def _valid_utf8_prefix(chunk: bytes, final: bool) -> tuple[int, bool]:
    """(length of the valid UTF-8 prefix, whether an invalid byte follows it). An incomplete
    character at the end of a non-final chunk is not invalid: the next chunk completes it."""
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        incomplete = exc.reason == "unexpected end of data" and not final
        return exc.start, not incomplete
    return len(chunk), False


def _reject_known_binary(path: Path, start: bytes, what: str) -> None:
    for magic, kind in _MAGIC.items():
        if start.startswith(magic):
            raise DataError(path, f"is {kind}, not {what}")


def _not_text(path: Path, what: str, byte: int, line: int, header_lines: int) -> DataError:
    row = line - header_lines
    where = " in the header" if row < 1 else ""
    if byte == 0:
        found = f"a NUL byte{where} (binary content)"
    else:
        found = f"byte 0x{byte:02X}{where} is not valid UTF-8 ({_ENCODING_HINT})"
    return DataError(path, f"not {what}: {found}", row=row if row >= 1 else None)


# --- the header ------------------------------------------------------------------------------------


def read_header_names(path: Path, delimiter: str) -> list[str]:
    """The column names on the first line; the file must already be known to be UTF-8."""
    with path.open("rb") as f:
        line = f.readline(HEADER_MAX_BYTES + 1)
    if len(line) > HEADER_MAX_BYTES and not line.endswith(b"\n"):
        raise DataError(path, f"the header line is longer than {HEADER_MAX_BYTES:,} bytes")
    if find_runaway_quote([line], delimiter) is not None:
        raise DataError(path, "unbalanced quote in the header")
    text = line.decode("utf-8").rstrip("\r\n")
    return next(csv.reader([text], delimiter=delimiter), [])


def check_unique_names(path: Path, names: Iterable[str], where: str = "in the header") -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(path, f"column '{name}' appears twice {where}")
        seen.add(name)


# --- quoting ---------------------------------------------------------------------------------------


def find_runaway_quote_in_file(path: Path, delimiter: str) -> int | None:
    """The physical line (1-based) where the first quoted field starts that runs past the end of
    its line or of the file, or None. Values never span lines in a dataset table, so such a field
    means an unbalanced quote: the parser would swallow the following rows into it."""
    with path.open("rb") as f:
        return find_runaway_quote(iter(lambda: f.read(CHUNK_BYTES), b""), delimiter)


def find_runaway_quote(chunks: Iterable[bytes], delimiter: str) -> int | None:
    """``find_runaway_quote_in_file`` over consecutive pieces of a file. Follows CSV quoting: a
    quote opens a field only at its start, and ``""`` inside a quoted field is a quote."""
    scanner = _QuoteScanner(ord(delimiter))
    for chunk in chunks:
        if chunk and scanner.feed(chunk):
            return scanner.open_line
    return None if scanner.quote_pending else scanner.open_line


class _QuoteScanner:
    def __init__(self, delimiter: int) -> None:
        self.delimiter = delimiter
        self.line = 1  # physical line at the start of the next chunk
        self.previous = ord("\n")  # the byte before the next chunk
        self.open_line: int | None = None  # where the quoted field being read began
        self.quote_pending = False  # the last chunk ended on a quote inside a quoted field

    def feed(self, chunk: bytes) -> bool:
        """Follow ``chunk``; True (and stop) once a quoted field runs past the end of its line."""
        pos = self._after_pending_quote(chunk)
        while True:
            if self.open_line is None:
                q = self._field_start_quote(chunk, pos)
                if q < 0:
                    break
                self.open_line = self.line + chunk.count(b"\n", 0, q)
                pos = q + 1
                continue
            q = chunk.find(b'"', pos)
            if chunk.find(b"\n", pos, len(chunk) if q < 0 else q) >= 0:
                return True
            if q < 0:
                break
            if q + 1 == len(chunk):
                self.quote_pending = True  # the next chunk tells whether it closes the field
                break
            if chunk[q + 1] == _QUOTE:
                pos = q + 2  # a doubled quote inside the field
            else:
                self.open_line, pos = None, q + 1
        self.line += chunk.count(b"\n")
        self.previous = chunk[-1]
        return False

    def _after_pending_quote(self, chunk: bytes) -> int:
        if not self.quote_pending:
            return 0
        self.quote_pending = False
        if chunk[0] == _QUOTE:
            return 1  # a doubled quote: still inside the field
        self.open_line = None
        return 0

    def _field_start_quote(self, chunk: bytes, pos: int) -> int:
        q = chunk.find(b'"', pos)
        while q >= 0:
            before = chunk[q - 1] if q > 0 else self.previous
            if before == self.delimiter or before in _LINE_ENDS:
                return q
            q = chunk.find(b'"', q + 1)
        return -1
