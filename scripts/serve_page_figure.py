"""Draw docs/figures/serve-page.png: the `jifr serve` page on synthetic data, in headless Chromium.

Usage: python scripts/serve_page_figure.py [--out docs/figures/serve-page.png] [--user u3] [--epochs 20]

Writes the tiny synthetic dataset with a PNG per frame (each in its planted theme's colour) to a
temporary directory, prepares it, trains JIFR, serves the run with uvicorn on a free local port,
opens the page for one user in the system's Chromium (Playwright), hovers the first card and
saves a screenshot (written atomically). Only synthetic data is ever drawn.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from jifr.checkpoint import save_checkpoint
from jifr.data.prepare import prepare_dataset
from jifr.datasets.synthetic import write_synthetic
from jifr.models import ModelInputs, build_model
from jifr.outputs import atomic_open
from jifr.serve.app import create_app
from jifr.train import TrainConfig, fit

LOADED_IMAGES = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"


def train_synthetic_run(work: Path, epochs: int) -> Path:
    data = prepare_dataset(write_synthetic("tiny", work / "data", images=True), work / "prepared")
    model = build_model("jifr", ModelInputs.from_data(data), seed=0)
    history = fit(model, data, TrainConfig(epochs=epochs), show_progress=False)
    return save_checkpoint(work / "run", model, data, TrainConfig(epochs=epochs), history, copy_data=True)


def start_server(run: Path) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def screenshot(url: str, user: str, out: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 700})
        page.goto(f"{url}/?user={user}&k=8")
        page.wait_for_selector(f"body[data-loaded-user='{user}']")
        page.hover(".card >> nth=0")
        page.wait_for_function(LOADED_IMAGES)
        image = page.screenshot(type="png", full_page=True)
        browser.close()
    with atomic_open(out, "wb") as handle:
        handle.write(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures/serve-page.png"))
    parser.add_argument("--user", default="u3")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        run = train_synthetic_run(Path(work), args.epochs)
        server, thread, url = start_server(run)
        try:
            screenshot(url, args.user, args.out, args.chromium)
        finally:
            server.should_exit = True
            thread.join()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
