"""Training over several processes (torch.distributed, gloo on the CPU): two ranks started by
real torchrun end where one process with the same global batch ends.

Tolerance. Both runs add the same float32 terms in another order (each rank's mean over half the
batch, then DDP's average of the two gradients), and Adam carries the rounding along. Where a
gradient is zero in exact arithmetic, Adam's normalised step turns its rounding into steps of the
learning rate's size: W1's bias, in a hidden unit that every frame of an item activates, shifts all
that item's attention logits alike, which the softmax ignores. Weights in such directions wander
without changing a score. Measured after four epochs on the tiny data: scores differ by at most
4.5e-6 of the largest score, JIFR's weights by 1.5e-3 of a tensor's largest magnitude (its content
attention's W1 bias and W0; 1.9e-5 with the MKL frame product, JIFR_FRAME_PRODUCT=mkl), BPR's by
far less. Asserted: 1e-4 on every score (``SCORES``), 1e-2 on JIFR's weights (``ATTENTION_WEIGHTS``),
1e-4 on BPR's (``WEIGHTS``; the floor of 0.01 keeps tensors near zero from inflating the ratio),
and 1e-6 on the losses and validation metrics (``METRICS``). Another seed's run and the initial
weights are over 0.1 away, and another seed's scores far more than 1e-4, so the checks cannot pass
by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from dataset_files import write_feedback_from_likes
from safetensors.torch import load_file
from typer.testing import CliRunner

from jifr.cli import app
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.distributed import Ranks, shard_bounds, share_scale
from jifr.models import ModelInputs, Recommender, build_model
from jifr.outputs import open_output_directory
from jifr.train import History, TrainConfig, fit

WEIGHTS = 1e-4  # of each tensor's largest magnitude (at least FLOOR)
ATTENTION_WEIGHTS = 1e-2  # the same for JIFR, whose attention has directions no score sees
SCORES = 1e-4  # of the largest |score|
FAR = 0.1  # another seed's weights, and the initial ones, are at least this far away
FLOOR = 0.01
METRICS = 1e-6


def two_ranks(*arguments: str | Path) -> list[str]:
    """``jifr ARGUMENTS`` in two processes under torchrun, on a free port."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return [*launcher, "-m", "jifr", *map(str, arguments)]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def relative_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """The largest |first - second| of any tensor, over that tensor's largest magnitude in
    ``second`` (at least ``FLOOR``, for tensors near zero)."""
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max() / max(float(second[k].abs().max()), FLOOR)) for k in first)


def score_difference(weights: dict[str, torch.Tensor], reference: Recommender, data: PreparedData) -> float:
    """The largest |score| difference over every (user, item) pair between a model with ``weights``
    and ``reference``, over the largest |score| of ``reference``."""
    model = build_model(reference.name, ModelInputs.from_data(data), seed=0)
    model.load_state_dict(weights)
    model.eval()
    reference.eval()
    users = torch.arange(data.n_users)
    with torch.no_grad():
        got, expected = model.score_all(users), reference.score_all(users)
    return float((got - expected).abs().max() / expected.abs().max())


def trained(name: str, data: PreparedData, config: TrainConfig, seed: int = 0) -> tuple[Recommender, History]:
    model = build_model(name, ModelInputs.from_data(data), seed=seed)
    return model, fit(model, data, config, show_progress=False)


def checkpoint_history(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "checkpoint.json").read_text())["history"])


def assert_same_history(got: list[dict[str, Any]], expected: History) -> None:
    assert [record["epoch"] for record in got] == [record["epoch"] for record in expected.epochs]
    for mine, theirs in zip(got, expected.epochs, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - {"epoch", "seconds"}:
            assert mine[key] == pytest.approx(theirs[key], rel=METRICS, abs=METRICS), (mine["epoch"], key)


@pytest.fixture(scope="module")
def sparse_feedback(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The tiny data with a little frame feedback: fewer rows than batches, so that in some steps
    the frame-feedback head takes no part."""
    source = tmp_path_factory.mktemp("feedback") / "data"
    shutil.copytree(tiny_dir, source)
    write_feedback_from_likes(source)
    return prepare_dataset(source, source.parent / "prepared", PrepareConfig(frame_feedback_share=0.01))


def test_two_torchrun_ranks_match_one_process(sparse_feedback: PreparedData, tmp_path: Path) -> None:
    data = sparse_feedback
    config = TrainConfig(epochs=4, batch_size=64, learning_rate=0.02)
    n_batches = -(-len(data.train) // config.batch_size)
    assert data.feedback is not None and 0 < len(data.feedback) < n_batches, "weak test: every step has feedback"
    assert len(data.train) % config.batch_size % 2 == 1, "weak test: the last batch splits evenly"

    arguments = ["--model", "jifr", "--epochs", "4", "--batch-size", "64", "--lr", "0.02", "--no-progress"]
    done = run(two_ranks("train", data.directory, "--out", tmp_path / "run", *arguments))
    assert done.stdout.count('"checkpoint"') == 1  # rank 0 alone reports and writes
    assert done.stderr.count("epoch epoch=1 ") == 1
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    history = checkpoint_history(tmp_path / "run")

    reference, expected = trained("jifr", data, config)
    assert reference.feedback_head() is not None
    assert score_difference(weights, reference, data) <= SCORES
    assert relative_difference(weights, reference.state_dict()) <= ATTENTION_WEIGHTS
    assert_same_history(history["epochs"], expected)
    assert history["best_epoch"] == expected.best_epoch

    # Not vacuous: training moved the weights, and another seed ends far away.
    initial = build_model("jifr", ModelInputs.from_data(data), seed=0).state_dict()
    assert relative_difference(weights, initial) > FAR
    other, _ = trained("jifr", data, config, seed=1)
    assert relative_difference(weights, other.state_dict()) > FAR
    assert score_difference(weights, other, data) > 100 * SCORES


def test_nproc_resumes_a_one_process_run_to_the_uninterrupted_result(tiny: PreparedData, tmp_path: Path) -> None:
    """`jifr train --nproc 2` starts torchrun itself, continues a state saved by one process, and
    copes with a last batch of one positive (one rank has none of it)."""
    batch = next(b for b in range(len(tiny.train) // 2, 1, -1) if b % 2 == 0 and len(tiny.train) % b == 1)
    config = TrainConfig(epochs=4, batch_size=batch, learning_rate=0.05)
    run_dir = open_output_directory(tmp_path / "run", "run")

    class Interrupt(Exception):
        pass

    def stop(record: dict[str, Any]) -> None:
        if record["epoch"] == 3:  # raised before the third epoch's state is saved
            raise Interrupt

    with pytest.raises(Interrupt):
        model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
        fit(model, tiny, config, show_progress=False, callbacks=[stop], state_dir=run_dir / "training-state")

    arguments = ["--model", "bpr", "--epochs", "4", "--batch-size", str(batch), "--lr", "0.05", "--no-progress"]
    command = ["train", tiny.directory, "--out", run_dir, *arguments, "--resume", "--nproc", "2"]
    done = run([sys.executable, "-m", "jifr", *map(str, command)])
    assert "resuming after epoch 2" in done.stderr

    reference, expected = trained("bpr", tiny, config)
    weights = load_file(str(run_dir / "model.safetensors"))
    assert relative_difference(weights, reference.state_dict()) <= WEIGHTS
    assert_same_history(checkpoint_history(run_dir)["epochs"], expected)
    assert not (run_dir / "training-state").exists()


def test_nproc_refuses_a_batch_that_does_not_split(tiny: PreparedData, tmp_path: Path) -> None:
    args = ["train", str(tiny.directory), "--out", str(tmp_path / "run"), "--batch-size", "255", "--nproc", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert (
        "batch size 255 is not a multiple of the 2 processes" in result.output and "--batch-size 254" in result.output
    )
    assert not (tmp_path / "run").exists()  # refused before any process started


def test_nproc_under_torchrun_is_refused(tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", str(tiny.directory), "--out", str(tmp_path / "run"), "--nproc", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "under torchrun, leave it out" in result.output


@pytest.mark.parametrize(("n", "size"), [(64, 2), (65, 2), (1, 2), (10, 3), (7, 4)])
def test_parts_of_a_batch_cover_it_and_their_scales_add_up(n: int, size: int) -> None:
    parts = [shard_bounds(n, Ranks(rank, size)) for rank in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(stop == start for (_, stop), (start, _) in zip(parts, parts[1:], strict=False))
    lengths = [stop - start for start, stop in parts]
    assert max(lengths) - min(lengths) <= 1
    # DDP averages over ranks: the scaled parts weigh the global batch's rows once each.
    assert sum(share_scale(length, n, Ranks(0, size)) for length in lengths) / size == pytest.approx(1.0)
    if n % size == 0:
        assert {share_scale(length, n, Ranks(0, size)) for length in lengths} == {1.0}
