"""MovieLens-100K builders: movies with their poster, and bundles of related movies.

Three benchmarks in the dataset directory format (docs/format.md), all read from a mirror
(see ``jifr.datasets.mirror``) and never committed (MovieLens may not be redistributed):

* ``movielens-100k-posters`` (item recommendation): users x movies, one frame per movie, its
  poster. Any rating is an implicit positive.
* ``movielens-bundles`` (key-frame recommendation): a multimedia item is a bundle of 4-8
  related movies and its frames are their posters, so a user who rated some movies of a bundle
  "liked" the frames of the movies rated at least ``like_threshold`` -- the counterpart of the
  paper's Douban frame likes (section 4), used only for evaluation -- and was exposed to the
  posters of every movie of the bundle they rated (``frame_exposures``, any rating).
* ``movielens-bundles-planted`` (key-frame recommendation with a planted answer): the same
  tables, except that each (user, bundle) pair has one liked poster, chosen with probability
  ``taste`` by a hidden visual taste (computed from the poster images) and otherwise by movie
  popularity.

Ids: users keep their MovieLens id (``"196"``); a movie is ``"m<id>"`` as item (posters) and as
frame (both datasets, so poster features can be shared); a bundle is ``"b<k>"``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

import jifr
from jifr.datasets.mirror import ML100K_SHA256, MovieLens100K, load_movielens_100k
from jifr.outputs import staged_directory

logger = logging.getLogger(__name__)

POSTERS_BUILDER = "movielens-100k-posters"
BUNDLES_BUILDER = "movielens-bundles"
PLANTED_BUILDER = "movielens-bundles-planted"
CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM Transactions on Interactive Intelligent Systems 5(4)."
)
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_ID_COLUMNS = ("user_id", "item_id", "frame_id")
_DATASET_TABLES = ("interactions", "item_frames", "frame_likes", "frame_exposures", "items")
_MOVIE_FILES = ("interactions.csv", "item_frames.csv", "items.csv")
_TITLES_IN_BUNDLE_NAME = 3


def movie_key(movie_id: int) -> str:
    """Item / frame id of a movie (``"m1"``)."""
    return f"m{movie_id}"


def bundle_key(bundle: int) -> str:
    """Item id of a bundle (``"b0"``)."""
    return f"b{bundle}"


@dataclass(frozen=True)
class BundleConfig:
    """Parameters of ``movielens-bundles``; every cluster of ``min_bundle`` or more movies can
    be cut evenly into bundles of ``min_bundle..max_bundle`` because max >= 2 * min - 1."""

    bundle_size: int = 6
    min_bundle: int = 4
    max_bundle: int = 8
    like_threshold: int = 4
    n_components: int = 32  # SVD dimensions kept after dropping the popularity direction
    n_clusters: int = 40
    n_init: int = 10  # k-means restarts
    seed: int = 0
    frame_feedback: bool = False  # also write frame_feedback.csv (every poster of each pair, label = liked)

    def __post_init__(self) -> None:
        if not 1 <= self.min_bundle <= self.bundle_size <= self.max_bundle:
            raise ValueError("need 1 <= min_bundle <= bundle_size <= max_bundle")
        if self.max_bundle < 2 * self.min_bundle - 1:
            raise ValueError("need max_bundle >= 2 * min_bundle - 1 to cut clusters evenly")
        if not 1 <= self.like_threshold <= 5:
            raise ValueError(f"like_threshold must be a rating 1..5, got {self.like_threshold}")
        if min(self.n_components, self.n_clusters, self.n_init) < 1:
            raise ValueError("n_components, n_clusters and n_init must be positive")


# ---------------------------------------------------------------- builders


def build_movielens_100k_posters(mirror: str | Path | None, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write the movie benchmark (users x movies, one poster frame per movie) to ``out_dir``.

    Movies without a poster are dropped with their ratings (counted in meta.json and logged).
    ``out_dir`` must be new or empty, or (with ``force``) an earlier jifr dataset, which is
    replaced whole; it appears only when complete. Returns ``out_dir``.
    """
    data = load_movielens_100k(mirror)
    with staged_directory(out_dir, "dataset", force=force, inputs=[data.dataset_dir]) as out:
        ratings, dropped = _drop_movies_without_poster(data)
        ratings = ratings[np.lexsort((ratings[:, 1], ratings[:, 3], ratings[:, 0]))]
        _write_interactions(out, ratings[:, 0], [movie_key(m) for m in ratings[:, 1]], ratings[:, 3])
        _write_movie_tables(out, data)
        _write_meta(out, POSTERS_BUILDER, {}, None, data, dropped, {})
    return Path(out_dir)


def build_movielens_bundles(
    mirror: str | Path | None,
    out_dir: str | Path,
    bundle_size: int = 6,
    min_bundle: int = 4,
    max_bundle: int = 8,
    like_threshold: int = 4,
    n_components: int = 32,
    n_clusters: int = 40,
    seed: int = 0,
    frame_feedback: bool = False,
    *,
    force: bool = False,
) -> Path:
    """Write the key-frame benchmark (users x bundles of related movies, posters as frames).

    Bundles: truncated SVD of the binary user x movie matrix with the first (popularity)
    direction dropped, rows L2-normalised, k-means into ``n_clusters`` clusters (clusters
    smaller than ``min_bundle`` are merged into the nearest centroid), each cluster shuffled
    with ``seed`` and cut evenly into bundles of about ``bundle_size``; bundle ids are shuffled
    too, so they carry no order. A user interacts with a bundle when they rated one of its
    movies (timestamp: earliest such rating), likes the posters of the movies they rated
    ``>= like_threshold`` (``frame_likes``, evaluation only) and was exposed to the posters of
    all the movies they rated, at any rating (``frame_exposures``). ``out_dir`` is written as by
    ``build_movielens_100k_posters``. With ``frame_feedback``, ``frame_feedback.csv`` logs every
    poster of every user-bundle pair with label 1 when the user liked it, as if the platform had
    shown each poster once and logged the clicks (``jifr prepare`` keeps only the training pairs'
    rows). Returns ``out_dir``.
    """
    config = BundleConfig(
        bundle_size,
        min_bundle,
        max_bundle,
        like_threshold,
        n_components,
        n_clusters,
        seed=seed,
        frame_feedback=frame_feedback,
    )
    data = load_movielens_100k(mirror)
    bundled = _bundle_movies(data, config)
    with staged_directory(out_dir, "dataset", force=force, inputs=[data.dataset_dir]) as out:
        _write_bundles(out, data, bundled, config)
        _write_meta(out, BUNDLES_BUILDER, asdict(config), config.seed, data, bundled.dropped, bundled.extra)
    return Path(out_dir)


@dataclass(frozen=True)
class _Bundled:
    """The ratings of movies with a poster, the movies, each rating's movie column and the bundles."""

    ratings: np.ndarray  # (n, 4): user, movie, rating, timestamp
    dropped: dict[str, Any]
    movies: np.ndarray  # sorted movie ids with a poster
    column: np.ndarray  # (n,) index of each rating's movie into ``movies``
    bundles: list[np.ndarray]
    extra: dict[str, Any]

    @property
    def bundle_of_rating(self) -> np.ndarray:
        return _bundle_of_movie(self.bundles, self.movies.size)[self.column]


def _bundle_movies(data: MovieLens100K, config: BundleConfig) -> _Bundled:
    """Cluster the movies with a poster and cut the clusters into bundles."""
    ratings, dropped = _drop_movies_without_poster(data)
    movies = np.array(sorted(data.posters), dtype=np.int64)
    column = np.searchsorted(movies, ratings[:, 1])
    labels = cluster_movies(_user_movie_matrix(ratings[:, 0], column, movies.size), config)
    bundles = cut_into_bundles(labels, config, np.random.default_rng(config.seed))
    extra = {"n_clusters_used": int(labels.max()) + 1, "n_bundles": len(bundles)}
    return _Bundled(ratings, dropped, movies, column, bundles, extra)


def _write_bundles(out: Path, data: MovieLens100K, bundled: _Bundled, config: BundleConfig) -> None:
    """Every table of ``movielens-bundles`` (all but meta.json)."""
    _write_bundle_tables(out, data, bundled.movies, bundled.bundles)
    _write_bundle_interactions(out, bundled.ratings, bundled.bundle_of_rating, config.like_threshold)
    if config.frame_feedback:
        _write_bundle_feedback(out, bundled, config.like_threshold)


def _write_bundle_feedback(out: Path, bundled: _Bundled, like_threshold: int) -> None:
    """``frame_feedback.csv``: each poster of each (user, bundle) pair, label 1 when liked."""
    ratings, n_movies, n_bundles = bundled.ratings, bundled.movies.size, len(bundled.bundles)
    users = ratings[:, 0]
    pairs = np.unique(users.astype(np.int64) * n_bundles + bundled.bundle_of_rating)
    pair_user, pair_bundle = pairs // n_bundles, pairs % n_bundles
    members = np.concatenate(bundled.bundles)  # movie columns, bundle after bundle
    bundle_start = np.r_[0, np.cumsum([len(b) for b in bundled.bundles])]
    size = np.diff(bundle_start)[pair_bundle]  # posters of each pair's bundle
    row_pair = np.repeat(np.arange(len(pairs)), size)
    position = np.arange(len(row_pair)) - np.repeat(np.cumsum(size) - size, size)  # within the bundle
    column = members[bundle_start[pair_bundle][row_pair] + position]
    user = pair_user[row_pair]
    liked = ratings[:, 2] >= like_threshold
    liked_keys = users[liked].astype(np.int64) * n_movies + bundled.column[liked]
    label = np.isin(user * n_movies + column, liked_keys).astype(int)
    movie = bundled.movies[column]
    rows = zip(user.tolist(), pair_bundle[row_pair].tolist(), movie.tolist(), label.tolist(), strict=True)
    _write_csv(
        out / "frame_feedback.csv",
        ("user_id", "item_id", "frame_id", "label"),
        ((u, bundle_key(b), movie_key(m), y) for u, b, m, y in rows),
    )


def _write_movie_tables(out: Path, data: MovieLens100K) -> None:
    """``item_frames.csv`` (each movie with a poster is an item whose one frame is the poster)
    and ``items.csv`` (titles)."""
    titles = data.title_by_id
    keys = {movie: movie_key(movie) for movie in sorted(data.posters)}
    frames = ((k, k, str(data.posters[m]), titles[m]) for m, k in keys.items())
    _write_csv(out / "item_frames.csv", ("item_id", "frame_id", "path", "title"), frames)
    _write_csv(out / "items.csv", ("item_id", "title"), ((k, titles[m]) for m, k in keys.items()))


# ---------------------------------------------------------------- bundles


def _user_movie_matrix(users: np.ndarray, columns: np.ndarray, n_movies: int) -> sp.csr_matrix:
    """Binary ``(n_users, n_movies)`` CSR matrix; MovieLens user ids are 1-based and contiguous."""
    values = np.ones(users.size, dtype=np.float64)
    shape = (int(users.max()), n_movies)
    return sp.csr_matrix((values, (users - 1, columns)), shape=shape)


def movie_embeddings(matrix: sp.csr_matrix, config: BundleConfig) -> np.ndarray:
    """``(n_movies, n_components)`` unit-length SVD embeddings without the popularity direction.

    The leading singular vector of a non-negative rating matrix is essentially popularity;
    dropping it makes clusters group movies by *who* watches them rather than *how many*.
    """
    svd = TruncatedSVD(config.n_components + 1, random_state=config.seed)
    factors = svd.fit_transform(matrix.T.tocsr())
    return normalize(factors[:, 1:])


def cluster_movies(matrix: sp.csr_matrix, config: BundleConfig) -> np.ndarray:
    """Cluster label per movie, ``(n_movies,)``, contiguous from 0; every cluster >= min_bundle.

    Runs single-threaded: the problem is tiny, and one thread gives the same floating-point
    sums (hence the same bundles) whatever the core count, and is not slowed by a busy CPU.
    """
    n_movies = matrix.shape[1]
    if n_movies < config.min_bundle:
        raise ValueError(f"{n_movies} movies cannot fill a bundle of {config.min_bundle}")
    with threadpool_limits(limits=1):
        embeddings = movie_embeddings(matrix, config)
        kmeans = KMeans(config.n_clusters, random_state=config.seed, n_init=config.n_init)
        labels = kmeans.fit_predict(embeddings)
    labels = _merge_small_clusters(embeddings, labels, kmeans.cluster_centers_, config.min_bundle)
    return np.unique(labels, return_inverse=True)[1]


def _merge_small_clusters(embeddings: np.ndarray, labels: np.ndarray, centers: np.ndarray, min_size: int) -> np.ndarray:
    """Move the members of each too-small cluster (smallest first) to their nearest other centre."""
    labels = labels.copy()
    alive = np.ones(len(centers), dtype=bool)
    while True:
        sizes = np.where(alive, np.bincount(labels, minlength=len(centers)), np.iinfo(np.int64).max)
        smallest = int(np.argmin(sizes))
        if sizes[smallest] >= min_size:
            return labels
        alive[smallest] = False
        members = np.flatnonzero(labels == smallest)
        distances = ((embeddings[members, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        labels[members] = np.flatnonzero(alive)[np.argmin(distances[:, alive], axis=1)]


def bundle_count(n_movies: int, config: BundleConfig) -> int:
    """Bundles in an even cut of ``n_movies``: near n / bundle_size, sizes within the bounds."""
    low, high = -(-n_movies // config.max_bundle), n_movies // config.min_bundle
    return int(np.clip(round(n_movies / config.bundle_size), low, high))


def cut_into_bundles(labels: np.ndarray, config: BundleConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut every cluster, in a random order, into near-equal bundles; return them shuffled.

    Each bundle is the sorted array of its movie indices (into ``labels``).
    """
    bundles: list[np.ndarray] = []
    for cluster in range(int(labels.max()) + 1):
        members = rng.permutation(np.flatnonzero(labels == cluster))
        parts = np.array_split(members, bundle_count(members.size, config))
        bundles.extend(np.sort(part) for part in parts)
    return [bundles[i] for i in rng.permutation(len(bundles))]


def _bundle_of_movie(bundles: list[np.ndarray], n_movies: int) -> np.ndarray:
    """``(n_movies,)`` index of the bundle holding each movie."""
    bundle_of = np.empty(n_movies, dtype=np.int64)
    for index, members in enumerate(bundles):
        bundle_of[members] = index
    return bundle_of


def bundle_title(titles: Sequence[str]) -> str:
    """The first few movie titles of a bundle, e.g. ``"A / B / C + 3 more"``."""
    shown = " / ".join(titles[:_TITLES_IN_BUNDLE_NAME])
    hidden = len(titles) - _TITLES_IN_BUNDLE_NAME
    return f"{shown} + {hidden} more" if hidden > 0 else shown


def _write_bundle_tables(out: Path, data: MovieLens100K, movies: np.ndarray, bundles: list[np.ndarray]) -> None:
    """``item_frames.csv`` (a frame per poster) and ``items.csv`` (bundle titles)."""
    titles = data.title_by_id
    frames, items = [], []
    for index, members in enumerate(bundles):
        ids = movies[members].tolist()
        frames += [(bundle_key(index), movie_key(m), str(data.posters[m]), titles[m]) for m in ids]
        items.append((bundle_key(index), bundle_title([titles[m] for m in ids])))
    _write_csv(out / "item_frames.csv", ("item_id", "frame_id", "path", "title"), frames)
    _write_csv(out / "items.csv", ("item_id", "title"), items)


def _write_bundle_interactions(out: Path, ratings: np.ndarray, bundle: np.ndarray, like_threshold: int) -> None:
    """User-bundle interactions (earliest rating in the bundle), poster likes and exposures."""
    users, timestamps = ratings[:, 0], ratings[:, 3]
    order = np.lexsort((timestamps, bundle, users))
    pair = np.stack([users[order], bundle[order]], axis=1)
    first = np.concatenate([[True], (pair[1:] != pair[:-1]).any(axis=1)])
    kept = order[first]
    kept = kept[np.lexsort((bundle[kept], timestamps[kept], users[kept]))]
    _write_interactions(out, users[kept], [bundle_key(b) for b in bundle[kept]], timestamps[kept])
    liked = np.flatnonzero(ratings[:, 2] >= like_threshold)
    _write_poster_rows(out / "frame_likes.csv", users, bundle, ratings[:, 1], liked)
    _write_poster_rows(out / "frame_exposures.csv", users, bundle, ratings[:, 1], np.arange(len(ratings)))


def _write_poster_rows(path: Path, users: np.ndarray, bundle: np.ndarray, movies: np.ndarray, rows: np.ndarray) -> None:
    """(user, bundle, poster) rows of the ratings ``rows``, sorted by user, bundle and movie."""
    rows = rows[np.lexsort((movies[rows], bundle[rows], users[rows]))]
    triples = zip(users[rows].tolist(), bundle[rows].tolist(), movies[rows].tolist(), strict=True)
    _write_csv(
        path,
        ("user_id", "item_id", "frame_id"),
        ((u, bundle_key(b), movie_key(m)) for u, b, m in triples),
    )


# ---------------------------------------------------------------- shared helpers


def _drop_movies_without_poster(data: MovieLens100K) -> tuple[np.ndarray, dict[str, Any]]:
    """Ratings of movies with a poster, and a description of what was dropped (also logged)."""
    missing = np.setdiff1d(data.movie_ids, np.array(sorted(data.posters), dtype=np.int64))
    has_poster = ~np.isin(data.ratings[:, 1], missing)
    dropped = {
        "movies_without_poster": int(missing.size),
        "interactions": int((~has_poster).sum()),
        "movie_ids": missing.tolist(),
    }
    logger.info(
        "dropped %d movies without a poster and their %d ratings",
        dropped["movies_without_poster"],
        dropped["interactions"],
    )
    return data.ratings[has_poster], dropped


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A CSV table with a header row (titles with commas or quotes are quoted)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_interactions(out: Path, users: np.ndarray, items: Sequence[str], timestamps: np.ndarray) -> None:
    """``interactions.csv`` with integer Unix timestamps."""
    rows = zip(users.tolist(), items, timestamps.tolist(), strict=True)
    _write_csv(out / "interactions.csv", ("user_id", "item_id", "timestamp"), rows)


def _write_meta(
    out: Path,
    builder: str,
    parameters: dict[str, Any],
    seed: int | None,
    data: MovieLens100K,
    dropped: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """``meta.json``: builder, parameters, seed, sources with checksums, drops and statistics."""
    meta = {
        "builder": builder,
        "parameters": parameters,
        "seed": seed,
        "jifr_version": jifr.__version__,
        "source": {
            "dataset": "MovieLens-100K with TMDB posters",
            "mirror": str(data.dataset_dir),
            "sha256": data.checksums,
            "official_sha256": data.checksums == ML100K_SHA256,
            "posters": len(data.posters),
            "citation": CITATION,
        },
        "dropped": dropped,
        "statistics": dataset_statistics(out) | extra,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- statistics


def read_table(directory: str | Path, stem: str) -> pa.Table | None:
    """``<stem>.{csv,tsv,parquet}`` of a dataset directory with ids as strings, or None."""
    for suffix in _TABLE_SUFFIXES:
        path = Path(directory) / f"{stem}{suffix}"
        if not path.is_file():
            continue
        if suffix == ".parquet":
            return pq.read_table(path)
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(_ID_COLUMNS, pa.string())),
        )
    return None


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A column as a NumPy array of strings."""
    return np.asarray(table.column(name).cast(pa.string()).to_pylist(), dtype=object)


def _pair_keys(table: pa.Table) -> np.ndarray:
    """``(n_rows,)`` strings ``"<user_id>\t<item_id>"``, one per row."""
    pairs = zip(_column(table, "user_id"), _column(table, "item_id"), strict=True)
    return np.array([f"{user}\t{item}" for user, item in pairs])


def dataset_statistics(out_dir: str | Path) -> dict[str, Any]:
    """Counts of a dataset directory, as the paper's section 4 reports its Douban data.

    Keys: users, items, interactions, frames, frames_per_item (mean/min/max), frame_likes,
    pairs_with_likes and pairs_with_informative_likes (liked frames a strict subset of the
    item's frames: the pairs on which key-frame ranking is not trivially perfect), density; with
    a ``frame_exposures`` table also frame_exposures and pairs_with_exposure_contrast (two or
    more exposed frames, some but not all liked: the pairs ``keyframe_exposed`` ranks).
    """
    interactions, frames = read_table(out_dir, "interactions"), read_table(out_dir, "item_frames")
    if interactions is None or frames is None:
        raise FileNotFoundError(f"{out_dir}: needs interactions and item_frames tables")
    pairs = np.unique(_pair_keys(interactions))
    items, per_item = np.unique(_column(frames, "item_id"), return_counts=True)
    n_users = np.unique(_column(interactions, "user_id")).size
    statistics: dict[str, Any] = {
        "users": n_users,
        "items": int(items.size),
        "interactions": int(pairs.size),
        "frames": int(frames.num_rows),
        "frames_per_item": {
            "mean": round(float(per_item.mean()), 4),
            "min": int(per_item.min()),
            "max": int(per_item.max()),
        },
        "density": round(pairs.size / (n_users * items.size), 6),
    }
    frames_of = dict(zip(items.tolist(), per_item.tolist(), strict=True))
    likes = read_table(out_dir, "frame_likes")
    statistics |= _like_statistics(likes, frames_of)
    exposures = read_table(out_dir, "frame_exposures")
    return statistics if exposures is None else statistics | _exposure_statistics(exposures, likes)


def _exposure_statistics(exposures: pa.Table, likes: pa.Table | None) -> dict[str, Any]:
    """Frame exposures, and the (user, item) pairs with two or more exposed frames, some liked
    and some not."""
    pairs, exposed = np.unique(_pair_keys(exposures), return_counts=True)
    liked = np.zeros(pairs.size, dtype=np.int64)
    if likes is not None and likes.num_rows and pairs.size:
        liked_pairs, counts = np.unique(_pair_keys(likes), return_counts=True)
        where = np.searchsorted(pairs, liked_pairs).clip(max=pairs.size - 1)
        found = pairs[where] == liked_pairs
        liked[where[found]] = counts[found]
    contrast = (exposed >= 2) & (liked > 0) & (liked < exposed)
    return {"frame_exposures": int(exposures.num_rows), "pairs_with_exposure_contrast": int(contrast.sum())}


def _like_statistics(likes: pa.Table | None, frames_of: dict[str, int]) -> dict[str, Any]:
    """Frame likes, (user, item) pairs with likes, and those liking a strict subset of frames."""
    if likes is None or likes.num_rows == 0:
        return {
            "frame_likes": 0,
            "pairs_with_likes": 0,
            "pairs_with_informative_likes": 0,
            "likes_per_pair_mean": 0.0,
        }
    pairs, counts = np.unique(_pair_keys(likes), return_counts=True)
    totals = np.array([frames_of[pair.split("\t")[1]] for pair in pairs.tolist()])
    return {
        "frame_likes": int(likes.num_rows),
        "pairs_with_likes": int(pairs.size),
        "pairs_with_informative_likes": int((counts < totals).sum()),
        "likes_per_pair_mean": round(float(counts.mean()), 4),
    }
