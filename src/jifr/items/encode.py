"""Uploaded frame images: decoded as ``jifr features extract`` decodes files, and encoded by the
encoder that made the run's frame features, so a new item's frames are features of the same
kind as the catalogue's.

``jifr prepare`` records that encoder in ``prepared.json`` (``frame_encoder``: name, feature
size and the SHA-256 of its weights) when the dataset's features carry the record of
``jifr features extract``. A run whose features came from elsewhere (synthetic ones, say) has
none: its new items take precomputed features only.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import torch
from PIL import Image

from jifr.features.encoders import EncoderUnavailableError, ImageEncoder, build_encoder, encoder_record
from jifr.features.images import describe_failure, load_rgb
from jifr.items.store import NewItemConflict, NewItemInvalid, StoredImage

MAX_IMAGE_PIXELS = 40_000_000  # width x height of one uploaded image
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
IMAGE_FORMATS = tuple(IMAGE_SUFFIXES)


def decode_image(data: bytes, position: int) -> tuple[Image.Image, StoredImage]:
    """Uploaded image number ``position`` (from 1) as RGB pixels, decoded as a frame file is
    (``load_rgb``), and as the bytes to store with the extension of its format. NewItemInvalid
    when it is not a PNG, JPEG, WebP, GIF or BMP image that decodes, or has too many pixels."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            image_format, (width, height) = str(probe.format), probe.size
        if width * height > MAX_IMAGE_PIXELS:
            raise NewItemInvalid(f"image {position} has {width} x {height} pixels; at most {MAX_IMAGE_PIXELS:,}")
        pixels = load_rgb(io.BytesIO(data))
    except NewItemInvalid:
        raise
    except Exception as exc:  # Pillow reports bad data through many exception types
        kinds = ", ".join(sorted(set(IMAGE_SUFFIXES.values())))
        raise NewItemInvalid(
            f"image {position} cannot be decoded as an image ({kinds}): {describe_failure(exc)}"
        ) from None
    return pixels, StoredImage(data, IMAGE_SUFFIXES[image_format])


class RunEncoder:
    """The encoder recorded for a run's features, built on first use and kept."""

    def __init__(self, record: dict[str, Any] | None, dim: int) -> None:
        self.record = record
        self.dim = dim
        self._encoder: ImageEncoder | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str | None:
        return None if self.record is None else str(self.record["name"])

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """(F, D) float32 features of decoded images, as ``jifr features extract`` computes them."""
        encoder = self.encoder()
        with torch.inference_mode():
            values = encoder.encode(torch.stack([encoder.preprocess(image) for image in images])).numpy()
        if values.shape != (len(images), self.dim) or not np.isfinite(values).all():
            raise NewItemInvalid(f"the encoder gave {values.shape} features, not all finite; expected {self.dim} each")
        return values

    def encoder(self) -> ImageEncoder:
        """The run's encoder; NewItemConflict when none is recorded or it cannot be had here."""
        if self.record is None:
            raise NewItemConflict(
                "this run's frame features were not made by `jifr features extract` (its prepared data "
                "records no encoder; synthetic features, for one), so a new item's images cannot be encoded "
                "like them: send the frames' precomputed features instead"
            )
        with self._lock:
            if self._encoder is None:
                self._encoder = self._build(self.record)
        return self._encoder

    def _build(self, record: dict[str, Any]) -> ImageEncoder:
        name, expected = str(record["name"]), record.get("weights_sha256")
        try:
            encoder = build_encoder(name)
        except (EncoderUnavailableError, ValueError) as exc:
            raise NewItemConflict(f"the run's encoder {name!r} cannot be built here: {exc}") from None
        if encoder.dim != self.dim:
            raise NewItemConflict(
                f"the run's encoder {name!r} gives {encoder.dim} values, its features have {self.dim}"
            )
        if expected is not None and encoder_record(encoder)["weights_sha256"] != expected:
            raise NewItemConflict(
                f"the weights of {name!r} here ({encoder.weights}) differ from the ones that encoded the run's "
                "frames (SHA-256): a new item's features would not be comparable"
            )
        return encoder
