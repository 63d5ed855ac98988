"""Names of the image encoders, importable without torch so that the command line starts fast.

``jifr.features.encoders.ENCODERS`` registers an encoder under each of these names.
"""

from __future__ import annotations

DEFAULT_ENCODER = "efficientnet-lite0"
ENCODER_NAMES = ("efficientnet-lite0", "vgg19-fc7")
