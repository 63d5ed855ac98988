"""The report's numbers: metric tables read from summary.json, and the paper's Table 2.

Metric cells are ``mean ± std`` over seeds exactly as ``summary.md`` prints them. Table 2 gives
each attention cell's relative improvement over AVG/AVG (``jifr_na``), computed per seed from the
run files and then averaged, beside the percentages the paper prints for its Douban dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jifr.compare import FRAME_POP, MEAN_USER, RND_ANALYTIC, _cell, paired_verdict
from jifr.evaluate import FRAME_KS, ITEM_KS
from jifr.report.comparison import Comparison

ITEM_PROTOCOLS = ("item_paper", "item_full")
FIG4_ROWS = (
    "rnd",
    RND_ANALYTIC,
    "content_cosine",
    "content_cosine_centered",
    "cdl",
    "vbpr",
    "jifr_na",
    "jifr",
    f"jifr{MEAN_USER}",
    FRAME_POP,
)
ROW_LABELS = {
    "rnd": "RND (measured)",
    RND_ANALYTIC: "RND (analytic)",
    f"jifr{MEAN_USER}": "JIFR, mean user (one frame order for everyone)",
    FRAME_POP: "frame popularity (reference: uses training frame likes, which no model sees)",
}
BASELINE = "jifr_na"  # AVG/AVG: uniform content attention, beta_1 = beta_2
# The paper's Table 2 (Douban, its only dataset): model -> (visual attention, rating attention,
# relative improvement in % of item HR@15, item NDCG@15, frame HR@3, frame NDCG@3).
PAPER_TABLE2: dict[str, tuple[str, str, tuple[float, ...] | None]] = {
    BASELINE: ("AVG", "AVG", None),
    "jifr_rating_att": ("AVG", "ATT", (2.25, 2.42, 4.20, 4.35)),
    "jifr_content_att": ("ATT", "AVG", (4.02, 4.44, 8.07, 8.62)),
    "jifr": ("ATT", "ATT", (5.49, 5.94, 9.70, 10.53)),
}
TABLE2_METRICS = (("item_paper", "HR@15"), ("item_paper", "NDCG@15"), ("keyframe", "HR@3"), ("keyframe", "NDCG@3"))


def label(row: str) -> str:
    return ROW_LABELS.get(row, row)


def item_rows(comparison: Comparison) -> list[str]:
    """The rows with item results (the models that rank items), in the comparison's order."""
    return [row for row, values in comparison.rows.items() if any(p in values for p in ITEM_PROTOCOLS)]


def frame_rows(comparison: Comparison) -> list[str]:
    """The rows of Fig. 4 that the comparison has key-frame results for, in FIG4_ROWS order."""
    return [row for row in FIG4_ROWS if "keyframe" in comparison.rows.get(row, {})]


def metric_table(comparison: Comparison, rows: list[str], columns: list[tuple[str, str]]) -> list[str]:
    """A Markdown table: one row per summary row (named by its summary.json key), ``mean ± std`` cells."""
    lines = ["| model | " + " | ".join(f"{p} {m}" for p, m in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for row in rows:
        cells = [_cell(comparison.value(row, p, m)) for p, m in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def item_columns(protocol: str, family: str) -> list[tuple[str, str]]:
    return [(protocol, f"{family}@{k}") for k in ITEM_KS]


def frame_columns(family: str) -> list[tuple[str, str]]:
    return [("keyframe", f"{family}@{k}") for k in FRAME_KS]


@dataclass(frozen=True)
class Improvement:
    """One Table 2 cell: ``model``'s relative improvement over AVG/AVG on one metric."""

    model: str
    protocol: str
    metric: str
    per_seed: list[float]  # (a - b) / b at each seed, in the comparison's seed order
    mean: float
    std: float  # sample std over seeds (ddof=1), 0 with one seed
    verdict: str  # compare.paired_verdict on the absolute per-seed differences
    paper_percent: float | None  # the paper's printed relative improvement, in %


def table2(comparison: Comparison) -> list[Improvement]:
    """Every attention cell present against ``jifr_na``; empty without ``jifr_na`` or any cell."""
    if BASELINE not in comparison.models:
        return []
    cells = [m for m in PAPER_TABLE2 if m != BASELINE and m in comparison.models]
    return [
        _improvement(comparison, m, i, p, metric)
        for m in cells
        for i, (p, metric) in enumerate(TABLE2_METRICS)
        if comparison.measured(m, p) and comparison.measured(BASELINE, p)
    ]


def table2_missing_protocols(comparison: Comparison) -> list[str]:
    """Table 2's protocols the comparison has no results for (key frames, on data without frame likes)."""
    return sorted({p for p, _ in TABLE2_METRICS if not comparison.measured(BASELINE, p)})


def _improvement(comparison: Comparison, model: str, index: int, protocol: str, metric: str) -> Improvement:
    ours, base = comparison.per_seed(model, protocol, metric), comparison.per_seed(BASELINE, protocol, metric)
    relative = (ours - base) / base
    ours_std, base_std = (comparison.value(row, protocol, metric) for row in (model, BASELINE))
    spread = max(ours_std["std"] if ours_std else 0.0, base_std["std"] if base_std else 0.0)
    paper = PAPER_TABLE2[model][2]
    return Improvement(
        model=model,
        protocol=protocol,
        metric=metric,
        per_seed=relative.tolist(),
        mean=float(relative.mean()),
        std=float(relative.std(ddof=1)) if len(relative) > 1 else 0.0,
        verdict=paired_verdict(ours - base, spread),
        paper_percent=None if paper is None else paper[index],
    )


def percent(mean: float, std: float) -> str:
    return f"{100 * mean:+.2f}% ± {100 * std:.2f}%"


def table2_markdown(improvements: list[Improvement]) -> list[str]:
    header = (
        "| visual att | rating att | model | metric | relative improvement over AVG/AVG | paper (Douban) | verdict |"
    )
    lines = [header, "|" + " --- |" * 7, f"| AVG | AVG | {BASELINE} | (all) | / | / | |"]
    for cell in improvements:
        visual, rating, _ = PAPER_TABLE2[cell.model]
        paper = "" if cell.paper_percent is None else f"{cell.paper_percent:+.2f}%"
        ours = percent(cell.mean, cell.std)
        lines.append(_row(visual, rating, cell.model, f"{cell.protocol} {cell.metric}", ours, paper, cell.verdict))
    return lines


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def protocols_coincide(comparison: Comparison) -> bool:
    """Whether item_paper and item_full give the same numbers (fewer unrated items than sampled negatives)."""
    pairs = [
        (comparison.value(row, "item_paper", m), comparison.value(row, "item_full", m))
        for row in item_rows(comparison)
        for m in (f"{f}@{k}" for f in ("HR", "NDCG") for k in ITEM_KS)
    ]
    return bool(pairs) and all(a and b and np.isclose(a["mean"], b["mean"], rtol=1e-9, atol=0) for a, b in pairs)
