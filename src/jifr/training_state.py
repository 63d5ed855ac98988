"""Training state saved after every epoch, so that an interrupted run continues where it stopped.

<state_dir>/tensors-<epoch>.safetensors  model weights, best weights, optimizer tensors, torch RNG state
<state_dir>/state.json                   the rest: the run's identity (model, model config, training
                                         config, data fingerprint), completed epochs, history,
                                         early-stopping state, NumPy RNG state, optimizer settings,
                                         and the name and SHA-256 of its tensor file

Each file is written to a temporary name and renamed into place. The JSON comes last and names
the tensor file of its own epoch; older tensor files are removed only after it is in place, so a
crash at any moment leaves a complete pair for the last finished epoch. A JSON whose tensor file
is missing or has another checksum (a torn pair: copied, edited or damaged) is reported, never
used. No pickle anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from jifr.errors import DataError
from jifr.outputs import atomic_path, sha256_file, write_json_atomic

STATE_DIR_NAME = "training-state"  # inside a run directory
STATE_NAME = "state.json"
FORMAT_VERSION = 1
_TENSOR_GLOB = "tensors-*.safetensors"
_TEMPORARY_GLOBS = (f".{_TENSOR_GLOB}.*.tmp", f".{STATE_NAME}.*.tmp")  # left by writers that were killed


@dataclass
class TrainingState:
    """Everything needed to continue training after ``epoch`` completed epochs."""

    identity: dict[str, Any]  # model, model_config, train_config, data_fingerprint
    epoch: int  # completed epochs
    finished: bool  # the last epoch ran or early stopping ended training
    model: dict[str, Tensor]  # current weights (state_dict)
    best_model: dict[str, Tensor]  # weights of the best validation epoch
    optimizer: dict[str, Any]  # torch optimizer state_dict: {"state": {index: {name: Tensor}}, "param_groups": [...]}
    numpy_rng: dict[str, Any]  # np.random.Generator.bit_generator.state of the sampler
    torch_rng: Tensor  # (n,) uint8, torch.get_rng_state()
    history: dict[str, Any]  # History.as_dict(); "seconds" is the training time so far
    stale: int  # validations without improvement


def save_training_state(directory: str | Path, state: TrainingState) -> Path:
    """Write ``state`` into ``directory``: the tensor file first, then the JSON that names it."""
    directory = Path(directory)
    name = f"tensors-{state.epoch:05d}.safetensors"
    with atomic_path(directory / name) as temporary:
        save_file(_flat_tensors(state), str(temporary))
        checksum = sha256_file(temporary)
    description = {
        "format": FORMAT_VERSION,
        "identity": state.identity,
        "epoch": state.epoch,
        "finished": state.finished,
        "history": state.history,
        "stale": state.stale,
        "numpy_rng": state.numpy_rng,
        "optimizer": _optimizer_json(state.optimizer),
        "tensors": {"file": name, "sha256": checksum},
    }
    write_json_atomic(directory / STATE_NAME, description, indent=1)
    # Only now is the previous pair superseded.
    for old in _tensor_and_temporary_files(directory):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory


def load_training_state(directory: str | Path, identity: dict[str, Any]) -> TrainingState | None:
    """The state saved in ``directory`` (None when there is none), checked against ``identity``
    (the run being resumed) and against the checksum of its tensor file."""
    directory = Path(directory)
    path = directory / STATE_NAME
    if not path.exists():
        return None
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(path, f"unreadable training state ({error}); start over with --force") from None
    if description.get("format") != FORMAT_VERSION:
        raise DataError(path, f"training state format {description.get('format')!r} is not {FORMAT_VERSION}")
    check_same_run(description["identity"], identity, directory)
    tensors = _verified_tensors(directory, description["tensors"])
    return _state_from(description, tensors)


def has_training_state(directory: str | Path) -> bool:
    return (Path(directory) / STATE_NAME).exists()


def remove_training_state(directory: str | Path) -> None:
    """Remove the state files in ``directory`` (JSON first, so no half state is ever seen),
    and the directory when that leaves it empty. Other files are never touched."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    (directory / STATE_NAME).unlink(missing_ok=True)
    for path in _tensor_and_temporary_files(directory):
        path.unlink(missing_ok=True)
    if not any(directory.iterdir()):
        directory.rmdir()


def _tensor_and_temporary_files(directory: Path) -> list[Path]:
    return [path for pattern in (_TENSOR_GLOB, *_TEMPORARY_GLOBS) for path in directory.glob(pattern)]


def check_same_run(saved: dict[str, Any], requested: dict[str, Any], where: str | Path) -> None:
    """Raise ValueError naming every setting in which ``requested`` differs from ``saved``."""
    differences = _differences(saved, json.loads(json.dumps(requested)))  # compare as JSON would store it
    if differences:
        raise ValueError(
            f"cannot resume the run in {where}: it was started with other settings ({'; '.join(differences)}); "
            "resume with the same settings, or start over with --force"
        )


def identity_of_checkpoint(description: dict[str, Any]) -> dict[str, Any]:
    """The identity (as in a training state) of a finished run, from its checkpoint description."""
    return {
        "model": description["model"],
        "model_config": description["model_config"],
        "train_config": description["train_config"],
        "data_fingerprint": description["data"]["fingerprint"],
    }


def _differences(saved: dict[str, Any], requested: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key in sorted(set(saved) | set(requested)):
        old, new = saved.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            shown = [repr(side[key]) if key in side else "unset (its default)" for side in (saved, requested)]
            out.append(f"{prefix}{key} was {shown[0]}, now {shown[1]}")
    return out


def _flat_tensors(state: TrainingState) -> dict[str, Tensor]:
    """One flat name -> tensor mapping; cloned, as safetensors refuses tensors sharing memory
    (the best weights may be the current ones)."""
    tensors = {f"model.{name}": value for name, value in state.model.items()}
    tensors |= {f"best.{name}": value for name, value in state.best_model.items()}
    for index, values in state.optimizer["state"].items():
        tensors |= {f"optimizer.{index}.{name}": v for name, v in values.items() if isinstance(v, Tensor)}
    tensors["torch_rng"] = state.torch_rng
    return {name: value.detach().cpu().clone().contiguous() for name, value in tensors.items()}


def _optimizer_json(optimizer: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's settings and any non-tensor per-parameter state (Adam has none)."""
    other = {
        str(index): {name: v for name, v in values.items() if not isinstance(v, Tensor)}
        for index, values in optimizer["state"].items()
    }
    return {"param_groups": optimizer["param_groups"], "other_state": other}


def _verified_tensors(directory: Path, record: dict[str, str]) -> dict[str, Tensor]:
    path = directory / record["file"]
    if not path.exists():
        raise DataError(
            path, f"missing: {STATE_NAME} names it; the training state is incomplete (start over with --force)"
        )
    checksum = sha256_file(path)
    if checksum != record["sha256"]:
        raise DataError(
            path,
            f"torn training state: SHA-256 {checksum[:12]}... differs from {record['sha256'][:12]}... recorded in "
            f"{STATE_NAME}, so the two files were not written together; start over with --force",
        )
    return load_file(str(path))


def _state_from(description: dict[str, Any], tensors: dict[str, Tensor]) -> TrainingState:
    groups: dict[str, dict[str, Any]] = {"model": {}, "best": {}}
    optimizer_state: dict[int, dict[str, Any]] = {
        int(index): dict(values) for index, values in description["optimizer"]["other_state"].items()
    }
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "optimizer":
            index, _, name = rest.partition(".")
            optimizer_state.setdefault(int(index), {})[name] = value
        elif kind in groups:
            groups[kind][rest] = value
    return TrainingState(
        identity=description["identity"],
        epoch=description["epoch"],
        finished=description["finished"],
        model=groups["model"],
        best_model=groups["best"],
        optimizer={"state": optimizer_state, "param_groups": _param_groups(description)},
        numpy_rng=description["numpy_rng"],
        torch_rng=tensors["torch_rng"],
        history=description["history"],
        stale=description["stale"],
    )


def _param_groups(description: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter groups as the optimizer wrote them: JSON turned tuples (Adam's betas) into lists."""
    return [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in description["optimizer"]["param_groups"]
    ]
