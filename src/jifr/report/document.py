"""report.md: the figures, their tables, how to reproduce them, and where the numbers come from."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import jifr
from jifr.compare import FRAME_POP, MEAN_USER, RND_ANALYTIC
from jifr.data.prepared import PreparedData
from jifr.report.case_study import MIN_FRAMES, CaseStudy
from jifr.report.comparison import Comparison, compare_command
from jifr.report.tables import (
    Improvement,
    frame_columns,
    frame_rows,
    item_columns,
    item_rows,
    metric_table,
    protocols_coincide,
    table2_markdown,
    table2_missing_protocols,
)

FIG3, FIG4, FIG5 = "fig3-items.png", "fig4-keyframes.png", "fig5-case-study.png"


@dataclass
class Contents:
    """What the report holds; a figure is None when it was skipped, with the reason in ``skipped``."""

    comparison: Comparison
    out: Path
    figures: dict[str, str | None]
    skipped: dict[str, str] = field(default_factory=dict)
    table2: list[Improvement] = field(default_factory=list)
    case: CaseStudy | None = None
    case_data: PreparedData | None = None
    versions: dict[str, str] = field(default_factory=dict)  # of this report's own run


def markdown(contents: Contents) -> str:
    c = contents.comparison
    seeds = ", ".join(str(s) for s in c.seeds)
    lines = [
        f"# Report on {c.directory.name}",
        "",
        f"Made by `jifr report` from the finished comparison `{c.directory}` (its results only; nothing is "
        f"trained). {c.summary['part']} split; every number is the mean ± sample standard deviation (ddof=1) "
        f"over seeds {seeds}, read from its summary.json (so it matches summary.md).",
        "",
    ]
    for section in (_reproduce, _fig3, _fig4, _table2, _fig5, _provenance):
        lines += section(contents) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _reproduce(contents: Contents) -> list[str]:
    command, unset = compare_command(contents.comparison)
    report = shlex.join(["jifr", "report", str(contents.comparison.directory), "--out", str(contents.out)])
    lines = ["## Reproduce", "", "```bash", command, report, "```"]
    if unset:
        lines += ["", f"No `jifr compare` option sets these recorded values (use the Python API): {', '.join(unset)}."]
    return lines


def _figure(contents: Contents, key: str, title: str) -> list[str]:
    name = contents.figures.get(key)
    if name is None:
        return [f"{title}: skipped, {contents.skipped[key]}."]
    return [f"![{title}]({name})"]


def _fig3(contents: Contents) -> list[str]:
    c = contents.comparison
    lines = ["## Fig. 3: item recommendation", ""] + _figure(contents, FIG3, "Fig. 3")
    if contents.figures.get(FIG3) is None:
        return lines
    item_paper = c.runs[c.models[0]][c.seeds[0]]["config"]["item_paper"]
    lines += [
        "",
        f"item_paper: each user's test items among {item_paper['n_negatives']:,} sampled unrated items, "
        f"{item_paper['repeats']} repeats per seed (the paper's protocol); item_full: among every item the user "
        "has not rated in training or validation.",
    ]
    if protocols_coincide(c):
        lines += ["On this dataset the two protocols give the same numbers (fewer unrated items than negatives)."]
    for protocol in ("item_paper", "item_full"):
        for family in ("HR", "NDCG"):
            rows = [r for r in item_rows(c) if protocol in c.rows[r]]
            if rows:
                lines += ["", *metric_table(c, rows, item_columns(protocol, family))]
    return lines


def _fig4(contents: Contents) -> list[str]:
    c = contents.comparison
    lines = ["## Fig. 4: key-frame recommendation", ""] + _figure(contents, FIG4, "Fig. 4")
    if contents.figures.get(FIG4) is None:
        return lines
    lines += [
        "",
        "Every frame of a held-out item the user has frame likes for is ranked. "
        f"`{RND_ANALYTIC}` is RND's expected value on each seed's split (dotted), `rnd` the measured random order; "
        f"`jifr{MEAN_USER}` is JIFR's frame scores averaged over users, one frame order for everyone; "
        f"`{FRAME_POP}` (dashed, squares) ranks frames by their likes in the training split, which no model sees: "
        "a reference for how much of a key frame is shared taste, not a competitor.",
    ]
    for family in ("HR", "NDCG"):
        lines += ["", *metric_table(c, frame_rows(c), frame_columns(family))]
    return lines


def _table2(contents: Contents) -> list[str]:
    lines = ["## Table 2: what attention adds over AVG/AVG", ""]
    if not contents.table2:
        return lines + [f"Skipped: {contents.skipped.get('table2', 'no attention cell')}."]
    seeds = len(contents.comparison.seeds)
    return lines + [
        "Relative improvement of each attention cell over AVG/AVG (`jifr_na`: uniform content attention, "
        "beta_1 = beta_2) at item HR@15 / NDCG@15 (item_paper, as in the paper) and frame HR@3 / NDCG@3: "
        f"(cell − jifr_na) / jifr_na at each of the {seeds} seeds (paired: same split), then mean ± std over seeds. "
        "The paper's column is its printed Table 2, for its only dataset (Douban). The verdict is `jifr compare`'s "
        "paired rule on the absolute per-seed differences: clear only when every seed agrees in sign and the mean "
        "difference exceeds the larger seed std of the two models.",
        *_table2_missing(contents.comparison),
        "",
        *table2_markdown(contents.table2),
    ]


def _table2_missing(comparison: Comparison) -> list[str]:
    missing = table2_missing_protocols(comparison)
    if not missing:
        return []
    return [f"The frame columns are left out: the comparison has no {', '.join(missing)} results (no frame likes)."]


def _fig5(contents: Contents) -> list[str]:
    lines = ["## Fig. 5: case study", ""] + _figure(contents, FIG5, "Fig. 5")
    case, data = contents.case, contents.case_data
    if case is None or data is None:
        return lines
    frames = data.frame_table()["frame_id"]

    def order(ranking: np.ndarray, scores: np.ndarray) -> str:
        return ", ".join(
            f"{frames[case.frames[k]]}{' (liked)' if case.liked[k] else ''} {scores[k]:.3f}" for k in ranking
        )

    return lines + [
        "",
        f"Chosen by rule, not by hand: among the {case.n_candidates} held-out (user, item) pairs with frame likes "
        f"whose item has at least {MIN_FRAMES} frames, not all liked, the pair whose frame order under seed "
        f"{case.seed}'s `jifr` checkpoint differs most from the mean-user order of the same checkpoint (most "
        "discordant frame pairs), ties to the lowest (user, item) index.",
        f"User `{data.user_ids[case.user]}`, item `{data.item_ids[case.item]}`: {case.discordant} of "
        f"{len(case.frames) * (len(case.frames) - 1) // 2} frame pairs in the opposite order.",
        f"- JIFR: {order(case.jifr_order(), case.jifr_scores)}",
        f"- mean user ({case.n_mean_users} users): {order(case.mean_user_order(), case.mean_user_scores)}",
        f"Over all {case.n_candidates} candidates, the two orders differ in {case.n_order_differs} and put a different "
        f"frame first in {case.n_top_differs}.",
    ]


def _provenance(contents: Contents) -> list[str]:
    c = contents.comparison
    s = c.summary
    keys = ("jifr_version", "torch_version", "python", "frame_product")
    written = sorted(
        {tuple(str(r.get(key, "not recorded")) for key in keys) for m in c.runs.values() for r in m.values()}
    )
    runs = "; ".join(f"jifr {j}, torch {t}, Python {p}, frame product {f}" for j, t, p, f in written)
    lines = [
        "## Provenance",
        "",
        f"- summary.json: jifr {s.get('jifr_version')}, torch {s.get('torch_version')}, Python {s.get('python')}, "
        f"frame product {s.get('frame_product', 'not recorded')}, written {s.get('written_at')}.",
        f"- run files (seed-N/<model>.json): {runs}.",
        f"- this report: jifr {jifr.__version__}, " + ", ".join(f"{k} {v}" for k, v in contents.versions.items()) + ".",
        "",
        "| seed | data fingerprint | users | items | frames | train / valid / test | frame likes | source |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed in c.seeds:
        meta = c.prepared[seed]
        parts = " / ".join(str(meta.get("n_interactions", {}).get(p, "")) for p in ("train", "valid", "test"))
        cells = [s["data_fingerprints"][str(seed)], meta.get("n_users"), meta.get("n_items"), meta.get("n_frames")]
        cells += [parts, meta.get("n_frame_likes"), f"`{meta.get('source', '')}`"]
        lines.append(f"| {seed} | " + " | ".join(str(x) for x in cells) + " |")
    return lines


def as_json(contents: Contents) -> dict[str, Any]:
    """The report's own numbers (Table 2 per seed, the case study) for programs and tests."""
    case = contents.case
    return {
        "comparison": str(contents.comparison.directory),
        "figures": contents.figures,
        "skipped": contents.skipped,
        "table2": [vars(cell) for cell in contents.table2],
        "case_study": None
        if case is None or contents.case_data is None
        else {
            "seed": case.seed,
            "user_id": str(contents.case_data.user_ids[case.user]),
            "item_id": str(contents.case_data.item_ids[case.item]),
            "frame_ids": [str(contents.case_data.frame_ids[f]) for f in case.frames],
            "liked": case.liked.tolist(),
            "jifr_scores": case.jifr_scores.tolist(),
            "mean_user_scores": case.mean_user_scores.tolist(),
            "discordant_pairs": case.discordant,
            "n_candidates": case.n_candidates,
        },
        "data_fingerprints": contents.comparison.summary["data_fingerprints"],
        "versions": {"jifr": jifr.__version__} | contents.versions,
    }
