"""Images as the scorers see them: conversion, the checks that exclude an image from an average
(NaN, all black, constant), and a student's fidelity to its teacher's image (PSNR, SSIM).

Kept apart from the CLIP scorer in :mod:`dsdcompare.metrics` (which re-exports these names) so
every scorer, the engine and the store share one definition.
"""

from __future__ import annotations

import numpy as np
import torch

#: Why an image is excluded from the average (the values of :func:`check_image`).
EXCLUDE_NONFINITE = "NaN/inf pixels"
EXCLUDE_BLACK = "all black"
EXCLUDE_CONSTANT = "constant image"

def _image_array(image) -> np.ndarray:
    """One image (PIL, HxWx3 or 3xHxW array/tensor) as an HxWx3 numpy array, dtype unchanged."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"Expected an RGB PIL image, but the image mode is {image.mode!r}.")
        return np.array(image)  # a writable copy (torch.from_numpy warns on read-only arrays)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        image = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Expected a PIL image, numpy array or torch tensor, got {type(image).__name__}.")
    if image.ndim != 3:
        raise ValueError(f"Expected one image of shape HxWx3 or 3xHxW, got shape {tuple(image.shape)}.")
    channels_last, channels_first = image.shape[-1] == 3, image.shape[0] == 3
    if channels_last and channels_first:
        raise ValueError(f"Image shape {tuple(image.shape)} is ambiguous (3 channels first and last).")
    if channels_first:
        image = np.moveaxis(image, 0, -1)
    elif not channels_last:
        raise ValueError(f"Expected 3 colour channels (HxWx3 or 3xHxW), got shape {tuple(image.shape)}.")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"Expected uint8 or float pixels, got dtype {image.dtype}; convert to uint8 first.")
    return image


def _image_list(images) -> list[np.ndarray]:
    """A list of images, a single image, or a batch (BxHxWx3 / Bx3xHxW) as HxWx3 arrays."""
    if isinstance(images, (list, tuple)):
        return [_image_array(im) for im in images]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return [_image_array(im) for im in images]
    return [_image_array(images)]


def check_image(image) -> str | None:
    """Return why ``image`` must be excluded from a score, or None if it can be scored.

    Reasons: ``"NaN/inf pixels"``, ``"all black"`` (every pixel 0: a safety-checker blackout or a
    failed decode), ``"constant image"`` (every pixel the same value).
    """
    array = _image_array(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        return EXCLUDE_NONFINITE
    lo, hi = array.min(), array.max()
    if hi == 0 and lo == 0:
        return EXCLUDE_BLACK
    if lo == hi:
        return EXCLUDE_CONSTANT
    return None


def to_uint8(image) -> np.ndarray:
    """Return ``image`` as an HxWx3 uint8 array; floats must lie in [0, 1] and are rounded.

    torchmetrics' CLIP processor divides pixels by 255, so float images in [0, 1] would be scaled
    twice: converting here is what makes uint8 and float inputs score the same.
    """
    array = _image_array(image)
    if array.dtype == np.uint8:
        return array
    if not np.isfinite(array).all():
        raise ValueError("Image has NaN/inf pixels; check_image() excludes such images before scoring.")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"Float images must lie in [0, 1], but pixels range from {lo} to {hi}.")
    return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)


def _to_unit_float(image) -> torch.Tensor:
    """Image as a 1x3xHxW float64 tensor in [0, 1] (uint8 / 255, floats as they are)."""
    array = _image_array(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float64) / 255.0
    else:
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"Float images must lie in [0, 1], but pixels range from {lo} to {hi}.")
        array = array.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)


def fidelity(student_image, teacher_image) -> dict[str, float | str | None]:
    """PSNR and SSIM of a student image against its teacher's image for the same prompt and seed.

    Only meaningful for latent-matched pairs (same initial latents, same scheduler and steps).
    Both images are compared as floats in [0, 1] (``data_range=1.0``); uint8 images are divided by
    255. Returns ``{"psnr": dB (inf for identical images), "ssim": at most 1, "excluded": None}``,
    or both None and ``excluded`` set to the reason when either image fails :func:`check_image`.
    """
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    for who, image in (("student", student_image), ("teacher", teacher_image)):
        reason = check_image(image)
        if reason is not None:
            return {"psnr": None, "ssim": None, "excluded": f"{who} image: {reason}"}
    student, teacher = _to_unit_float(student_image), _to_unit_float(teacher_image)
    if student.shape != teacher.shape:
        raise ValueError(
            f"Student and teacher images must have the same size, but the student is "
            f"{student.shape[2]}x{student.shape[3]} and the teacher {teacher.shape[2]}x{teacher.shape[3]} (HxW)."
        )
    psnr = peak_signal_noise_ratio(student, teacher, data_range=1.0)
    ssim = structural_similarity_index_measure(student, teacher, data_range=1.0)
    return {"psnr": float(psnr), "ssim": float(ssim), "excluded": None}


def screen(images) -> tuple[list[str | None], list[np.ndarray]]:
    """Images as every scorer takes them: the exclusion reason of each (None: usable, see
    :func:`check_image`) and the usable ones as uint8 HxWx3 arrays, in input order."""
    arrays = _image_list(images)
    if not arrays:
        raise ValueError("No images to score: `images` is empty.")
    excluded = [check_image(a) for a in arrays]
    return excluded, [to_uint8(a) for a, reason in zip(arrays, excluded) if reason is None]


def in_input_order(scores: list[float], excluded: list[str | None]) -> list[float | None]:
    """The scores of the usable images put back among the excluded ones (None there)."""
    it = iter(scores)
    return [next(it) if reason is None else None for reason in excluded]


def none_scored(excluded: list[str | None]) -> str:
    """Why a score has no value when every image was excluded."""
    return (f"no image could be scored: all {len(excluded)} excluded "
            f"({', '.join(sorted(set(excluded)))})")
