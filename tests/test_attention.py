"""JIFR's attention, checked by what it does: on planted data where only some frames of each item
carry the signal, trained content attention must weight those frames above uniform; the
diagnostics must show uniform attention as uniform and live attention as alive."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepare import prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.datasets.synthetic import SyntheticConfig, SyntheticDataset, generate, write_dataset
from jifr.diagnostics import attention_diagnostics
from jifr.experiment import evaluate_model
from jifr.models import ModelInputs, build_model
from jifr.models.frames import masked_softmax
from jifr.train import TrainConfig, fit

# Most frames beyond an item's first two are pure noise; the visual signal dominates the choices.
SOME_FRAMES_INFORMATIVE = SyntheticConfig(
    n_users=300,
    n_items=120,
    feature_dim=32,
    frames_per_item=(4, 6),
    visual_weight=0.8,
    popularity_weight=0.1,
    temperature=0.3,
    uninformative_frame_prob=0.6,
    frame_noise=1.0,
)
NO_ATTENTION_L2 = {"l2_attention": 0.0, "l2_attention_input": 0.0}  # the paper regularises only U, V, W


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticDataset, PreparedData]:
    root = tmp_path_factory.mktemp("attention")
    truth = generate(SOME_FRAMES_INFORMATIVE)
    return truth, prepare_dataset(write_dataset(truth, root / "data"), root / "prepared")


def informative_mask(truth: SyntheticDataset, data: PreparedData, mask: torch.Tensor) -> np.ndarray:
    """(n_items, F_max) True where the frame shows a theme (synthetic frame ids are f<index>)."""
    informative = truth.frame_theme[np.array([int(f[1:]) for f in data.frame_ids])] >= 0
    slots = data.frames.indptr[:-1, None] + np.arange(mask.shape[1])[None, :]
    return informative[np.where(mask.numpy(), slots, 0)] & mask.numpy()


def test_content_attention_prefers_the_informative_frames(planted: tuple[SyntheticDataset, PreparedData]) -> None:
    truth, data = planted
    model = build_model("jifr_content_att", ModelInputs.from_data(data), NO_ATTENTION_L2, seed=0)
    fit(model, data, TrainConfig(epochs=12, batch_size=512), show_progress=False)
    with torch.no_grad():
        logits, mask = model.content_logits(torch.arange(data.n_items))
    alpha = masked_softmax(logits, mask).numpy()
    informative = informative_mask(truth, data, mask)
    mixed = informative.any(1) & (mask.numpy() & ~informative).any(1)  # items with both kinds
    assert mixed.sum() > 50
    weight_on_informative = (alpha * informative)[mixed].sum(1).mean()
    uniform_share = (informative[mixed].sum(1) / mask.numpy()[mixed].sum(1)).mean()
    assert weight_on_informative > uniform_share + 0.15, (weight_on_informative, uniform_share)
    diagnostics = attention_diagnostics(model, data).metrics
    assert diagnostics["alpha_entropy_ratio"] < 0.8 and diagnostics["alpha_logit_spread"] > 1.0


def test_uniform_attention_shows_as_uniform(planted: tuple[SyntheticDataset, PreparedData]) -> None:
    _, data = planted
    model = build_model("jifr_na", ModelInputs.from_data(data), seed=0)
    metrics = attention_diagnostics(model, data).metrics
    assert metrics["alpha_entropy_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["alpha_logit_spread"] == 0.0 and metrics["alpha_max"] == pytest.approx(metrics["alpha_uniform_max"])
    assert metrics["beta_visual_mean"] == 0.5 and metrics["beta_visual_std"] == 0.0


def test_every_jifr_result_carries_its_diagnostics(planted: tuple[SyntheticDataset, PreparedData]) -> None:
    _, data = planted
    results = evaluate_model(build_model("jifr", ModelInputs.from_data(data), seed=0), data, repeats=1)
    assert "attention" in {r.protocol for r in results}
    assert "attention" not in {
        r.protocol for r in evaluate_model(build_model("bpr", ModelInputs.from_data(data)), data)
    }


def test_a_rating_attention_that_varies_shows_a_spread(planted: tuple[SyntheticDataset, PreparedData]) -> None:
    _, data = planted
    model = build_model("jifr", ModelInputs.from_data(data), NO_ATTENTION_L2, seed=0)
    fit(model, data, TrainConfig(epochs=3, batch_size=512), show_progress=False)
    metrics = attention_diagnostics(model, data).metrics
    assert 0.0 < metrics["beta_visual_mean"] < 1.0 and metrics["beta_visual_std"] > 1e-3


def test_the_default_l2_keeps_the_content_attention_alive(planted: tuple[SyntheticDataset, PreparedData]) -> None:
    """At the defaults (no L2 on W0) trained content attention leans towards the informative
    frames, if weakly on this small dataset; with the earlier L2 of 0.1 on W0 it collapses to
    exactly uniform (README, "Choosing JIFR's attention L2")."""
    truth, data = planted
    found = {}
    for label, settings in (("defaults", {}), ("l2 on W0", {"l2_attention_input": 0.1})):
        model = build_model("jifr_content_att", ModelInputs.from_data(data), settings, seed=0)
        fit(model, data, TrainConfig(epochs=12, batch_size=512), show_progress=False)
        with torch.no_grad():
            logits, mask = model.content_logits(torch.arange(data.n_items))
        alpha, informative = masked_softmax(logits, mask).numpy(), informative_mask(truth, data, mask)
        mixed = informative.any(1) & (mask.numpy() & ~informative).any(1)
        gain = (alpha * informative)[mixed].sum(1).mean() - (
            informative[mixed].sum(1) / mask.numpy()[mixed].sum(1)
        ).mean()
        found[label] = (attention_diagnostics(model, data).metrics["alpha_entropy_ratio"], gain)
    assert found["defaults"][0] < 1 - 1e-4 and found["defaults"][1] > 0.005, found
    assert found["l2 on W0"][0] == pytest.approx(1.0, abs=1e-5) and abs(found["l2 on W0"][1]) < 1e-4, found


def test_beta_in_eval_mode_reads_the_item_cache_and_equals_beta_from_the_frames(tiny: PreparedData) -> None:
    """Eval mode takes x_i from the item cache (as ranking does) instead of each item's frames."""
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=2)
    users = torch.as_tensor(tiny.test.users[:300])
    items = torch.as_tensor(tiny.test.items[:300])
    with torch.no_grad():
        from_frames = model.train().visual_weight(users, items)
        model.eval()
        model.item_cache()["visual"].mul_(0.0)  # the cache is what eval mode reads: x_i = 0 ...
        zeroed = model.visual_weight(users, items)
        model.train().eval()  # a fresh cache
        cached = model.visual_weight(users, items)
    assert from_frames.std() > 0.01  # beta varies over these pairs
    assert not torch.allclose(zeroed, from_frames)  # ... moves beta
    assert torch.allclose(cached, from_frames, rtol=0, atol=1e-6)
