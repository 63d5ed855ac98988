"""The real server on a free local port: ``jifr serve`` as its own process (``running_server``), or
uvicorn serving ``create_app`` in a thread of the test process (``serving_in_thread``, which
saves starting Python and torch again)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from jifr.serve.app import create_app

STARTUP_LIMIT_S = 120  # a guard against hanging, not a speed requirement


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jifr_command() -> str:
    found = shutil.which("jifr", path=str(Path(sys.executable).parent)) or shutil.which("jifr")
    assert found, "the jifr console script is not installed (pip install -e '.[dev]')"
    return found


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jifr serve exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"jifr serve did not answer /v1/health within {STARTUP_LIMIT_S} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_server(run_dir: Path, log: Path) -> Iterator[str]:
    """Yield the base URL of ``jifr serve run_dir``; on leaving, stop it with SIGTERM and check that
    it shut down cleanly (the application's shutdown logged, no traceback). Its output goes to ``log``."""
    port = free_port()
    command = [jifr_command(), "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port)]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        _wait_until_healthy(process, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}"
        process.terminate()
        code = process.wait(timeout=STARTUP_LIMIT_S)
        # uvicorn finishes its shutdown, then re-raises the signal it caught (older versions exit 0).
        assert code in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text() and "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serving_in_thread(run_dir: Path) -> Iterator[str]:
    """Yield the base URL of uvicorn serving ``create_app(run_dir)`` in a thread; stop it on leaving."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
