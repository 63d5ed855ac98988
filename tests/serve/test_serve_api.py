"""The JSON API against brute-force references computed from the loaded model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fastapi.testclient import TestClient
from serve_checks import approx_floats

from jifr.data.prepared import PreparedData
from jifr.models import Recommender
from jifr.recommend import recommend_for_user

Loaded = tuple[Recommender, PreparedData, dict[str, Any]]
USERS = ("u3", "u17", "u120")


def index(ids: np.ndarray, raw: str) -> int:
    return int(np.flatnonzero(ids == raw)[0])


def top_items(model: Recommender, data: PreparedData, user: str, k: int, exclude_seen: bool = True) -> list[str]:
    """A stable descending sort of score_all with the user's known items removed."""
    u = index(data.user_ids, user)
    with torch.no_grad():
        scores = model.score_all(torch.tensor([u]))[0].numpy().astype(np.float64)
    if exclude_seen:
        scores[data.interacted[u].indices] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [str(data.item_ids[i]) for i in order if np.isfinite(scores[i])]


def frame_order(scores: torch.Tensor, data: PreparedData, item: int) -> list[str]:
    first, stop = int(data.frames.indptr[item]), int(data.frames.indptr[item + 1])
    order = np.argsort(-scores[: stop - first].numpy(), kind="stable")
    return [str(data.frame_ids[first + s]) for s in order]


def user_frame_order(model: Recommender, data: PreparedData, user: str, item_id: str) -> list[str]:
    u, i = index(data.user_ids, user), index(data.item_ids, item_id)
    with torch.no_grad():
        return frame_order(model.score_frames(torch.tensor([u]), torch.tensor([i]))[0], data, i)


def mean_user_frame_order(model: Recommender, data: PreparedData, item_id: str) -> list[str]:
    """The frame scores averaged over every user (the tiny data has fewer than 1024 users)."""
    i = index(data.item_ids, item_id)
    users = torch.arange(data.n_users)
    with torch.no_grad():
        return frame_order(model.score_frames(users, torch.full_like(users, i)).mean(0), data, i)


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["frame_id"] for f in frames]


@pytest.mark.parametrize("user", USERS)
def test_recommendations_match_the_library_and_brute_force(client: TestClient, loaded: Loaded, user: str) -> None:
    model, data, _ = loaded
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == user and body["model"] == "jifr" and body["fallback"] is None
    items = body["items"]
    assert [item["item_id"] for item in items] == top_items(model, data, user, 10)
    library = recommend_for_user(model, data, user, k=10)["items"]
    assert [item["score"] for item in items] == pytest.approx([item["score"] for item in library])
    for item, expected in zip(items, library, strict=True):
        assert item["title"] == expected["title"] and item["rank"] == expected["rank"]
        assert ids(item["frames"]) == user_frame_order(model, data, user, item["item_id"]) == ids(expected["frames"])
        assert item["key_frame"] == item["frames"][0]
        assert ids(item["mean_user_frames"]) == mean_user_frame_order(model, data, item["item_id"])
        assert all(f["image_url"] == f"/v1/frames/{f['frame_id']}/image" for f in item["frames"])


def test_exclude_seen_false_may_return_known_items(client: TestClient, loaded: Loaded) -> None:
    model, data, _ = loaded
    k = data.n_items
    everything = client.get("/v1/users/u3/recommendations", params={"k": k, "exclude_seen": "false"}).json()
    assert [item["item_id"] for item in everything["items"]] == top_items(model, data, "u3", k, exclude_seen=False)
    assert len(everything["items"]) == data.n_items and everything["exclude_seen"] is False
    unseen = client.get("/v1/users/u3/recommendations", params={"k": k}).json()["items"]
    assert len(unseen) == data.n_items - data.interacted[index(data.user_ids, "u3")].nnz


def test_a_batch_equals_single_requests(client: TestClient) -> None:
    response = client.post("/v1/recommendations", json={"users": [*USERS, USERS[0]], "k": 5, "exclude_seen": True})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["user_id"] for r in results] == [*USERS, USERS[0]]
    for result in results:
        single = client.get(f"/v1/users/{result['user_id']}/recommendations", params={"k": 5}).json()
        assert result == approx_floats(single)


def test_unknown_users_are_404_unless_the_popular_fallback_is_asked_for(client: TestClient, loaded: Loaded) -> None:
    _, data, _ = loaded
    response = client.get("/v1/users/nobody/recommendations")
    assert response.status_code == 404 and response.json() == {
        "detail": "unknown user 'nobody' (fallback=popular serves them)"
    }
    response = client.post("/v1/recommendations", json={"users": ["u3", "nobody", "ghost"]})
    assert response.status_code == 404 and "unknown users 'nobody', 'ghost'" in response.json()["detail"]

    fallback = client.get("/v1/users/nobody/recommendations", params={"k": 4, "fallback": "popular"}).json()
    counts = np.bincount(data.train.items, minlength=data.n_items)
    popular = np.argsort(-counts, kind="stable")[:4]
    assert fallback["fallback"] == "popular"
    assert [item["item_id"] for item in fallback["items"]] == [str(data.item_ids[i]) for i in popular]
    assert [item["score"] for item in fallback["items"]] == [float(counts[i]) for i in popular]
    assert all(item["frames"] == item["mean_user_frames"] and item["key_frame"] for item in fallback["items"])

    mixed = client.post("/v1/recommendations", json={"users": ["u3", "nobody"], "k": 4, "fallback": "popular"})
    known, unknown = mixed.json()["results"]
    assert known["fallback"] is None and unknown == approx_floats(fallback)
    assert client.get("/v1/users/u3/recommendations", params={"fallback": "popular"}).json()["fallback"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"k": 0}, "k"), ({"k": 1001}, "k"), ({"k": "ten"}, "k"), ({"fallback": "random"}, "fallback")],
)
def test_bad_parameters_are_422_naming_the_parameter(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/v1/users/u3/recommendations", params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


def test_bad_batch_requests_are_422(client: TestClient) -> None:
    for body, field in (({"users": []}, "users"), ({"users": ["u3"], "k": 0}, "k"), ({"k": 3}, "users")):
        response = client.post("/v1/recommendations", json=body)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", field], response.text
    too_many = {"users": [f"u{i}" for i in range(101)]}
    assert client.post("/v1/recommendations", json=too_many).status_code == 422
    assert client.get("/v1/users/u3/recommendations", params={"k": 1000}).status_code == 200


def test_one_items_frames_for_one_user(client: TestClient, loaded: Loaded) -> None:
    model, data, _ = loaded
    body = client.get("/v1/users/u17/items/i5/frames").json()
    assert ids(body["frames"]) == user_frame_order(model, data, "u17", "i5")
    assert ids(body["mean_user_frames"]) == mean_user_frame_order(model, data, "i5")
    assert body["key_frame"] == body["frames"][0] and body["title"] == "Synthetic item 5"
    assert all(f["title"].startswith("theme ") or f["title"] == "no theme" for f in body["frames"])
    for path, detail in (("nobody/items/i5", "unknown user 'nobody'"), ("u17/items/i9999", "unknown item 'i9999'")):
        response = client.get(f"/v1/users/{path}/frames")
        assert response.status_code == 404 and response.json() == {"detail": detail}


def test_training_items_are_the_users_training_split(client: TestClient, loaded: Loaded) -> None:
    _, data, _ = loaded
    body = client.get("/v1/users/u3/training-items").json()
    expected = sorted(set(data.train.items[data.train.users == index(data.user_ids, "u3")].tolist()))
    assert [item["item_id"] for item in body["items"]] == [str(data.item_ids[i]) for i in expected]
    for item, i in zip(body["items"], expected, strict=True):
        first, stop = data.frames.indptr[i], data.frames.indptr[i + 1]
        assert ids(item["frames"]) == data.frame_ids[first:stop].tolist()
    assert client.get("/v1/users/nobody/training-items").status_code == 404


def test_user_search_by_prefix(client: TestClient, loaded: Loaded) -> None:
    _, data, _ = loaded
    matching = sorted(u for u in data.user_ids.tolist() if u.startswith("u1"))
    body = client.get("/v1/users", params={"prefix": "u1", "limit": 5}).json()
    assert body == {"prefix": "u1", "users": matching[:5], "more": True}
    body = client.get("/v1/users", params={"prefix": "u1", "limit": 1000}).json()
    assert body["users"] == matching and body["more"] is False
    assert client.get("/v1/users", params={"prefix": "x"}).json()["users"] == []
    assert client.get("/v1/users", params={"limit": 0}).status_code == 422


def test_frame_images_are_the_datasets_files(client: TestClient, pictured_dir: Path) -> None:
    frames = pq.read_table(pictured_dir / "item_frames.parquet").to_pydict()
    for frame_id, path in list(zip(frames["frame_id"], frames["path"], strict=True))[:3]:
        response = client.get(f"/v1/frames/{frame_id}/image")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == (pictured_dir / path).read_bytes()


@pytest.mark.parametrize(
    "frame",
    [
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "f1%2F..%2F..%2Fitem_frames.parquet",
        "%2e%2e",
        "frames%2Ff1.png",
        "f1.png",
        "%00",
    ],
)
def test_the_image_route_opens_no_path_from_the_request(client: TestClient, frame: str) -> None:
    response = client.get(f"/v1/frames/{frame}/image")
    assert response.status_code == 404 and response.json()["detail"].startswith("unknown frame"), response.text


def test_an_existing_image_file_named_by_path_is_not_served(client: TestClient, pictured_dir: Path) -> None:
    for path in (pictured_dir / "frames" / "f1.png", pictured_dir / "frames" / "f1"):
        response = client.get(f"/v1/frames/{str(path).replace('/', '%2F')}/image")
        assert response.status_code == 404 and response.json()["detail"].startswith("unknown frame")
    assert client.get("/v1/frames/f1/image").status_code == 200  # the same file, by its frame id


def test_health_info_and_openapi(client: TestClient, loaded: Loaded) -> None:
    _, data, description = loaded
    assert client.get("/v1/health").json() == {"status": "ok"}
    info = client.get("/v1/info").json()
    assert info["model"] == "jifr" and info["ranks_frames"] is True
    assert info["data"]["fingerprint"] == data.fingerprint == description["data"]["fingerprint"]
    assert info["config"]["model"] == description["model_config"] and info["config"]["seed"] == 0
    assert info["data"]["n_users"] == data.n_users and info["data"]["frames_with_images"] == len(data.frame_ids)
    assert info["max_k"] == 1000 and "averaged over" in info["mean_user"]
    schema = client.get("/openapi.json").json()
    path = schema["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    assert path["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/UserRecommendations")
    assert path["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    expected = {"BatchRequest", "ItemFrames", "Info", "TrainingItems", "ScoredFrame"}
    assert expected <= set(schema["components"]["schemas"])


def test_the_page_lists_users_and_loads_its_script(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<option value="u0">' in page.text and 'src="/static/page.js"' in page.text
    assert client.get("/static/page.js").status_code == 200 and client.get("/static/page.css").status_code == 200


def test_the_item_cache_is_built_at_load_not_by_the_first_request(served_run: Path) -> None:
    from jifr.serve.service import Service

    service = Service.load(served_run)
    assert service.model._item_cache is not None  # noqa: SLF001 (the warm-up is what is tested)
    cached = service.model._item_cache  # noqa: SLF001
    service.recommend([next(iter(service.users))], 5, True, "none")
    assert service.model._item_cache is cached  # noqa: SLF001 (the first request reused it)
