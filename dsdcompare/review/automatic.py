"""The automatic numbers of a review's pairs, set beside the votes, and :func:`analyse`, which
computes everything a review's results show.

Per model pair (A, B), over the review's pairs (the same prompts, seeds and latents the
reviewers saw):

- **CLIP difference** B minus A, paired per image pair, averaged within a prompt, with the
  bootstrap interval over prompts of :func:`dsdcompare.stats.bootstrap_ci` (only pairs scored by
  one checkpoint and scale count).
- **Fidelity** of B to A: PSNR and SSIM of the two shown images (the engine's stored value when
  one was measured against the other, else computed from the stored PNGs with
  :func:`dsdcompare.fidelity.fidelity`); means with bootstrap intervals.
- **Latency ratio** B / A of the steady-state medians: the geometric mean over prompts of the
  paired ratios, with its bootstrap interval (computed on logs).
- **Flagged images**: the share of each model's shown results with an image problem flag
  (black, NaN, NSFW; not timing flags), with Wilson intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..stats import bootstrap_ci
from .model import Review, load_votes
from .statistics import (
    Analysis,
    agreement,
    bradley_terry,
    by_reviewer,
    disagreements,
    position_bias,
    vote_frame,
    wilson_interval,
    win_rates,
)


def pair_results(store, review: Review) -> pd.DataFrame:
    """The stored result rows the review shows, indexed by ``result_id``."""
    ids = {p.result_a for p in review.pairs} | {p.result_b for p in review.pairs}
    df = store.results()
    return df[df["result_id"].isin(ids)].set_index("result_id", drop=False)


def image_flagged(flags: str) -> bool:
    """Whether a result's joined flags name an image problem (``image N: ...``: black, NaN,
    NSFW); timing flags (a contended CPU) are about the clock, not the image."""
    return any(part.strip().startswith("image ") for part in (flags or "").split("; "))


def _fidelity(a: pd.Series, b: pd.Series, compute: bool) -> tuple[float, float]:
    """(PSNR, SSIM) of B's shown image against A's: stored when measured, else computed."""
    for row, other in ((b, a), (a, b)):
        if row["fidelity_against"] == other["model"] and pd.notna(row["ssim"]):
            return (float(row["psnr"]) if pd.notna(row["psnr"]) else math.inf, float(row["ssim"]))
    if not compute or not a["image_paths"] or not b["image_paths"]:
        return math.nan, math.nan
    from PIL import Image

    from ..fidelity import fidelity

    with Image.open(a["image_paths"][0]) as ia, Image.open(b["image_paths"][0]) as ib:
        if ia.size != ib.size:  # different native sizes: fidelity is not defined
            return math.nan, math.nan
        got = fidelity(ib.convert("RGB"), ia.convert("RGB"))
    return (got["psnr"] if got["psnr"] is not None else math.nan,
            got["ssim"] if got["ssim"] is not None else math.nan)


def _mean_ci(per_prompt: pd.Series, ci: dict) -> tuple[float, float, float]:
    values = per_prompt.replace([np.inf, -np.inf], np.nan).dropna()
    interval = bootstrap_ci(values, **ci)
    return (float(values.mean()) if len(values) else math.nan, interval.low, interval.high)


def automatic(review: Review, results: pd.DataFrame, *, compute_fidelity: bool = True,
              confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """One row per model pair of the review: CLIP difference, fidelity, latency ratio and flags
    (see the module docstring); ``results`` is :func:`pair_results`."""
    ci = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    rows = []
    groups: dict[tuple[str, str], list] = {}
    for p in review.pairs:
        groups.setdefault((p.model_a, p.model_b), []).append(p)
    for (a, b), pairs in groups.items():
        items = []
        for p in pairs:
            ra, rb = results.loc[p.result_a], results.loc[p.result_b]
            same_scorer = (ra["score_checkpoint"] == rb["score_checkpoint"]
                           and ra["score_scale"] == rb["score_scale"])
            psnr, ssim = _fidelity(ra, rb, compute_fidelity)
            items.append({"prompt": p.prompt,
                          "clip_a": ra["clip_score"], "clip_b": rb["clip_score"],
                          "diff": rb["clip_score"] - ra["clip_score"] if same_scorer else math.nan,
                          "psnr": psnr, "ssim": ssim,
                          "log_ratio": math.log(rb["median_s"] / ra["median_s"])
                          if ra["median_s"] and rb["median_s"] else math.nan,
                          "latency_a": ra["median_s"], "latency_b": rb["median_s"],
                          "flag_a": image_flagged(ra["flags"]),
                          "flag_b": image_flagged(rb["flags"]),
                          "checkpoint": ra["score_checkpoint"]})
        t = pd.DataFrame(items)
        by_prompt = t.groupby("prompt")
        diff = _mean_ci(by_prompt["diff"].mean(), ci)
        psnr = _mean_ci(by_prompt["psnr"].mean(), ci)
        ssim = _mean_ci(by_prompt["ssim"].mean(), ci)
        log_ratio = _mean_ci(by_prompt["log_ratio"].mean(), ci)
        flags_a = wilson_interval(t["flag_a"].sum(), len(t), confidence=confidence)
        flags_b = wilson_interval(t["flag_b"].sum(), len(t), confidence=confidence)
        rows.append({
            "model_a": a, "model_b": b, "n_pairs": len(t),
            "n_scored": int(t["diff"].notna().sum()),
            "score_checkpoint": ", ".join(sorted({str(c) for c in t["checkpoint"].dropna()})) or None,
            "clip_a": float(t["clip_a"].mean()), "clip_b": float(t["clip_b"].mean()),
            "clip_diff": diff[0], "clip_diff_low": diff[1], "clip_diff_high": diff[2],
            "psnr": psnr[0], "psnr_low": psnr[1], "psnr_high": psnr[2],
            "ssim": ssim[0], "ssim_low": ssim[1], "ssim_high": ssim[2],
            "latency_a_s": float(t["latency_a"].median()), "latency_b_s": float(t["latency_b"].median()),
            "latency_ratio": math.exp(log_ratio[0]) if not math.isnan(log_ratio[0]) else math.nan,
            "latency_ratio_low": math.exp(log_ratio[1]) if not math.isnan(log_ratio[1]) else math.nan,
            "latency_ratio_high": math.exp(log_ratio[2]) if not math.isnan(log_ratio[2]) else math.nan,
            "flagged_a": float(t["flag_a"].mean()), "flagged_a_low": flags_a.low,
            "flagged_a_high": flags_a.high,
            "flagged_b": float(t["flag_b"].mean()), "flagged_b_low": flags_b.low,
            "flagged_b_high": flags_b.high,
        })
    return pd.DataFrame(rows)


def analyse(store, review: Review, *, votes=None, confidence: float = 0.95,
            n_resamples: int = 9999, refit_resamples: int | None = None, seed: int = 0,
            compute_fidelity: bool = True) -> Analysis:
    """Every number of a review's results: human preference, agreement, automatic metrics.

    ``votes`` default to the store's; ``n_resamples`` is for BCa intervals, ``refit_resamples``
    for the bootstraps that refit (Bradley-Terry, alpha; default
    :data:`~dsdcompare.review.statistics.REFIT_RESAMPLES`). Seeded: the same votes give the same
    numbers.
    """
    from .statistics import REFIT_RESAMPLES

    votes = load_votes(store, review) if votes is None else tuple(votes)
    frame = vote_frame(review, votes)
    refit = dict(confidence=confidence, n_resamples=refit_resamples or REFIT_RESAMPLES, seed=seed)
    ci = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    bt = None
    if len(review.models) >= 3 and len(frame):
        bt = bradley_terry(frame, review.models, **refit)
    return Analysis(
        review=review, votes=votes,
        win_rates=win_rates(frame, **ci),
        by_category=win_rates(frame, by=("category",), **ci),
        by_reviewer=by_reviewer(review, frame, confidence=confidence),
        bradley_terry=bt,
        agreement=agreement(frame, **refit),
        disagreements=disagreements(review, frame),
        automatic=automatic(review, pair_results(store, review),
                            compute_fidelity=compute_fidelity, **ci),
        position=position_bias(frame, confidence=confidence),
    )
