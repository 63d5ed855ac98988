"""Encode image files into the frame-feature store, in streamed, resumable batches.

`extract_features(images, out_dir)` writes `frame_features.npy` (L, D) and
`frame_features.ids.txt` (docs/format.md). Images are decoded a batch at a time by a small
thread pool (the next batch is decoded while the current one is encoded), so memory stays
at about two batches whatever the number of images.

Resume: after every batch the rows are flushed and a progress file records how far the run
got, with a fingerprint of the inputs (frame ids and paths, in order), the encoder and its
weights, the dtype and the batch size. Rerunning the same call after a crash or Ctrl-C
continues at the next batch; changed inputs or settings start over. Batches are fixed slices
of the input list, so a resumed run writes the same bytes as an uninterrupted one (on the
same machine and torch thread count: CPU kernels split sums by thread).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from jifr.errors import DataError
from jifr.features.encoders import DEFAULT_ENCODER, ImageEncoder, build_encoder, encoder_record
from jifr.features.images import describe_failure, load_rgb, probe_image
from jifr.features.inputs import FrameImage
from jifr.features.shards import Shard
from jifr.features.store import ExtractProgress, FeatureStoreWriter
from jifr.outputs import OutputError
from jifr.progress import ProgressLog, progress_bar

logger = logging.getLogger(__name__)

StorageDtype = Literal["float32", "float16"]
_MAX_LISTED = 20  # bad files named in an error message; all of them are on the exception
_PROBE_CHUNK = 1024


@dataclass(frozen=True)
class BadImage:
    """An image file that could not be decoded."""

    frame_id: str
    path: Path
    reason: str  # e.g. "OSError: image file is truncated (5 bytes not processed)"


class BadImagesError(DataError):
    """Some images cannot be decoded; `bad` lists every one with its reason."""

    def __init__(self, bad: Sequence[BadImage], note: str = "") -> None:
        self.bad = tuple(bad)
        lines = [f"  {image.path}: {image.reason}" for image in self.bad[:_MAX_LISTED]]
        if len(self.bad) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.bad) - _MAX_LISTED} more")
        problem = "\n".join(
            [f"{len(self.bad)} image file(s) cannot be read{note}:", *lines]
            + ["Fix or remove them, or skip them with skip_bad=True (--skip-bad)."]
        )
        super().__init__(None, problem)

    def __str__(self) -> str:
        return self.problem


@dataclass(frozen=True)
class ExtractResult:
    """What a finished extraction wrote and how fast it ran."""

    features_path: Path  # (n_written, D) .npy
    ids_path: Path  # n_written frame ids, one per line, in row order
    n_written: int
    skipped: tuple[BadImage, ...]  # absent from the store
    seconds: float  # wall time of this call
    images_per_second: float  # images processed by this call / seconds
    resumed_from: int = 0  # images an interrupted earlier run had already done

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


@dataclass(frozen=True)
class _Batch:
    """One decoded batch: inputs [start, stop), their pixels and the files that failed."""

    start: int
    stop: int
    frame_ids: list[str]
    pixels: torch.Tensor | None  # (n, 3, H, W); None when every file failed
    bad: list[BadImage]


@dataclass(frozen=True)
class _Job:
    """What one extraction works with while it runs."""

    frames: list[FrameImage]
    encoder: ImageEncoder
    store: FeatureStoreWriter
    pool: ThreadPoolExecutor
    batch_size: int
    storage: np.dtype  # float32 or float16
    skip_bad: bool
    show_progress: bool
    callback: Callable[[ExtractProgress], None] | None
    known_bad: dict[int, BadImage] = field(default_factory=dict)  # input index -> why


def extract_features(
    images: Sequence[tuple[str, Path]],
    out_dir: Path,
    encoder: str | ImageEncoder = DEFAULT_ENCODER,
    *,
    batch_size: int = 32,
    dtype: StorageDtype = "float32",
    skip_bad: bool = False,
    validate: bool = True,
    workers: int = 2,
    weights_path: Path | None = None,
    device: str = "cpu",
    allow_download: bool = False,
    stem: str = "frame_features",
    overwrite: bool = False,
    show_progress: bool = True,
    callback: Callable[[ExtractProgress], None] | None = None,
    shard: Shard | None = None,
) -> ExtractResult:
    """Encode `images` ((frame_id, path) pairs) into `out_dir/<stem>.npy` + `<stem>.ids.txt`.

    Args:
        encoder: a registry name (see `ENCODERS`) or an already built encoder.
        dtype: storage type of the (L, D) array; features are computed in float32.
        skip_bad: leave undecodable files out (listed in the result) instead of failing.
        validate: decode-check every file before encoding, so that a run with bad files
            fails at once rather than hours in (with `skip_bad`, they are known up front).
        workers: threads that decode images.
        weights_path, device, allow_download: passed to the encoder when built by name.
        overwrite: replace a finished store that this function wrote in `out_dir`; otherwise
            that is an error. A store it did not write is never replaced.
        callback: called with the progress after each batch is safely written.
        shard: encode only this part of the inputs, into `<stem>.shard-I-of-N.*`; once every
            part is done, `jifr.features.shards.merge_shards` assembles the store.

    Raises:
        BadImagesError: some files cannot be decoded and `skip_bad` is False. Finished
            batches are kept: rerun after fixing the files to continue.
        DataError: no inputs, or frame ids that are empty, multi-line or repeated.
        FileExistsError: a finished store is already there and `overwrite` is False.
        EncoderUnavailableError: the encoder's package or weights are missing.
    """
    started = time.perf_counter()
    frames = _checked_inputs(images)
    storage = _checked_options(batch_size, dtype, workers)
    bounds = (0, len(frames)) if shard is None else shard.bounds(len(frames), batch_size)
    store = FeatureStoreWriter(out_dir, stem if shard is None else shard.stem(stem))
    if store.finished_exists() and not overwrite:
        raise FileExistsError(f"{store.features_path} already exists (pass overwrite=True, --overwrite)")
    if store.finished_exists() and not store.written_by_jifr():
        problem = "was not written by `jifr features extract`; refusing to replace it (choose another --out)"
        raise OutputError(store.features_path, problem)
    if isinstance(encoder, str):
        options = {"weights_path": weights_path, "device": device, "allow_download": allow_download}
        encoder = build_encoder(encoder, **options)
    run_fingerprint = _fingerprint(frames, encoder, storage, batch_size)  # of all the inputs, also in a shard
    n_all, frames = len(frames), frames[bounds[0] : bounds[1]]
    progress = _starting_progress(store, frames, encoder, storage, batch_size, skip_bad)
    resumed_from = progress.next_input
    with ThreadPoolExecutor(max_workers=workers) as pool:
        job = _Job(frames, encoder, store, pool, batch_size, storage, skip_bad, show_progress, callback)
        if validate:
            _check_decodable(job, start=resumed_from)
        progress = _encode_all(job, progress)
    skipped = _skipped(frames, progress)
    record = {"encoder": encoder_record(encoder)}  # which encoder new items' images need (jifr.items)
    if shard is not None:
        record |= shard.record(bounds, n_all, run_fingerprint, len(skipped))
    store.finish(progress, _written_ids(frames, skipped), record)
    seconds = time.perf_counter() - started
    result = ExtractResult(
        features_path=store.features_path,
        ids_path=store.ids_path,
        n_written=progress.rows,
        skipped=tuple(bad for _, bad in skipped),
        seconds=seconds,
        images_per_second=(len(frames) - resumed_from) / max(seconds, 1e-9),
        resumed_from=resumed_from,
    )
    _log_summary(result)
    return result


def _checked_inputs(images: Sequence[tuple[str, Path]]) -> list[FrameImage]:
    """The inputs as (frame_id, Path); frame ids must be non-empty, one-line and unique."""
    frames = [(str(frame_id), Path(path)) for frame_id, path in images]
    if not frames:
        raise DataError(None, "no images to encode")
    seen: set[str] = set()
    for position, (frame_id, path) in enumerate(frames, start=1):
        if frame_id.splitlines() != [frame_id]:  # the ids file holds one id per line
            problem = f"frame id {frame_id!r} (input {position}) is empty or multi-line"
            raise DataError(path, problem)
        if frame_id in seen:
            raise DataError(path, f"frame id {frame_id!r} (input {position}) appears twice")
        seen.add(frame_id)
    return frames


def _checked_options(batch_size: int, dtype: str, workers: int) -> np.dtype:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    return np.dtype(dtype)


def _starting_progress(
    store: FeatureStoreWriter,
    frames: list[FrameImage],
    encoder: ImageEncoder,
    storage: np.dtype,
    batch_size: int,
    skip_bad: bool,
) -> ExtractProgress:
    """Where to start: an interrupted run's progress when it is compatible, else the beginning."""
    fingerprint = _fingerprint(frames, encoder, storage, batch_size)
    progress = store.resume(fingerprint, len(frames), encoder.dim, storage)
    if progress.skipped and not skip_bad:
        # The finished part lacks rows this run must write: only a fresh start can add them.
        logger.warning("the interrupted run skipped bad images but skip_bad is off; starting over")
        return ExtractProgress(fingerprint=fingerprint, n_inputs=len(frames))
    return progress


def _fingerprint(frames: list[FrameImage], encoder: ImageEncoder, storage: np.dtype, batch_size: int) -> str:
    """A hash of everything that decides the output bytes (file contents excepted)."""
    digest = hashlib.sha256()
    settings = (encoder.name, encoder.weights, encoder.dim, storage.str, batch_size)
    digest.update("\0".join(map(str, settings)).encode() + b"\n")
    for frame_id, path in frames:
        digest.update(f"{frame_id}\0{path.absolute()}\n".encode())
    return digest.hexdigest()


def _check_decodable(job: _Job, start: int) -> None:
    """Decode-check inputs `start`...: raise BadImagesError, or note them for skipping."""
    frames = job.frames
    logger.info("checking that %d image files decode", len(frames) - start)
    bar = _progress_bar(job, total=len(frames) - start, desc="check")
    ticker = ProgressLog(logger, "checked", len(frames) - start, "images", bar, enabled=job.show_progress)
    with bar:
        # In chunks, so that a million files do not become a million pending futures.
        for chunk in range(start, len(frames), _PROBE_CHUNK):
            indices = range(chunk, min(chunk + _PROBE_CHUNK, len(frames)))
            reasons = job.pool.map(probe_image, [frames[i][1] for i in indices])
            for index, reason in zip(indices, reasons, strict=True):
                if reason is not None:
                    job.known_bad[index] = BadImage(*frames[index], reason)
            bar.update(len(indices))
            ticker.update(indices.stop - start)
    if job.known_bad and not job.skip_bad:
        raise BadImagesError(list(job.known_bad.values()))
    if job.known_bad:
        logger.warning("%d image files cannot be read and will be skipped", len(job.known_bad))


def _encode_all(job: _Job, progress: ExtractProgress) -> ExtractProgress:
    """Encode batch after batch from `progress.next_input`, committing each; the final progress."""
    n_inputs = len(job.frames)
    spans = [
        (start, min(start + job.batch_size, n_inputs)) for start in range(progress.next_input, n_inputs, job.batch_size)
    ]
    job.store.open_rows(progress, job.encoder.dim, job.storage)
    bar = _progress_bar(job, total=n_inputs, initial=progress.next_input, desc=f"encode ({job.encoder.name})")
    ticker = ProgressLog(logger, "encoded", n_inputs, "images", bar, enabled=job.show_progress)
    try:
        with _deterministic_torch():
            for batch in _decoded_batches(job, spans):
                if batch.bad and not job.skip_bad:
                    raise BadImagesError(batch.bad, note=f" ({progress.rows} finished rows kept)")
                progress = _write_batch(job, batch, progress)
                bar.update(batch.stop - batch.start)
                ticker.update(batch.stop)
                if job.callback is not None:
                    job.callback(progress)
    finally:
        bar.close()
        job.store.close()
    return progress


def _progress_bar(job: _Job, total: int, desc: str, initial: int = 0) -> tqdm:
    return progress_bar(total=total, initial=initial, desc=desc, unit="img", enabled=job.show_progress)


def _write_batch(job: _Job, batch: _Batch, progress: ExtractProgress) -> ExtractProgress:
    """Encode one batch into the rows after `progress.rows`, commit, and return the new progress."""
    n_rows = 0
    if batch.pixels is not None:
        features = job.encoder.encode(batch.pixels).numpy()  # (n, D) float32
        _check_features(features, batch.frame_ids, job.encoder.dim)
        job.store.write_rows(progress.rows, features)
        n_rows = len(features)
    for image in batch.bad:
        logger.warning("skipped %s (frame %s): %s", image.path, image.frame_id, image.reason)
    skipped = [(bad.frame_id, str(bad.path), bad.reason) for bad in batch.bad]
    progress = progress.advanced(batch.stop, n_rows, skipped)
    job.store.commit(progress)
    return progress


def _check_features(features: np.ndarray, frame_ids: list[str], dim: int) -> None:
    if features.shape != (len(frame_ids), dim):
        raise RuntimeError(f"encoder returned {features.shape}, expected {(len(frame_ids), dim)}")
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise RuntimeError(f"non-finite features for frame {frame_ids[int(np.argmin(finite))]!r}")


def _decoded_batches(job: _Job, spans: list[tuple[int, int]]) -> Iterator[_Batch]:
    """Yield the batches in order, decoding batch k + 1 in the pool while k is encoded."""
    pending: tuple[tuple[int, int], list[Future[torch.Tensor | BadImage]]] | None = None
    try:
        for start, stop in spans:
            futures = [job.pool.submit(_decode, job, index) for index in range(start, stop)]
            if pending is not None:
                yield _collect(job, *pending)
            pending = ((start, stop), futures)
        if pending is not None:
            yield _collect(job, *pending)
    finally:  # interrupted: do not decode batches nobody will encode
        for future in pending[1] if pending is not None else []:
            future.cancel()


def _decode(job: _Job, index: int) -> torch.Tensor | BadImage:
    """Input `index` as a (3, H, W) tensor, or the BadImage that says why it cannot be."""
    if index in job.known_bad:
        return job.known_bad[index]
    frame_id, path = job.frames[index]
    try:
        image = load_rgb(path)
    except Exception as error:  # Pillow raises many types for corrupt data (see images.py)
        return BadImage(frame_id, path, describe_failure(error))
    return job.encoder.preprocess(image)


def _collect(job: _Job, span: tuple[int, int], futures: list[Future[torch.Tensor | BadImage]]) -> _Batch:
    """Wait for one batch's decodes and stack the good ones into (n, 3, H, W)."""
    results = [future.result() for future in futures]
    good = [(i, r) for i, r in zip(range(*span), results, strict=True) if isinstance(r, torch.Tensor)]
    return _Batch(
        start=span[0],
        stop=span[1],
        frame_ids=[job.frames[i][0] for i, _ in good],
        pixels=torch.stack([tensor for _, tensor in good]) if good else None,
        bad=[r for r in results if isinstance(r, BadImage)],
    )


def _skipped(frames: list[FrameImage], progress: ExtractProgress) -> list[tuple[int, BadImage]]:
    """The skipped inputs as (input index, BadImage), from the progress record."""
    index_of = {frame_id: index for index, (frame_id, _) in enumerate(frames)}
    return [(index_of[frame_id], BadImage(frame_id, Path(path), reason)) for frame_id, path, reason in progress.skipped]


def _written_ids(frames: list[FrameImage], skipped: list[tuple[int, BadImage]]) -> list[str]:
    """The frame ids of the rows written, in row order: the inputs minus the skipped ones."""
    left_out = {index for index, _ in skipped}
    return [frame_id for index, (frame_id, _) in enumerate(frames) if index not in left_out]


@contextmanager
def _deterministic_torch() -> Iterator[None]:
    """Deterministic kernels while encoding (matters on CUDA; CPU inference already is)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        torch.backends.cudnn.benchmark = was_benchmark


def _log_summary(result: ExtractResult) -> None:
    logger.info(
        "wrote %d feature rows to %s (%d skipped) in %.1f s: %.1f images/s",
        result.n_written,
        result.features_path,
        result.n_skipped,
        result.seconds,
        result.images_per_second,
    )
