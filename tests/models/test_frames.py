"""``project_frames``: JIFR's product of many frames with [P; W0]. With MKL (``JIFR_FRAME_PRODUCT=mkl``)
it has the values and gradients of ``F.linear`` with the weights stacked, bit for bit; with oneDNN
(the default) float32's precision: within a few roundings of the exact product, reproducible, and
the same on any number of threads."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.models import frames
from jifr.models.frames import (
    frame_product,
    has_onednn_linear,
    onednn_linear,
    project_frames,
    project_frames_through,
)

SIZES = [0, 1, 37, frames.PRODUCT_ROWS, 2 * frames.PRODUCT_ROWS + 1234]
PARTS = (40, 24)  # rows of the two weight matrices (JIFR's P and W0 have 32 each)


def stacked_linear(features: Tensor, *weights: Tensor) -> tuple[Tensor, ...]:
    """The reference: ``F.linear`` with the weights stacked, its output split back into parts."""
    return tuple(F.linear(features, torch.cat(weights)).split([len(w) for w in weights], dim=1))


def product_and_gradients(product: Callable[..., tuple[Tensor, ...]], n_frames: int) -> tuple[Tensor, Tensor, Tensor]:
    """``product``'s output for the weights in ``PARTS`` (joined), and the weights' and
    features' gradients, on seeded data."""
    generator = torch.Generator().manual_seed(n_frames)
    features = torch.randn(n_frames, 512, generator=generator).requires_grad_()
    weights = torch.randn(64, 512, generator=generator).requires_grad_()
    upstream = torch.randn(n_frames, 64, generator=generator)
    out = torch.cat(product(features, *weights.split(PARTS)), dim=1)
    (out * upstream).sum().backward()
    return out.detach(), weights.grad, features.grad  # type: ignore[return-value]


@pytest.mark.parametrize("n_frames", SIZES)
def test_mkl_product_has_linears_bits_forward_and_backward(n_frames: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "mkl")
    expected = product_and_gradients(stacked_linear, n_frames)
    got = product_and_gradients(project_frames, n_frames)
    assert got[0].shape == (n_frames, 64)
    for value, reference in zip(got, expected, strict=True):
        assert torch.equal(value, reference)


def test_onednn_is_the_default_product_in_the_pinned_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.13 has the oneDNN linear; losing it on an upgrade must show here, not as a slowdown."""
    monkeypatch.delenv("JIFR_FRAME_PRODUCT", raising=False)
    assert has_onednn_linear() and frame_product() == "onednn"


@pytest.mark.parametrize("n_frames", SIZES)
def test_onednn_product_is_within_float32_rounding_of_the_exact_one(
    n_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "onednn")
    out, weight_grad, feature_grad = product_and_gradients(project_frames, n_frames)
    generator = torch.Generator().manual_seed(n_frames)
    features = torch.randn(n_frames, 512, generator=generator).double()
    weights = torch.randn(64, 512, generator=generator).double()
    upstream = torch.randn(n_frames, 64, generator=generator).double()
    # Each value is a sum of products; float32 keeps it within ~1e-7 of the sum of their magnitudes
    # (bfloat16 would miss this by 10,000x); 1e-6 leaves room for any order of sums.
    checks = [
        (out, features @ weights.T, features.abs() @ weights.abs().T),
        (weight_grad, upstream.T @ features, upstream.abs().T @ features.abs()),
        (feature_grad, upstream @ weights, upstream.abs() @ weights.abs()),
    ]
    for got, exact, magnitude in checks:
        assert got.dtype == torch.float32 and got.shape == exact.shape
        assert ((got.double() - exact).abs() <= 1e-6 * magnitude).all()


def test_onednn_product_is_reproducible_and_thread_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "onednn")
    threads = torch.get_num_threads()
    runs = []
    try:
        for n_threads in (1, 2, 2):
            torch.set_num_threads(n_threads)
            runs.append(product_and_gradients(project_frames, 3 * frames.PRODUCT_ROWS + 5))
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for value, reference in zip(other, runs[0], strict=True):
            assert torch.equal(value, reference)


def test_a_torch_without_the_onednn_linear_falls_back_to_mkls_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIFR_FRAME_PRODUCT", raising=False)
    monkeypatch.setattr(frames, "has_onednn_linear", lambda: False)
    assert frame_product() == "mkl"
    expected = product_and_gradients(stacked_linear, 1234)
    for value, reference in zip(product_and_gradients(project_frames, 1234), expected, strict=True):
        assert torch.equal(value, reference)


def test_an_unknown_frame_product_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "blas")
    with pytest.raises(ValueError, match="JIFR_FRAME_PRODUCT must be one of onednn, mkl, got 'blas'"):
        project_frames(torch.randn(3, 8), torch.randn(2, 8))


def test_project_frames_under_bf16_autocast_is_linear() -> None:
    features, weights = torch.randn(100, 64), torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (got,), expected = project_frames(features, weights), F.linear(features, weights)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


@pytest.mark.parametrize("product", frames.FRAME_PRODUCTS)
def test_an_unused_part_gets_a_zero_gradient(product: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part of the output that the loss never reads gives its weights a gradient of zeros,
    and the other part's gradient is the one of its product alone."""
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", product)
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(300, 96, generator=generator)
    used, unused = torch.randn(8, 96, generator=generator), torch.randn(4, 96, generator=generator)
    used.requires_grad_(), unused.requires_grad_()
    upstream = torch.randn(300, 8, generator=generator)
    out, rest = project_frames(features, used, unused)
    assert out.shape == (300, 8) and rest.shape == (300, 4)
    (out * upstream).sum().backward()
    assert unused.grad is not None and torch.equal(unused.grad, torch.zeros(4, 96))
    exact, magnitude = upstream.double().T @ features.double(), upstream.abs().T @ features.abs()
    assert used.grad is not None and ((used.grad.double() - exact).abs() <= 1e-6 * magnitude).all()


@pytest.mark.parametrize("n_frames", [0, 5, frames.TRANSPOSE_FRAMES, 2 * frames.TRANSPOSE_FRAMES + 77])
def test_the_joined_transpose_of_the_gradients_is_their_transposed_concatenation(n_frames: int) -> None:
    generator = torch.Generator().manual_seed(n_frames)
    product = torch.randn(n_frames, 64, generator=generator)
    grads = tuple(product.split(PARTS, dim=1))  # column blocks, as the product's outputs are

    joined = frames._joined_transpose(grads)
    assert torch.equal(joined, torch.cat([grad.T for grad in grads]))

    # The next call reuses the memory and holds only its own values.
    smaller = tuple(torch.randn(n_frames // 2, 64, generator=generator).split(PARTS, dim=1))
    again = frames._joined_transpose(smaller)
    assert torch.equal(again, torch.cat([grad.T for grad in smaller]))
    if n_frames:
        assert again.data_ptr() == joined.data_ptr()


def layer_output_and_gradients(bias: bool, n_frames: int) -> tuple[torch.nn.Linear, Tensor, Tensor]:
    """A seeded (512 -> 24) layer and features of ``n_frames`` frames, and ``upstream`` for its output."""
    generator = torch.Generator().manual_seed(n_frames)
    layer = torch.nn.Linear(512, 24, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(24, 512, generator=generator))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(24, generator=generator))
    return layer, torch.randn(n_frames, 512, generator=generator), torch.randn(n_frames, 24, generator=generator)


def through(project: Callable[[torch.nn.Linear, Tensor], Tensor], bias: bool, n_frames: int) -> list[Tensor]:
    """The output of ``project`` (layer, features) and the layer's gradients."""
    layer, features, upstream = layer_output_and_gradients(bias, n_frames)
    out = project(layer, features)
    (out * upstream).sum().backward()
    return [out.detach()] + [parameter.grad for parameter in layer.parameters()]  # type: ignore[misc]


def plain_layer(layer: torch.nn.Linear, features: Tensor) -> Tensor:
    return layer(features)


@pytest.mark.parametrize("bias", [True, False])
def test_projecting_through_a_layer_with_mkl_is_the_layer_bit_for_bit(
    bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ACF's E and CDL's first image layer keep the bits they had before oneDNN with ``mkl``."""
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "mkl")
    got, expected = through(project_frames_through, bias, 3000), through(plain_layer, bias, 3000)
    assert len(got) == (3 if bias else 2)
    for value, reference in zip(got, expected, strict=True):
        assert torch.equal(value, reference)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_frames", [0, 1, 3000])
def test_projecting_through_a_layer_with_onednn_is_within_float32_rounding(
    bias: bool, n_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "onednn")
    calls: list[int] = []

    def counted(inputs: Tensor, weights: Tensor) -> Tensor:
        calls.append(len(inputs))
        return onednn_linear(inputs, weights)

    monkeypatch.setattr(frames, "onednn_linear", counted)
    got = through(project_frames_through, bias, n_frames)
    assert len(calls) == 2  # the forward product and the weight gradient's ran in oneDNN
    layer, features, upstream = layer_output_and_gradients(bias, n_frames)
    features, upstream, weight = features.double(), upstream.double(), layer.weight.detach().double()
    exact, magnitude = features @ weight.T, features.abs() @ weight.abs().T
    if layer.bias is not None:
        exact, magnitude = exact + layer.bias.detach().double(), magnitude + layer.bias.detach().double().abs()
    checks = [(got[0], exact, magnitude), (got[1], upstream.T @ features, upstream.abs().T @ features.abs())]
    if bias:
        checks.append((got[2], upstream.sum(0), upstream.abs().sum(0)))
    for value, reference, size in checks:
        assert value.dtype == torch.float32 and value.shape == reference.shape
        assert ((value.double() - reference).abs() <= 1e-6 * size).all()


def test_projecting_through_a_layer_under_bf16_autocast_is_the_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "onednn")
    layer, features, _ = layer_output_and_gradients(True, 100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = project_frames_through(layer, features), layer(features)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
