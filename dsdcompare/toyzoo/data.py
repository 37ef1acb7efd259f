"""Synthetic shapes: the toy world the miniature models are trained on.

Every image is 32x32 RGB: one shape (circle, square or triangle) in one of six colours on a flat
background of another colour, with random size, position and slight colour jitter. Each has a
caption such as ``"a red circle on a blue background"``: 3 shapes x 6 x 5 colours = 90 captions.
Images are drawn 4x supersampled and box-filtered, so edges are anti-aliased like a real picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Image side in pixels.
IMAGE_SIZE = 32
#: Shape names, in label order.
SHAPES = ("circle", "square", "triangle")
#: Colour names, in label order, and their nominal RGB values (far apart in RGB on purpose).
COLOURS = ("red", "green", "blue", "yellow", "white", "black")
PALETTE = np.array(
    [
        [220, 40, 40],
        [40, 180, 60],
        [40, 70, 220],
        [235, 215, 40],
        [240, 240, 240],
        [25, 25, 25],
    ],
    dtype=np.float32,
)
#: Shape side (bounding box) range in pixels, and how far the centre may move from the middle.
SIZE_RANGE = (13, 22)
CENTRE_JITTER = 3.0
#: Per-image, per-channel colour jitter (uniform, +-) on the nominal palette colours.
COLOUR_JITTER = 12.0
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Attributes:
    """What an image shows (label indices into :data:`SHAPES` and :data:`COLOURS`)."""

    shape: int  # index into SHAPES
    fg: int  # index into COLOURS: the shape's colour
    bg: int  # index into COLOURS: the background colour, never equal to fg

    @property
    def caption(self) -> str:
        """The caption the models are trained on."""
        return caption(self.shape, self.fg, self.bg)


def caption(shape: int, fg: int, bg: int) -> str:
    """Return ``"a {fg} {shape} on a {bg} background"``."""
    return f"a {COLOURS[fg]} {SHAPES[shape]} on a {COLOURS[bg]} background"


def all_attributes() -> list[Attributes]:
    """All 90 (shape, fg, bg) combinations in a fixed order (the caption index)."""
    return [
        Attributes(s, f, b)
        for s in range(len(SHAPES))
        for f in range(len(COLOURS))
        for b in range(len(COLOURS))
        if f != b
    ]


ALL_ATTRIBUTES = all_attributes()
CAPTIONS = [a.caption for a in ALL_ATTRIBUTES]
CAPTION_INDEX = {c: i for i, c in enumerate(CAPTIONS)}


def one_attribute_changed(attrs: Attributes) -> list[Attributes]:
    """Every valid combination that differs from ``attrs`` in exactly one attribute."""
    out = [Attributes(s, attrs.fg, attrs.bg) for s in range(len(SHAPES)) if s != attrs.shape]
    out += [Attributes(attrs.shape, f, attrs.bg) for f in range(len(COLOURS)) if f not in (attrs.fg, attrs.bg)]
    out += [Attributes(attrs.shape, attrs.fg, b) for b in range(len(COLOURS)) if b not in (attrs.fg, attrs.bg)]
    return out


def shape_mask(shape: int, cx: float, cy: float, size: float, n: int = IMAGE_SIZE, supersample: int = _SUPERSAMPLE) -> np.ndarray:
    """Coverage in [0, 1] of an ``n`` x ``n`` pixel grid by one shape (anti-aliased by supersampling).

    ``(cx, cy)`` is the centre of the shape's bounding box and ``size`` its side, in pixels.
    The triangle points up, base at the bottom of its box.
    """
    m = n * supersample
    coords = (np.arange(m, dtype=np.float32) + 0.5) / supersample
    x = coords[None, :]
    y = coords[:, None]
    h = size / 2.0
    if SHAPES[shape] == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= h * h
    elif SHAPES[shape] == "square":
        inside = (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    elif SHAPES[shape] == "triangle":
        top, bottom = cy - h, cy + h
        half_width = h * (y - top) / size  # 0 at the apex, h at the base
        inside = (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)
    else:  # pragma: no cover - guarded by the label range
        raise ValueError(f"shape index must be in 0..{len(SHAPES) - 1} but is {shape}")
    return inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3)).astype(np.float32)


def render(attrs: Attributes, rng: np.random.Generator) -> np.ndarray:
    """Draw one image (uint8, H x W x 3) showing ``attrs``, with random size, place and jitter."""
    size = rng.uniform(*SIZE_RANGE)
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2)
    alpha = shape_mask(attrs.shape, cx, cy, size)[..., None]
    fg = PALETTE[attrs.fg] + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=3)
    bg = PALETTE[attrs.bg] + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=3)
    img = alpha * fg + (1.0 - alpha) * bg
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, caption_ids)``: ``n`` uint8 images (n, 32, 32, 3) and their caption indices.

    Captions are balanced: every caption appears ``n // 90`` or ``n // 90 + 1`` times, shuffled.
    """
    rng = np.random.default_rng(seed)
    ids = np.resize(np.arange(len(CAPTIONS)), n)
    rng.shuffle(ids)
    images = np.stack([render(ALL_ATTRIBUTES[i], rng) for i in ids]) if n else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return images, ids.astype(np.int64)
