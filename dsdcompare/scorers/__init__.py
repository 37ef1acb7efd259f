"""Quality metrics beyond one CLIP number: preference scorers, LPIPS, FID and KID.

- Preference scorers (prompt + image -> number, higher preferred), each returning the same
  :class:`~dsdcompare.metrics.Score` as CLIP with its provenance: :func:`load_hps` (HPS v2.1),
  :func:`load_pickscore` (PickScore v1), :func:`load_imagereward` (ImageReward v1.0); or by
  metric name with :func:`load_metric_scorer`.
- Perceptual fidelity to the teacher: :func:`load_lpips` -> ``LpipsScorer.score(students,
  teachers)``, a Score per pair list (lower is closer), beside PSNR/SSIM in ``dsdcompare.fidelity``.
- Distribution distance: :func:`load_inception` + :func:`distribution_distance` -> FID and KID
  against the teacher's images, a reference folder or precomputed statistics.

Nothing here downloads: weights are looked up in the local caches (:data:`SCORER_WEIGHTS` lists
what ``dsdcompare download --scorers NAME`` fetches) and a missing file raises
:class:`~dsdcompare.metrics.ScorerUnavailable` naming it and that command.
:func:`checkpoint_identity` gives every checkpoint a machine-independent name.
"""

from __future__ import annotations

from ..metrics import BACKEND_OPEN_CLIP, BACKEND_TORCHMETRICS, SCALE_LPIPS, Score, ScorerUnavailable
from .base import PreferenceScorer
from .distribution import (
    FID_MIN_SAMPLES,
    DistributionResult,
    FeatureStats,
    InceptionFeatures,
    distribution_distance,
    fid_from_stats,
    folder_images,
    kid_from_features,
    load_inception,
    load_statistics,
    save_statistics,
)
from .hps import HPS_VERSION, HpsScorer, load_hps
from .imagereward import ImageRewardScorer, load_imagereward
from .perceptual import LpipsScorer, load_lpips
from .pickscore import PickScoreScorer, load_pickscore
from .weights import SCORER_WEIGHTS, WeightFile, checkpoint_identity, content_hash

#: Prompt-conditioned metrics and their loaders (each loader's first argument is optional weights).
PREFERENCE_SCORERS = {"hps": load_hps, "pickscore": load_pickscore, "imagereward": load_imagereward}
#: Every per-image metric name a run can ask for (CLIP is dsdcompare.metrics.load_scorer).
METRICS = ("clip", *PREFERENCE_SCORERS, "lpips")
#: Set-level metrics (one number per student and reference, not per image).
SET_METRICS = ("fid", "kid")
#: Score.backend -> metric name, so a stored Score says which metric it is.
_BACKEND_METRIC = {BACKEND_TORCHMETRICS: "clip", BACKEND_OPEN_CLIP: "clip", "hpsv2": "hps",
                   "pickscore": "pickscore", "imagereward": "imagereward"}


def metric_of(score: Score) -> str:
    """The metric a :class:`~dsdcompare.metrics.Score` measures: ``clip``, ``hps``, ``pickscore``,
    ``imagereward`` or ``lpips`` (LPIPS shares torchmetrics with CLIP, so its scale decides)."""
    if score.scale == SCALE_LPIPS:
        return "lpips"
    return _BACKEND_METRIC[score.backend]


def load_metric_scorer(metric: str, *, device: str = "cpu", **kwargs):
    """Load the scorer of a per-image ``metric`` other than CLIP ("hps", "pickscore",
    "imagereward", "lpips"); ``kwargs`` go to its loader.

    Raises:
        ScorerUnavailable: its weights are not cached here.
        ValueError: an unknown metric name.
    """
    if metric == "lpips":
        return load_lpips(device=device, **kwargs)
    if metric not in PREFERENCE_SCORERS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {', '.join(m for m in METRICS if m != 'clip')}.")
    return PREFERENCE_SCORERS[metric](device=device, **kwargs)


def metric_unavailable(metric: str, reason: str, *, checkpoint: str | None = None, n_images: int = 0) -> Score:
    """A Score without a value for ``metric`` ("hps", "pickscore", "imagereward", "lpips") whose
    scorer could not be loaded or run; ``checkpoint`` defaults to the metric's download name."""
    scorer = {"hps": HpsScorer, "pickscore": PickScoreScorer, "imagereward": ImageRewardScorer,
              "lpips": LpipsScorer}[metric]
    if checkpoint is None:
        first = SCORER_WEIGHTS[metric][0]
        checkpoint = f"{first.repo}:{first.filename}" if first.repo and first.filename else (first.repo or first.url)
    return Score(
        value=None, per_image=[None] * n_images, excluded=[None] * n_images, backend=scorer.backend,
        checkpoint=checkpoint, scale=scorer.scale, standin=False, prompt_tokens=None, max_prompt_tokens=None,
        truncated=False, scored_prompt=None, error=reason,
    )


__all__ = [
    "FID_MIN_SAMPLES",
    "HPS_VERSION",
    "METRICS",
    "PREFERENCE_SCORERS",
    "SCORER_WEIGHTS",
    "SET_METRICS",
    "DistributionResult",
    "FeatureStats",
    "HpsScorer",
    "ImageRewardScorer",
    "InceptionFeatures",
    "LpipsScorer",
    "PickScoreScorer",
    "PreferenceScorer",
    "ScorerUnavailable",
    "WeightFile",
    "checkpoint_identity",
    "content_hash",
    "distribution_distance",
    "fid_from_stats",
    "folder_images",
    "kid_from_features",
    "load_hps",
    "load_imagereward",
    "load_inception",
    "load_lpips",
    "load_metric_scorer",
    "load_pickscore",
    "load_statistics",
    "metric_of",
    "metric_unavailable",
    "save_statistics",
]
