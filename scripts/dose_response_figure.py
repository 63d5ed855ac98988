"""Draw key-frame HR@1 against planted taste strength from the comparisons of dose_response.sh.

Usage: python scripts/dose_response_figure.py OUT_DIR [--png docs/figures/dose-response.png]

Reads OUT_DIR/compare-<S>/summary.json for every S, prints a Markdown table (mean ± sample std
over seeds) and writes a two-panel PNG: the plain key-frame protocol and the exposure-conditioned
one, each with RND's analytic value and the frame-popularity reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROWS = {
    "rnd_analytic": "RND (analytic)",
    "content_cosine_centered": "content cosine, centred",
    "vbpr": "VBPR",
    "jifr_na": "JIFR_NA",
    "jifr": "JIFR",
    "jifr@mean_user": "JIFR, mean user",
    "frame_pop": "frame popularity (reference)",
}
PROTOCOLS = {"keyframe": "all frames of the item", "keyframe_exposed": "frames the user was exposed to"}


def read_summaries(out: Path) -> dict[float, dict[str, Any]]:
    """Strength S -> the models of OUT/compare-S/summary.json."""
    found = {}
    for path in sorted(out.glob("compare-*/summary.json")):
        taste = float(path.parent.name.removeprefix("compare-"))
        found[taste] = json.loads(path.read_text(encoding="utf-8"))["models"]
    if not found:
        raise SystemExit(f"{out}: no compare-*/summary.json (run scripts/dose_response.sh first)")
    return dict(sorted(found.items()))


def series(summaries: dict[float, dict[str, Any]], model: str, protocol: str) -> tuple[list[float], ...]:
    """(strengths, means, stds) of HR@1 where the model has the protocol."""
    points = [(s, m[model][protocol]["HR@1"]) for s, m in summaries.items() if protocol in m.get(model, {})]
    return [s for s, _ in points], [v["mean"] for _, v in points], [v["std"] for _, v in points]


def markdown(summaries: dict[float, dict[str, Any]], protocol: str) -> str:
    strengths = list(summaries)
    lines = [
        f"| {protocol} HR@1 | " + " | ".join(f"S = {s:g}" for s in strengths) + " |",
        "| --- |" + " --- |" * len(strengths),
    ]
    for model, label in ROWS.items():
        cells = []
        for s in strengths:
            value = summaries[s].get(model, {}).get(protocol, {}).get("HR@1")
            cells.append(f"{value['mean']:.4f} ± {value['std']:.4f}" if value else "")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(summaries: dict[float, dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axis, (protocol, title) in zip(axes, PROTOCOLS.items(), strict=True):
        for colour, (model, label) in enumerate(ROWS.items()):  # one colour per model in both panels
            x, mean, std = series(summaries, model, protocol)
            if x:
                style = "--" if model in ("rnd_analytic", "frame_pop") else "-"
                options = {"label": label, "linestyle": style, "marker": "o", "capsize": 3, "color": f"C{colour}"}
                axis.errorbar(x, mean, yerr=std, **options)
        axis.set_title(f"key frames among {title}")
        axis.set_xlabel("planted taste strength S")
        axis.set_ylabel("HR@1 (mean ± std over seeds)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--png", type=Path, default=Path("docs/figures/dose-response.png"))
    args = parser.parse_args()
    summaries = read_summaries(args.out)
    for protocol in PROTOCOLS:
        print(markdown(summaries, protocol), end="\n\n")
    draw(summaries, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
