"""Image encoders and feature extraction into the frame-feature store (docs/format.md).

from jifr.features import extract_features, images_from_directory

result = extract_features(images_from_directory(Path("posters")), Path("out"))
result.n_written, result.images_per_second

The names below are imported on first use, so that importing a light submodule (the command
line's ``jifr.features.cli``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jifr.features.encoders import (
        DEFAULT_ENCODER,
        ENCODERS,
        EncoderUnavailableError,
        ImageEncoder,
        build_encoder,
    )
    from jifr.features.extract import BadImage, BadImagesError, ExtractResult, extract_features
    from jifr.features.inputs import images_from_directory, images_from_item_frames, images_from_path
    from jifr.features.store import ExtractProgress

_HOME = {
    "DEFAULT_ENCODER": "jifr.features.encoders",
    "ENCODERS": "jifr.features.encoders",
    "EncoderUnavailableError": "jifr.features.encoders",
    "ImageEncoder": "jifr.features.encoders",
    "build_encoder": "jifr.features.encoders",
    "BadImage": "jifr.features.extract",
    "BadImagesError": "jifr.features.extract",
    "ExtractResult": "jifr.features.extract",
    "extract_features": "jifr.features.extract",
    "images_from_directory": "jifr.features.inputs",
    "images_from_item_frames": "jifr.features.inputs",
    "images_from_path": "jifr.features.inputs",
    "ExtractProgress": "jifr.features.store",
}

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "BadImage",
    "BadImagesError",
    "EncoderUnavailableError",
    "ExtractProgress",
    "ExtractResult",
    "ImageEncoder",
    "build_encoder",
    "extract_features",
    "images_from_directory",
    "images_from_item_frames",
    "images_from_path",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
