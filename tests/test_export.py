"""jifr export: every user's top-K with key frames, equal to `jifr recommend`, written safely."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from jifr import export as export_module
from jifr import progress
from jifr.checkpoint import save_checkpoint
from jifr.cli import app
from jifr.data.prepared import Interactions, ItemFrames, PreparedData
from jifr.export import export_recommendations, key_frames
from jifr.models import ModelInputs, build_model
from jifr.recommend import recommend_for_user

FRAME_COLUMNS = ["user_id", "rank", "item_id", "score", "new", "key_frame_id", "key_frame_score"]


@pytest.fixture(scope="module")
def jifr_run(tiny: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("export") / "run", model, tiny)


def export(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *(str(a) for a in args), "--no-progress"])
    return result.exit_code, result.output


def rows_of(table: dict[str, list], user: str) -> list[int]:
    return [i for i, u in enumerate(table["user_id"]) if u == user]


def test_export_equals_recommend_for_sampled_users(jifr_run: Path, tiny: PreparedData, tmp_path: Path) -> None:
    code, out = export(jifr_run, "--out", tmp_path / "recs.parquet", "-k", "7")
    assert code == 0, out
    table = pq.read_table(tmp_path / "recs.parquet").to_pydict()
    assert list(table) == FRAME_COLUMNS
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0).eval()
    for u in (0, 1, tiny.n_users // 2, tiny.n_users - 1):
        user = str(tiny.user_ids[u])
        expected = recommend_for_user(model, tiny, user, k=7)["items"]
        rows = rows_of(table, user)
        assert [table["rank"][r] for r in rows] == list(range(1, len(expected) + 1))
        assert [table["item_id"][r] for r in rows] == [e["item_id"] for e in expected]
        assert [table["key_frame_id"][r] for r in rows] == [e["key_frame"]["frame_id"] for e in expected]
        assert np.allclose([table["score"][r] for r in rows], [e["score"] for e in expected], rtol=1e-5, atol=1e-6)
        assert np.allclose(
            [table["key_frame_score"][r] for r in rows], [e["key_frame"]["score"] for e in expected], atol=1e-5
        )


def test_rows_leave_out_known_items_unless_asked(tiny: PreparedData, tmp_path: Path) -> None:
    """With k = every item, each user has one row per unknown item (all of them with
    include_seen), in rank order, and never an item they know."""
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    summary = export_recommendations(model, tiny, tmp_path / "a.parquet", tiny.n_items, show_progress=False)
    table = pq.read_table(tmp_path / "a.parquet").to_pydict()
    assert list(table) == FRAME_COLUMNS[:5]  # BPR ranks no frames
    known = tiny.interacted
    assert summary.rows == len(table["user_id"]) == tiny.n_users * tiny.n_items - known.nnz
    item_index = {str(item): i for i, item in enumerate(tiny.item_ids)}
    for u in (0, 5, tiny.n_users - 1):
        rows = rows_of(table, str(tiny.user_ids[u]))
        assert [table["rank"][r] for r in rows] == list(range(1, tiny.n_items - known[u].nnz + 1))
        assert not {item_index[table["item_id"][r]] for r in rows} & set(known[u].indices.tolist())
    every = export_recommendations(
        model, tiny, tmp_path / "b.parquet", tiny.n_items, exclude_seen=False, show_progress=False
    )
    assert every.rows == tiny.n_users * tiny.n_items


def test_chunks_make_row_groups_with_the_same_rows(
    jifr_run: Path, tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=0)
    export_recommendations(model, tiny, tmp_path / "one.parquet", 5, show_progress=False)
    monkeypatch.setattr(export_module, "ROW_BUDGET", 5 * 16)  # 16 users per chunk
    monkeypatch.setattr(export_module, "FRAME_CELLS", 1)  # one pair per score_frames call
    export_recommendations(model, tiny, tmp_path / "many.parquet", 5, show_progress=False)
    many = pq.ParquetFile(tmp_path / "many.parquet")
    assert many.metadata.num_row_groups == -(-tiny.n_users // 16)
    one, chunked = pq.read_table(tmp_path / "one.parquet").to_pydict(), many.read().to_pydict()
    for column in ("user_id", "rank", "item_id", "key_frame_id"):
        assert one[column] == chunked[column], column
    assert np.allclose(one["score"], chunked["score"], atol=1e-6)


def test_refuses_to_overwrite(jifr_run: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "notes.parquet"
    foreign.write_text("not ours\n")
    for extra in ([], ["--force"]):
        code, out = export(jifr_run, "--out", foreign, *extra)
        assert code == 2 and "not a jifr export" in out and "Traceback" not in out, out
        assert foreign.read_text() == "not ours\n"
    code, out = export(jifr_run, "--out", tmp_path, "-k", "3")
    assert code == 2 and "is a directory" in out, out
    ours = tmp_path / "recs.parquet"
    assert export(jifr_run, "--out", ours, "-k", "3")[0] == 0
    code, out = export(jifr_run, "--out", ours, "-k", "4")
    assert code == 2 and "--force" in out, out
    assert set(pq.read_table(ours).to_pydict()["rank"]) == {1, 2, 3}
    code, out = export(jifr_run, "--out", ours, "-k", "4", "--force")
    assert code == 0, out
    assert set(pq.read_table(ours).to_pydict()["rank"]) == {1, 2, 3, 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.parquet", "recs.parquet"]  # no temporaries


def test_a_bad_run_directory_is_one_message(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for run in (tmp_path / "missing", tmp_path / "empty"):
        code, out = export(run, "--out", tmp_path / "recs.parquet")
        assert code == 2 and out.startswith("error:") and "Traceback" not in out, out
    code, out = export(tmp_path / "empty", "--out", tmp_path / "recs.parquet", "-k", "-1")
    assert code == 2 and "k must be >= 0" in out, out
    assert not (tmp_path / "recs.parquet").exists()


def test_progress_is_a_log_line_where_no_bar_is_drawn(
    tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)
    monkeypatch.setattr(export_module, "ROW_BUDGET", 100)  # 10 users per chunk at k = 10
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    with caplog.at_level(logging.INFO, logger="jifr.export"):
        export_recommendations(model, tiny, tmp_path / "recs.parquet", 10, show_progress=True)
    assert f"exported: 10/{tiny.n_users} users" in caplog.text
    assert f"exported: {tiny.n_users}/{tiny.n_users} users" in caplog.text


def test_key_frame_ties_go_to_the_earlier_frame() -> None:
    """Item 0 has three frames, the last two identical and best for the user; item 1 has one."""
    features = np.array([[0, 0], [1, 1], [1, 1], [0, 1]], dtype=np.float32)
    frames = ItemFrames(np.array([0, 3, 4]), features)
    inputs = ModelInputs(1, 2, frames, Interactions(np.array([0]), np.array([0])))
    model = build_model("jifr", inputs, seed=0).eval()
    with torch.no_grad():
        model.projection.weight.copy_(torch.eye(2).repeat(16, 1))  # P c = c, repeated
        model.user_visual.weight.fill_(1.0)
    rows, scores = key_frames(model, frames, torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert rows.tolist() == [1, 3]
    assert np.allclose(scores, [32.0, 16.0])
