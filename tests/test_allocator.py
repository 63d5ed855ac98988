"""Freed memory kept for reuse while training: page faults counted on the running process."""

from __future__ import annotations

import resource
from typing import Any

import pytest
import torch

from jifr import allocator
from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs, build_model
from jifr.train import TrainConfig, fit

BLOCK_BYTES = 16 * 2**20  # above glibc's initial threshold, within the kept one
LARGER_BYTES = 24 * 2**20  # larger than any block freed within: malloc's free lists cannot serve it

needs_glibc = pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's: no glibc in this process")

ROUNDS = 8


def faults_per_round(size: int = BLOCK_BYTES, blocks: int = 5) -> list[int]:
    """Minor page faults of writing ``blocks`` blocks of ``size`` bytes, all freed and taken
    again, ``ROUNDS`` times, as a training step takes the blocks the step before it freed."""
    faults = []
    for _ in range(ROUNDS):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        taken = [torch.empty(size // 4).fill_(1.0) for _ in range(blocks)]
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del taken
    return faults


def reused(faults: list[int], size: int = BLOCK_BYTES) -> int:
    """Rounds whose blocks of ``size`` bytes came back without faulting in most of their pages."""
    return sum(count < size // 4096 // 10 for count in faults)


@needs_glibc
def test_a_freed_block_is_reused_within_the_block_and_mapped_afresh_after_it() -> None:
    with allocator.keep_freed_memory() as kept:
        assert kept and allocator.is_kept()
        inside = faults_per_round()
    assert not allocator.is_kept()
    after = faults_per_round(LARGER_BYTES)
    # Within: the heap grows in the first rounds, then serves the blocks again from pages in place
    # (glibc may do so on its own once its adjusting thresholds have risen: this pins the block's
    # settings, and the next assertion that they are put back).
    assert reused(inside) >= ROUNDS // 2, f"faults per round: {inside}"
    # After: glibc's initial threshold maps every such block afresh, and unmaps it when freed.
    assert reused(after, LARGER_BYTES) == 0, f"faults per round: {after}"


@needs_glibc
def test_nested_blocks_keep_the_settings_until_the_outermost_ends() -> None:
    with allocator.keep_freed_memory():
        with allocator.keep_freed_memory() as inner:
            assert inner
        assert allocator.is_kept()
        assert reused(faults_per_round()) >= ROUNDS // 2
    assert not allocator.is_kept()
    assert reused(faults_per_round(LARGER_BYTES), LARGER_BYTES) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JIFR_KEEP_FREED_MEMORY", "0"),
        ("MALLOC_TRIM_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536"),
    ],
)
def test_the_environment_turns_it_off_or_sets_malloc_itself(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with allocator.keep_freed_memory() as kept:
        assert not kept and not allocator.is_kept()


@needs_glibc
def test_fit_trains_with_freed_memory_kept_and_puts_the_settings_back(tiny: PreparedData) -> None:
    seen: list[bool] = []

    def note(record: dict[str, Any]) -> None:
        seen.append(allocator.is_kept())

    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    fit(model, tiny, TrainConfig(epochs=2, batch_size=256), show_progress=False, callbacks=[note])
    assert seen == [True, True]
    assert not allocator.is_kept()
