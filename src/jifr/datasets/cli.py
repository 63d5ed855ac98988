"""``jifr datasets``: build named datasets and print their statistics.

Mounted by the main CLI as ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from jifr.errors import DataError

# The names of jifr.datasets.movielens's builders; that module (scikit-learn, pyarrow) is only
# imported by the commands that run one, so that the command line starts fast.
DATASET_NAMES = ("movielens-100k-posters", "movielens-bundles", "movielens-bundles-planted")


def builders() -> dict[str, Callable[..., Path]]:
    """Each named dataset's builder: ``builder(mirror, out, **options) -> dataset directory``."""
    from jifr.datasets.movielens import (
        BUNDLES_BUILDER,
        PLANTED_BUILDER,
        POSTERS_BUILDER,
        build_movielens_100k_posters,
        build_movielens_bundles,
    )
    from jifr.datasets.planted import build_movielens_bundles_planted

    return {
        POSTERS_BUILDER: build_movielens_100k_posters,
        BUNDLES_BUILDER: build_movielens_bundles,
        PLANTED_BUILDER: build_movielens_bundles_planted,
    }


datasets_app = typer.Typer(
    help="Build named datasets (MovieLens-100K posters, bundles and planted bundles) and describe them.",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    """Print ``message`` to stderr and return the exit to raise (status 2, as for every data problem)."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code=2)


def _builder_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The given (non-None) options, checked against the builder's parameters."""
    accepted = inspect.signature(builders()[name]).parameters
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key not in accepted:
            raise _fail(f"--{key.replace('_', '-')} does not apply to {name}")
    return given


@datasets_app.command()
def build(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASET_NAMES)}.")],
    out: Annotated[Path, typer.Option("--out", help="Dataset directory to write.")],
    mirror: Annotated[
        Path | None,
        typer.Option(
            help="Mirror holding ml-100k-posters/ (default: $JIFR_MIRROR, then "
            "../shared/datasets from here or from the repository)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Bundles: clustering/shuffle seed (0); planted: seed of the likes (0).")
    ] = None,
    bundle_size: Annotated[int | None, typer.Option(help="Bundles: target size (6).")] = None,
    like_threshold: Annotated[int | None, typer.Option(help="Bundles: lowest rating that likes a poster (4).")] = None,
    taste: Annotated[
        float | None,
        typer.Option(help="Planted: probability, 0..1, that a like follows the hidden visual taste (0.5)."),
    ] = None,
    frame_feedback: Annotated[
        bool | None,
        typer.Option(
            "--frame-feedback",
            help="Bundles: also write frame_feedback.csv, every poster of each user-bundle pair labelled liked or not.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an earlier jifr dataset at --out, features included (never other files).")
    ] = False,
) -> None:
    """Build dataset NAME from the MovieLens-100K mirror into --out (new or empty; it appears when complete)."""
    if name not in DATASET_NAMES:
        raise _fail(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    from jifr.datasets.mirror import MirrorNotFoundError
    from jifr.datasets.movielens import dataset_statistics

    options = {
        "seed": seed,
        "bundle_size": bundle_size,
        "like_threshold": like_threshold,
        "taste": taste,
        "frame_feedback": frame_feedback,
    }
    try:
        path = builders()[name](mirror, out, **_builder_options(name, options), force=force)
    except (MirrorNotFoundError, DataError, OSError, ValueError) as error:
        raise _fail(str(error)) from None
    statistics = dataset_statistics(path)
    typer.echo(
        f"wrote {path}: {statistics['users']} users, {statistics['items']} items, "
        f"{statistics['interactions']} interactions, {statistics['frames']} frames"
    )


@datasets_app.command()
def stats(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
) -> None:
    """Print the statistics of a dataset directory as JSON."""
    from jifr.datasets.movielens import dataset_statistics

    try:
        statistics = dataset_statistics(directory)
    except FileNotFoundError as error:
        raise _fail(str(error)) from None
    typer.echo(json.dumps(statistics, indent=2))
