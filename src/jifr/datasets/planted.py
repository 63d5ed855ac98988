"""``movielens-bundles-planted``: MovieLens-Bundles with planted frame likes of known strength.

Every table but ``frame_likes.csv`` is that of ``movielens-bundles``; the likes mix a hidden,
per-user visual taste with poster popularity at strength ``taste``, so the key-frame protocols
can show when a model's key frames become personal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.preprocessing import normalize

from jifr.datasets.mirror import load_movielens_100k
from jifr.datasets.movielens import (
    PLANTED_BUILDER,
    BundleConfig,
    _bundle_movies,
    _Bundled,
    _write_bundles,
    _write_meta,
    _write_poster_rows,
)
from jifr.outputs import staged_directory


def build_movielens_bundles_planted(
    mirror: str | Path | None,
    out_dir: str | Path,
    taste: float = 0.5,
    seed: int = 0,
    taste_seed: int | None = None,
    noise: float = 0.5,
    *,
    force: bool = False,
) -> Path:
    """Write ``movielens-bundles`` (default bundles) with planted frame likes of known strength.

    Every table but ``frame_likes.csv`` is that of ``movielens-bundles``. Each user has a hidden
    visual taste: the normalised mean, over the posters of the movies they rated
    ``>= like_threshold``, of a seeded random projection of a descriptor of the poster image
    (``poster_descriptors``), plus Gaussian noise of relative size ``noise``; a poster's appeal
    is its projected descriptor. For each (user, bundle) pair, one of the posters the user
    rated there (their exposures; there is always at least one) is liked: with probability
    ``taste`` the one of highest taste . appeal, otherwise one drawn with probability
    proportional to its movie's count of ratings ``>= like_threshold`` (uniform when all are 0).
    ``taste_seed`` (default ``seed``) draws the projection and the noise; ``seed`` draws the
    choice and the popularity draw of every pair, so with ``taste == 0`` the likes depend on
    popularity and ``seed`` only. The taste vectors are not stored. Returns ``out_dir``.
    """
    if not 0.0 <= taste <= 1.0:  # also rejects NaN
        raise ValueError(f"--taste must be between 0 and 1, got {taste}")
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    taste_seed = seed if taste_seed is None else taste_seed
    config = BundleConfig()
    data = load_movielens_100k(mirror)
    bundled = _bundle_movies(data, config)
    with staged_directory(out_dir, "dataset", force=force, inputs=[data.dataset_dir]) as out:
        _write_bundles(out, data, bundled, config)
        descriptors = poster_descriptors([data.posters[m] for m in bundled.movies.tolist()])
        rows, counts = plant_likes(bundled, descriptors, config.like_threshold, taste, seed, taste_seed, noise)
        ratings, bundle = bundled.ratings, bundled.bundle_of_rating
        _write_poster_rows(out / "frame_likes.csv", ratings[:, 0], bundle, ratings[:, 1], rows)
        parameters = {
            "taste": taste,
            "seed": seed,
            "taste_seed": taste_seed,
            "noise": noise,
            "projection_dim": _TASTE_DIM,
            "descriptor": "poster image as a 4x4 RGB thumbnail (48 values), standardised over posters",
            "taste_vectors": "not stored",
            "bundles": asdict(config),
        }
        _write_meta(out, PLANTED_BUILDER, parameters, seed, data, bundled.dropped, bundled.extra | counts)
    return Path(out_dir)


_TASTE_DIM = 32
_THUMBNAIL = (4, 4)


def poster_descriptors(paths: Sequence[Path]) -> np.ndarray:
    """``(n, 48)`` descriptor per poster image: its 4x4 RGB thumbnail (box-averaged), each
    value standardised over the posters."""
    from PIL import Image

    values = np.empty((len(paths), 3 * _THUMBNAIL[0] * _THUMBNAIL[1]), dtype=np.float64)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft("RGB", (8 * _THUMBNAIL[0], 8 * _THUMBNAIL[1]))
            thumbnail = image.convert("RGB").resize(_THUMBNAIL, Image.Resampling.BOX)
            values[index] = np.asarray(thumbnail, dtype=np.float64).ravel()
    return (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-9)


def user_tastes(
    bundled: _Bundled, appeal: np.ndarray, like_threshold: int, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """``(max user id, dim)`` unit taste per user (row ``user - 1``): the normalised mean appeal
    of the posters they rated ``>= like_threshold``, plus noise of norm about ``noise``."""
    users = bundled.ratings[:, 0]
    n_users, dim = int(users.max()), appeal.shape[1]
    liked = bundled.ratings[:, 2] >= like_threshold
    sums = np.zeros((n_users, dim))
    np.add.at(sums, users[liked] - 1, appeal[bundled.column[liked]])
    return normalize(normalize(sums) + noise * rng.standard_normal((n_users, dim)) / np.sqrt(dim))


def plant_likes(
    bundled: _Bundled,
    descriptors: np.ndarray,
    like_threshold: int,
    taste: float,
    seed: int,
    taste_seed: int,
    noise: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The rating rows whose posters are liked (one per user-bundle pair), and their counts."""
    taste_rng = np.random.default_rng(taste_seed)
    projection = taste_rng.standard_normal((descriptors.shape[1], _TASTE_DIM)) / np.sqrt(descriptors.shape[1])
    appeal = descriptors @ projection
    tastes = user_tastes(bundled, appeal, like_threshold, taste_rng, noise)
    appeal = normalize(appeal)

    ratings, bundle = bundled.ratings, bundled.bundle_of_rating
    order = np.lexsort((ratings[:, 1], bundle, ratings[:, 0]))  # exposures by user, bundle, movie
    users, pairs = ratings[order, 0], bundle[order]
    new_pair = np.concatenate([[True], (users[1:] != users[:-1]) | (pairs[1:] != pairs[:-1])])
    starts = np.flatnonzero(new_pair)
    group = np.cumsum(new_pair) - 1
    sizes = np.diff(np.append(starts, order.size))

    score = np.einsum("ij,ij->i", tastes[users - 1], appeal[bundled.column[order]])
    by_score = np.lexsort((ratings[order, 1], -score, group))  # best score first, ties: lowest movie id
    taste_pick = by_score[starts]

    liked = ratings[:, 2] >= like_threshold
    popularity = np.bincount(bundled.column[liked], minlength=bundled.movies.size)
    weight = popularity[bundled.column[order]].astype(np.float64)
    total = np.add.reduceat(weight, starts)
    weight[(total == 0)[group]] = 1.0  # no popular poster: uniform
    total = np.add.reduceat(weight, starts)
    cumulative = np.cumsum(weight)
    within = cumulative - (cumulative[starts] - weight[starts])[group]

    draw_rng = np.random.default_rng(seed)
    coin, draw = draw_rng.random(starts.size), draw_rng.random(starts.size)
    below = np.add.reduceat((within <= (draw * total)[group]).astype(np.int64), starts)
    popularity_pick = starts + np.minimum(below, sizes - 1)
    by_taste = coin < taste
    counts = {
        "planted_pairs": int(starts.size),
        "planted_by_taste": int(by_taste.sum()),
        "planted_by_popularity": int((~by_taste).sum()),
        "planted_pairs_with_one_exposure": int((sizes == 1).sum()),
    }
    return order[np.where(by_taste, taste_pick, popularity_pick)], counts
