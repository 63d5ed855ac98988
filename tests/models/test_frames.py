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
from jifr.models.frames import frame_product, has_onednn_linear, project_frames

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
