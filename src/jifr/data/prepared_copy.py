"""A run's own copy of its prepared dataset, so that the run can be moved and served alone.

The files are hard-linked from the prepared directory where the file system allows (no extra
space; jifr never rewrites a prepared file in place, it replaces whole directories, so a link
keeps the contents the run was trained on) and copied otherwise (another file system, or one
without hard links). The copy is built under a temporary sibling and renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from jifr.data.prepared import ARRAYS_NAME, FEATURES_NAME, FRAMES_TABLE_NAME, META_NAME
from jifr.errors import DataError
from jifr.outputs import fsync_path, staged_directory

log = logging.getLogger(__name__)

PREPARED_FILES = (META_NAME, ARRAYS_NAME, "users.txt", "items.txt", "frames.txt", FRAMES_TABLE_NAME, FEATURES_NAME)


def link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target``, or copy it where linking fails; True when linked."""
    try:
        os.link(source, target)
        return True
    except OSError:  # another file system, no hard links there, or too many links
        shutil.copyfile(source, target)
        fsync_path(target)
        return False


def copy_prepared(source: str | Path, target: str | Path) -> Path:
    """Place the prepared dataset ``source`` at ``target`` (new, or an earlier copy, which is
    replaced); it appears only when complete. A file missing from ``source`` is a DataError."""
    source, target = Path(source), Path(target)
    missing = [name for name in PREPARED_FILES if not (source / name).is_file()]
    if missing:
        raise DataError(source, f"not a complete prepared dataset: {', '.join(missing)} missing")
    with staged_directory(target, "prepared", force=True, inputs=[source]) as staging:
        linked = sum(link_or_copy(source / name, staging / name) for name in PREPARED_FILES)
    log.info("%s: prepared data from %s (%d of %d files hard-linked)", target, source, linked, len(PREPARED_FILES))
    return target
