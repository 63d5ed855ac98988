"""The page at / in a real headless Chromium (Playwright driving the system's browser), served by
uvicorn: the cards show the key frames the API returns, and nothing the page asks for fails.

The README's screenshot is the one this test takes: with ``JIFR_SCREENSHOT_DIR`` set, the test
also writes it there (serve-page.png, atomically)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import serving_in_thread
from playwright.sync_api import Page, sync_playwright

from jifr.outputs import atomic_open

USER = "u3"
LOADED_IMAGES = "s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)"


def chromium() -> str:
    """The system Chromium; a missing browser fails the test (it is never skipped)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed; the page test needs it: apt-get install -y chromium")
    return found


def watch_for_failures(page: Page) -> list[str]:
    """Every failing response, failed request, script error and console error of the page."""
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failures.append(f"failed {r.url}: {r.failure}"))
    page.on("pageerror", lambda error: failures.append(f"script error: {error}"))
    page.on("console", lambda m: failures.append(f"console: {m.text}") if m.type == "error" else None)
    return failures


def frame_ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["frame_id"] for f in frames]


def attribute_of_all(page: Page, selector: str, attribute: str) -> list[str]:
    return page.eval_on_selector_all(selector, f"nodes => nodes.map(n => n.getAttribute('{attribute}'))")


def check_cards(page: Page, expected: list[dict[str, Any]]) -> None:
    """One card per recommended item, in order, each showing its key frame's image (loaded)."""
    assert attribute_of_all(page, ".card", "data-item-id") == [i["item_id"] for i in expected]
    assert attribute_of_all(page, ".card .key-frame", "data-frame-id") == [i["key_frame"]["frame_id"] for i in expected]
    assert attribute_of_all(page, ".card .key-frame", "src") == [i["key_frame"]["image_url"] for i in expected]
    page.wait_for_function(LOADED_IMAGES, arg=".card .key-frame")


def check_frame_orders(page: Page, expected: list[dict[str, Any]]) -> None:
    """Hovering a card lists the item's frames in the user's and in the mean user's order."""
    for position in (1, 0):
        page.hover(f".card >> nth={position}")
        item = expected[position]
        assert attribute_of_all(page, "#user-order li", "data-frame-id") == frame_ids(item["frames"])
        assert attribute_of_all(page, "#mean-order li", "data-frame-id") == frame_ids(item["mean_user_frames"])
    page.wait_for_function(LOADED_IMAGES, arg="#detail img")


def test_the_page_shows_a_users_items_with_their_key_frames(served_run: Path, tmp_path: Path) -> None:
    with serving_in_thread(served_run) as url, sync_playwright() as playwright:
        expected = httpx.get(f"{url}/v1/users/{USER}/recommendations", params={"k": 10}).json()["items"]
        training = httpx.get(f"{url}/v1/users/{USER}/training-items").json()["items"]
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            failures = watch_for_failures(page)
            page.goto(f"{url}/")
            page.fill("#user", "u1")  # typing asks the server for matching ids
            page.wait_for_function("() => document.querySelectorAll('#user-ids option').length === 50")
            assert all(v.startswith("u1") for v in attribute_of_all(page, "#user-ids option", "value"))
            page.fill("#user", USER)
            page.click("button[type=submit]")
            page.wait_for_selector(f"body[data-loaded-user='{USER}']")
            check_cards(page, expected)
            check_frame_orders(page, expected)
            page.screenshot(path=tmp_path / "serve-page.png", full_page=True)

            page.click("button[data-view=history]")
            assert page.is_hidden("#recommendations") and page.is_visible("#history")
            assert attribute_of_all(page, ".history-item", "data-item-id") == [i["item_id"] for i in training]
            shown = attribute_of_all(page, ".history-item img", "data-frame-id")
            assert shown == [f["frame_id"] for i in training for f in i["frames"]]
            page.wait_for_function(LOADED_IMAGES, arg=".history-item img")
            page.screenshot(path=tmp_path / "serve-history.png", full_page=True)
        finally:
            browser.close()
    assert failures == []
    for name in ("serve-page.png", "serve-history.png"):
        image = (tmp_path / name).read_bytes()
        assert image.startswith(b"\x89PNG") and len(image) > 10_000, name
    if os.environ.get("JIFR_SCREENSHOT_DIR"):  # the README's figure
        with atomic_open(Path(os.environ["JIFR_SCREENSHOT_DIR"]) / "serve-page.png", "wb") as handle:
            handle.write((tmp_path / "serve-page.png").read_bytes())
