"""Frame scores from the frame cache: in eval mode a model whose frame scores are visual keeps
every frame's user-independent terms (P c_k for JIFR) and, with frame feedback, its frame bias,
where they take no more memory than the features. Scores from the cache must equal the scores
computed from the features (train mode reads the features), the memory rule must hold, and
JIFR's item cache must hand over the terms it computes on the way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepared import FrameFeedback, Interactions, ItemFrames, PreparedData
from jifr.models import ModelInputs, Recommender, base, build_model
from jifr.models.base import FRAME_BIAS, FRAME_TERMS

VISUAL = ["jifr", "jifr_na", "jifr_content_att", "jifr_rating_att", "vbpr", "cdl"]


def inputs(feature_dim: int, dtype: type, feedback: bool, seed: int = 0) -> ModelInputs:
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 25
    counts = rng.integers(1, 6, n_items)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    features = rng.standard_normal((int(indptr[-1]), feature_dim)).astype(dtype)
    users = np.repeat(np.arange(n_users), 4).astype(np.int64)
    items = rng.integers(0, n_items, len(users)).astype(np.int64)
    logged = None
    if feedback:
        frames = rng.integers(0, int(indptr[-1]), 200).astype(np.int64)
        owner = np.searchsorted(indptr, frames, side="right") - 1
        labels = rng.integers(0, 2, 200).astype(np.float32)
        logged = FrameFeedback(rng.integers(0, n_users, 200), owner, frames, labels, np.ones(200, np.float32))
    return ModelInputs(n_users, n_items, ItemFrames(indptr, features), Interactions(users, items), logged)


def randomised(name: str, model_inputs: ModelInputs) -> Recommender:
    """A model with every weight drawn at random (the frame bias starts at zero otherwise)."""
    model = build_model(name, model_inputs, seed=1)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def from_features(model: Recommender, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """score_frames and the mean-user frame scores computed from the features (train mode)."""
    model.train()
    with torch.no_grad():
        scores, mean = model.score_frames(users, items), model.mean_visual_frame_scores(users[:5], items)
    model.eval()
    return scores, mean


CASES = [(name, False) for name in VISUAL] + [(name, True) for name in VISUAL if name != "cdl"]  # cdl: no feedback head


@pytest.mark.parametrize(("name", "feedback"), CASES)
def test_frame_scores_from_the_cache_equal_those_from_features(name: str, feedback: bool) -> None:
    model = randomised(name, inputs(96, np.float32, feedback))
    users, items = torch.arange(30) % 30, torch.arange(30) % 25
    expected, expected_mean = from_features(model, users, items)
    cache = model.eval().frame_cache()
    assert FRAME_TERMS in cache and len(cache[FRAME_TERMS]) == model.store.n_frames
    assert (FRAME_BIAS in cache) == feedback
    with torch.no_grad():
        got, got_mean = model.score_frames(users, items), model.mean_visual_frame_scores(users[:5], items)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_mean, expected_mean, rtol=1e-5, atol=1e-5)
    if feedback:  # the bias is part of what the cache answers
        assert model.feedback_head() is not None and cache[FRAME_BIAS].abs().max() > 0.1


@pytest.mark.parametrize("name", ["jifr", "vbpr", "cdl"])
def test_terms_larger_than_the_features_are_not_cached(name: str) -> None:
    """8 float16 features take 16 bytes a frame, less than any model's terms: nothing is cached
    and the scores still come from the features."""
    model = randomised(name, inputs(8, np.float16, feedback=False))
    users, items = torch.arange(10), torch.arange(10)
    expected, _ = from_features(model, users, items)
    assert FRAME_TERMS not in model.eval().frame_cache()
    with torch.no_grad():
        torch.testing.assert_close(model.score_frames(users, items), expected, rtol=0, atol=0)


def test_the_cache_follows_new_weights(tiny: PreparedData) -> None:
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0).eval()
    users, items = torch.tensor([0, 1]), torch.tensor([2, 3])
    with torch.no_grad():
        before = model.score_frames(users, items)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["projection.weight"] = state["projection.weight"] * 2
        model.load_state_dict(state)
        after = model.score_frames(users, items)
    finite = torch.isfinite(before)
    torch.testing.assert_close(after[finite], 2 * before[finite], rtol=1e-5, atol=1e-6)


def test_jifrs_item_cache_hands_its_frame_terms_over(tiny: PreparedData) -> None:
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0).eval()
    terms = model.item_cache()[FRAME_TERMS]
    assert model.frame_cache()[FRAME_TERMS] is terms  # not a second pass over the features
    with torch.no_grad():
        torch.testing.assert_close(
            terms, model.projection(torch.from_numpy(tiny.frames.features[:].astype(np.float32)))
        )


def test_a_frame_cache_built_first_is_not_built_again_by_the_item_cache(tiny: PreparedData) -> None:
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0).eval()
    terms = model.frame_cache()[FRAME_TERMS]
    assert FRAME_TERMS not in model.item_cache() and model.frame_cache()[FRAME_TERMS] is terms


@pytest.mark.parametrize(("name", "feedback"), CASES)
def test_the_frame_score_grid_has_the_bits_of_the_pairs_scored_one_by_one(name: str, feedback: bool) -> None:
    """The visual models score every frame for every user broadcast, in blocks of frames
    (``broadcast_dot``): the values of ``frame_scores_of_terms`` over the pairs, bit for bit,
    over more than one block and a last block cut short."""
    model = randomised(name, inputs(24, np.float32, feedback)).eval()
    users = torch.tensor([0, 3, 4, 7, 9, 11, 12, 20, 21, 29, 3])  # a repeated user too
    per_block = base.GRID_CELLS // (len(users) * 32)  # 32-d user vectors: frames per block
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        terms = model.frame_terms(torch.randn(2 * per_block + 7, 24, generator=generator))
        grid = model.frame_score_grid(users, terms)
        one_by_one = Recommender.frame_score_grid(model, users, terms)
    assert type(model).frame_score_grid is not Recommender.frame_score_grid
    assert grid.shape == (len(terms), len(users)) and torch.equal(grid, one_by_one)
