"""``python -m jifr``: the ``jifr`` command (also what ``torchrun -m jifr`` starts in each process)."""

from jifr.cli import app

app(prog_name="jifr")
