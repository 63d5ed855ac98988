"""jifr against Cornac (https://cornac.preferred.ai): BPR against BPR and VBPR against VBPR on
the same split, every model scored by jifr's own full-ranking evaluation.

Cornac's models fit on a cornac Dataset built from jifr's prepared training split with jifr's
user and item indices as ids (identity maps), so both libraries see the same training
interactions; Cornac's VBPR gets the item features jifr's VBPR uses (each item's mean frame
feature, FrameStore.item_means). Cornac's learned factors are wrapped in a small jifr
Recommender (checked against Cornac's own ``score``), so accuracy is ``evaluate_full`` on the
test split for both: every item is a candidate except the user's training and validation
positives.

Every round trains each contender from scratch to its fixed number of epochs (timed: the
training call only, without validation) and evaluates it; the libraries alternate (jifr first in
even rounds, Cornac first in odd ones) so that drifting load hits both. Round r uses seed r.
Printed: median wall time over rounds, triplets/s and positives/s at that median, and mean
NDCG@10 / HR@10 over rounds, then the ratios jifr / Cornac.

A positive is one training interaction; each brings its negatives. jifr samples ``negatives``
per positive (10 by default); Cornac one. Cornac's BPR draws its samples with replacement and
skips a sample whose negative is a positive; only the samples it processed are counted.

Settings are KEY=VALUE lists: ``epochs``, ``lr``, ``batch`` (positives per step) and, for jifr,
``negatives`` and ``optimizer`` (``adam``, the default, or ``sgd``: BPR's per-sample SGD loop
compiled with numba, ``pip install -e '.[sgd]'``, where ``batch`` does not apply), for Cornac
``threads`` (its BPR's OpenMP threads; default ``--threads``); other keys go to the model
(jifr: its config, as with ``--set``, e.g. ``l2``; Cornac: the constructor, e.g. ``k``,
``lambda_reg``, ``use_bias``, ``lambda_w``). ``--jifr-bpr``, ``--cornac-bpr`` and the vbpr
ones may be repeated to compare several settings in the same run. The sgd loop is compiled (or
loaded from numba's cache) once before the rounds; that time is printed, not counted.
``--part valid`` scores every contender on the validation split instead, for choosing settings
without looking at the test split.

    pip install -e '.[bench]'
    OMP_WAIT_POLICY=PASSIVE python bench/bench_vs_cornac.py --dataset ml100k \\
        --source runs/real/movielens-100k-posters [--threads 2] [--rounds 3]
    OMP_WAIT_POLICY=PASSIVE python bench/bench_vs_cornac.py --dataset paper --rounds 1
    OMP_WAIT_POLICY=PASSIVE python bench/bench_vs_cornac.py --models bpr --threads 1 \\
        --jifr-bpr epochs=100,lr=0.02,negatives=1,l2=0.02,optimizer=sgd \\
        --cornac-bpr epochs=200,lr=0.01,k=32,lambda_reg=0.01,use_bias=true,threads=1 \\
        --cornac-bpr epochs=200,lr=0.01,k=32,lambda_reg=0.01,use_bias=true,threads=2
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jifr.data.prepare import prepare_dataset
from jifr.data.prepared import Interactions, PreparedData, load_prepared
from jifr.evaluate import evaluate_full
from jifr.models import ModelInputs, Recommender, build_model
from jifr.models.frames import FrameStore
from jifr.train import TrainConfig, fit

KS = (10,)
TRAIN_KEYS = ("epochs", "lr", "batch", "negatives", "optimizer", "threads")

# The settings of the README table, 32 dimensions everywhere (VBPR: 32 collaborative + 32 visual).
# Learning rates were tuned a little for each library and model on the validation split, and the
# epochs are where validation NDCG@10 reached its plateau; on the synthetic paper-scale set every
# model's NDCG@10 stays below 0.01 and the curves are flat after the epochs given. The first
# jifr entry is jifr's defaults; the others are settings a user picks with `jifr train`
# (--negatives, --batch-size, --lr, --set l2=..., --optimizer sgd). The sgd entries reach
# Cornac's validation NDCG@10 and HR@10 (mean of seeds 0-2 on MovieLens, seed 0 on the paper
# set) in the fewest epochs among a grid of lr 0.01-0.1, l2 0.003-0.1, 1 or 3 negatives.
DEFAULTS: dict[str, dict[str, dict[str, list[str]]]] = {
    "ml100k": {
        "bpr": {
            "jifr": [
                "epochs=15,lr=0.005,batch=1024,negatives=10",
                "epochs=15,lr=0.01,batch=1024,negatives=10,l2=0.01",
                "epochs=30,lr=0.005,batch=1024,negatives=1,l2=0.01",
                "epochs=25,lr=0.01,batch=4096,negatives=1,l2=0.01",
                "epochs=100,lr=0.02,negatives=1,l2=0.02,optimizer=sgd",
            ],
            "cornac": ["epochs=200,lr=0.01,k=32,lambda_reg=0.01,use_bias=true"],
        },
        "vbpr": {
            "jifr": ["epochs=10,lr=0.005,batch=1024,negatives=10", "epochs=25,lr=0.002,batch=1024,negatives=1"],
            "cornac": ["epochs=15,lr=0.001,batch=100,k=32,k2=32"],
        },
    },
    "paper": {
        "bpr": {
            "jifr": [
                "epochs=10,lr=0.005,batch=1024,negatives=10",
                "epochs=10,lr=0.005,batch=1024,negatives=10,l2=0.01",
                "epochs=30,lr=0.005,batch=1024,negatives=1,l2=0.01",
                "epochs=60,lr=0.05,negatives=1,l2=0.05,optimizer=sgd",
            ],
            "cornac": ["epochs=140,lr=0.01,k=32,lambda_reg=0.01,use_bias=true"],
        },
        "vbpr": {
            "jifr": ["epochs=3,lr=0.005,batch=1024,negatives=10", "epochs=6,lr=0.002,batch=1024,negatives=1"],
            "cornac": ["epochs=4,lr=0.001,batch=100,k=32,k2=32"],
        },
    },
}


def parse_settings(text: str) -> dict[str, Any]:
    """``"epochs=20,lr=0.01,use_bias=false"`` -> {"epochs": 20, "lr": 0.01, "use_bias": False}."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"settings are KEY=VALUE separated by commas, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    if "epochs" not in out or "lr" not in out:
        raise ValueError(f"settings need at least epochs and lr, got {text!r}")
    return out


class FactorScores(Recommender):
    """Scores b_i + x_u . y_i from another library's learned factors, so that jifr's evaluation
    ranks them exactly as it ranks its own models."""

    name = "factors"
    trainable = False

    def __init__(self, users: np.ndarray, items: np.ndarray, item_bias: np.ndarray) -> None:
        super().__init__()
        self.users = torch.as_tensor(np.asarray(users, dtype=np.float32))  # (n_users, d)
        self.items = torch.as_tensor(np.asarray(items, dtype=np.float32))  # (n_items, d)
        self.item_bias = torch.as_tensor(np.asarray(item_bias, dtype=np.float32).ravel())  # (n_items,)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.item_bias[items] + (self.users[users] * self.items[items]).sum(-1)

    def score_all(self, users: Tensor) -> Tensor:
        return self.item_bias[None, :] + self.users[users] @ self.items.T


@dataclass
class Contender:
    """One library's settings for one model, with what its rounds measured."""

    library: str  # "jifr" or "cornac"
    model: str  # "bpr" or "vbpr"
    settings: dict[str, Any]
    seconds: list[float] = field(default_factory=list)
    positives: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)

    @property
    def negatives(self) -> int:
        return int(self.settings.get("negatives", 10)) if self.library == "jifr" else 1

    @property
    def optimizer(self) -> str:
        return str(self.settings.get("optimizer", "adam"))

    @property
    def label(self) -> str:
        shown = {k: v for k, v in self.settings.items()} | {"negatives": self.negatives}
        return ",".join(f"{k}={v}" for k, v in shown.items())

    def summary(self) -> dict[str, float]:
        """Median wall time, the rates at that median and mean accuracy over the rounds."""
        middle = int(np.argsort(self.seconds)[(len(self.seconds) - 1) // 2])
        seconds, positives = self.seconds[middle], self.positives[middle]
        out = {
            "seconds": seconds,
            "positives/s": positives / seconds,
            "triplets/s": positives * self.negatives / seconds,
        }
        return out | {name: float(np.mean([m[name] for m in self.metrics])) for name in self.metrics[0]}


def without_validation(data: PreparedData) -> PreparedData:
    """``data`` with an empty validation split: jifr's ``fit`` then trains without evaluating and
    keeps the last epoch, as Cornac does (the test evaluation still excludes validation items)."""
    empty = np.zeros(0, dtype=np.int64)
    return dataclasses.replace(data, valid=Interactions(empty, empty))


def train_jifr(c: Contender, data: PreparedData, seed: int) -> tuple[Recommender, int, float]:
    """(trained model, positives processed, seconds in ``fit``)."""
    overrides = {k: v for k, v in c.settings.items() if k not in TRAIN_KEYS}
    model = build_model(c.model, ModelInputs.from_data(data), overrides, seed=seed)
    s = c.settings
    config = TrainConfig(s["epochs"], s.get("batch", 1024), c.negatives, s["lr"], seed, optimizer=c.optimizer)
    started = time.perf_counter()
    fit(model, without_validation(data), config, show_progress=False)
    return model, config.epochs * len(data.train), time.perf_counter() - started


def cornac_dataset(data: PreparedData, features: np.ndarray | None) -> Any:
    """A cornac Dataset of jifr's training split, ids = jifr's indices, with the item features."""
    from cornac.data import Dataset, ImageModality

    def identity(n: int) -> collections.OrderedDict[int, int]:
        return collections.OrderedDict((i, i) for i in range(n))

    ratings = np.ones(len(data.train))
    uir = (data.train.users.astype(np.int64), data.train.items.astype(np.int64), ratings)
    train_set = Dataset(data.n_users, data.n_items, identity(data.n_users), identity(data.n_items), uir)
    if features is not None:
        train_set.add_modalities(item_image=ImageModality(features=features, normalized=False))
    train_set.matrix, train_set.dok_matrix  # noqa: B018 -- built once here, outside the timed fits
    return train_set


def train_cornac(c: Contender, train_set: Any, threads: int, seed: int) -> tuple[Recommender, int, float]:
    """(Cornac's factors as a jifr Recommender, positives processed, seconds in ``fit``)."""
    import cornac
    from cornac.utils import get_rng

    s = c.settings
    options = {k: v for k, v in s.items() if k not in TRAIN_KEYS}
    skipped: list[int] = []
    train_set.seed = seed
    if c.model == "bpr":
        model = cornac.models.BPR(
            max_iter=s["epochs"],
            learning_rate=s["lr"],
            num_threads=s.get("threads", threads),
            seed=None,
            verbose=False,
            **options,
        )
        model.rng = get_rng(seed)  # seeded initialisation; seed=... itself would force one thread
        fit_sgd = model._fit_sgd

        def counted(*args: Any) -> tuple[int, int]:
            correct, skip = fit_sgd(*args)
            skipped.append(int(skip))
            return correct, skip

        model._fit_sgd = counted
    else:
        model = cornac.models.VBPR(
            n_epochs=s["epochs"],
            learning_rate=s["lr"],
            batch_size=s.get("batch", 100),
            seed=seed,
            verbose=False,
            **options,
        )
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # VBPR prints "Optimization finished!"
        model.fit(train_set)
    seconds = time.perf_counter() - started
    positives = s["epochs"] * train_set.num_ratings - sum(skipped)
    if c.model == "bpr":
        scores = FactorScores(model.u_factors, model.i_factors, model.i_biases)
    else:
        users = np.hstack([model.gamma_user, model.theta_user])
        items = np.hstack([model.gamma_item, model.theta_item])
        scores = FactorScores(users, items, model.beta_item + model.visual_bias)
    check_scores(model, scores)
    return scores, positives, seconds


def check_scores(model: Any, scores: FactorScores) -> None:
    """The adapter's scores are Cornac's own (a few users)."""
    for user in (0, len(scores.users) // 2, len(scores.users) - 1):
        ours = scores.score_all(torch.tensor([user]))[0].numpy()
        np.testing.assert_allclose(ours, model.score(user), rtol=1e-4, atol=1e-4)


def warm_up_sgd(contenders: list[Contender]) -> None:
    """Compile jifr's SGD loop (or load it from numba's cache) before anything is timed, as
    Cornac's is compiled ahead; prints the seconds it took."""
    if not any(c.library == "jifr" and c.optimizer == "sgd" for c in contenders):
        return
    started = time.perf_counter()
    from jifr.sgd import bpr_sgd_epoch

    factors, rows = np.zeros((1, 1), np.float32), np.zeros(0, np.int64)  # the types fit passes, no triplet
    bpr_sgd_epoch(factors, factors.copy(), rows, rows, rows[:, None], 0.1, 0.1)
    print(f"jifr's sgd loop compiled or loaded from numba's cache in {time.perf_counter() - started:.2f} s")


def run_rounds(
    contenders: list[Contender], data: PreparedData, train_set: Any, threads: int, rounds: int, part: str
) -> None:
    """Train and evaluate (on ``part``) every contender once per round, alternating the order of
    the libraries."""
    warm_up_sgd(contenders)
    for r in range(rounds):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            if c.library == "jifr":
                model, positives, seconds = train_jifr(c, data, seed=r)
            else:
                model, positives, seconds = train_cornac(c, train_set, threads, seed=r)
            c.seconds.append(seconds)
            c.positives.append(positives)
            c.metrics.append(evaluate_full(model, data, part, ks=KS).metrics)
            m = c.metrics[-1]
            print(
                f"  round {r} {c.library} {c.model} [{c.label}]: {seconds:.2f} s, "
                f"{positives / seconds:,.0f} positives/s, NDCG@10 {m['NDCG@10']:.4f}, HR@10 {m['HR@10']:.4f}",
                flush=True,
            )


def print_table(model: str, contenders: list[Contender], part: str) -> None:
    print(f"\n{model}: median over rounds (accuracy on the {part} split: mean)")
    print("| library | settings | wall s | triplets/s | positives/s | NDCG@10 | HR@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in contenders:
        s = c.summary()
        print(
            f"| {c.library} | {c.label} | {s['seconds']:.2f} | {s['triplets/s']:,.0f} | {s['positives/s']:,.0f} "
            f"| {s['NDCG@10']:.4f} | {s['HR@10']:.4f} |"
        )
    for cornac in (c for c in contenders if c.library == "cornac"):
        reference = cornac.summary()
        for c in contenders:
            if c.library == "jifr":
                s = c.summary()
                ratios = ", ".join(
                    f"{name} x{s[name] / reference[name]:.3g}"
                    for name in ("triplets/s", "positives/s", "seconds", "NDCG@10", "HR@10")
                )
                print(f"jifr [{c.label}] / cornac [{cornac.label}]: {ratios}")


PHASES = {  # (file suffix, function) of the calls each phase of a jifr training step is made of
    "negative sampling (numpy)": [("jifr/data/sampling.py", "sample_negatives")],
    "forward: triplet_scores": [("jifr/models/bpr.py", "triplet_scores"), ("jifr/models/vbpr.py", "triplet_scores")],
    "forward: bpr_loss": [("jifr/models/base.py", "bpr_loss")],
    "backward": [("torch/_tensor.py", "backward")],
    "optimizer.step (Adam)": [("torch/optim/optimizer.py", "wrapper")],
    "optimizer.zero_grad": [("torch/optim/optimizer.py", "zero_grad")],
    "sgd loop (numba, optimizer=sgd)": [("jifr/train.py", "_sgd_epoch")],
}


def profile_jifr(c: Contender, data: PreparedData) -> None:
    """Where jifr's training time goes at ``c``'s settings: Python phases (cProfile) and torch
    operators (torch.profiler), each over one ``fit`` of ``c.settings['epochs']`` epochs."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity, profile

    train_jifr(c, data, seed=0)  # warm-up: the first fit in a process runs slower
    _, positives, seconds = train_jifr(c, data, seed=0)
    batch = len(data.train) if c.optimizer == "sgd" else c.settings.get("batch", 1024)  # sgd: a call per epoch
    steps = c.settings["epochs"] * -(-len(data.train) // batch)
    print(
        f"jifr {c.model} [{c.label}]: {seconds:.3f} s unprofiled (after a warm-up fit), "
        f"{positives / seconds:,.0f} positives/s, {steps} steps"
    )
    profiler = cProfile.Profile()
    profiler.runcall(train_jifr, c, data, 0)
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative = {(path, name): v[3] for (path, _, name), v in stats.items()}

    def total(calls: list[tuple[str, str]]) -> float:
        return sum(t for (path, name), t in cumulative.items() if any(path.endswith(f) and name == n for f, n in calls))

    epoch = total([("jifr/train.py", "_train_epoch")])
    fit_s = total([("jifr/train.py", "fit")])
    print(f"cProfile (adds overhead to Python calls): fit {fit_s:.3f} s, of which the epochs {epoch:.3f} s")
    print("| phase | s | us per step | share of the epochs |")
    print("| --- | --- | --- | --- |")
    shown = 0.0
    for phase, calls in PHASES.items():
        t = total(calls)
        shown += t
        print(f"| {phase} | {t:.3f} | {t / steps * 1e6:,.0f} | {t / epoch:.1%} |")
    print(
        f"| rest of the loop (permutation, batching, loss.item, progress) | {epoch - shown:.3f} | "
        f"{(epoch - shown) / steps * 1e6:,.0f} | {(epoch - shown) / epoch:.1%} |"
    )
    with profile(activities=[ProfilerActivity.CPU]) as operators:
        train_jifr(c, data, seed=0)
    print(operators.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def load_data(dataset: str, source: Path, work_dir: Path) -> PreparedData:
    if dataset == "paper":
        from bench_paper_scale import dataset as paper_dataset  # the same cached set as that benchmark

        return paper_dataset(work_dir)
    prepared = work_dir / "ml100k-prepared"
    if not (prepared / "prepared.json").exists():
        prepare_dataset(source, prepared)  # 5-core, random 70/10/20 split, seed 0: jifr's defaults
    return load_prepared(prepared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DEFAULTS), default="ml100k")
    parser.add_argument("--source", type=Path, default=Path("runs/real/movielens-100k-posters"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--models", default="bpr,vbpr")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--part", choices=("test", "valid"), default="test", help="the split every model is scored on")
    parser.add_argument(
        "--profile", metavar="KEY=VALUE,...", help="profile jifr's BPR at these settings instead of comparing"
    )
    for library in ("jifr", "cornac"):
        for model in ("bpr", "vbpr"):
            parser.add_argument(f"--{library}-{model}", action="append", metavar="KEY=VALUE,...")
    args = parser.parse_args()
    try:
        import cornac
    except ImportError:
        raise SystemExit("this benchmark needs Cornac: pip install -e '.[bench]'") from None

    torch.set_num_threads(args.threads)
    print(
        f"threads: {args.threads} (torch intra-op, Cornac BPR's OpenMP); torch {torch.__version__}, "
        f"cornac {cornac.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    data = load_data(args.dataset, args.source, args.work_dir)
    print(
        f"data: {args.dataset}, {data.n_users} users, {data.n_items} items, {len(data.train)} train / "
        f"{len(data.valid)} valid / {len(data.test)} test interactions"
    )
    if args.profile:
        profile_jifr(Contender("jifr", "bpr", parse_settings(args.profile)), data)
        return
    for model in args.models.split(","):
        features = FrameStore(data.frames).item_means().numpy() if model == "vbpr" else None
        train_set = cornac_dataset(data, features)
        contenders = [
            Contender(library, model, parse_settings(text))
            for library in ("jifr", "cornac")
            for text in getattr(args, f"{library}_{model}") or DEFAULTS[args.dataset][model][library]
        ]
        run_rounds(contenders, data, train_set, args.threads, args.rounds, args.part)
        print_table(model, contenders, args.part)


if __name__ == "__main__":
    main()
