"""top_k_items is exact: it equals a stable descending sort of score_all with the excluded items
removed, for every model that ranks items, ties included (planted on purpose)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jifr import parallel, ranking
from jifr.data.prepared import Interactions, ItemFrames
from jifr.models import MODELS, ModelInputs, Recommender, build_model
from jifr.models import jifr as jifr_module
from jifr.ranking import top_k_items

N_USERS, N_GROUPS, COPIES, DIM = 9, 12, 3, 6
N_ITEMS = N_GROUPS * COPIES  # items COPIES*g .. COPIES*g + COPIES-1 are copies of each other
RANKING_MODELS = [name for name, spec in MODELS.items() if spec.model.ranks_items]  # type: ignore[attr-defined]
KS = (1, 2, 4, 7, N_ITEMS, N_ITEMS + 5)
INF = float("inf")


def random_inputs(seed: int = 0, n_groups: int = N_GROUPS, copies: int = COPIES) -> ModelInputs:
    """Items in groups of ``copies`` with identical frames (1-3 per item, 6-d features); every
    user has 4 training items."""
    rng = np.random.default_rng(seed)
    frames_per_group = rng.integers(1, 4, n_groups)
    frames_per_group[0] = 2  # so that n_frames != n_items
    group_features = [rng.normal(size=(n, DIM)).astype(np.float32) for n in frames_per_group]
    features = np.concatenate([group_features[g] for g in range(n_groups) for _ in range(copies)])
    counts = np.repeat(frames_per_group, copies)
    frames = ItemFrames(np.r_[0, np.cumsum(counts)].astype(np.int64), features)
    users = np.repeat(np.arange(N_USERS), 4)
    items = np.concatenate([rng.choice(n_groups * copies, 4, replace=False) for _ in range(N_USERS)])
    return ModelInputs(N_USERS, n_groups * copies, frames, Interactions(users.astype(np.int64), items.astype(np.int64)))


def with_copies(model: Recommender, n_items: int, copies: int) -> Recommender:
    """Make every item-side parameter and buffer of each group equal to its first item's, so the
    items of a group score exactly alike; returns the model in eval mode."""
    source = torch.arange(n_items) // copies * copies
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dim() and tensor.shape[0] == n_items:
                tensor.copy_(tensor[source])
    return model.eval()


def known_items(seed: int = 1) -> sp.csr_matrix:
    """About a third of the items of each user; user 0 knows every item, user 1 all but two."""
    rng = np.random.default_rng(seed)
    dense = rng.random((N_USERS, N_ITEMS)) < 0.3
    dense[0] = True
    dense[1] = True
    dense[1, [5, 20]] = False
    return sp.csr_matrix(dense.astype(np.float32))


def reference(model: Recommender, users: torch.Tensor, k: int, exclude: sp.csr_matrix | None) -> tuple:
    """The definition: a stable descending sort of score_all, excluded (and NaN) scores -inf."""
    with torch.no_grad():
        scores = model.score_all(users).clone()
    scores[scores.isnan()] = -INF
    if exclude is not None:
        scores[torch.as_tensor(exclude[users.numpy()].toarray() != 0)] = -INF
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    values = scores.gather(1, order)
    items = torch.where(values > -INF, order, -1)
    pad = k - values.shape[1]
    return torch.nn.functional.pad(values, (0, pad), value=-INF), torch.nn.functional.pad(items, (0, pad), value=-1)


def ranking_model(name: str, seed: int = 0) -> Recommender:
    return with_copies(build_model(name, random_inputs(seed), seed=seed), N_ITEMS, COPIES)


@pytest.mark.parametrize("probes", [jifr_module.PROBES, 1])
@pytest.mark.parametrize("name", RANKING_MODELS)
def test_top_k_equals_a_stable_sort_of_score_all(name: str, probes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with 1 probe (then k), so that JIFR's pruned ranking starts from a threshold that
    leaves many items to prune (with the default, a catalogue this small is nearly all probes)."""
    monkeypatch.setattr(jifr_module, "PROBES", probes)
    model = ranking_model(name)
    users = torch.arange(N_USERS)
    with torch.no_grad():
        scores = model.score_all(users)
    # The planted ties are real: the copies of an item score the same, bit for bit.
    assert torch.equal(scores[:, 0::COPIES], scores[:, 1::COPIES]), "copies do not tie"
    for exclude in (None, known_items()):
        for k in KS:
            values, items = top_k_items(model, users, k, N_ITEMS, exclude)
            expected_values, expected_items = reference(model, users, k, exclude)
            assert torch.equal(items, expected_items), (name, k, exclude is not None)
            assert torch.equal(values, expected_values), (name, k, exclude is not None)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_the_best_k_of_each_rows_candidates_are_a_stable_sort(k: int) -> None:
    """``_stable_top_k_of`` (one heap per row) against a stable descending sort of each row's
    candidates: scores drawn from few values (many ties, 0.0 and -0.0 among them), -inf
    candidates, empty rows and rows shorter than k."""
    rng = np.random.default_rng(k)
    n_rows, n_items = 60, 50
    chosen = rng.random((n_rows, n_items)) < rng.random((n_rows, 1))  # from empty to full rows
    chosen[::7] = False
    rows, items = (torch.as_tensor(a) for a in np.nonzero(chosen))
    scores = torch.as_tensor(rng.choice([-np.inf, -1.0, -0.0, 0.0, 0.5, 2.0], len(rows)).astype(np.float32))
    values, best = ranking._stable_top_k_of(rows, items, scores, n_rows, k)
    for row in range(n_rows):
        mine = rows == row
        order = torch.argsort(scores[mine], descending=True, stable=True)[:k]
        expected = scores[mine][order]
        kept = expected > -INF
        width = int(kept.sum())
        assert torch.equal(values[row, :width], expected[kept]), row
        assert torch.equal(best[row, :width], items[mine][order][kept]), row
        assert (values[row, width:] == -INF).all() and (best[row, width:] == -1).all(), row


def test_ties_straddle_the_cut_and_go_to_the_lower_item() -> None:
    """With k = 4 and items in threes, the 4th place is one of three tied items: the lowest wins."""
    model = ranking_model("bpr")
    values, items = top_k_items(model, torch.arange(N_USERS), 5, N_ITEMS)
    assert torch.equal(values[:, 3], values[:, 4])  # a tie across the 4th/5th places, every user
    assert (items[:, 0] % COPIES == 0).all() and (items[:, 1] == items[:, 0] + 1).all()
    assert (items[:, 3] == items[:, 4] - 1).all() and (items[:, 3] % COPIES == 0).all()


def test_excluded_items_and_short_rows() -> None:
    model = ranking_model("jifr")
    exclude = known_items()
    values, items = top_k_items(model, torch.tensor([0, 1, 2]), 4, N_ITEMS, exclude)
    assert items[0].tolist() == [-1] * 4 and torch.isinf(values[0]).all()  # user 0 knows everything
    assert sorted(items[1, :2].tolist()) == [5, 20] and items[1, 2:].tolist() == [-1, -1]
    assert not set(items[2].tolist()) & set(exclude[2].indices.tolist())


@pytest.mark.parametrize("name", ["bpr", "jifr"])
def test_items_scored_nan_are_never_recommended(name: str) -> None:
    model = ranking_model(name)
    with torch.no_grad():
        model.item_collab.weight[7] = float("nan")  # type: ignore[union-attr,index]
    model.train().eval()  # drop the item cache
    users = torch.arange(N_USERS)
    assert model.pruned_top_k(users, 3, None) is None  # no pruning over a NaN weight: score_all is sorted
    values, items = top_k_items(model, users, N_ITEMS, N_ITEMS)
    assert (items != 7).all() and (items[:, -1] == -1).all()
    expected_values, expected_items = reference(model, users, N_ITEMS, None)
    assert torch.equal(items, expected_items) and torch.equal(values, expected_values)


def test_user_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """One user per block (a tiny score budget) equals each user ranked on its own."""
    monkeypatch.setattr(ranking, "SCORE_BUDGET", N_ITEMS)
    for name in ("vbpr", "jifr"):
        model = ranking_model(name)
        values, items = top_k_items(model, torch.arange(N_USERS), 7, N_ITEMS, known_items())
        for u in range(N_USERS):
            expected_values, expected_items = reference(model, torch.tensor([u]), 7, known_items())
            assert torch.equal(items[u : u + 1], expected_items) and torch.equal(values[u : u + 1], expected_values)


class OwnScores(Recommender):
    """A model of one's own, as a user would write it: ``score_all`` without ``out``."""

    name = "own"

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scores", scores)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.scores[users]


def test_a_model_whose_score_all_takes_no_out_ranks_through_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranking passes reused memory to ``score_all_into``, which copies ``score_all``'s scores
    for such a model: block after block of different sizes, the answer is the sort's."""
    scores = torch.randint(0, 6, (N_USERS, N_ITEMS)).float()  # many ties
    scores[2, 5] = float("nan")
    model = OwnScores(scores)
    assert not model.writes_scores_into
    for budget in (N_ITEMS, 4 * N_ITEMS, ranking.SCORE_BUDGET):  # blocks of 1, then 4 (and 1), then all users
        monkeypatch.setattr(ranking, "SCORE_BUDGET", budget)
        values, items = top_k_items(model, torch.arange(N_USERS), 7, N_ITEMS, known_items())
        expected_values, expected_items = reference(model, torch.arange(N_USERS), 7, known_items())
        assert torch.equal(items, expected_items) and torch.equal(values, expected_values)
    assert torch.isnan(model.scores[2, 5])  # its own scores untouched


@pytest.mark.parametrize("name", ["jifr", "jifr_rating_att"])
def test_the_pruning_bound_holds(name: str) -> None:
    """The upper bound JIFR prunes with is at least score_all on every pair, also where beta
    swings from 0 to 1 across a user's items (W2 scaled up)."""
    for scale in (1.0, 30.0):
        model = ranking_model(name, seed=3)
        with torch.no_grad():
            model.rating_hidden.weight.mul_(scale)  # type: ignore[union-attr]
        model.train().eval()  # drop the item cache
        users = torch.arange(N_USERS)
        with torch.no_grad():
            upper, scores = model.pruning_upper_bounds(users), model.score_all(users)  # type: ignore[operator]
        assert (upper >= scores).all(), scale


def wide_attention_model(name: str = "jifr", n_items: int = 2000, scale: float = 10.0, seed: int = 4) -> Recommender:
    """A larger catalogue whose visual item parts of W2 are large, so that beta, not the dot
    products, decides many rankings: beta spans nearly all of [0, 1] over a user's items."""
    model = build_model(name, random_inputs(seed=seed, n_groups=n_items, copies=1), seed=seed)
    with torch.no_grad():
        model.projection.weight.mul_(scale)  # type: ignore[union-attr]
    return model.eval()


@pytest.mark.parametrize("name", ["jifr", "jifr_rating_att"])
def test_rating_attention_models_prune_and_score_few_items(name: str) -> None:
    """JIFR with rating attention ranks by pruning and runs the attention on a small share of a
    larger catalogue (a reduction of the work, not a timing), where beta varies widely too."""
    model = wide_attention_model(name)
    users = torch.arange(N_USERS)
    with torch.no_grad():
        beta = model.visual_weight(users.repeat_interleave(2000), torch.arange(2000).repeat(N_USERS))  # type: ignore[operator]
        pruned = model.pruned_top_k(users, 5, None)
    beta = beta.view(N_USERS, 2000)
    assert (beta.amax(1) - beta.amin(1) > 0.9).all()  # the attention decides, for every user
    assert pruned is not None
    expected_values, expected_items = reference(model, users, 5, None)
    assert torch.equal(pruned.items, expected_items) and torch.equal(pruned.values, expected_values)
    assert (pruned.scored >= 5).all() and (pruned.scored <= 2000 // 100).all(), pruned.scored


@pytest.mark.parametrize("seed", range(12))
def test_pruned_top_k_equals_the_sort_over_random_models(seed: int) -> None:
    """Random catalogues with copies (ties), W2 and w2 scaled from 0 to 1e5 (beta from constant
    to saturated at exactly 0 or 1), P scaled, and from no to nearly every item excluded: the
    pruned top-k equals the sort of score_all, whatever k."""
    rng = np.random.default_rng(seed)
    copies, groups = int(rng.integers(1, 4)), int(rng.integers(20, 200))
    inputs = random_inputs(seed=seed, n_groups=groups, copies=copies)
    n_items = groups * copies
    model = build_model(["jifr", "jifr_rating_att"][seed % 2], inputs, seed=seed)
    with torch.no_grad():
        model.rating_hidden.weight.mul_(float(rng.choice([0.0, 0.01, 1.0, 10.0, 1000.0])))  # type: ignore[union-attr]
        model.rating_out.weight.mul_(float(rng.choice([0.1, 1.0, 100.0])))  # type: ignore[union-attr]
        model.projection.weight.mul_(float(rng.choice([0.1, 1.0, 10.0])))  # type: ignore[union-attr]
    model = with_copies(model, n_items, copies)
    users = torch.arange(N_USERS)
    density = float(rng.choice([0.0, 0.1, 0.5, 0.95]))
    exclude = sp.random(N_USERS, n_items, density=density, format="csr", random_state=seed)
    assert model.pruned_top_k(users, 3, None) is not None  # these scores are pruned, not sorted
    for k in (1, 3, 10, n_items):
        values, items = top_k_items(model, users, k, n_items, exclude)
        expected_values, expected_items = reference(model, users, k, exclude)
        assert torch.equal(items, expected_items) and torch.equal(values, expected_values), k


@pytest.mark.parametrize("item_half", [0.0, 1e-3])
def test_jifr_bounds_are_tight_when_beta_varies_little(item_half: float) -> None:
    """With W2's item half zero, beta is the same for all of a user's items and the bound closes
    on the score (up to rounding); with a small item half it stays valid and nearly as tight."""
    inputs = random_inputs(seed=5, n_groups=300, copies=1)
    model = build_model("jifr", inputs, seed=5)
    with torch.no_grad():
        d1 = model.config.collab_dim
        model.rating_hidden.weight[:, d1:] *= item_half  # type: ignore[index,operator]
    model.eval()
    users = torch.arange(N_USERS)
    with torch.no_grad():
        upper, scores = model.pruning_upper_bounds(users), model.score_all(users)  # type: ignore[operator]
    assert (scores <= upper).all()
    assert (upper - scores).max().item() < (1e-4 if item_half == 0 else 1e-2) * scores.abs().max().item()


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_the_rating_attention_has_the_same_bits_in_any_number_of_parts(
    parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more than one torch thread the compiled loops split the users into parts run on
    numba's threads (``grid_parallel``, ``top_k_parallel``; more parts than threads too):
    score_all and top-K equal those of one part, with the same torch threads (a matmul's bits
    may depend on them, the loops' may not)."""
    model = wide_attention_model(n_items=300)
    users = torch.arange(N_USERS)
    exclude = sp.random(N_USERS, 300, density=0.3, format="csr", random_state=0)
    results = []
    for count in (1, parts):
        monkeypatch.setattr(parallel, "thread_parts", lambda n, count=count: max(1, min(n, count)))
        with torch.no_grad():
            results.append((model.score_all(users), top_k_items(model, users, 5, 300, exclude)))
    (one_scores, one_top), (scores, top) = results
    assert torch.equal(scores, one_scores)
    assert torch.equal(top[0], one_top[0]) and torch.equal(top[1], one_top[1])


def test_the_loops_use_as_many_parts_as_torch_has_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert parallel.thread_parts(100) == 1  # numba's threads are not even started
        torch.set_num_threads(2)
        assert parallel.thread_parts(100) == min(2, numba.config.NUMBA_NUM_THREADS)
        assert parallel.thread_parts(1) == 1
    finally:
        torch.set_num_threads(saved)


def test_the_compiled_rating_attention_follows_eqs_8_to_10() -> None:
    """Against eqs. (8)-(10) written out in float64 from the weights."""
    model = ranking_model("jifr").eval()
    users = torch.arange(N_USERS)
    with torch.no_grad():
        got = model.score_all(users).double()
        cache = model.item_cache()
        u, w = model.user_collab(users).double(), model.user_visual(users).double()
        v, x = cache["collab"].double(), cache["visual"].double()
        hidden, w2 = model.rating_hidden, model.rating_out.weight[0].double()
        d1 = model.config.collab_dim

        def logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # w2 . relu(W2 [a, b] + bias), every pair
            user = a @ hidden.weight[:, :d1].double().T + hidden.bias.double()
            return torch.relu(user[:, None, :] + (b @ hidden.weight[:, d1:].double().T)[None]) @ w2

        beta_visual = torch.sigmoid(logit(w, x) - logit(u, v))
        expected = (1 - beta_visual) * (u @ v.T) + beta_visual * (w @ x.T)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_models_without_costly_scores_do_not_prune() -> None:
    for name in ("bpr", "vbpr", "jifr_na", "jifr_content_att"):
        assert ranking_model(name).pruned_top_k(torch.arange(3), 2, None) is None


def test_k_zero_negative_k_and_models_that_rank_no_items() -> None:
    model = ranking_model("jifr")
    values, items = top_k_items(model, torch.arange(3), 0, N_ITEMS)
    assert values.shape == items.shape == (3, 0)
    with pytest.raises(ValueError, match="k must be >= 0"):
        top_k_items(model, torch.arange(3), -1, N_ITEMS)
    with pytest.raises(ValueError, match="does not rank items"):
        top_k_items(build_model("rnd", random_inputs()), torch.arange(3), 3, N_ITEMS)
