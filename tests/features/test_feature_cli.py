"""`jifr features extract`, driven end to end through Typer's CliRunner."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from jifr.features.cli import features_app

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """Mounted the way the main CLI mounts it."""
    main = typer.Typer()
    main.add_typer(features_app, name="features")
    return main


def test_help_explains_input_and_options(app: typer.Typer) -> None:
    result = runner.invoke(app, ["features", "extract", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for text in (
        "INPUT",
        "item_frames",
        "--out",
        "--encoder",
        "--batch-size",
        "--float16",
        "--skip-bad",
        "--weights-path",
        "vgg19-fc7",
    ):
        assert text in result.output


def test_extract_a_folder(app: typer.Typer, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    args = ["features", "extract", str(photo_dir), "--out", str(out), "--batch-size", "3"]
    result = runner.invoke(app, [*args, "--float16"])
    assert result.exit_code == 0, result.output
    assert "wrote 7 feature rows" in result.output
    assert "(0 skipped)" in result.output
    assert "images/s" in result.output
    values = np.load(out / "frame_features.npy")
    assert (values.shape, values.dtype) == ((7, 1280), np.float16)
    assert (out / "frame_features.ids.txt").read_text().splitlines()[0] == "astronaut"


def test_extract_an_item_frames_table(app: typer.Typer, photo_dir: Path, tmp_path: Path) -> None:
    table = tmp_path / "item_frames.csv"
    table.write_text(f"item_id,frame_id,path\nmovie,cat,{photo_dir / 'chelsea.jpg'}\n")
    result = runner.invoke(app, ["features", "extract", str(table), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "frame_features.ids.txt").read_text() == "cat\n"


def test_bad_file_exits_2_with_its_name(app: typer.Typer, corrupt_dir: Path, tmp_path: Path) -> None:
    args = ["features", "extract", str(corrupt_dir), "--out", str(tmp_path / "out"), "--batch-size", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "garbage.jpg: UnidentifiedImageError" in result.output
    assert "truncated.jpg: OSError" in result.output
    assert "--skip-bad" in result.output
    assert "Traceback" not in result.output
    skipped = runner.invoke(app, [*args, "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert "wrote 7 feature rows" in skipped.output
    assert "(2 skipped)" in skipped.output


def test_data_problems_exit_2_without_traceback(app: typer.Typer, tmp_path: Path) -> None:
    table = tmp_path / "item_frames.csv"
    table.write_text("item_id,frame_id\ni1,f1\n")
    result = runner.invoke(app, ["features", "extract", str(table), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "missing required column 'path'" in result.output
    assert "Traceback" not in result.output


def test_unknown_encoder_is_a_usage_error(app: typer.Typer, photo_dir: Path, tmp_path: Path) -> None:
    args = ["features", "extract", str(photo_dir), "-o", str(tmp_path), "--encoder", "nope"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "unknown encoder 'nope'" in result.output


def test_vgg19_without_torchvision_explains(
    app: typer.Typer, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    args = ["features", "extract", str(photo_dir), "-o", str(tmp_path), "--encoder", "vgg19-fc7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "needs torchvision" in result.output
