"""Sharded extraction (`--shard I/N`) and `jifr features merge`: the merged store is the
unsharded one byte for byte, and incomplete or mismatched shards are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from jifr.errors import DataError
from jifr.features import ImageEncoder, extract_features, images_from_directory
from jifr.features.cli import features_app
from jifr.features.shards import Shard, merge_shards

Frames = list[tuple[str, Path]]
runner = CliRunner()


def extract(frames: Frames, out: Path, encoder: ImageEncoder, **options: Any) -> None:
    extract_features(frames, out, encoder, batch_size=3, show_progress=False, **options)


def store_bytes(directory: Path) -> tuple[bytes, bytes]:
    return (directory / "frame_features.npy").read_bytes(), (directory / "frame_features.ids.txt").read_bytes()


@pytest.fixture(scope="module")
def whole(photo_frames: Frames, lite0: ImageEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unsharded store of the seven photos in batches of 3 (3 + 3 + 1)."""
    out = tmp_path_factory.mktemp("whole")
    extract(photo_frames, out, lite0)
    return out


def test_two_shards_merged_by_the_cli_are_the_unsharded_store(whole: Path, photo_dir: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.add_typer(features_app, name="features")
    extract_args = ["features", "extract", str(photo_dir), "--out", str(tmp_path), "--batch-size", "3"]
    for shard in ("2/2", "1/2"):  # in any order, as separate processes would finish
        result = runner.invoke(app, [*extract_args, "--shard", shard, "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"shard {shard} done" in result.output and f"jifr features merge {tmp_path}" in result.output
    # whole batches: shard 1 takes the first batch (3 rows), shard 2 the other two (3 + 1)
    assert (tmp_path / "frame_features.shard-1-of-2.ids.txt").read_text().count("\n") == 3
    assert (tmp_path / "frame_features.shard-2-of-2.ids.txt").read_text().count("\n") == 4
    assert not (tmp_path / "frame_features.npy").exists()

    result = runner.invoke(app, ["features", "merge", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "merged 2 shards: 7 feature rows" in result.output
    assert store_bytes(tmp_path) == store_bytes(whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frame_features.extract.json",
        "frame_features.ids.txt",
        "frame_features.npy",
    ]
    # The merged store is jifr's own: merging again is refused, --overwrite may replace it.
    again = runner.invoke(app, ["features", "merge", str(tmp_path)])
    assert again.exit_code == 2 and "no finished shards" in again.output
    merged, unsharded = (json.loads((d / "frame_features.extract.json").read_text()) for d in (tmp_path, whole))
    assert merged["merged_shards"] == 2
    assert (merged["fingerprint"], merged["rows"], merged["encoder"]) == (
        unsharded["fingerprint"],
        unsharded["rows"],
        unsharded["encoder"],
    )


def test_shards_with_skipped_images_merge_to_the_unsharded_store(
    corrupt_dir: Path, lite0: ImageEncoder, tmp_path: Path
) -> None:
    """Nine inputs, two unreadable (garbage.jpg, truncated.jpg): the store keeps 7 of 9 rows."""
    frames = images_from_directory(corrupt_dir)
    extract(frames, tmp_path / "whole", lite0, skip_bad=True)
    for index in (1, 2, 3):
        extract(frames, tmp_path / "sharded", lite0, skip_bad=True, shard=Shard(index, 3))
    result = merge_shards(tmp_path / "sharded")
    assert (result.n_written, result.n_skipped, result.n_shards) == (7, 2, 3)
    assert store_bytes(tmp_path / "sharded") == store_bytes(tmp_path / "whole")


def test_incomplete_shards_are_refused_and_nothing_is_written(
    photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    extract(photo_frames, tmp_path, lite0, shard=Shard(2, 3))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=r"incomplete: shard\(s\) 1/3, 3/3 of frame_features are not finished"):
        merge_shards(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the finished shard is kept


def test_shards_of_other_inputs_or_settings_are_refused(
    photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    extract(photo_frames, tmp_path, lite0, shard=Shard(1, 2))
    extract(photo_frames[:-1], tmp_path, lite0, shard=Shard(2, 2))  # one photo fewer: other batches
    with pytest.raises(DataError, match="come from different extractions"):
        merge_shards(tmp_path)
    assert not (tmp_path / "frame_features.npy").exists()


def test_a_shard_changed_since_its_extraction_is_refused(
    photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    for index in (1, 2):
        extract(photo_frames, tmp_path, lite0, shard=Shard(index, 2))
    shard = tmp_path / "frame_features.shard-2-of-2.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one feature value of the last row
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="changed since its extraction"):
        merge_shards(tmp_path)
    assert not (tmp_path / "frame_features.npy").exists()


def test_a_store_jifr_did_not_write_is_not_replaced(photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path) -> None:
    for index in (1, 2):
        extract(photo_frames, tmp_path, lite0, shard=Shard(index, 2))
    (tmp_path / "frame_features.npy").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        merge_shards(tmp_path)
    with pytest.raises(DataError, match="was not written by jifr"):
        merge_shards(tmp_path, overwrite=True)
    assert (tmp_path / "frame_features.npy").read_bytes() == b"someone else's"


def test_shard_parsing_and_bounds() -> None:
    assert Shard.parse("2/4") == Shard(2, 4)
    for text in ("2", "0/2", "3/2", "a/b"):
        with pytest.raises(ValueError, match="I/N|1 <= I <= N"):
            Shard.parse(text)
    # 10 inputs in batches of 3 are 4 batches; three shards take 1, 1 and 2 of them
    assert [Shard(i, 3).bounds(10, 3) for i in (1, 2, 3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(ValueError, match="too few for 5 shards; use at most 4"):
        Shard(1, 5).bounds(10, 3)
