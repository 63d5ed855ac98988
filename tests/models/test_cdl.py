"""CDL: the user's visual history, item score = mean frame score, and learning from content alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_files import PLANTED_TRAIN as TRAIN  # the training of tests/test_learning.py

from jifr.data.prepared import PreparedData
from jifr.evaluate import evaluate_full, evaluate_keyframes, random_keyframe_expectation
from jifr.models import ModelInputs, build_model
from jifr.models.cdl import CDL
from jifr.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained_on_tiny(tiny: PreparedData) -> CDL:
    model = build_model("cdl", ModelInputs.from_data(tiny), seed=0)
    fit(model, tiny, TrainConfig(epochs=2, batch_size=256), show_progress=False)
    assert isinstance(model, CDL)
    return model


def test_user_history_is_the_mean_of_the_training_items_mean_frame_features(tiny: PreparedData) -> None:
    model = build_model("cdl", ModelInputs.from_data(tiny), seed=0)
    assert isinstance(model, CDL)
    features, indptr = np.asarray(tiny.frames.features, dtype=np.float64), tiny.frames.indptr
    item_means = np.stack([features[indptr[i] : indptr[i + 1]].mean(0) for i in range(tiny.n_items)])
    for user in range(tiny.n_users):
        items = np.unique(tiny.train.items[tiny.train.users == user])
        expected = item_means[items].mean(0) if len(items) else np.zeros(features.shape[1])
        np.testing.assert_allclose(model.user_history[user].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_item_score_is_the_mean_of_its_frame_scores(trained_on_tiny: CDL) -> None:
    users, items = torch.tensor([0, 4, 9, 4]), torch.tensor([3, 3, 7, 12])
    with torch.no_grad():
        frames = trained_on_tiny.score_frames(users, items)
        real = torch.isfinite(frames)
        mean_frame = torch.where(real, frames, 0).sum(1) / real.sum(1)
        assert torch.allclose(trained_on_tiny.score(users, items), mean_frame, atol=1e-5)
        assert torch.allclose(trained_on_tiny.score_all(users)[torch.arange(4), items], mean_frame, atol=1e-5)


@pytest.mark.slow
def test_content_alone_beats_popularity_and_random_key_frames(planted: PreparedData) -> None:
    """Half the planted utility is collaborative, which CDL cannot see: at seed 0 it reaches about
    1.3x popularity's NDCG@10 (BPR reaches over 3x), and key-frame HR@1 about 0.33 against 0.26."""
    popularity = build_model("pop", ModelInputs.from_data(planted))
    model = build_model("cdl", ModelInputs.from_data(planted), seed=0)
    fit(model, planted, TRAIN, show_progress=False)
    items, floor = evaluate_full(model, planted).metrics, evaluate_full(popularity, planted).metrics
    assert items["NDCG@10"] > 1.2 * floor["NDCG@10"]
    assert items["HR@10"] > 1.1 * floor["HR@10"]
    key_frames = evaluate_keyframes(model, planted).metrics
    assert key_frames["HR@1"] > random_keyframe_expectation(planted)["HR@1"] + 0.05


def test_training_is_bit_for_bit_reproducible_under_a_seed(tiny: PreparedData, trained_on_tiny: CDL) -> None:
    again = build_model("cdl", ModelInputs.from_data(tiny), seed=0)
    fit(again, tiny, TrainConfig(epochs=2, batch_size=256), show_progress=False)
    for key, value in trained_on_tiny.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
