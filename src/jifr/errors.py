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


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite: the weights are no longer usable."""

    def __init__(self, epoch: int, batch: int, n_batches: int, loss: float, learning_rate: float) -> None:
        self.epoch, self.batch, self.loss = epoch, batch, loss
        super().__init__(
            f"training diverged: the loss became {loss} at epoch {epoch}, batch {batch} of {n_batches}; "
            f"try a lower learning rate (now {learning_rate:g}, e.g. --lr {learning_rate / 10:g})"
        )


class MainRankFailed(RuntimeError):
    """In a run over several processes, raised on the others when rank 0 fails at something it
    alone does (writing files); rank 0 reports the error itself."""
