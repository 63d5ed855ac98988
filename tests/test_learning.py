"""Real learning on data with a planted answer (fixed seeds): learned models beat the floors."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_files import PLANTED_TRAIN

from jifr.data.prepared import PreparedData
from jifr.evaluate import evaluate_full, evaluate_keyframes, random_keyframe_expectation
from jifr.models import ModelInputs, build_model
from jifr.train import fit

TRAIN = PLANTED_TRAIN


@pytest.fixture(scope="module")
def results(planted: PreparedData) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("pop", "bpr", "vbpr", "jifr_na", "jifr"):
        model = build_model(name, ModelInputs.from_data(planted), seed=0)
        fit(model, planted, TRAIN, show_progress=False)
        out[name] = evaluate_full(model, planted).metrics
        if model.ranks_frames:
            out[name] |= {f"frame_{k}": v for k, v in evaluate_keyframes(model, planted).metrics.items()}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bpr", "vbpr", "jifr_na", "jifr"])
def test_learned_models_beat_popularity_on_items(name: str, results: dict[str, dict[str, float]]) -> None:
    assert results[name]["NDCG@10"] > 2 * results["pop"]["NDCG@10"]
    assert results[name]["HR@10"] > 2 * results["pop"]["HR@10"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jifr_na", "jifr"])
def test_jifr_key_frames_clearly_beat_random(
    name: str, results: dict[str, dict[str, float]], planted: PreparedData
) -> None:
    floor = random_keyframe_expectation(planted)
    assert results[name]["frame_HR@1"] > floor["HR@1"] + 0.06
    assert results[name]["frame_NDCG@3"] > floor["NDCG@3"] + 0.04


def test_planted_dataset_is_the_documented_one(planted: PreparedData, tmp_path: Path) -> None:
    assert planted.n_users == 500 and planted.n_items > 240 and len(planted.likes) > 1000
