"""Outputs never destroy and never look complete before they are (regression tests).

- a command refuses an output directory that jifr did not write, or that holds its input;
  ``--force`` replaces only an earlier jifr output of the same kind;
- files are replaced atomically, and a failed write leaves the old file and no temporary;
- a checkpoint verifies itself on load (truncated, foreign or mismatched files are named);
- a full disk ends in one message naming the path and "no space left", exit 2, and leaves no
  partial output that looks complete (on a real, small tmpfs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jifr.checkpoint import CHECKPOINT_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint
from jifr.cli import app
from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.models import ModelInputs, build_model
from jifr.outputs import MARKER_NAME, atomic_path, write_text_atomic
from jifr.train import TrainConfig, fit

runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A user's own non-empty directory."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return mine


# ---- refusing to overwrite -------------------------------------------------------------------
def test_prepare_refuses_a_foreign_directory_even_with_force(tiny_dir: Path, foreign: Path) -> None:
    before = snapshot(foreign)
    for extra in ((), ("--force",)):
        code, out = invoke("prepare", tiny_dir, "--out", foreign, *extra)
        assert code == 2 and "was not written by jifr" in out and str(foreign) in out and "Traceback" not in out
    assert snapshot(foreign) == before


def test_prepare_refuses_to_write_over_its_source(tiny_dir: Path) -> None:
    before = snapshot(tiny_dir)
    for out in (tiny_dir, tiny_dir.parent):
        code, message = invoke("prepare", tiny_dir, "--out", out, "--force")
        assert code == 2 and "the input" in message
    assert snapshot(tiny_dir) == before


def test_prepare_replaces_only_its_own_kind(tiny_dir: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "generated"
    assert invoke("generate", "tiny", "--out", dataset)[0] == 0
    code, out = invoke("prepare", tiny_dir, "--out", dataset, "--force")
    assert code == 2 and "holds a jifr dataset output, not a prepared output" in out
    assert invoke("prepare", tiny_dir, "--out", tmp_path / "p")[0] == 0
    code, out = invoke("prepare", tiny_dir, "--out", tmp_path / "p")
    assert code == 2 and "pass --force" in out
    assert invoke("prepare", tiny_dir, "--out", tmp_path / "p", "--force")[0] == 0


def test_generate_and_compare_refuse_foreign_directories(tiny_dir: Path, foreign: Path) -> None:
    before = snapshot(foreign)
    assert invoke("generate", "tiny", "--out", foreign, "--force")[0] == 2
    code, out = invoke("compare", tiny_dir, "--out", foreign, "--models", "pop", "--seeds", "0")
    assert code == 2 and "was not written by jifr" in out
    code, out = invoke("compare", tiny_dir, "--out", tiny_dir, "--models", "pop", "--seeds", "0")
    assert code == 2 and "the input" in out
    assert snapshot(foreign) == before


def test_train_refuses_a_foreign_directory_and_its_input(tiny: PreparedData, foreign: Path) -> None:
    before = snapshot(foreign)
    for extra in ((), ("--force",), ("--resume",)):
        code, out = invoke("train", tiny.directory, "--out", foreign, "--model", "pop", *extra)
        assert code == 2 and "was not written by jifr" in out and "Traceback" not in out
    assert snapshot(foreign) == before
    code, out = invoke("train", tiny.directory, "--out", tiny.directory, "--model", "pop", "--force")
    assert code == 2 and "the input" in out


def test_a_file_in_place_of_an_output_directory_is_kept(tiny_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("not a directory")
    code, out = invoke("prepare", tiny_dir, "--out", target, "--force")
    assert code == 2 and "not a directory" in out and target.read_text() == "not a directory"


def test_a_failed_prepare_leaves_nothing(handmade_dir: Path, tmp_path: Path) -> None:
    (handmade_dir / "interactions.csv").write_text("user_id,item_id\nu0,unknown\n")
    code, out = invoke("prepare", handmade_dir, "--out", tmp_path / "out", "--min-user", "1", "--min-item", "1")
    assert code == 2 and "unknown" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handmade"]


def test_evaluate_refuses_to_overwrite_a_foreign_results_file(trained_run: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    code, out = invoke("evaluate", trained_run, "--out", tmp_path / "notes", "--protocol", "item_full")
    assert code == 2 and "not a jifr results file" in out and mine.read_text() == '{"my": "notes"}'
    assert invoke("evaluate", trained_run, "--out", tmp_path / "fresh", "--protocol", "item_full")[0] == 0
    assert invoke("evaluate", trained_run, "--out", tmp_path / "fresh", "--protocol", "item_full")[0] == 0


# ---- atomic files ----------------------------------------------------------------------------
def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "results.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


# ---- checkpoints verify themselves ------------------------------------------------------------
@pytest.fixture
def trained_run(tiny: PreparedData, tmp_path: Path) -> Path:
    model = build_model("bpr", ModelInputs.from_data(tiny), {"dim": 8}, seed=0)
    history = fit(model, tiny, TrainConfig(epochs=1), show_progress=False)
    run = tmp_path / "run"
    save_checkpoint(run, model, tiny, TrainConfig(epochs=1), history)
    (run / MARKER_NAME).write_text(json.dumps({"kind": "run"}))
    return run


def load_error(run: Path) -> str:
    with pytest.raises(DataError) as info:
        load_checkpoint(run)
    return str(info.value)


def test_truncated_weights_are_named(trained_run: Path) -> None:
    weights = trained_run / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:100])
    message = load_error(trained_run)
    assert str(weights) in message and "damaged weights" in message


def test_empty_weights_are_named(trained_run: Path) -> None:
    (trained_run / WEIGHTS_NAME).write_bytes(b"")
    assert "damaged weights" in load_error(trained_run)


def test_truncated_description_is_named(trained_run: Path) -> None:
    description = trained_run / CHECKPOINT_NAME
    description.write_text(description.read_text()[:50])
    message = load_error(trained_run)
    assert str(description) in message and "truncated or not JSON" in message


def test_weights_of_another_model_are_refused(trained_run: Path, tiny: PreparedData, tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_checkpoint(other, build_model("vbpr", ModelInputs.from_data(tiny), seed=0), tiny)
    (trained_run / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())
    assert "damaged weights" in load_error(trained_run)  # the recorded checksum catches it first
    description = json.loads((trained_run / CHECKPOINT_NAME).read_text())
    description["weights"]["sha256"] = json.loads((other / CHECKPOINT_NAME).read_text())["weights"]["sha256"]
    (trained_run / CHECKPOINT_NAME).write_text(json.dumps(description))
    assert "weights of another model" in load_error(trained_run)


def test_cli_reports_a_damaged_checkpoint_without_traceback(trained_run: Path) -> None:
    (trained_run / CHECKPOINT_NAME).write_text("{")
    code, out = invoke("recommend", trained_run, "--user", "u3")
    assert code == 2 and CHECKPOINT_NAME in out and "Traceback" not in out


# ---- compare resumes past a damaged results file ------------------------------------------------
def test_compare_recomputes_a_truncated_results_file(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ("compare", tiny_dir, "--out", out, "--models", "pop", "--seeds", "0", "--repeats", "1", "--no-progress")
    assert invoke(*args)[0] == 0
    results = out / "seed-0" / "pop.json"
    complete = json.loads(results.read_text())
    results.write_text(results.read_text()[:200])
    code, message = invoke(*args)
    assert code == 0, message
    assert json.loads(results.read_text())["results"] == complete["results"]


# ---- a full disk ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 96 KiB file system (tmpfs), mounted for the test (needs root, as in CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_full_disk_during_prepare(small_disk: Path) -> None:
    source = small_disk.parent / "big"
    assert invoke("generate", "small", "--out", source)[0] == 0
    code, out = invoke("prepare", source, "--out", small_disk / "prepared")
    assert code == 2 and "no space left" in out and str(small_disk / "prepared") in out and "Traceback" not in out
    assert list(small_disk.iterdir()) == []


def test_full_disk_during_training(small_disk: Path, tiny: PreparedData) -> None:
    wide = ("--set", "collab_dim=256", "--set", "visual_dim=256")
    code, out = invoke("train", tiny.directory, "--out", small_disk / "run", "--epochs", "1", "--no-progress", *wide)
    assert code == 2 and "no space left" in out and "Traceback" not in out
    assert not (small_disk / "run" / CHECKPOINT_NAME).exists()
    assert not [p for p in (small_disk / "run").rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_during_generate_and_checkpoint(small_disk: Path, tiny: PreparedData) -> None:
    code, out = invoke("generate", "small", "--out", small_disk / "data")
    assert code == 2 and "no space left" in out and "Traceback" not in out
    assert list(small_disk.iterdir()) == []
    model = build_model("jifr", ModelInputs.from_data(tiny), {"collab_dim": 256, "visual_dim": 256}, seed=0)
    with pytest.raises(DataError, match="no space left"):
        save_checkpoint(small_disk / "run", model, tiny)
    assert [p.name for p in (small_disk / "run").iterdir()] == []


# ---- a damaged prepared dataset is named ---------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("prepared.json", lambda p: p.write_text(p.read_text()[:40])),
        ("arrays.npz", lambda p: p.write_bytes(p.read_bytes()[:60])),
        ("features.npy", lambda p: p.write_bytes(b"")),
        ("features.npy", lambda p: p.write_bytes(p.read_bytes()[:300])),
        ("frames.txt", lambda p: p.unlink()),
        ("items.txt", lambda p: p.write_text("only-one-item\n")),
    ],
)
def test_a_damaged_prepared_dataset_is_named(tiny_dir: Path, tmp_path: Path, name: str, damage) -> None:
    prepared = tmp_path / "prepared"
    assert invoke("prepare", tiny_dir, "--out", prepared)[0] == 0
    damage(prepared / name)
    code, out = invoke("train", prepared, "--out", tmp_path / "run", "--model", "pop")
    assert code == 2 and "Traceback" not in out and ("run 'jifr prepare' again" in out), out
    assert name in out or "inconsistent prepared dataset" in out
