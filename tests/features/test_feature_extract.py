"""extract_features: the store it writes, determinism, bad files, streaming and resume."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from jifr.data.frame_features import read_frame_features
from jifr.errors import DataError
from jifr.features import (
    BadImagesError,
    ExtractProgress,
    ExtractResult,
    ImageEncoder,
    extract_features,
    images_from_directory,
)
from jifr.features.images import load_rgb
from jifr.outputs import OutputError

Frames = list[tuple[str, Path]]


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def run(frames: Frames, out: Path, encoder: ImageEncoder, **options: Any) -> ExtractResult:
    options = {"batch_size": 3, "show_progress": False, **options}
    return extract_features(frames, out, encoder, **options)


@pytest.fixture(scope="module")
def clean_run(photo_frames: Frames, lite0: ImageEncoder, tmp_path_factory: pytest.TempPathFactory) -> ExtractResult:
    """One uninterrupted float32 run over the seven photos in batches of 3 (3 + 3 + 1)."""
    return run(photo_frames, tmp_path_factory.mktemp("clean"), lite0)


def test_writes_the_npy_and_ids_store(clean_run: ExtractResult, photo_frames: Frames) -> None:
    assert (clean_run.n_written, clean_run.n_skipped, clean_run.skipped) == (7, 0, ())
    assert clean_run.features_path.name == "frame_features.npy"
    assert clean_run.ids_path.name == "frame_features.ids.txt"
    store = read_frame_features(clean_run.features_path)  # the data module's reader
    assert store.frame_ids.tolist() == [frame_id for frame_id, _ in photo_frames]
    assert store.values.shape == (7, 1280)
    assert store.values.dtype == np.float32
    assert sorted(p.name for p in clean_run.features_path.parent.iterdir()) == [
        "frame_features.extract.json",  # the record that jifr wrote this store
        "frame_features.ids.txt",
        "frame_features.npy",
    ]
    assert clean_run.images_per_second > 0


def test_rows_are_the_encoder_features_of_their_frames(
    clean_run: ExtractResult, photo_frames: Frames, lite0: ImageEncoder
) -> None:
    values = np.load(clean_run.features_path)
    for row, (_, path) in enumerate(photo_frames):
        alone = lite0.encode(lite0.preprocess(load_rgb(path))[None])[0].numpy()
        np.testing.assert_allclose(values[row], alone, rtol=1e-4, atol=1e-4)


def test_identical_bytes_across_runs(
    clean_run: ExtractResult, photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    again = run(photo_frames, tmp_path, lite0)
    assert again.features_path.read_bytes() == clean_run.features_path.read_bytes()
    assert again.ids_path.read_bytes() == clean_run.ids_path.read_bytes()


def test_float16_storage(clean_run: ExtractResult, photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path) -> None:
    half = run(photo_frames, tmp_path, lite0, dtype="float16")
    values = np.load(half.features_path)
    assert values.dtype == np.float16
    np.testing.assert_array_equal(values, np.load(clean_run.features_path).astype(np.float16))


def test_bad_files_fail_fast_naming_every_file(corrupt_dir: Path, lite0: ImageEncoder, tmp_path: Path) -> None:
    frames = images_from_directory(corrupt_dir)
    out = tmp_path / "out"
    with pytest.raises(BadImagesError) as error:
        run(frames, out, lite0)
    assert isinstance(error.value, DataError)
    assert sorted(bad.path.name for bad in error.value.bad) == ["garbage.jpg", "truncated.jpg"]
    message = str(error.value)
    assert "2 image file(s) cannot be read" in message
    assert f"{corrupt_dir / 'garbage.jpg'}: UnidentifiedImageError" in message
    assert "truncated.jpg: OSError: image file is truncated" in message
    assert not out.exists()  # failed before encoding anything


def test_missing_file_is_reported(photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path) -> None:
    frames = [*photo_frames[:1], ("ghost", tmp_path / "ghost.jpg")]
    with pytest.raises(BadImagesError, match=r"ghost\.jpg: FileNotFoundError"):
        run(frames, tmp_path / "out", lite0)


def test_skip_bad_leaves_them_out_and_counts_them(
    clean_run: ExtractResult, corrupt_dir: Path, lite0: ImageEncoder, tmp_path: Path
) -> None:
    frames = images_from_directory(corrupt_dir)
    result = run(frames, tmp_path / "out", lite0, skip_bad=True)
    assert (result.n_written, result.n_skipped) == (7, 2)
    assert [(bad.frame_id, bad.path.name) for bad in result.skipped] == [
        ("garbage", "garbage.jpg"),
        ("truncated", "truncated.jpg"),
    ]
    assert result.ids_path.read_text().splitlines() == clean_run.ids_path.read_text().splitlines()
    np.testing.assert_allclose(np.load(result.features_path), np.load(clean_run.features_path), rtol=1e-4, atol=1e-4)


def test_bad_files_found_while_encoding_without_validation(
    corrupt_dir: Path, lite0: ImageEncoder, tmp_path: Path
) -> None:
    """No check pass: the failure surfaces at its batch; finished batches are kept."""
    frames = images_from_directory(corrupt_dir)
    out = tmp_path / "out"
    with pytest.raises(
        BadImagesError,
        match=r"1 image file\(s\) cannot be read \(3 finished rows kept\):\n.*garbage\.jpg",
    ):
        run(frames, out, lite0, validate=False)
    assert (out / "frame_features.progress.json").exists()
    skipping = run(frames, out, lite0, validate=False, skip_bad=True)
    checked = run(frames, tmp_path / "checked", lite0, skip_bad=True)
    assert skipping.resumed_from == 3
    assert skipping.n_skipped == 2
    assert skipping.features_path.read_bytes() == checked.features_path.read_bytes()


def test_resume_after_an_interruption_writes_the_same_bytes(
    clean_run: ExtractResult, photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    def stop_after_first_batch(progress: ExtractProgress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        run(photo_frames, tmp_path, lite0, callback=stop_after_first_batch)
    assert not (tmp_path / "frame_features.npy").exists()
    assert (tmp_path / "frame_features.partial.npy").exists()
    resumed = run(photo_frames, tmp_path, lite0)
    assert resumed.resumed_from == 3
    assert resumed.features_path.read_bytes() == clean_run.features_path.read_bytes()
    assert resumed.ids_path.read_bytes() == clean_run.ids_path.read_bytes()
    assert not (tmp_path / "frame_features.progress.json").exists()


class CrashingEncoder:
    """Delegates to a real encoder but crashes on the n-th `encode` call."""

    def __init__(self, inner: ImageEncoder, crash_on_call: int) -> None:
        self.inner, self.crash_on_call, self.calls = inner, crash_on_call, 0
        self.name, self.dim, self.weights = inner.name, inner.dim, inner.weights
        self.preprocess, self.classify = inner.preprocess, inner.classify

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise Interrupted
        return self.inner.encode(batch)


def test_resume_after_a_crash_inside_the_encoder(
    clean_run: ExtractResult, photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    with pytest.raises(Interrupted):
        run(photo_frames, tmp_path, CrashingEncoder(lite0, crash_on_call=3))
    resumed = run(photo_frames, tmp_path, lite0)
    assert resumed.resumed_from == 6
    assert resumed.features_path.read_bytes() == clean_run.features_path.read_bytes()


def test_changed_settings_start_over(
    photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = photo_frames[:4]
    with pytest.raises(Interrupted):
        run(frames, tmp_path, CrashingEncoder(lite0, crash_on_call=2))
    with caplog.at_level(logging.WARNING, logger="jifr.features"):
        restarted = run(frames, tmp_path, lite0, batch_size=2)
    assert restarted.resumed_from == 0
    assert "starting over" in caplog.text
    fresh = run(frames, tmp_path / "fresh", lite0, batch_size=2)
    assert restarted.features_path.read_bytes() == fresh.features_path.read_bytes()


class CountingEncoder:
    """Real preprocessing, a dummy model: records how many images were decoded at each encode."""

    def __init__(self, inner: ImageEncoder) -> None:
        self.inner, self.preprocessed, self.seen_at_encode = inner, 0, []
        self.name, self.dim, self.weights = "counting", inner.dim, "none"

    def preprocess(self, image: Any) -> torch.Tensor:
        self.preprocessed += 1
        return self.inner.preprocess(image)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        self.seen_at_encode.append(self.preprocessed)
        return torch.zeros(len(batch), self.dim)

    def classify(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def test_images_are_decoded_a_batch_ahead_not_all_at_once(
    photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path
) -> None:
    frames = [(str(i), path) for i, (_, path) in enumerate(photo_frames * 4)]  # 28 images
    counting = CountingEncoder(lite0)
    result = run(frames, tmp_path, counting, batch_size=2)
    assert result.n_written == 28
    assert len(counting.seen_at_encode) == 14
    # When batch k (2 images each) is encoded, at most batches 0 .. k + 1 have been decoded.
    for k, preprocessed in enumerate(counting.seen_at_encode):
        assert preprocessed <= 2 * (k + 2)


def test_existing_store_is_not_overwritten_silently(photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path) -> None:
    run(photo_frames[:2], tmp_path, lite0)
    with pytest.raises(FileExistsError, match="overwrite"):
        run(photo_frames[:2], tmp_path, lite0)
    assert run(photo_frames[:1], tmp_path, lite0, overwrite=True).n_written == 1
    assert np.load(tmp_path / "frame_features.npy").shape == (1, 1280)


def test_a_foreign_store_is_never_replaced(photo_frames: Frames, lite0: ImageEncoder, tmp_path: Path) -> None:
    mine = np.ones((2, 3), dtype=np.float32)
    np.save(tmp_path / "frame_features.npy", mine)
    (tmp_path / "frame_features.ids.txt").write_text("a\nb\n")
    with pytest.raises(OutputError, match="was not written by `jifr features extract`"):
        run(photo_frames[:2], tmp_path, lite0, overwrite=True)
    assert np.array_equal(np.load(tmp_path / "frame_features.npy"), mine)


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        ([], "no images"),
        ([("a", Path("x.jpg")), ("a", Path("y.jpg"))], "'a' (input 2) appears twice"),
        ([("a\nb", Path("x.jpg"))], "empty or multi-line"),
        ([("", Path("x.jpg"))], "empty or multi-line"),
    ],
)
def test_frame_ids_must_be_unique_single_line_text(
    frames: Frames, problem: str, lite0: ImageEncoder, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        run(frames, tmp_path, lite0)
