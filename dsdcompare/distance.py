"""FID and KID over a stored sweep: each student's images against its teacher's, and against a
reference set when one is given.

The teacher-referenced distance needs no dataset: a student and its teacher ran on the same
prompts, seeds and initial latents, so the teacher's images are the reference distribution the
student was distilled to reproduce. The pairs come from :func:`dsdcompare.stats.paired_differences`
(same prompt, seed, steps and conditions; the latest successful result of each), so the two sets
hold the same prompts and seeds. A reference folder or a statistics ``.npz``
(:func:`dsdcompare.scorers.save_statistics`) is compared with every model's images, teachers
included.

Each row reports its sample sizes and the warnings of
:func:`dsdcompare.scorers.distribution_distance`: FID from fewer than 2048 images per set is biased
upward and unstable, so KID is the number to read on a small sweep. Inception features are
computed once per stored image, however many comparisons use it.

Library half: no printing (``dsdcompare bench --report --distance`` prints the rows).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The columns of :func:`distance_table`, and what each holds.
DISTANCE_COLUMNS = {
    "model": "registry key of the model whose images are measured",
    "steps": "denoising steps",
    "reference": "what they are measured against: 'teacher <key>', 'folder:<name>' or "
                 "'statistics:<file>'",
    "n_student": "the model's images used (after exclusions)",
    "n_reference": "reference images (None: unknown, statistics without a count)",
    "fid": "Fréchet Inception distance (lower is closer); biased upward below 2048 images",
    "kid": "kernel Inception distance, mean over subsets (lower is closer; fine on small sets)",
    "kid_std": "standard deviation of KID over subsets",
    "fid_too_small": "True: a set is smaller than FID needs; read KID",
    "warnings": "one line each: sample size, exclusions, extractor mismatch",
}


@dataclass(frozen=True)
class SweepDistance:
    """FID and KID of one model (at one step count and condition) against one reference."""

    model: str  # registry key of the measured model
    steps: int  # denoising steps of its images
    conditions: tuple[tuple[str, object], ...]  # varying condition columns and their values
    reference: str  # "teacher <key>" | "folder:<name>" | "statistics:<file name>"
    n_student: int  # the model's images used (after exclusions)
    n_reference: int | None  # reference images (None: unknown)
    fid: float | None  # lower is closer; None when it could not be computed
    kid: float | None  # mean over subsets; None without reference features
    kid_std: float | None  # over subsets
    fid_too_small: bool  # a set is smaller than FID_MIN_SAMPLES: read KID
    extractor: str  # the Inception weights identity, layer and resize
    warnings: tuple[str, ...]  # one line each


class _Features:
    """Inception features of stored images, each image read and embedded once."""

    def __init__(self, extractor, read: Callable[[str], np.ndarray]):
        self.extractor = extractor
        self.read = read
        self.cache: dict[str, np.ndarray | None] = {}  # path -> feature row (None: excluded)

    def of(self, paths: list[str]) -> tuple[np.ndarray, int]:
        """Features of the usable images among ``paths``, and how many were left out."""
        from .fidelity import check_image

        todo = [p for p in dict.fromkeys(paths) if p not in self.cache]
        images = {p: self.read(p) for p in todo}
        usable = [p for p in todo if check_image(images[p]) is None]
        for p in todo:
            self.cache[p] = None
        if usable:
            for p, row in zip(usable, self.extractor.features([images[p] for p in usable]),
                              strict=True):
                self.cache[p] = row
        rows = [self.cache[p] for p in paths if self.cache[p] is not None]
        matrix = np.stack(rows) if rows else np.zeros((0, 2048))
        return matrix, len(paths) - len(rows)


def _read_png(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def _flat(lists) -> list[str]:
    return [str(p) for paths in lists for p in (paths if isinstance(paths, (list, tuple)) else [])]


def sweep_distances(df, *, extractor, reference: str | os.PathLike | None = None,
                    read: Callable[[str], np.ndarray] = _read_png) -> list[SweepDistance]:
    """FID and KID of each student against its teacher (and of every model against
    ``reference``, a folder of images or a statistics ``.npz``), over the rows of ``df`` (a
    :meth:`Store.results <dsdcompare.store.Store.results>` frame, e.g. a bench selection).

    Groups as :func:`dsdcompare.stats.summary` does (model, steps and every varying condition),
    so images from different settings never share a distribution. ``extractor`` is
    :func:`dsdcompare.scorers.load_inception`'s; ``read(path)`` loads one stored image.
    """
    from .stats import observations, paired_differences, varying_conditions

    if df.empty:
        return []
    features = _Features(extractor, read)
    by = ["model", "steps", *varying_conditions(observations(df))]
    out: list[SweepDistance] = []
    pairs = paired_differences(df, keep=("image_paths",))
    for key, group in pairs.groupby(by, sort=False, dropna=False):
        student = _flat(group["image_paths"])
        teacher = _flat(group["teacher_image_paths"])
        out.append(_distance(features, key, by, student, teacher,
                             f"teacher {group['teacher'].iloc[0]}"))
    if reference is not None:
        ref = _reference(features, reference)
        obs = observations(df)
        ok = obs[obs["success"].astype(bool)]
        for key, group in ok.groupby(by, sort=False, dropna=False):
            out.append(_distance(features, key, by, _flat(group["image_paths"]), ref, None))
    return out


def _reference(features: _Features, reference: str | os.PathLike):
    """A reference folder's statistics (features kept, for KID), or a statistics file's path."""
    from .errors import InputError
    from .scorers import FeatureStats, folder_images

    path = Path(reference).expanduser()
    if path.is_file():
        return path  # distribution_distance reads it and checks its extractor
    if not path.is_dir():
        raise InputError(f"--reference {reference}: no such folder or statistics file; give a "
                         f"folder of images or an .npz from dsdcompare.scorers.save_statistics")
    from .fidelity import check_image

    images = [im for im in folder_images(path) if check_image(im) is None]
    return FeatureStats.from_features(features.extractor.features(images),
                                      source=f"folder:{path.name}")


def _distance(features: _Features, key, by: list[str], student: list[str], reference,
              label: str | None) -> SweepDistance:
    """One comparison: ``reference`` is a list of image paths (the teacher's), a FeatureStats
    or a statistics file path; ``label`` names a teacher reference."""
    from .errors import InputError
    from .scorers import FID_MIN_SAMPLES, FeatureStats, distribution_distance

    values = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
    conditions = tuple((c, values[c]) for c in by[2:])
    notes: list[str] = []
    student_rows, dropped = features.of(student)
    if isinstance(reference, list):
        ref_rows, ref_dropped = features.of(reference)
        dropped += ref_dropped
    try:
        mine = FeatureStats.from_features(student_rows, source="student")
        ref = FeatureStats.from_features(ref_rows, source=label or "reference") \
            if isinstance(reference, list) else reference
        found = distribution_distance(mine, ref, extractor=features.extractor)
    except InputError as err:  # fewer than two usable images in a set
        size = min(len(student_rows), len(ref_rows) if isinstance(reference, list) else 2)
        return SweepDistance(values["model"], int(values["steps"]), conditions,
                             label or _reference_label(reference), len(student_rows),
                             len(ref_rows) if isinstance(reference, list) else None, None, None,
                             None, size < FID_MIN_SAMPLES, features.extractor.identity,
                             (str(err),))
    notes += found.warnings
    if dropped:
        notes.append(f"{dropped} image(s) left out (NaN/inf, all black or constant)")
    return SweepDistance(values["model"], int(values["steps"]), conditions,
                         label or found.reference, found.n_student, found.n_reference, found.fid,
                         found.kid, found.kid_std, found.fid_too_small, found.extractor,
                         tuple(notes))


def _reference_label(reference) -> str:
    if isinstance(reference, (str, os.PathLike)):
        return f"statistics:{Path(reference).name}"
    return getattr(reference, "source", "reference")


def distance_table(rows: list[SweepDistance]):
    """:func:`sweep_distances`' rows as a DataFrame of :data:`DISTANCE_COLUMNS` (plus each
    varying condition after ``steps``; ``warnings`` joined with ``; ``)."""
    import pandas as pd

    conditions = list(dict.fromkeys(c for r in rows for c, _ in r.conditions))
    columns = ["model", "steps", *conditions, *list(DISTANCE_COLUMNS)[2:]]
    records = []
    for r in rows:
        record = {"model": r.model, "steps": r.steps, **dict(r.conditions)}
        record.update(reference=r.reference, n_student=r.n_student, n_reference=r.n_reference,
                      fid=r.fid, kid=r.kid, kid_std=r.kid_std, fid_too_small=r.fid_too_small,
                      warnings="; ".join(r.warnings))
        records.append(record)
    return pd.DataFrame(records, columns=columns)


__all__ = ["DISTANCE_COLUMNS", "SweepDistance", "distance_table", "sweep_distances"]
