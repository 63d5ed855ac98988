"""`jifr features ...`: thin Typer commands over `jifr.features`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jifr.errors import DataError
from jifr.features.names import DEFAULT_ENCODER, ENCODER_NAMES

if TYPE_CHECKING:
    from jifr.features.extract import ExtractResult
    from jifr.features.shards import Shard

features_app = typer.Typer(
    help="Encode images into a frame-feature store (frame_features.npy + .ids.txt).",
    no_args_is_help=True,
)


def _shard(text: str | None) -> str | None:
    if text is not None:
        from jifr.features.shards import Shard

        try:
            Shard.parse(text)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    return text


def _known_encoder(name: str) -> str:
    if name not in ENCODER_NAMES:
        raise typer.BadParameter(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODER_NAMES)}")
    return name


@features_app.command()
def extract(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A folder of images (.jpg .jpeg .png .webp .bmp; frame id = file stem) or an "
            "item_frames table (.csv .tsv .parquet) with frame_id and path columns, paths "
            "relative to the table's folder.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder; receives frame_features.npy (L x D) and frame_features.ids.txt.",
            show_default=False,
        ),
    ],
    encoder: Annotated[
        str,
        typer.Option(
            help=f"Image encoder: {', '.join(ENCODER_NAMES)}. vgg19-fc7 (4096-d, as in the paper) "
            "needs torchvision and its weights.",
            callback=_known_encoder,
        ),
    ] = DEFAULT_ENCODER,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch (part of the resume fingerprint).")] = 32,
    float16: Annotated[
        bool, typer.Option("--float16", help="Store float16 (half the size) instead of float32.")
    ] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Leave unreadable images out of the store (counted, listed) instead of failing.",
        ),
    ] = False,
    weights_path: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Encoder weights file instead of the default one."),
    ] = None,
    allow_download: Annotated[
        bool,
        typer.Option("--allow-download", help="Let an encoder download missing weights."),
    ] = False,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="Threads that decode images.")] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished store in --out.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar on a terminal (log lines otherwise).")] = True,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Encode only the I-th of N parts of the inputs (whole batches), e.g. from N processes or "
            "machines; then `jifr features merge OUT` assembles the store.",
            callback=_shard,
        ),
    ] = None,
) -> None:
    """Encode every image of INPUT into --out, resuming an interrupted run of the same command.

    Unreadable images stop the run before encoding starts, with the list of files and
    reasons (exit code 2), unless --skip-bad is given.
    """
    from jifr.features.encoders import EncoderUnavailableError
    from jifr.features.extract import extract_features
    from jifr.features.inputs import images_from_path
    from jifr.features.shards import Shard

    part = None if shard is None else Shard.parse(shard)
    try:
        result = extract_features(
            images_from_path(input_path),
            out,
            encoder,
            batch_size=batch_size,
            dtype="float16" if float16 else "float32",
            skip_bad=skip_bad,
            workers=workers,
            weights_path=weights_path,
            device=device,
            allow_download=allow_download,
            overwrite=overwrite,
            show_progress=progress,
            shard=part,
        )
    except (DataError, EncoderUnavailableError, FileExistsError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # an unreadable folder, a full disk
        from jifr.outputs import describe_os_error

        typer.echo(f"error: {describe_os_error(error)}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as error:
        typer.echo("interrupted: run the same command again to resume", err=True)
        raise typer.Exit(130) from error
    typer.echo(_summary(result, part, out))


def _summary(result: ExtractResult, shard: Shard | None = None, out: Path | None = None) -> str:
    text = (
        f"wrote {result.n_written} feature rows to {result.features_path} "
        f"({result.n_skipped} skipped) in {result.seconds:.1f} s: "
        f"{result.images_per_second:.1f} images/s"
    )
    if shard is not None:
        text += f"\nshard {shard.index}/{shard.count} done; once all {shard.count} are: jifr features merge {out}"
    return text


@features_app.command()
def merge(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="The --out folder the shards were extracted into.", show_default=False)
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished store in OUT.")] = False,
) -> None:
    """Assemble the shards written by `jifr features extract ... --shard I/N` into OUT's feature
    store, as one unsharded run would have written it. Every shard must be finished and from the
    same inputs and settings; the shard files are removed once the store is in place."""
    from jifr.features.shards import merge_shards

    try:
        result = merge_shards(out, overwrite=overwrite)
    except (DataError, FileExistsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # an unreadable folder, a full disk
        from jifr.outputs import describe_os_error

        typer.echo(f"error: {describe_os_error(error)}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"merged {result.n_shards} shards: {result.n_written} feature rows into {result.features_path} "
        f"({result.n_skipped} skipped)"
    )
