"""Frame feedback (``frame_feedback`` table): what prepare keeps, the loss, the exact reduction
to the paper's models without feedback, and learning on planted data.

The planted dataset gives each item one crowd-pleasing frame that nine users in ten like, chosen
at random and unrelated to the frames' features: no item-level signal can find it, logged frame
feedback can."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_files import write_csv, write_features

from jifr.checkpoint import load_checkpoint, save_checkpoint
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.evaluate import evaluate_keyframes
from jifr.models import ModelInputs, build_model
from jifr.models.feedback import FrameFeedbackHead
from jifr.train import TrainConfig, fit

N_USERS, N_ITEMS, N_FRAMES, PER_USER = 120, 40, 4, 12
QUICK = TrainConfig(epochs=3, batch_size=256)


def write_planted(directory: Path, feedback: bool = True, propensity: bool = False) -> Path:
    rng = np.random.default_rng(7)
    directory.mkdir(parents=True)
    crowd = rng.integers(N_FRAMES, size=N_ITEMS)  # the frame most users like, per item
    interactions, likes, logged = [], [], []
    for user in range(N_USERS):
        for t, item in enumerate(rng.choice(N_ITEMS, PER_USER, replace=False).tolist()):
            interactions.append(f"u{user},i{item},{t}")
            liked = crowd[item] if rng.random() < 0.9 else rng.integers(N_FRAMES)
            likes.append(f"u{user},i{item},f{item}_{liked}")
            for frame in range(N_FRAMES):
                shown = f",{rng.choice([0.25, 0.5])}" if propensity else ""
                logged.append(f"u{user},i{item},f{item}_{frame},{int(frame == liked)}{shown}")
    frames = [f"f{i}_{k}" for i in range(N_ITEMS) for k in range(N_FRAMES)]
    write_csv(directory / "interactions.csv", "user_id,item_id,timestamp", interactions)
    write_csv(directory / "item_frames.csv", "item_id,frame_id", [f"i{f[1:].split('_')[0]},{f}" for f in frames])
    write_features(directory, frames, rng.normal(size=(len(frames), 8)).astype(np.float32))
    write_csv(directory / "frame_likes.csv", "user_id,item_id,frame_id", likes)
    if feedback:
        header = "user_id,item_id,frame_id,label" + (",propensity" if propensity else "")
        write_csv(directory / "frame_feedback.csv", header, logged)
    return directory


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("feedback") / "data")


@pytest.fixture(scope="module")
def prepared(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    return prepare_dataset(planted, tmp_path_factory.mktemp("feedback") / "prepared")


def pair_keys(data: PreparedData, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return users * data.n_items + items


def test_prepare_keeps_only_training_pairs_and_counts_the_rest(prepared: PreparedData) -> None:
    feedback = prepared.feedback
    assert feedback is not None and len(feedback)
    held_out = np.concatenate([pair_keys(prepared, p.users, p.items) for p in (prepared.valid, prepared.test)])
    train = pair_keys(prepared, prepared.train.users, prepared.train.items)
    keys = pair_keys(prepared, feedback.users, feedback.items)
    assert not np.isin(keys, held_out).any()
    assert np.isin(keys, train).all() and np.isin(train, keys).all()  # every training pair, no other
    counts = prepared.meta["filtering"]
    assert counts["frame_feedback_read"] == N_USERS * PER_USER * N_FRAMES
    assert counts["frame_feedback_held_out"] == N_FRAMES * (len(prepared.valid) + len(prepared.test))
    assert counts["frame_feedback_left_out_by_share"] == 0
    assert counts["frame_feedback_read"] - counts["frame_feedback_held_out"] == len(feedback)
    assert prepared.meta["n_frame_feedback"] == len(feedback)
    assert set(np.unique(feedback.labels).tolist()) == {0.0, 1.0} and (feedback.weights == 1).all()
    # each row names a frame of its item
    indptr = prepared.frames.indptr
    assert ((feedback.frames >= indptr[feedback.items]) & (feedback.frames < indptr[feedback.items + 1])).all()


def test_share_keeps_a_seeded_subset_of_whole_pairs(planted: Path, prepared: PreparedData, tmp_path: Path) -> None:
    half = prepare_dataset(planted, tmp_path / "half", PrepareConfig(frame_feedback_share=0.5))
    again = prepare_dataset(planted, tmp_path / "again", PrepareConfig(frame_feedback_share=0.5))
    assert half.feedback is not None and again.feedback is not None
    pairs = np.unique(pair_keys(half, half.feedback.users, half.feedback.items))
    assert len(pairs) == round(0.5 * len(prepared.train))
    assert len(half.feedback) == N_FRAMES * len(pairs)  # whole pairs: all their logged frames
    assert np.array_equal(half.feedback.frames, again.feedback.frames)  # same seed, same subset
    counts = half.meta["filtering"]
    assert counts["frame_feedback_left_out_by_share"] == len(prepared.feedback) - len(half.feedback)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frame_feedback_share must be in \[0, 1\]"):
        PrepareConfig(frame_feedback_share=1.5)


def test_propensities_become_inverse_weights(tmp_path: Path) -> None:
    data = prepare_dataset(write_planted(tmp_path / "data", propensity=True), tmp_path / "prepared")
    assert data.feedback is not None
    assert set(np.unique(data.feedback.weights).tolist()) == {2.0, 4.0}


def test_loss_is_the_weighted_logistic_loss() -> None:
    head = FrameFeedbackHead(n_frames=3, feature_dim=2, weight=2.0, l2=0.0)
    with torch.no_grad():
        head.free.weight.copy_(torch.tensor([[0.5], [-1.0], [0.0]]))
        head.visual.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.intercept.fill_(0.25)
    frames, features = torch.tensor([0, 1, 2]), torch.tensor([[0.0, 3.0], [2.0, 0.0], [-1.0, 1.0]])
    slot = torch.tensor([0, 1, 2])
    personal, labels, weights = (
        torch.tensor([0.1, 0.2, 0.3]),
        torch.tensor([1.0, 0.0, 1.0]),
        torch.tensor([1.0, 2.0, 1.0]),
    )
    logits = [0.1 + 0.5 + 0.0 + 0.25, 0.2 - 1.0 + 2.0 + 0.25, 0.3 + 0.0 - 1.0 + 0.25]
    expected = (
        1.0 * -math.log(1 / (1 + math.exp(-logits[0])))
        + 2.0 * -math.log(1 - 1 / (1 + math.exp(-logits[1])))
        + 1.0 * -math.log(1 / (1 + math.exp(-logits[2])))
    ) / 4.0
    loss = head.loss(personal, frames, features, slot, labels, weights)
    assert float(loss.detach()) == pytest.approx(2.0 * expected, rel=1e-6)


@pytest.mark.parametrize("name", ["jifr", "vbpr"])
def test_without_feedback_the_model_is_exactly_the_paper_model(name: str, tmp_path: Path) -> None:
    """No feedback table, and a feedback table with none of it used (share 0), train the same
    weights, bit for bit, with no frame-bias head."""
    plain = prepare_dataset(write_planted(tmp_path / "plain", feedback=False), tmp_path / "p0")
    unused = prepare_dataset(
        write_planted(tmp_path / "logged"), tmp_path / "p1", PrepareConfig(frame_feedback_share=0.0)
    )
    assert plain.feedback is None and unused.feedback is not None and len(unused.feedback) == 0
    models = []
    for data in (plain, unused):
        model = build_model(name, ModelInputs.from_data(data), seed=3)
        assert model.feedback_head() is None
        fit(model, data, QUICK, show_progress=False)
        models.append(model)
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_settings_of_the_head_need_feedback(tmp_path: Path) -> None:
    plain = prepare_dataset(write_planted(tmp_path / "plain", feedback=False), tmp_path / "p0")
    with pytest.raises(ValueError, match="frame_feedback_weight need frame feedback"):
        build_model("jifr_na", ModelInputs.from_data(plain), {"frame_feedback_weight": 2.0})


def test_feedback_teaches_the_crowd_pleasing_frame(prepared: PreparedData, planted: Path, tmp_path: Path) -> None:
    """JIFR_NA and JIFR with frame feedback find the frame nine users in ten like; without it
    they cannot (the frame is unrelated to its features), and stay near RND's 1/4."""
    without = prepare_dataset(planted, tmp_path / "without", PrepareConfig(frame_feedback_share=0.0))
    config = TrainConfig(epochs=15, batch_size=64)
    for name in ("jifr_na", "jifr"):
        hits = {}
        for label, data in (("with", prepared), ("without", without)):
            model = build_model(name, ModelInputs.from_data(data), seed=0)
            fit(model, data, config, show_progress=False)
            hits[label] = evaluate_keyframes(model, data).metrics["HR@1"]
        assert hits["with"] > 0.75, (name, hits)
        assert hits["without"] < 0.45, (name, hits)


def test_checkpoint_keeps_the_frame_bias(prepared: PreparedData, tmp_path: Path) -> None:
    model = build_model("jifr", ModelInputs.from_data(prepared), seed=0)
    fit(model, prepared, QUICK, show_progress=False)
    assert model.feedback_head() is not None
    save_checkpoint(tmp_path / "run", model, prepared, QUICK)
    loaded, _, _ = load_checkpoint(tmp_path / "run", prepared)
    users, items = torch.arange(10), torch.arange(10)
    assert torch.equal(model.score_frames(users, items), loaded.score_frames(users, items))


def test_command_line_share(planted: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jifr.cli import app

    done = CliRunner().invoke(
        app, ["prepare", str(planted), "--out", str(tmp_path / "p"), "--frame-feedback-share", "0.5"]
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output.strip().splitlines()[-1])
    assert 0 < shown["n_frame_feedback"] < N_USERS * PER_USER * N_FRAMES * 0.7
    refused = CliRunner().invoke(
        app,
        ["compare", str(planted), "--out", str(tmp_path / "c"), "--models", "jifr_na", "--frame-feedback-share", "2"],
    )
    assert refused.exit_code == 2 and "frame_feedback_share must be in [0, 1]" in refused.output
    assert not (tmp_path / "c").exists()
