"""Results files: JSON (everything) and CSV (one row per protocol x metric), each recording the
config, seed, data fingerprint and package version."""

from __future__ import annotations

import csv
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import jifr
from jifr.evaluate import ProtocolResult
from jifr.models.frames import frame_product
from jifr.outputs import MARKER_NAME, OutputError, atomic_open

CSV_HEADER = ["model", "protocol", "metric", "mean", "std", "n_queries", "seed", "data_fingerprint", "jifr_version"]


def provenance(data_fingerprint: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """What a results file records of how it was made. ``frame_product`` is the float32 product
    of the frames' projections on the CPU (``JIFR_FRAME_PRODUCT``: JIFR's content attention, ACF,
    CDL), whose order of sums the trained weights' last bits depend on."""
    return {
        "jifr_version": jifr.__version__,
        "torch_version": torch.__version__,
        "frame_product": frame_product(),
        "python": platform.python_version(),
        "data_fingerprint": data_fingerprint,
        "seed": seed,
        "config": config,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(prefix: str | Path, results: list[ProtocolResult], context: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``prefix.json`` and ``prefix.csv``; returns both paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = prefix.with_suffix(".json"), prefix.with_suffix(".csv")
    for path in (json_path, csv_path):
        _check_replaceable(path)
    body = context | {"results": {r.protocol: r.as_dict() for r in results}}
    with atomic_open(json_path) as f:
        f.write(json.dumps(body, indent=2))
    with atomic_open(csv_path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for r in results:
            for name, value in r.metrics.items():
                std = r.std.get(name, "")
                writer.writerow(
                    [
                        context.get("model", ""),
                        r.protocol,
                        name,
                        f"{value:.6f}",
                        std if std == "" else f"{std:.6f}",
                        r.n_queries,
                        context["seed"],
                        context["data_fingerprint"],
                        context["jifr_version"],
                    ]
                )
    return json_path, csv_path


def _check_replaceable(path: Path) -> None:
    """A results file may replace a jifr results file, or any file inside a jifr output directory;
    anything else already at ``path`` is refused."""
    if not path.exists():
        return
    if not path.is_file():
        raise OutputError(path, "exists and is not a file; refusing to replace it")
    if any((parent / MARKER_NAME).is_file() for parent in path.resolve().parents):
        return
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(4096)
    except (OSError, UnicodeDecodeError):
        head = ""
    if path.suffix == ".csv" and head.startswith(",".join(CSV_HEADER)):
        return
    if path.suffix == ".json" and '"jifr_version"' in head and '"results"' in path.read_text(encoding="utf-8"):
        return
    raise OutputError(path, "exists and is not a jifr results file; refusing to overwrite it (choose another --out)")
