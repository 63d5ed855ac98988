"""Decoding image files into RGB pictures, and the fixed crop-and-resize the encoders share."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow image (grayscale, palette, RGBA, CMYK, 16-bit) to 8-bit RGB.

    Transparent pixels are composited over white, because the colour hidden under
    alpha 0 is arbitrary (often black) and would leak into the features.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        scaled = np.asarray(image, dtype=np.float32) / 257.0
        image = Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path: Path | IO[bytes]) -> Image.Image:
    """Decode an image file (or an open binary file) fully, upright (EXIF orientation applied),
    as 8-bit RGB."""
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright)


def probe_image(path: Path, size: int = 224) -> str | None:
    """Check that `path` decodes; return None when it does, else the reason it does not.

    Cheaper than a full decode: `verify` checks the container (PNG checksums, headers),
    then JPEGs are decoded at a reduced scale (`draft`), which still reads every byte and
    so still catches truncated files.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image.load()
    # Pillow reports corrupt data through many exception types (OSError, SyntaxError,
    # ValueError, struct.error, zlib.error, DecompressionBombError...): catch them all so
    # that every bad file is named instead of the run crashing on the first.
    except Exception as error:
        return describe_failure(error)
    return None


def describe_failure(error: BaseException) -> str:
    """One line that says why a file could not be read, e.g. 'OSError: image file is truncated'."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def center_crop_resize(image: Image.Image, size: int, crop_fraction: float, resample: Image.Resampling) -> np.ndarray:
    """Crop the central square (`crop_fraction` of the short side) and resize it to `size`.

    Returns uint8 pixels of shape (size, size, 3). Crop and resize happen in one Pillow
    call (`box=`), so the result depends only on the file's pixels: deterministic.
    """
    width, height = image.size
    crop = max(1, int(crop_fraction * min(width, height)))
    left, top = (width - crop + 1) // 2, (height - crop + 1) // 2
    box = (left, top, left + crop, top + crop)
    resized = image.resize((size, size), resample=resample, box=box)
    return np.asarray(resized, dtype=np.uint8)


def to_chw_tensor(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 pixels -> (3, H, W) float32 tensor, `(pixels - mean) / std` per channel."""
    normalised = (pixels.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
