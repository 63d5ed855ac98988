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


def provenance(data_fingerprint: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "jifr_version": jifr.__version__,
        "torch_version": torch.__version__,
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
    body = context | {"results": {r.protocol: r.as_dict() for r in results}}
    json_path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "protocol", "metric", "mean", "std", "n_queries", "seed", "data_fingerprint", "jifr_version"]
        )
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
