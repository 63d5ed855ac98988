"""movielens-bundles-planted: the bundles dataset with planted poster likes, read from the mirror."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from jifr.cli import app
from jifr.datasets.cli import datasets_app
from jifr.datasets.mirror import load_movielens_100k
from jifr.datasets.movielens import BundleConfig, _bundle_movies, _Bundled, build_movielens_bundles
from jifr.datasets.planted import build_movielens_bundles_planted, plant_likes, poster_descriptors, user_tastes

pytestmark = pytest.mark.real_data
SAME_TABLES = ("interactions.csv", "item_frames.csv", "items.csv", "frame_exposures.csv")


@pytest.fixture(scope="module")
def planted_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_movielens_bundles_planted(mirror, tmp_path_factory.mktemp("planted") / "d", taste=0.5)


@pytest.fixture(scope="module")
def bundles_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_movielens_bundles(mirror, tmp_path_factory.mktemp("bundles") / "d")


@pytest.fixture(scope="module")
def parts(mirror: Path) -> tuple[_Bundled, np.ndarray]:
    data = load_movielens_100k(mirror)
    bundled = _bundle_movies(data, BundleConfig())
    return bundled, poster_descriptors([data.posters[m] for m in bundled.movies.tolist()])


def rows(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(r["user_id"], r["item_id"], r["frame_id"]) for r in csv.DictReader(handle)]


def liked_by_pair(bundled: _Bundled, liked_rows: np.ndarray) -> dict[tuple[int, int], int]:
    """(user, bundle index) -> liked movie id; asserts one like per pair."""
    bundle = bundled.bundle_of_rating
    pairs = {(int(bundled.ratings[r, 0]), int(bundle[r])): int(bundled.ratings[r, 1]) for r in liked_rows}
    assert len(pairs) == liked_rows.size
    return pairs


def test_build_is_deterministic_and_only_frame_likes_differ(
    mirror: Path, planted_dir: Path, bundles_dir: Path, tmp_path: Path
) -> None:
    again = build_movielens_bundles_planted(mirror, tmp_path / "again", taste=0.5)
    for name in (*SAME_TABLES, "frame_likes.csv", "meta.json"):
        assert (again / name).read_bytes() == (planted_dir / name).read_bytes(), name
    for name in SAME_TABLES:
        assert (planted_dir / name).read_bytes() == (bundles_dir / name).read_bytes(), name
    assert (planted_dir / "frame_likes.csv").read_bytes() != (bundles_dir / "frame_likes.csv").read_bytes()
    meta = json.loads((planted_dir / "meta.json").read_text())
    assert meta["builder"] == "movielens-bundles-planted" and meta["seed"] == 0
    assert meta["parameters"]["taste"] == 0.5 and meta["parameters"]["taste_vectors"] == "not stored"
    statistics = meta["statistics"]
    assert statistics["planted_by_taste"] + statistics["planted_by_popularity"] == statistics["interactions"]
    assert 0.45 < statistics["planted_by_taste"] / statistics["interactions"] < 0.55


def test_one_like_per_pair_and_every_like_is_an_exposure(planted_dir: Path) -> None:
    likes = rows(planted_dir / "frame_likes.csv")
    exposures = set(rows(planted_dir / "frame_exposures.csv"))
    assert set(likes) <= exposures
    frames_of: dict[str, set[str]] = defaultdict(set)
    with (planted_dir / "item_frames.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            frames_of[row["item_id"]].add(row["frame_id"])
    assert all(frame in frames_of[item] for _, item, frame in likes)
    with (planted_dir / "interactions.csv").open() as handle:
        interacted = [(r["user_id"], r["item_id"]) for r in csv.DictReader(handle)]
    assert sorted((u, i) for u, i, _ in likes) == sorted(interacted)


def test_full_taste_likes_the_taste_argmax(parts: tuple[_Bundled, np.ndarray]) -> None:
    bundled, descriptors = parts
    liked, counts = plant_likes(bundled, descriptors, 4, 1.0, seed=0, taste_seed=3, noise=0.5)
    assert counts["planted_by_taste"] == counts["planted_pairs"] == liked.size
    # Brute force: recompute tastes and appeals, then take each pair's best exposed poster.
    rng = np.random.default_rng(3)
    projection = rng.standard_normal((descriptors.shape[1], 32)) / np.sqrt(descriptors.shape[1])
    appeal = descriptors @ projection
    tastes = user_tastes(bundled, appeal, 4, rng, 0.5)
    appeal /= np.linalg.norm(appeal, axis=1, keepdims=True)
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for (user, movie, _, _), column, bundle in zip(
        bundled.ratings.tolist(), bundled.column.tolist(), bundled.bundle_of_rating.tolist(), strict=True
    ):
        score = float(tastes[user - 1] @ appeal[column])
        key = (user, bundle)
        if key not in best or (-score, movie) < (-best[key][0], best[key][1]):
            best[key] = (score, movie)
    assert liked_by_pair(bundled, liked) == {key: movie for key, (_, movie) in best.items()}


def test_zero_taste_depends_on_popularity_only(parts: tuple[_Bundled, np.ndarray]) -> None:
    bundled, descriptors = parts
    zero = [plant_likes(bundled, descriptors, 4, 0.0, seed=0, taste_seed=s, noise=0.5)[0] for s in (0, 1)]
    assert np.array_equal(zero[0], zero[1])
    full = [plant_likes(bundled, descriptors, 4, 1.0, seed=0, taste_seed=s, noise=0.5)[0] for s in (0, 1)]
    assert not np.array_equal(full[0], full[1])
    # Popularity draws favour the movie most often rated >= 4 among a pair's exposed posters.
    popularity = np.bincount(bundled.column[bundled.ratings[:, 2] >= 4], minlength=bundled.movies.size)
    movie_popularity = dict(zip(bundled.movies.tolist(), popularity.tolist(), strict=True))
    exposed: dict[tuple[int, int], list[int]] = defaultdict(list)
    for (user, movie, _, _), bundle in zip(bundled.ratings.tolist(), bundled.bundle_of_rating.tolist(), strict=True):
        exposed[(user, bundle)].append(movie_popularity[movie])
    liked = liked_by_pair(bundled, zero[0])
    contested = [key for key, counts in exposed.items() if len(counts) >= 2]
    top = np.mean([movie_popularity[liked[key]] == max(exposed[key]) for key in contested])
    assert top > 0.5


@pytest.fixture
def cli() -> typer.Typer:
    datasets = typer.Typer()
    datasets.add_typer(datasets_app, name="datasets")
    return datasets


@pytest.mark.parametrize("taste", ["1.5", "-0.1"])
def test_out_of_range_taste_is_rejected(cli: typer.Typer, mirror: Path, tmp_path: Path, taste: str) -> None:
    arguments = ["datasets", "build", "movielens-bundles-planted", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*arguments, "--mirror", str(mirror), "--taste", taste])
    assert result.exit_code == 2 and "--taste must be between 0 and 1" in result.output
    assert not (tmp_path / "o").exists()
    result = CliRunner().invoke(cli, [*arguments, "--mirror", str(mirror), "--bundle-size", "5"])
    assert result.exit_code == 2 and "does not apply" in result.output


def _prepare(directory: Path, out: Path) -> dict:
    """``jifr prepare`` on ``directory`` with random features; returns its arrays."""
    with (directory / "item_frames.csv").open(encoding="utf-8", newline="") as handle:
        frames = [r["frame_id"] for r in csv.DictReader(handle)]
    np.save(directory / "frame_features.npy", np.random.default_rng(0).random((len(frames), 4), dtype=np.float32))
    (directory / "frame_features.ids.txt").write_text("\n".join(frames) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["prepare", str(directory), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out / "arrays.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


def test_prepares_like_movielens_bundles(planted_dir: Path, bundles_dir: Path, tmp_path: Path) -> None:
    planted, bundles = _prepare(planted_dir, tmp_path / "planted"), _prepare(bundles_dir, tmp_path / "bundles")
    for part in ("train", "valid", "test"):
        for column in ("users", "items"):
            assert np.array_equal(planted[f"{part}_{column}"], bundles[f"{part}_{column}"])
    assert planted["likes_users"].size == sum(planted[f"{part}_users"].size for part in ("train", "valid", "test"))
    assert np.array_equal(planted["exposures_frames"], bundles["exposures_frames"])
