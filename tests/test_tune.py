"""Tuning: the same seeded budget for every model, scored and chosen on the validation split only,
resumable, and reproduced exactly by `jifr compare --settings-from`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import jifr.compare as compare
from jifr.cli import app
from jifr.compare import CompareConfig
from jifr.errors import TrainingDivergedError
from jifr.models import MODELS, model_config
from jifr.outputs import open_output_directory
from jifr.train import TrainConfig
from jifr.tune import (
    DIMENSION,
    LEARNING_RATE,
    REGULARISATION,
    TuneConfig,
    merge_settings,
    read_best_settings,
    run_tune,
    search_space,
    trial_settings,
)

runner = CliRunner()
QUICK = ("--seeds", "0", "--epochs", "2", "--batch-size", "256", "--no-progress")
TUNED = ("bpr", "jifr_na")


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def tune(source: Path, out: Path, *extra: str) -> tuple[int, str]:
    return invoke("tune", source, "--out", out, "--models", ",".join(TUNED), "--trials", "3", *QUICK, *extra)


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tuned(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tune") / "tune"
    code, output = tune(tiny_dir, out)
    assert code == 0, output
    return out


def test_the_search_space_comes_from_each_models_settings() -> None:
    assert search_space("bpr") == {"learning_rate": LEARNING_RATE, "dim": DIMENSION, "l2": REGULARISATION}
    assert search_space("vpoi")["lambda_user"] == REGULARISATION  # "lambda*" is regularisation too
    jifr = search_space("jifr")
    assert {k for k, d in jifr.items() if d == DIMENSION} == {"collab_dim", "visual_dim", "attention_dim", "hidden_dim"}
    assert {k for k, d in jifr.items() if d == REGULARISATION} == {
        "l2",
        "l2_projection",
        "l2_attention_input",
        "l2_attention",
    }
    assert set(search_space("jifr_na")) == {"learning_rate", "collab_dim", "visual_dim", "l2", "l2_projection"}
    assert "l2_frame_bias" in search_space("jifr", frame_feedback=True)  # it acts on frame feedback only
    for name, spec in MODELS.items():  # every trained model gets a space, without an entry here
        if getattr(spec.model, "trainable", True):
            assert set(search_space(name)) - {"learning_rate"} <= set(spec.settings) and len(search_space(name)) > 1
    with pytest.raises(ValueError, match="pop, content_cosine: not trained"):
        TuneConfig(models=("bpr", "pop", "content_cosine"))
    with pytest.raises(ValueError, match="trials"):
        TuneConfig(models=("bpr",), trials=0)
    with pytest.raises(ValueError, match="unknown model"):
        TuneConfig(models=("bpr2",))


def test_trials_are_seeded_valid_distinct_and_start_at_the_defaults() -> None:
    train = TrainConfig()
    for name in ("bpr", "vbpr", "jifr", "jifr_rating_att", "vpoi"):
        space = search_space(name)
        defaults = dataclasses.asdict(model_config(name)) | {"learning_rate": train.learning_rate}
        assert trial_settings(name, space, 0, 0, train) == {k: defaults[k] for k in space}
        drawn = [trial_settings(name, space, t, 0, train) for t in range(1, 30)]
        assert drawn == [trial_settings(name, space, t, 0, train) for t in range(1, 30)]  # reproducible
        assert drawn != [trial_settings(name, space, t, 1, train) for t in range(1, 30)]  # the search seed matters
        assert len({json.dumps(d, sort_keys=True) for d in drawn}) == len(drawn)
        for settings in drawn:
            model_config(name, {k: v for k, v in settings.items() if k != "learning_rate"})  # valid
            assert 1e-3 <= settings["learning_rate"] <= 3e-2
            assert all(settings[k] in (16, 32, 64) for k, d in space.items() if d == DIMENSION)
        if name in ("jifr", "jifr_rating_att"):  # rating attention: the two dims stay equal
            assert all(d["collab_dim"] == d["visual_dim"] for d in drawn)
    drawn = [trial_settings("jifr", search_space("jifr"), t, 0, train) for t in range(1, 60)]
    l2 = [d[k] for d in drawn for k in d if k.startswith("l2")]
    assert 0.0 in l2 and all(v == 0 or 1e-5 <= v <= 1 for v in l2) and min(v for v in l2 if v) < 1e-3


def test_a_learning_rate_can_be_set_per_model_and_is_part_of_the_run_identity(tmp_path: Path) -> None:
    config = CompareConfig(models=("bpr", "jifr"), settings={"bpr.learning_rate": 0.02, "l2": 0.01})
    assert config.train_for("bpr", 3) == TrainConfig(learning_rate=0.02, seed=3)
    assert config.train_for("jifr", 3) == TrainConfig(seed=3)
    assert config.settings_of("bpr") == {"l2": 0.01}
    plain = CompareConfig(models=("bpr", "jifr"), settings={"l2": 0.01})
    assert config.run_config("bpr", 0) != plain.run_config("bpr", 0)
    assert config.run_config("jifr", 0) == plain.run_config("jifr", 0)
    for bad, message in (
        ({"learning_rate": 0.01}, "training setting"),
        ({"bpr.learning_rate": "fast"}, "must be a number"),
        ({"bpr.learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"pop.learning_rate": 0.01}, "pop is not trained"),
    ):
        with pytest.raises(ValueError, match=message):
            CompareConfig(models=("bpr", "pop"), settings=bad)
    (tmp_path / "hand-made.json").write_text(json.dumps({"settings": {"l2": 0.1}}))
    with pytest.raises(ValueError, match="MODEL.KEY"):
        read_best_settings(tmp_path / "hand-made.json", ["bpr"])
    tuned = {"bpr.l2": 0.5, "bpr.dim": 64, "jifr.l2": 0.5, "jifr.learning_rate": 0.01}
    explicit = {"l2": 0.001, "jifr.learning_rate": 0.002}
    assert merge_settings(tuned, explicit) == {"bpr.dim": 64, "l2": 0.001, "jifr.learning_rate": 0.002}


def test_every_model_gets_the_same_seeded_trials_and_the_best_is_the_argmax(tuned: Path) -> None:
    summary = read(tuned / "tune.json")
    assert summary["trials"] == 3 and summary["seeds"] == [0] and summary["search_seed"] == 0
    assert summary["part"] == "valid" and set(summary["models"]) == set(TUNED)
    for name in TUNED:
        space = search_space(name)
        assert list(summary["search_space"][name]) == list(space)
        trials = summary["models"][name]["trials"]
        assert [t["trial"] for t in trials] == [0, 1, 2]
        train = TrainConfig(**summary["train"])
        assert [t["settings"] for t in trials] == [trial_settings(name, space, t, 0, train) for t in range(3)]
        scores = [t["score"]["mean"] for t in trials]
        assert summary["models"][name]["best_trial"] == int(np.argmax(scores))
        for trial in trials:  # the score is the run's validation NDCG@10 (one seed)
            run = read(tuned / "runs" / name / f"trial-{trial['trial']:02d}" / "seed-0" / f"{name}.json")
            assert run["results"]["item_full"]["metrics"]["NDCG@10"] == trial["score"]["mean"]
            assert (trial["keyframe_hr1"] is not None) == (name == "jifr_na")
    best = read(tuned / "best-settings.json")
    for name in TUNED:
        row = summary["models"][name]
        chosen = row["trials"][row["best_trial"]]["settings"]
        assert {k.split(".", 1)[1]: v for k, v in best["settings"].items() if k.startswith(f"{name}.")} == chosen
    assert (tuned / "tune.md").read_text().count("| trial | NDCG@10 |") == len(TUNED)


def test_nothing_in_the_tune_output_comes_from_the_test_split(tuned: Path) -> None:
    def parts(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return ([value["part"]] if "part" in value else []) + [p for v in value.values() for p in parts(v)]
        return [p for v in value for p in parts(v)] if isinstance(value, list) else []

    results = sorted((tuned / "runs").glob("*/trial-*/seed-*/*.json"))
    assert len(results) == 3 * len(TUNED)
    for path in [*results, tuned / "tune.json"]:
        assert set(parts(read(path))) == {"valid"}, path
    for path in results:
        assert all(r["part"] == "valid" for r in read(path)["results"].values())


def test_best_settings_reproduce_the_best_trial_in_compare(tiny_dir: Path, tuned: Path, tmp_path: Path) -> None:
    code, output = invoke(
        "compare", tiny_dir, "--out", tmp_path / "cmp", "--models", ",".join(TUNED), "--part", "valid",
        "--settings-from", tuned / "best-settings.json", "--repeats", "1", "--no-references", *QUICK,
    )  # fmt: skip
    assert code == 0, output
    compared = read(tmp_path / "cmp" / "summary.json")["models"]
    summary = read(tuned / "tune.json")
    for name in TUNED:
        best = summary["models"][name]["trials"][summary["models"][name]["best_trial"]]
        assert compared[name]["item_full"]["NDCG@10"]["mean"] == best["score"]["mean"]  # exactly
        checkpoint = read(tmp_path / "cmp" / "seed-0" / "checkpoints" / name / "checkpoint.json")
        assert checkpoint["train_config"]["learning_rate"] == best["settings"]["learning_rate"]


def test_a_tune_resumes_reuses_finished_trials_and_refuses_foreign_outputs(
    tiny_dir: Path, tuned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "tune"
    shutil.copytree(tuned, out)
    runs = sorted((out / "runs").glob("*/trial-*/seed-*/*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished trial was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(compare, "fit", must_not_train)
        code, output = tune(tiny_dir, out)
    assert code == 0, output
    assert "bpr trial 2 (3/3)" in output and "reused" in output
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    again = read(out / "tune.json")["models"]
    for name, row in read(tuned / "tune.json")["models"].items():
        assert again[name]["best_trial"] == row["best_trial"] and all(t["reused"] for t in again[name]["trials"])
        assert [(t["settings"], t["score"]) for t in again[name]["trials"]] == [
            (t["settings"], t["score"]) for t in row["trials"]
        ]
    code, output = tune(tiny_dir, out, "--trials", "4")  # a longer tune extends the shorter one
    assert code == 0, output
    longer = read(out / "tune.json")["models"]["bpr"]["trials"]
    assert [t["reused"] for t in longer] == [True, True, True, False]

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    code, output = tune(tiny_dir, tmp_path / "foreign")
    assert code == 2 and "not written by jifr" in output
    code, output = tune(tiny_dir, open_output_directory(tmp_path / "cmp", "compare"))
    assert code == 2 and "not a tune output" in output
    code, output = invoke("tune", tiny_dir, "--out", out, "--models", "bpr", "--trials", "1", "--force", *QUICK)
    assert code == 0, output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["bpr"]


def test_a_diverged_trial_is_recorded_and_never_chosen(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit = compare.fit

    def diverge_unless_default(model: Any, data: Any, config: TrainConfig, **kwargs: Any) -> Any:
        if config.learning_rate != TrainConfig().learning_rate:
            raise TrainingDivergedError(1, 0, 1, float("nan"), config.learning_rate)
        return fit(model, data, config, **kwargs)

    monkeypatch.setattr(compare, "fit", diverge_unless_default)
    lines: list[str] = []
    config = TuneConfig(models=("bpr",), trials=2, seeds=(0,), train=TrainConfig(epochs=1, batch_size=256))
    summary = run_tune(tiny_dir, tmp_path / "tune", config, show_progress=False, report=lines.append)
    row = summary["models"]["bpr"]
    assert row["trials"][1]["score"] is None and "diverged" in row["trials"][1]["failed"] and row["best_trial"] == 0
    assert "diverged" in lines[-1] and "| 1 | diverged |" in (tmp_path / "tune" / "tune.md").read_text()
