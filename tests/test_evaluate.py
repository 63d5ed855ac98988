"""The evaluation protocols against brute-force references and analytic expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import jifr.evaluate as evaluate
from jifr.data.prepared import PreparedData
from jifr.evaluate import evaluate_full, evaluate_keyframes, evaluate_sampled, random_keyframe_expectation
from jifr.models import ModelInputs, Recommender, build_model
from jifr.train import TrainConfig, fit


@pytest.fixture(scope="module")
def bpr(tiny: PreparedData) -> Recommender:
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    fit(model, tiny, TrainConfig(epochs=3, batch_size=256), show_progress=False)
    return model


def brute_force_full(model: Recommender, data: PreparedData, k: int) -> tuple[float, float]:
    """Per user: rank every candidate with a full sort, negatives first among ties."""
    scores = model.score_all(torch.arange(data.n_users)).detach().numpy()
    known = {(u, i) for p in ("train", "valid") for u, i in zip(data.part(p).users, data.part(p).items, strict=True)}
    hrs, ndcgs = [], []
    for u in np.unique(data.test.users):
        positives = set(data.test.items[data.test.users == u].tolist())
        candidates = [i for i in range(data.n_items) if (u, i) not in known]
        labels = np.array([i in positives for i in candidates], dtype=float)
        order = np.lexsort((labels, -scores[u, candidates]))[:k]
        hits = labels[order]
        hrs.append(hits.sum() / len(positives))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        ndcgs.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(positives)))))
    return float(np.mean(hrs)), float(np.mean(ndcgs))


def test_full_ranking_matches_brute_force(bpr: Recommender, tiny: PreparedData) -> None:
    got = evaluate_full(bpr, tiny, ks=(10,))
    hr, ndcg = brute_force_full(bpr, tiny, 10)
    assert got.n_queries == len(np.unique(tiny.test.users))
    assert math.isclose(got.metrics["HR@10"], hr, abs_tol=1e-9)
    assert math.isclose(got.metrics["NDCG@10"], ndcg, abs_tol=1e-9)


def test_chunking_does_not_change_results(
    bpr: Recommender, tiny: PreparedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = evaluate_full(bpr, tiny).metrics
    monkeypatch.setattr(evaluate, "SCORE_BUDGET", 7 * tiny.n_items)  # 7 users per chunk
    assert evaluate_full(bpr, tiny).metrics == pytest.approx(whole, abs=1e-12)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_jifr_full_ranking_prunes_and_gives_the_same_metrics(
    tiny: PreparedData, scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JIFR's full-ranking evaluation ranks by pruning (``pruned_top_k``): the same metrics, to
    the last bit, as sorting ``score_all``, and the brute-force sort's; also with P scaled up so
    that beta swings across each user's items. Small chunks: several calls, and positives and
    known items spread over them."""
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=1)
    fit(model, tiny, TrainConfig(epochs=2, batch_size=256), show_progress=False)
    with torch.no_grad():
        model.projection.weight.mul_(scale)  # type: ignore[union-attr]
    model.train().eval()  # drop the item cache
    monkeypatch.setattr(evaluate, "SCORE_BUDGET", 9 * tiny.n_items)
    calls: list[int] = []
    real = model.pruned_top_k

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(model, "pruned_top_k", counting)
    pruned = evaluate_full(model, tiny).metrics
    assert len(calls) >= 2
    monkeypatch.setattr(model, "pruned_top_k", lambda *args, **kwargs: None)
    assert evaluate_full(model, tiny).metrics == pruned
    hr, ndcg = brute_force_full(model, tiny, 10)
    assert math.isclose(pruned["HR@10"], hr, abs_tol=1e-9) and math.isclose(pruned["NDCG@10"], ndcg, abs_tol=1e-9)


def test_pruned_metrics_count_a_held_out_positive_that_is_also_known_as_the_sort_does(tiny: PreparedData) -> None:
    """Where a held-out positive is also a known item (not in jifr's own splits, but in a
    caller's), both paths leave it out of the ranking and count it as a positive."""
    model = build_model("jifr", ModelInputs.from_data(tiny), seed=2).eval()
    excluded = tiny.train.csr(tiny.n_users, tiny.n_items)
    known_held_out = excluded.multiply(np.arange(tiny.n_items)[None, :] < 3)  # the known items 0-2 held out too
    held_out = (tiny.test.csr(tiny.n_users, tiny.n_items) + known_held_out).tocsr()
    chunk = np.flatnonzero(np.diff(held_out.indptr))
    assert (held_out.multiply(excluded)).nnz > 0
    with torch.no_grad():
        scores = model.score_all(torch.as_tensor(chunk)).clone()
        known = excluded[chunk].tocoo()
        scores[torch.as_tensor(known.row, dtype=torch.long), torch.as_tensor(known.col, dtype=torch.long)] = -math.inf
        expected = evaluate._rank_held_out(scores, held_out, chunk, (1, 5, 10))
        got = evaluate._pruned_metrics(model, chunk, held_out, excluded, (1, 5, 10))
    assert got is not None and got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_sampled_protocol_is_reproducible_and_reports_spread(bpr: Recommender, tiny: PreparedData) -> None:
    a = evaluate_sampled(bpr, tiny, n_negatives=50, repeats=4, seed=3)
    b = evaluate_sampled(bpr, tiny, n_negatives=50, repeats=4, seed=3)
    assert a.metrics == b.metrics and a.details["seeds"] == [3, 4, 5, 6]
    assert a.std["HR@10"] > 0  # different negatives per repeat
    # With every never-interacted item as a candidate, the sampled protocol equals full ranking
    # restricted to never-interacted negatives; fewer negatives can only make ranking easier.
    assert a.metrics["HR@10"] >= evaluate_full(bpr, tiny).metrics["HR@10"]


def test_random_frames_match_their_analytic_expectation(tiny: PreparedData) -> None:
    expected = random_keyframe_expectation(tiny)
    runs = [
        evaluate_keyframes(build_model("rnd", ModelInputs.from_data(tiny), seed=s), tiny).metrics for s in range(30)
    ]
    n_pairs = evaluate_keyframes(build_model("rnd", ModelInputs.from_data(tiny)), tiny).n_queries
    tolerance = 4 * 0.5 / math.sqrt(30 * n_pairs)  # 4 standard errors of a mean of [0, 1] values
    for name in ("HR@1", "HR@2", "NDCG@1", "NDCG@3"):
        measured = float(np.mean([r[name] for r in runs]))
        assert abs(measured - expected[name]) < tolerance, (name, measured, expected[name])


def test_keyframe_hand_computed(tiny: PreparedData) -> None:
    """Scoring each frame by whether it is liked gives a perfect ranking; by its negation, the worst."""
    queries = evaluate.keyframe_queries(tiny)

    class Oracle(Recommender):
        name = "oracle"
        ranks_frames = True
        trainable = False
        sign = 1.0

        def score_frames(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            lookup = {
                (int(u), int(i)): row for row, (u, i) in enumerate(zip(queries.users, queries.items, strict=True))
            }
            rows = [lookup[(int(u), int(i))] for u, i in zip(users, items, strict=True)]
            liked = queries.liked[rows].float() * self.sign
            slots = torch.arange(liked.shape[1])[None, :] < queries.frame_counts[rows][:, None]
            return liked.masked_fill(~slots, float("-inf"))

    perfect = evaluate_keyframes(Oracle(), tiny).metrics
    assert perfect["HR@1"] == pytest.approx(float((1 / queries.liked.sum(1)).mean()))
    assert perfect["NDCG@1"] == 1 and perfect["NDCG@5"] == pytest.approx(1)
    worst = Oracle()
    worst.sign = -1.0
    assert evaluate_keyframes(worst, tiny).metrics["HR@1"] == 0


class Diverged(Recommender):
    """A model whose weights went NaN: every item and frame score is NaN (padding included)."""

    name = "diverged"
    ranks_frames = True
    trainable = False

    def __init__(self, data: PreparedData) -> None:
        super().__init__()
        self.n_items, self.max_frames = data.n_items, int(np.diff(data.frames.indptr).max())

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return torch.full((len(users), self.n_items), float("nan"))

    def score_frames(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.full((len(users), self.max_frames), float("nan"))


def test_nan_scores_are_misses_in_every_protocol(tiny: PreparedData) -> None:
    """A diverged model must score 0, not a perfect 1 (NaN compares False with everything)."""
    model = Diverged(tiny)
    results = [
        evaluate_full(model, tiny),
        evaluate_full(model, tiny, "valid", ks=(10,)),  # what early stopping reads
        evaluate_sampled(model, tiny, n_negatives=50, repeats=2),
        evaluate_keyframes(model, tiny),
    ]
    for result in results:
        assert result.n_queries > 0
        assert all(value == 0 for value in result.metrics.values()), (result.protocol, result.metrics)


def test_sampled_std_is_the_sample_std_over_repeats(bpr: Recommender, tiny: PreparedData) -> None:
    """Repeat r uses seed + r, so each repeat can be run alone and the spread checked by hand."""
    together = evaluate_sampled(bpr, tiny, n_negatives=50, repeats=4, seed=3)
    alone = [evaluate_sampled(bpr, tiny, n_negatives=50, repeats=1, seed=s) for s in (3, 4, 5, 6)]
    for name in ("HR@10", "NDCG@5"):
        values = [result.metrics[name] for result in alone]
        assert together.std[name] == pytest.approx(float(np.std(values, ddof=1)), abs=1e-12)
        assert together.metrics[name] == pytest.approx(float(np.mean(values)), abs=1e-12)
    assert alone[0].std["HR@10"] == 0.0  # one repeat: no spread, not NaN
    assert "ddof=1" in str(together.as_dict()["std_definition"])
    assert together.as_dict()["std"] == together.std  # the description does not shadow the values
