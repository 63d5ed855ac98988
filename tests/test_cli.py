"""The CLI end to end on a tiny dataset directory, and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import jifr
from jifr.cli import app
from jifr.models.frames import frame_product

runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_prepare_train_evaluate_recommend(tiny_dir: Path, tmp_path: Path) -> None:
    code, out = invoke("prepare", tiny_dir, "--out", tmp_path / "prep")
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["n_users"] == 200
    code, out = invoke(
        "train",
        tmp_path / "prep",
        "--out",
        tmp_path / "run",
        "--model",
        "jifr",
        "--epochs",
        "2",
        "--no-progress",
        "--set",
        "hidden_dim=8",
    )
    assert code == 0, out
    description = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert description["model_config"]["hidden_dim"] == 8 and (tmp_path / "run" / "model.safetensors").exists()
    code, out = invoke("evaluate", tmp_path / "run", "--repeats", "2")
    assert code == 0, out
    assert "item_paper" in out and "item_full" in out and "keyframe" in out
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved["results"]) == {"item_paper", "item_full", "keyframe", "attention"}
    assert (
        saved["data_fingerprint"] == description["data"]["fingerprint"] and saved["seed"] == 0 and saved["jifr_version"]
    )
    trained_with = {
        "jifr_version": jifr.__version__,
        "torch_version": torch.__version__,
        "frame_product": frame_product(),
    }
    assert {key: description[key] for key in trained_with} == trained_with == saved["config"]["trained_with"]
    assert saved["frame_product"] == frame_product()  # the evaluating process's
    assert (tmp_path / "run" / "results.csv").read_text().startswith("model,protocol,metric,mean,std")
    code, out = invoke("recommend", tmp_path / "run", "--user", "u3", "-k", "2", "--json")
    assert code == 0, out
    items = json.loads(out)["items"]
    assert len(items) == 2 and items[0]["key_frame"] == items[0]["frames"][0]
    assert [f["score"] for f in items[0]["frames"]] == sorted((f["score"] for f in items[0]["frames"]), reverse=True)


def test_data_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out = invoke("prepare", tmp_path / "empty", "--out", tmp_path / "prep")
    assert code == 2 and "no 'interactions' table" in out and "Traceback" not in out
    code, out = invoke("train", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert code == 2 and "not a prepared dataset" in out


def test_bad_settings_are_rejected(tiny_dir: Path, tmp_path: Path) -> None:
    invoke("prepare", tiny_dir, "--out", tmp_path / "prep")
    code, out = invoke("train", tmp_path / "prep", "--out", tmp_path / "run", "--model", "nope")
    assert code == 2 and "unknown model 'nope'" in out
    code, out = invoke("train", tmp_path / "prep", "--out", tmp_path / "run", "--set", "colab_dim=3")
    assert code == 2 and "unknown JIFRConfig key(s): colab_dim" in out
    code, out = invoke("prepare", tiny_dir, "--out", tmp_path / "p2", "--split", "sideways")
    assert code == 2 and "unknown split method" in out


def test_every_command_has_help() -> None:
    commands = ("generate", "prepare", "train", "evaluate", "recommend", "models", "compare", "demo", "datasets")
    for command in (*commands, "features"):
        code, out = invoke(command, "--help")
        assert code == 0 and "Usage" in out, command


def test_compare_prints_the_summary_and_rejects_bad_settings(tiny_dir: Path, tmp_path: Path) -> None:
    args = ("compare", tiny_dir, "--out", tmp_path / "cmp", "--seeds", "0,1", "--epochs", "1", "--repeats", "1")
    code, out = invoke(*args, "--models", "content_cosine,bpr")
    assert code == 0, out
    assert "mean ± sample std over seeds 0, 1" in out and "| bpr |" in out and "frame popularity (reference" in out
    assert (tmp_path / "cmp" / "summary.md").exists() and (tmp_path / "cmp" / "seed-1" / "bpr.csv").exists()
    code, out = invoke(*args, "--models", "bpr", "--set", "l2_projection=0.1")
    assert code == 2 and "apply to none of bpr" in out and "Traceback" not in out
    code, out = invoke(*args, "--models", "bpr,jifr3")
    assert code == 2 and "unknown model(s) jifr3" in out


def test_an_unknown_frame_product_stops_training_before_it_starts(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JIFR_FRAME_PRODUCT is recorded with the weights, so a bad value must not cost a finished
    training, even for a model that never uses the product."""
    assert invoke("prepare", tiny_dir, "--out", tmp_path / "prep")[0] == 0
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "blas")
    code, out = invoke("train", tmp_path / "prep", "--out", tmp_path / "run", "--model", "bpr", "--no-progress")
    assert code == 2 and "JIFR_FRAME_PRODUCT must be one of onednn, mkl, got 'blas'" in out, out
    assert "epoch" not in out and not (tmp_path / "run" / "model.safetensors").exists()
