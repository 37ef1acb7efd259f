"""Statistics over stored benchmark results: CIs, paired teacher/student differences, latency.

Pure functions of the store's results DataFrame (:meth:`dsdcompare.store.Store.results`): one row
per model and request, with at least the columns ``model``, ``prompt``, ``seed``, ``steps``,
``success``, ``clip_score`` and ``median_s``. Optional columns are used when present: ``teacher``
(else the registry is asked), ``images_per_prompt`` (else 1) and the condition columns in
:data:`CONDITION_COLUMNS`.

Why the numbers are computed this way:

- **One observation is one prompt and seed.** Stored rows that repeat the same model, prompt,
  seed, steps and conditions (a rerun of a failed result, two benches into one store) are the
  same deterministic image, not new evidence: the latest successful one counts, else the latest
  failure (:func:`observations`).
- **Conditions are never pooled silently.** A summary groups by model and step count, and also
  by every condition column (size, guidance, source, scorer checkpoint, ...) that takes more than
  one value within a model and step count, so scores from different settings or scorers never
  share a mean.
- **Paired differences.** A student and its teacher run on the same prompt, seed and initial
  latents, so the per-prompt difference (student minus teacher) removes the prompt-to-prompt
  spread that dominates unpaired means: its CI is much narrower than the two CIs side by side.
- **The prompt is the resampling unit.** Seeds of one prompt share its difficulty, so they are
  not independent draws: scores (and paired differences) are averaged over seeds within each
  prompt first, and the bootstrap resamples prompts. Treating every prompt x seed as independent
  would make the intervals too narrow. With the same seeds for every prompt, the mean is the
  plain mean of all observations.
- **Bootstrap CIs** come from :func:`scipy.stats.bootstrap` (BCa by default, seeded, so the same
  data give the same interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

#: Columns that name one observation of a model (with the conditions below).
OBSERVATION_KEY = ("prompt", "seed", "steps")
#: Settings that change the images, the timing or the score scale. Rows that differ in one of them
#: are different conditions, never pooled (see :func:`summary`). Repeats and warm-up are not among
#: them: they change how precisely a steady-state latency is measured, not what it is (and the
#: store treats requests that differ only in them as the same request).
CONDITION_COLUMNS = ("source", "negative_prompt", "width", "height", "guidance", "scheduler",
                     "images_per_prompt", "dtype", "device_name", "score_checkpoint", "score_scale")
#: Condition columns that describe the scorer, not the images: empty on a result without a score
#: (a failure), which then takes its siblings' scorer (see :func:`observations`).
SCORER_COLUMNS = ("score_checkpoint", "score_scale")
#: Conditions a student must share with its teacher to be paired with it. The scheduler class
#: (each repo's own) and the device name (one GPU type per process) may differ between the two.
PAIRING_COLUMNS = ("source", "negative_prompt", "width", "height", "guidance", "images_per_prompt",
                   "dtype", "score_checkpoint", "score_scale")

#: The columns of :func:`summary`, after the grouping columns, and what each holds.
SUMMARY_COLUMNS = {
    "teacher": "registry key of the model's teacher, or None",
    "n": "observations (prompt x seed) with a successful result",
    "n_failed": "observations whose latest result failed",
    "n_scored": "observations with a CLIP score",
    "n_prompts": "prompts with a CLIP score (the bootstrap's resampling unit)",
    "clip_mean": "mean over prompts of the CLIP score averaged over seeds",
    "clip_ci_low": "lower end of the bootstrap CI of clip_mean",
    "clip_ci_high": "upper end of the bootstrap CI of clip_mean",
    "n_paired": "observations paired with the teacher (same prompt, seed, steps, conditions)",
    "diff_mean": "mean over prompts of the paired CLIP difference, this model minus its teacher "
                 "(NaN for teachers)",
    "diff_ci_low": "lower end of the bootstrap CI of diff_mean",
    "diff_ci_high": "upper end of the bootstrap CI of diff_mean",
    "speedup_median": "median paired ratio teacher latency / this model's latency",
    "latency_median_s": "median over observations of the per-call steady-state median (s)",
    "latency_p10_s": "10th percentile of the per-observation latency (s)",
    "latency_p90_s": "90th percentile of the per-observation latency (s)",
    "latency_iqr_s": "interquartile range of the per-observation latency (s)",
    "images_per_s": "images generated per second of steady-state calls (sum images / sum time)",
}


class Interval(NamedTuple):
    """A confidence interval; both ends are NaN when it cannot be computed (n < 2)."""

    low: float
    high: float


def bootstrap_ci(values, *, statistic: Callable = np.mean, confidence: float = 0.95,
                 method: str = "BCa", n_resamples: int = 9999, seed: int = 0) -> Interval:
    """The bootstrap confidence interval of ``statistic`` over ``values`` (NaNs dropped).

    A thin, seeded wrapper of :func:`scipy.stats.bootstrap` (``method`` is ``"BCa"``,
    ``"percentile"`` or ``"basic"``): for the same values and seed it returns scipy's interval
    exactly. Fewer than 2 values give ``(nan, nan)``; identical values give a zero-width
    interval at that value (scipy would warn and return NaN: the data are degenerate, not
    unknown).
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return Interval(float("nan"), float("nan"))
    if np.all(x == x[0]):
        value = float(statistic(x))
        return Interval(value, value)
    res = stats.bootstrap((x,), statistic, confidence_level=confidence, method=method,
                          n_resamples=n_resamples, rng=np.random.default_rng(seed),
                          batch=max(1, 20_000_000 // x.size))  # caps the jackknife's memory
    return Interval(float(res.confidence_interval.low), float(res.confidence_interval.high))


def observations(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model and observation: the latest successful row of each, else its latest
    failure (see the module docstring).

    Keeps the store's row order; adds ``teacher`` (from the registry when the column is absent)
    and ``images_per_prompt`` (1 when absent). A row without a scorer (a failure: nothing was
    scored) takes the scorer of the model's scored rows under the same image conditions when
    they have exactly one, so a failed rerun is the observation it repeats, not a condition of
    its own.
    """
    _require(df, ("model", *OBSERVATION_KEY, "success", "clip_score", "median_s"))
    out = _adopt_scorer(df.copy())
    if "teacher" not in out:
        out["teacher"] = out["model"].map(_registry_teacher)
    if "images_per_prompt" not in out:
        out["images_per_prompt"] = 1
    key = ["model", *OBSERVATION_KEY, *_present(out, CONDITION_COLUMNS)]
    # the latest successful row of each key, else its latest failure; in stored order
    ranked = out.assign(_ok=out["success"].astype(bool)).sort_values("_ok", kind="stable")
    latest = ranked.loc[~ranked[key].astype(str).duplicated(keep="last")]
    return out.loc[latest.index.sort_values()].reset_index(drop=True)


def _adopt_scorer(out: pd.DataFrame) -> pd.DataFrame:
    """Fill the scorer columns of unscored rows from their scored siblings (see observations)."""
    cols = _present(out, SCORER_COLUMNS)
    if not cols:
        return out
    unscored = out[cols].isna().all(axis=1)
    if not unscored.any() or unscored.all():
        return out
    base = ["model", "steps", *(c for c in _present(out, CONDITION_COLUMNS) if c not in cols)]
    key = out[base].astype(str).agg("\x1f".join, axis=1)
    scorers = out.loc[~unscored, cols].assign(_key=key[~unscored]).drop_duplicates()
    scorers = scorers[~scorers["_key"].duplicated(keep=False)].set_index("_key")  # one scorer only
    for c in cols:
        filled = key[unscored].map(scorers[c])
        out[c] = out[c].astype(object)
        out.loc[unscored, c] = filled.where(filled.notna(), None)
    return out


def paired_differences(df: pd.DataFrame) -> pd.DataFrame:
    """Each student's result beside its teacher's on the same prompt, seed, steps and conditions.

    Returns one row per pair with the columns ``model``, ``teacher``, the observation key, the
    student's condition columns present, ``clip_score``, ``teacher_clip_score``, ``diff``
    (student minus teacher), ``median_s``, ``teacher_median_s`` and ``speedup`` (teacher
    latency / student latency). A pair needs the same values in :data:`PAIRING_COLUMNS`. Only
    successful results pair; a missing score gives a NaN ``diff``.
    """
    obs = observations(df)
    ok = obs[obs["success"].astype(bool)]
    on = [*OBSERVATION_KEY, *_present(ok, PAIRING_COLUMNS)]
    extra = [c for c in _present(ok, CONDITION_COLUMNS) if c not in on]
    students = ok.loc[ok["teacher"].notna(), ["model", "teacher", *on, *extra, "clip_score", "median_s"]]
    teachers = ok[["model", *on, "clip_score", "median_s"]].rename(columns={
        "model": "teacher", "clip_score": "teacher_clip_score", "median_s": "teacher_median_s"})
    pairs = students.merge(teachers, on=["teacher", *on], how="inner")
    pairs["diff"] = pairs["clip_score"].astype(float) - pairs["teacher_clip_score"].astype(float)
    pairs["speedup"] = pairs["teacher_median_s"].astype(float) / pairs["median_s"].astype(float)
    return pairs


def summary(df: pd.DataFrame, *, confidence: float = 0.95, method: str = "BCa",
            n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per model and step count (and any varying condition): score, paired difference, speed.

    The grouping columns come first: ``model``, ``steps``, then each column of
    :data:`CONDITION_COLUMNS` that varies within a model and step count. The others are
    :data:`SUMMARY_COLUMNS`. Rows are ordered by the model's first appearance in ``df`` (a
    teacher runs before its students, even when a rerun replaces its first result), then by
    steps. Bootstrap settings are passed to
    :func:`bootstrap_ci`. An empty ``df`` gives an empty table with these columns.
    """
    if df.empty:
        return pd.DataFrame(columns=["model", "steps", *SUMMARY_COLUMNS])
    ci = dict(confidence=confidence, method=method, n_resamples=n_resamples, seed=seed)
    obs = observations(df)
    by = ["model", "steps", *varying_conditions(obs)]
    groups = pd.DataFrame([{**dict(zip(by, key, strict=True)), **_group_stats(g, ci)}
                           for key, g in obs.groupby(by, sort=False, dropna=False)])
    pairs = paired_differences(df)
    paired = pd.DataFrame([{**dict(zip(by, key, strict=True)), **_pair_stats(g, ci)}
                           for key, g in pairs.groupby(by, sort=False, dropna=False)],
                          columns=[*by, *_pair_stats(pairs.iloc[:0], ci)])
    table = groups.merge(paired, on=by, how="left")  # merge matches NaN keys, unlike a dict
    table["n_paired"] = table["n_paired"].fillna(0).astype(int)
    order = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    table = table.sort_values(["steps"], kind="stable")
    table = table.sort_values("model", key=lambda s: s.map(order), kind="stable")
    return table[[*by, *SUMMARY_COLUMNS]].reset_index(drop=True)


def _group_stats(g: pd.DataFrame, ci: dict) -> dict:
    ok = g[g["success"].astype(bool)]
    scores = ok["clip_score"].astype(float).dropna()
    prompt_means = scores.groupby(ok.loc[scores.index, "prompt"]).mean()
    timed = ok[ok["median_s"].notna()]
    latency = timed["median_s"].astype(float)
    clip_ci = bootstrap_ci(prompt_means, **ci)
    q10, q25, q75, q90 = np.percentile(latency, [10, 25, 75, 90]) if len(latency) else [np.nan] * 4
    return {
        "teacher": g["teacher"].iloc[0],
        "n": len(ok), "n_failed": len(g) - len(ok), "n_scored": len(scores),
        "n_prompts": len(prompt_means),
        "clip_mean": prompt_means.mean() if len(prompt_means) else np.nan,
        "clip_ci_low": clip_ci.low, "clip_ci_high": clip_ci.high,
        "latency_median_s": latency.median() if len(latency) else np.nan,
        "latency_p10_s": q10, "latency_p90_s": q90, "latency_iqr_s": q75 - q25,
        "images_per_s": (timed["images_per_prompt"].astype(float).sum() / latency.sum()
                         if latency.sum() > 0 else np.nan),
    }


def _pair_stats(p: pd.DataFrame, ci: dict) -> dict:
    diffs = p["diff"].dropna()
    prompt_means = diffs.groupby(p.loc[diffs.index, "prompt"]).mean()
    diff_ci = bootstrap_ci(prompt_means, **ci)
    return {
        "n_paired": len(diffs),
        "diff_mean": prompt_means.mean() if len(prompt_means) else np.nan,
        "diff_ci_low": diff_ci.low, "diff_ci_high": diff_ci.high,
        "speedup_median": p["speedup"].median() if len(p) else np.nan,
    }


def varying_conditions(df: pd.DataFrame) -> list[str]:
    """The columns of :data:`CONDITION_COLUMNS` that take more than one value for some model and
    step count in ``df`` (these must split a summary's groups)."""
    out = []
    for col in _present(df, CONDITION_COLUMNS):
        if df.groupby(["model", "steps"])[col].nunique(dropna=False).max() > 1:
            out.append(col)
    return out


def _present(df: pd.DataFrame, columns) -> list[str]:
    return [c for c in columns if c in df.columns]


def _require(df: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks the column(s) {missing}; it has {list(df.columns)}")


def _registry_teacher(model: str) -> str | None:
    from .registry import RegistryError, get_model

    try:
        return get_model(model).teacher
    except RegistryError:
        return None
