"""MovieLens-100K builders, read from the real mirror (never copied into the repository).

Real-data tests skip with a reason when the mirror is absent, unless JIFR_REQUIRE_MIRROR=1.
Expected values are re-derived from the raw files with plain Python (brute-force references).
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import spearmanr
from typer.testing import CliRunner

from jifr.datasets.cli import datasets_app
from jifr.datasets.mirror import (
    MIRROR_DIRNAME,
    MirrorNotFoundError,
    download_movielens_100k,
    find_mirror,
    load_movielens_100k,
)
from jifr.datasets.movielens import (
    BundleConfig,
    _merge_small_clusters,
    build_movielens_100k_posters,
    build_movielens_bundles,
    bundle_count,
    bundle_title,
    dataset_statistics,
)
from jifr.errors import DataError
from jifr.outputs import OutputError

real_data = pytest.mark.real_data
N_POSTERS = 1_663


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw(mirror: Path) -> dict[str, object]:
    """Plain-Python reading of the mirror: ratings, poster movie ids, titles, genres."""
    ratings = [tuple(map(int, line.split("\t"))) for line in (mirror / "u.data").open()]
    items = [line.split("|") for line in (mirror / "u.item").read_text("latin-1").splitlines()]
    posters = {int(p.stem) for p in (mirror / "posters").glob("*.jpg")}
    return {
        "ratings": ratings,
        "posters": posters,
        "titles": {int(f[0]): f[1] for f in items},
        "genres": {int(f[0]): np.array(f[5:], dtype=int) for f in items},
    }


@pytest.fixture(scope="module")
def posters_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_movielens_100k_posters(mirror, tmp_path_factory.mktemp("posters"))


@pytest.fixture(scope="module")
def bundles_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_movielens_bundles(mirror, tmp_path_factory.mktemp("bundles"))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def bundle_members(directory: Path) -> dict[str, list[int]]:
    """Bundle id -> movie ids, from item_frames.csv."""
    members: dict[str, list[int]] = defaultdict(list)
    for row in rows(directory / "item_frames.csv"):
        members[row["item_id"]].append(int(row["frame_id"].removeprefix("m")))
    return dict(members)


# ---------------------------------------------------------------- mirror


def test_missing_mirror_names_where_it_looked_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MirrorNotFoundError) as error:
        find_mirror(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert "--mirror" in message and "JIFR_MIRROR" in message


def test_env_var_is_used_and_never_silently_bypassed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIFR_MIRROR", str(tmp_path))
    with pytest.raises(MirrorNotFoundError, match=r"\$JIFR_MIRROR"):
        find_mirror()


@real_data
def test_mirror_accepts_parent_or_dataset_folder(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_mirror(mirror.parent) == mirror
    assert find_mirror(mirror) == mirror
    monkeypatch.setenv("JIFR_MIRROR", str(mirror.parent))
    assert find_mirror() == mirror


@real_data
def test_truncated_ratings_are_rejected(mirror: Path, tmp_path: Path) -> None:
    broken = tmp_path / MIRROR_DIRNAME
    broken.mkdir()
    (broken / "u.item").write_bytes((mirror / "u.item").read_bytes())
    (broken / "u.data").write_text("1\t1\t5\t881250949\n")
    with pytest.raises(DataError, match="100000 rows"):
        load_movielens_100k(tmp_path)


def _zip_of(mirror: Path, path: Path, tamper: bool = False) -> Path:
    """An ml-100k.zip lookalike in a temporary folder (nothing is written to the repository)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("u.data", "u.item", "u.genre", "u.user", "README"):
            data = (mirror / name).read_bytes()
            archive.writestr(f"ml-100k/{name}", data + (b"x" if tamper and name == "u.data" else b""))
    return path


@real_data
def test_download_extracts_and_verifies_checksums(mirror: Path, tmp_path: Path) -> None:
    archive = _zip_of(mirror, tmp_path / "ml-100k.zip")
    dataset_dir = download_movielens_100k(tmp_path / "dest", url=archive.as_uri())
    assert dataset_dir == tmp_path / "dest" / MIRROR_DIRNAME
    assert find_mirror(tmp_path / "dest") == dataset_dir.resolve()
    assert (dataset_dir / "posters").is_dir()
    tampered = _zip_of(mirror, tmp_path / "bad.zip", tamper=True)
    with pytest.raises(DataError, match="SHA-256"):
        download_movielens_100k(tmp_path / "bad", url=tampered.as_uri())


# ---------------------------------------------------------------- posters benchmark


@real_data
def test_posters_counts(posters_dir: Path, raw: dict) -> None:
    kept = [r for r in raw["ratings"] if r[1] in raw["posters"]]
    statistics = dataset_statistics(posters_dir)
    assert (statistics["users"], statistics["items"], statistics["frames"]) == (
        943,
        N_POSTERS,
        N_POSTERS,
    )
    assert statistics["interactions"] == len(kept) == 99_815
    meta = json.loads((posters_dir / "meta.json").read_text())
    assert meta["builder"] == "movielens-100k-posters"
    assert meta["dropped"]["movies_without_poster"] == 1_682 - N_POSTERS == 19
    assert meta["dropped"]["interactions"] == 100_000 - len(kept)
    assert meta["source"]["official_sha256"] is True
    assert meta["statistics"] == statistics


@real_data
def test_posters_titles_paths_and_timestamps(posters_dir: Path, raw: dict) -> None:
    frames = {row["item_id"]: row for row in rows(posters_dir / "item_frames.csv")}
    assert frames["m1"]["title"] == "Toy Story (1995)"
    assert frames["m50"]["title"] == "Star Wars (1977)"
    assert frames["m1"]["frame_id"] == "m1"
    assert all(Path(f["path"]).is_absolute() and Path(f["path"]).is_file() for f in frames.values())
    timestamps = {(r[0], r[1]): r[3] for r in raw["ratings"]}
    for row in rows(posters_dir / "interactions.csv")[:500]:
        key = (int(row["user_id"]), int(row["item_id"].removeprefix("m")))
        assert int(row["timestamp"]) == timestamps[key]


# ---------------------------------------------------------------- bundles benchmark


@real_data
def test_bundles_are_deterministic(mirror: Path, bundles_dir: Path, tmp_path: Path) -> None:
    again = build_movielens_bundles(mirror, tmp_path / "again")
    for name in (
        "interactions.csv",
        "item_frames.csv",
        "items.csv",
        "frame_likes.csv",
        "frame_exposures.csv",
        "meta.json",
    ):
        assert (again / name).read_bytes() == (bundles_dir / name).read_bytes(), name


@real_data
def test_every_poster_in_exactly_one_bundle_of_4_to_8(bundles_dir: Path, raw: dict) -> None:
    members = bundle_members(bundles_dir)
    assert all(4 <= len(movies) <= 8 for movies in members.values())
    flat = [movie for movies in members.values() for movie in movies]
    assert len(flat) == len(set(flat)) and set(flat) == raw["posters"]
    assert set(members) == {f"b{k}" for k in range(len(members))}


@real_data
def test_interactions_match_brute_force(bundles_dir: Path, raw: dict) -> None:
    bundle_of = {m: b for b, movies in bundle_members(bundles_dir).items() for m in movies}
    expected: dict[tuple[str, str], int] = {}
    for user, movie, _, timestamp in raw["ratings"]:
        if movie in bundle_of:
            key = (str(user), bundle_of[movie])
            expected[key] = min(timestamp, expected.get(key, timestamp))
    got = {(r["user_id"], r["item_id"]): int(r["timestamp"]) for r in rows(bundles_dir / "interactions.csv")}
    assert got == expected
    # hand check: user 1 rated Toy Story (movie 1) 5 stars at 874965758 (u.data)
    assert got[("1", bundle_of[1])] <= 874965758
    likes = {(r["user_id"], r["frame_id"]) for r in rows(bundles_dir / "frame_likes.csv")}
    assert ("1", "m1") in likes


@real_data
def test_frame_likes_are_rated_at_threshold_in_interacted_bundles(bundles_dir: Path, raw: dict) -> None:
    bundle_of = {m: b for b, movies in bundle_members(bundles_dir).items() for m in movies}
    expected = {(str(u), bundle_of[m], f"m{m}") for u, m, r, _ in raw["ratings"] if r >= 4 and m in bundle_of}
    likes = {(r["user_id"], r["item_id"], r["frame_id"]) for r in rows(bundles_dir / "frame_likes.csv")}
    assert likes == expected
    interacted = {(r["user_id"], r["item_id"]) for r in rows(bundles_dir / "interactions.csv")}
    assert {(u, b) for u, b, _ in likes} <= interacted


@real_data
def test_frame_exposures_are_every_rating_and_hold_every_like(bundles_dir: Path, posters_dir: Path, raw: dict) -> None:
    bundle_of = {m: b for b, movies in bundle_members(bundles_dir).items() for m in movies}
    exposures = [(r["user_id"], r["item_id"], r["frame_id"]) for r in rows(bundles_dir / "frame_exposures.csv")]
    expected = {(str(u), bundle_of[m], f"m{m}") for u, m, _, _ in raw["ratings"] if m in bundle_of}
    assert len(exposures) == len(set(exposures)) and set(exposures) == expected
    likes = [(r["user_id"], r["item_id"], r["frame_id"]) for r in rows(bundles_dir / "frame_likes.csv")]
    assert set(likes) <= set(exposures)
    interacted = {(r["user_id"], r["item_id"]) for r in rows(bundles_dir / "interactions.csv")}
    assert {(u, b) for u, b, _ in exposures} == interacted

    # Sorted like frame_likes.csv: by user, bundle and movie (numerically).
    def key(row: tuple[str, str, str]) -> tuple[int, int, int]:
        return int(row[0]), int(row[1].removeprefix("b")), int(row[2].removeprefix("m"))

    assert exposures == sorted(exposures, key=key) and likes == sorted(likes, key=key)
    statistics = json.loads((bundles_dir / "meta.json").read_text())["statistics"]
    assert statistics["frame_exposures"] == len(expected)
    assert 0 < statistics["pairs_with_exposure_contrast"] <= statistics["pairs_with_informative_likes"]
    assert not list(posters_dir.glob("frame_exposures.*"))
    assert "frame_exposures" not in json.loads((posters_dir / "meta.json").read_text())["statistics"]


@real_data
def test_frame_feedback_logs_every_poster_of_every_pair(
    mirror: Path, bundles_dir: Path, tmp_path: Path, raw: dict
) -> None:
    logged = build_movielens_bundles(mirror, tmp_path / "logged", frame_feedback=True)
    for name in ("interactions.csv", "item_frames.csv", "frame_likes.csv", "frame_exposures.csv"):
        assert (logged / name).read_bytes() == (bundles_dir / name).read_bytes(), name
    assert not list(bundles_dir.glob("frame_feedback.*"))  # only on request
    members = bundle_members(bundles_dir)
    interacted = {(r["user_id"], r["item_id"]) for r in rows(bundles_dir / "interactions.csv")}
    feedback = [(r["user_id"], r["item_id"], r["frame_id"], r["label"]) for r in rows(logged / "frame_feedback.csv")]
    expected_rows = {(u, b, f"m{m}") for u, b in interacted for m in members[b]}
    assert len(feedback) == len(expected_rows) and {f[:3] for f in feedback} == expected_rows
    liked = {(str(u), f"m{m}") for u, m, r, _ in raw["ratings"] if r >= 4}
    assert all(label == str(int((user, frame) in liked)) for user, _, frame, label in feedback)
    assert json.loads((logged / "meta.json").read_text())["parameters"]["frame_feedback"] is True


@real_data
def test_bundle_statistics_in_meta(bundles_dir: Path) -> None:
    meta = json.loads((bundles_dir / "meta.json").read_text())
    statistics = meta["statistics"]
    assert meta["builder"] == "movielens-bundles" and meta["seed"] == 0
    assert meta["parameters"]["bundle_size"] == 6 and meta["parameters"]["like_threshold"] == 4
    assert statistics["frames"] == N_POSTERS and statistics["users"] == 943
    assert 0 < statistics["pairs_with_informative_likes"] <= statistics["pairs_with_likes"]
    assert statistics["pairs_with_likes"] <= statistics["interactions"]
    assert 5.0 <= statistics["frames_per_item"]["mean"] <= 7.0


@real_data
def test_bundle_order_is_not_popularity(bundles_dir: Path) -> None:
    users_of: dict[str, set[str]] = defaultdict(set)
    for row in rows(bundles_dir / "interactions.csv"):
        users_of[row["item_id"]].add(row["user_id"])
    popularity = [len(users_of[f"b{k}"]) for k in range(len(users_of))]
    rho = spearmanr(np.arange(len(popularity)), popularity)[0]
    assert abs(rho) < 0.2


def _genre_coherence(groups: list[list[int]], genres: dict[int, np.ndarray]) -> float:
    """Mean over groups of the mean pairwise Jaccard similarity of genre flags."""
    scores = []
    for group in groups:
        flags = np.stack([genres[m] for m in group])
        shared = flags @ flags.T
        union = flags.sum(1)[:, None] + flags.sum(1)[None, :] - shared
        jaccard = shared / np.maximum(union, 1)
        scores.append((jaccard.sum() - np.trace(jaccard)) / (len(group) * (len(group) - 1)))
    return float(np.mean(scores))


@real_data
def test_bundles_are_more_genre_coherent_than_random(bundles_dir: Path, raw: dict) -> None:
    groups = list(bundle_members(bundles_dir).values())
    shuffled = np.random.default_rng(0).permutation(sorted(raw["posters"])).tolist()
    cuts = np.cumsum([len(g) for g in groups])[:-1]
    random_groups = [part.tolist() for part in np.split(np.array(shuffled), cuts)]
    bundled = _genre_coherence(groups, raw["genres"])
    assert bundled > 1.3 * _genre_coherence(random_groups, raw["genres"])


@real_data
def test_refuses_to_overwrite_an_earlier_build(mirror: Path, bundles_dir: Path) -> None:
    # a build never mixes with an earlier one (stale frame_likes.csv would point at b<k> items)
    before = sorted(p.name for p in bundles_dir.iterdir())
    with pytest.raises(OutputError, match="already holds a jifr dataset output; pass --force"):
        build_movielens_100k_posters(mirror, bundles_dir)
    assert sorted(p.name for p in bundles_dir.iterdir()) == before


@real_data
def test_refuses_a_foreign_directory_and_the_mirror(mirror: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="was not written by jifr"):
        build_movielens_bundles(mirror, foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(OutputError, match="holds, the input"):
        build_movielens_100k_posters(mirror, mirror.parent, force=True)


# ---------------------------------------------------------------- pure pieces


@given(
    min_bundle=st.integers(1, 6),
    extra=st.integers(0, 6),
    n_movies=st.integers(1, 500),
    data=st.data(),
)
def test_even_cut_respects_bounds(min_bundle: int, extra: int, n_movies: int, data) -> None:
    max_bundle = 2 * min_bundle - 1 + extra
    size = data.draw(st.integers(min_bundle, max_bundle))
    config = BundleConfig(bundle_size=size, min_bundle=min_bundle, max_bundle=max_bundle)
    if n_movies >= min_bundle:
        parts = np.array_split(np.arange(n_movies), bundle_count(n_movies, config))
        assert all(min_bundle <= part.size <= max_bundle for part in parts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_bundle": 5, "bundle_size": 4},
        {"min_bundle": 4, "max_bundle": 6},
        {"like_threshold": 6},
        {"n_clusters": 0},
    ],
)
def test_bad_bundle_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BundleConfig(**kwargs)


def test_small_cluster_joins_nearest_centre() -> None:
    embeddings = np.array([[0.0], [0.1], [0.2], [0.3], [0.9], [5.0], [5.1], [5.2], [5.3]])
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 2, 2])
    centers = np.array([[0.15], [0.9], [5.15]])
    merged = _merge_small_clusters(embeddings, labels, centers, min_size=4)
    assert merged.tolist() == [0, 0, 0, 0, 0, 2, 2, 2, 2]


def test_bundle_title_shows_three_titles() -> None:
    assert bundle_title(["A", "B"]) == "A / B"
    assert bundle_title(["A", "B", "C", "D", "E"]) == "A / B / C + 2 more"


def test_statistics_exact_on_a_tiny_directory(tmp_path: Path) -> None:
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n07,a\n7,a\n7,b\n7,b\n")
    (tmp_path / "item_frames.csv").write_text("item_id,frame_id\na,1\na,2\nb,3\n")
    (tmp_path / "frame_likes.csv").write_text("user_id,item_id,frame_id\n07,a,1\n7,a,1\n7,a,2\n")
    statistics = dataset_statistics(tmp_path)
    assert statistics["users"] == 2  # "07" and "7" are different ids
    assert statistics["interactions"] == 3  # duplicate (7, b) counted once
    assert statistics["density"] == pytest.approx(3 / 4)
    assert statistics["frames_per_item"] == {"mean": 1.5, "min": 1, "max": 2}
    assert statistics["pairs_with_likes"] == 2
    assert statistics["pairs_with_informative_likes"] == 1  # user 7 liked both frames of a


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(datasets_app, name="datasets")
    return app


@real_data
def test_cli_builds_and_describes(cli: typer.Typer, mirror: Path, tmp_path: Path) -> None:
    runner, out = CliRunner(), tmp_path / "bundles"
    arguments = [
        "datasets",
        "build",
        "movielens-bundles",
        "--out",
        str(out),
        "--mirror",
        str(mirror),
    ]
    result = runner.invoke(cli, [*arguments, "--seed", "1", "--bundle-size", "5", "--like-threshold", "5"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parameters"] | {"seed": 1, "bundle_size": 5, "like_threshold": 5} == meta["parameters"]
    result = runner.invoke(cli, ["datasets", "stats", str(out)])
    assert result.exit_code == 0 and json.loads(result.stdout) == dataset_statistics(out)


@real_data
def test_cli_posters(cli: typer.Typer, mirror: Path, tmp_path: Path) -> None:
    arguments = ["datasets", "build", "movielens-100k-posters", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*arguments, "--mirror", str(mirror)])
    assert result.exit_code == 0 and "1663 items" in result.output
    result = CliRunner().invoke(cli, [*arguments, "--mirror", str(mirror), "--bundle-size", "5"])
    assert result.exit_code == 2 and "does not apply" in result.output


def test_cli_missing_mirror_fails_cleanly(cli: typer.Typer, tmp_path: Path) -> None:
    arguments = ["datasets", "build", "movielens-bundles", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*arguments, "--mirror", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "mirror not found" in result.output and "--mirror" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an uncaught error
    assert not (tmp_path / "o").exists()  # nothing written before the mirror was found


def test_cli_unknown_dataset(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["datasets", "build", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "movielens-bundles" in result.output
