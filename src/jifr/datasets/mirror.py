"""Where the MovieLens-100K files with posters are, how to fetch them, and how to read them raw.

A *mirror* is a directory holding a ``ml-100k-posters`` folder laid out as::

    ml-100k-posters/
        u.data              user_id <TAB> movie_id <TAB> rating <TAB> timestamp
        u.item              movie_id|title|release|video release|IMDb URL|19 genre flags (latin-1)
        posters/<movie_id>.jpg

MovieLens may not be redistributed, so nothing read from here is ever committed to the project.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jifr.errors import DataError
from jifr.outputs import sha256_file

logger = logging.getLogger(__name__)

MIRROR_DIRNAME = "ml-100k-posters"
MIRROR_ENV_VAR = "JIFR_MIRROR"
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# SHA-256 of the official files inside ml-100k.zip (identical to the mirror's copies).
ML100K_SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
}
ML100K_N_RATINGS = 100_000
ML100K_N_MOVIES = 1_682
_ZIP_MEMBERS = ("u.data", "u.item", "u.genre", "u.user", "README")
_U_ITEM_FIELDS = 24  # id, title, release, video release, URL, 19 genre flags


class MirrorNotFoundError(FileNotFoundError):
    """The MovieLens mirror is not where it was looked; the message says where and how to fix."""


def _repo_root() -> Path | None:
    """The repository root (two levels above ``src``), or None when installed elsewhere."""
    parents = Path(__file__).resolve().parents
    return parents[3] if len(parents) > 3 else None


def default_locations() -> list[Path]:
    """Mirror locations tried when neither ``mirror`` nor ``$JIFR_MIRROR`` is given, in order."""
    locations = [Path.cwd() / ".." / "shared" / "datasets"]
    root = _repo_root()
    if root is not None:
        locations.append(root / ".." / "shared" / "datasets")
    return [location.resolve() for location in locations]


def _as_dataset_dir(location: Path) -> Path | None:
    """Accept the mirror (holding ``ml-100k-posters``) or the ``ml-100k-posters`` folder itself."""
    for candidate in (location / MIRROR_DIRNAME, location):
        if (candidate / "u.data").is_file() and (candidate / "u.item").is_file():
            return candidate.resolve()
    return None


def find_mirror(mirror: str | Path | None = None) -> Path:
    """Resolve the ``ml-100k-posters`` directory.

    Order: the explicit ``mirror`` argument, else ``$JIFR_MIRROR``, else ``../shared/datasets``
    relative to the current directory, else relative to the repository root. An explicit or
    environment location that does not hold the files is an error (no silent fallback).
    """
    if mirror is not None:
        candidates, source = [Path(mirror)], "the mirror argument"
    elif os.environ.get(MIRROR_ENV_VAR):
        candidates, source = [Path(os.environ[MIRROR_ENV_VAR])], f"${MIRROR_ENV_VAR}"
    else:
        candidates, source = default_locations(), "the default locations"
    for candidate in candidates:
        found = _as_dataset_dir(candidate)
        if found is not None:
            return found
    tried = ", ".join(str(c) for c in candidates)
    raise MirrorNotFoundError(
        f"MovieLens-100K mirror not found (looked in {source}: {tried}). A mirror is a directory "
        f"holding '{MIRROR_DIRNAME}/u.data', 'u.item' and 'posters/'. Pass it with --mirror PATH "
        f"(or mirror=PATH), or set {MIRROR_ENV_VAR}=PATH."
    )


def verify_checksums(dataset_dir: Path) -> None:
    """Raise DataError unless ``u.data`` and ``u.item`` match the official SHA-256 digests."""
    for name, expected in ML100K_SHA256.items():
        actual = sha256_file(dataset_dir / name)
        if actual != expected:
            raise DataError(dataset_dir / name, f"SHA-256 {actual} differs from official {expected}")


def download_movielens_100k(dest: str | Path, url: str = ML100K_URL) -> Path:
    """Fetch the official ml-100k.zip and lay it out as a mirror under ``dest``.

    Extracts ``u.data``, ``u.item``, ``u.genre``, ``u.user`` and ``README`` into
    ``dest/ml-100k-posters/`` and verifies the pinned SHA-256 of ``u.data`` and ``u.item``
    (DataError on mismatch). Posters are *not* part of the GroupLens release: copy them (from a
    mirror, or your own ``<movie_id>.jpg`` files) into ``dest/ml-100k-posters/posters/``; the
    builders drop movies without a poster. Returns the ``ml-100k-posters`` directory, so that
    ``find_mirror(dest)`` then finds it.
    """
    dataset_dir = Path(dest) / MIRROR_DIRNAME
    (dataset_dir / "posters").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "ml-100k.zip"
        logger.info("downloading %s", url)
        with urllib.request.urlopen(url) as response, archive.open("wb") as handle:
            shutil.copyfileobj(response, handle)
        _extract_members(archive, dataset_dir)
    verify_checksums(dataset_dir)
    return dataset_dir


def _extract_members(archive: Path, dataset_dir: Path) -> None:
    """Copy the ``ml-100k/<member>`` files of the zip flat into ``dataset_dir``."""
    with zipfile.ZipFile(archive) as zipped:
        for member in _ZIP_MEMBERS:
            with zipped.open(f"ml-100k/{member}") as source:
                (dataset_dir / member).write_bytes(source.read())


@dataclass(frozen=True)
class MovieLens100K:
    """The raw ratings and movies of a mirror.

    ``ratings`` is ``(n_ratings, 4)`` int64: user id, movie id, rating, Unix timestamp.
    ``genres`` is ``(n_movies, 19)`` int8, row ``i`` for ``movie_ids[i]``.
    ``posters`` maps a movie id to its poster file (movies without a poster are absent).
    """

    dataset_dir: Path
    ratings: np.ndarray
    movie_ids: np.ndarray
    titles: list[str]
    genres: np.ndarray
    posters: dict[int, Path]
    checksums: dict[str, str]

    @property
    def title_by_id(self) -> dict[int, str]:
        """Movie id -> title."""
        return dict(zip(self.movie_ids.tolist(), self.titles, strict=True))


def load_movielens_100k(mirror: str | Path | None = None) -> MovieLens100K:
    """Read a mirror (resolved with ``find_mirror``) and check it cheaply.

    Raises DataError when ``u.data`` does not have 100,000 ratings or ``u.item`` 1,682 movies;
    a checksum differing from the official files is only logged (a user's own copy may differ).
    """
    dataset_dir = find_mirror(mirror)
    checksums = {name: sha256_file(dataset_dir / name) for name in ML100K_SHA256}
    for name, digest in checksums.items():
        if digest != ML100K_SHA256[name]:
            logger.warning("%s: SHA-256 differs from the official MovieLens-100K file", name)
    movie_ids, titles, genres = _read_u_item(dataset_dir / "u.item")
    return MovieLens100K(
        dataset_dir=dataset_dir,
        ratings=_read_u_data(dataset_dir / "u.data"),
        movie_ids=movie_ids,
        titles=titles,
        genres=genres,
        posters=_find_posters(dataset_dir / "posters", movie_ids),
        checksums=checksums,
    )


def _read_u_data(path: Path) -> np.ndarray:
    """``(100000, 4)`` int64 ratings; DataError on a wrong row count or shape."""
    ratings = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    if ratings.shape != (ML100K_N_RATINGS, 4):
        raise DataError(path, f"expected {ML100K_N_RATINGS} rows of 4 columns, got {ratings.shape}")
    return ratings


def _read_u_item(path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Movie ids, titles and ``(n, 19)`` genre flags from the latin-1, ``|``-separated file."""
    rows = [line.split("|") for line in path.read_text(encoding="latin-1").splitlines() if line]
    for number, fields in enumerate(rows, start=1):
        if len(fields) != _U_ITEM_FIELDS:
            raise DataError(path, f"expected {_U_ITEM_FIELDS} fields, got {len(fields)}", number)
    if len(rows) != ML100K_N_MOVIES:
        raise DataError(path, f"expected {ML100K_N_MOVIES} movies, got {len(rows)}")
    movie_ids = np.array([int(fields[0]) for fields in rows], dtype=np.int64)
    genres = np.array([fields[5:] for fields in rows], dtype=np.int8)
    return movie_ids, [fields[1] for fields in rows], genres


def _find_posters(poster_dir: Path, movie_ids: np.ndarray) -> dict[int, Path]:
    """Movie id -> absolute poster path, for the movies that have ``posters/<id>.jpg``."""
    candidates = ((int(m), (poster_dir / f"{m}.jpg").resolve()) for m in movie_ids.tolist())
    return {movie: path for movie, path in candidates if path.is_file()}
