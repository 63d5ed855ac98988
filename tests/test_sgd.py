"""BPR's compiled per-sample SGD solver (jifr.sgd, ``TrainConfig(optimizer="sgd")``): Rendle's
update by hand, learning on planted data, determinism, resume, and what it refuses."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import jifr
import jifr.train
from jifr.cli import app
from jifr.compare import CompareConfig
from jifr.data.prepared import PreparedData
from jifr.errors import TrainingDivergedError
from jifr.evaluate import evaluate_full
from jifr.models import ModelInputs, Recommender, build_model
from jifr.sgd import bpr_sgd_epoch
from jifr.train import History, TrainConfig, check_optimizer, fit

SGD = TrainConfig(epochs=6, n_negatives=3, learning_rate=0.05, patience=2, optimizer="sgd")


def bpr(data: PreparedData, l2: float = 0.01) -> Recommender:
    return build_model("bpr", ModelInputs.from_data(data), {"l2": l2}, seed=0)


def same_weights(a: Recommender, b: Recommender) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def one_epoch(users: list[int], positives: list[int], negatives: list[list[int]], *tables: np.ndarray) -> Any:
    as_index = (np.array(a, dtype=np.int64) for a in (users, positives, negatives))
    return bpr_sgd_epoch(*tables, *as_index, 0.5, 0.25)


# ---- the kernel ------------------------------------------------------------------------------
def test_one_step_is_rendles_update_computed_by_hand() -> None:
    """u = (1, 1), v_i = (1, 0), v_j = (0, 1): x = u.(v_i - v_j) = 0, so g = sigmoid(0) = 1/2 and
    the loss is ln 2; lr = 1/2 and l2 = 1/4 keep every value exact in float32."""
    users = np.array([[1.0, 1.0]], dtype=np.float32)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [7.0, 7.0]], dtype=np.float32)
    total, done = one_epoch([0], [0], [[1]], users, items)
    assert done == 1 and total == pytest.approx(math.log(2), rel=1e-7)  # computed in float32
    # u += 1/2 (1/2 (v_i - v_j) - 1/4 u); the items move with the old u
    np.testing.assert_array_equal(users, [[1.125, 0.625]])
    np.testing.assert_array_equal(items, [[1.125, 0.25], [-0.25, 0.625], [7.0, 7.0]])


def reference_epoch(
    user_factors: np.ndarray, item_factors: np.ndarray, rows: list[tuple[int, int, int]], lr: float, l2: float
) -> float:
    """The same steps, one triplet at a time in float64 NumPy, stored back as float32 (the
    kernel computes in float32: they agree to float32 precision)."""
    total = 0.0
    for u, i, j in rows:
        old_u, v_i, v_j = (
            table[k].astype(np.float64) for table, k in ((user_factors, u), (item_factors, i), (item_factors, j))
        )
        x = float(old_u @ (v_i - v_j))
        total += -math.log(1 / (1 + math.exp(-x)))
        g = 1 / (1 + math.exp(x))
        user_factors[u] = old_u + lr * (g * (v_i - v_j) - l2 * old_u)
        item_factors[i] = v_i + lr * (g * old_u - l2 * v_i)
        item_factors[j] = v_j + lr * (-g * old_u - l2 * v_j)
    return total


def test_an_epoch_is_the_steps_in_order_sharing_users_and_items() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    batch = ([0, 2, 0, 1], [1, 1, 3, 4], [[0, 2], [3, 4], [1, 2], [0, 0]])  # repeated users, items, negatives
    expected_users, expected_items = users.copy(), items.copy()
    rows = [(u, i, j) for u, i, js in zip(*batch, strict=True) for j in js]
    expected_loss = reference_epoch(expected_users, expected_items, rows, 0.5, 0.25)
    total, done = one_epoch(*batch, users, items)
    assert done == 4 and total == pytest.approx(expected_loss, rel=1e-6)
    np.testing.assert_allclose(users, expected_users, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items, expected_items, rtol=1e-5, atol=1e-6)


def test_the_loop_stops_before_the_step_of_a_non_finite_score() -> None:
    users = np.array([[1.0, 1.0], [np.inf, 0.0]], dtype=np.float32)
    items = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    total, done = one_epoch([0, 1, 0], [0, 0, 0], [[1], [1], [1]], users, items)
    assert done == 1 and math.isnan(total)
    assert users[1, 0] == np.inf and np.isfinite(items).all()  # the diverged row took no step


# ---- training with it ------------------------------------------------------------------------
def test_sgd_trained_bpr_beats_popularity_on_planted_data(planted: PreparedData) -> None:
    pop = build_model("pop", ModelInputs.from_data(planted))
    fit(pop, planted, TrainConfig(), show_progress=False)
    model = bpr(planted)
    config = TrainConfig(epochs=20, n_negatives=5, learning_rate=0.05, optimizer="sgd")
    history = fit(model, planted, config, show_progress=False)
    ours, floor = evaluate_full(model, planted).metrics, evaluate_full(pop, planted).metrics
    assert ours["NDCG@10"] > 2 * floor["NDCG@10"] and ours["HR@10"] > 2 * floor["HR@10"]
    losses = [record["loss"] for record in history.epochs]
    assert losses[0] > losses[-1] and 0 < losses[-1] < math.log(2)  # mean -ln sigmoid(x) of each epoch


def test_same_seed_gives_the_same_weights_bit_for_bit(tiny: PreparedData) -> None:
    first, second = bpr(tiny), bpr(tiny)
    assert strip_times(fit(first, tiny, SGD, show_progress=False)) == strip_times(
        fit(second, tiny, SGD, show_progress=False)
    )
    assert same_weights(first, second) and not same_weights(first, bpr(tiny))


def test_drawing_the_next_epoch_ahead_changes_nothing(tiny: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next epoch's order and negatives come from a second thread; drawn at each epoch's
    start instead, the run is the same bit for bit."""
    ahead = bpr(tiny)
    history = strip_times(fit(ahead, tiny, SGD, show_progress=False))
    drawn_in_turn = jifr.train._EpochDraws

    class InTurn(drawn_in_turn):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, ahead: bool) -> None:
            super().__init__(*args, ahead=False)

    monkeypatch.setattr(jifr.train, "_EpochDraws", InTurn)
    in_turn = bpr(tiny)
    assert strip_times(fit(in_turn, tiny, SGD, show_progress=False)) == history
    assert same_weights(ahead, in_turn) and len(history[0]) > 2


def test_a_non_finite_loss_stops_training_with_a_clear_error(tiny: PreparedData) -> None:
    model = bpr(tiny)

    def poison(record: dict[str, Any]) -> None:
        with torch.no_grad():
            model.user_collab.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match="epoch 2, batch 1 of"):
        fit(model, tiny, SGD, show_progress=False, callbacks=[poison])


class Interrupt(Exception):
    pass


def strip_times(history: History) -> tuple[Any, ...]:
    epochs = [{k: v for k, v in record.items() if k != "seconds"} for record in history.epochs]
    return epochs, history.best_epoch, history.best_metric


def test_an_interrupted_sgd_run_resumes_to_the_uninterrupted_result(tiny: PreparedData, tmp_path: Path) -> None:
    reference = bpr(tiny)
    expected = fit(reference, tiny, SGD, show_progress=False)

    def stop(record: dict[str, Any]) -> None:
        if record["epoch"] == 3:  # raised before this epoch's state is saved
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(bpr(tiny), tiny, SGD, show_progress=False, callbacks=[stop], state_dir=tmp_path / "state")
    model = bpr(tiny)
    got = fit(model, tiny, SGD, show_progress=False, state_dir=tmp_path / "state", resume=True)
    assert strip_times(got) == strip_times(expected) and same_weights(model, reference)
    with pytest.raises(ValueError, match=r"train_config\.optimizer was 'sgd', now unset \(its default\)"):
        adam = TrainConfig(epochs=6, n_negatives=3, learning_rate=0.05, patience=2)
        fit(bpr(tiny), tiny, adam, show_progress=False, state_dir=tmp_path / "state", resume=True)


# ---- what it refuses -------------------------------------------------------------------------
def test_other_models_optimizers_and_process_counts_are_refused(tiny: PreparedData) -> None:
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd, got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    vbpr = build_model("vbpr", ModelInputs.from_data(tiny), seed=0)
    with pytest.raises(ValueError, match="trains bpr only, not vbpr"):
        fit(vbpr, tiny, SGD, show_progress=False)
    with pytest.raises(ValueError, match="one process, not 2"):
        check_optimizer("bpr", SGD, processes=2)
    with pytest.raises(ValueError, match="trains bpr only, not jifr"):
        CompareConfig(models=("bpr", "jifr"), train=SGD)
    CompareConfig(models=("bpr", "pop"), train=SGD)  # untrained models take no optimizer


def test_the_cli_trains_with_sgd_and_reports_what_it_refuses(tiny: PreparedData, tmp_path: Path) -> None:
    runner = CliRunner()

    def train(out: str, *extra: str) -> tuple[int, str]:
        args = ["train", str(tiny.directory), "--out", str(tmp_path / out), "--epochs", "2", "--no-progress"]
        result = runner.invoke(app, [*args, *extra])
        return result.exit_code, result.output

    code, out = train("run", "--model", "bpr", "--optimizer", "sgd", "--lr", "0.05")
    assert code == 0, out
    description = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert description["train_config"]["optimizer"] == "sgd" and description["train_config"]["learning_rate"] == 0.05
    code, out = train("vbpr", "--model", "vbpr", "--optimizer", "sgd")
    assert code == 2 and "trains bpr only, not vbpr" in out
    code, out = train("two", "--model", "bpr", "--optimizer", "sgd", "--nproc", "2")
    assert code == 2 and "one process, not 2" in out
    code, out = train("bad", "--model", "bpr", "--optimizer", "momentum")
    assert code == 2 and "optimizer must be one of adam, sgd" in out
    assert not any((tmp_path / name).exists() for name in ("vbpr", "two", "bad"))  # refused before any output


def test_records_leave_out_adam_and_fp32_so_earlier_records_still_match() -> None:
    """Results, checkpoints and training states written before the optimizer and the precision
    could be chosen trained with Adam in float32 and do not name them: such a run's record must
    equal theirs."""
    assert "optimizer" not in TrainConfig().record() and "precision" not in TrainConfig().record()
    assert TrainConfig(optimizer="sgd").record()["optimizer"] == "sgd"
    assert TrainConfig(precision="bf16").record()["precision"] == "bf16"
    assert TrainConfig(epochs=3).record() == {
        k: v for k, v in asdict(TrainConfig(epochs=3)).items() if k not in ("optimizer", "precision")
    }
