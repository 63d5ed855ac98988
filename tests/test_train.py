"""The training loop: validation schedule, best weights, divergence and progress output."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

import jifr.progress as progress
import jifr.train as train
from jifr.data.prepared import PreparedData
from jifr.errors import TrainingDivergedError
from jifr.models import ModelInputs, Recommender, build_model
from jifr.train import TrainConfig, fit


def bpr(data: PreparedData) -> Recommender:
    return build_model("bpr", ModelInputs.from_data(data), seed=0)


def validated_epochs(history: train.History) -> list[int]:
    return [record["epoch"] for record in history.epochs if "valid_NDCG@10" in record]


def test_fewer_epochs_than_eval_every_still_validates_and_trains(tiny: PreparedData) -> None:
    model = bpr(tiny)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    history = fit(model, tiny, TrainConfig(epochs=3, batch_size=256, eval_every=5), show_progress=False)
    assert validated_epochs(history) == [3]
    assert history.best_epoch == 3  # before: 0, with the untrained weights returned as "best"
    assert not all(torch.equal(initial[name], value) for name, value in model.state_dict().items())


def test_last_epoch_is_validated_when_not_a_multiple_of_eval_every(tiny: PreparedData) -> None:
    history = fit(bpr(tiny), tiny, TrainConfig(epochs=7, batch_size=256, eval_every=3), show_progress=False)
    assert validated_epochs(history) == [3, 6, 7]
    assert history.best_epoch >= 1


def test_non_finite_loss_stops_training_with_a_clear_error(tiny: PreparedData) -> None:
    model = bpr(tiny)

    def poison(record: dict[str, Any]) -> None:  # as if the first epoch's updates had overflowed
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDivergedError) as caught:
        fit(model, tiny, TrainConfig(epochs=5, batch_size=256), show_progress=False, callbacks=[poison])
    message = str(caught.value)
    assert "epoch 2, batch 1 of" in message and "learning rate" in message and "--lr" in message
    assert isinstance(caught.value, ValueError)  # the CLI reports it as "error: ..." with exit code 2


def test_no_bar_frames_where_stderr_is_not_a_terminal(
    tiny: PreparedData,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Captured stderr is not a terminal, as when a run's output goes to a log file."""
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)  # every batch would be due a line
    with caplog.at_level(logging.INFO, logger="jifr.train"):
        fit(bpr(tiny), tiny, TrainConfig(epochs=1, batch_size=256), show_progress=True)
    assert "\r" not in capsys.readouterr().err
    assert any(record.getMessage().startswith("epoch 1: ") for record in caplog.records)  # periodic lines instead


def test_no_periodic_lines_when_progress_is_off(tiny: PreparedData, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jifr.train"):
        fit(bpr(tiny), tiny, TrainConfig(epochs=1, batch_size=256), show_progress=False)
    assert not any(record.getMessage().startswith("epoch 1: ") for record in caplog.records)
