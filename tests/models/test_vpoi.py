"""VPOI: the image ties are the documented ones, and the model learns a planted answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from dataset_files import PLANTED_TRAIN

from jifr.data.prepared import Interactions, PreparedData
from jifr.evaluate import evaluate_full
from jifr.models import ModelInputs, bpr_loss, build_model
from jifr.models.vpoi import VPOI, VPOIConfig
from jifr.train import TrainConfig, fit

# The planted data and training of tests/test_learning.py (shared fixture ``planted``).
TRAIN = PLANTED_TRAIN


def brute_item_means(data: PreparedData) -> np.ndarray:
    """(n_items, D) cbar_i: the mean feature of each item's frames, one item at a time."""
    features = np.asarray(data.frames.features, dtype=np.float64)
    indptr = data.frames.indptr
    return np.stack([features[indptr[i] : indptr[i + 1]].mean(0) for i in range(data.n_items)])


def brute_user_means(data: PreparedData) -> np.ndarray:
    """(n_users, D) dbar_a: the mean cbar_i of each user's distinct training items, one user at a time."""
    item_means = brute_item_means(data)
    out = np.zeros((data.n_users, item_means.shape[1]))
    for user in range(data.n_users):
        items = np.unique(data.train.items[data.train.users == user])
        if len(items):
            out[user] = item_means[items].mean(0)
    return out


def test_user_features_are_the_mean_of_the_training_items_mean_frames(tiny: PreparedData) -> None:
    model = build_model("vpoi", ModelInputs.from_data(tiny))
    assert np.allclose(model.item_features.numpy(), brute_item_means(tiny), atol=1e-5)
    assert np.allclose(model.user_features.numpy(), brute_user_means(tiny), atol=1e-5)


def test_a_repeated_training_interaction_counts_once_in_the_user_features(tiny: PreparedData) -> None:
    inputs = ModelInputs.from_data(tiny)
    user, item = int(tiny.train.users[0]), int(tiny.train.items[0])
    repeated = Interactions(np.append(tiny.train.users, [user] * 3), np.append(tiny.train.items, [item] * 3))
    once = VPOI(VPOIConfig(), inputs).user_features
    thrice = VPOI(VPOIConfig(), dataclasses.replace(inputs, train=repeated)).user_features
    assert torch.allclose(once, thrice, atol=1e-6)


def test_penalty_is_the_hand_computed_objective(tiny: PreparedData) -> None:
    """l2 on the batch rows, both image ties (each row once per appearance) and l2 on P."""
    config = VPOIConfig(dim=4, l2=0.01, l2_projection=0.02, lambda_item=0.3, lambda_user=0.7)
    model = VPOI(config, ModelInputs.from_data(tiny), seed=3)
    users, positives = np.array([0, 3, 3]), np.array([1, 2, 4])
    negatives = np.array([[6, 7], [8, 6], [1, 9]])  # repeats: item 6 twice, item 1 as positive and negative
    pos, neg, penalty = model.triplet_scores(torch.tensor(users), torch.tensor(positives), torch.tensor(negatives))

    u_all = model.user_collab.weight.detach().double().numpy()
    v_all = model.item_collab.weight.detach().double().numpy()
    p = model.projection.weight.detach().double().numpy()  # (dim, D)
    projected_items, projected_users = brute_item_means(tiny) @ p.T, brute_user_means(tiny) @ p.T
    expected = 0.0
    for b, user in enumerate(users):
        u = u_all[user]
        expected += config.l2 * (u @ u) + config.lambda_user * np.sum((u - projected_users[user]) ** 2)
        for item in [positives[b], *negatives[b]]:
            v = v_all[item]
            expected += config.l2 * (v @ v) + config.lambda_item * np.sum((v - projected_items[item]) ** 2)
    expected = expected / len(users) + config.l2_projection * np.sum(p**2)

    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    assert np.allclose(pos.detach().numpy(), np.sum(u_all[users] * v_all[positives], 1), atol=1e-6)
    assert np.allclose(neg.detach().numpy(), np.einsum("bd,bnd->bn", u_all[users], v_all[negatives]), atol=1e-6)


def _triplet_outputs(config: VPOIConfig, data: PreparedData) -> list[torch.Tensor]:
    model = VPOI(config, ModelInputs.from_data(data), seed=0)
    users, positives, negatives = (
        torch.tensor([0, 3, 5]),
        torch.tensor([1, 2, 4]),
        torch.tensor([[6, 7], [8, 9], [1, 0]]),
    )
    return [t.detach() for t in model.triplet_scores(users, positives, negatives)]


@pytest.mark.parametrize("setting", [f.name for f in dataclasses.fields(VPOIConfig)])
def test_every_setting_changes_the_outputs(setting: str, tiny: PreparedData) -> None:
    base = VPOIConfig()
    value = getattr(base, setting)
    changed = dataclasses.replace(base, **{setting: value + 8 if isinstance(value, int) else value * 10})
    reference, other = _triplet_outputs(base, tiny), _triplet_outputs(changed, tiny)
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(reference, other, strict=True))


def test_training_is_reproducible_under_a_seed(tiny: PreparedData) -> None:
    def trained(seed: int) -> dict[str, torch.Tensor]:
        model = build_model("vpoi", ModelInputs.from_data(tiny), seed=seed)
        fit(model, tiny, TrainConfig(epochs=2, batch_size=256, seed=seed), show_progress=False)
        return model.state_dict()

    first, again, other = trained(0), trained(0), trained(1)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def _relative_item_tie(model: VPOI) -> float:
    """||V - P cbar||_F / ||P cbar||_F over all items."""
    with torch.no_grad():
        projected = model.projection(model.item_features)
        return float((model.item_collab.weight - projected).norm() / projected.norm())


def test_a_huge_item_tie_puts_each_item_embedding_at_its_projected_features(tiny: PreparedData) -> None:
    """Minimise the objective on fixed triplets (``fit`` would keep the best validation weights,
    which may be those of an early epoch)."""
    model = build_model("vpoi", ModelInputs.from_data(tiny), {"lambda_item": 1000.0})
    generator = torch.Generator().manual_seed(0)
    positives = torch.arange(tiny.n_items)  # every item appears, so every item is tied
    users = torch.randint(tiny.n_users, (tiny.n_items,), generator=generator)
    negatives = torch.randint(tiny.n_items, (tiny.n_items, 2), generator=generator)
    assert _relative_item_tie(model) > 0.5
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        pos, neg, penalty = model.triplet_scores(users, positives, negatives)
        optimizer.zero_grad()
        (bpr_loss(pos, neg) + penalty).backward()
        optimizer.step()
    assert _relative_item_tie(model) < 0.01


@pytest.mark.slow
def test_vpoi_learns_the_planted_answer_far_better_than_popularity(planted: PreparedData) -> None:
    results = {}
    for name in ("pop", "vpoi"):
        model = build_model(name, ModelInputs.from_data(planted), seed=0)
        fit(model, planted, TRAIN, show_progress=False)
        results[name] = evaluate_full(model, planted).metrics
    for metric in ("NDCG@10", "HR@10"):
        assert results["vpoi"][metric] > 2 * results["pop"][metric], metric
