"""Errors that describe bad input precisely enough to fix it."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with user data: names the file, the row (1-based, header excluded) and the problem."""

    def __init__(self, path: str | Path | None, problem: str, row: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.problem = problem
        where = self.path or "<data>"
        if row is not None:
            where = f"{where}, row {row}"
        super().__init__(f"{where}: {problem}")
