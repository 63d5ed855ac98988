"""Checkpoints that describe themselves: safetensors weights + a JSON file (never pickle).

<run>/model.safetensors   the weights (buffers derived from data are not stored)
<run>/checkpoint.json     model name, resolved model and training config, seed, data
                          fingerprint and directory, id mappings, history, version
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

import jifr
from jifr.data.prepared import PreparedData, load_prepared
from jifr.errors import DataError
from jifr.models import ModelInputs, Recommender, build_model
from jifr.train import History, TrainConfig

WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_NAME = "checkpoint.json"


def save_checkpoint(
    directory: str | Path,
    model: Recommender,
    data: PreparedData,
    train_config: TrainConfig | None = None,
    history: History | None = None,
    seed: int = 0,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(directory / WEIGHTS_NAME), metadata={"model": model.model_name})
    description = {
        "model": model.model_name,
        "model_config": dataclasses.asdict(model.config),
        "train_config": dataclasses.asdict(train_config) if train_config else None,
        "seed": seed,
        "data": {"fingerprint": data.fingerprint, "prepared_dir": str(data.directory.resolve())},
        "ids": {"users": data.user_ids.tolist(), "items": data.item_ids.tolist()},
        "history": history.as_dict() if history else None,
        "jifr_version": jifr.__version__,
    }
    (directory / CHECKPOINT_NAME).write_text(json.dumps(description, indent=1), encoding="utf-8")
    return directory


def read_description(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        raise DataError(directory, f"not a checkpoint directory (no {CHECKPOINT_NAME})")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def load_checkpoint(
    directory: str | Path, data: PreparedData | None = None
) -> tuple[Recommender, PreparedData, dict[str, Any]]:
    """Rebuild the model on its prepared data (found from the checkpoint unless given)."""
    description = read_description(directory)
    if data is None:
        data = load_prepared(description["data"]["prepared_dir"])
    if data.fingerprint != description["data"]["fingerprint"]:
        raise DataError(
            data.directory,
            f"data fingerprint {data.fingerprint} differs from the checkpoint's {description['data']['fingerprint']}: "
            "the model was trained on other data",
        )
    model = build_model(
        description["model"], ModelInputs.from_data(data), description["model_config"], seed=description["seed"]
    )
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_NAME)))
    model.eval()
    return model, data, description
