"""Interrupted training resumes from its last completed epoch and ends where an uninterrupted run
ends: the same weights, bit for bit, and the same history."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from jifr.cli import app
from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.models import ModelInputs, Recommender, build_model
from jifr.train import History, TrainConfig, fit
from jifr.training_state import STATE_NAME

# bpr on the tiny dataset: an epoch takes 0.1-0.3 s. With this learning rate validation peaks
# early and early stopping ends the run, so the state carried across the kill includes best
# weights that are not the current ones and a non-zero stale count.
TRAIN = ("--model", "bpr", "--epochs", "20", "--batch-size", "64", "--lr", "0.05", "--patience", "6")
KILL_AFTER = 7  # completed epochs


def jifr(*args: str | Path) -> list[str]:
    return [sys.executable, "-c", "from jifr.cli import app; app()", *map(str, args)]


def saved_state(run: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run / "training-state" / STATE_NAME).read_text()))
    except (OSError, ValueError):  # not written yet
        return {"epoch": 0}


def history_without_times(run: Path) -> dict[str, Any]:
    history = json.loads((run / "checkpoint.json").read_text())["history"]
    epochs = [{k: v for k, v in record.items() if k != "seconds"} for record in history["epochs"]]
    return {"epochs": epochs, "best_epoch": history["best_epoch"], "best_metric": history["best_metric"]}


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def kill_after_epochs(command: list[str], run: Path, log: Path, epochs: int) -> dict[str, Any]:
    """Start ``command``, SIGKILL it once its saved state shows ``epochs`` completed; that state."""
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while saved_state(run)["epoch"] < epochs and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        state = saved_state(run)
        assert process.poll() is None, f"the run ended before it could be killed:\n{log.read_text()}"
        process.kill()
        assert process.wait(timeout=60) == -9  # died of SIGKILL, not of its own accord
    finally:
        if process.poll() is None:
            process.kill()
    return state


@pytest.mark.slow
def test_run_killed_mid_training_resumes_to_the_uninterrupted_result(tiny: PreparedData, tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    done = subprocess.run(jifr("train", tiny.directory, "--out", reference, *TRAIN), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    state = kill_after_epochs(
        jifr("train", tiny.directory, "--out", run, *TRAIN), run, tmp_path / "killed.log", KILL_AFTER
    )
    assert state["epoch"] >= KILL_AFTER and not state["finished"]
    assert state["history"]["best_epoch"] < state["epoch"] and state["stale"] > 0, "weak test: nothing to carry over"
    assert not (run / "checkpoint.json").exists()

    resumed = subprocess.run(
        jifr("train", tiny.directory, "--out", run, *TRAIN, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {state['epoch']}" in resumed.stderr
    assert_same_weights(reference, run)
    assert history_without_times(run) == history_without_times(reference)
    assert len(history_without_times(run)["epochs"]) < 20  # early stopping ended both runs
    assert not (run / "training-state").exists()  # removed once the checkpoint is saved
    # Progress goes to a log file here: no bar frames (carriage returns) in it.
    assert "\r" not in (tmp_path / "killed.log").read_text() + resumed.stderr + done.stderr


# ---- the same in process, and what resume refuses --------------------------------------------
QUICK = TrainConfig(epochs=4, batch_size=256, learning_rate=0.05, patience=2)


def bpr(data: PreparedData) -> Recommender:
    return build_model("bpr", ModelInputs.from_data(data), seed=0)


class Interrupt(Exception):
    pass


def interrupted_fit(data: PreparedData, state_dir: Path, after_epoch: int) -> None:
    def stop(record: dict[str, Any]) -> None:
        if record["epoch"] == after_epoch + 1:  # raised before this epoch's state is saved
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(bpr(data), data, QUICK, show_progress=False, callbacks=[stop], state_dir=state_dir)


def test_resume_in_process_matches_an_uninterrupted_fit(tiny: PreparedData, tmp_path: Path) -> None:
    reference = bpr(tiny)
    expected = fit(reference, tiny, QUICK, show_progress=False)
    interrupted_fit(tiny, tmp_path / "state", after_epoch=2)
    model = bpr(tiny)
    got = fit(model, tiny, QUICK, show_progress=False, state_dir=tmp_path / "state", resume=True)
    assert all(
        torch.equal(a, b) for a, b in zip(reference.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert strip_times(got) == strip_times(expected)
    # Resuming a finished state trains nothing and restores the best weights.
    again = bpr(tiny)
    finished = fit(again, tiny, QUICK, show_progress=False, state_dir=tmp_path / "state", resume=True)
    assert strip_times(finished) == strip_times(expected)
    assert all(
        torch.equal(a, b) for a, b in zip(reference.state_dict().values(), again.state_dict().values(), strict=True)
    )


def strip_times(history: History) -> tuple[Any, ...]:
    epochs = [{k: v for k, v in record.items() if k != "seconds"} for record in history.epochs]
    return epochs, history.best_epoch, history.best_metric


def test_torn_state_is_reported_not_used(tiny: PreparedData, tmp_path: Path) -> None:
    interrupted_fit(tiny, tmp_path / "state", after_epoch=2)
    description = json.loads((tmp_path / "state" / STATE_NAME).read_text())
    tensors_path = tmp_path / "state" / description["tensors"]["file"]
    tensors = load_file(str(tensors_path))
    tensors = {name: value + 1 if name.startswith("model.") else value for name, value in tensors.items()}
    save_file(tensors, str(tensors_path))  # a tensor file that is not the one the JSON was written with
    with pytest.raises(DataError, match="torn training state"):
        fit(bpr(tiny), tiny, QUICK, show_progress=False, state_dir=tmp_path / "state", resume=True)
    tensors_path.unlink()
    with pytest.raises(DataError, match="missing"):
        fit(bpr(tiny), tiny, QUICK, show_progress=False, state_dir=tmp_path / "state", resume=True)


def test_resume_with_other_settings_is_refused(tiny: PreparedData, tmp_path: Path) -> None:
    interrupted_fit(tiny, tmp_path / "state", after_epoch=1)
    other = TrainConfig(epochs=4, batch_size=256, learning_rate=0.01, patience=2)
    with pytest.raises(ValueError, match=r"train_config\.learning_rate was 0\.05, now 0\.01"):
        fit(bpr(tiny), tiny, other, show_progress=False, state_dir=tmp_path / "state", resume=True)


def test_cli_run_directory_rules(tiny: PreparedData, tmp_path: Path) -> None:
    runner = CliRunner()

    def train(*extra: str) -> tuple[int, str]:
        args = ["train", str(tiny.directory), "--out", str(tmp_path / "run"), "--model", "bpr", "--epochs", "2"]
        result = runner.invoke(app, [*args, "--no-progress", *extra])
        return result.exit_code, result.output

    assert train()[0] == 0
    code, out = train()
    assert code == 2 and "--force" in out  # an existing run is never overwritten silently
    code, out = train("--resume")
    assert code == 0 and "finished run; nothing to resume" in out
    code, out = train("--resume", "--lr", "0.1")
    assert code == 2 and "learning_rate was 0.005, now 0.1" in out
    code, out = train("--force", "--resume")
    assert code == 2 and "choose one" in out
    assert train("--force")[0] == 0


def test_a_fresh_fit_discards_an_earlier_state(tiny: PreparedData, tmp_path: Path) -> None:
    interrupted_fit(tiny, tmp_path / "state", after_epoch=2)
    (tmp_path / "state" / "notes.txt").write_text("not ours")

    def stop(record: dict[str, Any]) -> None:
        raise Interrupt  # in epoch 1, before any state of this run is saved

    with pytest.raises(Interrupt):
        fit(bpr(tiny), tiny, QUICK, show_progress=False, callbacks=[stop], state_dir=tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["notes.txt"]
