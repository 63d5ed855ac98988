"""Synthetic generator: sizes, determinism, likes, and that the planted signal is real."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jifr.datasets.synthetic import (
    PRESETS,
    SyntheticConfig,
    SyntheticDataset,
    generate,
    write_dataset,
    write_synthetic,
)

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny() -> SyntheticDataset:
    return generate(TINY)


def _hit_rate_at_k(data: SyntheticDataset, scores: np.ndarray, k: int = 10) -> float:
    """Leave the last interaction of each user out; HR@k of (M, N) scores over unseen items."""
    last = np.r_[np.flatnonzero(np.diff(data.user)), len(data.user) - 1]
    train = np.ones(len(data.user), dtype=bool)
    train[last] = False
    scores = scores.astype(np.float64)  # a copy: the caller's array is not modified
    scores[data.user[train], data.item[train]] = -np.inf
    users = data.user[last]
    rank = (scores[users] > scores[users, data.item[last]][:, None]).sum(axis=1)
    return float(np.mean(rank < k))


def _popularity(data: SyntheticDataset) -> np.ndarray:
    """(M, N) training-interaction counts of each item, the same for every user."""
    last = np.r_[np.flatnonzero(np.diff(data.user)), len(data.user) - 1]
    counts = np.bincount(np.delete(data.item, last), minlength=data.config.n_items)
    return np.broadcast_to(counts.astype(np.float64), (data.config.n_users, data.config.n_items))


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"n_users": 0},
        {"n_items": 2.5},
        {"frames_per_item": 0},
        {"frames_per_item": (4, 2)},
        {"frames_per_item": (1, 2, 3)},
        {"themes_per_item": 9},
        {"mean_interactions": 4.0},
        {"mean_interactions": 76.0},
        {"temperature": 0.0},
        {"visual_weight": 1.5},
        {"like_fraction": -0.1},
        {"uninformative_frame_prob": 1.0},
        {"frame_noise": -1.0},
        {"seed": -1},
        {"feature_dtype": "float64"},
        {"collab_dim": True},
    ],
)
def test_invalid_config_is_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="SyntheticConfig"):
        dataclasses.replace(TINY, **change)


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys() -> None:
    d = json.loads(json.dumps(TINY.to_dict()))
    assert SyntheticConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="unknown keys"):
        SyntheticConfig.from_dict({**d, "n_user": 3})


def test_paper_preset_has_the_paper_sizes() -> None:
    paper = PRESETS["paper"]
    assert (paper.n_users, paper.n_items, paper.frame_range) == (16_166, 12_811, (10, 10))
    assert paper.feature_dim == 4096 and paper.feature_dtype == "float16"
    assert 480_000 < paper.n_users * paper.mean_interactions < 520_000


# --- shapes and invariants -----------------------------------------------------------------


def test_sizes_and_ranges(tiny: SyntheticDataset) -> None:
    c = tiny.config
    per_user = np.bincount(tiny.user, minlength=c.n_users)
    assert per_user.min() >= c.min_interactions and per_user.max() <= c.max_interactions
    assert 0.8 * c.mean_interactions < per_user.mean() < 1.2 * c.mean_interactions
    assert np.all(np.diff(tiny.user) >= 0) and tiny.item.min() >= 0 and tiny.item.max() < c.n_items
    pairs = tiny.user * c.n_items + tiny.item
    assert len(np.unique(pairs)) == len(pairs)  # sampled without replacement
    frames = np.diff(tiny.frame_indptr)
    assert frames.min() >= c.frame_range[0] and frames.max() <= c.frame_range[1]
    assert frames.min() < frames.max()  # the tiny preset is ragged on purpose
    assert tiny.features().shape == (frames.sum(), c.feature_dim)
    assert tiny.features().dtype == np.float16


def test_timestamps_strictly_increase_within_each_user(tiny: SyntheticDataset) -> None:
    same_user = np.diff(tiny.user) == 0
    assert tiny.timestamp.dtype == np.int64
    assert np.all(np.diff(tiny.timestamp)[same_user] > 0)


def test_items_show_distinct_themes_and_some_uninformative_frames(tiny: SyntheticDataset) -> None:
    item, theme = tiny.frame_item, tiny.frame_theme
    informative = theme >= 0
    shown = np.unique(np.stack([item[informative], theme[informative]]), axis=1)
    themes_per_item = np.bincount(shown[0], minlength=tiny.config.n_items)
    assert np.all(themes_per_item == tiny.config.themes_per_item)
    assert 0.05 < np.mean(~informative) < 0.3


def test_features_are_centroid_plus_noise(tiny: SyntheticDataset) -> None:
    """Nearest centroid recovers the theme of nearly every informative frame."""
    features = tiny.features().astype(np.float32)
    informative = tiny.frame_theme >= 0
    centroid = tiny.truth.theme_centroid
    distance = ((features[informative, None, :] - centroid[None]) ** 2).sum(axis=2)
    assert np.mean(distance.argmin(axis=1) == tiny.frame_theme[informative]) > 0.95
    noise = features[informative] - centroid[tiny.frame_theme[informative]]
    assert noise.std() == pytest.approx(tiny.config.frame_noise, rel=0.05)


# --- determinism ---------------------------------------------------------------------------


def _arrays(data: SyntheticDataset) -> list[np.ndarray]:
    return [
        data.user, data.item, data.timestamp, data.frame_indptr, data.frame_theme,
        data.like_user, data.like_item, data.like_frame, data.truth.user_visual, data.features(),
    ]  # fmt: skip


def test_same_seed_same_data_and_another_seed_differs(tiny: SyntheticDataset) -> None:
    again = generate(TINY)
    for a, b in zip(_arrays(tiny), _arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other = generate(dataclasses.replace(TINY, seed=1))
    assert not np.array_equal(tiny.item, other.item[: len(tiny.item)])
    assert not np.array_equal(tiny.features(), other.features())


def test_written_files_are_identical_for_the_same_seed(tmp_path: Path) -> None:
    first = write_synthetic("tiny", tmp_path / "a")
    second = write_synthetic(TINY, tmp_path / "b")
    reseeded = write_synthetic("tiny", tmp_path / "c", seed=5)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    assert (first / "interactions.parquet").read_bytes() != (reseeded / "interactions.parquet").read_bytes()


# --- frame likes ---------------------------------------------------------------------------


def test_likes_are_a_strict_subset_of_an_interacted_items_frames(tiny: SyntheticDataset) -> None:
    c = tiny.config
    assert len(tiny.like_user) > 0
    np.testing.assert_array_equal(tiny.frame_item[tiny.like_frame], tiny.like_item)
    interacted = set(zip(tiny.user.tolist(), tiny.item.tolist(), strict=True))
    assert set(zip(tiny.like_user.tolist(), tiny.like_item.tolist(), strict=True)) <= interacted
    pair = tiny.like_user * c.n_items + tiny.like_item
    pairs, liked = np.unique(pair, return_counts=True)
    assert np.all(liked < np.diff(tiny.frame_indptr)[pairs % c.n_items])
    assert np.all(tiny.frame_theme[tiny.like_frame] >= 0)  # never an uninformative frame
    assert 0.5 * c.like_fraction < len(pairs) / len(tiny.user) <= c.like_fraction * 1.3


def test_true_visual_taste_finds_the_liked_frames_and_random_does_not(
    tiny: SyntheticDataset,
) -> None:
    """Key-frame HR@1: the planted w*_a ranks a liked frame first for every liked pair."""
    pair = tiny.like_user * tiny.config.n_items + tiny.like_item
    pairs, first = np.unique(pair, return_index=True)
    users, items = tiny.like_user[first], tiny.like_item[first]
    liked = set(zip(pair.tolist(), tiny.like_frame.tolist(), strict=True))
    rng = np.random.default_rng(0)
    hits_true, hits_random, chance = [], [], []
    for p, a, i in zip(pairs, users, items, strict=True):  # a few hundred pairs: a test oracle
        frames = np.arange(tiny.frame_indptr[i], tiny.frame_indptr[i + 1])
        top = frames[np.argmax(tiny.true_frame_scores(np.full(len(frames), a), frames))]
        hits_true.append((p, top) in liked)
        hits_random.append((p, rng.choice(frames)) in liked)
        chance.append(np.mean([(p, f) in liked for f in frames]))
    assert np.mean(hits_true) == 1.0
    assert np.mean(chance) < 0.6
    assert abs(np.mean(hits_random) - np.mean(chance)) < 0.1


def test_likes_follow_the_best_shown_theme(tiny: SyntheticDataset) -> None:
    """Each liked frame's theme maximises w*_a . theme among the item's informative frames."""
    theme_score = tiny.truth.theme_scores(tiny.like_user)  # (n_likes, T)
    liked_score = theme_score[np.arange(len(tiny.like_user)), tiny.frame_theme[tiny.like_frame]]
    frames = tiny.frame_indptr[tiny.like_item]
    for offset in range(tiny.config.frame_range[1]):  # compare with every other frame
        frame = frames + offset
        inside = frame < tiny.frame_indptr[tiny.like_item + 1]
        scores = tiny.true_frame_scores(tiny.like_user[inside], frame[inside])
        assert np.all(scores <= liked_score[inside] + 1e-12)


# --- the interactions carry the planted preferences ----------------------------------------


def test_planted_utility_beats_popularity_on_held_out_items(tiny: SyntheticDataset) -> None:
    users = np.arange(tiny.config.n_users)
    planted = _hit_rate_at_k(tiny, tiny.truth.utility(users))
    popular = _hit_rate_at_k(tiny, _popularity(tiny))
    assert planted > 2 * popular and planted > 0.4


def test_visual_weight_controls_how_visual_the_choices_are() -> None:
    """w*_a alone predicts held-out items well only when visual_weight is high."""
    rates = []
    for weight in (0.0, 0.9):
        data = generate(dataclasses.replace(TINY, visual_weight=weight, n_users=400))
        rates.append(_hit_rate_at_k(data, data.truth.visual_utility(np.arange(400))))
    chance = 10 / (TINY.n_items - TINY.mean_interactions)
    assert rates[0] < 1.5 * chance and rates[1] > 3 * chance


# --- the directory format ------------------------------------------------------------------


def test_written_directory_follows_the_format(tmp_path: Path, tiny: SyntheticDataset) -> None:
    out = write_dataset(tiny, tmp_path / "tiny")
    interactions = pq.read_table(out / "interactions.parquet")
    assert interactions.column_names == ["user_id", "item_id", "timestamp"]
    assert interactions.num_rows == len(tiny.user)
    assert interactions["user_id"][0].as_py() == f"u{tiny.user[0]}"
    item_frames = pq.read_table(out / "item_frames.parquet")
    assert item_frames.column_names == ["item_id", "frame_id"]
    likes = pq.read_table(out / "frame_likes.parquet")
    assert likes.column_names == ["user_id", "item_id", "frame_id"]
    assert pq.read_table(out / "items.parquet").column_names == ["item_id", "title"]
    ids = (out / "frame_features.ids.txt").read_text().splitlines()
    assert ids == item_frames["frame_id"].to_pylist() == [f"f{k}" for k in range(tiny.n_frames)]
    features = np.load(out / "frame_features.npy", mmap_mode="r")
    np.testing.assert_array_equal(features, tiny.features())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["builder"] == "synthetic" and meta["seed"] == TINY.seed
    assert SyntheticConfig.from_dict(meta["config"]) == TINY
    assert meta["counts"]["interactions"] == len(tiny.user)


def test_unknown_preset_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        write_synthetic("huge", tmp_path)


def test_images_draw_each_frame_in_its_themes_colour_and_change_nothing_else(
    tmp_path: Path, tiny: SyntheticDataset
) -> None:
    from PIL import Image

    from jifr.datasets.frame_images import NO_THEME, PALETTE

    plain, pictured = write_dataset(tiny, tmp_path / "plain"), write_dataset(tiny, tmp_path / "img", images=True)
    frames = pq.read_table(pictured / "item_frames.parquet").to_pydict()
    assert list(frames) == ["item_id", "frame_id", "path", "title"]
    assert frames["path"] == [f"frames/{f}.png" for f in frames["frame_id"]]
    uninformative = int(np.flatnonzero(tiny.frame_theme < 0)[0])
    for k in (0, 1, uninformative, tiny.n_frames - 1):
        theme = int(tiny.frame_theme[k])
        assert frames["title"][k] == (f"theme {theme}" if theme >= 0 else "no theme")
        with Image.open(pictured / frames["path"][k]) as image:
            assert image.format == "PNG" and image.getpixel((1, 1)) == (PALETTE[theme] if theme >= 0 else NO_THEME)
    assert len(list((pictured / "frames").iterdir())) == tiny.n_frames
    for name in ("interactions.parquet", "frame_likes.parquet", "items.parquet", "frame_features.npy"):
        assert (plain / name).read_bytes() == (pictured / name).read_bytes()
