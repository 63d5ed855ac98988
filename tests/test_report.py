"""`jifr report`: figures and tables from a finished comparison, numbers equal to its summary.json."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jifr.checkpoint import load_checkpoint
from jifr.cli import app
from jifr.compare import CompareConfig, run_comparison
from jifr.data.prepared import load_prepared
from jifr.datasets.synthetic import write_synthetic
from jifr.evaluate import keyframe_queries
from jifr.models.diagnostic import MeanUserFrames
from jifr.report import write_report
from jifr.train import TrainConfig

pytest.importorskip("matplotlib")

MODELS = ("pop", "rnd", "vbpr", "jifr_na", "jifr_content_att", "jifr")
FIGURES = ("fig3-items.png", "fig4-keyframes.png", "fig5-case-study.png")
CELL = re.compile(r"^(-?\d+\.\d{4}) ± (\d+\.\d{4})$")
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished comparison of six models at two seeds on the tiny synthetic dataset (a few seconds)."""
    root = tmp_path_factory.mktemp("report")
    source = write_synthetic("tiny", root / "data")
    config = CompareConfig(models=MODELS, seeds=(0, 1), train=TrainConfig(epochs=2), repeats=2)
    run_comparison(source, root / "cmp", config, show_progress=False)
    return root / "cmp"


@pytest.fixture(scope="module")
def report(comparison: Path) -> Path:
    return write_report(comparison, comparison.parent / "report")


def summary_of(comparison: Path) -> dict[str, Any]:
    return json.loads((comparison / "summary.json").read_text(encoding="utf-8"))


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table of ``text`` as (header cells, body rows of cells)."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("| --- |"):
            body = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                body.append([c.strip() for c in row.strip("|").split("|")])
            tables.append(([c.strip() for c in line.strip("|").split("|")], body))
    return tables


def test_every_figure_is_a_png_of_a_reasonable_size(report: Path) -> None:
    for name in FIGURES:
        path = report / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 20_000, name
        with Image.open(path) as image:
            assert 600 <= image.width <= 4000 and 300 <= image.height <= 4000, (name, image.size)
    text = (report / "report.md").read_text(encoding="utf-8")
    assert all(f"]({name})" in text for name in FIGURES)
    assert json.loads((report / ".jifr-output.json").read_text())["kind"] == "report"


def test_every_metric_in_the_tables_is_the_summary_value(comparison: Path, report: Path) -> None:
    summary = summary_of(comparison)
    rows = summary["models"]
    summary_md = (comparison / "summary.md").read_text(encoding="utf-8")
    checked: dict[str, set[str]] = {}
    for header, body in markdown_tables((report / "report.md").read_text(encoding="utf-8")):
        if header[0] != "model":
            continue  # Table 2 and the provenance table are checked below
        for cells in body:
            row = rows[cells[0]]
            for column, cell in zip(header[1:], cells[1:], strict=True):
                protocol, metric = column.split()
                value = row[protocol][metric]
                mean, std = map(float, CELL.match(cell).groups())  # type: ignore[union-attr]
                assert mean == pytest.approx(value["mean"], abs=5e-5) and std == pytest.approx(value["std"], abs=5e-5)
                assert cell == f"{value['mean']:.4f} ± {value['std']:.4f}"
                checked.setdefault(protocol, set()).add(cells[0])
                if (protocol, metric) in (("item_paper", "HR@10"), ("keyframe", "HR@1")):
                    assert f" {cell} |" in summary_md  # formatted as summary.md formats it
    items = {"pop", "vbpr", "jifr_na", "jifr_content_att", "jifr"}
    assert checked["item_paper"] == checked["item_full"] == items
    assert checked["keyframe"] == {"rnd", "rnd_analytic", "vbpr", "jifr_na", "jifr", "jifr@mean_user", "frame_pop"}


def test_table2_is_the_mean_of_per_seed_relative_improvements(comparison: Path, report: Path) -> None:
    def metric(model: str, seed: int, protocol: str, name: str) -> float:
        run = json.loads((comparison / f"seed-{seed}" / f"{model}.json").read_text(encoding="utf-8"))
        return run["results"][protocol]["metrics"][name]

    rows = summary_of(comparison)["models"]
    saved = {(c["model"], c["metric"]): c for c in json.loads((report / "report.json").read_text())["table2"]}
    (table,) = [b for h, b in markdown_tables((report / "report.md").read_text()) if h[0] == "visual att"]
    shown = {(cells[2], cells[3]): cells for cells in table}
    paper = {("jifr_content_att", "keyframe HR@3"): "+8.07%", ("jifr", "item_paper NDCG@15"): "+5.94%"}
    assert set(saved) == {(m, n) for m in ("jifr_content_att", "jifr") for n in ("HR@15", "NDCG@15", "HR@3", "NDCG@3")}
    for model in ("jifr_content_att", "jifr"):
        for protocol, name in (("item_paper", "HR@15"), ("item_paper", "NDCG@15"), ("keyframe", "HR@3")):
            ours = np.array([metric(model, s, protocol, name) for s in (0, 1)])
            base = np.array([metric("jifr_na", s, protocol, name) for s in (0, 1)])
            relative = (ours - base) / base
            cell = saved[(model, name)]
            assert cell["per_seed"] == pytest.approx(relative.tolist(), rel=1e-12)
            assert cell["mean"] == pytest.approx(relative.mean()) and cell["std"] == pytest.approx(relative.std(ddof=1))
            cells = shown[(model, f"{protocol} {name}")]
            assert cells[4] == f"{100 * relative.mean():+.2f}% ± {100 * relative.std(ddof=1):.2f}%"
            spread = max(rows[model][protocol][name]["std"], rows["jifr_na"][protocol][name]["std"])
            diff = ours - base
            verdict = "no clear difference"
            if (diff > 0).all() and diff.mean() > spread:
                verdict = "clear gain"
            if (diff < 0).all() and -diff.mean() > spread:
                verdict = "clear loss"
            assert cells[6] == cell["verdict"] == verdict
            if (model, f"{protocol} {name}") in paper:
                assert cells[5] == paper[(model, f"{protocol} {name}")]
    assert not any(key[0] == "jifr_rating_att" for key in shown)  # not in this comparison


def test_the_case_study_pair_is_the_one_the_rule_chooses(comparison: Path, report: Path) -> None:
    case = json.loads((report / "report.json").read_text())["case_study"]
    data = load_prepared(comparison / "seed-0" / "prepared")
    model, _, _ = load_checkpoint(comparison / "seed-0" / "checkpoints" / "jifr", data)
    mean_user = MeanUserFrames(model, data, seed=0)
    q = keyframe_queries(data, "test")
    best, best_key = -1, None
    with torch.no_grad():  # brute force over every candidate pair, in (user, item) order
        for u, i, count, liked in zip(q.users, q.items, q.frame_counts, q.liked, strict=True):
            n = int(count)
            if n < 4 or int(liked[:n].sum()) == n:
                continue
            a, m = (x.score_frames(u[None], i[None])[0, :n] for x in (model, mean_user))
            discordant = sum(float((a[j] - a[k]) * (m[j] - m[k])) < 0 for j in range(n) for k in range(j + 1, n))
            if discordant > best:
                best, best_key = discordant, (str(data.user_ids[u]), str(data.item_ids[i]))
    assert (case["user_id"], case["item_id"]) == best_key and case["discordant_pairs"] == best
    assert len(case["frame_ids"]) >= 4 and 0 < sum(case["liked"]) < len(case["liked"])
    text = (report / "report.md").read_text()
    assert f"User `{case['user_id']}`, item `{case['item_id']}`" in text


def test_report_names_the_commands_versions_and_fingerprints(comparison: Path, report: Path) -> None:
    text = (report / "report.md").read_text(encoding="utf-8")
    summary = summary_of(comparison)
    for seed, fingerprint in summary["data_fingerprints"].items():
        assert f"| {seed} | {fingerprint} |" in text
    assert f"torch {torch.__version__}" in text and f"jifr {summary['jifr_version']}" in text
    (command,) = [line for line in text.splitlines() if line.startswith("jifr compare ")]
    assert f"--models {','.join(MODELS)} --seeds 0,1 --epochs 2" in command and "--repeats 2" in command
    assert "No `jifr compare` option sets" not in text


def test_the_reproduce_command_reuses_every_run(comparison: Path, report: Path, tmp_path: Path) -> None:
    """Run on a copy, the recorded command has the exact configuration: every run is reused, none retrained."""
    copy = tmp_path / "cmp"
    shutil.copytree(comparison, copy)
    (command,) = [line for line in (report / "report.md").read_text().splitlines() if line.startswith("jifr compare ")]
    words = shlex.split(command)[1:]
    words[words.index("--out") + 1] = str(copy)
    before = {p: p.stat().st_mtime_ns for p in copy.glob("seed-*/*.json")}
    code, out = invoke(*words, "--no-progress")
    assert code == 0, out
    assert {p: p.stat().st_mtime_ns for p in copy.glob("seed-*/*.json")} == before
    timing = ("train_seconds", "eval_seconds")  # a reference row is recomputed, its time differs
    again, first = (
        {row: {k: v for k, v in values.items() if k not in timing} for row, values in summary_of(c)["models"].items()}
        for c in (copy, comparison)
    )
    assert again == first


def test_cli_writes_refuses_to_overwrite_and_replaces_with_force(comparison: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, text = invoke("report", comparison, "--out", out)
    assert code == 0, text
    assert all((out / name).is_file() for name in (*FIGURES, "report.md"))
    code, text = invoke("report", comparison, "--out", out)
    assert code == 2 and "already holds a jifr report output; pass --force" in text
    (out / "report.md").write_text("old")
    code, text = invoke("report", comparison, "--out", out, "--force")
    assert code == 0, text
    assert (out / "report.md").read_text().startswith("# Report on cmp")


def test_a_directory_jifr_did_not_write_is_never_overwritten(comparison: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for force in ((), ("--force",)):
        code, text = invoke("report", comparison, "--out", foreign, *force)
        assert code == 2 and "was not written by jifr; refusing to overwrite it" in text
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    code, text = invoke("report", comparison, "--out", comparison, "--force")  # another jifr output, and the input
    assert code == 2 and "refusing" in text
    assert (comparison / "summary.json").is_file()


def test_not_a_comparison_is_a_clear_error_naming_the_file(comparison: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, text = invoke("report", tmp_path / "empty", "--out", tmp_path / "r1")
    assert code == 2 and ".jifr-output.json: not a `jifr compare` output" in text and "Traceback" not in text
    unfinished = tmp_path / "unfinished"
    shutil.copytree(comparison, unfinished)
    (unfinished / "summary.json").unlink()
    code, text = invoke("report", unfinished, "--out", tmp_path / "r2")
    assert code == 2 and f"{unfinished / 'summary.json'}: missing: the comparison has not finished" in text
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_a_run_written_after_the_summary_is_refused(comparison: Path, tmp_path: Path) -> None:
    """A comparison running again rewrites run files under a summary that no longer matches them."""
    stale = tmp_path / "stale"
    shutil.copytree(comparison, stale)
    path = stale / "seed-1" / "vbpr.json"
    run = json.loads(path.read_text())
    run["results"]["item_full"]["metrics"]["HR@10"] += 0.01
    path.write_text(json.dumps(run))
    code, text = invoke("report", stale, "--out", tmp_path / "r")
    assert code == 2 and "summary.json: vbpr item_full HR@10 is not the mean of the seed-N/vbpr.json files" in text
    (stale / "seed-0" / "pop.json").unlink()
    code, text = invoke("report", stale, "--out", tmp_path / "r")
    assert code == 2 and f"{stale / 'seed-0' / 'pop.json'}: missing" in text


def test_without_jifr_the_case_study_and_table2_are_skipped(comparison: Path, tmp_path: Path) -> None:
    config = CompareConfig(models=("pop", "rnd"), seeds=(0,), train=TrainConfig(epochs=1), repeats=1)
    run_comparison(comparison.parent / "data", tmp_path / "cmp", config, show_progress=False)
    out = write_report(tmp_path / "cmp", tmp_path / "report")
    assert (out / FIGURES[0]).is_file() and (out / FIGURES[1]).is_file() and not (out / FIGURES[2]).exists()
    text = (out / "report.md").read_text()
    assert "Fig. 5: skipped, the comparison has no jifr model." in text
    assert "Skipped: Table 2 needs jifr_na and at least one attention cell." in text


def test_without_frame_likes_table2_keeps_the_item_columns(comparison: Path, tmp_path: Path) -> None:
    """Like MovieLens-100K-Posters: no frame likes, so no key-frame protocol and no Fig. 4."""
    data = tmp_path / "data"
    shutil.copytree(comparison.parent / "data", data)
    (data / "frame_likes.parquet").unlink()
    config = CompareConfig(models=("pop", "jifr_na", "jifr"), seeds=(0, 1), train=TrainConfig(epochs=1), repeats=1)
    run_comparison(data, tmp_path / "cmp", config, show_progress=False)
    out = write_report(tmp_path / "cmp", tmp_path / "report")
    assert (out / FIGURES[0]).is_file() and not (out / FIGURES[1]).exists()
    cells = json.loads((out / "report.json").read_text())["table2"]
    assert [(c["protocol"], c["metric"]) for c in cells] == [("item_paper", "HR@15"), ("item_paper", "NDCG@15")]
    paths = [tmp_path / "cmp" / f"seed-{s}" / f"{m}.json" for m in ("jifr", "jifr_na") for s in (0, 1)]
    ndcg = [json.loads(path.read_text())["results"]["item_paper"]["metrics"]["NDCG@15"] for path in paths]
    expected = np.mean([(ndcg[0] - ndcg[2]) / ndcg[2], (ndcg[1] - ndcg[3]) / ndcg[3]])
    assert cells[1]["mean"] == pytest.approx(expected, rel=1e-12)
    assert "The frame columns are left out: the comparison has no keyframe results" in (out / "report.md").read_text()


def test_report_help_loads_no_heavy_library() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from jifr.cli import app; "
        "r = CliRunner().invoke(app, ['report', '--help']); assert r.exit_code == 0 and 'Usage' in r.output; "
        "print([m for m in ('torch', 'matplotlib') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
