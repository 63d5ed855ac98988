"""Serving fixtures: a JIFR run trained by ``jifr train`` on the tiny synthetic data with a PNG
per frame. Its prepared directory is deleted once trained, so every serving test also checks
that a run stands alone."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jifr.checkpoint import load_checkpoint
from jifr.cli import app
from jifr.data.prepare import prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.datasets.synthetic import write_synthetic
from jifr.models import Recommender
from jifr.serve.app import create_app

with warnings.catch_warnings():  # Starlette now prefers the httpx2 fork; httpx still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TRAIN_EPOCHS = "3"


@pytest.fixture(scope="session")
def pictured_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic dataset with a small PNG per frame (``path`` and ``title`` columns)."""
    return write_synthetic("tiny", tmp_path_factory.mktemp("pictured") / "data", images=True)


@pytest.fixture(scope="session")
def served_run(pictured_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    prepared = prepare_dataset(pictured_dir, root / "prepared").directory
    args = ["train", str(prepared), "--out", str(root / "run"), "--model", "jifr", "--epochs", TRAIN_EPOCHS]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    shutil.rmtree(prepared)
    return root / "run"


@pytest.fixture(scope="session")
def loaded(served_run: Path) -> tuple[Recommender, PreparedData, dict[str, Any]]:
    """(model, data, description) of the served run, loaded by the library as `jifr recommend` does."""
    return load_checkpoint(served_run)


@pytest.fixture(scope="session")
def client(served_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(served_run)) as test_client:
        yield test_client
