"""Fig. 3 (items) and Fig. 4 (key frames) of the paper, drawn from summary.json.

Each point is the mean over seeds and its error bar the sample std over seeds (ddof=1), the same
numbers as summary.md. A row keeps its colour in both figures; references and the mean user are
also told apart by line style: RND's analytic value dotted, frame popularity dashed with squares,
a model's mean user dash-dotted with triangles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jifr.compare import FRAME_POP, MEAN_USER, RND_ANALYTIC
from jifr.evaluate import FRAME_KS, ITEM_KS
from jifr.report.comparison import Comparison
from jifr.report.tables import ITEM_PROTOCOLS, frame_rows, item_rows, label

PROTOCOL_TITLES = {
    "item_paper": "item_paper (sampled negatives)",
    "item_full": "item_full (all unseen items)",
    "keyframe": "key frames (all frames of the item)",
}
DPI = 110
FIXED_COLOURS = {  # row -> tab10 index; other rows take tab20's light colours in turn
    "jifr": 3,
    "jifr_na": 0,
    "jifr_content_att": 9,
    "jifr_rating_att": 4,
    "vbpr": 2,
    "bpr": 5,
    "content_cosine": 8,
    "content_cosine_centered": 6,
    "pop": 7,
    FRAME_POP: 1,
}
MEAN_USER_COLOUR = "#8c510a"  # brown: it often lies on top of its model's curve, so not the model's colour


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("jifr report draws with matplotlib: pip install matplotlib (or jifr[dev])") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matplotlib_version() -> str:
    """The version of matplotlib; a clear error, before anything is written, when it is missing."""
    pyplot()
    import matplotlib

    return str(matplotlib.__version__)


def colours(comparison: Comparison) -> dict[str, Any]:
    """One colour per summary row, the same in every figure."""
    plt = pyplot()
    palette, light = plt.get_cmap("tab10").colors, plt.get_cmap("tab20").colors[1::2]
    out: dict[str, Any] = {"rnd": "black", RND_ANALYTIC: "black"}
    for row in comparison.rows:
        base = row.removesuffix(MEAN_USER)
        if base not in out:
            out[base] = palette[FIXED_COLOURS[base]] if base in FIXED_COLOURS else light[len(out) % len(light)]
        out[row] = MEAN_USER_COLOUR if row.endswith(MEAN_USER) else out[base]
    return out


def _style(row: str) -> dict[str, Any]:
    if row == FRAME_POP:
        return {"linestyle": "--", "marker": "s", "linewidth": 2.0}
    if row == RND_ANALYTIC:
        return {"linestyle": ":", "marker": "x"}
    if row.endswith(MEAN_USER):
        return {"linestyle": "-.", "marker": "^"}
    return {"linestyle": "-", "marker": "o"}


def _curve(
    axis: Any, comparison: Comparison, row: str, colour: Any, protocol: str, family: str, ks: tuple[int, ...]
) -> None:
    shown = [(k, v) for k in ks if (v := comparison.value(row, protocol, f"{family}@{k}"))]
    if not shown:
        return
    x, values = zip(*shown, strict=True)
    options = {"label": label(row), "capsize": 3, "color": colour, "markersize": 5} | _style(row)
    axis.errorbar(x, [v["mean"] for v in values], yerr=[v["std"] for v in values], **options)


def _finish(axis: Any, title: str, family: str, ks: tuple[int, ...]) -> None:
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("K")
    axis.set_xticks(list(ks))
    axis.set_ylabel(f"{family}@K (mean ± std over seeds)")
    axis.grid(alpha=0.3)


def draw_items(comparison: Comparison, png: Path) -> list[str]:
    """Fig. 3: HR@K and NDCG@K of every item model, one panel per protocol and metric; returns the rows drawn."""
    plt = pyplot()
    rows, palette = item_rows(comparison), colours(comparison)
    protocols = [p for p in ITEM_PROTOCOLS if any(p in comparison.rows[r] for r in rows)]
    figure, axes = plt.subplots(len(protocols), 2, figsize=(11, 4 * len(protocols) + 0.8), squeeze=False)
    for line, protocol in zip(axes, protocols, strict=True):
        for axis, family in zip(line, ("HR", "NDCG"), strict=True):
            for row in rows:
                _curve(axis, comparison, row, palette[row], protocol, family, ITEM_KS)
            _finish(axis, f"items, {PROTOCOL_TITLES[protocol]}: {family}@K", family, ITEM_KS)
    _save(plt, figure, axes[0][0], png)
    return rows


def draw_frames(comparison: Comparison, png: Path) -> list[str]:
    """Fig. 4: key-frame HR@K and NDCG@K of the FIG4_ROWS present; returns the rows drawn."""
    plt = pyplot()
    rows, palette = frame_rows(comparison), colours(comparison)
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    for axis, family in zip(axes, ("HR", "NDCG"), strict=True):
        for row in rows:
            _curve(axis, comparison, row, palette[row], "keyframe", family, FRAME_KS)
        _finish(axis, f"{PROTOCOL_TITLES['keyframe']}: {family}@K", family, FRAME_KS)
    _save(plt, figure, axes[0], png)
    return rows


def _save(plt: Any, figure: Any, first: Any, png: Path) -> None:
    """One legend for all panels, below them, so that it hides no curve."""
    handles, labels = first.get_legend_handles_labels()
    n_lines = -(-len(labels) // 3)
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.045 * n_lines / figure.get_size_inches()[1] * 5, 1, 1))
    figure.savefig(png, dpi=DPI)
    plt.close(figure)
