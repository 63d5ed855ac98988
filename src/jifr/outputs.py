"""Outputs that never destroy and never look complete before they are.

Every directory jifr writes carries a marker file, ``.jifr-output.json``, naming the kind of
output (``prepared``, ``run``, ``compare``, ``dataset``, ``demo``, ``tune``, ``report``). A command may write into a
directory only if it does not exist, is empty, or holds a jifr output of the same kind; it may
*replace* such an output only when asked (``--force``), never an input of the command, a
directory holding one, or a directory jifr did not write.

Files that a later command trusts are written to a temporary name in the same directory,
flushed to disk and renamed into place (``os.replace`` is atomic on one file system), so a
crash leaves either the old file or the new one. Directory outputs are built under a temporary
sibling and renamed into place when complete. A full disk ends in one ``OutputError`` naming
the path and saying "no space left on device"; temporary files are removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

import jifr
from jifr.errors import DataError

MARKER_NAME = ".jifr-output.json"
OUTPUT_KINDS = ("prepared", "run", "compare", "dataset", "demo", "tune", "report")
_FULL_DISK = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "no space left: disk quota exceeded",
    errno.EFBIG: "no space left: file size limit exceeded",
}


class OutputError(DataError):
    """An output cannot be written: it would overwrite something, or the disk is full."""


class DiskFullError(OutputError):
    """No space was left while writing an output."""


def full_disk_reason(exc: BaseException) -> str | None:
    """The "no space left" reason when ``exc`` reports a full disk (or a quota or size limit), else None."""
    if isinstance(exc, OSError) and exc.errno in _FULL_DISK:
        return _FULL_DISK[exc.errno]
    if not isinstance(exc, OSError) and "(os error 28)" in str(exc):  # safetensors' Rust writer
        return _FULL_DISK[errno.ENOSPC]
    return None


def describe_os_error(exc: OSError) -> str:
    """``path: problem`` for an operating-system error, for a one-line CLI message."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{full_disk_reason(exc) or (exc.strerror or str(exc)).lower()}"


@contextlib.contextmanager
def reports_full_disk(path: str | Path) -> Iterator[None]:
    """Turn "no space left" (and quota or file-size limits) while writing ``path`` into a DiskFullError."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        reason = full_disk_reason(exc)
        if reason is None:
            raise
        raise DiskFullError(path, f"{reason}; nothing was completed there") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a written file to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty file beside ``path``, with the permissions an ordinary new file would get."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds, it is flushed and renamed
    to ``path``. For writers that take a file name (safetensors, NumPy, Parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with reports_full_disk(path):
        temporary = _temporary_sibling(path)
        try:
            yield temporary
            fsync_path(temporary)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that writes a temporary sibling and renames it into place on success."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding, **kwargs) as handle:
        yield handle
        handle.flush()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=indent) + "\n")


def allocate_npy(path: str | Path, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    """A writable ``.npy`` memory map whose disk blocks are reserved up front.

    Writing through a memory map into a sparse file on a full disk kills the process with
    SIGBUS; reserving the blocks first turns that into an ordinary "no space left" error here.
    """
    path = Path(path)
    with reports_full_disk(path):
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        del array
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return np.lib.format.open_memmap(path, mode="r+")


# ---- directory outputs ------------------------------------------------------------------------
def read_marker(directory: Path) -> dict[str, Any] | None:
    """The marker of a jifr output directory, or None when there is none (or it is unreadable)."""
    try:
        marker = json.loads((directory / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("kind") in OUTPUT_KINDS else None


def write_marker(directory: Path, kind: str) -> None:
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    write_json_atomic(directory / MARKER_NAME, {"kind": kind, "jifr_version": jifr.__version__})


def _overlaps(path: Path, other: Path) -> bool:
    """True when ``path`` is ``other`` or a folder above it."""
    return path == other or path in other.parents


def check_output_directory(
    path: str | Path, kind: str, *, force: bool = False, reuse: bool = False, inputs: Sequence[str | Path] = ()
) -> bool:
    """May a command write a ``kind`` output at ``path``? Returns whether one is already there.

    Refused (OutputError): ``path`` is or holds one of the command's ``inputs``; it is a file;
    it is a non-empty directory jifr did not write, or a jifr output of another kind; it is a
    jifr output of this kind and neither ``force`` (replace it) nor ``reuse`` (continue it) is set.
    """
    path = Path(path)
    resolved = path.resolve()
    for source in inputs:
        if _overlaps(resolved, Path(source).resolve()):
            raise OutputError(path, f"is, or holds, the input {source}; refusing to write over it (choose a new --out)")
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir():
        raise OutputError(path, "exists and is not a directory; refusing to replace it (choose a new --out)")
    if not any(path.iterdir()):
        return False
    marker = read_marker(path)
    if marker is None:
        raise OutputError(
            path, "exists, is not empty and was not written by jifr; refusing to overwrite it (choose a new --out)"
        )
    if marker["kind"] != kind:
        raise OutputError(path, f"holds a jifr {marker['kind']} output, not a {kind} output; refusing to overwrite it")
    if not (force or reuse):
        raise OutputError(path, f"already holds a jifr {kind} output; pass --force to replace it")
    return True


def open_output_directory(
    path: str | Path, kind: str, *, reuse: bool = True, force: bool = False, inputs: Sequence[str | Path] = ()
) -> Path:
    """Create (or, after the checks of ``check_output_directory``, continue) a directory output
    that is filled in place, file by file, each file atomic (runs, comparisons, the main job)."""
    path = Path(path)
    existed = check_output_directory(path, kind, force=force, reuse=reuse, inputs=inputs)
    if existed and force and not reuse:
        _remove_output(path)
    with reports_full_disk(path):
        path.mkdir(parents=True, exist_ok=True)
        if read_marker(path) is None:
            write_marker(path, kind)
    return path


def _remove_output(path: Path) -> None:
    """Remove a jifr output directory (only ever called after its marker was checked)."""
    if read_marker(path) is None:  # checked again: never remove a directory jifr did not write
        raise OutputError(path, "was not written by jifr; refusing to remove it")
    shutil.rmtree(path)


@contextlib.contextmanager
def staged_directory(
    path: str | Path, kind: str, *, force: bool = False, inputs: Sequence[str | Path] = ()
) -> Iterator[Path]:
    """Build a directory output under a temporary sibling; it appears at ``path`` only when the
    block succeeds (replacing an earlier jifr output of the same kind when ``force`` is set).
    On failure the temporary directory is removed and ``path`` is untouched."""
    path = Path(path)
    check_output_directory(path, kind, force=force, inputs=inputs)
    with reports_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        staging.chmod(0o777 & ~_umask())
    try:
        with reports_full_disk(path):
            yield staging
            write_marker(staging, kind)
            _swap_into_place(staging, path)
    except DiskFullError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        written = "" if exc.path is None else f" (while writing {Path(exc.path).name})"
        raise DiskFullError(path, exc.problem.replace(";", f"{written};", 1)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        os.rename(path, retired / path.name)
        os.rename(staging, path)
        shutil.rmtree(retired, ignore_errors=True)
        return
    if path.exists():
        path.rmdir()  # empty
    os.rename(staging, path)
