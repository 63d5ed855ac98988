"""Draw metric-against-setting curves from the comparisons of a sweep script.

Usage: python scripts/curve_figure.py {dose-response,feedback} OUT_DIR [--png PNG]

dose-response (scripts/dose_response.sh): key-frame HR@1 against the planted taste strength S,
  for the plain and the exposure-conditioned protocols.
feedback (scripts/feedback_curve.sh): key-frame HR@1 and NDCG@3 and item NDCG@10 against the
  share of the training split's frame feedback used.

Reads OUT_DIR/compare-<x>/summary.json for every x, prints a Markdown table per panel (mean ±
sample std over seeds) and writes a PNG with one panel per table, each with RND's analytic value
and the frame-popularity reference where they apply.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCES = ("rnd_analytic", "frame_pop")


@dataclass(frozen=True)
class Curve:
    x_label: str
    x_short: str  # in table headers: "S = 0.5"
    panels: tuple[tuple[str, str, str], ...]  # (protocol, metric, title)
    rows: dict[str, str]  # model -> label
    png: str


CURVES = {
    "dose-response": Curve(
        x_label="planted taste strength S",
        x_short="S",
        panels=(
            ("keyframe", "HR@1", "key frames among all frames of the item"),
            ("keyframe_exposed", "HR@1", "key frames among frames the user was exposed to"),
        ),
        rows={
            "rnd_analytic": "RND (analytic)",
            "content_cosine_centered": "content cosine, centred",
            "vbpr": "VBPR",
            "jifr_na": "JIFR_NA",
            "jifr": "JIFR",
            "jifr@mean_user": "JIFR, mean user",
            "frame_pop": "frame popularity (reference)",
        },
        png="docs/figures/dose-response.png",
    ),
    "feedback": Curve(
        x_label="share of the training pairs' frame feedback used",
        x_short="share",
        panels=(
            ("keyframe", "HR@1", "key frames: HR@1"),
            ("keyframe", "NDCG@3", "key frames: NDCG@3"),
            ("item_full", "NDCG@10", "items (full ranking): NDCG@10"),
        ),
        rows={
            "rnd_analytic": "RND (analytic)",
            "vbpr": "VBPR",
            "jifr_na": "JIFR_NA",
            "jifr": "JIFR",
            "frame_pop": "frame popularity (reference)",
        },
        png="docs/figures/feedback-curve.png",
    ),
}


def read_summaries(out: Path) -> dict[float, dict[str, Any]]:
    """x -> the models of OUT/compare-x/summary.json."""
    found = {}
    for path in sorted(out.glob("compare-*/summary.json")):
        x = float(path.parent.name.removeprefix("compare-"))
        found[x] = json.loads(path.read_text(encoding="utf-8"))["models"]
    if not found:
        raise SystemExit(f"{out}: no compare-*/summary.json (run the sweep script first)")
    return dict(sorted(found.items()))


def series(summaries: dict[float, dict[str, Any]], model: str, protocol: str, metric: str) -> tuple[list[float], ...]:
    """(x values, means, stds) of the metric where the model has the protocol."""
    points = [(x, m[model][protocol][metric]) for x, m in summaries.items() if protocol in m.get(model, {})]
    return [x for x, _ in points], [v["mean"] for _, v in points], [v["std"] for _, v in points]


def markdown(summaries: dict[float, dict[str, Any]], curve: Curve, protocol: str, metric: str) -> str:
    xs = list(summaries)
    lines = [
        f"| {protocol} {metric} | " + " | ".join(f"{curve.x_short} = {x:g}" for x in xs) + " |",
        "| --- |" + " --- |" * len(xs),
    ]
    for model, label in curve.rows.items():
        cells = []
        for x in xs:
            value = summaries[x].get(model, {}).get(protocol, {}).get(metric)
            cells.append(f"{value['mean']:.4f} ± {value['std']:.4f}" if value else "")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(summaries: dict[float, dict[str, Any]], curve: Curve, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curve.panels)
    figure, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), sharex=True)
    for axis, (protocol, metric, title) in zip(axes, curve.panels, strict=True):
        for colour, (model, label) in enumerate(curve.rows.items()):  # one colour per model in every panel
            x, mean, std = series(summaries, model, protocol, metric)
            if x:
                style = "--" if model in REFERENCES else "-"
                options = {"label": label, "linestyle": style, "marker": "o", "capsize": 3, "color": f"C{colour}"}
                axis.errorbar(x, mean, yerr=std, **options)
        axis.set_title(title)
        axis.set_xlabel(curve.x_label)
        axis.set_ylabel(f"{metric} (mean ± std over seeds)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curve", choices=sorted(CURVES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--png", type=Path, help="default: the curve's figure under docs/figures/")
    args = parser.parse_args()
    curve = CURVES[args.curve]
    summaries = read_summaries(args.out)
    for protocol, metric, _ in curve.panels:
        print(markdown(summaries, curve, protocol, metric), end="\n\n")
    png = args.png or Path(curve.png)
    draw(summaries, curve, png)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
