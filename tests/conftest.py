"""Shared fixtures: a tiny synthetic dataset with a planted answer, prepared once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dataset_files import PLANTED, write_csv, write_features

from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.datasets.mirror import MirrorNotFoundError, find_mirror
from jifr.datasets.synthetic import write_dataset, write_synthetic


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic("tiny", tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    return prepare_dataset(tiny_dir, tmp_path_factory.mktemp("tiny_prepared") / "prepared", PrepareConfig())


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The planted synthetic data of the learning tests (dataset_files.PLANTED), prepared once."""
    root = tmp_path_factory.mktemp("planted")
    return prepare_dataset(write_dataset(PLANTED, root / "data"), root / "prepared")


@pytest.fixture
def handmade_dir(tmp_path: Path) -> Path:
    """3 users x 3 items, 2 frames per item, 4-d features: valid, small enough to edit by hand."""
    d = tmp_path / "handmade"
    d.mkdir()
    rows = [f"u{u},i{i},{10 * u + i}" for u in range(3) for i in range(3)]
    write_csv(d / "interactions.csv", "user_id,item_id,timestamp", rows)
    write_csv(d / "item_frames.csv", "item_id,frame_id", [f"i{i},f{i}{k}" for i in range(3) for k in range(2)])
    write_features(d, [f"f{i}{k}" for i in range(3) for k in range(2)], np.arange(24, dtype=np.float32).reshape(6, 4))
    write_csv(d / "frame_likes.csv", "user_id,item_id,frame_id", ["u0,i1,f10", "u2,i2,f21"])
    return d


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The real ``ml-100k-posters`` mirror, resolved as the library does. Tests that use it skip
    with a reason when it is absent, and fail instead when JIFR_REQUIRE_MIRROR=1 (as in CI)."""
    try:
        return find_mirror()
    except MirrorNotFoundError as error:
        if os.environ.get("JIFR_REQUIRE_MIRROR") == "1":
            pytest.fail(f"JIFR_REQUIRE_MIRROR=1 but {error}")
        pytest.skip(f"MovieLens mirror absent: {error}")
