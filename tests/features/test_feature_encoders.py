"""The encoders: real ImageNet weights (known photos are recognised), shapes, preprocessing."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn

from jifr.features import (
    DEFAULT_ENCODER,
    ENCODERS,
    EncoderUnavailableError,
    ImageEncoder,
    build_encoder,
)
from jifr.features.encoders import EfficientNetLite0Encoder
from jifr.features.images import load_rgb, to_rgb

# ImageNet class indices (0-based, the standard synset order).
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
TRIPOD = 872
ROCKETS = {657, 744, 812}  # missile, projectile, space shuttle


def top_classes(encoder: ImageEncoder, path: Path, k: int) -> list[int]:
    logits = encoder.classify(encoder.preprocess(load_rgb(path))[None])
    return logits[0].topk(k).indices.tolist()


def test_default_encoder_is_registered_efficientnet_lite0(lite0: ImageEncoder) -> None:
    assert DEFAULT_ENCODER == "efficientnet-lite0"
    assert set(ENCODERS) == {"efficientnet-lite0", "vgg19-fc7"}
    assert isinstance(lite0, ImageEncoder)
    assert (lite0.name, lite0.dim) == ("efficientnet-lite0", 1280)


def test_unknown_encoder_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="efficientnet-lite0, vgg19-fc7"):
        build_encoder("resnet-9000")


def test_the_cat_is_a_cat(lite0: ImageEncoder, photo_dir: Path) -> None:
    top3 = top_classes(lite0, photo_dir / "chelsea.jpg", k=3)
    assert top3[0] in CATS
    assert set(top3) <= CATS  # tabby, tiger cat and Egyptian cat share the top 3


def test_the_coffee_is_espresso(lite0: ImageEncoder, photo_dir: Path) -> None:
    probabilities = lite0.classify(lite0.preprocess(load_rgb(photo_dir / "coffee.jpg"))[None])
    probabilities = probabilities.softmax(dim=1)[0]
    assert int(probabilities.argmax()) == ESPRESSO
    assert float(probabilities[ESPRESSO]) > 0.5


def test_the_grayscale_cameraman_stands_behind_a_tripod(lite0: ImageEncoder, photo_dir: Path) -> None:
    assert top_classes(lite0, photo_dir / "camera.png", k=1) == [TRIPOD]


def test_the_rocket_is_a_missile_or_shuttle(lite0: ImageEncoder, photo_dir: Path) -> None:
    assert ROCKETS & set(top_classes(lite0, photo_dir / "rocket.jpeg", k=5))


def test_features_are_what_the_packaged_classifier_pools(lite0: EfficientNetLite0Encoder, photo_dir: Path) -> None:
    """classify = fc(encode(x)) agrees with the package's own forward pass."""
    batch = torch.stack([lite0.preprocess(load_rgb(photo_dir / n)) for n in ("chelsea.jpg", "coffee.jpg")])
    features = lite0.encode(batch)
    assert features.shape == (2, 1280)
    assert features.dtype == torch.float32
    with torch.inference_mode():
        reference = lite0.model(batch.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(lite0.classify(batch), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1), (10, 20, 30)),
        Image.new("L", (500, 20), 128),
        Image.new("P", (33, 77)),
        Image.new("RGBA", (64, 48), (0, 0, 0, 0)),
        Image.new("I;16", (40, 40), 65535),
        Image.new("CMYK", (30, 30), (0, 0, 0, 0)),
    ],
    ids=["1px", "wide-gray", "palette", "rgba", "16-bit", "cmyk"],
)
def test_preprocess_any_mode_and_size(lite0: ImageEncoder, image: Image.Image) -> None:
    first, second = lite0.preprocess(image), lite0.preprocess(image)
    assert first.shape == (3, 224, 224)
    assert first.dtype == torch.float32
    assert torch.equal(first, second)


def test_transparency_is_composited_over_white() -> None:
    clear_black = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.all(np.asarray(to_rgb(clear_black)) == 255)
    white_16_bit = Image.new("I;16", (4, 4), 65535)
    assert np.all(np.asarray(to_rgb(white_16_bit)) == 255)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderUnavailableError, match="weights file not found"):
        EfficientNetLite0Encoder(weights_path=tmp_path / "nope.pth")


def test_vgg19_without_torchvision_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(EncoderUnavailableError, match="pip install torchvision"):
        build_encoder("vgg19-fc7")


def tiny_vgg(weights: object = None) -> nn.Module:
    """A VGG-shaped stand-in (features, avgpool, 7-layer classifier) with 16-d 'fc7'."""
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(32))
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(
        nn.Linear(4 * 49, 16),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(16, 1000),
    )
    return model


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Install a fake `torchvision.models` and an empty torch hub cache; returns the hub dir."""
    url = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    weights = types.SimpleNamespace(IMAGENET1K_V1=types.SimpleNamespace(url=url))
    models = types.ModuleType("torchvision.models")
    models.vgg19 = tiny_vgg  # type: ignore[attr-defined]
    models.VGG19_Weights = weights  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_vgg19_never_downloads_unless_allowed(fake_torchvision: Path) -> None:
    with pytest.raises(EncoderUnavailableError, match="--weights-path") as error:
        build_encoder("vgg19-fc7")
    assert str(fake_torchvision / "checkpoints" / "vgg19-dcbb9e9d.pth") in str(error.value)


def test_vgg19_reads_explicit_or_cached_weights(fake_torchvision: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = tiny_vgg().state_dict()
    explicit = tmp_path / "my-vgg19.pth"
    torch.save(state, explicit)
    cached = fake_torchvision / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    image = Image.fromarray(data.chelsea())
    for encoder in (build_encoder("vgg19-fc7", weights_path=explicit), build_encoder("vgg19-fc7")):
        batch = encoder.preprocess(image)[None]
        assert encoder.dim == 16
        assert encoder.encode(batch).shape == (1, 16)
        assert encoder.classify(batch).shape == (1, 1000)
    assert build_encoder("vgg19-fc7").weights == str(cached)
