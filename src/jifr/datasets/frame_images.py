"""Small PNG images for synthetic frames, so that a synthetic dataset can be looked at.

Each frame is drawn in the colour of its planted theme (grey for an uninformative frame) with a
shape that differs by theme and its frame id written on it. A user's training frames and the
key frames chosen for that user can then be compared by eye: a model that learned the user's
visual taste picks frames of the colours the user's own items show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_DIR = "frames"
SIZE = (96, 64)  # width, height in pixels
PALETTE = (  # distinguishable colours, one per theme (cycled beyond ten themes)
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (127, 127, 127),
)
NO_THEME = (200, 200, 200)


def theme_title(theme: int) -> str:
    """A frame's display title: its planted theme (-1: uninformative)."""
    return f"theme {theme}" if theme >= 0 else "no theme"


def draw_frame(frame_id: str, theme: int) -> Image.Image:
    """One frame's picture: the theme's colour and shape, and the frame id."""
    width, height = SIZE
    colour = PALETTE[theme % len(PALETTE)] if theme >= 0 else NO_THEME
    image = Image.new("RGB", SIZE, colour)
    draw = ImageDraw.Draw(image)
    box = (width // 2 - 18, 8, width // 2 + 18, 44)
    if theme < 0:
        draw.line((box[0], box[1], box[2], box[3]), fill="white", width=3)
    elif theme % 3 == 0:
        draw.ellipse(box, fill="white")
    elif theme % 3 == 1:
        draw.rectangle(box, fill="white")
    else:
        draw.polygon([(box[0], box[3]), (width // 2, box[1]), (box[2], box[3])], fill="white")
    draw.text((4, height - 16), frame_id, fill="black", font=ImageFont.load_default(size=12))
    return image


def write_frame_images(directory: Path, frame_ids: list[str], themes: np.ndarray) -> list[str]:
    """Write ``directory/frames/<frame_id>.png`` for every frame; returns each frame's path
    relative to ``directory`` (the ``path`` column of ``item_frames``)."""
    (directory / IMAGE_DIR).mkdir(exist_ok=True)
    paths = []
    for frame_id, theme in zip(frame_ids, themes.tolist(), strict=True):
        relative = f"{IMAGE_DIR}/{frame_id}.png"
        draw_frame(frame_id, int(theme)).save(directory / relative, format="PNG")
        paths.append(relative)
    return paths
