"""The no-learning key-frame baselines: content cosine and the frame-popularity reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepared import PreparedData
from jifr.evaluate import evaluate_keyframes, random_keyframe_expectation
from jifr.models import MODELS, ModelInputs, build_model
from jifr.models.diagnostic import MeanUserFrames
from jifr.models.reference import FrameLikePopularity


def _features(data: PreparedData) -> np.ndarray:
    return np.asarray(data.frames.features, dtype=np.float64)


@pytest.mark.parametrize(("name", "center"), [("content_cosine", False), ("content_cosine_centered", True)])
def test_content_cosine_matches_a_brute_force_profile(tiny: PreparedData, name: str, center: bool) -> None:
    model = build_model(name, ModelInputs.from_data(tiny))
    features = _features(tiny)
    shift = features.mean(0) if center else 0.0
    for user in (0, 5, 17):
        items = tiny.train.items[tiny.train.users == user]
        frames = np.concatenate([np.arange(tiny.frames.indptr[i], tiny.frames.indptr[i + 1]) for i in items])
        profile = features[frames].mean(0) - shift
        for item in (0, 3, 9):
            got = model.score_frames(torch.tensor([user]), torch.tensor([item]))[0]
            rows = np.arange(tiny.frames.indptr[item], tiny.frames.indptr[item + 1])
            candidates = features[rows] - shift
            expected = candidates @ profile / (np.linalg.norm(candidates, axis=1) * np.linalg.norm(profile))
            assert np.allclose(got[: len(rows)].numpy(), expected, atol=1e-5)
            assert torch.isneginf(got[len(rows) :]).all()


def test_content_cosine_beats_random_on_planted_visual_taste(tiny: PreparedData) -> None:
    """The tiny set plants frame likes in each user's visual taste, which also drives their items."""
    model = build_model("content_cosine_centered", ModelInputs.from_data(tiny))
    got = evaluate_keyframes(model, tiny).metrics
    floor = random_keyframe_expectation(tiny)
    assert got["HR@1"] > floor["HR@1"] + 0.05


def test_frame_popularity_counts_training_likes_only(tiny: PreparedData) -> None:
    reference = FrameLikePopularity(tiny)
    train_likes = tiny.likes_of("train")
    expected = np.bincount(train_likes.frames, minlength=tiny.frames.n_frames)
    assert np.array_equal(reference.like_counts.numpy(), expected)
    test_only = np.setdiff1d(tiny.likes_of("test").frames, train_likes.frames)
    assert (reference.like_counts[test_only] == 0).all()
    item = int(tiny.likes.items[0])
    rows = np.arange(tiny.frames.indptr[item], tiny.frames.indptr[item + 1])
    scores = reference.score_frames(torch.tensor([0, 1]), torch.tensor([item, item]))
    assert torch.equal(scores[0, : len(rows)], torch.as_tensor(expected[rows], dtype=torch.float32))
    assert torch.equal(scores[0], scores[1])  # the same order for every user


def test_frame_popularity_is_not_a_model_anyone_can_train() -> None:
    assert "frame_pop" not in MODELS
    assert FrameLikePopularity.uses_held_out_signal


def test_mean_user_frames_average_the_model_over_users(tiny: PreparedData) -> None:
    """JIFR's frame score w_a . (P c_k) is linear in w_a: its user average uses the mean w_a."""
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=3)
    averaged = MeanUserFrames(model, tiny, max_users=tiny.n_users)
    items = torch.tensor([4, 0, 4, 7])
    got = averaged.score_frames(torch.tensor([0, 1, 2, 3]), items)
    with torch.no_grad():
        mean_w = model.user_visual.weight.mean(0)
        for b, item in enumerate(items.tolist()):
            start, stop = tiny.frames.indptr[item], tiny.frames.indptr[item + 1]
            c = torch.tensor(np.asarray(tiny.frames.features[start:stop], dtype=np.float32))
            assert torch.allclose(got[b, : stop - start], model.projection(c) @ mean_w, atol=1e-5)
            assert torch.isneginf(got[b, stop - start :]).all()
    assert torch.equal(got[0], got[2])  # the same order for every user
    sampled = MeanUserFrames(model, tiny, max_users=16, seed=1)
    assert len(sampled.users) == 16 and sampled.score_frames(torch.tensor([0]), torch.tensor([4])).shape[0] == 1


@pytest.mark.parametrize("name", ["jifr", "jifr_na", "vbpr", "cdl"])
def test_mean_user_frames_project_each_frame_once_with_the_same_scores(tiny: PreparedData, name: str) -> None:
    """The fast average (each frame projected once for every user) equals the average of the
    model's own score_frames over the users, pair by pair."""
    model = build_model(name, ModelInputs.from_data(tiny), seed=2).eval()
    assert model.frame_scores_are_visual
    averaged = MeanUserFrames(model, tiny, max_users=40, seed=0)
    items = torch.arange(tiny.n_items)
    got = averaged.score_frames(torch.zeros(len(items), dtype=torch.long), items)
    users = averaged.users
    with torch.no_grad():
        per_user = model.score_frames(users.repeat(len(items)), items.repeat_interleave(len(users)))
    expected = per_user.view(len(items), len(users), -1).mean(1)
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got)) and finite.sum() == tiny.frames.n_frames
    assert torch.allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-6)
    assert got[finite].std() > 0  # frames are told apart
