"""Progress for long loops: a tqdm bar on a terminal, periodic log lines in a log.

A bar redrawn per batch floods a redirected stderr, so when stderr is not a terminal no bar
is drawn (tqdm's ``disable=None``) and an INFO line is logged at most every ``LOG_SECONDS``.
``enabled=False`` (``--no-progress``) gives neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

LOG_SECONDS = 30.0  # at most one progress line per this many seconds where no bar is drawn


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **options: Any) -> tqdm:
    """A tqdm bar, drawn only when ``enabled`` and stderr is a terminal."""
    return tqdm(iterable, disable=None if enabled else True, **options)


class ProgressLog:
    """Progress as an INFO line at most every ``LOG_SECONDS``, for when no bar is drawn."""

    def __init__(self, logger: logging.Logger, label: str, total: int, unit: str, bar: tqdm, enabled: bool) -> None:
        self.logger, self.label, self.total, self.unit = logger, label, total, unit
        self.enabled = enabled and bool(bar.disable)
        self.last = time.monotonic()

    def update(self, done: int) -> None:
        if self.enabled and time.monotonic() - self.last >= LOG_SECONDS:
            self.last = time.monotonic()
            self.logger.info("%s: %d/%d %s", self.label, done, self.total, self.unit)
