"""An independent, non-learned judge of toy images: pixel statistics, no trained model.

It reads what a 32x32 toy image shows, so generated images can be graded without trusting the
toy CLIP scorer (which could share the generator's blind spots):

1. Every pixel gets the nearest palette colour.
2. Background = the most common colour on the 2-pixel border ring.
3. Foreground = the most common other colour; its mask is cleaned to the largest connected blob.
4. Shape = the template (circle, square, upward triangle) filling the blob's bounding box that
   overlaps the blob's soft coverage best (intersection over union). Fill fractions differ a lot
   (square 1, circle 0.79, triangle 0.5), so the decision is robust to blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .data import COLOURS, PALETTE, SHAPES

_BORDER = 2


@dataclass(frozen=True)
class Reading:
    """What the checker sees in one image; ``None`` where it finds nothing to judge."""

    shape: int | None  # index into SHAPES
    fg: int | None  # index into COLOURS
    bg: int  # index into COLOURS
    fill: float  # foreground coverage of its bounding box (diagnostic)

    def describe(self) -> str:
        shape = SHAPES[self.shape] if self.shape is not None else "?"
        fg = COLOURS[self.fg] if self.fg is not None else "?"
        return f"a {fg} {shape} on a {COLOURS[self.bg]} background"


def _templates(h: int, w: int) -> dict[int, np.ndarray]:
    """Coverage of an ``h`` x ``w`` box by each shape, fitted to fill the box (4x supersampled)."""
    s = 4
    y = (np.arange(h * s, dtype=np.float32) + 0.5) / (h * s)  # 0..1 top to bottom
    x = (np.arange(w * s, dtype=np.float32) + 0.5) / (w * s)
    yy, xx = y[:, None], x[None, :]
    shapes = {
        SHAPES.index("circle"): (xx - 0.5) ** 2 + (yy - 0.5) ** 2 <= 0.25,
        SHAPES.index("square"): np.ones((h * s, w * s), dtype=bool),
        SHAPES.index("triangle"): np.abs(xx - 0.5) <= 0.5 * yy,
    }
    return {k: v.reshape(h, s, w, s).mean(axis=(1, 3)) for k, v in shapes.items()}


def read_image(image: np.ndarray) -> Reading:
    """Judge one uint8 image (H x W x 3); see the module docstring for the method."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image but got shape {image.shape}")
    img = image.astype(np.float32)
    # 1. Nearest palette colour per pixel.
    dist = ((img[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1)
    labels = dist.argmin(-1)
    # 2. Background from the border ring.
    ring = np.ones(labels.shape, dtype=bool)
    ring[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    bg = int(np.bincount(labels[ring], minlength=len(COLOURS)).argmax())
    # 3. Foreground: the most common other colour, largest connected blob of it.
    inner = labels[~ring]
    others = inner[inner != bg]
    if others.size == 0:
        return Reading(shape=None, fg=None, bg=bg, fill=0.0)
    fg = int(np.bincount(others, minlength=len(COLOURS)).argmax())
    blobs, n = ndimage.label(labels == fg)
    sizes = ndimage.sum_labels(np.ones_like(blobs), blobs, index=np.arange(1, n + 1))
    mask = blobs == (1 + int(np.argmax(sizes)))
    # Soft coverage: position of each pixel on the line from the background to the foreground colour.
    bg_col = img[(labels == bg) & ring].mean(0) if ((labels == bg) & ring).any() else PALETTE[bg]
    fg_col = img[mask].mean(0)
    axis = fg_col - bg_col
    alpha = np.clip(((img - bg_col) @ axis) / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    # 4. Shape: best template in the blob's bounding box.
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if (y1 - y0) < 2 or (x1 - x0) < 2:
        return Reading(shape=None, fg=fg, bg=bg, fill=0.0)
    grown = ndimage.binary_dilation(mask, iterations=1)  # keep the anti-aliased rim of the blob
    soft = np.where(grown, alpha, 0.0)
    box = soft[y0:y1, x0:x1]
    outside = float(soft.sum() - box.sum())
    best, best_iou = None, -1.0
    for shape, tpl in _templates(y1 - y0, x1 - x0).items():
        inter = float(np.minimum(box, tpl).sum())
        union = float(np.maximum(box, tpl).sum()) + outside
        iou = inter / max(union, 1e-6)
        if iou > best_iou:
            best, best_iou = shape, iou
    fill = float(box.sum()) / float(box.size)
    return Reading(shape=best, fg=fg, bg=bg, fill=fill)


def read_images(images: np.ndarray) -> list[Reading]:
    """Judge a batch of uint8 images (N x H x W x 3)."""
    return [read_image(im) for im in images]
