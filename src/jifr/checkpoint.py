"""Checkpoints that describe and verify themselves: safetensors weights + a JSON file (never pickle).

<run>/model.safetensors   the weights (buffers derived from data are not stored)
<run>/checkpoint.json     model name, resolved model and training config, seed, data
                          fingerprint and directory, id mappings, history, version, and the
                          weights' SHA-256 and tensor shapes
<run>/data/               (``jifr train``) the run's own copy of its prepared dataset, hard-linked
                          where possible: the run is served and evaluated from it, so it can be
                          moved without the prepared directory; recorded relative to the run

Both files are written atomically, the weights first (after the data copy): the JSON is the
commit record, and its checksum ties it to exactly one weights file, so a crash between the two
writes is detected on load instead of pairing a description with other weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import jifr
from jifr.data.prepared import META_NAME, PreparedData, load_prepared
from jifr.data.prepared_copy import copy_prepared
from jifr.errors import DataError
from jifr.models import ModelInputs, Recommender, build_model
from jifr.models.frames import frame_product
from jifr.outputs import atomic_path, sha256_file, write_json_atomic
from jifr.train import History, TrainConfig

WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_NAME = "checkpoint.json"
CHECKPOINT_FORMAT = 2
DATA_DIR_NAME = "data"  # the run's copy of its prepared dataset

log = logging.getLogger(__name__)


def save_checkpoint(
    directory: str | Path,
    model: Recommender,
    data: PreparedData,
    train_config: TrainConfig | None = None,
    history: History | None = None,
    seed: int = 0,
    copy_data: bool = False,
) -> Path:
    """Write the weights and the description; ``copy_data`` also places the prepared dataset in
    ``directory/data`` (hard-linked where possible) so that the run stands alone."""
    directory = Path(directory)
    data_record = {"fingerprint": data.fingerprint, "prepared_dir": str(data.directory.resolve())}
    if copy_data:
        copy_prepared(data.directory, directory / DATA_DIR_NAME)
        data_record["directory"] = DATA_DIR_NAME
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as temporary:
        save_file(weights, str(temporary), metadata={"model": model.model_name})
        checksum = sha256_file(temporary)
    description = {
        "format": CHECKPOINT_FORMAT,
        "model": model.model_name,
        "model_config": dataclasses.asdict(model.config),
        "train_config": train_config.record() if train_config else None,
        "seed": seed,
        "data": data_record,
        "weights": {"sha256": checksum, "shapes": {k: list(v.shape) for k, v in weights.items()}},
        "ids": {"users": data.user_ids.tolist(), "items": data.item_ids.tolist()},
        "history": history.as_dict() if history else None,
        "jifr_version": jifr.__version__,
        "torch_version": torch.__version__,
        "frame_product": frame_product(),  # the weights' last bits depend on it (jifr.models.frames)
    }
    write_json_atomic(directory / CHECKPOINT_NAME, description, indent=1)
    return directory


def read_description(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON record; a missing, truncated or malformed one is a DataError."""
    path = Path(directory) / CHECKPOINT_NAME
    if not Path(directory).is_dir():
        raise DataError(directory, "is not a run directory (from `jifr train`)")
    if not path.is_file():
        raise DataError(directory, f"not a checkpoint directory (no {CHECKPOINT_NAME}; was training finished?)")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"damaged checkpoint description (truncated or not JSON: {exc})") from None
    required = ("model", "model_config", "seed", "data", "weights")
    missing = [k for k in required if not isinstance(description, dict) or k not in description]
    if missing:
        raise DataError(path, f"damaged or outdated checkpoint description: missing {', '.join(missing)}")
    return dict(description)


def verify_weights(directory: str | Path, description: dict[str, Any]) -> Path:
    """Check the weights file against the checksum, model and shapes its description records."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise DataError(path, "the weights file is missing")
    expected = description["weights"]
    if sha256_file(path) != expected["sha256"]:
        raise DataError(
            path,
            f"damaged weights: the SHA-256 differs from the one {CHECKPOINT_NAME} records "
            "(truncated, modified, or replaced by another run's weights)",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            model = (handle.metadata() or {}).get("model")
            shapes = {k: list(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise DataError(path, f"not a readable .safetensors file: {exc}") from None
    if model != description["model"] or shapes != expected["shapes"]:
        raise DataError(
            path, f"weights of another model: expected {description['model']} with the recorded tensor shapes"
        )
    return path


def prepared_directory(directory: str | Path, description: dict[str, Any]) -> Path:
    """Where a run's prepared data is: its own copy (``RUN/data``) when it has one, else the
    prepared directory it was trained from (runs written before runs held their data)."""
    record = description["data"]
    relative = record.get("directory")
    original = Path(record["prepared_dir"])
    if relative is None:
        return original
    if not isinstance(relative, str) or Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise DataError(Path(directory) / CHECKPOINT_NAME, f"damaged description: data directory {relative!r}")
    own = Path(directory) / relative
    if (own / META_NAME).is_file():
        return own
    if (original / META_NAME).is_file():
        log.warning("%s: the run's copy of its prepared data is missing; using %s", own, original)
        return original
    raise DataError(own, f"the run's prepared data is missing (and so is {original}); train the run again")


def load_checkpoint(
    directory: str | Path, data: PreparedData | None = None, device: torch.device | None = None
) -> tuple[Recommender, PreparedData, dict[str, Any]]:
    """Rebuild the model on its prepared data (found from the checkpoint unless given), on
    ``device`` (default: the CPU)."""
    description = read_description(directory)
    weights_path = verify_weights(directory, description)
    if data is None:
        data = load_prepared(prepared_directory(directory, description))
    if data.fingerprint != description["data"]["fingerprint"]:
        raise DataError(
            data.directory,
            f"data fingerprint {data.fingerprint} differs from the checkpoint's {description['data']['fingerprint']}: "
            "the model was trained on other data",
        )
    model = build_model(
        description["model"], ModelInputs.from_data(data), description["model_config"], seed=description["seed"]
    )
    weights = load_file(str(weights_path))
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    if {k: list(v.shape) for k, v in weights.items()} != expected:
        raise DataError(weights_path, f"the weights do not fit a {description['model']} model on this data")
    model.load_state_dict(weights)
    if device is not None:
        model.place(device)
    model.eval()
    return model, data, description
