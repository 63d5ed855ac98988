"""The main job: build MovieLens-Bundles from the mirror, extract poster features once, train
JIFR and the models it is compared with, print item and key-frame metrics, and show a few users'
recommendations with their personalised key frames. Without the mirror it runs on synthetic data
and says so."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jifr.checkpoint import save_checkpoint
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.data.splits import SplitConfig
from jifr.datasets.mirror import MIRROR_ENV_VAR, MirrorNotFoundError, find_mirror
from jifr.evaluate import ProtocolResult, random_keyframe_expectation, random_keyframe_exposed_expectation
from jifr.experiment import evaluate_model, has_exposures
from jifr.models import ModelInputs, build_model
from jifr.models.diagnostic import MeanUserFrames
from jifr.models.reference import FrameLikePopularity
from jifr.outputs import open_output_directory
from jifr.recommend import recommend_for_user
from jifr.results import provenance, write_results
from jifr.train import TrainConfig, fit

log = logging.getLogger(__name__)
FRAME_POP = "frame_pop"
MEAN_USER = "jifr@mean_user"
MODELS = ("pop", "rnd", "content_cosine_centered", "bpr", "vbpr", "jifr_na", "jifr")
SERVED = "jifr"  # the model whose run the main job writes (work_dir/run-seed-N)


@dataclass
class MainJobConfig:
    work_dir: Path = Path("runs/main")
    mirror: Path | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=1024))
    repeats: int = 3  # of the sampled item protocol
    n_users_shown: int = 3
    show_progress: bool = True
    bundle_seed: int = 0  # MovieLens-Bundles is one fixed dataset; ``seed`` varies the split and training


def build_dataset(config: MainJobConfig) -> tuple[Path, str]:
    """The MovieLens-Bundles directory with poster features (cached), or a synthetic fallback."""
    try:
        mirror = find_mirror(config.mirror)
    except MirrorNotFoundError as exc:
        if config.mirror is not None or os.environ.get(MIRROR_ENV_VAR):
            raise  # a mirror the user named must exist: no fallback
        log.warning("MovieLens mirror not found (%s); FALLING BACK TO SYNTHETIC DATA", exc)
        from jifr.datasets.synthetic import write_synthetic

        synthetic = config.work_dir / "synthetic-small"
        if not (synthetic / "frame_features.npy").exists():
            write_synthetic("small", synthetic, force=True)
        return synthetic, "synthetic-small (no MovieLens mirror found)"
    from jifr.datasets.movielens import build_movielens_bundles
    from jifr.features.extract import extract_features
    from jifr.features.inputs import images_from_item_frames

    directory = config.work_dir / "movielens-bundles"
    if not (directory / "frame_features.npy").exists():
        # An earlier build whose extraction was interrupted is rebuilt; extraction resumes.
        if not (directory / "item_frames.csv").exists():
            build_movielens_bundles(mirror, directory, seed=config.bundle_seed, force=True)
        started = time.perf_counter()
        images = images_from_item_frames(directory / "item_frames.csv")
        extract_features(images, directory, show_progress=config.show_progress)
        log.info("poster features extracted in %.1f s (cached for later runs)", time.perf_counter() - started)
    return directory, f"movielens-bundles (mirror {mirror})"


def run_main_job(config: MainJobConfig) -> dict[str, Any]:
    """Everything the README's first command does; returns the results for printing."""
    open_output_directory(config.work_dir, "demo", reuse=True)
    source, label = build_dataset(config)
    prepare = PrepareConfig(split=SplitConfig(seed=config.seed))
    data = prepare_dataset(source, config.work_dir / f"prepared-seed-{config.seed}", prepare, force=True)
    results: dict[str, list[ProtocolResult]] = {}
    timings: dict[str, float] = {}
    models = {}
    run_dir = config.work_dir / f"run-seed-{config.seed}"
    for name in MODELS:
        model = build_model(name, ModelInputs.from_data(data), seed=config.seed)
        history = fit(model, data, config.train, show_progress=config.show_progress)
        timings[name] = history.seconds
        if name == SERVED:  # a run directory that stands alone, for `jifr serve`, `recommend`, `export`
            open_output_directory(run_dir, "run", reuse=True)
            save_checkpoint(run_dir, model, data, config.train, history, seed=config.seed, copy_data=True)
        results[name] = evaluate_model(model, data, repeats=config.repeats, seed=config.seed)
        context = {"model": name, "dataset": label} | provenance(
            data.fingerprint, {"train": config.train.record()}, config.seed
        )
        write_results(config.work_dir / "results" / f"seed-{config.seed}" / name, results[name], context)
        models[name] = model
    if len(data.likes):
        frame_protocols = ["keyframe", "keyframe_exposed"] if has_exposures(data) else ["keyframe"]
        results[MEAN_USER] = evaluate_model(MeanUserFrames(models["jifr"], data), data, ["keyframe"])
        results[FRAME_POP] = evaluate_model(FrameLikePopularity(data), data, frame_protocols)
        timings[MEAN_USER] = timings[FRAME_POP] = 0.0
    users = data.user_ids[: config.n_users_shown].tolist()
    shown = [recommend_for_user(models["jifr"], data, u, k=3) for u in users]
    return {
        "dataset": label,
        "data": data,
        "results": results,
        "timings": timings,
        "recommendations": shown,
        "run_dir": run_dir,
    }


def format_main_job(outcome: dict[str, Any]) -> str:
    data: PreparedData = outcome["data"]
    lines = [
        f"dataset: {outcome['dataset']}",
        f"users {data.n_users}, items {data.n_items}, frames {data.frames.n_frames}, fingerprint {data.fingerprint}",
        "",
    ]
    lines.append(
        f"{'model':24s} {'train s':>8s}  item_full HR@10 NDCG@10 | item_paper HR@10 NDCG@10 | keyframe HR@1 NDCG@3"
        " | exposed HR@1"
    )
    for name, results in outcome["results"].items():
        by = {r.protocol: r.metrics for r in results}
        full, paper, frames = by.get("item_full"), by.get("item_paper"), by.get("keyframe")
        exposed = by.get("keyframe_exposed")
        cells = [
            f"{full['HR@10']:.4f}  {full['NDCG@10']:.4f}" if full else " " * 14,
            f"{paper['HR@10']:.4f}  {paper['NDCG@10']:.4f}" if paper else " " * 14,
            f"{frames['HR@1']:.4f} {frames['NDCG@3']:.4f}" if frames else "",
            f"{exposed['HR@1']:.4f}" if exposed else "",
        ]
        lines.append(
            f"{name:24s} {outcome['timings'][name]:8.1f}  {cells[0]:>22s} | {cells[1]:>23s} | {cells[2]:>19s}"
            + (f" | {cells[3]:>12s}" if cells[3] else "")
        )
    if len(data.likes):
        rnd = random_keyframe_expectation(data)
        rnd_exposed = f" | {random_keyframe_exposed_expectation(data)['HR@1']:>12.4f}" if has_exposures(data) else ""
        lines.append(f"{'RND (analytic expectation)':>79s} | {rnd['HR@1']:.4f} {rnd['NDCG@3']:.4f}{rnd_exposed}")
        lines.append(
            f"{MEAN_USER}: JIFR's frame scores averaged over users, one frame order for everyone;"
            " JIFR's key frames are personal only where JIFR beats it."
        )
        lines.append(
            f"{FRAME_POP}: a reference only, counted from the training split's frame likes, which no model"
            " sees; it shows how much of the key-frame task plain poster popularity explains."
        )
        if has_exposures(data):
            lines.append("exposed: key frames ranked among the frames each user was exposed to (taste, not exposure).")
    attention = {r.protocol: r.metrics for r in outcome["results"].get("jifr", [])}.get("attention")
    if attention:
        lines.append(
            f"JIFR's attention: content entropy / uniform {attention['alpha_entropy_ratio']:.4f}"
            f" (1 = uniform), logit spread {attention['alpha_logit_spread']:.2g},"
            f" visual weight beta {attention['beta_visual_mean']:.3f} ± {attention['beta_visual_std']:.3g} over pairs"
        )
    for rec in outcome["recommendations"]:
        lines.append(f"\nuser {rec['user_id']}: top items with their personalised key frame (JIFR)")
        for item in rec["items"]:
            key = item.get("key_frame", {})
            lines.append(f"  {item['rank']}. {item.get('title', item['item_id'])}")
            lines.append(f"     key frame: {key.get('title', key.get('frame_id', '-'))}  {key.get('path', '')}")
    lines.append(f"\nJIFR's run: {outcome['run_dir']} (serve it: jifr serve {outcome['run_dir']})")
    return "\n".join(lines)
