"""Comparing models over seeds on one dataset.

Each seed re-splits the data (same filtering, split seed = run seed) and re-initialises and
re-trains every model with that seed, so the spread covers both the split and the training.
Every run's results are written as soon as it finishes and reused when the comparison is run
again with the same configuration, so an interrupted comparison resumes where it stopped.
Results are summarised as the mean and the sample standard deviation over seeds, plus paired
per-seed differences between models; a gain is called clear only when the paired difference is
positive at every seed and its mean exceeds the larger seed spread of the two models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jifr.checkpoint import save_checkpoint
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.device import CPU
from jifr.evaluate import ProtocolResult, random_keyframe_expectation, random_keyframe_exposed_expectation
from jifr.experiment import evaluate_model, has_exposures
from jifr.models import MODELS, ModelInputs, build_model, model_config
from jifr.models.diagnostic import MeanUserFrames
from jifr.models.frames import frame_product
from jifr.models.reference import FrameLikePopularity
from jifr.outputs import open_output_directory, write_json_atomic, write_text_atomic
from jifr.results import provenance, write_results
from jifr.train import History, TrainConfig, check_optimizer, fit

log = logging.getLogger(__name__)

TABLE2_MODELS = ("bpr", "vbpr", "jifr_na", "jifr_content_att", "jifr_rating_att", "jifr")
RND_ANALYTIC = "rnd_analytic"  # RND's analytic expectation, computed from each seed's split
FRAME_POP = "frame_pop"  # reference row: frame popularity from training frame likes (held-out signal)
MEAN_USER = "@mean_user"  # a model's frame scores averaged over users: the same frame order for everyone
MEAN_USER_PROTOCOL = "keyframe_mean_user"
PAIRS = (
    ("vbpr", "bpr"),
    ("jifr_na", "bpr"),
    ("jifr_na", "vbpr"),
    ("jifr", "jifr_na"),
    ("jifr_content_att", "jifr_na"),
    ("jifr_rating_att", "jifr_na"),
    ("jifr", "vbpr"),
    ("jifr_na", "content_cosine"),
    ("jifr", "content_cosine"),
    ("vbpr", "content_cosine_centered"),
    ("jifr_na", "content_cosine_centered"),
    ("jifr", "content_cosine_centered"),
    ("jifr", FRAME_POP),
    ("content_cosine_centered", RND_ANALYTIC),
    ("vbpr", RND_ANALYTIC),
    ("jifr_na", RND_ANALYTIC),
    ("jifr", RND_ANALYTIC),
)
ATTENTION_COLUMNS = [
    ("attention", "alpha_entropy_ratio"),
    ("attention", "alpha_max"),
    ("attention", "alpha_uniform_max"),
    ("attention", "alpha_logit_spread"),
    ("attention", "beta_visual_mean"),
    ("attention", "beta_visual_std"),
]
TRAIN_SETTINGS = ("learning_rate",)  # training settings one model may change: "model.learning_rate"
HEADLINE = (
    ("item_paper", "NDCG@10"),
    ("item_full", "NDCG@10"),
    ("keyframe", "HR@1"),
    ("keyframe", "NDCG@3"),
    ("keyframe_exposed", "HR@1"),
)


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[str, ...] = TABLE2_MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    # "key" for every model that has it, "model.key" for one; "model.learning_rate" (TRAIN_SETTINGS)
    # replaces train.learning_rate for that model only
    settings: dict[str, Any] = field(default_factory=dict)
    repeats: int = 10  # of the sampled item protocol
    sampled_negatives: int = 1000
    references: bool = True  # RND's analytic value and frame popularity, when the data has frame likes
    part: str = "test"  # evaluate on "test", or on "valid" when choosing settings

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
        if not self.models or not self.seeds:
            raise ValueError("a comparison needs at least one model and one seed")
        if self.part not in ("test", "valid"):
            raise ValueError(f"part must be 'test' or 'valid', got {self.part!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.models)) != len(self.models):
            raise ValueError("models and seeds must not repeat")
        shared_train = sorted(k for k in self.settings if k in TRAIN_SETTINGS)
        if shared_train:
            raise ValueError(f"{', '.join(shared_train)} is a training setting: give it as MODEL.KEY for one model")
        for name in self.models:
            model_config(name, self.settings_of(name))  # unknown or fixed keys fail now, not after hours
            self.train_for(name, self.seeds[0])  # so do invalid per-model training settings
            if getattr(MODELS[name].model, "trainable", True):
                check_optimizer(name, self.train)  # sgd trains bpr only
        applied = {key for name in self.models for key in self.settings_of(name)}
        unused = [
            k
            for k in self.settings
            if ("." in k and k.split(".")[0] not in self.models) or ("." not in k and k not in applied)
        ]
        if unused:
            raise ValueError(f"setting(s) {', '.join(sorted(unused))} apply to none of {', '.join(self.models)}")

    def settings_of(self, name: str) -> dict[str, Any]:
        """The settings that apply to model ``name``: shared keys it uses, then its own ``name.key``."""
        known = set(MODELS[name].settings)
        shared = {k: v for k, v in self.settings.items() if "." not in k and k in known}
        own = {k.split(".", 1)[1]: v for k, v in self.settings.items() if k.startswith(f"{name}.")}
        return shared | {k: v for k, v in own.items() if k not in TRAIN_SETTINGS}

    def train_for(self, name: str, seed: int) -> TrainConfig:
        """The training config of model ``name`` at ``seed``: ``train`` with its ``name.learning_rate``."""
        own = {k: self.settings[f"{name}.{k}"] for k in TRAIN_SETTINGS if f"{name}.{k}" in self.settings}
        if own and not getattr(MODELS[name].model, "trainable", True):
            raise ValueError(f"{name} is not trained: {', '.join(f'{name}.{k}' for k in own)} does not apply")
        for key, value in own.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}.{key} must be a number, got {value!r}")
        return dataclasses.replace(self.train, seed=seed, **own)

    def run_config(self, name: str, seed: int) -> dict[str, Any]:
        """Everything that determines one run's numbers (saved with its results, used to resume)."""
        return {
            "model": name,
            "model_config": dataclasses.asdict(model_config(name, self.settings_of(name))),
            "train": self.train_for(name, seed).record(),
            "prepare": dataclasses.asdict(self.prepare_for(seed)),
            "item_paper": {"repeats": self.repeats, "n_negatives": self.sampled_negatives},
            "part": self.part,
        }

    def prepare_for(self, seed: int) -> PrepareConfig:
        """Preparation for ``seed``: the same filtering, the split drawn with that seed."""
        return dataclasses.replace(self.prepare, split=dataclasses.replace(self.prepare.split, seed=seed))


@dataclass
class RunRecord:
    """One model trained and evaluated at one seed."""

    model: str
    seed: int
    metrics: dict[str, dict[str, float]]  # protocol -> metric -> value
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    best_epoch: int = 0
    data_fingerprint: str = ""  # of the split this seed's runs share


def run_comparison(
    source: str | Path,
    out: str | Path,
    config: CompareConfig,
    show_progress: bool = True,
    device: torch.device = CPU,
) -> list[RunRecord]:
    """Train and evaluate ``config.models`` at every seed on dataset ``source``, the models on
    ``device``; results go to ``out``.

    ``out`` is a new or empty directory, or an earlier comparison to continue; anything else
    (a directory jifr did not write, one holding ``source``) is refused before any work.
    """
    for name in config.models:  # the compiled SGD solver runs on the CPU alone
        if getattr(MODELS[name].model, "trainable", True):
            check_optimizer(name, config.train_for(name, config.seeds[0]), 1, device)
    out = open_output_directory(out, "compare", reuse=True, inputs=[source])
    records: list[RunRecord] = []
    for seed in config.seeds:
        seed_dir = out / f"seed-{seed}"
        data = prepare_dataset(source, seed_dir / "prepared", config.prepare_for(seed), force=True)
        for name in config.models:
            records.extend(_split_mean_user(run_once(name, seed, data, config, seed_dir, show_progress, device)))
        if config.references and len(data.likes):
            records.extend(_references(seed, data, config.part))
    summary = summarise(records, config)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", format_summary(summary) + "\n")
    return records


def run_once(
    name: str,
    seed: int,
    data: PreparedData,
    config: CompareConfig,
    seed_dir: Path,
    show_progress: bool = True,
    device: torch.device = CPU,
) -> RunRecord:
    """Model ``name`` at ``seed`` on ``data`` (that seed's split): trained, evaluated on ``config.part``
    and written to ``seed_dir/name.{json,csv}``, or read back from there when the same run finished."""
    wanted = config.run_config(name, seed)
    mean_user = _wants_mean_user(name, data, config)
    done = _finished_run(seed_dir / f"{name}.json", wanted, data.fingerprint, mean_user)
    if done is not None:
        log.info("%s seed %d: reusing %s", name, seed, seed_dir / f"{name}.json")
        return done
    model = build_model(name, ModelInputs.from_data(data), config.settings_of(name), seed=seed).place(device)
    train_config = config.train_for(name, seed)
    history = fit(model, data, train_config, show_progress=show_progress)
    save_checkpoint(seed_dir / "checkpoints" / name, model, data, train_config, history, seed=seed)
    started = time.perf_counter()
    results = evaluate_model(
        model, data, part=config.part, repeats=config.repeats, sampled_negatives=config.sampled_negatives, seed=seed
    )
    if mean_user:
        (averaged,) = evaluate_model(MeanUserFrames(model, data, seed=seed), data, ["keyframe"], part=config.part)
        results.append(dataclasses.replace(averaged, protocol=MEAN_USER_PROTOCOL))
    record = _record(name, seed, results, history, time.perf_counter() - started, data.fingerprint)
    timing = {"train_seconds": record.train_seconds, "eval_seconds": record.eval_seconds}
    context = {"model": name} | provenance(data.fingerprint, wanted, seed) | timing
    write_results(seed_dir / name, results, context | {"history": history.as_dict()})
    log.info("%s seed %d: trained in %.1f s, evaluated in %.1f s", name, seed, history.seconds, record.eval_seconds)
    return record


def _wants_mean_user(name: str, data: PreparedData, config: CompareConfig) -> bool:
    """Whether a run also reports its mean-user key frames: trained frame rankers, data with likes."""
    model_class = MODELS[name].model
    learns_frames = getattr(model_class, "ranks_frames", False) and getattr(model_class, "trainable", True)
    return bool(config.references and len(data.likes) and learns_frames)


def _split_mean_user(record: RunRecord) -> list[RunRecord]:
    """The mean-user key-frame result of a run, as a row of its own (``model@mean_user``)."""
    averaged = record.metrics.pop(MEAN_USER_PROTOCOL, None)
    if averaged is None:
        return [record]
    row = RunRecord(f"{record.model}{MEAN_USER}", record.seed, {"keyframe": averaged})
    return [record, dataclasses.replace(row, data_fingerprint=record.data_fingerprint)]


def _record(
    name: str, seed: int, results: list[ProtocolResult], history: History, eval_seconds: float, fingerprint: str
) -> RunRecord:
    metrics = {r.protocol: dict(r.metrics) for r in results}
    return RunRecord(name, seed, metrics, history.seconds, eval_seconds, history.best_epoch, fingerprint)


RESULT_KEYS = ("results", "seed", "train_seconds", "eval_seconds")  # what a reused run is rebuilt from


def _read_results(path: Path) -> dict[str, Any] | None:
    """A run's saved results; None (and a warning) when it is missing keys or is not JSON."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s is damaged (%s); this run is computed again", path, exc)
        return None
    missing = [key for key in RESULT_KEYS if not isinstance(saved, dict) or key not in saved]
    if missing:
        log.warning("%s is damaged (no %s); this run is computed again", path, ", ".join(missing))
        return None
    return dict(saved)


def _finished_run(path: Path, wanted: dict[str, Any], fingerprint: str, mean_user: bool) -> RunRecord | None:
    saved = _read_results(path) if path.exists() else None
    if saved is None:
        return None
    if saved.get("config") != json.loads(json.dumps(wanted)) or saved.get("data_fingerprint") != fingerprint:
        return None
    product = frame_product()
    if saved.get("frame_product", product) != product:  # records from before it was recorded: not known
        log.info("%s was trained with JIFR_FRAME_PRODUCT=%s; this run is computed again", path, saved["frame_product"])
        return None
    if mean_user and MEAN_USER_PROTOCOL not in saved["results"]:
        return None
    metrics = {p: r["metrics"] for p, r in saved["results"].items()}
    best_epoch = saved.get("history", {}).get("best_epoch", 0)
    times = saved["train_seconds"], saved["eval_seconds"]
    return RunRecord(wanted["model"], saved["seed"], metrics, *times, best_epoch, fingerprint)


def _references(seed: int, data: PreparedData, part: str) -> list[RunRecord]:
    started = time.perf_counter()
    protocols = ["keyframe", "keyframe_exposed"] if has_exposures(data) else ["keyframe"]
    frame_pop = evaluate_model(FrameLikePopularity(data), data, protocols, part=part)
    seconds = time.perf_counter() - started
    rnd = {"keyframe": random_keyframe_expectation(data, part)}
    if has_exposures(data):
        rnd["keyframe_exposed"] = random_keyframe_exposed_expectation(data, part)
    popularity = {r.protocol: dict(r.metrics) for r in frame_pop}
    return [
        RunRecord(RND_ANALYTIC, seed, rnd, data_fingerprint=data.fingerprint),
        RunRecord(FRAME_POP, seed, popularity, 0.0, seconds, 0, data.fingerprint),
    ]


def summarise(records: Sequence[RunRecord], config: CompareConfig) -> dict[str, Any]:
    """Mean and sample std over seeds of every metric, mean times, and paired differences."""
    by_model: dict[str, list[RunRecord]] = {}
    for record in records:
        by_model.setdefault(record.model, []).append(record)
    rows = {name: _aggregate(runs) for name, runs in by_model.items()}
    personal = [(name, f"{name}{MEAN_USER}") for name in rows if f"{name}{MEAN_USER}" in rows]
    chosen = [(a, b) for a, b in (*PAIRS, *personal) if a in rows and b in rows]
    pairs = [_paired(by_model[a], by_model[b], rows[a], rows[b]) for a, b in chosen]
    fingerprints = {str(r.seed): r.data_fingerprint for r in records if r.data_fingerprint}
    return {
        "seeds": list(config.seeds),
        "data_fingerprints": fingerprints,  # per seed (each seed has its own split)
        "config": {
            "train": config.train.record(),
            "prepare": dataclasses.asdict(config.prepare),
            "settings": config.settings,
            "model_configs": {m: dataclasses.asdict(model_config(m, config.settings_of(m))) for m in config.models},
        },
        "part": config.part,
        "std": "sample standard deviation over seeds (ddof=1)",
        "models": rows,
        "pairs": [p for p in pairs if p["metrics"]],
    } | {
        k: v for k, v in provenance("", {}, config.seeds[0]).items() if k not in ("data_fingerprint", "seed", "config")
    }


def _aggregate(runs: Sequence[RunRecord]) -> dict[str, Any]:
    row: dict[str, Any] = {"n_seeds": len(runs)}
    for protocol in runs[0].metrics:
        values = {m: np.array([r.metrics[protocol][m] for r in runs]) for m in runs[0].metrics[protocol]}
        row[protocol] = {m: {"mean": float(v.mean()), "std": _std(v)} for m, v in values.items()}
    row["train_seconds"] = float(np.mean([r.train_seconds for r in runs]))
    row["eval_seconds"] = float(np.mean([r.eval_seconds for r in runs]))
    row["best_epochs"] = [r.best_epoch for r in runs]
    return row


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def paired_verdict(diff: np.ndarray, spread: float) -> str:
    """The verdict on per-seed paired differences a - b: clear only when every seed agrees in sign
    and the mean difference exceeds ``spread``, the larger seed std of the two models."""
    if (diff > 0).all() and diff.mean() > spread:
        return "clear gain"
    if (diff < 0).all() and -diff.mean() > spread:
        return "clear loss"
    return "no clear difference"


def _paired(
    runs_a: Sequence[RunRecord], runs_b: Sequence[RunRecord], row_a: dict[str, Any], row_b: dict[str, Any]
) -> dict[str, Any]:
    """Per-seed differences a - b on the headline metrics both models have."""
    b_by_seed = {r.seed: r for r in runs_b}
    seeds = [r.seed for r in runs_a if r.seed in b_by_seed]
    out: dict[str, Any] = {"a": runs_a[0].model, "b": runs_b[0].model, "seeds": seeds, "metrics": {}}
    for protocol, metric in HEADLINE:
        if protocol not in row_a or protocol not in row_b or not seeds:
            continue
        a = {r.seed: r.metrics[protocol][metric] for r in runs_a}
        diff = np.array([a[s] - b_by_seed[s].metrics[protocol][metric] for s in seeds])
        spread = max(row_a[protocol][metric]["std"], row_b[protocol][metric]["std"])
        verdict = paired_verdict(diff, spread)
        out["metrics"][f"{protocol} {metric}"] = {
            "mean": float(diff.mean()),
            "std": _std(diff),
            "per_seed": diff.tolist(),
            "spread": spread,
            "verdict": verdict,
        }
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables: items, key frames, paired differences."""
    models = summary["models"]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"{summary['part']} split; mean ± sample std over seeds {seeds}.", ""]
    item_cols = [("item_paper", "HR@10"), ("item_paper", "NDCG@10"), ("item_full", "HR@10"), ("item_full", "NDCG@10")]
    item_rows = [m for m, row in models.items() if "item_full" in row]
    if item_rows:
        lines += _table(models, item_rows, item_cols, timed=True) + [""]
    frame_cols = [("keyframe", "HR@1"), ("keyframe", "NDCG@1"), ("keyframe", "HR@3"), ("keyframe", "NDCG@3")]
    frame_rows = [m for m, row in models.items() if "keyframe" in row]
    if frame_rows:
        lines += _table(models, frame_rows, frame_cols, timed=False) + [""]
    exposed_cols = [("keyframe_exposed", m) for _, m in frame_cols]
    exposed_rows = [m for m, row in models.items() if "keyframe_exposed" in row]
    if exposed_rows:
        lines += ["Key frames among the frames each user was exposed to:", ""]
        lines += _table(models, exposed_rows, exposed_cols, timed=False) + [""]
    attention_rows = [m for m, row in models.items() if "attention" in row]
    if attention_rows:
        lines += ["Attention (1 and 0 mean uniform content attention; a beta std of 0 means a constant beta):", ""]
        lines += _table(models, attention_rows, ATTENTION_COLUMNS, timed=False, number=".3g") + [""]
    if summary["pairs"]:
        lines += ["| difference (per-seed, paired) | metric | mean ± std | verdict |", "| --- | --- | --- | --- |"]
        for pair in summary["pairs"]:
            for metric, d in pair["metrics"].items():
                lines.append(
                    f"| {pair['a']} − {pair['b']} | {metric} | {d['mean']:+.4f} ± {d['std']:.4f} | {d['verdict']} |"
                )
    return "\n".join(lines).rstrip()


def _table(
    models: dict[str, Any], rows: list[str], columns: list[tuple[str, str]], timed: bool, number: str = ".4f"
) -> list[str]:
    header = ["model"] + [f"{p} {m}" for p, m in columns] + (["train s / run", "best epochs"] if timed else [])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in rows:
        row = models[name]
        cells = [_label(name)] + [_cell(row.get(p, {}).get(m), number) for p, m in columns]
        if timed:
            cells += [f"{row['train_seconds']:.1f}", ", ".join(str(e) for e in row["best_epochs"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(value: dict[str, float] | None, number: str = ".4f") -> str:
    return f"{value['mean']:{number}} ± {value['std']:{number}}" if value else ""


def _label(name: str) -> str:
    if name == RND_ANALYTIC:
        return "RND (analytic)"
    if name.endswith(MEAN_USER):
        return f"{name.removesuffix(MEAN_USER)}, mean user (same frames for all)"
    if name == FRAME_POP:
        return "frame popularity (reference only: uses training frame likes)"
    return name
