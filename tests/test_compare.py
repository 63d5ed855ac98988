"""Comparing models over seeds: validation, the summary's arithmetic, paired verdicts, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import jifr.compare as compare
from jifr.compare import CompareConfig, RunRecord, format_summary, run_comparison, summarise
from jifr.train import TrainConfig

QUICK = TrainConfig(epochs=2, batch_size=256)


def test_settings_apply_where_known_and_misspellings_fail_early() -> None:
    config = CompareConfig(models=("bpr", "jifr"), settings={"l2": 0.01, "jifr.l2_projection": 0.5})
    assert config.settings_of("bpr") == {"l2": 0.01}
    assert config.settings_of("jifr") == {"l2": 0.01, "l2_projection": 0.5}
    with pytest.raises(ValueError, match="unknown model"):
        CompareConfig(models=("jifr2",))
    with pytest.raises(ValueError, match="apply to none"):
        CompareConfig(models=("bpr",), settings={"l2_projection": 0.1})
    with pytest.raises(ValueError, match="apply to none"):
        CompareConfig(models=("bpr",), settings={"vbpr.l2": 0.1})
    with pytest.raises(ValueError, match="unknown JIFRConfig key"):
        CompareConfig(models=("jifr",), settings={"jifr.l2_projecton": 0.1})
    with pytest.raises(ValueError, match="repeat"):
        CompareConfig(models=("bpr",), seeds=(0, 0))


def _record(model: str, seed: int, hr1: float) -> RunRecord:
    return RunRecord(model, seed, {"keyframe": {"HR@1": hr1, "NDCG@3": hr1}})


def test_summary_is_mean_and_sample_std_with_paired_verdicts() -> None:
    records = [_record("jifr", s, v) for s, v in zip((0, 1, 2), (0.30, 0.32, 0.34), strict=True)]
    records += [_record("jifr_na", s, v) for s, v in zip((0, 1, 2), (0.20, 0.21, 0.25), strict=True)]
    records += [_record("vbpr", s, v) for s, v in zip((0, 1, 2), (0.29, 0.33, 0.35), strict=True)]
    summary = summarise(records, CompareConfig(models=("vbpr", "jifr_na", "jifr")))
    row = summary["models"]["jifr"]["keyframe"]["HR@1"]
    assert row["mean"] == pytest.approx(0.32) and row["std"] == pytest.approx(np.std([0.30, 0.32, 0.34], ddof=1))
    pairs = {(p["a"], p["b"]): p["metrics"]["keyframe HR@1"] for p in summary["pairs"]}
    gain = pairs[("jifr", "jifr_na")]
    assert gain["per_seed"] == pytest.approx([0.10, 0.11, 0.09]) and gain["verdict"] == "clear gain"
    # jifr - vbpr: +0.01, -0.01, -0.01 -> mixed signs, no claim either way
    assert pairs[("jifr", "vbpr")]["verdict"] == "no clear difference"
    assert pairs[("jifr_na", "vbpr")]["verdict"] == "clear loss"
    text = format_summary(summary)
    assert "| jifr | 0.3200 ± 0.0200 |" in text
    assert "| jifr − jifr_na | keyframe HR@1 | +0.1000 ± 0.0100 | clear gain |" in text


def test_a_gain_inside_the_seed_spread_is_not_claimed() -> None:
    records = [_record("jifr", s, v) for s, v in zip((0, 1, 2), (0.30, 0.40, 0.50), strict=True)]
    records += [_record("jifr_na", s, v) for s, v in zip((0, 1, 2), (0.29, 0.39, 0.49), strict=True)]
    summary = summarise(records, CompareConfig(models=("jifr_na", "jifr")))
    (pair,) = summary["pairs"]
    assert pair["metrics"]["keyframe HR@1"]["verdict"] == "no clear difference"  # +0.01 at every seed, spread 0.1


def test_comparison_writes_every_run_and_resumes(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CompareConfig(models=("content_cosine", "bpr", "jifr"), seeds=(0, 1), train=QUICK, repeats=2)
    records = run_comparison(tiny_dir, tmp_path / "cmp", config, show_progress=False)
    names = {(r.model, r.seed) for r in records}
    rows = ("content_cosine", "bpr", "jifr", "jifr@mean_user", "rnd_analytic", "frame_pop")
    assert names == {(m, s) for m in rows for s in (0, 1)}
    assert (tmp_path / "cmp" / "seed-0" / "checkpoints" / "jifr" / "model.safetensors").exists()
    saved = json.loads((tmp_path / "cmp" / "seed-1" / "jifr.json").read_text())
    assert saved["seed"] == 1 and saved["config"]["prepare"]["split"]["seed"] == 1 and saved["train_seconds"] > 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    run_files = {s: json.loads((tmp_path / "cmp" / f"seed-{s}" / "jifr.json").read_text()) for s in (0, 1)}
    assert summary["data_fingerprints"] == {str(s): run["data_fingerprint"] for s, run in run_files.items()}
    assert summary["jifr_version"] and summary["python"]
    values = [json.loads((tmp_path / "cmp" / f"seed-{s}" / "bpr.json").read_text()) for s in (0, 1)]
    ndcg = [v["results"]["item_full"]["metrics"]["NDCG@10"] for v in values]
    assert summary["models"]["bpr"]["item_full"]["NDCG@10"]["mean"] == pytest.approx(np.mean(ndcg))
    assert summary["models"]["bpr"]["item_full"]["NDCG@10"]["std"] == pytest.approx(np.std(ndcg, ddof=1))

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare, "fit", must_not_train)
    again = run_comparison(tiny_dir, tmp_path / "cmp", config, show_progress=False)
    assert [r.metrics for r in again] == [r.metrics for r in records]
    with pytest.raises(AssertionError, match="trained again"):  # another setting is another run
        run_comparison(tiny_dir, tmp_path / "cmp", CompareConfig(**{**config.__dict__, "settings": {"l2": 0.01}}))


def test_a_run_made_with_another_frame_product_is_computed_again(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame product (``JIFR_FRAME_PRODUCT``) is recorded with every run; a run recorded with
    another one is not reused, and a run recorded before it was recorded is."""
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "mkl")
    config = CompareConfig(models=("bpr",), seeds=(0,), train=QUICK, repeats=1, references=False)
    run_comparison(tiny_dir, tmp_path / "cmp", config, show_progress=False)
    path = tmp_path / "cmp" / "seed-0" / "bpr.json"
    assert json.loads(path.read_text())["frame_product"] == "mkl"
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["frame_product"] == "mkl"

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare, "fit", must_not_train)
    monkeypatch.setenv("JIFR_FRAME_PRODUCT", "onednn")
    with pytest.raises(AssertionError, match="trained again"):
        run_comparison(tiny_dir, tmp_path / "cmp", config, show_progress=False)
    saved = json.loads(path.read_text())
    del saved["frame_product"]
    path.write_text(json.dumps(saved))
    assert [r.model for r in run_comparison(tiny_dir, tmp_path / "cmp", config, show_progress=False)] == ["bpr"]
