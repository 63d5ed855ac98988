"""Torch access to item->frame CSR and frame features: gathers, padding and masks."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepared import ItemFrames
from jifr.device import CPU, product_dtype, reused_memory

ITEM_CHUNK = 2048
FRAME_CHUNK = 16384
PRODUCT_ROWS = 8192  # frames per block of project_frames' forward product with MKL
TRANSPOSE_FRAMES = 4096  # frames per block of the oneDNN weight gradient's transposed copy
# The frames' float32 product on the CPU (project_frames, project_frames_through): "onednn",
# torch's oneDNN matrix product (faster for these shapes), or "mkl", torch's default one (the bits
# of jifr before the oneDNN product).
FRAME_PRODUCTS = ("onednn", "mkl")
# A training step reads its frames from a float32 copy of all features kept in memory where the
# copy takes at most this much (2 GB for the paper-scale set's 127,040 x 4,096 frames); larger
# feature sets are read from their memory map at every step.
RESIDENT_LIMIT_BYTES = int(os.environ.get("JIFR_RESIDENT_FEATURES_MB", "4096")) * 2**20


class FrameStore:
    """Batched views of the frames of items. Features stay where they are (often a memmap);
    only the rows a batch needs are read, converted to float32 and put on the store's device
    (``to``, with the model: ``Recommender.place``).
    """

    def __init__(self, frames: ItemFrames, device: torch.device = CPU) -> None:
        self.frames = frames
        self.device = device
        self.indptr = torch.as_tensor(frames.indptr, dtype=torch.long, device=device)
        self.counts = self.indptr[1:] - self.indptr[:-1]
        self.dim = int(frames.features.shape[1])
        self._in_memory = isinstance(frames.features, np.ndarray) and not isinstance(frames.features, np.memmap)
        self._scratch: Tensor | None = None  # training_features' reused buffer (flat)
        self._resident: Tensor | None = None  # training_features' source: every feature, on the device

    def to(self, device: torch.device) -> FrameStore:
        """Move the item->frame index to ``device``; reads then land there (the features stay
        where they are until a training step keeps a copy there, ``training_features``)."""
        if device != self.device:
            self.device = device
            self.indptr, self.counts = self.indptr.to(device), self.counts.to(device)
            self._scratch, self._resident = None, None
        return self

    @property
    def n_frames(self) -> int:
        return int(self.indptr[-1])

    def features(self, rows: Tensor, into: Tensor | None = None) -> Tensor:
        """(F, D) float32 features of frame ``rows`` (F,), on the store's device, not to be
        written to. From the float32 copy training keeps, where there is one (the same values);
        consecutive rows (a chunk of items' frames) as one slice: of that copy without a copy,
        or of the features converted in one pass. Where the features are copied, they are
        copied into the first F rows of ``into`` (a float32 (>= F, D) buffer on the device,
        ``chunk_buffer``) where one is given: a caller reading chunk after chunk reuses memory
        whose pages are already there."""
        resident = self._resident if self._resident is not None and self._resident.dtype == torch.float32 else None
        index = rows.cpu().numpy()
        span = _consecutive(index)
        if span is not None and resident is not None:
            return resident[span]
        out = into[: len(index)] if into is not None else torch.empty(len(index), self.dim, device=self.device)
        if span is not None:
            return out.copy_(_tensor(self.frames.features[span]))  # converted by torch, in parallel
        if resident is not None:
            return torch.index_select(resident, 0, rows.to(self.device), out=out)
        if not self._in_memory:
            # Reading a memmap in increasing row order touches each page once.
            order = np.argsort(index, kind="stable")
            block = np.empty((len(index), self.dim), dtype=np.float32)
            block[order] = self.frames.features[index[order]]
            return out.copy_(torch.from_numpy(block))
        return out.copy_(_tensor(self.frames.features[index]))

    def chunk_buffer(self, device: torch.device | None = None) -> Tensor:
        """A float32 buffer, on ``device`` (the store's by default), for ``features(..., into=)``:
        it holds the frames of any chunk of ``item_chunks``."""
        frames = [int(self.indptr[chunk[-1] + 1] - self.indptr[chunk[0]]) for chunk in self.item_chunks()]
        return torch.empty(max(frames, default=0), self.dim, device=device or self.device)

    def training_features(self, rows: Tensor) -> Tensor:
        """``features(rows)`` for a training step's single read, faster and with the same values:
        gathered from a copy of every feature kept on the device (float32, or bfloat16 in a step
        whose products run in bfloat16, ``jifr.device.autocast``; made by the first call where it
        fits ``RESIDENT_LIMIT_BYTES``) into a buffer that the next call overwrites. The step's
        graph, which holds the result, is freed before the next step reads; autograd refuses a
        backward through a result that a later read overwrote."""
        dtype = product_dtype(self.device)
        if self.n_frames * self.dim * 4 > RESIDENT_LIMIT_BYTES:
            return self.features(rows).to(dtype)
        if self._resident is None or self._resident.dtype != dtype:
            self._resident = None  # one copy at a time
            self._resident = self._resident_copy(dtype)
        size = len(rows) * self.dim
        self._scratch = reused_memory(self._scratch, size, dtype, self.device, headroom=0.25)
        out = self._scratch[:size].view(len(rows), self.dim)
        return torch.index_select(self._resident, 0, rows, out=out)

    def _resident_copy(self, dtype: torch.dtype) -> Tensor:
        """Every feature as ``dtype`` on the device: float32 from ``ItemFrames.float32_in_memory``
        (kept with the frames), other types converted block by block from the features as stored."""
        if dtype == torch.float32:
            return _tensor(self.frames.float32_in_memory()).to(self.device)
        copy = torch.empty(self.n_frames, self.dim, dtype=dtype, device=self.device)
        for start in range(0, self.n_frames, FRAME_CHUNK):
            block = np.asarray(self.frames.features[start : start + FRAME_CHUNK], dtype=np.float32)
            copy[start : start + len(block)] = torch.from_numpy(block).to(self.device, dtype)
        return copy

    def padded_frames(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(B, F_max) frame rows of ``items`` (B,) and the (B, F_max) mask of real frames."""
        counts = self.counts[items]
        width = int(counts.max()) if len(items) else 0
        slots = torch.arange(width, device=counts.device)
        mask = slots[None, :] < counts[:, None]
        rows = torch.where(mask, self.indptr[items][:, None] + slots[None, :], 0)
        return rows, mask

    def item_means(self) -> Tensor:
        """(n_items, D) mean feature of each item's frames, read one chunk of items at a time."""
        from jifr.models.frame_sums import item_sums  # compiled (or loaded from numba's cache) on first use

        means, buffer = [], self.chunk_buffer(CPU)  # each chunk's features, in memory reused
        indptr = self.frames.indptr
        for chunk in self.item_chunks():
            first, last = int(indptr[int(chunk[0])]), int(indptr[int(chunk[-1]) + 1])
            block = buffer[: last - first].copy_(_tensor(self.frames.features[first:last])).numpy()
            items = chunk.cpu().numpy()
            summed = np.empty((len(items), self.dim), dtype=np.float32)
            item_sums(block, indptr[items] - first, indptr[items + 1] - indptr[items], summed)  # reduceat's bits
            means.append(torch.from_numpy(summed).to(self.device) / self.counts[chunk, None])
        return torch.cat(means) if means else torch.zeros(0, self.dim, device=self.device)

    def frame_blocks(self) -> list[Tensor]:
        """Consecutive blocks of frame rows covering every frame in order."""
        n = self.n_frames
        return [torch.arange(s, min(s + FRAME_CHUNK, n), device=self.device) for s in range(0, n, FRAME_CHUNK)]

    def item_chunks(self) -> list[Tensor]:
        n_items = len(self.counts)
        chunks = range(0, n_items, ITEM_CHUNK)
        return [torch.arange(s, min(s + ITEM_CHUNK, n_items), device=self.device) for s in chunks]


def _tensor(array: np.ndarray) -> Tensor:
    """``array`` as a CPU tensor without a copy, read-only arrays (a memory map's) included:
    only ever read from."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(array))


def _consecutive(index: np.ndarray) -> slice | None:
    """The slice ``index`` (rows) covers where it is two or more consecutive rows in order."""
    if len(index) < 2 or index[-1] - index[0] != len(index) - 1 or not (np.diff(index) == 1).all():
        return None
    return slice(int(index[0]), int(index[-1]) + 1)


def frame_mask(counts: Tensor) -> Tensor:
    """(n, F_max) mask of real frames of items with ``counts`` (n,) frames each, frames laid out
    item after item (the layout of ``FrameStore.padded_frames``)."""
    width = int(counts.max()) if len(counts) else 0
    return torch.arange(width, device=counts.device)[None, :] < counts[:, None]


def frame_means(values: Tensor, counts: Tensor) -> Tensor:
    """(n, d) mean of ``values`` (L, d), rows of frames laid out item after item, over each of n
    items with ``counts`` (n,) frames (each >= 1)."""
    mask = frame_mask(counts)
    return scatter_rows(values, mask).sum(1) / counts[:, None].to(values.dtype)


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis of (B, F) ``logits`` restricted to ``mask`` (eq. 7)."""
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def scatter_rows(values: Tensor, mask: Tensor) -> Tensor:
    """(B, F, d) tensor holding ``values`` (n, d) at the True cells of ``mask`` (B, F), zeros elsewhere.

    Each cell is written once (``index_copy``), and its backward reads each cell once
    (``index_select``), so training stays bit-for-bit reproducible on CPU, unlike a scatter that
    adds; it is also many times faster than ``masked_scatter``, whose backward selects through
    a broadcast mask. Where every cell is True (items with equally many frames) ``values``
    are already in the cells' order: the result is ``values`` reshaped, a view where the
    strides allow, with the same values and gradients and no copy either way.
    """
    if bool(mask.all()):
        return values.reshape(*mask.shape, values.shape[-1])
    cells = mask.flatten().nonzero().squeeze(1)
    out = values.new_zeros(mask.numel(), values.shape[-1]).index_copy(0, cells, values)
    return out.view(*mask.shape, values.shape[-1])


def project_frames(features: Tensor, *weights: Tensor) -> tuple[Tensor, ...]:
    """``F.linear(features, w)`` for each of ``weights`` (d_k, D), of many frames (F, D), in one
    product with the weights stacked, where the weights' gradients are the ones that count (JIFR's
    features are constants). The outputs are column blocks of that one product, and their
    gradients are gathered into one for the weights' gradient: no zero-filled gradient per block
    to sum. On the CPU in float32 it runs in oneDNN,
    1.2-1.35x faster than ``F.linear``'s MKL product for these shapes on the 2-core machine
    (512-74,500 frames of 1,280 or 4,096 features by 64 outputs, forward and weight gradient), with
    float32's precision in another order of sums. ``JIFR_FRAME_PRODUCT=mkl`` keeps the MKL product
    (``F.linear``'s bits, in blocks of ``PRODUCT_ROWS`` frames): the values of jifr before the
    oneDNN product, which the README's trained figures were measured with. Anything else (a GPU,
    bf16 autocast) is ``F.linear`` of the stacked weights."""
    if not _cpu_float32(features):
        stacked = weights[0] if len(weights) == 1 else torch.cat(weights)
        return _column_blocks(torch.nn.functional.linear(features, stacked), weights)
    return _FrameProduct.apply(features, frame_product() == "onednn", *weights)


def project_frames_through(layer: torch.nn.Linear, features: Tensor) -> Tensor:
    """``layer(features)`` of many frames (F, D) whose features are constants, as ACF's E and
    CDL's first image layer read them: the weights' gradient is the one that counts. On the CPU
    in float32 outside autocast it runs ``project_frames``' oneDNN product (its bias added after),
    the faster one for these shapes; with ``JIFR_FRAME_PRODUCT=mkl``, on a GPU or under bf16
    autocast it is ``layer`` itself, with its bits (jifr's before these models used oneDNN)."""
    if not (_cpu_float32(features) and frame_product() == "onednn"):
        return layer(features)
    (product,) = _FrameProduct.apply(features, True, layer.weight)
    return product if layer.bias is None else product + layer.bias


def _cpu_float32(features: Tensor) -> bool:
    """Whether a product of ``features`` runs in float32 on the CPU (outside autocast), where the
    frame product (``frame_product``) is jifr's choice rather than ``F.linear``'s."""
    on_cpu = features.device.type == "cpu" and features.dtype == torch.float32
    return on_cpu and not torch.is_autocast_enabled("cpu")


def _column_blocks(product: Tensor, weights: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``product`` (F, sum of d_k) as one (F, d_k) view per weight matrix, in order."""
    return tuple(product.split([len(w) for w in weights], dim=1))


def frame_product() -> str:
    """The CPU float32 product of ``project_frames`` and ``project_frames_through``:
    ``JIFR_FRAME_PRODUCT`` (onednn by default; mkl where this torch has no oneDNN linear).
    ValueError for a value that is neither."""
    chosen = os.environ.get("JIFR_FRAME_PRODUCT", "onednn").strip().lower()
    if chosen not in FRAME_PRODUCTS:
        raise ValueError(f"JIFR_FRAME_PRODUCT must be one of {', '.join(FRAME_PRODUCTS)}, got {chosen!r}")
    return chosen if chosen == "mkl" or has_onednn_linear() else "mkl"


def has_onednn_linear() -> bool:
    """Whether this torch runs a float32 linear on dense CPU tensors in oneDNN."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(inputs: Tensor, weights: Tensor) -> Tensor:
    """``inputs @ weights.T`` (n, k) x (m, k) in oneDNN (float32 on the CPU, where
    ``has_onednn_linear``); ``weights`` may be a transposed view."""
    if inputs.shape[0] == 0 or weights.shape[0] == 0 or inputs.shape[1] == 0:
        return inputs.new_zeros(inputs.shape[0], weights.shape[0])
    return torch.ops.mkldnn._linear_pointwise(inputs.contiguous(), weights, None, "none", [], "")


_TRANSPOSE_SCRATCH = threading.local()  # one buffer per thread: a backward runs on one thread


def _joined_transpose(grads: tuple[Tensor, ...]) -> Tensor:
    """The blocks' gradients (F, d_k) joined into one (sum of d_k, F) matrix, grad^T, as the
    weights' gradient product reads it: copied ``TRANSPOSE_FRAMES`` frames at a time (each
    block read while in cache), into memory this thread reuses from one backward to the next
    (its pages already there; the product has read it before the call returns). The same
    values as ``torch.cat([grad.T for grad in grads])``, in about half the time."""
    n_frames, n_rows = grads[0].shape[0], sum(grad.shape[1] for grad in grads)
    size = n_frames * n_rows
    buffer = getattr(_TRANSPOSE_SCRATCH, "buffer", None)
    _TRANSPOSE_SCRATCH.buffer = buffer = reused_memory(buffer, size, grads[0].dtype, grads[0].device, headroom=0.25)
    joined = buffer[:size].view(n_rows, n_frames)
    row = 0
    for grad in grads:
        for start in range(0, n_frames, TRANSPOSE_FRAMES):
            block = slice(start, start + TRANSPOSE_FRAMES)
            joined[row : row + grad.shape[1], block].copy_(grad[block].T)
        row += grad.shape[1]
    return joined


class _FrameProduct(torch.autograd.Function):
    """``project_frames``' product and its backward. In oneDNN: features @ weights^T, and the
    weights' gradient grad^T @ features with the features read through a transposed view (no
    copy), grad^T joined directly from the blocks' gradients (``_joined_transpose``). With MKL: forward in blocks of
    ``PRODUCT_ROWS`` frames and the weights' gradient as (features^T grad)^T, which MKL runs faster
    for this shape than ``F.linear``, with its bits (``tests/models/test_frames.py``)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features: Tensor, onednn: bool, *weights: Tensor) -> Any:
        stacked = torch.cat(weights) if len(weights) > 1 else weights[0].contiguous()
        ctx.save_for_backward(features, stacked)
        ctx.onednn = onednn  # type: ignore[attr-defined]
        ctx.sizes = [len(w) for w in weights]  # type: ignore[attr-defined]
        if onednn:
            product = onednn_linear(features, stacked)
        else:
            blocks = [torch.nn.functional.linear(block, stacked) for block in features.split(PRODUCT_ROWS)]
            product = torch.cat(blocks) if blocks else features.new_zeros(0, stacked.shape[0])
        return _column_blocks(product, weights)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, *grads: Tensor) -> Any:
        features, stacked = ctx.saved_tensors  # type: ignore[attr-defined]
        sizes: list[int] = ctx.sizes  # type: ignore[attr-defined]
        grad_features, weight_grads = None, (None,) * len(sizes)
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_features = torch.cat(grads, dim=1) @ stacked
        if any(ctx.needs_input_grad[2:]):  # type: ignore[attr-defined]
            if ctx.onednn:  # type: ignore[attr-defined]
                grad_weights = onednn_linear(_joined_transpose(grads), features.T)
            else:
                grad_weights = (features.T @ torch.cat(grads, dim=1)).T
            weight_grads = grad_weights.split(sizes)
        return (grad_features, None, *weight_grads)
