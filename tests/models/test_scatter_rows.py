"""``scatter_rows``: the frames' rows of a batch laid out as (items, frame slots), with zeros in the
slots of items that have fewer frames. With every slot filled, the rows are already in that
order and the result is a view of them: the same values and gradients, and nothing copied."""

from __future__ import annotations

import torch
from torch import Tensor

from jifr.models.frames import scatter_rows


def by_hand(values: Tensor, mask: Tensor) -> Tensor:
    """The expected layout, cell by cell in row-major order of ``mask``'s True cells."""
    out = torch.zeros(*mask.shape, values.shape[-1], dtype=values.dtype)
    k = 0
    for b in range(mask.shape[0]):
        for f in range(mask.shape[1]):
            if mask[b, f]:
                out[b, f] = values[k]
                k += 1
    return out


def test_partial_rows_are_padded_with_zeros_and_their_gradient_is_read_once() -> None:
    mask = torch.tensor([[True, True, True], [True, False, False], [True, True, False]])
    values = torch.arange(6 * 2, dtype=torch.float32).view(6, 2).requires_grad_()
    upstream = torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(0))

    out = scatter_rows(values, mask)
    (out * upstream).sum().backward()

    assert torch.equal(out.detach(), by_hand(values.detach(), mask))
    assert torch.equal(values.grad, upstream[mask])  # type: ignore[arg-type]


def test_full_rows_are_a_view_of_a_column_block_with_the_same_values_and_gradients() -> None:
    # As JIFR passes them: the P c_k columns of the one (frames, 4) product, a strided view.
    generator = torch.Generator().manual_seed(1)
    product = torch.randn(4 * 3, 4, generator=generator).requires_grad_()
    block = product[:, :2]
    mask = torch.ones(4, 3, dtype=torch.bool)
    upstream = torch.randn(4, 3, 2, generator=generator)

    out = scatter_rows(block, mask)
    (out * upstream).sum().backward()

    assert out.data_ptr() == block.data_ptr()  # nothing copied
    assert torch.equal(out.detach(), by_hand(block.detach(), mask))
    expected_grad = torch.zeros(12, 4)
    expected_grad[:, :2] = upstream.reshape(12, 2)
    assert torch.equal(product.grad, expected_grad)  # type: ignore[arg-type]


def test_no_items_give_an_empty_layout() -> None:
    out = scatter_rows(torch.zeros(0, 5), torch.zeros(0, 3, dtype=torch.bool))
    assert out.shape == (0, 3, 5)
