"""Print the tuning sweeps (``jifr compare --part valid`` runs, one folder per setting) as one
Markdown table: validation NDCG@10 and key-frame HR@1 of JIFR_NA and JIFR, and their paired gap."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(row: dict, protocol: str, metric: str) -> str:
    value = row.get(protocol, {}).get(metric)
    return f"{value['mean']:.4f} ± {value['std']:.4f}" if value else ""


def main(root: Path) -> None:
    print(
        "| setting (valid split, seeds 0-2) | JIFR_NA NDCG@10 | JIFR NDCG@10 | JIFR_NA key-frame HR@1 | "
        "JIFR key-frame HR@1 | JIFR − JIFR_NA HR@1 | JIFR best epochs |"
    )
    print("|" + " --- |" * 7)
    for summary_path in sorted(
        root.glob("*/summary.json"), key=lambda p: (p.parent.name != "defaults", p.stat().st_mtime)
    ):
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        models = summary["models"]
        na, full = models["jifr_na"], models["jifr"]
        gap = next(p for p in summary["pairs"] if (p["a"], p["b"]) == ("jifr", "jifr_na"))["metrics"]["keyframe HR@1"]
        cells = [
            summary_path.parent.name,
            cell(na, "item_full", "NDCG@10"),
            cell(full, "item_full", "NDCG@10"),
            cell(na, "keyframe", "HR@1"),
            cell(full, "keyframe", "HR@1"),
            f"{gap['mean']:+.4f} ± {gap['std']:.4f} ({gap['verdict']})",
            ", ".join(str(e) for e in full["best_epochs"]),
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/real/tune"))
