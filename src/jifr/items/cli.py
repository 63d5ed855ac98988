"""`jifr items ...`: thin Typer commands over `jifr.items`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jifr.errors import DataError

items_app = typer.Typer(
    help="Items added to a trained run after training: frames, no interactions (see README, Serving).",
    no_args_is_help=True,
)


@items_app.command()
def add(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory (from `jifr train`).", show_default=False)],
    item_id: Annotated[str, typer.Option("--item-id", help="The new item's id (not used by any item yet).")],
    title: Annotated[str | None, typer.Option(help="The item's title.")] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            help="A frame's image, repeatable (one per frame, in order); encoded with the encoder of the "
            "run's frame features.",
        ),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(help="A .npy (frames x D) of the frames' precomputed features, instead of --image."),
    ] = None,
    frame_id: Annotated[
        list[str] | None,
        typer.Option("--frame-id", help="A frame's id, repeatable, one per frame (default ITEM-1, ITEM-2, ...)."),
    ] = None,
) -> None:
    """Add a new item to RUN: it is scored from its frames (what the model learned from
    interactions, the item has none of, takes its prior mean), gets personalised key frames, and
    is kept in RUN/new-items/. A running `jifr serve` sees it after a restart."""
    if (image is None) == (features is None):
        typer.echo("error: give the frames as --image PATH (repeatable) or --features FILE.npy, one of them", err=True)
        raise typer.Exit(2)
    from jifr.items.store import NewItemError

    try:
        typer.echo(json.dumps(_add(run, item_id, title, image or [], features, frame_id or [])))
    except (DataError, NewItemError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # an unreadable image, a full disk
        from jifr.outputs import describe_os_error

        typer.echo(f"error: {describe_os_error(error)}", err=True)
        raise typer.Exit(2) from None


def _add(
    run: Path, item_id: str, title: str | None, images: list[Path], features: Path | None, frame_ids: list[str]
) -> dict[str, Any]:
    import numpy as np

    from jifr.checkpoint import load_checkpoint
    from jifr.items.add import NewItemUpload, add_item, run_encoder
    from jifr.items.store import NewItemConflict, NewItemInvalid

    model, data, _ = load_checkpoint(run)
    if not model.scores_new_items():  # before reading any file
        raise NewItemConflict(model.new_item_refusal())
    values = None
    if features is not None:
        try:
            values = np.load(features, allow_pickle=False)
        except ValueError as exc:
            raise NewItemInvalid(f"{features}: not a NumPy .npy array of numbers ({exc})") from None
    upload = NewItemUpload(item_id, title, tuple(frame_ids), tuple(path.read_bytes() for path in images), values)
    catalogue = (set(data.item_ids.tolist()), set(data.frame_ids.tolist()))
    new = add_item(run, model, data, upload, run_encoder(data), catalogue)
    rows = new.frame_rows(new.item_index[item_id])
    return {
        "item_id": item_id,
        "frames": [new.frame_ids[row] for row in rows],
        "images": [new.images[row] for row in rows if new.images[row] is not None],
        "new_items": len(new),
        "scoring": model.new_item_score,
    }
