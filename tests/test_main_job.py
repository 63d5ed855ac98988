"""The main job: the synthetic fallback runs end to end and says so; a named mirror must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jifr.datasets.mirror import MirrorNotFoundError
from jifr.main_job import MainJobConfig, format_main_job, run_main_job
from jifr.serve.app import create_app
from jifr.train import TrainConfig

QUICK = TrainConfig(epochs=2, batch_size=1024)


def test_without_a_mirror_it_falls_back_to_synthetic_data_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIFR_MIRROR", raising=False)
    monkeypatch.setattr("jifr.datasets.mirror.default_locations", lambda: [tmp_path / "nowhere"])
    outcome = run_main_job(MainJobConfig(work_dir=tmp_path / "main", train=QUICK, repeats=1))
    text = format_main_job(outcome)
    assert "synthetic" in outcome["dataset"] and "no MovieLens mirror found" in text
    for name in (
        "pop",
        "rnd",
        "content_cosine_centered",
        "bpr",
        "vbpr",
        "jifr_na",
        "jifr",
        "jifr@mean_user",
        "frame_pop",
    ):
        assert name in outcome["results"], name
    assert "RND (analytic expectation)" in text and "key frame:" in text
    assert (tmp_path / "main" / "results" / "seed-0" / "jifr.json").exists()
    run = tmp_path / "main" / "run-seed-0"
    assert f"jifr serve {run}" in text
    with TestClient(create_app(run)) as client:  # the main job's run serves the API and the page
        info = client.get("/v1/info").json()
        assert info["model"] == "jifr" and info["data"]["fingerprint"] == outcome["data"].fingerprint
        user = str(outcome["data"].user_ids[0])
        items = client.get(f"/v1/users/{user}/recommendations", params={"k": 3}).json()["items"]
        assert [i["item_id"] for i in items] == [i["item_id"] for i in outcome["recommendations"][0]["items"]]
        assert client.get("/").status_code == 200


def test_the_seed_changes_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIFR_MIRROR", raising=False)
    monkeypatch.setattr("jifr.datasets.mirror.default_locations", lambda: [tmp_path / "nowhere"])
    monkeypatch.setattr("jifr.main_job.MODELS", ("pop", "jifr"))
    one_epoch = TrainConfig(epochs=1)
    runs = [run_main_job(MainJobConfig(tmp_path / "main", seed=s, train=one_epoch, repeats=1)) for s in (0, 1)]
    assert [r["data"].meta["config"]["split"]["seed"] for r in runs] == [0, 1]
    assert runs[0]["data"].fingerprint != runs[1]["data"].fingerprint
    assert (tmp_path / "main" / "results" / "seed-1" / "pop.json").exists()


def test_a_named_mirror_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIFR_MIRROR", raising=False)
    with pytest.raises(MirrorNotFoundError, match="mirror not found"):
        run_main_job(MainJobConfig(work_dir=tmp_path / "main", mirror=tmp_path / "missing", train=QUICK))
    monkeypatch.setenv("JIFR_MIRROR", str(tmp_path / "missing"))
    with pytest.raises(MirrorNotFoundError):
        run_main_job(MainJobConfig(work_dir=tmp_path / "main", train=QUICK))
