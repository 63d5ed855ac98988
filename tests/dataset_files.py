"""Writers for hand-built dataset files, importable by name from any test (``tests/`` is on the
path; a root-level test cannot import ``conftest`` by name, as ``tests/features`` has one too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def write_features(directory: Path, frame_ids: list[str], values: np.ndarray) -> None:
    np.save(directory / "frame_features.npy", values)
    (directory / "frame_features.ids.txt").write_text("\n".join(frame_ids) + "\n", encoding="utf-8")
