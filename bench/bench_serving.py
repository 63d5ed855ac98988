"""Serving latency: one user's top-10 items with their key frames, per request, in process and
over HTTP.

Each request ranks with ``jifr.ranking.top_k_items`` (exact top-K; JIFR scores exactly only the
items its bounds cannot rule out) and, next to it, by brute force (``score_all`` of every item and
a stable sort); every measured request checks that both give the same items and scores, bit for
bit. Two settings, both JIFR with random weights (the latency does not depend on training, the
share of items the bounds rule out does):

- paper: the synthetic ``paper`` preset (16,166 users, 12,811 items, 10 frames per item, 4096-d
  features), generated and prepared once under --work-dir as bench_paper_scale.py does; known
  items excluded as in ``jifr recommend``;
- 1M items: a model built directly from ModelInputs with 1,000,000 items of 2-3 frames each and
  16-d features, 1,000 users with 20 known items each.

Over HTTP, the same request (``GET /v1/users/{user}/recommendations?k=10``) goes to a real
``jifr serve`` (uvicorn) on loopback, which the bench starts on a free port for a run directory
it writes from the paper setting's model (``serving_process.write_run``: checkpoint.json,
model.safetensors and data/ with the prepared files hard-linked), or which runs at --http-url.
Requests are sequential over one keep-alive connection; a request's time runs from sending it to
having read the whole answer (not parsing it). The answer holds more than the in-process request
computes: every frame of each item with its score, in the user's and the mean user's order.
Its items and scores must equal the in-process exact top-K. The first request of a user whose
items the server has not answered before also computes those items' mean-user frame orders (a
table filled as items are first asked for); those first requests are reported apart.

    OMP_NUM_THREADS=1 python bench/bench_serving.py [--work-dir runs/bench] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import scipy.sparse as sp
import torch
from bench_paper_scale import dataset
from serving_process import RUN_NAME, Server, jifr_serve, paper_model, write_run

from jifr.data.prepared import Interactions, ItemFrames, PreparedData
from jifr.export import key_frames
from jifr.models import ModelInputs, Recommender, build_model
from jifr.models.base import PrunedTopK
from jifr.ranking import top_k_items

Answer = tuple[torch.Tensor, torch.Tensor]  # (k,) scores and (k,) items of one request


@dataclass
class Setting:
    name: str
    model: Recommender
    frames: ItemFrames
    exclude: sp.csr_matrix
    n_items: int
    users: np.ndarray  # the users of the measured requests (indices)
    user_ids: list[str]  # and their raw ids
    data: PreparedData | None = None  # the prepared data, where the setting can be served


@torch.no_grad()
def exact_request(s: Setting, user: int, k: int) -> Answer:
    values, items = top_k_items(s.model, torch.tensor([user]), k, s.n_items, s.exclude)
    kept = items[0][items[0] >= 0]
    key_frames(s.model, s.frames, torch.full((len(kept),), user), kept)
    return values[0], items[0]


@torch.no_grad()
def brute_force_request(s: Setting, user: int, k: int) -> Answer:
    scores = s.model.score_all(torch.tensor([user]))[0].clone()
    scores[scores.isnan()] = -float("inf")
    scores[torch.as_tensor(s.exclude[user].indices, dtype=torch.long)] = -float("inf")
    order = torch.argsort(scores, descending=True, stable=True)[:k]
    values = scores[order]
    items = torch.where(values > -float("inf"), order, -1)
    kept = items[items >= 0]
    key_frames(s.model, s.frames, torch.full((len(kept),), user), kept)
    return values, items


def timed(
    request: Callable[[Setting, int, int], Answer], s: Setting, user: int, k: int
) -> tuple[tuple[float, float], Answer]:
    """(wall-clock seconds, CPU seconds of the process) of one request, and its answer. On a busy
    machine the CPU time is close to what the request takes when it has a core to itself."""
    wall, cpu = time.perf_counter(), time.process_time()
    answer = request(s, user, k)
    return (time.perf_counter() - wall, time.process_time() - cpu), answer


def attention_pairs(s: Setting, k: int) -> float:
    """Mean items per request whose rating attention runs (untimed pass; 0 for a model that
    ranks without pruning)."""
    real = s.model.pruned_top_k
    scored: list[int] = []

    def counting(users: torch.Tensor, k: int, excluded: tuple[torch.Tensor, torch.Tensor] | None) -> PrunedTopK | None:
        pruned = real(users, k, excluded)
        scored.append(int(pruned.scored.sum()) if pruned is not None else 0)
        return pruned

    s.model.pruned_top_k = counting  # type: ignore[method-assign]
    try:
        for user in s.users:
            exact_request(s, int(user), k)
    finally:
        del s.model.pruned_top_k
    return sum(scored) / len(s.users)


def measure(s: Setting, k: int) -> dict[str, float]:
    """p50 / p99 wall-clock and CPU milliseconds of both methods over the setting's users (taking
    turns at going first), and how many answers were equal."""
    s.model.eval()
    exact_request(s, int(s.users[0]), k)  # builds the item cache; not measured
    times: dict[str, list[tuple[float, float]]] = {"exact": [], "brute": []}
    equal = 0
    for i, user in enumerate(s.users.tolist()):
        order = ["exact", "brute"] if i % 2 else ["brute", "exact"]
        answers = []
        for name in order:
            seconds, answer = timed(exact_request if name == "exact" else brute_force_request, s, user, k)
            times[name].append(seconds)
            answers.append(answer)
        equal += torch.equal(answers[0][0], answers[1][0]) and torch.equal(answers[0][1], answers[1][1])
    out: dict[str, float] = {"equal": equal, "pairs": attention_pairs(s, k)}
    for name, pairs in times.items():
        ms = 1e3 * np.asarray(pairs)  # (requests, 2): wall, CPU
        for q in (50, 99):
            out[f"{name}_p{q}"], out[f"{name}_cpu_p{q}"] = np.percentile(ms, q, axis=0).tolist()
    return out


def paper_setting(work_dir: Path, requests: int, rng: np.random.Generator) -> Setting:
    data = dataset(work_dir)
    model = paper_model(data)
    users = rng.choice(data.n_users, size=min(requests, data.n_users), replace=False)
    ids = [str(u) for u in data.user_ids[users]]
    return Setting("paper", model, data.frames, data.interacted, data.n_items, users, ids, data)


def million_setting(n_items: int, requests: int, rng: np.random.Generator) -> Setting:
    """JIFR on ``n_items`` items of 2-3 frames (16-d features) and 1,000 users with 20 known items."""
    n_users, dim, known = 1000, 16, 20
    counts = rng.integers(2, 4, n_items)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    features = rng.standard_normal((int(indptr[-1]), dim), dtype=np.float32)
    users = np.repeat(np.arange(n_users), known).astype(np.int64)
    items = rng.integers(0, n_items, n_users * known).astype(np.int64)
    train = Interactions(users, items)
    model = build_model("jifr", ModelInputs(n_users, n_items, ItemFrames(indptr, features), train), seed=0)
    exclude = train.csr(n_users, n_items)
    requested = rng.choice(n_users, size=min(requests, n_users), replace=False)
    ids = [str(u) for u in requested]
    return Setting(f"{n_items:,} items", model, ItemFrames(indptr, features), exclude, n_items, requested, ids)


# ---- over HTTP: the same request against the service (jifr serve) --------------------------------
HttpAnswer = tuple[list[str], list[float]]  # the item ids and scores of one answer


def http_latencies(base_url: str, user_ids: list[str], k: int) -> tuple[np.ndarray, list[HttpAnswer]]:
    """Seconds of each request for one user's top-``k`` with key frames from the service at
    ``base_url``, one request per user id, sequential over one keep-alive connection (opened
    before the first), from sending to having read the whole answer; and each answer."""
    seconds, answers = [], []
    with httpx.Client(base_url=base_url, timeout=600) as client:
        client.get("/v1/health").raise_for_status()
        for user in user_ids:
            started = time.perf_counter()
            response = client.get(f"/v1/users/{quote(user, safe='')}/recommendations", params={"k": k})
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            items = response.json()["items"]
            answers.append(([item["item_id"] for item in items], [item["score"] for item in items]))
    return np.asarray(seconds), answers


def health_latencies(base_url: str, n: int) -> np.ndarray:
    """Seconds of ``n`` sequential GET /v1/health: the HTTP stack alone, for comparison."""
    seconds = []
    with httpx.Client(base_url=base_url) as client:
        client.get("/v1/health").raise_for_status()
        for _ in range(n):
            started = time.perf_counter()
            client.get("/v1/health").raise_for_status()
            seconds.append(time.perf_counter() - started)
    return np.asarray(seconds)


def in_process_answer(s: Setting, user: int, k: int) -> HttpAnswer:
    """The exact top-K of ``user`` as the service should answer it (raw item ids, scores)."""
    assert s.data is not None
    values, items = exact_request(s, user, k)
    kept = items >= 0
    return [str(i) for i in s.data.item_ids[items[kept].numpy()]], values[kept].tolist()


def measure_http(s: Setting, url: str, server: Server | None, n_users: int, rounds: int, k: int) -> dict[str, float]:
    """Latency over HTTP for ``n_users`` of the setting's users: their first requests, then
    ``rounds - 1`` more rounds; how many answers equal the in-process exact top-K; and, for a
    server the bench started, its mean CPU time per request."""
    users, ids = s.users[:n_users].tolist(), s.user_ids[:n_users]
    expected = [in_process_answer(s, user, k) for user in users]
    cpu = [server.cpu_seconds()] if server else []
    first, first_answers = http_latencies(url, ids, k)
    cpu += [server.cpu_seconds()] if server else []
    repeated, answers = http_latencies(url, ids * (rounds - 1), k)
    cpu += [server.cpu_seconds()] if server else []
    health = health_latencies(url, len(repeated))
    cpu += [server.cpu_seconds()] if server else []
    out = {
        "users": len(ids),
        "requests": len(first) + len(repeated),
        "equal": sum(a == e for a, e in zip(first_answers + answers, expected * rounds, strict=True)),
        "first_p50": 1e3 * float(np.percentile(first, 50)),
        "first_max": 1e3 * float(first.max()),
        "repeated": len(repeated),
        "http_p50": 1e3 * float(np.percentile(repeated, 50)),
        "http_p99": 1e3 * float(np.percentile(repeated, 99)),
        "health_p50": 1e3 * float(np.percentile(health, 50)),
        "health_p99": 1e3 * float(np.percentile(health, 99)),
    }
    if server:
        out["server_cpu_first"] = 1e3 * (cpu[1] - cpu[0]) / len(first)
        out["server_cpu"] = 1e3 * (cpu[2] - cpu[1]) / len(repeated)
        out["server_cpu_health"] = 1e3 * (cpu[3] - cpu[2]) / len(health)
    return out


def serve_and_measure(paper: Setting, args: argparse.Namespace) -> dict[str, float]:
    """Measure over HTTP: at --http-url, or against ``jifr serve`` started on the paper setting's run."""
    measuring = (args.http_users, args.http_rounds, args.k)
    if args.http_url is not None:
        return measure_http(paper, args.http_url, None, *measuring)
    assert paper.data is not None
    started = time.perf_counter()
    run_dir = write_run(args.work_dir / RUN_NAME, paper.model, paper.data)
    print(f"{run_dir}: run directory written in {time.perf_counter() - started:.1f} s")
    with jifr_serve(run_dir, args.work_dir / "serve.log", args.server_threads) as server:
        print(
            f"jifr serve ({args.server_threads} thread(s)) answered /v1/health at {server.url} "
            f"{server.startup_s:.1f} s after starting"
        )
        return measure_http(paper, server.url, server, *measuring)


def print_table(rows: list[tuple[Setting, dict[str, float]]], k: int, http: dict[str, float] | None = None) -> None:
    print(f"Per request: one user's top-{k} items with their key frames. ms: wall clock p50 / p99 (CPU p50 / p99).")
    header = (
        "| setting | items | requests | exact top-K ms | brute force ms | brute / exact (p50) "
        "| same answer | attention pairs / request |"
    )
    print(header)
    print("|" + " --- |" * (header.count(" | ") + 1))
    for s, m in rows:
        exact, brute = (
            f"{m[f'{n}_p50']:.2f} / {m[f'{n}_p99']:.2f} ({m[f'{n}_cpu_p50']:.2f} / {m[f'{n}_cpu_p99']:.2f})"
            for n in ("exact", "brute")
        )
        print(
            f"| {s.name} | {s.n_items:,} | {len(s.users)} | {exact} | {brute} | "
            f"{m['brute_p50'] / m['exact_p50']:.1f}x | {m['equal']}/{len(s.users)} | {m['pairs']:,.0f} |"
        )
        if http is not None and s.data is not None:
            cpu = f" (server CPU mean {http['server_cpu']:.2f})" if "server_cpu" in http else ""
            print(
                f"| {s.name}, over HTTP | {s.n_items:,} | {http['repeated']:.0f} | "
                f"{http['http_p50']:.2f} / {http['http_p99']:.2f}{cpu} | as above | "
                f"{m['brute_p50'] / http['http_p50']:.1f}x | {http['equal']:.0f}/{http['requests']:.0f} | "
                f"{m['pairs']:,.0f} |"
            )
    if http is not None:
        cpu = f" (server CPU mean {http['server_cpu_first']:.1f})" if "server_cpu_first" in http else ""
        print(
            f"Over HTTP: {http['users']:.0f} users, {http['repeated']:.0f} repeated requests timed above (same answer "
            f"counts all {http['requests']:.0f}). Each user's first request, which also fills the mean user's "
            f"frame orders of items not answered before: p50 {http['first_p50']:.1f} ms, max "
            f"{http['first_max']:.1f} ms{cpu}."
        )
        cpu = f" (server CPU mean {http['server_cpu_health']:.2f})" if "server_cpu_health" in http else ""
        print(
            f"GET /v1/health over HTTP, the same number of requests: {http['health_p50']:.2f} / "
            f"{http['health_p99']:.2f} ms{cpu}."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--requests", type=int, default=200, help="Measured requests at the paper's scale.")
    parser.add_argument("--million-requests", type=int, default=50, help="Measured requests at 1M items.")
    parser.add_argument("--million-items", type=int, default=1_000_000)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument(
        "--http", action=argparse.BooleanOptionalAction, default=True, help="Measure over HTTP (jifr serve)."
    )
    parser.add_argument("--http-url", default=None, help="Measure the jifr serve running there (on the bench run).")
    parser.add_argument("--http-users", type=int, default=20, help="Users requested over HTTP.")
    parser.add_argument("--http-rounds", type=int, default=11, help="Requests of each user over HTTP.")
    parser.add_argument(
        "--server-threads", type=int, default=None, help="torch threads of the started server (default: as here)."
    )
    args = parser.parse_args()
    args.server_threads = args.server_threads or torch.get_num_threads()
    rng = np.random.default_rng(0)
    print(
        f"machine: torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    rows = []
    for build in (
        lambda: paper_setting(args.work_dir, args.requests, rng),
        lambda: million_setting(args.million_items, args.million_requests, rng),
    ):
        started = time.perf_counter()
        setting = build()
        setting.model.eval().item_cache()
        print(f"{setting.name}: model and item cache ready in {time.perf_counter() - started:.1f} s")
        rows.append((setting, measure(setting, args.k)))
    http = serve_and_measure(rows[0][0], args) if args.http or args.http_url else None
    print_table(rows, args.k, http)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
