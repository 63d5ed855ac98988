"""Reading a finished ``jifr compare`` output, checked to be complete and consistent.

A comparison writes every run as ``seed-N/<model>.json`` as soon as it finishes and the summary
(``summary.json``) only at the end, so a missing summary means the comparison has not finished,
and a run file whose metrics no longer average to the summary's means was written again after
it (a comparison running again). Both are refused, naming the file, rather than reported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jifr.compare import MEAN_USER, MEAN_USER_PROTOCOL, RND_ANALYTIC, CompareConfig
from jifr.data.prepare import PrepareConfig
from jifr.data.prepared import META_NAME
from jifr.data.splits import SplitConfig
from jifr.errors import DataError
from jifr.outputs import MARKER_NAME, read_marker
from jifr.train import TrainConfig

SUMMARY_NAME = "summary.json"
NOT_FINISHED = "the comparison has not finished (still running, or interrupted: run the same `jifr compare` again)"


@dataclass(frozen=True)
class Comparison:
    """A finished comparison: its summary, every run's saved results and each seed's prepared metadata."""

    directory: Path
    summary: dict[str, Any]
    runs: dict[str, dict[int, dict[str, Any]]]  # model -> seed -> seed-N/<model>.json
    prepared: dict[int, dict[str, Any]]  # seed -> seed-N/prepared/prepared.json

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.summary["seeds"]]

    @property
    def rows(self) -> dict[str, Any]:
        """The summary's rows: model (or reference, or ``model@mean_user``) -> protocol -> metric -> mean, std."""
        return dict(self.summary["models"])

    @property
    def models(self) -> list[str]:
        """The compared models, in the order they were given to ``jifr compare``."""
        return list(self.summary["config"]["model_configs"])

    def value(self, row: str, protocol: str, metric: str) -> dict[str, float] | None:
        """``{"mean", "std"}`` over seeds from summary.json, or None when the row lacks it."""
        found = self.rows.get(row, {}).get(protocol, {}).get(metric)
        return dict(found) if found else None

    def measured(self, model: str, protocol: str) -> bool:
        """Whether every seed's run of ``model`` has results of ``protocol``."""
        return model in self.runs and all(protocol in self.runs[model][s]["results"] for s in self.seeds)

    def per_seed(self, model: str, protocol: str, metric: str) -> np.ndarray:
        """(n_seeds,) the metric of each seed's run, in ``seeds`` order, from the run files."""
        return np.array([self.runs[model][s]["results"][protocol]["metrics"][metric] for s in self.seeds])

    def seed_dir(self, seed: int) -> Path:
        return self.directory / f"seed-{seed}"


def read_comparison(directory: str | Path) -> Comparison:
    """Read a finished comparison; anything missing, damaged or out of date is a DataError naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, "is not a directory (expected the --out of a finished `jifr compare`)")
    marker = read_marker(directory)
    if marker is None or marker["kind"] != "compare":
        found = "no jifr marker" if marker is None else f"a jifr {marker['kind']} output"
        raise DataError(directory / MARKER_NAME, f"not a `jifr compare` output ({found})")
    summary = _read_json(directory / SUMMARY_NAME, ("seeds", "data_fingerprints", "config", "models", "part"))
    seeds = [int(s) for s in summary["seeds"]]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for model in summary["config"]["model_configs"]:
        runs[model] = {}
        for seed in seeds:
            path = directory / f"seed-{seed}" / f"{model}.json"
            runs[model][seed] = _read_run(path, summary["data_fingerprints"].get(str(seed)), seed)
    prepared = {s: _read_json(directory / f"seed-{s}" / "prepared" / META_NAME, ("fingerprint",)) for s in seeds}
    comparison = Comparison(directory, summary, runs, prepared)
    _check_summary_matches_runs(comparison)
    return comparison


def _read_json(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(path, f"missing: {NOT_FINISHED}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"damaged (not JSON: {exc}); run the same `jifr compare` again") from None
    missing = [key for key in required if not isinstance(value, dict) or key not in value]
    if missing:
        raise DataError(path, f"damaged or not written by `jifr compare`: no {', '.join(missing)}")
    return dict(value)


def _read_run(path: Path, fingerprint: str | None, seed: int) -> dict[str, Any]:
    run = _read_json(path, ("results", "seed", "data_fingerprint", "config"))
    if run["data_fingerprint"] != fingerprint:
        raise DataError(
            path,
            f"data fingerprint {run['data_fingerprint']} differs from summary.json's {fingerprint} for seed {seed}: "
            f"this run was written after the summary; {NOT_FINISHED}",
        )
    return run


def _check_summary_matches_runs(comparison: Comparison) -> None:
    """Every metric of every run file must average over seeds to the summary's mean."""
    path = comparison.directory / SUMMARY_NAME
    for model, by_seed in comparison.runs.items():
        first = by_seed[comparison.seeds[0]]["results"]
        for protocol, result in first.items():
            row = f"{model}{MEAN_USER}" if protocol == MEAN_USER_PROTOCOL else model
            summarised = comparison.rows.get(row, {}).get("keyframe" if protocol == MEAN_USER_PROTOCOL else protocol)
            for metric in result["metrics"]:
                values = [by_seed[s]["results"].get(protocol, {}).get("metrics", {}).get(metric) for s in by_seed]
                expected = None if summarised is None else summarised.get(metric, {}).get("mean")
                if (
                    expected is None
                    or None in values
                    or not math.isclose(float(np.mean(values)), expected, rel_tol=1e-9, abs_tol=1e-12)
                ):
                    raise DataError(
                        path,
                        f"{row} {protocol} {metric} is not the mean of the seed-N/{model}.json files: a run was "
                        f"written again after this summary; {NOT_FINISHED}",
                    )


def compare_command(comparison: Comparison) -> tuple[str, list[str]]:
    """The ``jifr compare`` command that reproduces the comparison, and the recorded settings that
    no option of it can set (each ``name=value``; empty when the command alone reproduces it)."""
    config = comparison.summary["config"]
    train, prepare = config["train"], config["prepare"]
    item_paper = comparison.runs[comparison.models[0]][comparison.seeds[0]]["config"]["item_paper"]
    source = comparison.prepared[comparison.seeds[0]].get("source", "DATASET")
    words = ["jifr", "compare", str(source), "--out", str(comparison.directory)]
    words += ["--models", ",".join(comparison.models), "--seeds", ",".join(str(s) for s in comparison.seeds)]
    for key, value in config["settings"].items():
        words += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    words += ["--epochs", str(train["epochs"]), "--batch-size", str(train["batch_size"])]
    words += ["--lr", f"{train['learning_rate']:g}", "--patience", str(train["patience"])]
    if train.get("optimizer", "adam") != "adam":  # comparisons recorded without the key trained with Adam
        words += ["--optimizer", train["optimizer"]]
    words += ["--repeats", str(item_paper["repeats"]), "--part", comparison.summary["part"]]
    words += ["--frame-feedback-share", f"{prepare['frame_feedback_share']:g}"]
    has_likes = any(meta.get("n_frame_likes", 0) for meta in comparison.prepared.values())
    if has_likes and RND_ANALYTIC not in comparison.rows:
        words.append("--no-references")
    return shlex.join(words), _not_settable(train, prepare, item_paper["n_negatives"])


def _not_settable(train: dict[str, Any], prepare: dict[str, Any], sampled_negatives: int) -> list[str]:
    """Recorded values that differ from what the ``jifr compare`` options give."""
    options = ("epochs", "batch_size", "learning_rate", "patience", "seed", "optimizer")
    cli_train = _plain(TrainConfig(**{k: train[k] for k in options if k in train}))
    split = SplitConfig(seed=prepare["split"]["seed"])
    cli_prepare = _plain(PrepareConfig(split=split, frame_feedback_share=prepare["frame_feedback_share"]))
    unset = [f"train.{k}={v}" for k, v in train.items() if cli_train.get(k) != v]
    unset += [f"prepare.{k}={v}" for k, v in prepare.items() if cli_prepare.get(k) != v]
    if sampled_negatives != _default(CompareConfig, "sampled_negatives"):
        unset.append(f"sampled_negatives={sampled_negatives}")
    return unset


def _default(config_class: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(config_class) if f.name == name)


def _plain(config: Any) -> dict[str, Any]:
    """A config dataclass as the JSON it is recorded as (tuples become lists)."""
    return dict(json.loads(json.dumps(dataclasses.asdict(config))))
