"""Load test: concurrent clients against a real ``jifr serve`` on loopback, valid and invalid
requests mixed, for a fixed time.

Each client (an ``httpx.AsyncClient`` with its own keep-alive connection, all in one asyncio
loop) sends one request after another, each of a kind drawn by weight (--mix):

- valid, answered 200: a known user's recommendations with a random k, one item's frames for a
  user, a batch POST for a few users, an unknown user with fallback=popular, a user-id search,
  health, and a frame's image where the run has image files;
- invalid, answered 4xx: an unknown user, k=0, k over the maximum, an unknown item, an unknown
  frame, traversal-like frame ids (``../checkpoint.json``, percent-encoded or not), a batch of
  too many users, a body that is not JSON.

It prints requests/s, p50 / p99 per kind and the answers by status, and exits 1 unless no answer
is a 5xx, every invalid request got a 4xx and every valid one a 200 (a transport error or a
timeout fails too). The users, items and frames are found through the API (so --url works
against any run); before the timed part, every user of the pool is asked for their top items
once (k = --max-k), so the valid requests touch items whose mean-user frame orders are computed.

    OMP_NUM_THREADS=1 python bench/bench_load.py [--duration 60] [--clients 32] [--url URL | --run DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import torch
from serving_process import Server, jifr_serve, paper_run

MAX_K = 1000  # the service's maximum k (jifr.serve.schemas.MAX_K)
MAX_BATCH_USERS = 100


@dataclass
class Pool:
    """What the valid requests draw from, found through the API."""

    users: list[str]
    items: list[str]
    frames: list[str]
    images: list[str]  # frame ids with an image file
    max_k: int


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    json: object | None = None
    content: bytes | None = None


Builder = Callable[[Pool, np.random.Generator], Request]


def user_url(user: str) -> str:
    return f"/v1/users/{quote(user, safe='')}"


def recommendations(pool: Pool, rng: np.random.Generator) -> Request:
    user = pool.users[rng.integers(len(pool.users))]
    return Request("GET", f"{user_url(user)}/recommendations?k={rng.integers(1, pool.max_k + 1)}")


def item_frames(pool: Pool, rng: np.random.Generator) -> Request:
    user, item = pool.users[rng.integers(len(pool.users))], pool.items[rng.integers(len(pool.items))]
    return Request("GET", f"{user_url(user)}/items/{quote(item, safe='')}/frames")


def batch(pool: Pool, rng: np.random.Generator) -> Request:
    users = rng.choice(pool.users, size=rng.integers(1, min(4, len(pool.users)) + 1), replace=False).tolist()
    return Request("POST", "/v1/recommendations", json={"users": users, "k": int(rng.integers(1, pool.max_k + 1))})


def fallback(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"/v1/users/nobody-{rng.integers(10**6)}/recommendations?fallback=popular&k={pool.max_k}")


def user_search(pool: Pool, rng: np.random.Generator) -> Request:
    user = pool.users[rng.integers(len(pool.users))]
    return Request("GET", f"/v1/users?prefix={quote(user[: rng.integers(1, len(user) + 1)])}&limit=20")


def health(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", "/v1/health")


def image(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"/v1/frames/{quote(pool.images[rng.integers(len(pool.images))], safe='')}/image")


def unknown_user(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"/v1/users/nobody-{rng.integers(10**6)}/recommendations")


def k_zero(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"{user_url(pool.users[0])}/recommendations?k=0")


def k_over_max(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"{user_url(pool.users[0])}/recommendations?k={MAX_K + 1}")


def unknown_item(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"{user_url(pool.users[0])}/items/no-such-item-{rng.integers(10**6)}/frames")


def unknown_frame(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", f"/v1/frames/no-such-frame-{rng.integers(10**6)}/image")


TRAVERSALS = (
    "/v1/frames/..%2F..%2Fcheckpoint.json/image",
    "/v1/frames/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
    "/v1/frames/..%5C..%5Cmodel.safetensors/image",
    "/v1/frames/%2Fetc%2Fpasswd/image",
    "/v1/frames/../../checkpoint.json/image",  # httpx removes the dot segments: /checkpoint.json/image
)


def traversal(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("GET", TRAVERSALS[rng.integers(len(TRAVERSALS))])


def too_many_users(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("POST", "/v1/recommendations", json={"users": [pool.users[0]] * (MAX_BATCH_USERS + 1)})


def not_json(pool: Pool, rng: np.random.Generator) -> Request:
    return Request("POST", "/v1/recommendations", content=b"{users: [")


# kind -> (valid, builder, default weight)
KINDS: dict[str, tuple[bool, Builder, float]] = {
    "recommendations": (True, recommendations, 8),
    "item_frames": (True, item_frames, 4),
    "batch": (True, batch, 2),
    "fallback": (True, fallback, 1),
    "user_search": (True, user_search, 1),
    "health": (True, health, 1),
    "image": (True, image, 1),
    "unknown_user": (False, unknown_user, 1),
    "k_zero": (False, k_zero, 1),
    "k_over_max": (False, k_over_max, 1),
    "unknown_item": (False, unknown_item, 1),
    "unknown_frame": (False, unknown_frame, 1),
    "traversal": (False, traversal, 1),
    "too_many_users": (False, too_many_users, 0.5),
    "not_json": (False, not_json, 0.5),
}


def parse_mix(text: str | None, has_images: bool) -> dict[str, float]:
    """Weights by kind: the defaults, changed by ``kind=weight,...`` (0 leaves a kind out)."""
    weights = {kind: weight for kind, (_, _, weight) in KINDS.items()}
    for part in (text or "").split(","):
        if part.strip():
            kind, _, value = part.partition("=")
            if kind.strip() not in KINDS:
                raise SystemExit(f"--mix: unknown kind {kind.strip()!r}; kinds: {', '.join(KINDS)}")
            weights[kind.strip()] = float(value)
    if not has_images:
        weights["image"] = 0.0  # the run has no image files: no valid image request exists
    return {kind: weight for kind, weight in weights.items() if weight > 0}


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    statuses: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> status -> count
    failures: list[str] = field(default_factory=list)  # the first few, described

    def add(self, kind: str, seconds: float, status: str, failed: bool, request: Request) -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        self.statuses.setdefault(kind, Counter())[status] += 1
        if failed and len(self.failures) < 10:
            self.failures.append(f"{kind}: {request.method} {request.url} -> {status}")


def failed(valid: bool, status: str) -> bool:
    """A valid request must get 200, an invalid one a 4xx; anything else (a 5xx, a transport
    error) fails."""
    return status != "200" if valid else not (status.isdigit() and 400 <= int(status) < 500)


async def client(
    base_url: str, pool: Pool, mix: dict[str, float], deadline: float, seed: int, timeout: float, results: Results
) -> None:
    rng = np.random.default_rng(seed)
    kinds, weights = list(mix), np.array(list(mix.values()))
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
        while time.perf_counter() < deadline:
            kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
            valid, build, _ = KINDS[kind]
            request = build(pool, rng)
            started = time.perf_counter()
            try:
                response = await http.request(request.method, request.url, json=request.json, content=request.content)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.add(kind, time.perf_counter() - started, status, failed(valid, status), request)


async def load(base_url: str, pool: Pool, mix: dict[str, float], args: argparse.Namespace) -> tuple[Results, float]:
    results = Results()
    started = time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(
        *(client(base_url, pool, mix, deadline, args.seed + c, args.timeout, results) for c in range(args.clients))
    )
    return results, time.perf_counter() - started


def find_pool(base_url: str, n_users: int, max_k: int, seed: int) -> Pool:
    """Users (a seeded sample of the first 1,000 ids), and the items and frames of their top
    ``max_k``, asked for once each: this also computes those items' mean-user frame orders."""
    with httpx.Client(base_url=base_url, timeout=3600) as http:
        found = http.get("/v1/users", params={"limit": 1000}).raise_for_status().json()["users"]
        users = np.random.default_rng(seed).choice(found, size=min(n_users, len(found)), replace=False).tolist()
        items: dict[str, None] = {}
        frames: dict[str, bool] = {}
        answers = [http.get(f"{user_url(u)}/recommendations", params={"k": max_k}) for u in users]
        answers.append(http.get("/v1/users/nobody/recommendations", params={"k": max_k, "fallback": "popular"}))
        for answer in answers:
            for item in answer.raise_for_status().json()["items"]:
                items[item["item_id"]] = None
                frames |= {f["frame_id"]: f["image_url"] is not None for f in item["frames"]}
    return Pool(users, list(items), list(frames), [f for f, has in frames.items() if has], max_k)


def percentile_ms(seconds: list[float], q: float) -> float:
    return 1e3 * float(np.percentile(seconds, q))


def print_table(results: Results, elapsed: float, mix: dict[str, float]) -> int:
    """The table of kinds; returns the number of failed requests."""
    total = sum(len(v) for v in results.latencies.values())
    print(f"{total:,} requests in {elapsed:.1f} s: {total / elapsed:,.1f} requests/s")
    print("| kind | valid | requests | p50 ms | p99 ms | answers by status | failed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    failures = 0
    for kind in mix:
        valid = KINDS[kind][0]
        seconds, statuses = results.latencies.get(kind, []), results.statuses.get(kind, Counter())
        bad = sum(n for status, n in statuses.items() if failed(valid, status))
        failures += bad
        shown = ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items()))
        p50, p99 = (f"{percentile_ms(seconds, q):.1f}" if seconds else "-" for q in (50, 99))
        print(f"| {kind} | {'yes' if valid else 'no'} | {len(seconds):,} | {p50} | {p99} | {shown} | {bad} |")
    every = [s for v in results.latencies.values() for s in v]
    by_status = sum(results.statuses.values(), Counter())
    shown = ", ".join(f"{status}: {n:,}" for status, n in sorted(by_status.items()))
    if every:
        overall = f"{percentile_ms(every, 50):.1f} | {percentile_ms(every, 99):.1f}"
        print(f"| all | | {total:,} | {overall} | {shown} | {failures} |")
    return failures


def run(base_url: str, server: Server | None, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    pool = find_pool(base_url, args.users, args.max_k, args.seed)
    print(
        f"pool: {len(pool.users)} users, {len(pool.items)} items, {len(pool.frames)} frames "
        f"({len(pool.images)} with images); warm-up {time.perf_counter() - started:.1f} s"
    )
    mix = parse_mix(args.mix, bool(pool.images))
    cpu, own = (server.cpu_seconds() if server else 0.0), time.process_time()
    results, elapsed = asyncio.run(load(base_url, pool, mix, args))
    server_cpu = f"server {server.cpu_seconds() - cpu:.1f} s, " if server else ""
    print(f"CPU time during the load: {server_cpu}clients {time.process_time() - own:.1f} s, in {elapsed:.1f} s")
    failures = print_table(results, elapsed, mix)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    if failures:
        print(f"FAILED: {failures} requests got a wrong answer, e.g.:\n  " + "\n  ".join(results.failures))
    else:
        print("OK: no 5xx, every invalid request a 4xx, every valid one 200")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="Seconds of load.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent clients (connections).")
    parser.add_argument("--mix", default=None, help="kind=weight,... (0 leaves a kind out); kinds: " + ", ".join(KINDS))
    parser.add_argument("--users", type=int, default=20, help="Known users the valid requests draw from.")
    parser.add_argument("--max-k", type=int, default=10, help="The valid requests' k is drawn from 1..max-k.")
    parser.add_argument("--timeout", type=float, default=120, help="Seconds before a request counts as failed.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", default=None, help="A running jifr serve (default: start one on --run).")
    parser.add_argument("--run", type=Path, default=None, help="Run to serve (default: the paper-scale bench run).")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--server-threads", type=int, default=None, help="torch threads of the started server.")
    args = parser.parse_args()
    threads = args.server_threads or torch.get_num_threads()
    print(
        f"load test: {args.duration:g} s, {args.clients} clients; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    if args.url is not None:
        sys.exit(run(args.url.rstrip("/"), None, args))
    run_dir = args.run or paper_run(args.work_dir)
    with jifr_serve(run_dir, args.work_dir / "serve-load.log", threads) as server:
        print(f"jifr serve {run_dir} ({threads} torch thread(s)) healthy after {server.startup_s:.1f} s")
        code = run(server.url, server, args)
    sys.exit(code)


if __name__ == "__main__":
    main()
