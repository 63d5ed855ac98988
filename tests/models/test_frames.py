"""``project_frames``: JIFR's product of many frames with [P; W0], in blocks and with its weight
gradient transposed, has ``F.linear``'s values and gradients bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jifr.models import frames
from jifr.models.frames import project_frames


@pytest.mark.parametrize("n_frames", [0, 1, 37, frames.PRODUCT_ROWS, 2 * frames.PRODUCT_ROWS + 1234])
def test_project_frames_has_linears_bits_forward_and_backward(n_frames: int) -> None:
    generator = torch.Generator().manual_seed(n_frames)
    features = torch.randn(n_frames, 512, generator=generator)
    weights = torch.randn(64, 512, generator=generator)
    upstream = torch.randn(n_frames, 64, generator=generator)
    results = []
    for product in (F.linear, project_frames):
        w = weights.clone().requires_grad_()
        x = features.clone().requires_grad_()
        out = product(x, w)
        (out * upstream).sum().backward()
        results.append((out.detach(), w.grad, x.grad))
    (expected, expected_w, expected_x), (got, got_w, got_x) = results
    assert got.shape == (n_frames, 64)
    assert torch.equal(got, expected) and torch.equal(got_x, expected_x)  # type: ignore[arg-type]
    assert torch.equal(got_w, expected_w)  # type: ignore[arg-type]


def test_project_frames_under_bf16_autocast_is_linear() -> None:
    features, weights = torch.randn(100, 64), torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = project_frames(features, weights), F.linear(features, weights)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
