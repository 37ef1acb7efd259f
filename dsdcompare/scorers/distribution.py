"""FID and KID: how far a student's image distribution is from a reference one.

Features are torch-fidelity's ``inception-v3-compat`` 2048-d pool features (the TensorFlow FID
Inception ported to PyTorch, with TF1's bilinear resize to 299 px: the same numbers as
torch-fidelity, pytorch-fid's weights and torchmetrics with ``antialias=False``). FID is computed
from the two sets' means and covariances as torch-fidelity does; KID is torch-fidelity's unbiased
polynomial-kernel MMD over random subsets (same seed, same subsets, same number).

The reference is one of:

- the teacher's images for the same prompts and seeds (teacher-referenced, needs no data set);
- a folder of reference images;
- precomputed statistics: an ``.npz`` with ``mu`` and ``sigma`` (pytorch-fid / clean-fid layout),
  optionally ``features`` (then KID is available too), as :func:`save_statistics` writes.

FID needs many images: with fewer samples than feature dimensions (2048) the covariance is
singular and FID is biased upward and unstable; every result carries the sample sizes and
``fid_too_small``. KID is unbiased and the better small-sample number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fidelity import _image_list, check_image, to_uint8
from ..metrics import ScorerUnavailable
from .weights import SCORER_WEIGHTS, checkpoint_identity, torch_hub_file

FEATURE_DIM = 2048
#: Below this many images per set FID's covariance estimate is singular (rank < FEATURE_DIM).
FID_MIN_SAMPLES = FEATURE_DIM
#: torch-fidelity's KID defaults: 100 subsets of (at most) 1000 images, seed 2020, cubic kernel.
KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, 2020
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_EXTRACT_BATCH = 16  # images per Inception forward pass


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class FeatureStats:
    """Inception statistics of one image set (what FID needs; KID needs ``features``)."""

    mu: np.ndarray  # mean feature, shape (2048,), float64
    sigma: np.ndarray  # feature covariance (ddof=1), shape (2048, 2048), float64
    n: int | None  # images behind the statistics (None: unknown, e.g. a third-party .npz)
    features: np.ndarray | None = None  # the raw (n, 2048) features when kept; KID needs them
    source: str = ""  # what the set is: "teacher", "folder:<name>", "statistics:<file name>"

    @classmethod
    def from_features(cls, features: np.ndarray, *, source: str = "", keep: bool = True) -> FeatureStats:
        """Statistics of ``features`` (n, d); needs at least 2 rows for a covariance."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise InputError(f"FID/KID need at least 2 images per set, got {features.shape[0] if features.ndim == 2 else 0}.")
        return cls(mu=features.mean(axis=0), sigma=np.cov(features, rowvar=False), n=features.shape[0],
                   features=features if keep else None, source=source)


@dataclass
class DistributionResult:
    """FID and KID of a student's images against a reference, with what is needed to read them."""

    fid: float | None  # Fréchet Inception distance (lower is closer); None when it could not be computed
    kid: float | None  # KID mean over subsets (lower is closer); None without reference features
    kid_std: float | None  # KID standard deviation over subsets
    n_student: int  # student images used (after exclusions)
    n_reference: int | None  # reference images behind the statistics (None: unknown)
    reference: str  # "teacher" | "folder:<name>" | "statistics:<file name>"
    extractor: str  # feature extractor identity: weights checkpoint + layer + resize
    kid_subsets: int  # subsets KID averaged over (0 when KID was not computed)
    kid_subset_size: int | None  # images per KID subset
    fid_too_small: bool  # True: fewer than FID_MIN_SAMPLES images in a set; FID is biased, read KID
    excluded: int = 0  # student/reference images left out (NaN/inf, black, constant)
    warnings: list[str] = field(default_factory=list)  # one line each, to show next to the numbers
    lower_is_better: bool = True  # both FID and KID: 0 means the same distribution


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


class InceptionFeatures:
    """torch-fidelity's FID Inception, returning 2048-d pool features; build with :func:`load_inception`."""

    def __init__(self, model, *, checkpoint: str, device: str):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.checkpoint = checkpoint  # identity of the Inception weights file
        self.identity = f"{checkpoint} | inception-v3-compat pool3 2048 | TF1 bilinear resize to 299"

    def features(self, images) -> np.ndarray:
        """(n, 2048) float64 features of ``images`` (uint8 or [0, 1] floats, any sizes)."""
        arrays = [to_uint8(a) for a in _image_list(images)]
        out: list[np.ndarray] = []
        start = 0
        while start < len(arrays):  # batch consecutive images of one size
            end = start + 1
            while end < len(arrays) and end - start < _EXTRACT_BATCH and arrays[end].shape == arrays[start].shape:
                end += 1
            batch = torch.from_numpy(np.stack(arrays[start:end])).permute(0, 3, 1, 2).contiguous().to(self.device)
            with torch.no_grad():
                (pool,) = self.model(batch)
            out.append(pool.double().cpu().numpy())
            start = end
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def load_inception(*, device: str = "cpu", weights: str | os.PathLike | None = None) -> InceptionFeatures:
    """Load the FID Inception; never downloads.

    Args:
        device: where it runs.
        weights: the weights file; default torch-fidelity's release file in torch hub's cache
            (``dsdcompare download --scorers fid`` puts it there).

    Raises:
        ScorerUnavailable: torch-fidelity is not installed, or the weights are missing or unreadable.
    """
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ScorerUnavailable("fid scorer unavailable: torch-fidelity is not installed; pip install torch-fidelity.") from err
    path = torch_hub_file(SCORER_WEIGHTS["fid"][0].url, scorer="fid") if weights is None else Path(weights)
    try:
        model = FeatureExtractorInceptionV3("inception-v3-compat", [str(FEATURE_DIM)],
                                            feature_extractor_weights_path=str(path))
    except (OSError, RuntimeError) as err:
        raise ScorerUnavailable(f"fid scorer unavailable: {path.name} could not be loaded ({type(err).__name__}); "
                                f"fetch it with `dsdcompare download --scorers fid`.") from err
    return InceptionFeatures(model, checkpoint=checkpoint_identity(path), device=device)


# --------------------------------------------------------------------------------------------
# Reference sets
# --------------------------------------------------------------------------------------------


def folder_images(folder: str | os.PathLike) -> list[np.ndarray]:
    """The images of a folder (sorted by name; png/jpg/webp/bmp) as RGB uint8 arrays."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Reference folder {str(folder)!r} does not exist; pass a folder of images or a .npz of statistics.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"Reference folder {str(folder)!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(np.array(image.convert("RGB")))
    return images


def save_statistics(stats: FeatureStats, path: str | os.PathLike, *, extractor: str) -> None:
    """Write ``stats`` as an ``.npz`` (``mu``, ``sigma``, ``n``, ``features`` if kept, ``extractor``)."""
    arrays = {"mu": stats.mu, "sigma": stats.sigma, "n": np.array(-1 if stats.n is None else stats.n),
              "extractor": np.array(extractor)}
    if stats.features is not None:
        arrays["features"] = stats.features
    np.savez(path, **arrays)


def load_statistics(path: str | os.PathLike) -> tuple[FeatureStats, str | None]:
    """Read an ``.npz`` of statistics: (stats, the extractor it names or None if it names none)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{str(path)!r} is not a statistics file with 'mu' and 'sigma' ({type(err).__name__}).") from err
    if mu.shape != (FEATURE_DIM,) or sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise InputError(f"{str(path)!r} holds statistics of shape {mu.shape}/{sigma.shape}; expected 2048-d Inception pool features.")
    n = int(data["n"]) if "n" in data and int(data["n"]) >= 0 else None
    features = np.asarray(data["features"], np.float64) if "features" in data else None
    extractor = str(data["extractor"]) if "extractor" in data else None
    return FeatureStats(mu, sigma, n, features, source=f"statistics:{path.name}"), extractor


# --------------------------------------------------------------------------------------------
# The distances
# --------------------------------------------------------------------------------------------


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance of two Gaussians: |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b).

    The value is torch-fidelity's; the trace term is computed stably and fast. When a set keeps
    its features and has fewer images than feature dimensions, S = A^T A (A: its centred features
    / sqrt(n - 1)), so the nonzero eigenvalues of S_a S_b are those of the small symmetric matrix
    A S_b A^T: exact, in milliseconds, and free of the roundoff of a singular 2048 x 2048 product
    (which can make FID of a set with itself come out negative). Otherwise it is the trace of
    sqrt(S_a^1/2 S_b S_a^1/2), from symmetric eigendecompositions.
    """
    diff = a.mu - b.mu
    return float(diff.dot(diff) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * _trace_sqrt_product(a, b))


def _sum_sqrt_eigenvalues(matrix: np.ndarray) -> float:
    """Sum of the square roots of a symmetric PSD matrix's eigenvalues (roundoff negatives as 0)."""
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((matrix + matrix.T) / 2), 0, None)).sum())


def _trace_sqrt_product(a: FeatureStats, b: FeatureStats) -> float:
    """tr sqrt(S_a S_b): the sum of the square roots of the product's eigenvalues."""
    def centred(s: FeatureStats) -> np.ndarray | None:
        if s.features is None or s.n != len(s.features) or s.n >= s.mu.shape[0]:
            return None
        return (s.features - s.mu) / np.sqrt(s.n - 1)

    left, right = centred(a), centred(b)
    if left is not None and right is not None:  # both small: singular values of A B^T, the most exact
        return float(np.linalg.svd(left @ right.T, compute_uv=False).sum())
    if left is not None:
        return _sum_sqrt_eigenvalues(left @ b.sigma @ left.T)
    if right is not None:  # tr sqrt(S_a S_b) = tr sqrt(S_b S_a)
        return _sum_sqrt_eigenvalues(right @ a.sigma @ right.T)
    values, vectors = np.linalg.eigh(a.sigma)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    return _sum_sqrt_eigenvalues(root @ b.sigma @ root)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (torch-fidelity's)."""
    gamma = 1.0 / x.shape[1]
    k_xx, k_yy, k_xy = ((p @ q.T * gamma + coef0) ** degree for p, q in ((x, x), (y, y), (x, y)))
    m = x.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid_from_features(a: np.ndarray, b: np.ndarray, *, subsets: int = KID_SUBSETS,
                      subset_size: int | None = None, seed: int = KID_SEED) -> tuple[float, float, int]:
    """KID mean and std over ``subsets`` random subsets (torch-fidelity's draw order and seed).

    ``subset_size`` defaults to min(1000, len(a), len(b)). Returns (mean, std, subset size).
    """
    size = min(KID_SUBSET_SIZE, len(a), len(b)) if subset_size is None else subset_size
    if size < 2 or size > min(len(a), len(b)):
        raise InputError(f"KID subset size {size} must be between 2 and the smaller set ({min(len(a), len(b))}).")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        mmds[i] = _mmd2_unbiased(x, y)
    return float(np.mean(mmds)), float(np.std(mmds)), size


def _usable(images) -> tuple[list[np.ndarray], int]:
    """Images that pass check_image, and how many did not."""
    arrays = _image_list(images)
    kept = [a for a in arrays if check_image(a) is None]
    return kept, len(arrays) - len(kept)


def distribution_distance(student, reference, *, extractor: InceptionFeatures,
                          kid_subsets: int = KID_SUBSETS, kid_subset_size: int | None = None,
                          seed: int = KID_SEED) -> DistributionResult:
    """FID and KID of the ``student`` set against ``reference``.

    Args:
        student: the student's images (list or batch; uint8 or [0, 1] floats), or their
            :class:`FeatureStats` (features kept) when one set is compared with several references.
        reference: the teacher's images for the same prompts and seeds (a list or batch), a folder
            of reference images, an ``.npz`` of statistics, or a :class:`FeatureStats`.
        extractor: from :func:`load_inception`.
        kid_subsets, kid_subset_size, seed: KID's subsets (defaults as torch-fidelity).

    Returns:
        A :class:`DistributionResult`; KID is None when the reference has no features (statistics
        without ``features``), with the reason in ``warnings``.
    """
    warnings: list[str] = []
    dropped = 0
    if isinstance(reference, FeatureStats):
        ref = reference
    elif isinstance(reference, (str, os.PathLike)) and Path(reference).is_file():
        ref, named = load_statistics(reference)
        if named is None:
            warnings.append("the statistics file does not name its feature extractor; FID is only valid "
                            "if it was made with the same Inception weights and resize")
        elif named != extractor.identity:
            warnings.append(f"the statistics were made with {named!r}, not {extractor.identity!r}; FID is not comparable")
    else:
        is_folder = isinstance(reference, (str, os.PathLike))
        images, dropped = _usable(folder_images(reference) if is_folder else reference)
        ref = FeatureStats.from_features(extractor.features(images),
                                         source=f"folder:{Path(reference).name}" if is_folder else "teacher")
    if not isinstance(student, FeatureStats):
        students, dropped_student = _usable(student)
        dropped += dropped_student
        student = FeatureStats.from_features(extractor.features(students), source="student")
    elif student.features is None:
        raise InputError("The student's FeatureStats must keep its features (FeatureStats.from_features(..., keep=True)).")
    sizes = [student.n] + ([ref.n] if ref.n is not None else [])
    too_small = min(sizes) < FID_MIN_SAMPLES
    if too_small:
        warnings.append(f"FID from {min(sizes)} images per set is biased upward and unstable (covariance of "
                        f"{FEATURE_DIM}-d features needs at least {FID_MIN_SAMPLES}); compare KID instead")
    kid = kid_std = size = None
    if ref.features is None:
        warnings.append("no reference features (statistics only): KID needs the reference images or saved features")
    else:
        kid, kid_std, size = kid_from_features(student.features, ref.features, subsets=kid_subsets,
                                               subset_size=kid_subset_size, seed=seed)
    if dropped:
        warnings.append(f"{dropped} image(s) left out (NaN/inf, all black or constant)")
    return DistributionResult(
        fid=fid_from_stats(student, ref), kid=kid, kid_std=kid_std, n_student=student.n, n_reference=ref.n,
        reference=ref.source, extractor=extractor.identity, kid_subsets=kid_subsets if kid is not None else 0,
        kid_subset_size=size, fid_too_small=too_small, excluded=dropped, warnings=warnings,
    )


__all__ = [
    "FEATURE_DIM",
    "FID_MIN_SAMPLES",
    "KID_SEED",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "DistributionResult",
    "FeatureStats",
    "InceptionFeatures",
    "distribution_distance",
    "fid_from_stats",
    "folder_images",
    "kid_from_features",
    "load_inception",
    "load_statistics",
    "save_statistics",
]
