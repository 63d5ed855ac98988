"""prepare_dataset: indices, item->frame CSR, features, round trip, fingerprint, k-core."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_csv, write_features
from hypothesis import given, settings
from hypothesis import strategies as st

import jifr.data.prepare as prepare_module
from jifr.data.filtering import k_core_mask
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData, load_prepared
from jifr.data.splits import SplitConfig
from jifr.outputs import OutputError

KEEP_ALL = PrepareConfig(min_user_interactions=1, min_item_interactions=1)


def all_pairs(data: PreparedData) -> list[tuple[int, int]]:
    return [
        (int(u), int(i))
        for part in (data.train, data.valid, data.test)
        for u, i in zip(part.users, part.items, strict=True)
    ]


def source_features(directory: Path) -> dict[str, np.ndarray]:
    values = np.load(directory / "frame_features.npy")
    ids = (directory / "frame_features.ids.txt").read_text().splitlines()
    return dict(zip(ids, values, strict=True))


def source_item_frames(directory: Path) -> dict[str, list[str]]:
    """item id -> its frame ids in file order."""
    table = pq.read_table(directory / "item_frames.parquet").to_pydict()
    frames: dict[str, list[str]] = {}
    for item, frame in zip(table["item_id"], table["frame_id"], strict=True):
        frames.setdefault(item, []).append(frame)
    return frames


# --- the handmade dataset: every value known ---------------------------------------------------


@pytest.fixture
def handmade(handmade_dir: Path, tmp_path: Path) -> PreparedData:
    return prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)


def test_handmade_indices_and_frames(handmade: PreparedData) -> None:
    assert handmade.user_ids.tolist() == ["u0", "u1", "u2"]
    assert handmade.item_ids.tolist() == ["i0", "i1", "i2"]
    assert handmade.frame_ids.tolist() == ["f00", "f01", "f10", "f11", "f20", "f21"]
    assert handmade.frames.indptr.tolist() == [0, 2, 4, 6]
    assert handmade.frames.frame_item.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(handmade.frames.features, np.arange(24, dtype=np.float32).reshape(6, 4))
    assert sorted(all_pairs(handmade)) == [(u, i) for u in range(3) for i in range(3)]
    # likes u0,i1,f10 and u2,i2,f21
    assert list(zip(handmade.likes.users, handmade.likes.items, handmade.likes.frames, strict=True)) == [
        (0, 1, 2),
        (2, 2, 5),
    ]


def test_handmade_split_sizes(handmade: PreparedData) -> None:
    """9 interactions, 70/10/20: round(6.3) = 6 train, round(0.9) = 1 valid, 2 test."""
    assert (len(handmade.train), len(handmade.valid), len(handmade.test)) == (6, 1, 2)
    assert handmade.meta["n_interactions"] == {"train": 6, "valid": 1, "test": 2}


def test_frames_follow_items_and_file_order(handmade_dir: Path, tmp_path: Path) -> None:
    """Item-frame rows out of order in the file: frames are grouped by item, file order within."""
    rows = ["i2,f21", "i0,f01", "i1,f11", "i2,f20", "i0,f00", "i1,f10"]
    write_csv(handmade_dir / "item_frames.csv", "item_id,frame_id", rows)
    data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert data.frame_ids.tolist() == ["f01", "f00", "f11", "f10", "f21", "f20"]
    source = source_features(handmade_dir)
    np.testing.assert_array_equal(data.frames.features, np.stack([source[f] for f in data.frame_ids]))
    table = data.frame_table()
    assert table["frame_id"].tolist() == data.frame_ids.tolist()
    assert table["item_id"].tolist() == data.item_ids[data.frames.frame_item].tolist()


@pytest.mark.parametrize("chunk_rows", [1, 2, 4, 8192])
def test_features_from_a_shuffled_store(
    handmade_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    """Store rows in another order than the frames, copied in chunks of any size."""
    monkeypatch.setattr(prepare_module, "COPY_CHUNK_ROWS", chunk_rows)
    rng = np.random.default_rng(3)
    ids = [f"f{i}{k}" for i in range(3) for k in range(2)]
    values = rng.normal(size=(6, 5)).astype(np.float32)
    order = rng.permutation(6)
    write_features(handmade_dir, [ids[r] for r in order], values[order])
    data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert data.frame_ids.tolist() == ids
    np.testing.assert_array_equal(data.frames.features, values)


def test_ids_are_text(handmade_dir: Path, tmp_path: Path) -> None:
    """'007' and '7' are different ids; so are '1.0' and '1'. They survive the round trip."""
    users, items = ["007", "7", "1.0", "1"], ["01", "1"]
    write_csv(
        handmade_dir / "interactions.csv",
        "user_id,item_id",
        [f"{u},{i}" for u in users for i in items],
    )
    write_csv(handmade_dir / "item_frames.csv", "item_id,frame_id", ["01,0010", "1,10", "1,010"])
    write_features(handmade_dir, ["10", "0010", "010"], np.eye(3, dtype=np.float32))
    write_csv(handmade_dir / "frame_likes.csv", "user_id,item_id,frame_id", ["007,1,010"])
    data = prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    for loaded in (data, load_prepared(tmp_path / "prepared")):
        assert loaded.user_ids.tolist() == sorted(users)
        assert loaded.item_ids.tolist() == ["01", "1"]
        assert loaded.frame_ids.tolist() == ["0010", "10", "010"]
        np.testing.assert_array_equal(loaded.frames.features, np.eye(3)[[1, 0, 2]])
        like = (loaded.likes.users[0], loaded.likes.items[0], loaded.likes.frames[0])
        assert (loaded.user_ids[like[0]], loaded.item_ids[like[1]], loaded.frame_ids[like[2]]) == ("007", "1", "010")


def test_ids_with_unicode_line_separators_round_trip(handmade_dir: Path, tmp_path: Path) -> None:
    """Regression: users.txt was read with str.splitlines, which also splits at U+0085 and
    U+2028, so such ids shifted every later id by one."""
    users = ["a\u0085b", "c\u2028d", "e"]
    write_csv(handmade_dir / "interactions.csv", "user_id,item_id", [f"{u},i{i}" for u in users for i in range(3)])
    (handmade_dir / "frame_likes.csv").unlink()
    prepare_dataset(handmade_dir, tmp_path / "prepared", KEEP_ALL)
    assert load_prepared(tmp_path / "prepared").user_ids.tolist() == sorted(users)


# --- the tiny synthetic dataset ------------------------------------------------------------------


def test_indices_are_contiguous(tiny: PreparedData) -> None:
    users = np.concatenate([tiny.train.users, tiny.valid.users, tiny.test.users])
    items = np.concatenate([tiny.train.items, tiny.valid.items, tiny.test.items])
    np.testing.assert_array_equal(np.unique(users), np.arange(tiny.n_users))
    np.testing.assert_array_equal(np.unique(items), np.arange(tiny.n_items))
    assert len(set(tiny.user_ids.tolist())) == tiny.n_users
    assert tiny.user_ids.tolist() == sorted(tiny.user_ids.tolist())
    assert tiny.item_ids.tolist() == sorted(tiny.item_ids.tolist())
    for index in (tiny.likes.users, tiny.likes.items, tiny.likes.frames):
        assert index.dtype == np.int64
    assert tiny.likes.frames.max() < tiny.frames.n_frames


def test_split_parts_are_disjoint_and_cover(tiny: PreparedData, tiny_dir: Path) -> None:
    pairs = all_pairs(tiny)
    assert len(pairs) == len(set(pairs))
    assert tiny.meta["filtering"]["users_removed_by_k_core"] == 0
    raw = pq.read_table(tiny_dir / "interactions.parquet").to_pydict()
    kept_items = set(tiny.item_ids.tolist())
    expected = {(u, i) for u, i in zip(raw["user_id"], raw["item_id"], strict=True) if i in kept_items}
    got = {(tiny.user_ids[u], tiny.item_ids[i]) for u, i in pairs}
    assert got == expected  # the k-core removed items only, with all their interactions


def test_item_frame_csr_matches_item_frames(tiny: PreparedData, tiny_dir: Path) -> None:
    source = source_item_frames(tiny_dir)
    indptr = tiny.frames.indptr
    assert indptr[0] == 0 and (np.diff(indptr) >= 1).all() and indptr[-1] == len(tiny.frame_ids)
    for i, item in enumerate(tiny.item_ids.tolist()):
        assert tiny.frame_ids[indptr[i] : indptr[i + 1]].tolist() == source[item]
    removed = set(source) - set(tiny.item_ids.tolist())
    n_removed_frames = sum(len(source[i]) for i in removed)
    assert tiny.meta["filtering"]["frames_of_removed_items"] == n_removed_frames > 0


def test_features_are_the_source_rows(tiny: PreparedData, tiny_dir: Path) -> None:
    source = source_features(tiny_dir)
    expected = np.stack([source[f] for f in tiny.frame_ids])
    assert tiny.frames.features.dtype == expected.dtype
    np.testing.assert_array_equal(tiny.frames.features, expected)


def test_likes_belong_to_interactions_and_frames(tiny: PreparedData) -> None:
    assert len(tiny.likes) > 0
    interacted = set(all_pairs(tiny))
    for u, i, f in zip(tiny.likes.users, tiny.likes.items, tiny.likes.frames, strict=True):
        assert (int(u), int(i)) in interacted
        assert tiny.frames.indptr[i] <= f < tiny.frames.indptr[i + 1]


def test_round_trip(tiny: PreparedData) -> None:
    loaded = load_prepared(tiny.directory)
    assert isinstance(loaded.frames.features, np.memmap)
    assert isinstance(tiny.frames.features, np.memmap)
    np.testing.assert_array_equal(loaded.frames.features, tiny.frames.features)
    for name in ("user_ids", "item_ids", "frame_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(tiny, name))
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(loaded.part(part).users, tiny.part(part).users)
        np.testing.assert_array_equal(loaded.part(part).items, tiny.part(part).items)
    np.testing.assert_array_equal(loaded.frames.indptr, tiny.frames.indptr)
    for name in ("users", "items", "frames"):
        np.testing.assert_array_equal(getattr(loaded.likes, name), getattr(tiny.likes, name))
    assert loaded.fingerprint == tiny.fingerprint
    assert loaded.meta["n_interactions"] == tiny.meta["n_interactions"]


def test_fingerprint_stable_and_seed_sensitive(tiny: PreparedData, tiny_dir: Path, tmp_path: Path) -> None:
    again = prepare_dataset(tiny_dir, tmp_path / "again", PrepareConfig())
    assert again.fingerprint == tiny.fingerprint
    other = PrepareConfig(split=SplitConfig(seed=1))
    reseeded = prepare_dataset(tiny_dir, tmp_path / "reseeded", other)
    assert reseeded.fingerprint != tiny.fingerprint
    assert not np.array_equal(reseeded.test.users, tiny.test.users)
    np.testing.assert_array_equal(reseeded.frames.features, tiny.frames.features)


def test_prepare_replaces_an_earlier_output_only_when_forced(handmade_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    first = prepare_dataset(handmade_dir, out, KEEP_ALL)
    (out / "stale.txt").write_text("from an earlier run")
    with pytest.raises(OutputError, match="already holds a jifr prepared output; pass --force"):
        prepare_dataset(handmade_dir, out, KEEP_ALL)
    assert (out / "stale.txt").exists()
    data = prepare_dataset(handmade_dir, out, KEEP_ALL, force=True)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handmade", "prepared"]  # no temporary left
    assert load_prepared(out).fingerprint == data.fingerprint == first.fingerprint


# --- k-core against a brute-force reference ------------------------------------------------------


def k_core_reference(users: list[int], items: list[int], min_user: int, min_item: int) -> list[bool]:
    """Remove one under-threshold user or item at a time until none is left (the k-core is unique)."""
    keep = [True] * len(users)
    while True:
        user_counts = Counter(u for u, k in zip(users, keep, strict=True) if k)
        item_counts = Counter(i for i, k in zip(items, keep, strict=True) if k)
        weak_users = [u for u, c in user_counts.items() if c < min_user]
        weak_items = [i for i, c in item_counts.items() if c < min_item]
        if weak_users:
            keep = [k and u != weak_users[0] for u, k in zip(users, keep, strict=True)]
        elif weak_items:
            keep = [k and i != weak_items[0] for i, k in zip(items, keep, strict=True)]
        else:
            return keep


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 6)), min_size=1, max_size=60),
    min_user=st.integers(1, 4),
    min_item=st.integers(1, 4),
)
def test_k_core_matches_reference(pairs: list[tuple[int, int]], min_user: int, min_item: int) -> None:
    users, items = (list(x) for x in zip(*pairs, strict=True))
    got = k_core_mask(np.array(users), np.array(items), min_user, min_item)
    assert got.tolist() == k_core_reference(users, items, min_user, min_item)


@pytest.mark.parametrize("seed", range(5))
def test_k_core_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, size=600) % 80
    items = rng.zipf(1.4, size=600) % 120
    got = k_core_mask(users, items, 3, 4)
    assert got.tolist() == k_core_reference(users.tolist(), items.tolist(), 3, 4)
    assert 0 < got.sum() < len(users)  # the case is not trivial


def test_k_core_long_removal_chain(caplog: pytest.LogCaptureFixture) -> None:
    """Regression: rounds were capped at 999, leaving rows of a chain that needs more.

    A path u0-i0-u1-i1-... has degree-1 ends; a 2-core peels one layer per round from each end.
    """
    n = 3000
    users = np.r_[np.arange(n), np.arange(1, n)]
    items = np.r_[np.arange(n), np.arange(n - 1)]
    with caplog.at_level(logging.INFO, logger="jifr.data.filtering"):
        keep = k_core_mask(users, items, 2, 2)
    assert not keep.any()
    assert "k-core round 1: removed 2 interaction(s)" in caplog.text
    assert f"k-core round {n - 1}: removed" in caplog.text


def test_k_core_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        k_core_mask(np.array([0]), np.array([0]), 0, 1)
    with pytest.raises(ValueError, match=">= 1"):
        PrepareConfig(min_item_interactions=0)
