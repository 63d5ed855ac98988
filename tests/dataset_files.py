"""Writers for hand-built dataset files, importable by name from any test (``tests/`` is on the
path; a root-level test cannot import ``conftest`` by name, as ``tests/features`` has one too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jifr.datasets.synthetic import SyntheticConfig
from jifr.train import TrainConfig

# Personalised choices (little popularity), low temperature: a clear planted answer. Prepared
# once per test session (tests/conftest.py, fixture ``planted``) for every learning test.
PLANTED = SyntheticConfig(n_users=500, n_items=250, feature_dim=32, popularity_weight=0.1, temperature=0.3)
PLANTED_TRAIN = TrainConfig(epochs=40, batch_size=512)


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def write_features(directory: Path, frame_ids: list[str], values: np.ndarray) -> None:
    np.save(directory / "frame_features.npy", values)
    (directory / "frame_features.ids.txt").write_text("\n".join(frame_ids) + "\n", encoding="utf-8")


def write_feedback_from_likes(directory: Path) -> Path:
    """Write ``frame_feedback.csv`` into a dataset directory from its frame likes: every frame of
    each (user, item) pair with a like, labelled 1 when liked and 0 otherwise, as if a platform
    had shown each of the item's frames once and logged the clicks."""
    import pyarrow.parquet as pq

    def table(stem: str) -> dict[str, np.ndarray]:
        found = pq.read_table(directory / f"{stem}.parquet").to_pydict()
        return {k: np.asarray(v, dtype=str) for k, v in found.items()}

    likes, frames = table("frame_likes"), table("item_frames")
    pairs = sorted(set(zip(likes["user_id"].tolist(), likes["item_id"].tolist(), strict=True)))
    liked = set(zip(likes["user_id"].tolist(), likes["frame_id"].tolist(), strict=True))
    frames_of: dict[str, list[str]] = {}
    for item, frame in zip(frames["item_id"].tolist(), frames["frame_id"].tolist(), strict=True):
        frames_of.setdefault(item, []).append(frame)
    rows = [f"{user},{item},{frame},{int((user, frame) in liked)}" for user, item in pairs for frame in frames_of[item]]
    return write_csv(directory / "frame_feedback.csv", "user_id,item_id,frame_id,label", rows)
