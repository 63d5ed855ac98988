"""What the serving benchmarks share: a servable run at the paper's scale, and ``jifr serve`` as
its own process on a free loopback port.

The run is JIFR with random weights (seed 0) on the paper-scale synthetic set that
bench_paper_scale.py generates and prepares under the work directory. It is a real run
directory, as ``jifr train`` writes one (checkpoint.json, model.safetensors and data/, the
prepared files hard-linked), written by ``jifr.checkpoint.save_checkpoint``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_paper_scale import dataset

from jifr.checkpoint import save_checkpoint
from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs, Recommender, build_model

RUN_NAME = "paper-run"
STARTUP_LIMIT_S = 600  # loading the paper-scale run takes ~15 s on 2 busy cores; a guard, not a goal


def paper_model(data: PreparedData) -> Recommender:
    """JIFR with random weights on the paper-scale data (the latency does not depend on training)."""
    return build_model("jifr", ModelInputs.from_data(data), seed=0)


def write_run(run_dir: Path, model: Recommender, data: PreparedData) -> Path:
    """A run directory of ``model`` (its data hard-linked into RUN/data), replacing an earlier one."""
    return save_checkpoint(run_dir, model, data, seed=0, copy_data=True)


def paper_run(work_dir: Path) -> Path:
    """The paper-scale run under ``work_dir``, written (data generated and prepared) if missing."""
    run_dir = work_dir / RUN_NAME
    if not (run_dir / "checkpoint.json").is_file():
        data = dataset(work_dir)
        write_run(run_dir, paper_model(data), data)
    return run_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jifr_command() -> str:
    found = shutil.which("jifr", path=str(Path(sys.executable).parent)) or shutil.which("jifr")
    if found is None:
        raise SystemExit("the jifr console script is not installed (pip install -e '.[dev]')")
    return found


def wait_until_healthy(url: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> float:
    """Seconds until ``url``/v1/health answers 200; fails if the process exits first."""
    started = time.perf_counter()
    while time.perf_counter() - started < STARTUP_LIMIT_S:
        if process is not None and process.poll() is not None:
            shown = log.read_text()[-4000:] if log else ""
            raise SystemExit(f"jifr serve exited with {process.returncode}:\n{shown}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer /v1/health within {STARTUP_LIMIT_S} s")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    startup_s: float

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def jifr_serve(run_dir: Path, log: Path, threads: int = 1) -> Iterator[Server]:
    """``jifr serve run_dir`` on a free loopback port with ``threads`` torch threads, healthy;
    stopped (SIGTERM) on leaving. Its output goes to ``log``."""
    port = free_port()
    command = [jifr_command(), "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port)]
    environment = os.environ | {"OMP_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        url = f"http://127.0.0.1:{port}"
        yield Server(url, process, wait_until_healthy(url, process, log))
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
