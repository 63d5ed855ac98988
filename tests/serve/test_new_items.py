"""New items (frames, no interactions) added to a served run through the API and the command line.

The reference for a new item's scores is the same model with the item in its catalogue and its
free parameters at their prior mean (tests/new_item_reference.py); its frames' scores are
w_a . (P c_k) computed here from the weights. Every test works on a copy of the session's run.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fastapi.testclient import TestClient
from new_item_reference import with_item
from PIL import Image, ImageDraw
from serve_checks import approx_floats
from typer.testing import CliRunner

from jifr.checkpoint import load_checkpoint, save_checkpoint
from jifr.cli import app
from jifr.data.prepare import PrepareConfig, prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.errors import DataError
from jifr.features import build_encoder, extract_features
from jifr.features.images import load_rgb
from jifr.features.inputs import images_from_item_frames
from jifr.features.store import frame_encoder_of
from jifr.items.add import NewItemUpload
from jifr.items.score import merge_top_k
from jifr.items.store import load_new_items
from jifr.models import ModelInputs, Recommender, build_model
from jifr.serve import schemas
from jifr.serve.app import create_app
from jifr.serve.service import Service

Loaded = tuple[Recommender, PreparedData, dict[str, Any]]
USERS = ("u3", "u17", "u120")
ANY_COUNT = PrepareConfig(min_user_interactions=1, min_item_interactions=1)  # no k-core filter


# ---- helpers ---------------------------------------------------------------------------------
def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout + result.stderr


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: a store that did not change compares equal."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def new_features(data: PreparedData, n: int, seed: int) -> np.ndarray:
    """(n, D) features like the catalogue's (its mean and spread per dimension), in its dtype."""
    catalogue = np.asarray(data.frames.features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = rng.normal(catalogue.mean(0), catalogue.std(0), size=(n, catalogue.shape[1]))
    return values.astype(data.frames.features.dtype)


def png(colour: tuple[int, int, int], size: int = 40) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    ImageDraw.Draw(image).ellipse((8, 8, size - 8, size - 8), fill=(255 - colour[0], colour[2], colour[1]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def index(ids: np.ndarray, raw: str) -> int:
    return int(np.flatnonzero(ids == raw)[0])


@pytest.fixture
def run(served_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's JIFR run (synthetic features, so no known encoder)."""
    return Path(shutil.copytree(served_run, tmp_path / "run"))


@pytest.fixture
def client(run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(run)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def encoded_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JIFR run whose frame features EfficientNet-Lite0 extracted from 12 small PNGs
    (`jifr features extract`, so its prepared data records the encoder). Its weights are the
    seeded initial ones: the scoring of new items, not learning, is under test."""
    root = tmp_path_factory.mktemp("encoded")
    source = root / "data"
    (source / "frames").mkdir(parents=True)
    frames = []
    for i in range(6):
        for k in range(2):
            (source / "frames" / f"f{i}{k}.png").write_bytes(png((40 * i, 120 * k, 200 - 30 * i)))
            frames.append(f"i{i},f{i}{k},frames/f{i}{k}.png")
    (source / "item_frames.csv").write_text("item_id,frame_id,path\n" + "\n".join(frames) + "\n")
    pairs = [f"u{u},i{(u + d) % 6}" for u in range(6) for d in range(4)]
    (source / "interactions.csv").write_text("user_id,item_id\n" + "\n".join(pairs) + "\n")
    extract_features(images_from_item_frames(source / "item_frames.csv"), source, show_progress=False)
    data = prepare_dataset(source, root / "prepared", ANY_COUNT)
    settings = {"collab_dim": 8, "visual_dim": 8, "attention_dim": 8, "hidden_dim": 8}
    model = build_model("jifr", ModelInputs.from_data(data), settings, seed=0)
    return save_checkpoint(root / "run", model, data, copy_data=True)


@pytest.fixture
def encoded_run(encoded_source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(encoded_source, tmp_path / "encoded"))


# ---- adding, ranking and frames ----------------------------------------------------------------
def test_an_item_added_by_the_api_is_ranked_exactly_where_its_score_puts_it(client: TestClient, loaded: Loaded) -> None:
    model, data, _ = loaded
    features = new_features(data, 3, seed=1)
    response = client.post("/v1/items", json={"item_id": "n1", "title": "New one", "features": features.tolist()})
    assert response.status_code == 201, response.text
    frames = [{"frame_id": f"n1-{k}", "title": None, "image_url": None} for k in (1, 2, 3)]
    assert response.json() == {"item_id": "n1", "title": "New one", "frames": frames, "n_new_items": 1}

    reference = with_item(model, data, features)  # n1 is its item n_items, v_i = 0
    ids = [*data.item_ids.tolist(), "n1"]
    interior = 0
    for user in USERS:
        u = index(data.user_ids, user)
        with torch.no_grad():
            scores = reference.score_all(torch.tensor([u]))[0].numpy().astype(np.float64)
        for exclude_seen in (True, False):
            expected = scores.copy()
            if exclude_seen:  # the user's known items; nobody knows the new item
                expected[data.interacted[u].indices] = -np.inf
            order = [i for i in np.argsort(-expected, kind="stable") if np.isfinite(expected[i])]
            params = {"k": data.n_items + 1, "exclude_seen": exclude_seen}
            items = client.get(f"/v1/users/{user}/recommendations", params=params).json()["items"]
            assert [item["item_id"] for item in items] == [ids[i] for i in order]
            assert [item["score"] for item in items] == pytest.approx(expected[order].tolist(), rel=1e-5, abs=1e-6)
            assert [item["new"] for item in items] == [i == data.n_items for i in order]
            position = order.index(data.n_items)
            interior += 0 < position < len(order) - 1
            params["k"] = position + 1
            top = client.get(f"/v1/users/{user}/recommendations", params=params).json()["items"]
            assert top[-1]["item_id"] == "n1" and top[-1]["title"] == "New one" and top[-1]["rank"] == position + 1
    assert interior  # the merge put the new item between catalogue items, not only at an end


def test_a_new_items_frames_are_ranked_by_w_a_p_c_k(client: TestClient, loaded: Loaded) -> None:
    model, data, _ = loaded
    features = new_features(data, 4, seed=2)
    body = {"item_id": "n2", "frame_ids": ["a", "b", "c", "d"], "features": features.tolist()}
    assert client.post("/v1/items", json=body).status_code == 201
    c = torch.from_numpy(features.astype(np.float32))
    with torch.no_grad():
        all_users = (c @ model.projection.weight.T @ model.user_visual.weight.T).numpy()  # (4, n_users)
    mean_order = ["abcd"[k] for k in np.argsort(-all_users.mean(1), kind="stable")]
    for user in USERS:
        expected = all_users[:, index(data.user_ids, user)]
        order = np.argsort(-expected, kind="stable")
        ranked = client.get(f"/v1/users/{user}/items/n2/frames").json()
        assert [f["frame_id"] for f in ranked["frames"]] == ["abcd"[k] for k in order]
        assert [f["score"] for f in ranked["frames"]] == pytest.approx(expected[order].tolist(), rel=1e-5, abs=1e-6)
        assert ranked["key_frame"] == ranked["frames"][0] and ranked["item_id"] == "n2"
        assert [f["frame_id"] for f in ranked["mean_user_frames"]] == mean_order  # every user: tiny has 200
        items = client.get(f"/v1/users/{user}/recommendations", params={"k": data.n_items + 1}).json()["items"]
        (entry,) = [item for item in items if item["item_id"] == "n2"]
        assert entry["frames"] == ranked["frames"] and entry["key_frame"] == ranked["frames"][0]
        assert entry["mean_user_frames"] == ranked["mean_user_frames"]
    assert client.get("/v1/users/nobody/items/n2/frames").status_code == 404


def test_items_added_by_the_cli_and_the_api_survive_a_restart(run: Path, loaded: Loaded, tmp_path: Path) -> None:
    _, data, _ = loaded
    np.save(tmp_path / "features.npy", new_features(data, 2, seed=3))
    args = [
        "items",
        "add",
        run,
        "--item-id",
        "cli1",
        "--title",
        "From the CLI",
        "--features",
        tmp_path / "features.npy",
    ]
    code, out = invoke(*args, "--frame-id", "x1", "--frame-id", "x2")
    assert code == 0, out
    assert json.loads(out)["frames"] == ["x1", "x2"] and json.loads(out)["new_items"] == 1
    with TestClient(create_app(run)) as first:  # a new Service.load finds the CLI's item
        assert first.get("/v1/info").json()["new_items"]["count"] == 1
        assert first.post(
            "/v1/items", json={"item_id": "api1", "features": new_features(data, 1, 4).tolist()}
        ).is_success
        before = [first.get(f"/v1/users/{u}/recommendations", params={"k": data.n_items + 2}).json() for u in USERS]
        frames_before = first.get("/v1/users/u3/items/cli1/frames").json()
    with TestClient(create_app(run)) as restarted:
        after = [restarted.get(f"/v1/users/{u}/recommendations", params={"k": data.n_items + 2}).json() for u in USERS]
        assert after == approx_floats(before)
        assert restarted.get("/v1/users/u3/items/cli1/frames").json() == approx_floats(frames_before)
    assert all({"cli1", "api1"} <= {item["item_id"] for item in result["items"]} for result in after)
    stored = load_new_items(run, data.frames.features.shape[1], data.frames.features.dtype)
    assert stored.item_ids == ("cli1", "api1") and stored.titles == ("From the CLI", None)
    assert np.array_equal(stored.features[:2], np.load(tmp_path / "features.npy"))


def test_recommend_and_export_rank_new_items_as_the_service_does(run: Path, loaded: Loaded, tmp_path: Path) -> None:
    _, data, _ = loaded
    for seed, item in enumerate(("cli1", "cli2")):
        np.save(tmp_path / f"{item}.npy", new_features(data, 3, seed=10 + seed))
        code, out = invoke("items", "add", run, "--item-id", item, "--features", tmp_path / f"{item}.npy")
        assert code == 0, out
    k = data.n_items + 2  # every item a user does not know, the new ones among them
    with TestClient(create_app(run)) as service:
        served = {u: service.get(f"/v1/users/{u}/recommendations", params={"k": k}).json()["items"] for u in USERS}
    code, out = invoke("export", run, "--out", tmp_path / "recs.parquet", "-k", k)
    assert code == 0, out
    exported = pq.read_table(tmp_path / "recs.parquet").to_pylist()
    assert sum(row["new"] for row in exported) == 2 * data.n_users  # nobody knows a new item
    for user in USERS:
        expected = served[user]
        assert [item["item_id"] for item in expected if item["new"]] in (["cli1", "cli2"], ["cli2", "cli1"])
        code, out = invoke("recommend", run, "--user", user, "-k", k, "--json")
        assert code == 0, out
        printed = json.loads(out)["items"]
        assert [i["item_id"] for i in printed] == [i["item_id"] for i in expected]
        assert [i.get("new", False) for i in printed] == [i["new"] for i in expected]
        assert [i["score"] for i in printed] == pytest.approx([i["score"] for i in expected], rel=1e-5, abs=1e-6)
        assert [i["key_frame"]["frame_id"] for i in printed] == [i["key_frame"]["frame_id"] for i in expected]
        rows = [row for row in exported if row["user_id"] == user]
        for column, field in (("item_id", "item_id"), ("rank", "rank"), ("new", "new")):
            assert [row[column] for row in rows] == [i[field] for i in expected], column
        assert [row["score"] for row in rows] == pytest.approx([i["score"] for i in expected], rel=1e-5, abs=1e-6)
        assert [row["key_frame_id"] for row in rows] == [i["key_frame"]["frame_id"] for i in expected]
        key_scores = [i["key_frame"]["score"] for i in expected]
        assert [row["key_frame_score"] for row in rows] == pytest.approx(key_scores, rel=1e-5, abs=1e-6)


def test_uploaded_images_are_encoded_as_the_runs_frames_and_stored_under_names_jifr_chooses(
    encoded_run: Path, tmp_path: Path
) -> None:
    model, data, _ = load_checkpoint(encoded_run)
    assert data.meta["frame_encoder"]["name"] == "efficientnet-lite0"
    assert len(data.meta["frame_encoder"]["weights_sha256"]) == 64
    images = [png((250, 10, 10)), png((10, 200, 90), size=56)]
    files = [("image", ("../../../etc/passwd", images[0], "image/png")), ("image", ("a b.png", images[1], "image/png"))]
    with TestClient(create_app(encoded_run)) as client:
        assert client.get("/v1/info").json()["new_items"]["image_encoder"] == "efficientnet-lite0"
        response = client.post("/v1/items", data={"item_id": "shot", "frame_id": ["s1", "s2"]}, files=files)
        assert response.status_code == 201, response.text
        assert [f["image_url"] for f in response.json()["frames"]] == ["/v1/frames/s1/image", "/v1/frames/s2/image"]
        for frame, data_bytes in zip(("s1", "s2"), images, strict=True):
            served = client.get(f"/v1/frames/{frame}/image")
            assert served.status_code == 200 and served.content == data_bytes
            assert served.headers["content-type"] == "image/png"
        ranked = client.get("/v1/users/u0/recommendations", params={"k": data.n_items + 1}).json()["items"]
    store = encoded_run / "new-items"
    assert sorted(p.name for p in (store / "images").iterdir()) == ["000000.png", "000001.png"]
    assert not list(encoded_run.rglob("passwd")) and not list(encoded_run.rglob("a b.png"))

    # The stored features are what `jifr features extract` makes of the same files.
    for name, data_bytes in zip(("s1.png", "s2.png"), images, strict=True):
        (tmp_path / name).write_bytes(data_bytes)
    extract_features([("s1", tmp_path / "s1.png"), ("s2", tmp_path / "s2.png")], tmp_path / "x", show_progress=False)
    stored = load_new_items(encoded_run, 1280, data.frames.features.dtype)
    extracted = np.load(tmp_path / "x" / "frame_features.npy")
    np.testing.assert_allclose(stored.features, extracted, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        expected = with_item(model, data, stored.features).score_all(torch.tensor([0]))[0, -1]
    (entry,) = [item for item in ranked if item["item_id"] == "shot"]
    assert entry["score"] == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


def test_the_encoder_is_known_only_while_the_features_are_the_extracted_ones(
    encoded_source: Path, tmp_path: Path
) -> None:
    source = Path(shutil.copytree(encoded_source.parent / "data", tmp_path / "data"))
    features = source / "frame_features.npy"
    assert frame_encoder_of(features) == load_checkpoint(encoded_source)[1].meta["frame_encoder"]
    changed = np.load(features)
    changed[0, 0] += 1
    np.save(features, changed)
    assert frame_encoder_of(features) is None
    data = prepare_dataset(source, tmp_path / "prepared", ANY_COUNT)
    assert data.meta["frame_encoder"] is None


def test_the_cli_encodes_images_too(encoded_run: Path) -> None:
    image = encoded_run.parent / "frame.png"
    image.write_bytes(png((0, 0, 255)))
    code, out = invoke("items", "add", encoded_run, "--item-id", "cli-shot", "--image", image)
    assert code == 0, out
    assert json.loads(out)["images"] == ["images/000000.png"]
    assert (encoded_run / "new-items" / "images" / "000000.png").read_bytes() == image.read_bytes()
    encoder = build_encoder("efficientnet-lite0")
    with torch.inference_mode():
        expected = encoder.encode(encoder.preprocess(load_rgb(image))[None]).numpy()
    np.testing.assert_allclose(load_new_items(encoded_run, 1280, np.dtype("float32")).features, expected, rtol=1e-5)


# ---- refusals ----------------------------------------------------------------------------------
def json_item(features: Any, item_id: str = "bad", **extra: Any) -> dict[str, Any]:
    body = {"item_id": item_id, "features": features} | extra
    return {"content": json.dumps(body, allow_nan=True), "headers": {"content-type": "application/json"}}


def form_item(images: list[bytes], **fields: Any) -> dict[str, Any]:
    return {
        "data": {"item_id": "bad"} | fields,
        "files": [("image", (f"{k}.png", b, "image/png")) for k, b in enumerate(images)],
    }


ROW = [0.1] * 1280
BAD_UPLOADS: dict[str, tuple[dict[str, Any], int, str]] = {
    "not an image": (form_item([b"these bytes are not an image" * 10]), 422, "image 1 cannot be decoded"),
    "a truncated PNG": (form_item([png((9, 9, 9)), png((1, 2, 3))[:60]]), 422, "image 2 cannot be decoded"),
    "features of the wrong size": (json_item([ROW[:-1]]), 422, "must have 1280 values (the run's feature size)"),
    "NaN features": (json_item([ROW, [*ROW[:-1], float("nan")]]), 422, "features of frame 2 hold a value that is NaN"),
    "infinite features": (json_item([[float("inf"), *ROW[1:]]]), 422, "frame 1 hold a value that is NaN or infinite"),
    "a catalogue item's id": (json_item([ROW], item_id="i0"), 409, "item 'i0' already exists"),
    "an earlier new item's id": (json_item([ROW], item_id="first"), 409, "item 'first' already exists"),
    "a catalogue frame's id": (json_item([ROW], frame_ids=["f00"]), 409, "frame 'f00' already exists"),
    "an earlier new frame's id": (json_item([ROW], frame_ids=["first-1"]), 409, "frame 'first-1' already exists"),
    "a repeated frame id": (json_item([ROW, ROW], frame_ids=["z", "z"]), 422, "frame id 'z' is given more than once"),
    "fewer frame ids than frames": (json_item([ROW, ROW], frame_ids=["z"]), 422, "1 frame ids for 2 frames"),
    "no frames (JSON)": (json_item([]), 422, "a new item needs at least one frame"),
    "no frames (form)": (form_item([]), 422, "a new item needs at least one frame"),
    "too many frames": (json_item([ROW] * 65), 422, "65 frames; a new item has at most 64"),
    "an empty item id": (json_item([ROW], item_id=" "), 422, "the item id is empty"),
    "an id over two lines": (json_item([ROW], item_id="a\nb"), 422, "line break"),
    "an unknown form field": (form_item([png((1, 1, 1))], colour="red"), 422, "unknown form field 'colour'"),
    "neither form nor JSON": ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "not 'text/plain'"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_bad_upload_is_refused_and_changes_nothing(case: str, encoded_run: Path) -> None:
    request, status, detail = BAD_UPLOADS[case]
    with TestClient(create_app(encoded_run)) as client:
        assert client.post("/v1/items", **json_item([ROW], item_id="first")).status_code == 201
        before = files_of(encoded_run)
        response = client.post("/v1/items", **request)
        assert response.status_code == status, response.text
        assert detail in response.json()["detail"], response.text
        assert client.get("/v1/info").json()["new_items"]["count"] == 1
        assert files_of(encoded_run) == before


def test_a_request_over_the_size_limit_is_413(encoded_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "MAX_NEW_ITEM_BYTES", 10_000)
    before = files_of(encoded_run)
    large, small = json_item([ROW, ROW]), json_item([ROW])
    assert len(large["content"]) > 10_000 > len(small["content"])
    with TestClient(create_app(encoded_run)) as client:
        response = client.post("/v1/items", **large)
        assert response.status_code == 413 and "at most 10,000" in response.json()["detail"]
        assert files_of(encoded_run) == before
        small = client.post("/v1/items", **small)
        assert small.status_code == 201, small.text
    assert set(files_of(encoded_run)) - set(before)  # the small one was stored


def test_images_are_refused_where_the_runs_encoder_is_unknown(client: TestClient, run: Path) -> None:
    before = files_of(run)
    response = client.post("/v1/items", **form_item([png((5, 5, 5))]))
    assert response.status_code == 409
    assert "were not made by `jifr features extract`" in response.json()["detail"]
    assert "send the frames' precomputed features instead" in response.json()["detail"]
    code, out = invoke("items", "add", run, "--item-id", "x", "--image", Path(__file__))
    assert code == 2 and "were not made by `jifr features extract`" in out
    assert files_of(run) == before
    assert client.get("/v1/info").json()["new_items"]["image_encoder"] is None


def test_features_beyond_float16_are_refused(client: TestClient, run: Path, loaded: Loaded) -> None:
    _, data, _ = loaded
    assert data.frames.features.dtype == np.float16
    before = files_of(run)
    response = client.post("/v1/items", **json_item([[1e6] * data.frames.features.shape[1]]))
    assert response.status_code == 422 and "beyond the range of float16" in response.json()["detail"]
    assert files_of(run) == before


def test_a_model_without_a_content_side_refuses_new_items(tiny: PreparedData, tmp_path: Path) -> None:
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    bpr = save_checkpoint(tmp_path / "bpr", model, tiny, copy_data=True)
    before = files_of(bpr)
    with TestClient(create_app(bpr)) as client:
        response = client.post("/v1/items", **json_item([[0.0] * tiny.frames.features.shape[1]]))
        assert response.status_code == 409
        assert response.json()["detail"].startswith("bpr cannot score a new item")
        info = client.get("/v1/info").json()["new_items"]
        assert info["scoring"] is None and info["refusal"].startswith("bpr cannot score a new item")
    np.save(tmp_path / "f.npy", np.zeros((1, tiny.frames.features.shape[1]), dtype=np.float32))
    code, out = invoke("items", "add", bpr, "--item-id", "x", "--features", tmp_path / "f.npy")
    assert code == 2 and "bpr cannot score a new item" in out
    assert files_of(bpr) == before and not (bpr / "new-items").exists()


def test_concurrent_adds_lose_no_item(run: Path, loaded: Loaded) -> None:
    """Two services on one run (as two processes would be) and four threads: every item is kept."""
    _, data, _ = loaded
    services = [Service.load(run), Service.load(run)]
    features = [new_features(data, 1 + j % 3, seed=10 + j) for j in range(8)]

    def add(j: int) -> None:
        services[j % 2].add_item(NewItemUpload(f"c{j}", features=features[j]))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(8)))
    stored = load_new_items(run, data.frames.features.shape[1], data.frames.features.dtype)
    assert sorted(stored.item_ids) == [f"c{j}" for j in range(8)]
    for j in range(8):
        rows = stored.frame_rows(stored.item_index[f"c{j}"])
        assert np.array_equal(stored.features[rows.start : rows.stop], features[j])
    assert [p.name for p in (run / "new-items").glob("features-*.npy")] == ["features-000008.npy"]
    assert len(Service.load(run).new_items) == 8


def test_a_damaged_store_is_one_clear_error(run: Path, loaded: Loaded) -> None:
    _, data, _ = loaded
    Service.load(run).add_item(NewItemUpload("n", features=new_features(data, 1, seed=5)))
    (features,) = (run / "new-items").glob("features-*.npy")
    features.write_bytes(features.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DataError, match="damaged new-items store: .* is not the file the index records"):
        Service.load(run)


def test_merge_puts_the_catalogue_first_on_exact_ties() -> None:
    top = np.array([[3.0, 1.0, -np.inf], [2.0, 2.0, 0.5]])
    extra = np.array([[1.0, 3.0, -np.inf], [2.0, -np.inf, 0.5]])
    assert merge_top_k(top, extra, 6).tolist() == [[0, 4, 1, 3, -1, -1], [0, 1, 3, 2, 5, -1]]
    assert merge_top_k(top, extra, 2).tolist() == [[0, 4], [0, 1]]


def test_the_openapi_schema_describes_both_bodies(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/items"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["items"]["format"] == "binary"
    assert {"201", "409", "413", "415", "422"} <= set(operation["responses"])
