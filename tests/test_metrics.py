import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jifr.metrics import hr_ndcg, pessimistic_positions

INF = float("-inf")


def metrics(positive: list[list[float]], negative: list[list[float]], ks: tuple[int, ...]) -> dict[str, float]:
    pos, neg = torch.tensor(positive, dtype=torch.float32), torch.tensor(negative, dtype=torch.float32)
    positions = pessimistic_positions(pos, neg, max(ks))
    n_pos = (~torch.isneginf(pos)).sum(1)  # -inf pads; every other score is a real positive
    return {k: float(v[0]) for k, v in hr_ndcg(positions, n_pos, ks).items()}


def test_single_hit_at_rank_two() -> None:
    m = metrics([[0.5]], [[0.9, 0.1, 0.2]], (1, 2, 5))
    assert m["HR@1"] == 0 and m["NDCG@1"] == 0
    assert m["HR@2"] == 1 and math.isclose(m["NDCG@2"], 1 / math.log2(3))


def test_perfect_ranking_is_one() -> None:
    m = metrics([[0.9, 0.8]], [[0.1, 0.2, 0.3]], (1, 2, 3))
    assert m["HR@2"] == 1 and m["NDCG@2"] == 1 and m["NDCG@3"] == 1
    assert m["HR@1"] == 0.5 and m["NDCG@1"] == 1


def test_two_positives_hand_computed() -> None:
    # order: n(0.9) p(0.8) n(0.7) p(0.6): positives at positions 2 and 4
    m = metrics([[0.8, 0.6]], [[0.9, 0.7]], (3, 5))
    assert m["HR@3"] == 0.5 and m["HR@5"] == 1
    idcg = 1 + 1 / math.log2(3)
    assert math.isclose(m["NDCG@3"], (1 / math.log2(3)) / idcg)
    assert math.isclose(m["NDCG@5"], (1 / math.log2(3) + 1 / math.log2(5)) / idcg)


def test_ties_are_pessimistic() -> None:
    m = metrics([[0.5]], [[0.5, 0.5, 0.1]], (1, 2, 3))
    assert m["HR@2"] == 0 and m["HR@3"] == 1


def test_padding_is_ignored() -> None:
    m = metrics([[0.9, INF]], [[0.1, INF, INF]], (1,))
    assert m["HR@1"] == 1 and m["NDCG@1"] == 1


def brute_force(pos: np.ndarray, neg: np.ndarray, k: int) -> tuple[float, float]:
    """Sort all candidates, negatives first among equal scores (pessimistic), and count."""
    scores = np.r_[neg, pos]
    labels = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    order = np.lexsort((labels, -scores))
    ranked = labels[order][:k]
    dcg = sum(1 / math.log2(r + 2) for r, hit in enumerate(ranked) if hit)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(pos))))
    return ranked.sum() / len(pos), dcg / idcg


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=5),
    st.lists(st.integers(0, 6), min_size=0, max_size=12),
    st.integers(1, 8),
)
def test_matches_brute_force(pos: list[int], neg: list[int], k: int) -> None:
    p, n = np.array(pos, dtype=np.float32), np.array(neg, dtype=np.float32)
    positions = pessimistic_positions(torch.from_numpy(p)[None], torch.from_numpy(n)[None], k)
    got = hr_ndcg(positions, torch.tensor([len(p)]), (k,))
    hr, ndcg = brute_force(p, n, k)
    assert math.isclose(float(got[f"HR@{k}"][0]), hr, abs_tol=1e-9)
    assert math.isclose(float(got[f"NDCG@{k}"][0]), ndcg, abs_tol=1e-9)


NAN, POS_INF = float("nan"), float("inf")


def test_non_finite_positive_is_a_miss() -> None:
    # Before: comparisons with NaN are False, so a NaN positive had no negative above it: a hit.
    assert metrics([[NAN]], [[0.1, 0.2]], (1, 3)) == {"HR@1": 0, "NDCG@1": 0, "HR@3": 0, "NDCG@3": 0}
    assert metrics([[POS_INF]], [[0.1, 0.2]], (3,))["HR@3"] == 0


def test_nan_negative_ranks_above_every_positive() -> None:
    m = metrics([[0.9, 0.8]], [[NAN, 0.1]], (1, 2, 3))
    assert m["HR@1"] == 0 and m["HR@2"] == 0.5 and m["HR@3"] == 1


def test_broken_positive_does_not_push_real_positives_down() -> None:
    pos = torch.tensor([[NAN, 0.9]])
    positions = pessimistic_positions(pos, torch.tensor([[0.1]]), 5)
    got = hr_ndcg(positions, torch.tensor([2]), (1,))
    assert float(got["HR@1"][0]) == 0.5  # the finite positive is first; the NaN one counts as a miss


def test_all_nan_scores_give_zero() -> None:
    m = metrics([[NAN, NAN]], [[NAN, NAN, INF]], (1, 5))
    assert all(v == 0 for v in m.values()), m


def test_negative_infinity_still_means_padding() -> None:
    m = metrics([[0.5, INF]], [[INF, INF, 0.1]], (1,))
    assert m["HR@1"] == 1


NEG_INF = float("-inf")


@pytest.mark.parametrize("k_max", [1, 3, 10, 40])
def test_positions_count_nan_negatives_as_above_everything_however_many(k_max: int) -> None:
    """Rows with no NaN negative, fewer NaN than k_max, and more; ties, infinities and padding:
    each position up to k_max is 1 + the negatives (NaN as +inf) at or above the positive + the
    better positives, counted one by one."""
    generator = torch.Generator().manual_seed(k_max)
    negative = torch.randint(-3, 4, (24, 30), generator=generator).double()  # many ties
    cells = torch.rand(24, 30, generator=generator)
    nan_share = torch.linspace(0, 0.9, 24)[:, None]  # from no NaN to most of the row
    negative[cells < nan_share] = NAN
    negative[(cells > 0.95)] = POS_INF
    negative[(cells > 0.9) & (cells <= 0.95)] = NEG_INF
    positive = torch.randint(-3, 4, (24, 4), generator=generator).double()
    positive[:, 3] = NEG_INF  # padding
    positive[::5, 2] = NAN
    got = pessimistic_positions(positive, negative, k_max)
    for row in range(24):
        above_all = negative[row].nan_to_num(nan=POS_INF, posinf=POS_INF, neginf=NEG_INF)
        real = sorted((NEG_INF if math.isnan(v) else v for v in positive[row].tolist()), reverse=True)
        for rank, value in enumerate(real):
            if value == NEG_INF:  # padding, and broken positives, which sort last
                assert got[row, rank] == POS_INF
                continue
            expected = 1 + int((above_all >= value).sum()) + rank
            assert min(float(got[row, rank]), k_max + 1) == min(expected, k_max + 1)
