"""Synthetic multimedia dataset with a planted answer.

The generator plants the structure that JIFR (IJCAI 2019, sections 2-3) assumes:

- ``T`` visual *themes*, each with a latent vector (``visual_dim``) and a centroid in feature
  space (``D``). A frame shows one theme: ``c_k = centroid[theme_k] + noise``; some frames are
  *uninformative* (pure noise), so that content attention (eq. 5-7) has something to learn.
- Each item draws its frames from ``themes_per_item`` distinct themes; its true visual vector
  ``x*_i`` is the mean theme latent over its informative frames (eq. 1 in the latent space).
- Users have a collaborative taste ``u*_a`` and a visual taste ``w*_a``; items have ``v*_i``
  and a popularity bias ``b_i``. The utility mirrors eq. (2), each part scaled to unit variance::

      utility(a, i) = sqrt(1 - visual_weight) * u*_a.v*_i / s_c
                      + sqrt(visual_weight) * w*_a.x*_i / s_v + popularity_weight * b_i

- User ``a`` interacts with ``n_a >= min_interactions`` items sampled without replacement with
  probability proportional to ``exp(utility / temperature)`` (Gumbel-top-k).
- Frame likes come from the *true* visual taste: for a ``like_fraction`` of interactions whose
  item shows at least two themes, the user likes every frame of the theme maximising
  ``w*_a . theme_latent`` (eq. 4 with the true ``w*_a``). Likes are never used for training.

Every random stream is seeded from ``(seed, stream, block)``, so results do not depend on how
the caller iterates, and frame features can be streamed block by block into a memory map.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jifr.datasets.frame_images import theme_title, write_frame_images
from jifr.outputs import allocate_npy, staged_directory

logger = logging.getLogger(__name__)

USER_BLOCK = 512  # users whose (block, n_items) utility matrix is held at once
FEATURE_BLOCK = 4096  # frame rows generated (and seeded) together
LIKE_BLOCK = 65536  # like rows scored against all themes at once
BASE_TIME = 1_500_000_000  # Unix seconds of the earliest possible interaction
_STREAMS = {"themes": 0, "items": 1, "users": 2, "interactions": 3, "likes": 4, "features": 5}
_DTYPES = ("float16", "float32")


def _rng(seed: int, stream: str, block: int = 0) -> np.random.Generator:
    """Independent generator for one (stream, block), reproducible from the seed alone."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[stream], block)))


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes, planted-truth dimensions and noise levels of a synthetic dataset."""

    n_users: int = 200
    n_items: int = 150
    frames_per_item: int | tuple[int, int] = (3, 5)  # fixed count or inclusive (min, max)
    feature_dim: int = 64  # D, dimension of the frame features c_k
    n_themes: int = 8  # T
    themes_per_item: int = 2  # distinct themes among an item's frames
    collab_dim: int = 8  # dimension of u*_a, v*_i
    visual_dim: int = 8  # dimension of w*_a, theme latents, x*_i
    mean_interactions: float = 15.0  # per user, before the max_interactions cap
    min_interactions: int = 5
    activity_shape: float = 2.0  # gamma shape of user activity; smaller = heavier tail
    visual_weight: float = 0.5  # share of the personal utility variance that is visual
    popularity_weight: float = 0.3  # weight of the unit-variance item bias b_i
    temperature: float = 0.5  # choice noise: lower = more deterministic choices
    like_fraction: float = 0.3  # share of (eligible) interactions that get frame likes
    frame_noise: float = 2.0  # std of feature noise; centroid entries have std 1
    uninformative_frame_prob: float = 0.2  # per frame beyond the first themes_per_item
    seed: int = 0
    feature_dtype: str = "float16"

    def __post_init__(self) -> None:
        if isinstance(self.frames_per_item, list):  # from JSON
            object.__setattr__(self, "frames_per_item", tuple(self.frames_per_item))
        for problem in _config_problems(self):
            raise ValueError(f"SyntheticConfig: {problem}")

    @property
    def frame_range(self) -> tuple[int, int]:
        """Inclusive (min, max) frames per item."""
        f = self.frames_per_item
        return (f, f) if isinstance(f, int) else (int(f[0]), int(f[1]))

    @property
    def max_interactions(self) -> int:
        """Cap on a user's interactions: half the catalogue."""
        return self.n_items // 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``frames_per_item`` range as a list)."""
        d = dataclasses.asdict(self)
        if isinstance(self.frames_per_item, tuple):
            d["frames_per_item"] = list(self.frames_per_item)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticConfig:
        """Inverse of ``to_dict``; unknown keys are an error, not ignored."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"SyntheticConfig: unknown keys {unknown}")
        return cls(**d)


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _config_problems(c: SyntheticConfig) -> Iterator[str]:
    """Yield a description of each invalid field (the first one is raised)."""
    sizes = ("n_users", "n_items", "feature_dim", "n_themes", "themes_per_item")
    for name in (*sizes, "collab_dim", "visual_dim", "min_interactions"):
        if not _is_int(getattr(c, name)) or getattr(c, name) < 1:
            yield f"{name} must be a positive int, got {getattr(c, name)!r}"
    f = c.frames_per_item
    if not (_is_int(f) or (isinstance(f, tuple) and len(f) == 2 and all(map(_is_int, f)))):
        yield f"frames_per_item must be an int or a (min, max) pair, got {f!r}"
    elif not 1 <= c.frame_range[0] <= c.frame_range[1]:
        yield f"frames_per_item must satisfy 1 <= min <= max, got {f!r}"
    if c.themes_per_item > c.n_themes:
        yield f"themes_per_item ({c.themes_per_item}) exceeds n_themes ({c.n_themes})"
    if not c.min_interactions <= c.mean_interactions <= c.max_interactions:
        yield (
            f"need min_interactions ({c.min_interactions}) <= mean_interactions "
            f"({c.mean_interactions}) <= n_items // 2 ({c.max_interactions})"
        )
    for name in ("activity_shape", "temperature"):
        if not getattr(c, name) > 0:
            yield f"{name} must be > 0, got {getattr(c, name)!r}"
    for name in ("frame_noise", "popularity_weight"):
        if not getattr(c, name) >= 0:
            yield f"{name} must be >= 0, got {getattr(c, name)!r}"
    for name in ("visual_weight", "like_fraction"):
        if not 0 <= getattr(c, name) <= 1:
            yield f"{name} must be in [0, 1], got {getattr(c, name)!r}"
    if not 0 <= c.uninformative_frame_prob < 1:
        yield f"uninformative_frame_prob must be in [0, 1), got {c.uninformative_frame_prob!r}"
    if not _is_int(c.seed) or c.seed < 0:
        yield f"seed must be a non-negative int, got {c.seed!r}"
    if c.feature_dtype not in _DTYPES:
        yield f"feature_dtype must be one of {_DTYPES}, got {c.feature_dtype!r}"


PRESETS: dict[str, SyntheticConfig] = {
    # unit tests: ~3k interactions, generated in milliseconds
    "tiny": SyntheticConfig(),
    # demo / CLI: ~40k interactions, 6k frames of 256-d
    "small": SyntheticConfig(
        n_users=2_000,
        n_items=1_000,
        frames_per_item=6,
        feature_dim=256,
        n_themes=16,
        themes_per_item=3,
        collab_dim=16,
        visual_dim=8,
        mean_interactions=20.0,
    ),
    # benchmarks: the paper's sizes (16,166 users, 12,811 items, ~500k interactions, 4096-d)
    "paper": SyntheticConfig(
        n_users=16_166,
        n_items=12_811,
        frames_per_item=10,
        feature_dim=4096,
        n_themes=32,
        themes_per_item=3,
        collab_dim=32,
        visual_dim=16,
        mean_interactions=31.0,
        like_fraction=0.2,
    ),
}


@dataclass(frozen=True, eq=False)
class PlantedTruth:
    """The latent factors that generated the data (M users, N items, T themes)."""

    theme_latent: np.ndarray  # (T, visual_dim) latent visual vector of each theme
    theme_centroid: np.ndarray  # (T, D) float32 feature-space centre of each theme
    user_collab: np.ndarray  # (M, collab_dim) u*_a
    user_visual: np.ndarray  # (M, visual_dim) w*_a
    item_collab: np.ndarray  # (N, collab_dim) v*_i
    item_visual: np.ndarray  # (N, visual_dim) x*_i, mean theme latent of informative frames
    item_bias: np.ndarray  # (N,) popularity b_i, unit variance
    collab_scale: float  # s_c, std of u*.v* over users x items
    visual_scale: float  # s_v, std of w*.x* over users x items
    visual_weight: float
    popularity_weight: float

    def collab_utility(self, users: np.ndarray) -> np.ndarray:
        """(B,) user indices -> (B, N) unit-variance u*_a.v*_i / s_c."""
        return (self.user_collab[users] @ self.item_collab.T) / self.collab_scale

    def visual_utility(self, users: np.ndarray) -> np.ndarray:
        """(B,) user indices -> (B, N) unit-variance w*_a.x*_i / s_v."""
        return (self.user_visual[users] @ self.item_visual.T) / self.visual_scale

    def utility(self, users: np.ndarray) -> np.ndarray:
        """(B,) user indices -> (B, N) float32 planted utility (see the module docstring)."""
        vw = self.visual_weight
        collab = self.user_collab[users] * (np.sqrt(1 - vw) / self.collab_scale)
        visual = self.user_visual[users] * (np.sqrt(vw) / self.visual_scale)
        user = np.hstack([collab, visual]).astype(np.float32)  # one matmul for both parts
        item = np.hstack([self.item_collab, self.item_visual]).astype(np.float32)
        return user @ item.T + (self.popularity_weight * self.item_bias).astype(np.float32)

    def theme_scores(self, users: np.ndarray) -> np.ndarray:
        """(B,) user indices -> (B, T) true visual preference w*_a . theme_latent_t."""
        return self.user_visual[users] @ self.theme_latent.T


@dataclass(frozen=True, eq=False)
class SyntheticDataset:
    """Generated data as contiguous indices (user ``a`` is ``"u{a}"`` on disk, and so on).

    Interactions are sorted by user, then timestamp. The frames of item ``i`` are the rows
    ``frame_indptr[i]:frame_indptr[i + 1]`` (frame ``k`` is ``"f{k}"``, feature row ``k``).
    """

    config: SyntheticConfig
    user: np.ndarray  # (n,) int64
    item: np.ndarray  # (n,) int64
    timestamp: np.ndarray  # (n,) int64 Unix seconds, strictly increasing within a user
    frame_indptr: np.ndarray  # (N + 1,) int64 CSR item -> frames
    frame_theme: np.ndarray  # (L,) int64 theme of each frame, -1 = uninformative
    like_user: np.ndarray  # (n_likes,) int64
    like_item: np.ndarray  # (n_likes,) int64
    like_frame: np.ndarray  # (n_likes,) int64, a frame of like_item
    truth: PlantedTruth

    @property
    def n_frames(self) -> int:
        return len(self.frame_theme)

    @property
    def frame_item(self) -> np.ndarray:
        """(L,) item of each frame."""
        return np.repeat(np.arange(self.config.n_items), np.diff(self.frame_indptr))

    def true_frame_scores(self, users: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """(n,) users, (n,) frames -> (n,) true preference; -inf for uninformative frames."""
        theme = self.frame_theme[frames]
        scores = np.einsum("nd,nd->n", self.truth.user_visual[users], self.truth.theme_latent[theme])
        return np.where(theme >= 0, scores, -np.inf)

    def feature_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, (rows, D) features) blocks covering all L frames, in order."""
        for start in range(0, self.n_frames, FEATURE_BLOCK):
            yield start, self._feature_block(start // FEATURE_BLOCK)

    def features(self) -> np.ndarray:
        """(L, D) frame features c_k in ``config.feature_dtype`` (all in memory)."""
        out = np.empty((self.n_frames, self.config.feature_dim), dtype=self.config.feature_dtype)
        for start, block in self.feature_blocks():
            out[start : start + len(block)] = block
        return out

    def _feature_block(self, b: int) -> np.ndarray:
        """(rows, D) features of block b: centroid + noise, or pure noise of equal variance."""
        c = self.config
        theme = self.frame_theme[b * FEATURE_BLOCK : (b + 1) * FEATURE_BLOCK]
        rng = _rng(c.seed, "features", b)
        block = rng.standard_normal((len(theme), c.feature_dim), dtype=np.float32)
        std = np.where(theme >= 0, c.frame_noise, np.sqrt(1 + c.frame_noise**2))
        block *= std[:, None].astype(np.float32)
        zero = np.zeros((1, c.feature_dim), dtype=np.float32)  # the "centroid" of theme -1
        block += np.vstack([self.truth.theme_centroid, zero])[theme]
        return block.astype(c.feature_dtype, copy=False)


def _make_frames(c: SyntheticConfig, theme_pop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> frame_indptr (N + 1,), frame_theme (L,) with -1 for uninformative frames.

    The first ``themes_per_item`` slots of an item show distinct themes, so any item with at
    least two frames shows at least two themes; frames are then shuffled within the item.
    """
    rng = _rng(c.seed, "items")
    lo, hi = c.frame_range
    counts = rng.integers(lo, hi + 1, size=c.n_items)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    keys = np.log(theme_pop) + rng.gumbel(size=(c.n_items, c.n_themes))
    item_themes = np.argsort(-keys, axis=1)[:, : c.themes_per_item]  # distinct, by popularity
    frame_item = np.repeat(np.arange(c.n_items), counts)
    slot = np.arange(indptr[-1]) - indptr[frame_item]
    k = c.themes_per_item
    pick = np.where(slot < k, slot, rng.integers(0, k, size=len(slot)))
    theme = item_themes[frame_item, pick].astype(np.int64)
    theme[(slot >= k) & (rng.random(len(slot)) < c.uninformative_frame_prob)] = -1
    order = np.lexsort((rng.random(len(slot)), frame_item))  # shuffle within each item
    return indptr, theme[order]


def _item_visual(theme_latent: np.ndarray, indptr: np.ndarray, theme: np.ndarray) -> np.ndarray:
    """(N, visual_dim) mean theme latent over each item's informative frames (x*_i)."""
    informative = (theme >= 0)[:, None]
    sums = np.add.reduceat(theme_latent[theme] * informative, indptr[:-1], axis=0)
    counts = np.add.reduceat(informative.astype(np.int64), indptr[:-1], axis=0)
    return sums / counts


def _make_truth(c: SyntheticConfig) -> tuple[PlantedTruth, np.ndarray, np.ndarray]:
    """-> (planted truth, frame_indptr (N + 1,), frame_theme (L,))."""
    rng = _rng(c.seed, "themes")
    theme_latent = rng.standard_normal((c.n_themes, c.visual_dim))
    centroid = rng.standard_normal((c.n_themes, c.feature_dim), dtype=np.float32)
    theme_pop = rng.dirichlet(np.full(c.n_themes, 2.0))
    indptr, theme = _make_frames(c, theme_pop)
    rng = _rng(c.seed, "users")
    user_collab = rng.standard_normal((c.n_users, c.collab_dim))
    user_visual = rng.standard_normal((c.n_users, c.visual_dim))
    item_collab = rng.standard_normal((c.n_items, c.collab_dim))
    item_bias = rng.standard_normal(c.n_items)
    item_visual = _item_visual(theme_latent, indptr, theme)
    sample = slice(0, USER_BLOCK)  # a fixed sample of users estimates the scales
    truth = PlantedTruth(
        theme_latent,
        centroid,
        user_collab,
        user_visual,
        item_collab,
        item_visual,
        item_bias,
        collab_scale=float(np.std(user_collab[sample] @ item_collab.T)),
        visual_scale=float(np.std(user_visual[sample] @ item_visual.T)),
        visual_weight=c.visual_weight,
        popularity_weight=c.popularity_weight,
    )
    return truth, indptr, theme


def _interaction_counts(c: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """(M,) interactions per user: min + Poisson(gamma activity), capped at n_items // 2."""
    extra = c.mean_interactions - c.min_interactions
    activity = rng.gamma(c.activity_shape, extra / c.activity_shape, size=c.n_users)
    counts = c.min_interactions + rng.poisson(activity)
    return np.minimum(counts, c.max_interactions).astype(np.int64)


def _gumbel_top_k(logits: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B, N) logits, (B,) sizes -> (k.sum(),) items: row b samples k[b] items without
    replacement with probability proportional to exp(logits[b]), rows concatenated."""
    with np.errstate(divide="ignore"):  # an exponential draw of exactly 0 gives +inf: fine
        keys = logits - np.log(rng.standard_exponential(logits.shape, dtype=np.float32))
    k_max = int(k.max())
    top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), axis=1), 1)
    return top[np.arange(k_max) < k[:, None]]


def _timestamps(user: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) user-sorted interactions -> (n,) strictly increasing times within each user."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gaps = rng.integers(60, 7 * 86_400, size=len(user))
    elapsed = np.cumsum(gaps)
    elapsed -= np.concatenate([[0], elapsed])[starts][user]  # restart the sum at each user
    first = rng.integers(0, 365 * 86_400, size=len(counts))
    return (BASE_TIME + first[user] + elapsed).astype(np.int64)


def _sample_interactions(c: SyntheticConfig, truth: PlantedTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> user, item, timestamp (n,) sorted by user then time; Gumbel-top-k per user block."""
    rng = _rng(c.seed, "interactions")
    counts = _interaction_counts(c, rng)
    items = []
    for b, start in enumerate(range(0, c.n_users, USER_BLOCK)):
        users = np.arange(start, min(start + USER_BLOCK, c.n_users))
        logits = truth.utility(users) / np.float32(c.temperature)
        items.append(_gumbel_top_k(logits, counts[users], _rng(c.seed, "interactions", b + 1)))
    user = np.repeat(np.arange(c.n_users), counts)
    item = np.concatenate(items).astype(np.int64)
    item = item[np.lexsort((rng.random(len(item)), user))]  # time order independent of utility
    return user, item, _timestamps(user, counts, rng)


def _best_themes(truth: PlantedTruth, users: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """(n,) users, (n, T) themes shown by the item -> (n,) the shown theme the user prefers."""
    best = [
        np.argmax(np.where(shown[s], truth.theme_scores(users[s]), -np.inf), axis=1)
        for s in (slice(i, i + LIKE_BLOCK) for i in range(0, len(users), LIKE_BLOCK))
    ]
    return np.concatenate(best) if best else np.empty(0, dtype=np.int64)


def _sample_likes(
    c: SyntheticConfig,
    truth: PlantedTruth,
    user: np.ndarray,
    item: np.ndarray,
    indptr: np.ndarray,
    theme: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> like_user, like_item, like_frame: every frame of the user's best theme shown by the
    item, for a like_fraction of interactions whose item shows at least two themes."""
    frame_item = np.repeat(np.arange(c.n_items), np.diff(indptr))
    shown = np.zeros((c.n_items, c.n_themes), dtype=bool)
    shown[frame_item[theme >= 0], theme[theme >= 0]] = True
    rng = _rng(c.seed, "likes")
    chosen = (shown.sum(axis=1) >= 2)[item] & (rng.random(len(item)) < c.like_fraction)
    users, items = user[chosen], item[chosen]
    best = _best_themes(truth, users, shown[items])
    lengths = np.diff(indptr)[items]
    row = np.repeat(np.arange(len(items)), lengths)
    first_row = np.repeat(np.cumsum(lengths) - lengths, lengths)
    frame = indptr[items][row] + np.arange(len(row)) - first_row  # every frame of each item
    keep = theme[frame] == best[row]
    return users[row][keep], items[row][keep], frame[keep]


def generate(config: SyntheticConfig) -> SyntheticDataset:
    """Generate everything except the frame features, which ``feature_blocks`` streams."""
    truth, indptr, theme = _make_truth(config)
    user, item, timestamp = _sample_interactions(config, truth)
    likes = _sample_likes(config, truth, user, item, indptr, theme)
    return SyntheticDataset(config, user, item, timestamp, indptr, theme, *likes, truth=truth)


def _names(prefix: str, n: int) -> pa.Array:
    """(n,) string ids ``prefix0 .. prefix{n-1}``."""
    return pc.binary_join_element_wise(prefix, pa.array(np.arange(n)).cast(pa.string()), "")


def _write_tables(data: SyntheticDataset, out_dir: Path, images: bool = False) -> None:
    """interactions, item_frames, frame_likes and items as Parquet (ids as strings); with
    ``images``, a PNG per frame and the frames' ``path`` and ``title`` columns."""
    c = data.config
    users, items = _names("u", c.n_users), _names("i", c.n_items)
    frames = _names("f", data.n_frames)
    item_frames = {"item_id": items.take(data.frame_item), "frame_id": frames}
    if images:
        paths = write_frame_images(out_dir, frames.to_pylist(), data.frame_theme)
        titles = [theme_title(t) for t in data.frame_theme.tolist()]
        item_frames |= {"path": pa.array(paths, pa.string()), "title": pa.array(titles, pa.string())}
    tables = {
        "interactions": {
            "user_id": users.take(data.user),
            "item_id": items.take(data.item),
            "timestamp": pa.array(data.timestamp),
        },
        "item_frames": item_frames,
        "frame_likes": {
            "user_id": users.take(data.like_user),
            "item_id": items.take(data.like_item),
            "frame_id": frames.take(data.like_frame),
        },
        "items": {"item_id": items, "title": _names("Synthetic item ", c.n_items)},
    }
    for name, columns in tables.items():
        pq.write_table(pa.table(columns), out_dir / f"{name}.parquet")
    (out_dir / "frame_features.ids.txt").write_text("\n".join(frames.to_pylist()) + "\n")


def _write_features(data: SyntheticDataset, path: Path) -> None:
    """Stream (L, D) features block by block into a ``.npy`` memory map."""
    shape = (data.n_frames, data.config.feature_dim)
    out = allocate_npy(path, shape, data.config.feature_dtype)
    for start, block in data.feature_blocks():
        out[start : start + len(block)] = block
    out.flush()
    del out


def write_dataset(
    source: SyntheticConfig | SyntheticDataset, out_dir: str | Path, *, force: bool = False, images: bool = False
) -> Path:
    """Write a dataset directory in the format of docs/format.md; returns ``out_dir``.

    ``out_dir`` must be new or empty (or, with ``force``, an earlier jifr dataset); it appears
    only when complete. ``images`` adds a small PNG per frame in the colour of its planted theme
    (``frames/``; see jifr.datasets.frame_images), for looking at recommendations.
    """
    data = source if isinstance(source, SyntheticDataset) else generate(source)
    out_dir = Path(out_dir)
    counts = {
        "users": data.config.n_users,
        "items": data.config.n_items,
        "frames": data.n_frames,
        "interactions": len(data.user),
        "frame_likes": len(data.like_user),
    }
    with staged_directory(out_dir, "dataset", force=force) as staging:
        _write_tables(data, staging, images)
        _write_features(data, staging / "frame_features.npy")
        meta = {"builder": "synthetic", "seed": data.config.seed, "config": data.config.to_dict()}
        (staging / "meta.json").write_text(json.dumps({**meta, "counts": counts}, indent=2) + "\n")
    logger.info("wrote synthetic dataset to %s: %s", out_dir, counts)
    return out_dir


def write_synthetic(
    preset_or_config: str | SyntheticConfig,
    out_dir: str | Path,
    seed: int | None = None,
    *,
    force: bool = False,
    images: bool = False,
) -> Path:
    """Write a preset (``"tiny"``, ``"small"``, ``"paper"``) or a config, optionally reseeded
    (``images``: a PNG per frame, see ``write_dataset``)."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"unknown preset {preset_or_config!r}; choose from {sorted(PRESETS)}")
        preset_or_config = PRESETS[preset_or_config]
    if seed is not None:
        preset_or_config = dataclasses.replace(preset_or_config, seed=seed)
    return write_dataset(preset_or_config, out_dir, force=force, images=images)
