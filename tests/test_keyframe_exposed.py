"""The exposure-conditioned key-frame protocol: frame exposures from a dataset to the metrics.

The handmade dataset puts every interaction in the test split. Item ``a`` has four frames; user
u0 was exposed to a0, a1 and a2 and liked a1. The other pairs are each skipped for one reason.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_files import write_csv, write_features

from jifr.compare import RND_ANALYTIC, CompareConfig, RunRecord, _references, format_summary, summarise
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData, load_prepared
from jifr.data.splits import SplitConfig
from jifr.errors import DataError
from jifr.evaluate import (
    evaluate_keyframes,
    evaluate_keyframes_exposed,
    random_keyframe_expectation,
    random_keyframe_exposed_expectation,
)
from jifr.experiment import applicable_protocols, evaluate_model
from jifr.models.base import Recommender

ALL_TEST = PrepareConfig(1, 1, SplitConfig(ratios=(0.0, 0.0, 1.0)))
KEEP_ALL = PrepareConfig(min_user_interactions=1, min_item_interactions=1)
FRAMES = {"a": ["a0", "a1", "a2", "a3"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1"]}
INTERACTIONS = ["u0,a", "u1,a", "u2,a", "u3,b", "u4,c"]
EXPOSURES = [
    "u0,a,a0",  # u0, a: three exposed frames, one liked: kept
    "u0,a,a1",
    "u0,a,a2",
    "u1,a,a0",  # one exposed frame: skipped
    "u2,a,a0",  # none liked: skipped
    "u2,a,a2",
    "u3,b,b0",  # all liked: skipped
    "u3,b,b1",
    "u0,c,c0",  # u0 never interacted with c: dropped when preparing
]  # u4, c: no exposure: skipped
LIKES = ["u0,a,a1", "u1,a,a0", "u3,b,b0", "u3,b,b1"]
# More kept pairs, of other sizes, for the random-order expectation.
MORE_INTERACTIONS = ["u5,b", "u6,a", "u7,a"]
MORE_EXPOSURES = ["u5,b,b0", "u5,b,b1", "u5,b,b2", *(f"u6,a,a{k}" for k in range(4)), "u7,a,a1", "u7,a,a3"]
MORE_LIKES = ["u5,b,b2", "u6,a,a0", "u6,a,a3", "u7,a,a3"]


def write_dataset(
    directory: Path,
    interactions: list[str] = INTERACTIONS,
    exposures: list[str] | None = EXPOSURES,
    likes: list[str] = LIKES,
) -> Path:
    directory.mkdir()
    rows = [f"{pair},{t}" for t, pair in enumerate(interactions)]
    write_csv(directory / "interactions.csv", "user_id,item_id,timestamp", rows)
    frames = [(item, frame) for item, ids in FRAMES.items() for frame in ids]
    write_csv(directory / "item_frames.csv", "item_id,frame_id", [f"{i},{f}" for i, f in frames])
    values = np.arange(2 * len(frames), dtype=np.float32).reshape(len(frames), 2)
    write_features(directory, [f for _, f in frames], values)
    write_csv(directory / "frame_likes.csv", "user_id,item_id,frame_id", likes)
    if exposures is not None:
        write_csv(directory / "frame_exposures.csv", "user_id,item_id,frame_id", exposures)
    return directory


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    directory = write_dataset(tmp_path_factory.mktemp("exposed") / "data")
    return prepare_dataset(directory, tmp_path_factory.mktemp("exposed_prepared") / "prepared", ALL_TEST)


class FixedFrames(Recommender):
    """The same score for a frame whoever the user: ``scores`` by frame id (0 for the others)."""

    name = "fixed"
    ranks_items = False
    ranks_frames = True
    trainable = False

    def __init__(self, data: PreparedData, scores: dict[str, float]) -> None:
        super().__init__()
        self.indptr = torch.as_tensor(data.frames.indptr)
        self.by_frame = torch.tensor([scores.get(f, 0.0) for f in data.frame_ids.tolist()], dtype=torch.float64)

    def score_frames(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        counts = self.indptr[items + 1] - self.indptr[items]
        slots = torch.arange(int(counts.max()))
        mask = slots[None, :] < counts[:, None]
        rows = torch.where(mask, self.indptr[items][:, None] + slots[None, :], 0)
        return self.by_frame[rows].masked_fill(~mask, float("-inf"))


# a1 is 2nd among u0's exposed frames (a0, a1, a2) and 3rd among all four frames of a.
SCORES = {"a0": 4.0, "a3": 3.0, "a1": 2.0, "a2": 1.0}


def test_hand_computed_metrics(exposed: PreparedData) -> None:
    result = evaluate_keyframes_exposed(FixedFrames(exposed, SCORES), exposed)
    assert result.protocol == "keyframe_exposed" and result.n_queries == 1
    inv = 1 / math.log2(3)
    expected = {"HR@1": 0, "NDCG@1": 0, "HR@2": 1, "NDCG@2": inv, "HR@3": 1, "NDCG@3": inv, "HR@5": 1, "NDCG@5": inv}
    assert result.metrics == pytest.approx(expected, abs=1e-12)
    # The plain protocol ranks all four frames: a1 is 3rd there, so HR@2 = 0 for u0.
    plain = evaluate_keyframes(FixedFrames(exposed, SCORES), exposed)
    assert plain.n_queries == 3  # (u0, a), (u1, a), (u3, b): the pairs with likes


def test_skipped_pairs_are_counted(exposed: PreparedData) -> None:
    details = evaluate_keyframes_exposed(FixedFrames(exposed, SCORES), exposed).details
    assert details["pairs_held_out"] == 5
    assert details["skipped_fewer_than_2_exposed"] == 2  # (u1, a) one frame; (u4, c) none
    assert details["skipped_no_exposed_frame_liked"] == 1  # (u2, a)
    assert details["skipped_all_exposed_frames_liked"] == 1  # (u3, b)
    assert details["mean_exposed_frames"] == 3 and details["mean_liked_frames"] == 1
    assert details["mean_frames"] == 4


def test_frames_not_exposed_are_not_candidates(exposed: PreparedData) -> None:
    """a3 was never shown to u0: any score there, NaN included, changes nothing; a NaN on an
    exposed frame that is not liked ranks above the liked one."""
    reference = evaluate_keyframes_exposed(FixedFrames(exposed, SCORES), exposed).metrics
    for value in (100.0, float("nan"), float("inf")):
        got = evaluate_keyframes_exposed(FixedFrames(exposed, SCORES | {"a3": value}), exposed).metrics
        assert got == reference
    broken = evaluate_keyframes_exposed(FixedFrames(exposed, SCORES | {"a0": float("nan"), "a2": 5.0}), exposed)
    assert broken.metrics["HR@2"] == 0 and broken.metrics["HR@3"] == 1


def test_random_order_expectation_is_the_mean_over_all_permutations(tmp_path: Path) -> None:
    """Kept pairs (n exposed, m liked): (3, 1), (3, 1), (4, 2), (2, 1). Every order of the four
    frame slots, applied to every item, gives each pair each order of its candidates equally often."""
    directory = write_dataset(
        tmp_path / "data", INTERACTIONS + MORE_INTERACTIONS, EXPOSURES + MORE_EXPOSURES, LIKES + MORE_LIKES
    )
    data = prepare_dataset(directory, tmp_path / "prepared", ALL_TEST)
    runs, plain_runs = [], []
    for order in itertools.permutations(range(4)):
        scores = {frame: float(order[k]) for frames in FRAMES.values() for k, frame in enumerate(frames)}
        runs.append(evaluate_keyframes_exposed(FixedFrames(data, scores), data))
        plain_runs.append(evaluate_keyframes(FixedFrames(data, scores), data))
    assert runs[0].n_queries == 4
    for expected, results in (
        (random_keyframe_exposed_expectation(data), runs),
        (random_keyframe_expectation(data), plain_runs),
    ):
        for name, value in expected.items():
            assert value == pytest.approx(np.mean([r.metrics[name] for r in results]), abs=1e-12), name
    # By hand for HR@1: the mean over the kept pairs of m / n.
    assert random_keyframe_exposed_expectation(data)["HR@1"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 4 + 1 / 2) / 4)


def test_exposures_are_stored_counted_and_fingerprinted(
    handmade_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="jifr.data"):
        data = prepare_dataset(write_dataset(tmp_path / "data"), tmp_path / "prepared", ALL_TEST)
    assert "frame_exposures.csv: 1 frame exposure(s) dropped" in caplog.text  # (u0, c): no interaction
    assert data.meta["filtering"]["frame_exposures_removed"] == 1 and data.meta["n_frame_exposures"] == 8
    loaded = load_prepared(tmp_path / "prepared")
    assert loaded.exposures is not None and data.exposures is not None
    for key in ("users", "items", "frames"):
        np.testing.assert_array_equal(getattr(loaded.exposures, key), getattr(data.exposures, key))
    assert loaded.fingerprint == data.fingerprint
    without = prepare_dataset(write_dataset(tmp_path / "bare", exposures=None), tmp_path / "p-bare", ALL_TEST)
    assert without.exposures is None and load_prepared(tmp_path / "p-bare").exposures is None
    assert without.fingerprint != data.fingerprint
    assert "frame_exposures_removed" not in without.meta["filtering"]
    # A dataset without exposures keeps the fingerprint it had before exposures existed.
    assert prepare_dataset(handmade_dir, tmp_path / "p-handmade", KEEP_ALL).fingerprint == "d87089c84159b6cc"


def test_duplicate_exposures_are_removed_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference = prepare_dataset(write_dataset(tmp_path / "data"), tmp_path / "reference", ALL_TEST)
    directory = write_dataset(tmp_path / "twice", exposures=EXPOSURES + EXPOSURES[:2])
    with caplog.at_level(logging.WARNING, logger="jifr.data"):
        data = prepare_dataset(directory, tmp_path / "prepared", ALL_TEST)
    assert "frame_exposures.csv: removed 2 duplicate frame-exposure row(s)" in caplog.text
    assert data.fingerprint == reference.fingerprint


def test_a_like_that_is_not_an_exposure_is_named_with_its_row(tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data", exposures=[e for e in EXPOSURES if e != "u3,b,b1"])
    with pytest.raises(DataError) as error:
        prepare_dataset(directory, tmp_path / "prepared", ALL_TEST)
    assert error.value.path is not None and error.value.path.endswith("frame_likes.csv")
    assert error.value.row == 4
    assert "user 'u3' likes frame 'b1' of item 'b' but was not exposed to it" in error.value.problem


def test_the_protocol_applies_only_with_exposures(exposed: PreparedData, tiny: PreparedData) -> None:
    model = FixedFrames(exposed, SCORES)
    assert applicable_protocols(model, exposed) == ["keyframe", "keyframe_exposed"]
    assert [r.protocol for r in evaluate_model(model, exposed)] == ["keyframe", "keyframe_exposed"]
    assert "keyframe_exposed" not in applicable_protocols(FixedFrames(tiny, {}), tiny)
    with pytest.raises(ValueError, match="needs frame exposures"):
        evaluate_model(FixedFrames(tiny, {}), tiny, ["keyframe_exposed"])


def test_compare_reports_the_references_and_a_table(exposed: PreparedData) -> None:
    rnd, frame_pop = _references(0, exposed, "test")
    assert rnd.model == RND_ANALYTIC
    assert rnd.metrics["keyframe_exposed"]["HR@1"] == pytest.approx(1 / 3)  # one kept pair: n = 3, m = 1
    assert rnd.metrics["keyframe_exposed"]["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert set(frame_pop.metrics) == {"keyframe", "keyframe_exposed"}
    records = [rnd, frame_pop]
    for seed in (0, 1):
        metrics = {"keyframe": {"HR@1": 0.2, "NDCG@3": 0.3}, "keyframe_exposed": {"HR@1": 0.5 + seed / 10}}
        records.append(RunRecord("jifr", seed, metrics))
        records.append(RunRecord("jifr_na", seed, {p: dict(m) for p, m in metrics.items()}))
    summary = summarise(records, CompareConfig(models=("jifr_na", "jifr")))
    text = format_summary(summary)
    exposed_table = text.split("exposed to:")[1]
    assert "| RND (analytic) | 0.3333 ± 0.0000 |" in exposed_table
    assert "| jifr | 0.5500 ± 0.0707 |" in exposed_table
    assert "| jifr − jifr_na | keyframe_exposed HR@1 | +0.0000 ± 0.0000 | no clear difference |" in text
