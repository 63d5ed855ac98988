"""Benchmark at the paper's scale: 16,166 users, 12,811 items, ~500k interactions, 10 frames
per item, 4096-d features (the synthetic ``paper`` preset).

Prints, for each model asked for (VBPR and JIFR by default): training throughput in (user,
positive, negative) triplets per second, full-ranking evaluation time over all test users, the
exact top-10 of the same users
(``jifr.ranking.top_k_items``) against a lower bound measured in the same run (a plain 64-d
matmul over every item, the known items excluded, ``torch.topk``), and peak memory; and the
machine's matmul GFLOP/s (in the training precision) with JIFR's FLOPs per training step, so
the distance to the compute limit shows as a ratio, and the time one training epoch would take;
and the time JIFR's step spends in its largest product (a step's frames through [P; W0], forward
and weight gradient), with the throughput that product alone would allow.

    python bench/bench_paper_scale.py [--work-dir runs/bench] [--steps 5] [--device cpu|cuda|auto]
        [--precision fp32|bf16] [--models vbpr,jifr]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from jifr.allocator import keep_freed_memory
from jifr.data.prepare import prepare_dataset
from jifr.data.prepared import PreparedData, load_prepared
from jifr.data.sampling import PositiveSet, sample_negatives
from jifr.datasets.synthetic import write_synthetic
from jifr.device import autocast, resolve_device
from jifr.evaluate import evaluate_full
from jifr.models import ModelInputs, Recommender, bpr_loss, build_model
from jifr.models.frames import has_onednn_linear, onednn_linear, project_frames
from jifr.ranking import top_k_items
from jifr.train import Batch

BLOCK_USERS = 1024  # users ranked per call, for both the models and the bound


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5, trials: int = 5) -> float:
    """The machine's matmul rate: the best of ``trials`` timings of ``repeats`` (n x n) products.
    The best, not one timing: on a shared machine one timing can catch a slow moment (half the
    rate has been seen), which would inflate every share printed against it. In float32 on the
    CPU, the faster of torch's two products, MKL's (``a @ b``) and oneDNN's (which JIFR's frame
    product uses, ``jifr.models.frames``): 2048^3 runs at about 190 and 215 GFLOP/s on the 2-core
    machine."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    products: list[Callable[[], object]] = [lambda: a @ b]
    if device.type == "cpu" and dtype == torch.float32 and has_onednn_linear():
        products.append(lambda: onednn_linear(a, b))
    best = float("inf")
    for product in products:
        product()
        for _ in range(trials):
            synchronize(device)
            started = time.perf_counter()
            for _ in range(repeats):
                product()
            synchronize(device)
            best = min(best, time.perf_counter() - started)
    return 2 * n**3 * repeats / best / 1e9


def peak_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def dataset(work_dir: Path) -> PreparedData:
    prepared = work_dir / "paper-prepared"
    if not (prepared / "prepared.json").exists():
        started = time.perf_counter()
        source = write_synthetic("paper", work_dir / "paper", force=True)
        print(f"generated the paper-scale set in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        prepare_dataset(source, prepared)
        print(f"prepared it in {time.perf_counter() - started:.1f} s")
    return load_prepared(prepared)


def jifr_step_flops(data: PreparedData, users: int, n_neg: int, unique_items: int, model: Recommender) -> float:
    """Multiply-adds (2 FLOPs each) one JIFR training step needs, forward and backward.

    A layer costs its forward once more in the backward for its weight gradient, and once more
    again for its input gradient. The frame features are constants, so P c_k and W0 c_k need no
    input gradient: 2x their forward. The attention and rating layers need both: 3x.
    """
    c = model.config
    frames = unique_items * float(np.mean(data.frames.counts))
    dim = data.frames.features.shape[1]
    projections = 2 * frames * dim * (c.visual_dim + c.attention_dim)  # P c_k and W0 c_k
    content = 2 * frames * ((c.collab_dim + c.attention_dim) * c.hidden_dim + c.hidden_dim)
    pairs = users * (1 + n_neg)
    rating = pairs * 2 * (2 * 2 * c.collab_dim * c.hidden_dim + 2 * c.hidden_dim + 2 * c.collab_dim)
    return 2 * projections + 3 * (content + rating)


def sample_step(
    data: PreparedData, positives: PositiveSet, rng: np.random.Generator, batch: int, n_neg: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training step's users and positives (``batch``,) and negatives (``batch``, ``n_neg``)."""
    rows = rng.integers(0, len(data.train), batch)
    users = data.train.users[rows]
    return users, data.train.items[rows], sample_negatives(users, n_neg, positives, rng)


def train_throughput(
    model: Recommender,
    data: PreparedData,
    positives: PositiveSet,
    steps: int,
    precision: str,
    batch: int = 1024,
    n_neg: int = 10,
) -> tuple[float, float]:
    """(triplets per second, mean unique items per step) over ``steps`` Adam steps after one
    warm-up, as ``jifr.train.fit`` takes them (its ``Batch`` on the model's device, the forward
    pass under the precision's autocast, freed memory kept for reuse: ``jifr.allocator``)."""
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    device = model.device
    elapsed, unique = 0.0, []
    with keep_freed_memory():
        for step in range(steps + 1):
            users, items, negatives = sample_step(data, positives, rng, batch, n_neg)
            synchronize(device)
            started = time.perf_counter()
            examples = Batch.of(users, items, negatives, None, device)
            with autocast(device, precision):
                pos, neg, penalty = model.triplet_scores(examples.users, examples.positives, examples.negatives)
                loss = bpr_loss(pos.float(), neg.float()) + penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            synchronize(device)
            if step:  # the first step pays for page faults and allocator warm-up
                elapsed += time.perf_counter() - started
                unique.append(len(np.unique(np.r_[items, negatives.ravel()])))
    return steps * batch * n_neg / elapsed, float(np.mean(unique))


def frame_product_seconds(
    model: Recommender, data: PreparedData, positives: PositiveSet, precision: str, batch: int = 1024, n_neg: int = 10
) -> tuple[float, int]:
    """(best of three seconds, frames) of the product a JIFR training step spends most of its time
    in: the frames of one step's unique items through [P; W0] (``project_frames``), forward and
    weight gradient, with the features read as a step reads them (``training_features``)."""
    _, items, negatives = sample_step(data, positives, np.random.default_rng(1), batch, n_neg)
    frames, mask = model.store.padded_frames(
        model.on_device(torch.as_tensor(np.unique(np.r_[items, negatives.ravel()])))
    )
    weights = [w.detach().requires_grad_() for w in (model.projection.weight, model.attention_input.weight)]
    device, best = model.device, float("inf")
    for _ in range(3):
        with autocast(device, precision):
            features = model.store.training_features(frames[mask])
            synchronize(device)
            started = time.perf_counter()
            sum(part.float().sum() for part in project_frames(features, *weights)).backward()
            synchronize(device)
            best = min(best, time.perf_counter() - started)
        for weight in weights:
            weight.grad = None
    return best, int(mask.sum())


def ranking_seconds(model: Recommender, data: PreparedData, users: np.ndarray, k: int = 10) -> float:
    """Seconds of the exact top-``k`` of ``users`` with their known items excluded
    (``jifr.ranking.top_k_items``, as ``jifr export`` and ``jifr serve`` rank), after a warm-up
    that builds the item cache."""
    model.eval()
    top_k_items(model, torch.as_tensor(users[:8]), k, data.n_items, data.interacted)
    synchronize(model.device)
    started = time.perf_counter()
    for block in np.array_split(users, max(1, len(users) // BLOCK_USERS)):
        top_k_items(model, torch.as_tensor(block), k, data.n_items, data.interacted)
    return time.perf_counter() - started  # top_k_items returns its answer on the CPU: nothing is queued


def bound_seconds(data: PreparedData, users: np.ndarray, device: torch.device, dim: int = 64, k: int = 10) -> float:
    """Seconds of the lower bound of any full ranking of ``users``: a plain ``dim``-d matmul over
    every item, the known items set to -inf and ``torch.topk``, in the same blocks of users, on
    ``device``, with the answer brought to the CPU as ``top_k_items`` brings it. The scores go
    into one buffer reused by every block (fresh memory's page faults would be part of the time)."""
    generator = torch.Generator().manual_seed(0)
    user_vectors = torch.randn(data.n_users, dim, generator=generator).to(device)
    item_vectors = torch.randn(data.n_items, dim, generator=generator).to(device)
    known = data.interacted
    blocks = np.array_split(users, max(1, len(users) // BLOCK_USERS))
    buffer = torch.empty(max(len(block) for block in blocks), data.n_items, device=device)
    synchronize(device)
    started = time.perf_counter()
    for block in blocks:
        block_users = user_vectors[torch.as_tensor(block, device=device)]
        scores = torch.matmul(block_users, item_vectors.T, out=buffer[: len(block)])
        rows = known[block]
        scores[
            torch.as_tensor(np.repeat(np.arange(len(block)), np.diff(rows.indptr)), device=device),
            torch.as_tensor(rows.indices, dtype=torch.long, device=device),
        ] = -float("inf")
        torch.topk(scores, k, dim=1).indices.cpu()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, cuda (or cuda:N), or auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="training's matrix products")
    parser.add_argument("--models", default="vbpr,jifr", help="comma-separated model names (jifr models)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    gflops = matmul_gflops(device, dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"machine: torch {torch.__version__}, {where}, {args.precision} matmul {gflops:.1f} GFLOP/s")
    data = dataset(args.work_dir)
    print(
        f"data: {data.n_users} users, {data.n_items} items, "
        f"{len(data.train)} train / {len(data.test)} test interactions, "
        f"{data.frames.n_frames} frames x {data.frames.features.shape[1]} ({data.frames.features.dtype})"
    )
    test_users = np.unique(data.test.users)
    bound = bound_seconds(data, test_users, device)
    print(
        f"full-ranking lower bound: 64-d matmul + known items excluded + top-10 of {len(test_users)} users "
        f"x {data.n_items} items in {bound:.2f} s"
    )
    positives = PositiveSet(data.train.csr(data.n_users, data.n_items))
    for name in args.models.split(","):
        model = build_model(name, ModelInputs.from_data(data), seed=0).place(device)
        triplets_per_s, unique_items = train_throughput(model, data, positives, args.steps, args.precision)
        started = time.perf_counter()
        result = evaluate_full(model, data, "test", ks=(10,))
        synchronize(device)
        evaluation_s = time.perf_counter() - started
        ranking_s = ranking_seconds(model, data, test_users)
        print(
            f"{name}: training {triplets_per_s:,.0f} triplets/s (batch 1024 positives x 10 negatives, "
            f"{unique_items:,.0f} unique items/step; {args.precision}; one epoch of {len(data.train) * 10:,} "
            f"triplets would take {len(data.train) * 10 / triplets_per_s:.1f} s); "
            f"full-ranking evaluation of {result.n_queries} users "
            f"x {data.n_items} items in {evaluation_s:.1f} s; exact top-10 of the same users in "
            f"{ranking_s:.2f} s = {ranking_s / bound:.1f}x the lower bound; "
            f"peak memory so far {peak_memory_gib():.2f} GiB"
            + (f", GPU {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "")
        )
        pruned = model.pruned_top_k(model.on_device(torch.as_tensor(test_users[:BLOCK_USERS])), 10, None)
        if pruned is not None:
            print(
                f"{name}: its exact top-10 ran the rating attention on {pruned.scored.double().mean():,.1f} items per "
                f"user (mean; at most {int(pruned.scored.max()):,}) of {data.n_items:,}, over the first "
                f"{len(pruned.scored):,} test users"
            )
        if name == "jifr":
            flops = jifr_step_flops(data, 1024, 10, int(unique_items), model)
            achieved = flops * triplets_per_s / (1024 * 10) / 1e9
            print(
                f"jifr: {flops / 1e9:.1f} GFLOP per training step; achieved {achieved:.1f} GFLOP/s = "
                f"{achieved / gflops:.2f} of the measured {args.precision} matmul rate"
            )
            product_s, n_frames = frame_product_seconds(model, data, positives, args.precision)
            step_s = 1024 * 10 / triplets_per_s
            print(
                f"jifr: the {n_frames:,} frames' product with [P; W0], forward and weight gradient, takes "
                f"{product_s:.3f} s of the {step_s:.3f} s step ({product_s / step_s:.0%}); steps of that product "
                f"alone would give {1024 * 10 / product_s:,.0f} triplets/s"
            )


if __name__ == "__main__":
    main()
