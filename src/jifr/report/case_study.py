"""Fig. 5 of the paper: one user's key frames for one test item, JIFR's order beside the mean user's.

The pair is chosen by a fixed rule, not by hand. Candidates are the held-out (user, item) pairs
of the ``keyframe`` protocol (pairs with frame likes) whose item has at least ``MIN_FRAMES``
frames, not all of them liked. Chosen is the candidate whose frame order under the seed's JIFR
checkpoint differs most from the mean-user order of the same checkpoint (``MeanUserFrames``, as
in ``jifr compare``): the most discordant frame pairs (Kendall tau distance; a tie in either
score counts as neither), ties going to the lowest (user index, item index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from jifr.checkpoint import load_checkpoint
from jifr.data.prepared import PreparedData, load_prepared
from jifr.errors import DataError
from jifr.evaluate import keyframe_queries
from jifr.features.images import load_rgb
from jifr.models.base import Recommender
from jifr.models.diagnostic import MeanUserFrames
from jifr.report.comparison import NOT_FINISHED, Comparison
from jifr.report.figures import DPI, pyplot

MIN_FRAMES = 4
MODEL = "jifr"
TILE_INCHES = (1.8, 2.9)  # width, height of one picture with its caption
THUMBNAIL = (240, 360)  # pixels of one tile: a poster's 2:3, enough at the figure's resolution
LIKED, OTHER = "#1a9850", "#bbbbbb"


@dataclass(frozen=True)
class CaseStudy:
    seed: int
    user: int
    item: int
    frames: np.ndarray  # (n,) global frame indices, in the item's order
    liked: np.ndarray  # (n,) bool: frames the user liked
    jifr_scores: np.ndarray  # (n,) l_ak of eq. (4) for this user
    mean_user_scores: np.ndarray  # (n,) the same scores averaged over the mean-user sample
    n_mean_users: int
    discordant: int  # frame pairs the two orders put the other way round
    n_candidates: int  # pairs the rule chose among
    n_order_differs: int  # candidates whose two orders differ at all
    n_top_differs: int  # candidates whose two first frames differ

    def jifr_order(self) -> np.ndarray:
        return np.argsort(-self.jifr_scores, kind="stable")

    def mean_user_order(self) -> np.ndarray:
        return np.argsort(-self.mean_user_scores, kind="stable")


def choose_case(comparison: Comparison) -> tuple[CaseStudy | None, PreparedData | None, str]:
    """The case of the first seed's ``jifr`` checkpoint, its data, and the reason when there is none."""
    if MODEL not in comparison.models:
        return None, None, f"the comparison has no {MODEL} model"
    seed = comparison.seeds[0]
    data = load_prepared(comparison.seed_dir(seed) / "prepared")
    model = _load_model(comparison, seed, data)
    mean_user = MeanUserFrames(model, data, seed=seed)  # the sample `jifr compare` averaged over
    q = keyframe_queries(data, comparison.summary["part"])
    keep = torch.nonzero((q.frame_counts >= MIN_FRAMES) & (q.liked.sum(1) < q.frame_counts)).squeeze(1)
    if not len(keep):
        return None, data, f"no held-out pair with frame likes has {MIN_FRAMES} or more frames, not all liked"
    users, items = q.users[keep], q.items[keep]
    discordant, top_differs = _disagreement(model, mean_user, users, items, q.candidates[keep])
    best = int(np.argmax(discordant))  # the first maximum: queries are sorted by (user, item)
    user, item = int(users[best]), int(items[best])
    n = int(q.frame_counts[keep[best]])
    one = (torch.tensor([user]), torch.tensor([item]))
    with torch.no_grad():
        jifr_scores, mean_scores = (m.score_frames(*one)[0, :n].numpy() for m in (model, mean_user))
    start = int(data.frames.indptr[item])
    case = CaseStudy(
        seed=seed,
        user=user,
        item=item,
        frames=np.arange(start, start + n),
        liked=q.liked[keep[best], :n].numpy(),
        jifr_scores=jifr_scores.astype(np.float64),
        mean_user_scores=mean_scores.astype(np.float64),
        n_mean_users=len(mean_user.users),
        discordant=int(discordant[best]),
        n_candidates=len(keep),
        n_order_differs=int((discordant > 0).sum()),
        n_top_differs=int(top_differs.sum()),
    )
    return case, data, ""


def _load_model(comparison: Comparison, seed: int, data: PreparedData) -> Recommender:
    """The seed's JIFR checkpoint, refused unless it is the run whose results the summary holds."""
    directory = comparison.seed_dir(seed) / "checkpoints" / MODEL
    model, _, description = load_checkpoint(directory, data)
    run = comparison.runs[MODEL][seed]["config"]
    if description["model_config"] != run["model_config"] or description["train_config"] != run["train"]:
        raise DataError(directory, f"not the run of seed-{seed}/{MODEL}.json (another config): {NOT_FINISHED}")
    return model


@torch.no_grad()
def _disagreement(
    model: Recommender, mean_user: Recommender, users: Tensor, items: Tensor, candidates: Tensor, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(B,) discordant frame pairs between the two frame orders, and (B,) whether the first frames differ."""
    discordant, top = [], []
    for start in range(0, len(users), batch):
        b = slice(start, start + batch)
        ours, mean = model.score_frames(users[b], items[b]), mean_user.score_frames(users[b], items[b])
        valid = candidates[b, : ours.shape[1]]
        both = valid[:, :, None] & valid[:, None, :]
        sign_ours = torch.sign(ours[:, :, None] - ours[:, None, :])
        sign_mean = torch.sign(mean[:, :, None] - mean[:, None, :])
        discordant.append((((sign_ours * sign_mean) < 0) & both).sum((1, 2)) // 2)
        top.append(ours.argmax(1) != mean.argmax(1))
    return torch.cat(discordant).numpy(), torch.cat(top).numpy()


def draw_case(case: CaseStudy, data: PreparedData, png: Path) -> None:
    """Three rows of pictures: the user's training items, the test item's frames in JIFR's order,
    and in the mean user's order; liked frames are framed in green."""
    plt = pyplot()
    table = data.frame_table()
    training = training_tiles(case, data)
    n_columns = max(len(case.frames), 6)
    figure = plt.figure(figsize=(TILE_INCHES[0] * n_columns, TILE_INCHES[1] * 3 + 1.2))
    rows = figure.subfigures(3, 1)
    user_id, item_id = data.user_ids[case.user], data.item_ids[case.item]
    n_train = int((data.train.users == case.user).sum())
    rows[0].suptitle(
        f"user {user_id}: {len(training)} of {n_train} training items (those with a liked frame first, "
        "each shown by the frame the user liked, in green, else by its first frame)",
        fontsize=10,
    )
    _draw_row(rows[0], table, training, n_columns)
    for row, order, scores, who in (
        (rows[1], case.jifr_order(), case.jifr_scores, f"JIFR's order for user {user_id}"),
        (rows[2], case.mean_user_order(), case.mean_user_scores, f"mean user's order ({case.n_mean_users} users)"),
    ):
        title = f"{who}: frames of test item {item_id} (seed {case.seed}), best first; green = liked by the user"
        row.suptitle(title, fontsize=10)
        tiles = [
            (int(case.frames[k]), f"#{r + 1}  score {scores[k]:.3f}", bool(case.liked[k])) for r, k in enumerate(order)
        ]
        _draw_row(row, table, tiles, n_columns)
    figure.savefig(png, dpi=DPI)
    plt.close(figure)


def training_tiles(case: CaseStudy, data: PreparedData) -> list[tuple[int, str, bool]]:
    """Up to one row of (frame, caption, liked) for the user's training items."""
    items = np.unique(data.train.items[data.train.users == case.user])
    likes = data.likes_of("train")
    mine = likes.users == case.user
    liked: dict[int, int] = {}
    for item, frame in sorted(zip(likes.items[mine].tolist(), likes.frames[mine].tolist(), strict=True)):
        liked.setdefault(item, frame)
    ordered = sorted(items.tolist(), key=lambda i: (i not in liked, i))[: max(len(case.frames), 6)]
    return [(liked.get(i, int(data.frames.indptr[i])), f"item {data.item_ids[i]}", i in liked) for i in ordered]


def _draw_row(subfigure: Any, table: dict[str, np.ndarray], tiles: list[tuple[int, str, bool]], n: int) -> None:
    axes = subfigure.subplots(1, n, squeeze=False)[0]
    for axis, (frame, caption, liked) in zip(axes, tiles, strict=False):
        picture, missing = _picture(table, frame)
        axis.imshow(picture)
        if missing:
            axis.text(
                0.5,
                0.5,
                f"frame {table['frame_id'][frame]}\n{missing}",
                ha="center",
                va="center",
                fontsize=8,
                transform=axis.transAxes,
            )
        title = table["title"][frame] if "title" in table else table["frame_id"][frame]
        axis.set_title(f"{caption}\n{_shorten(title, 24)}", fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_edgecolor(LIKED if liked else OTHER)
            spine.set_linewidth(4 if liked else 0.8)
    for axis in axes[len(tiles) :]:
        axis.set_axis_off()


def _picture(table: dict[str, np.ndarray], frame: int) -> tuple[Any, str]:
    """The frame's image as an array, or a grey placeholder and the reason there is no image."""
    path = table["path"][frame] if "path" in table else ""
    placeholder = np.full((THUMBNAIL[1], THUMBNAIL[0], 3), 225, dtype=np.uint8)
    if path in ("", "None", "nan"):  # how frame_table() renders a null path
        return placeholder, "(no image path)"
    if not Path(path).is_file():
        return placeholder, "(image file missing)"
    try:
        image = load_rgb(Path(path))
    except Exception:  # Pillow reports a bad file through many exception types (see features.images)
        return placeholder, "(unreadable image)"
    image = ImageOps.contain(image, THUMBNAIL)  # scaled to fit, small posters up as well
    canvas = Image.new("RGB", THUMBNAIL, (255, 255, 255))  # every tile the same shape, so captions line up
    canvas.paste(image, ((THUMBNAIL[0] - image.width) // 2, (THUMBNAIL[1] - image.height) // 2))
    return np.asarray(canvas), ""


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
