"""A run holds its own prepared data (RUN/data): it can be moved and served without the prepared
directory it was trained from, and older runs still load from the directory they record."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_checks import approx_floats
from typer.testing import CliRunner

from jifr.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from jifr.cli import app
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.data.prepared_copy import PREPARED_FILES
from jifr.data.splits import SplitConfig
from jifr.errors import DataError
from jifr.models import ModelInputs, build_model
from jifr.serve.app import create_app


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_a_moved_run_serves_and_recommends_without_its_prepared_data(
    served_run: Path, client: TestClient, tmp_path: Path
) -> None:
    # The fixture deleted the prepared directory the run was trained from.
    description = json.loads((served_run / CHECKPOINT_NAME).read_text())
    assert description["data"]["directory"] == "data" and not Path(description["data"]["prepared_dir"]).exists()
    moved = Path(shutil.copytree(served_run, tmp_path / "elsewhere" / "run"))
    _, data, _ = load_checkpoint(moved)
    assert data.directory == moved / "data"
    with TestClient(create_app(moved)) as moved_client:
        for user in ("u3", "u42"):
            expected = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
            assert moved_client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json() == approx_floats(
                expected
            )
            code, out = invoke("recommend", moved, "--user", user, "-k", "5", "--json")
            assert code == 0, out
            assert [i["item_id"] for i in json.loads(out)["items"]] == [i["item_id"] for i in expected["items"]]


@pytest.fixture
def own_prepared(tiny_dir: Path, tmp_path: Path) -> PreparedData:
    return prepare_dataset(tiny_dir, tmp_path / "prepared")


def test_the_runs_data_is_hard_linked(own_prepared: PreparedData, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    assert all(os.path.samefile(run / "data" / name, own_prepared.directory / name) for name in PREPARED_FILES)
    assert load_checkpoint(run)[1].directory == run / "data"


def test_the_runs_data_is_copied_where_links_fail(
    own_prepared: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    for name in PREPARED_FILES:
        assert not os.path.samefile(run / "data" / name, own_prepared.directory / name)
        assert (run / "data" / name).read_bytes() == (own_prepared.directory / name).read_bytes()
    assert not [p.name for p in tmp_path.joinpath("run").iterdir() if p.name.startswith(".data")]  # no staging left


def test_a_run_without_its_own_data_loads_from_the_recorded_one(own_prepared: PreparedData, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    old_style = save_checkpoint(tmp_path / "old", model, own_prepared)
    assert "directory" not in json.loads((old_style / CHECKPOINT_NAME).read_text())["data"]
    assert load_checkpoint(old_style)[1].directory == own_prepared.directory

    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    shutil.rmtree(run / "data")  # a partial copy of a run: the original is used, with a warning
    assert load_checkpoint(run)[1].directory == own_prepared.directory
    shutil.rmtree(own_prepared.directory)
    with pytest.raises(DataError, match="the run's prepared data is missing"):
        load_checkpoint(run)
    code, out = invoke("serve", run)
    assert code == 2 and "the run's prepared data is missing" in out and "Traceback" not in out


def test_a_data_copy_of_other_data_is_rejected(own_prepared: PreparedData, tiny_dir: Path, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    other = prepare_dataset(tiny_dir, tmp_path / "other", PrepareConfig(split=SplitConfig(seed=1)))
    shutil.rmtree(run / "data")
    shutil.copytree(other.directory, run / "data")
    with pytest.raises(DataError, match="data fingerprint .* differs from the checkpoint's"):
        load_checkpoint(run)


def test_a_data_directory_outside_the_run_is_refused(own_prepared: PreparedData, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    description = json.loads((run / CHECKPOINT_NAME).read_text())
    for outside in ("../prepared", str(own_prepared.directory)):
        description["data"]["directory"] = outside
        (run / CHECKPOINT_NAME).write_text(json.dumps(description))
        with pytest.raises(DataError, match="damaged description: data directory"):
            load_checkpoint(run)


def test_serving_a_missing_or_damaged_run_is_one_message(own_prepared: PreparedData, tmp_path: Path) -> None:
    code, out = invoke("serve", tmp_path / "nothing")
    assert code == 2 and "is not a run directory" in out and "Traceback" not in out
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    (run / "model.safetensors").write_bytes(b"not weights")
    code, out = invoke("serve", run)
    assert code == 2 and "damaged weights" in out and "Traceback" not in out


def test_a_model_without_frames_on_data_without_images(own_prepared: PreparedData, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(own_prepared), seed=0)
    run = save_checkpoint(tmp_path / "run", model, own_prepared, copy_data=True)
    with TestClient(create_app(run)) as bpr:
        items = bpr.get("/v1/users/u3/recommendations", params={"k": 3}).json()["items"]
        assert len(items) == 3 and all(i["key_frame"] is None and i["frames"] == [] for i in items)
        response = bpr.get("/v1/users/u3/items/i1/frames")
        assert response.status_code == 404 and response.json() == {"detail": "bpr does not rank key frames"}
        frame = str(own_prepared.frame_ids[0])
        response = bpr.get(f"/v1/frames/{frame}/image")
        assert response.status_code == 404 and response.json() == {"detail": f"frame '{frame}' has no image file"}
        history = bpr.get("/v1/users/u3/training-items").json()["items"]
        assert history and all(f["image_url"] is None for i in history for f in i["frames"])
        assert bpr.get("/").status_code == 200
