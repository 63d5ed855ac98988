"""Print the tuning sweeps (``jifr compare --part valid`` runs, one folder per setting) as one
Markdown table: validation NDCG@10 and key-frame HR@1 of JIFR_NA and JIFR, and their paired gap.

With ``--attention``, print the sweep of JIFR's attention L2 (folders ``w0-A-att-B``: A on W0,
B on W1, w1, W2, w2) instead: JIFR's validation metrics next to its attention diagnostics.

Usage: python scripts/tuning_table.py [--attention] [ROOT]
"""

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


def number(row: dict, protocol: str, metric: str, digits: int = 3) -> str:
    value = row[protocol][metric]
    return f"{value['mean']:.{digits}g} ± {value['std']:.{digits}g}"


def attention_table(root: Path) -> None:
    print(
        "| W0 L2 | attention L2 | NDCG@10 | key-frame HR@1 | key-frame NDCG@3 | exposed HR@1 | "
        "alpha entropy / uniform | alpha logit spread | largest alpha | beta_visual std | best epochs |"
    )
    print("|" + " --- |" * 11)
    folders = sorted(root.glob("w0-*-att-*/summary.json"), key=lambda p: _l2_values(p.parent.name))
    for summary_path in folders:
        jifr = json.loads(summary_path.read_text(encoding="utf-8"))["models"]["jifr"]
        w0, attention = _l2_values(summary_path.parent.name)
        cells = [
            f"{w0:g}",
            f"{attention:g}",
            cell(jifr, "item_full", "NDCG@10"),
            cell(jifr, "keyframe", "HR@1"),
            cell(jifr, "keyframe", "NDCG@3"),
            cell(jifr, "keyframe_exposed", "HR@1"),
            number(jifr, "attention", "alpha_entropy_ratio"),
            number(jifr, "attention", "alpha_logit_spread"),
            number(jifr, "attention", "alpha_max"),
            number(jifr, "attention", "beta_visual_std"),
            ", ".join(str(e) for e in jifr["best_epochs"]),
        ]
        print("| " + " | ".join(cells) + " |")


def _l2_values(name: str) -> tuple[float, float]:
    _, w0, _, attention = name.split("-", 3)
    return float(w0), float(attention)


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--attention"]
    if "--attention" in sys.argv[1:]:
        attention_table(Path(arguments[0] if arguments else "runs/real/tune-attention"))
    else:
        main(Path(arguments[0] if arguments else "runs/real/tune"))
