"""The ``jifr`` command: thin Typer commands over the library."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from jifr.datasets.cli import datasets_app
from jifr.errors import DataError, MainRankFailed
from jifr.features.cli import features_app
from jifr.items.cli import items_app

app = typer.Typer(
    help="jifr: joint multimedia item and personalised key-frame recommendation (JIFR, IJCAI 2019).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(features_app, name="features")
app.add_typer(items_app, name="items")
F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def reports_errors(command: F) -> F:
    """Turn data and configuration problems into one clear message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MainRankFailed:  # another process of a distributed run; its rank 0 reports the error
            raise typer.Exit(2) from None
        except (DataError, ValueError, FileNotFoundError, FileExistsError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # unreadable input, full disk, a folder where a file should be
            from jifr.outputs import describe_os_error

            typer.echo(f"error: {describe_os_error(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


Optimizer = Annotated[
    str,
    typer.Option(
        help="adam: mini-batch Adam, every model. sgd: bpr only, one SGD step per (user, positive, negative) "
        "in a loop compiled with numba, in one process; --batch-size does not apply.",
    ),
]
LearningRate = Annotated[float, typer.Option(help="Learning rate: Adam's, or with --optimizer sgd the step size.")]
Device = Annotated[str, typer.Option(help="cpu, cuda (or cuda:N), or auto: a GPU where CUDA has one, else the CPU.")]
Precision = Annotated[
    str,
    typer.Option(
        help="fp32, or bf16: training's matrix products in bfloat16 (torch.autocast; weights stay float32). "
        "Adam only; recorded with the run."
    ),
]
FeedbackShare = Annotated[
    float,
    typer.Option(
        "--frame-feedback-share",
        help="Share of the training (user, item) pairs whose frame feedback is used (seeded subset).",
    ),
]


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``["collab_dim=64", "content_attention=avg"]`` -> {"collab_dim": 64, "content_attention": "avg"}."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


# ---- commands ---------------------------------------------------------------------------------
@app.command()
@reports_errors
def generate(
    preset: Annotated[str, typer.Argument(help="Synthetic preset: tiny, small or paper.")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
    seed: Annotated[int | None, typer.Option(help="Override the preset's seed.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an earlier jifr dataset at --out (never other files).")] = False,
    images: Annotated[
        bool, typer.Option("--images", help="Also draw a small PNG per frame, in its planted theme's colour.")
    ] = False,
) -> None:
    """Write a synthetic dataset with a planted answer (users' true visual tastes drive frame likes)."""
    from jifr.datasets.synthetic import write_synthetic

    typer.echo(write_synthetic(preset, out, seed=seed, force=force, images=images))


@app.command()
@reports_errors
def prepare(
    source: Annotated[Path, typer.Argument(help="Dataset directory in the documented format (docs/format.md).")],
    out: Annotated[Path, typer.Option(help="Prepared-dataset directory to write.")],
    min_user: Annotated[int, typer.Option(help="k-core: minimum interactions per user.")] = 5,
    min_item: Annotated[int, typer.Option(help="k-core: minimum interactions per item.")] = 5,
    split: Annotated[str, typer.Option(help="random, leave-one-out or temporal.")] = "random",
    ratios: Annotated[str, typer.Option(help="train,valid,test fractions (random/temporal).")] = "0.7,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    feedback_share: FeedbackShare = 1.0,
    force: Annotated[
        bool, typer.Option(help="Replace an earlier prepared dataset at --out (never other files).")
    ] = False,
) -> None:
    """Validate, k-core filter and split a dataset; every model is then evaluated on this split.
    --out must be new or empty; it appears only when complete."""
    from jifr.data.prepare import PrepareConfig, prepare_dataset
    from jifr.data.splits import SplitConfig

    parts = tuple(float(x) for x in ratios.split(","))
    if len(parts) != 3:
        raise ValueError(f"--ratios needs three numbers, got {ratios!r}")
    config = PrepareConfig(min_user, min_item, SplitConfig(split, parts, seed), feedback_share)  # type: ignore[arg-type]
    data = prepare_dataset(source, out, config, force=force)
    shown = ("n_users", "n_items", "n_frames", "n_interactions", "n_frame_likes", "n_frame_feedback", "fingerprint")
    typer.echo(json.dumps({k: data.meta[k] for k in shown if k in data.meta}))


@app.command()
@reports_errors
def models() -> None:
    """List the models and their settings (change them with `jifr train --set KEY=VALUE`)."""
    import dataclasses

    from jifr.models import MODELS

    for name, spec in MODELS.items():
        fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(spec.config) if f.name in spec.settings)
        typer.echo(f"{name:18s} {spec.summary}\n{'':18s} {fields or '(no settings)'}")


@app.command()
@reports_errors
def train(
    ctx: typer.Context,
    prepared: Annotated[Path, typer.Argument(help="Prepared dataset (from `jifr prepare`).")],
    out: Annotated[Path, typer.Option(help="Run directory for the checkpoint.")],
    model: Annotated[str, typer.Option(help="Model name (see `jifr models`).")] = "jifr",
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Model setting KEY=VALUE, repeatable (e.g. --set l2_projection=0.01)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 40,
    batch_size: Annotated[
        int, typer.Option(help="Positives per Adam step (each with --negatives negatives); unused by sgd.")
    ] = 1024,
    negatives: Annotated[int, typer.Option(help="Negatives per positive, resampled every epoch.")] = 10,
    lr: LearningRate = 5e-3,
    optimizer: Optimizer = "adam",
    patience: Annotated[int, typer.Option(help="Validations without improvement before stopping.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, ordering and negatives.")] = 0,
    device: Device = "cpu",
    precision: Precision = "fp32",
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Show progress bars (on a terminal; elsewhere, log lines at most every 30 s).",
        ),
    ] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in OUT from its last completed epoch.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the run already in OUT.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1, help="Train in this many processes on this machine (torchrun), each on an equal part of every batch."
        ),
    ] = 1,
) -> None:
    """Train a model with mini-batch Adam (or, for bpr, --optimizer sgd) on the BPR objective;
    keeps the best validation epoch.

    The training state is saved in OUT/training-state/ after every epoch; after an interruption,
    the same command with --resume continues from the last completed epoch and ends with the
    weights an uninterrupted run would have. OUT/data/ holds the run's own copy of the prepared
    dataset (hard links where possible), so the run can be moved and served on its own.

    With --nproc N (or started by torchrun: `torchrun --nproc-per-node N -m jifr train ...`), N
    processes train together, each on 1/N of every batch, and rank 0 writes OUT.
    """
    from jifr import distributed
    from jifr.checkpoint import save_checkpoint
    from jifr.data.prepared import load_prepared
    from jifr.device import resolve_device
    from jifr.models import ModelInputs, build_model, model_config
    from jifr.outputs import check_output_directory, open_output_directory
    from jifr.train import TrainConfig, check_optimizer, fit, run_identity
    from jifr.training_state import STATE_DIR_NAME, remove_training_state

    if resume and force:
        raise ValueError("--resume continues the run in --out and --force replaces it: choose one")
    config = TrainConfig(
        epochs, batch_size, negatives, lr, seed, patience=patience, optimizer=optimizer, precision=precision
    )
    placed = resolve_device(device)
    check_optimizer(model, config, max(nproc, distributed.launched_size()), placed)
    if nproc > 1:  # checked here, before any process starts; then torchrun runs this command without --nproc
        if distributed.launched_size() > 1:
            raise ValueError("--nproc starts torchrun itself; under torchrun, leave it out")
        distributed.check_batch_split(batch_size, nproc)
        model_config(model, parse_settings(setting or []))
        check_output_directory(out, "run", force=force, reuse=resume, inputs=[prepared])
        raise typer.Exit(distributed.launch(nproc, distributed.command_arguments(ctx, leave_out=["nproc"])))
    data = load_prepared(prepared)
    recommender = build_model(model, ModelInputs.from_data(data), parse_settings(setting or []), seed=seed)
    recommender.place(placed)
    with distributed.process_group(placed) as ranks:  # one process, unless torchrun started several
        if not ranks.is_main:
            logging.getLogger("jifr").setLevel(logging.WARNING)  # rank 0 alone reports progress
        # Only now, with the settings known to be valid, is the run directory created or reused.
        run_dir = distributed.on_main(
            lambda: open_output_directory(out, "run", reuse=resume, force=force, inputs=[prepared]), ranks
        )
        state_dir = run_dir / STATE_DIR_NAME
        identity = run_identity(recommender, data, config)
        finished = distributed.on_main(lambda: _finished_run_history(run_dir, resume, identity), ranks)
        if finished is not None:
            if ranks.is_main:
                typer.echo(f"{out} holds a finished run; nothing to resume", err=True)
            seconds, best_epoch = finished["seconds"], finished["best_epoch"]
        else:
            history = fit(recommender, data, config, show_progress=progress, state_dir=state_dir, resume=resume)

            def save() -> None:
                save_checkpoint(run_dir, recommender, data, config, history, seed=seed, copy_data=True)
                remove_training_state(state_dir)  # the checkpoint holds all that a finished run needs

            distributed.on_main(save, ranks)
            seconds, best_epoch = history.seconds, history.best_epoch
    if ranks.is_main:
        typer.echo(json.dumps({"checkpoint": str(out), "best_epoch": best_epoch, "seconds": round(seconds, 2)}))


def _finished_run_history(run_dir: Path, resume: bool, identity: dict[str, Any]) -> dict[str, Any] | None:
    """With --resume, the history of the finished run in ``run_dir`` (None when there is none
    and training is to run); a finished run of other settings is a ValueError."""
    from jifr.checkpoint import CHECKPOINT_NAME, read_description
    from jifr.training_state import STATE_DIR_NAME, check_same_run, has_training_state, identity_of_checkpoint

    if not resume or has_training_state(run_dir / STATE_DIR_NAME) or not (run_dir / CHECKPOINT_NAME).exists():
        return None
    description = read_description(run_dir)
    check_same_run(identity_of_checkpoint(description), identity, run_dir)
    return dict(description["history"])


@app.command()
@reports_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory (from `jifr train`).")],
    protocol: Annotated[
        list[str] | None,
        typer.Option(help="item_paper, item_full, keyframe, keyframe_exposed; repeatable (default: all that apply)."),
    ] = None,
    part: Annotated[str, typer.Option(help="test or valid.")] = "test",
    repeats: Annotated[int, typer.Option(help="Repeats of the sampled protocol.")] = 10,
    sampled_negatives: Annotated[int, typer.Option(help="Sampled negatives per user (paper protocol).")] = 1000,
    seed: Annotated[int, typer.Option(help="First seed of the sampled protocol.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Results prefix (writes .json and .csv); default RUN/results.")
    ] = None,
    device: Device = "cpu",
) -> None:
    """Evaluate a checkpoint; prints a table and writes JSON + CSV results with provenance."""
    from jifr.checkpoint import load_checkpoint
    from jifr.device import resolve_device
    from jifr.experiment import evaluate_model, format_results
    from jifr.results import provenance, write_results

    recommender, data, description = load_checkpoint(run, device=resolve_device(device))
    results = evaluate_model(recommender, data, protocol or None, part, repeats, sampled_negatives, seed)
    config = {
        "model": description["model"],
        "model_config": description["model_config"],
        "train_config": description["train_config"],
        "trained_with": {key: description.get(key) for key in ("jifr_version", "torch_version", "frame_product")},
        "part": part,
    }
    context = {"model": description["model"]} | provenance(data.fingerprint, config, description["seed"])
    paths = write_results(out or run / "results", results, context)
    typer.echo(format_results(description["model"], results))
    typer.echo(f"wrote {paths[0]} and {paths[1]}")


@app.command()
@reports_errors
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory (from `jifr train`).")],
    user: Annotated[str, typer.Option(help="Raw user id.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Number of items (>= 0; 0 lists none).")] = 10,
    include_seen: Annotated[
        bool,
        typer.Option(help="Also recommend items the user already interacted with (training, validation or test)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Top-K items for a user, each with its personalised key frame and the scores of all its frames.
    Items the user already interacted with (in any split) are left out unless --include-seen.
    Items added to the run after training (`jifr items add`) are ranked with the rest, marked new."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")

    from jifr.checkpoint import load_checkpoint
    from jifr.recommend import format_recommendations, recommend_for_user

    recommender, data, _ = load_checkpoint(run)
    recommendations = recommend_for_user(recommender, data, user, k, exclude_seen=not include_seen, run_dir=run)
    typer.echo(json.dumps(recommendations, indent=1) if as_json else format_recommendations(recommendations))


@app.command()
@reports_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory (from `jifr train`).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Items per user (>= 0).")] = 50,
    include_seen: Annotated[
        bool,
        typer.Option(help="Also recommend items the user already interacted with (training, validation or test)."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier jifr export at OUT (nothing else).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar on a terminal (log lines otherwise).")] = True,
) -> None:
    """Every user's top-K items as one Parquet file: user_id, rank, item_id, score and, for models
    that rank frames, key_frame_id and key_frame_score. Known items are left out unless
    --include-seen, as in `jifr recommend`; items added after training (`jifr items add`) are ranked
    with the rest (column `new`). Written in chunks of users, renamed into place when complete."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")

    from jifr.checkpoint import load_checkpoint
    from jifr.export import check_export_path, export_recommendations
    from jifr.items.score import scored_new_items

    check_export_path(out, force)  # before the checkpoint loads
    recommender, data, _ = load_checkpoint(run)
    new = scored_new_items(run, recommender, data)
    summary = export_recommendations(
        recommender, data, out, k, exclude_seen=not include_seen, force=force, show_progress=progress, new=new
    )
    typer.echo(json.dumps({"export": str(summary.path), "users": summary.users, "rows": summary.rows}))


@app.command()
@reports_errors
def serve(
    run: Annotated[Path, typer.Argument(help="Run directory (from `jifr train`).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    device: Device = "cpu",
) -> None:
    """Serve a run over HTTP until stopped (Ctrl-C): the JSON API under /v1 (OpenAPI at /docs)
    and a page at / to pick a user and see their items with personalised key frames."""
    import uvicorn

    from jifr.device import resolve_device
    from jifr.serve.app import create_app
    from jifr.serve.service import Service

    service = Service.load(run, resolve_device(device))  # a missing or damaged run ends here with one message
    uvicorn.run(create_app(run, service), host=host, port=port, log_level="info")


@app.command()
@reports_errors
def compare(
    source: Annotated[Path, typer.Argument(help="Dataset directory in the documented format (docs/format.md).")],
    out: Annotated[Path, typer.Option(help="Directory for every run's results and the summary.")],
    models: Annotated[
        str, typer.Option(help="Comma-separated model names.")
    ] = "bpr,vbpr,jifr_na,jifr_content_att,jifr_rating_att,jifr",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (split, initialisation, sampling).")] = "0,1,2",
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE for every model that has KEY, or MODEL.KEY=VALUE for one; repeatable."),
    ] = None,
    settings_from: Annotated[
        Path | None,
        typer.Option(help="best-settings.json of `jifr tune`: each model's tuned settings (--set values win)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Positives per Adam step.")] = 1024,
    lr: LearningRate = 5e-3,
    optimizer: Optimizer = "adam",
    patience: Annotated[int, typer.Option(help="Validations without improvement before stopping.")] = 5,
    device: Device = "cpu",
    precision: Precision = "fp32",
    repeats: Annotated[int, typer.Option(help="Repeats of the sampled item protocol.")] = 10,
    references: Annotated[
        bool, typer.Option(help="Add RND's analytic value and the frame-popularity reference (key frames).")
    ] = True,
    part: Annotated[str, typer.Option(help="Evaluate on test, or on valid while choosing settings.")] = "test",
    feedback_share: FeedbackShare = 1.0,
    progress: Annotated[bool, typer.Option(help="Progress bars on a terminal (log lines otherwise).")] = True,
) -> None:
    """Train and evaluate models at several seeds (each re-splits the data); prints mean ± std
    tables and paired differences, and writes OUT/summary.{md,json}. Finished runs are reused."""
    from jifr.compare import CompareConfig, format_summary, run_comparison, summarise
    from jifr.data.prepare import PrepareConfig
    from jifr.device import resolve_device
    from jifr.train import TrainConfig

    settings = parse_settings(setting or [])
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    train = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        patience=patience,
        optimizer=optimizer,
        precision=precision,
    )
    if settings_from is not None:
        from jifr.tune import merge_settings, read_best_settings

        # Warns where the tune's training settings differ from these (the learning rate aside).
        settings = merge_settings(read_best_settings(settings_from, names, train), settings)
    config = CompareConfig(
        models=names,
        seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
        train=train,
        settings=settings,
        prepare=PrepareConfig(frame_feedback_share=feedback_share),
        repeats=repeats,
        references=references,
        part=part,
    )
    records = run_comparison(source, out, config, show_progress=progress, device=resolve_device(device))
    typer.echo(format_summary(summarise(records, config)))
    typer.echo(f"wrote {out / 'summary.md'} and {out / 'summary.json'}")


@app.command()
@reports_errors
def tune(
    source: Annotated[Path, typer.Argument(help="Dataset directory in the documented format (docs/format.md).")],
    out: Annotated[Path, typer.Option(help="Directory for every trial's runs, tune.{json,md} and best-settings.json.")],
    models: Annotated[
        str, typer.Option(help="Comma-separated trained models (see `jifr models`).")
    ] = "bpr,vbpr,jifr_na,jifr_content_att,jifr_rating_att,jifr",
    trials: Annotated[int, typer.Option(help="Trials per model, the same for every model; trial 0 = defaults.")] = 8,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; a trial scores its mean over them.")] = "0,1",
    search_seed: Annotated[int, typer.Option(help="Seed of the random search.")] = 0,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Positives per Adam step.")] = 1024,
    patience: Annotated[int, typer.Option(help="Validations without improvement before stopping.")] = 5,
    optimizer: Optimizer = "adam",
    device: Device = "cpu",
    precision: Precision = "fp32",
    feedback_share: FeedbackShare = 1.0,
    progress: Annotated[bool, typer.Option(help="Progress bars on a terminal (log lines otherwise).")] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the tune already in OUT (default: resume it).")
    ] = False,
) -> None:
    """Tune every model with the same budget: a seeded random search over its learning rate,
    dimensions and L2 settings, scored by validation NDCG@10 (full ranking); the test split is
    never evaluated. Writes OUT/tune.{md,json} and OUT/best-settings.json, for
    `jifr compare --settings-from`. An interrupted tune resumes; finished trials are reused."""
    from jifr.data.prepare import PrepareConfig
    from jifr.device import resolve_device
    from jifr.train import TrainConfig
    from jifr.tune import TuneConfig, format_tune, run_tune

    config = TuneConfig(
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        trials=trials,
        seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
        search_seed=search_seed,
        train=TrainConfig(
            epochs=epochs, batch_size=batch_size, patience=patience, optimizer=optimizer, precision=precision
        ),
        prepare=PrepareConfig(frame_feedback_share=feedback_share),
    )
    placed = resolve_device(device)
    summary = run_tune(source, out, config, force=force, show_progress=progress, report=typer.echo, device=placed)
    typer.echo(format_tune(summary))
    typer.echo(f"wrote {out / 'tune.md'}, {out / 'tune.json'} and {out / 'best-settings.json'}")


@app.command()
@reports_errors
def report(
    comparison: Annotated[Path, typer.Argument(help="A finished `jifr compare` output directory.")],
    out: Annotated[Path, typer.Option(help="Report directory to write (PNG figures and report.md).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier jifr report at OUT (nothing else).")
    ] = False,
) -> None:
    """The paper's Fig. 3, Fig. 4, Table 2 and Fig. 5 (case study) from a finished comparison, as PNGs
    and OUT/report.md with the tables, the commands that reproduce them, versions and data
    fingerprints. Reads the results and the first seed's jifr checkpoint; trains nothing."""
    from jifr.report import write_report

    typer.echo(f"wrote {write_report(comparison, out, force=force) / 'report.md'}")


@app.command()
@reports_errors
def demo(
    work_dir: Annotated[Path, typer.Option(help="Where datasets, features, checkpoints and results go.")] = Path(
        "runs/main"
    ),
    mirror: Annotated[
        Path | None, typer.Option(help="MovieLens mirror (default: $JIFR_MIRROR or ../shared/datasets).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs per model.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the split, initialisation and sampling.")] = 0,
    progress: Annotated[bool, typer.Option(help="Progress bars on a terminal (log lines otherwise).")] = True,
) -> None:
    """The main job: MovieLens-Bundles with real posters (or synthetic data without the mirror),
    JIFR against its baselines on items and key frames, and a few users' recommendations."""
    from jifr.main_job import MainJobConfig, format_main_job, run_main_job
    from jifr.train import TrainConfig

    config = MainJobConfig(
        work_dir=work_dir, mirror=mirror, seed=seed, train=TrainConfig(epochs=epochs, seed=seed), show_progress=progress
    )
    typer.echo(format_main_job(run_main_job(config)))
