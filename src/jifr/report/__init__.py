"""``jifr report``: the paper's figures and Table 2 from a finished ``jifr compare``, without retraining.

REPORT/fig3-items.png        Fig. 3: item HR@K, NDCG@K (K = 5..30), item_paper and item_full
REPORT/fig4-keyframes.png    Fig. 4: key-frame HR@K, NDCG@K (K = 1, 2, 3, 5) with the references
REPORT/fig5-case-study.png   Fig. 5: one user's training items and one test item's frames in
                             JIFR's order and in the mean user's order (rule: case_study.py)
REPORT/report.md             the figures, their tables (from summary.json), Table 2, the commands
                             that reproduce them, versions and per-seed data fingerprints
REPORT/report.json           Table 2 per seed and the case study, for programs
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from jifr.outputs import staged_directory, write_json_atomic, write_text_atomic
from jifr.report.case_study import choose_case, draw_case
from jifr.report.comparison import Comparison, read_comparison
from jifr.report.document import FIG3, FIG4, FIG5, Contents, as_json, markdown
from jifr.report.figures import draw_frames, draw_items, matplotlib_version
from jifr.report.tables import BASELINE, frame_rows, item_rows, table2

log = logging.getLogger(__name__)

__all__ = ["Comparison", "read_comparison", "write_report"]


def write_report(comparison_dir: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Write the report of the comparison in ``comparison_dir`` to the new directory ``out``.

    ``out`` must be new, empty or (with ``force``) an earlier jifr report; it appears only when complete.
    """
    comparison = read_comparison(comparison_dir)  # refuses an unfinished or damaged comparison first
    versions = {"torch": torch.__version__, "matplotlib": matplotlib_version()}
    with staged_directory(out, "report", force=force, inputs=[comparison_dir]) as staging:
        contents = Contents(comparison, Path(out), {}, versions=versions)
        _figures(contents, staging)
        write_text_atomic(staging / "report.md", markdown(contents))
        write_json_atomic(staging / "report.json", as_json(contents))
    log.info("wrote %s", Path(out) / "report.md")
    return Path(out)


def _figures(contents: Contents, staging: Path) -> None:
    c = contents.comparison
    if item_rows(c):
        draw_items(c, staging / FIG3)
        contents.figures[FIG3] = FIG3
    else:
        _skip(contents, FIG3, "no model of the comparison ranks items")
    if frame_rows(c):
        draw_frames(c, staging / FIG4)
        contents.figures[FIG4] = FIG4
    else:
        _skip(contents, FIG4, "the comparison has no key-frame results")
    contents.table2 = table2(c)
    if not contents.table2:
        contents.skipped["table2"] = f"Table 2 needs {BASELINE} and at least one attention cell"
        log.warning("Table 2 skipped: %s", contents.skipped["table2"])
    case, data, reason = choose_case(c)
    if case is None or data is None:
        _skip(contents, FIG5, reason)
        return
    contents.case, contents.case_data = case, data
    draw_case(case, data, staging / FIG5)
    contents.figures[FIG5] = FIG5


def _skip(contents: Contents, name: str, reason: str) -> None:
    contents.figures[name] = None
    contents.skipped[name] = reason
    log.warning("%s skipped: %s", name, reason)
