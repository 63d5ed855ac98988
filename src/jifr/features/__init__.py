"""Image encoders and feature extraction into the frame-feature store (docs/format.md).

from jifr.features import extract_features, images_from_directory

result = extract_features(images_from_directory(Path("posters")), Path("out"))
result.n_written, result.images_per_second
"""

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
