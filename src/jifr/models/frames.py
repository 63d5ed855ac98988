"""Torch access to item->frame CSR and frame features: gathers, padding and masks."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepared import ItemFrames

ITEM_CHUNK = 2048
FRAME_CHUNK = 16384
# A training step reads its frames from a float32 copy of all features kept in memory where the
# copy takes at most this much (2 GB for the paper-scale set's 127,040 x 4,096 frames); larger
# feature sets are read from their memory map at every step.
RESIDENT_LIMIT_BYTES = int(os.environ.get("JIFR_RESIDENT_FEATURES_MB", "4096")) * 2**20


class FrameStore:
    """Batched views of the frames of items. Features stay where they are (often a memmap);
    only the rows a batch needs are read and converted to float32.
    """

    def __init__(self, frames: ItemFrames) -> None:
        self.frames = frames
        self.indptr = torch.as_tensor(frames.indptr, dtype=torch.long)
        self.counts = self.indptr[1:] - self.indptr[:-1]
        self.dim = int(frames.features.shape[1])
        self._in_memory = isinstance(frames.features, np.ndarray) and not isinstance(frames.features, np.memmap)
        self._scratch = torch.empty(0, self.dim)  # training_features' reused buffer
        self._resident: Tensor | None = None  # training_features' source, ItemFrames.float32_in_memory

    @property
    def n_frames(self) -> int:
        return int(self.indptr[-1])

    def features(self, rows: Tensor) -> Tensor:
        """(F, D) float32 features of frame ``rows`` (F,)."""
        index = rows.numpy()
        if not self._in_memory:
            # Reading a memmap in increasing row order touches each page once.
            order = np.argsort(index, kind="stable")
            block = np.empty((len(index), self.dim), dtype=np.float32)
            block[order] = self.frames.features[index[order]]
            return torch.from_numpy(block)
        return torch.from_numpy(np.asarray(self.frames.features[index], dtype=np.float32))

    def training_features(self, rows: Tensor) -> Tensor:
        """``features(rows)`` for a training step's single read, faster and with the same values:
        gathered from the float32 copy of every feature kept in memory (``ItemFrames.float32_in_memory``,
        made by the first call where it fits ``RESIDENT_LIMIT_BYTES``) into a buffer that the
        next call overwrites. The step's graph, which holds the result, is freed before the next
        step reads; autograd refuses a backward through a result that a later read overwrote."""
        if self.n_frames * self.dim * 4 > RESIDENT_LIMIT_BYTES:
            return self.features(rows)
        if self._resident is None:
            with warnings.catch_warnings():  # a read-only array is fine: it is only ever read from
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                self._resident = torch.from_numpy(self.frames.float32_in_memory())
        if len(self._scratch) < len(rows):  # grown with headroom: steps differ in their frame counts
            self._scratch = torch.empty(len(rows) + len(rows) // 4, self.dim)
        out = self._scratch[: len(rows)]
        return torch.index_select(self._resident, 0, rows, out=out)

    def padded_frames(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(B, F_max) frame rows of ``items`` (B,) and the (B, F_max) mask of real frames."""
        counts = self.counts[items]
        width = int(counts.max()) if len(items) else 0
        slots = torch.arange(width)
        mask = slots[None, :] < counts[:, None]
        rows = torch.where(mask, self.indptr[items][:, None] + slots[None, :], 0)
        return rows, mask

    def item_means(self) -> Tensor:
        """(n_items, D) mean feature of each item's frames, read one chunk of items at a time."""
        means = []
        for chunk in self.item_chunks():
            first, last = int(self.indptr[chunk[0]]), int(self.indptr[chunk[-1] + 1])
            block = np.asarray(self.frames.features[first:last], dtype=np.float32)
            offsets = (self.indptr[chunk] - first).numpy()
            means.append(torch.from_numpy(np.add.reduceat(block, offsets, axis=0)) / self.counts[chunk, None])
        return torch.cat(means) if means else torch.zeros(0, self.dim)

    def frame_blocks(self) -> list[Tensor]:
        """Consecutive blocks of frame rows covering every frame in order."""
        return [torch.arange(s, min(s + FRAME_CHUNK, self.n_frames)) for s in range(0, self.n_frames, FRAME_CHUNK)]

    def item_chunks(self) -> list[Tensor]:
        n_items = len(self.counts)
        return [torch.arange(s, min(s + ITEM_CHUNK, n_items)) for s in range(0, n_items, ITEM_CHUNK)]


def frame_mask(counts: Tensor) -> Tensor:
    """(n, F_max) mask of real frames of items with ``counts`` (n,) frames each, frames laid out
    item after item (the layout of ``FrameStore.padded_frames``)."""
    width = int(counts.max()) if len(counts) else 0
    return torch.arange(width)[None, :] < counts[:, None]


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

    Padding plus masks (rather than index_add) keeps training bit-for-bit reproducible on CPU.
    """
    out = values.new_zeros(*mask.shape, values.shape[-1])
    return out.masked_scatter(mask[..., None], values)
