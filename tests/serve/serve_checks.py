"""Comparing responses computed in different batches or processes: the same items and frames in
the same order, and scores equal up to float32 rounding (a matmul of another shape, or another
process's vector code, may round the last bit differently)."""

from __future__ import annotations

from typing import Any

import pytest


def approx_floats(value: Any) -> Any:
    """``value`` with every float replaced by ``pytest.approx`` of it (rel 1e-5), for ``==``."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    if isinstance(value, dict):
        return {key: approx_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [approx_floats(item) for item in value]
    return value
