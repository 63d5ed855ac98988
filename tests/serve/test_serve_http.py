"""The real server: `jifr serve` in its own process, reached over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from live_server import running_server
from serve_checks import approx_floats


def test_jifr_serve_answers_over_http_and_shuts_down_cleanly(
    served_run: Path, client: TestClient, tmp_path: Path
) -> None:
    with running_server(served_run, tmp_path / "serve.log") as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/health").json() == {"status": "ok"}
        response = http.get("/v1/users/u3/recommendations", params={"k": 5})
        assert response.status_code == 200
        assert response.json() == approx_floats(client.get("/v1/users/u3/recommendations", params={"k": 5}).json())
        batch = http.post("/v1/recommendations", json={"users": ["u3", "nobody"], "fallback": "popular"})
        assert [r["fallback"] for r in batch.json()["results"]] == [None, "popular"]
        key_frame = response.json()["items"][0]["key_frame"]
        image = http.get(key_frame["image_url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert http.get("/v1/users/nobody/recommendations").status_code == 404
