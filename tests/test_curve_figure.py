"""The curve figure script: reads comparison summaries, prints the tables, draws a PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "curve_figure.py"


def summary(hr1: float) -> dict:
    def value(mean: float) -> dict:
        return {"HR@1": {"mean": mean, "std": 0.01}}

    return {
        "models": {
            "rnd_analytic": {"keyframe": value(0.17), "keyframe_exposed": value(0.36)},
            "jifr": {"keyframe": value(hr1), "keyframe_exposed": value(hr1 + 0.2)},
            "frame_pop": {"keyframe": value(0.42)},
        }
    }


def test_table_and_png_from_summaries(tmp_path: Path) -> None:
    for taste, hr1 in ((0.0, 0.19), (1.0, 0.31)):
        directory = tmp_path / f"compare-{taste:g}"
        directory.mkdir()
        (directory / "summary.json").write_text(json.dumps(summary(hr1)))
    png = tmp_path / "figure.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "dose-response", str(tmp_path), "--png", str(png)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| JIFR | 0.1900 ± 0.0100 | 0.3100 ± 0.0100 |" in done.stdout
    assert "| keyframe_exposed HR@1 | S = 0 | S = 1 |" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_no_summaries_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "feedback", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "no compare-*/summary.json" in done.stderr


def test_feedback_curve_has_item_and_key_frame_panels(tmp_path: Path) -> None:
    def value(mean: float) -> dict:
        return {"mean": mean, "std": 0.01}

    for share, hr1 in ((0.0, 0.2), (0.25, 0.4), (1.0, 0.45)):
        directory = tmp_path / f"compare-{share:g}"
        directory.mkdir()
        jifr = {"keyframe": {"HR@1": value(hr1), "NDCG@3": value(hr1 + 0.2)}, "item_full": {"NDCG@10": value(0.33)}}
        (directory / "summary.json").write_text(json.dumps({"models": {"jifr": jifr}}))
    png = tmp_path / "figure.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "feedback", str(tmp_path), "--png", str(png)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| keyframe NDCG@3 | share = 0 | share = 0.25 | share = 1 |" in done.stdout
    assert "| JIFR | 0.2000 ± 0.0100 | 0.4000 ± 0.0100 | 0.4500 ± 0.0100 |" in done.stdout
    assert "| item_full NDCG@10 |" in done.stdout
    assert png.stat().st_size > 10_000
