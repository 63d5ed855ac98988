"""Tuning every model with the same budget: a seeded random search scored on the validation split.

A comparison against an untuned baseline says little, so ``jifr tune`` gives each model the same
number of trials over a search space made from its own settings (``MODELS[name].settings``, by
name, so a new model gets a space without an edit here):

- ``learning_rate`` (Adam's, or the step size of ``--optimizer sgd``): log-uniform on [1e-3, 3e-2];
- each setting whose name contains ``dim``: one of 16, 32, 64;
- each setting whose name contains ``l2`` or starts with ``lambda`` (regularisation): exactly 0
  with probability 0.2, else log-uniform on [1e-5, 1]; ``l2_frame_bias`` only when the data
  has frame feedback (it acts on nothing else);
- every other setting (attention switches, ``history_cap``, ``frame_feedback_weight``) keeps its
  default.

Drawn values are rounded to 3 significant digits. A draw the model rejects (JIFR's collab_dim
must equal visual_dim under rating attention) is drawn again, so every trial is a valid config
built through ``model_config``. Trial 0 of every model is its defaults; trial t >= 1 is drawn
from a generator seeded with (search seed, model name, t), so it does not depend on the other
models or on the number of trials, and a longer tune extends a shorter one.

Each trial trains at every seed (split seed = run seed, as in ``jifr compare``) and is scored by
the mean over seeds of the validation full-ranking NDCG@10; the test split is never evaluated.
A trial whose training diverges is recorded without a score and is never the best. Models that
are not trained (pop, rnd, content_cosine*) have nothing to tune and are refused.
A trial's runs are compare runs (``jifr.compare.run_once``), so finished ones are reused and an
interrupted tune resumes. Layout of the output directory::

    prepared/seed-S/                the split of seed S, shared by every trial
    runs/MODEL/trial-TT/seed-S/     MODEL.{json,csv} (validation results) and checkpoints/MODEL/
    tune.json, tune.md              every trial's settings and validation metrics, per model
    best-settings.json              each model's best trial as MODEL.KEY settings, for
                                    ``jifr compare --settings-from``
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jifr.compare import TABLE2_MODELS, TRAIN_SETTINGS, CompareConfig, RunRecord, run_once
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.device import CPU
from jifr.errors import TrainingDivergedError
from jifr.models import MODELS, model_config
from jifr.outputs import open_output_directory, write_json_atomic, write_text_atomic
from jifr.results import provenance
from jifr.train import TrainConfig, check_optimizer

log = logging.getLogger(__name__)

SCORE = ("item_full", "NDCG@10")  # what a trial is scored by (validation split, mean over seeds)
FRAMES = ("keyframe", "HR@1")  # reported beside it for models that rank frames
FEEDBACK_ONLY = ("l2_frame_bias",)  # act only on frame feedback (jifr.models.feedback)
MAX_DRAWS = 1000  # of a valid combination, per trial


@dataclass(frozen=True)
class LogUniform:
    """A value whose logarithm is uniform on [log low, log high]; exactly 0 with probability ``zero``."""

    low: float
    high: float
    zero: float = 0.0

    def sample(self, rng: np.random.Generator) -> float:
        if self.zero and rng.random() < self.zero:
            return 0.0
        return float(f"{math.exp(rng.uniform(math.log(self.low), math.log(self.high))):.3g}")

    def describe(self) -> str:
        text = f"log-uniform [{self.low:g}, {self.high:g}]"
        return f"0 (p={self.zero:g}) or {text}" if self.zero else text


@dataclass(frozen=True)
class Choice:
    values: tuple[int, ...]

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.values))

    def describe(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)


LEARNING_RATE = LogUniform(1e-3, 3e-2)
DIMENSION = Choice((16, 32, 64))
REGULARISATION = LogUniform(1e-5, 1.0, zero=0.2)


def search_space(name: str, frame_feedback: bool = False) -> dict[str, LogUniform | Choice]:
    """Model ``name``'s search space: its learning rate, dimensions and regularisation settings."""
    space: dict[str, LogUniform | Choice] = {"learning_rate": LEARNING_RATE}
    for key in MODELS[name].settings:
        if key in FEEDBACK_ONLY and not frame_feedback:
            continue
        if "l2" in key or key.startswith("lambda"):
            space[key] = REGULARISATION
        elif "dim" in key:
            space[key] = DIMENSION
    return space


def trial_settings(
    name: str, space: Mapping[str, LogUniform | Choice], trial: int, search_seed: int, train: TrainConfig
) -> dict[str, Any]:
    """Trial ``trial``'s settings for model ``name`` (keys of ``space``): its defaults for trial 0."""
    if trial == 0:
        defaults = dataclasses.asdict(model_config(name)) | {"learning_rate": train.learning_rate}
        return {key: defaults[key] for key in space}
    rng = np.random.default_rng([search_seed, zlib.crc32(name.encode()), trial])
    for _ in range(MAX_DRAWS):
        drawn = {key: dimension.sample(rng) for key, dimension in space.items()}
        try:
            model_config(name, {k: v for k, v in drawn.items() if k not in TRAIN_SETTINGS})
        except ValueError:  # e.g. collab_dim != visual_dim under rating attention
            continue
        return drawn
    raise ValueError(f"no valid {name} settings in {MAX_DRAWS} draws from its search space")


def _trainable(name: str) -> bool:
    return getattr(MODELS[name].model, "trainable", True)


@dataclass(frozen=True)
class TuneConfig:
    models: tuple[str, ...] = TABLE2_MODELS
    trials: int = 8  # per model, the same for every model; trial 0 is the defaults
    seeds: tuple[int, ...] = (0, 1)
    search_seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)  # its learning_rate is trial 0's
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    repeats: int = 1  # of the sampled item protocol: recorded in each run, not scored

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("a tune needs at least one model")
        CompareConfig(models=self.models, seeds=self.seeds, train=self.train, prepare=self.prepare, part="valid")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        fixed = [m for m in self.models if not _trainable(m)]
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: not trained, nothing to tune (leave them out)")

    def compare_config(self, name: str, settings: Mapping[str, Any]) -> CompareConfig:
        """The validation-split comparison of one trial of model ``name`` (``settings`` without prefix)."""
        return CompareConfig(
            models=(name,),
            seeds=self.seeds,
            train=self.train,
            prepare=self.prepare,
            settings={f"{name}.{key}": value for key, value in settings.items()},
            repeats=self.repeats,
            references=False,
            part="valid",
        )


Report = Callable[[str], None]


def run_tune(
    source: str | Path,
    out: str | Path,
    config: TuneConfig,
    *,
    force: bool = False,
    show_progress: bool = True,
    report: Report = log.info,
    device: torch.device = CPU,
) -> dict[str, Any]:
    """Tune ``config.models`` on dataset ``source``, the models on ``device``; writes ``out`` (see
    the module docstring) and returns what tune.json holds. ``out`` is new, empty or an earlier
    tune to continue (``force``: replace it). ``report`` receives the search spaces and one line
    per trial."""
    if config.train.optimizer == "sgd":
        check_optimizer("bpr", config.train, 1, device)  # before anything is written
    out = open_output_directory(out, "tune", reuse=not force, force=force, inputs=[source])
    base = config.compare_config(config.models[0], {})
    prepared = {
        s: prepare_dataset(source, out / "prepared" / f"seed-{s}", base.prepare_for(s), force=True)
        for s in config.seeds
    }
    feedback = any(d.feedback is not None and len(d.feedback) for d in prepared.values())
    spaces = {name: search_space(name, feedback) for name in config.models}
    report(format_spaces(spaces))
    summary = _summary(source, config, spaces)
    for name in config.models:
        trials = summary["models"].setdefault(name, {"best_trial": 0, "trials": []})["trials"]
        for trial in range(config.trials):
            settings = trial_settings(name, spaces[name], trial, config.search_seed, config.train)
            trials.append(_run_trial(name, trial, settings, prepared, config, out, show_progress, device))
            summary["models"][name]["best_trial"] = _best(trials)
            report(format_trial(name, trials[-1], config.trials))
            _write(out, summary)
    return summary


def _run_trial(
    name: str,
    trial: int,
    settings: dict[str, Any],
    prepared: Mapping[int, PreparedData],
    config: TuneConfig,
    out: Path,
    show_progress: bool,
    device: torch.device,
) -> dict[str, Any]:
    compare_config = config.compare_config(name, settings)
    trial_dir = out / "runs" / name / f"trial-{trial:02d}"
    started = time.perf_counter()
    records: list[RunRecord] = []
    reused: list[bool] = []
    row: dict[str, Any] = {"trial": trial, "settings": settings}
    try:
        for seed, data in prepared.items():
            results = trial_dir / f"seed-{seed}" / f"{name}.json"
            before = results.stat().st_mtime_ns if results.exists() else None
            records.append(run_once(name, seed, data, compare_config, results.parent, show_progress, device))
            reused.append(before is not None and results.stat().st_mtime_ns == before)
    except TrainingDivergedError as exc:  # a point of the search, not the end of the tune
        seconds = time.perf_counter() - started
        no_score: dict[str, Any] = {
            "score": None,
            "keyframe_hr1": None,
            "per_seed": {},
            "best_epochs": [],
            "compute_seconds": 0.0,
        }
        return row | no_score | {"seconds": seconds, "reused": False, "failed": str(exc)}
    return row | {
        "score": _mean_std(records, *SCORE),
        "keyframe_hr1": _mean_std(records, *FRAMES) if FRAMES[0] in records[0].metrics else None,
        "per_seed": {
            str(r.seed): {f"{p} {m}": r.metrics[p][m] for p, m in (SCORE, FRAMES) if p in r.metrics} for r in records
        },
        "best_epochs": [r.best_epoch for r in records],
        "compute_seconds": sum(r.train_seconds + r.eval_seconds for r in records),  # when it was run
        "seconds": time.perf_counter() - started,  # in this call (about 0 when reused)
        "reused": all(reused),
    }


def _best(trials: Sequence[Mapping[str, Any]]) -> int:
    """Index of the highest mean validation score; the earlier trial (the defaults first) on a tie.
    A diverged trial (no score) is never the best unless every trial diverged."""
    return int(np.argmax([t["score"]["mean"] if t["score"] else -math.inf for t in trials]))


def _mean_std(records: Sequence[RunRecord], protocol: str, metric: str) -> dict[str, float]:
    values = np.array([r.metrics[protocol][metric] for r in records])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def _summary(source: str | Path, config: TuneConfig, spaces: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    space = {
        name: {key: {"kind": type(d).__name__} | dataclasses.asdict(d) for key, d in keys.items()}
        for name, keys in spaces.items()
    }
    return {
        "dataset": str(source),
        "part": "valid",
        "score": f"{SCORE[0]} {SCORE[1]}, mean over seeds",
        "trials": config.trials,
        "seeds": list(config.seeds),
        "search_seed": config.search_seed,
        "search_space": space,
        "train": config.train.record(),
        "prepare": dataclasses.asdict(config.prepare),
        "repeats": config.repeats,
        "std": "sample standard deviation over seeds (ddof=1)",
        "models": {},
    } | {k: v for k, v in provenance("", {}, config.seeds[0]).items() if k not in ("data_fingerprint", "seed")}


def _write(out: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(out / "tune.json", summary)
    write_text_atomic(out / "tune.md", format_tune(summary) + "\n")
    write_json_atomic(out / "best-settings.json", best_settings(summary))


def best_settings(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Each model's best trial as ``MODEL.KEY`` settings (best-settings.json)."""
    best = {name: row["trials"][row["best_trial"]] for name, row in summary["models"].items()}
    settings = {f"{name}.{k}": v for name, trial in best.items() for k, v in trial["settings"].items()}
    return {
        "about": "each model's best validation trial (jifr tune); use with jifr compare --settings-from",
        "score": summary["score"],
        "seeds": summary["seeds"],
        "train": summary["train"],  # compare with the same epochs, batch size and patience
        "prepare": summary["prepare"],
        "settings": settings,
        "set": [f"{key}={json.dumps(value)}" for key, value in settings.items()],
        "models": {name: {"trial": t["trial"], "NDCG@10": t["score"]} for name, t in best.items()},
    }


def read_best_settings(path: str | Path, models: Sequence[str], train: TrainConfig | None = None) -> dict[str, Any]:
    """The ``MODEL.KEY`` settings of best-settings.json that apply to ``models``; warns about a
    trainable model the file does not tune and about training settings that differ from the tune's."""
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        raise ValueError(f"{path}: not a best-settings.json of jifr tune (no 'settings' object)")
    malformed = [k for k in saved["settings"] if k.split(".", 1)[0] not in MODELS or "." not in k]
    if malformed:
        raise ValueError(f"{path}: settings must be MODEL.KEY with a known model, got {', '.join(malformed)}")
    tuned = {key.split(".", 1)[0] for key in saved["settings"]}
    untuned = [m for m in models if m in MODELS and _trainable(m) and m not in tuned]
    if untuned:
        log.warning("%s does not tune %s: they run at their defaults", path, ", ".join(untuned))
    if train is not None and isinstance(saved.get("train"), dict):
        ours = dataclasses.asdict(train)
        differ = [k for k, v in saved["train"].items() if k not in ("seed", "learning_rate") and ours.get(k) != v]
        if differ:
            log.warning("%s was tuned with other training settings (%s)", path, ", ".join(differ))
    return {key: value for key, value in saved["settings"].items() if key.split(".", 1)[0] in models}


def merge_settings(tuned: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """``tuned`` ``MODEL.KEY`` settings, overridden by ``explicit`` ones (``MODEL.KEY`` or ``KEY``)."""
    kept = {k: v for k, v in tuned.items() if k not in explicit and k.split(".", 1)[1] not in explicit}
    return kept | dict(explicit)


# ---- text --------------------------------------------------------------------------------------
def format_spaces(spaces: Mapping[str, Mapping[str, LogUniform | Choice]]) -> str:
    lines = ["Search space (trial 0 is each model's defaults):"]
    for name, space in spaces.items():
        lines += [f"  {name}:"] + [f"    {key}: {d.describe()}" for key, d in space.items()]
    return "\n".join(lines)


def format_trial(name: str, trial: Mapping[str, Any], trials: int) -> str:
    cost = f"reused (ran in {trial['compute_seconds']:.1f} s)" if trial["reused"] else f"{trial['seconds']:.1f} s"
    if trial.get("failed"):
        cost = f"{trial['failed']}; {cost}"
    frames = f", key-frame HR@1 {_cell(trial['keyframe_hr1'])}" if trial["keyframe_hr1"] else ""
    settings = " ".join(f"{k}={v:g}" for k, v in trial["settings"].items())
    which = f"{name} trial {trial['trial']} ({trial['trial'] + 1}/{trials})"
    return f"{which}: NDCG@10 {_cell(trial['score'])}{frames}; {cost}; {settings}"


def format_tune(summary: Mapping[str, Any]) -> str:
    """One Markdown table per model, best validation NDCG@10 first."""
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"Validation split; mean ± sample std over seeds {seeds}; search seed {summary['search_seed']}."]
    for name, row in summary["models"].items():
        keys = list(summary["search_space"][name])
        header = ["trial", "NDCG@10", "key-frame HR@1", *keys, "best epochs", "train + eval s"]
        lines += ["", f"**{name}** (best: trial {row['best_trial']})", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for trial in sorted(row["trials"], key=lambda t: -t["score"]["mean"] if t["score"] else math.inf):
            label = f"{trial['trial']}" + (" (defaults)" if trial["trial"] == 0 else "")
            cells = [label, _cell(trial["score"]) or "diverged", _cell(trial["keyframe_hr1"])]
            cells += [f"{trial['settings'][k]:g}" for k in keys]
            cells += [", ".join(str(e) for e in trial["best_epochs"]), f"{trial['compute_seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Mapping[str, float] | None) -> str:
    return f"{value['mean']:.4f} ± {value['std']:.4f}" if value else ""
