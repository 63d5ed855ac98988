"""Real photos from scikit-image and the real EfficientNet-Lite0 encoder, built once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from jifr.features import ImageEncoder, build_encoder


@pytest.fixture(scope="session")
def lite0() -> ImageEncoder:
    """The default encoder with its packaged ImageNet weights (loading costs ~0.2 s)."""
    return build_encoder("efficientnet-lite0")


def save_photos(directory: Path) -> Path:
    """Seven real photos in the formats and colour modes a frame folder may hold."""
    directory.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.chelsea()).save(directory / "chelsea.jpg", quality=90)
    Image.fromarray(data.coffee()).save(directory / "coffee.jpg", quality=90)
    Image.fromarray(data.camera()).save(directory / "camera.png")  # grayscale
    Image.fromarray(data.rocket()).save(directory / "rocket.jpeg", quality=90)
    Image.fromarray(data.astronaut()).convert("P").save(directory / "astronaut.png")  # palette
    rgba = Image.fromarray(data.immunohistochemistry()).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(directory / "stain.webp")
    Image.fromarray(np.ascontiguousarray(data.retina()[::8, ::8])).save(directory / "retina.bmp")
    return directory


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def photo_frames(photo_dir: Path) -> list[tuple[str, Path]]:
    """(frame_id, path) for the seven photos, sorted by file name."""
    return sorted((p.stem, p) for p in photo_dir.iterdir())


@pytest.fixture
def corrupt_dir(photo_dir: Path, tmp_path: Path) -> Path:
    """A copy of the seven photos plus two broken JPEGs: garbage bytes, and a truncated file."""
    target = tmp_path / "in"
    shutil.copytree(photo_dir, target)
    (target / "garbage.jpg").write_bytes(b"this is not an image at all" * 20)
    whole = (photo_dir / "chelsea.jpg").read_bytes()
    (target / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return target
