"""Every model answers the same questions the same way (the contract suite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from new_item_reference import with_item

from jifr.checkpoint import load_checkpoint, save_checkpoint
from jifr.data.prepared import PreparedData
from jifr.models import MODELS, ModelInputs, Recommender, build_model
from jifr.train import TrainConfig, fit

ALL = list(MODELS)
QUICK = TrainConfig(epochs=2, batch_size=256, patience=5)


def trained(name: str, data: PreparedData, seed: int = 0) -> Recommender:
    model = build_model(name, ModelInputs.from_data(data), seed=seed)
    fit(model, data, TrainConfig(epochs=2, batch_size=256, seed=seed), show_progress=False)
    return model


@pytest.fixture(scope="module", params=ALL)
def model(request: pytest.FixtureRequest, tiny: PreparedData) -> Recommender:
    return trained(request.param, tiny)


def test_score_shapes_and_agreement(model: Recommender, tiny: PreparedData) -> None:
    if not model.ranks_items:
        with pytest.raises(NotImplementedError):
            model.score_all(torch.tensor([0]))
        return
    users = torch.tensor([0, 3, 7, 3])
    items = torch.tensor([5, 0, 11, 2])
    with torch.no_grad():
        every = model.score_all(users)
        pairs = model.score(users, items)
    assert every.shape == (4, tiny.n_items) and pairs.shape == (4,)
    assert torch.allclose(every[torch.arange(4), items], pairs, atol=1e-5)
    assert torch.isfinite(every).all()


def test_scores_into_given_memory_are_the_same_bits(model: Recommender, tiny: PreparedData) -> None:
    """``score_all_into``, as ranking and evaluation call it with reused memory, writes the
    values ``score_all(users)`` returns, again and again over the same memory, and the model's
    reused memory is dropped on training. Every built-in model that ranks writes there
    directly."""
    if not model.ranks_items:
        return
    assert model.writes_scores_into
    model.eval()
    first, second = torch.tensor([0, 3, 7]), torch.tensor([5, 1, 2, 3, 4])
    with torch.no_grad():
        for users in (first, second, first):
            with model.scratch("scores", len(users), tiny.n_items) as out:
                out.fill_(float("nan"))
                assert model.score_all_into(users, out) is out
                assert torch.equal(out, model.score_all(users))
    assert model._scratch
    model.train()
    assert not model._scratch


def test_reused_memory_is_never_shared_by_two_blocks_at_once(tiny: PreparedData) -> None:
    """A block of a name checks its buffer out: a second block of the same name while the first
    is open (another thread's) gets memory of its own; after both, one buffer is kept, and the
    next block reuses it (grown where it needs more)."""
    model = build_model("bpr", ModelInputs.from_data(tiny)).eval()
    with model.scratch("scores", 4, 10) as first, model.scratch("scores", 4, 10) as second:
        assert first.data_ptr() != second.data_ptr()
        first.fill_(1.0), second.fill_(2.0)
        assert (first == 1.0).all()
    with model.scratch("scores", 2, 10) as again:
        assert again.shape == (2, 10) and again.data_ptr() in (first.data_ptr(), second.data_ptr())
    with model.scratch("scores", 8, 10) as grown:
        assert grown.shape == (8, 10)
    assert list(model._scratch) == ["scores"] and model._scratch["scores"].numel() == 80


def test_score_frames_shape_and_padding(model: Recommender, tiny: PreparedData) -> None:
    if not model.ranks_frames:
        with pytest.raises(NotImplementedError):
            model.score_frames(torch.tensor([0]), torch.tensor([0]))
        return
    items = torch.tensor([0, 1, 2, 3])
    counts = torch.as_tensor(tiny.frames.counts)[items]
    scores = model.score_frames(torch.tensor([1, 2, 3, 4]), items)
    assert scores.shape == (4, int(counts.max()))
    finite = torch.isfinite(scores)
    assert torch.equal(finite.sum(1), counts)


@pytest.mark.parametrize("name", ["jifr", "jifr_na", "jifr_content_att", "jifr_rating_att"])
def test_jifr_frame_scores_follow_eq_4(name: str, tiny: PreparedData) -> None:
    """l_ak = w_a . (P c_k), computed here by hand from the raw features."""
    model = trained(name, tiny)
    users, items = torch.tensor([2, 9]), torch.tensor([4, 8])
    got = model.score_frames(users, items)
    for b in range(2):
        start, stop = tiny.frames.indptr[items[b]], tiny.frames.indptr[items[b] + 1]
        c = torch.tensor(np.asarray(tiny.frames.features[start:stop], dtype=np.float32))
        expected = (c @ model.projection.weight.T) @ model.user_visual.weight[users[b]]
        assert torch.allclose(got[b, : stop - start], expected.detach(), atol=1e-5)


def test_vbpr_item_visual_score_is_mean_of_frame_scores(tiny: PreparedData) -> None:
    model = trained("vbpr", tiny)
    users, items = torch.tensor([1, 5]), torch.tensor([3, 6])
    frames = model.score_frames(users, items)
    mean_frame = torch.where(torch.isfinite(frames), frames, 0).sum(1) / torch.isfinite(frames).sum(1)
    collab = (model.user_collab(users) * model.item_collab(items)).sum(-1) + model.item_bias(items).squeeze(-1)
    assert torch.allclose(model.score(users, items), collab + mean_frame, atol=1e-5)


def test_checkpoint_round_trip(model: Recommender, tiny: PreparedData, tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "run", model, tiny, QUICK, seed=0)
    assert not list((tmp_path / "run").glob("*.pt")) and not list((tmp_path / "run").glob("*.pkl"))
    loaded, _, description = load_checkpoint(tmp_path / "run", tiny)
    assert description["model"] == model.model_name
    users = torch.arange(6)
    if model.ranks_items:
        assert torch.equal(loaded.score_all(users), model.score_all(users))
    if model.ranks_frames and model.trainable:
        items = torch.arange(6)
        assert torch.equal(loaded.score_frames(users, items), model.score_frames(users, items))


SCORES_NEW_ITEMS = {"jifr", "jifr_na", "jifr_content_att", "jifr_rating_att", "vbpr", "vpoi", "cdl"}


def test_a_new_item_is_scored_as_the_catalogue_would_score_it_at_its_prior(
    model: Recommender, tiny: PreparedData
) -> None:
    """new_item_scores and new_frame_scores equal score_all and score_frames of the same model
    with the item in its catalogue, its free parameters at their prior mean; a model without a
    content side refuses, saying why."""
    rng = np.random.default_rng(7)
    features = rng.normal(0, 1, size=(3, tiny.frames.features.shape[1])).astype(tiny.frames.features.dtype)
    users = torch.tensor([0, 3, 7, 42])
    assert model.scores_new_items() == (model.model_name in SCORES_NEW_ITEMS)
    if not model.scores_new_items():
        with pytest.raises(NotImplementedError, match=f"{model.model_name} cannot score a new item"):
            model.new_item_scores(users, torch.from_numpy(features.astype(np.float32)), torch.tensor([3]))
        return
    reference = with_item(model, tiny, features)
    stored = torch.from_numpy(features.astype(np.float32))
    with torch.no_grad():
        got = model.new_item_scores(users, torch.cat([stored, stored[:1]]), torch.tensor([3, 1]))
        expected = reference.score_all(users)
        assert got.shape == (4, 2)
        assert torch.allclose(got[:, 0], expected[:, -1], rtol=1e-5, atol=1e-6)
        assert torch.allclose(expected[:, :-1], model.score_all(users), rtol=1e-5, atol=1e-6)  # the same catalogue
        if model.ranks_frames:
            frames = model.new_frame_scores(users.repeat_interleave(3), stored, torch.arange(3).repeat(4))
            expected_frames = reference.score_frames(users, torch.full((4,), tiny.n_items))
            assert torch.allclose(frames.view(4, 3), expected_frames, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bpr", "vbpr", "jifr"])
def test_same_seed_same_weights_other_seed_differs(name: str, tiny: PreparedData) -> None:
    a, b, c = trained(name, tiny, 0), trained(name, tiny, 0), trained(name, tiny, 1)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_unknown_model_and_setting_are_rejected(tiny: PreparedData) -> None:
    inputs = ModelInputs.from_data(tiny)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("jifr2", inputs)
    with pytest.raises(ValueError, match="unknown JIFRConfig key"):
        build_model("jifr", inputs, {"colab_dim": 8})
    with pytest.raises(ValueError, match="fixes"):
        build_model("jifr_na", inputs, {"content_attention": "att"})
    with pytest.raises(ValueError, match="collab_dim must equal visual_dim"):
        build_model("jifr", inputs, {"collab_dim": 16})
