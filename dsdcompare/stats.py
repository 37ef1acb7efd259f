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
  data give the same interval). A latency's interval resamples prompts too, each with all its
  observations (:func:`clustered_ci`), so it brackets the plotted median itself.
- **One metric at a time.** The quality columns are :data:`METRICS` (the CLIP score by default;
  fidelity to the teacher and other scorers when the table has them). ``summary(metric=...)``
  keeps its column names (``clip_mean`` ...) whatever the metric: ``bench --report`` and the
  charts read one table. A preference score or LPIPS comes from ``Store.results(metric=...)``,
  whose ``score_checkpoint`` / ``score_scale`` then describe that metric: they are condition
  columns, so two checkpoints or scales of one metric are never pooled.
- **Latency ratios are geometric.** A student's latency relative to its teacher's is averaged
  as a log ratio (:func:`pair_effects`): halving and doubling are equally far from 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    "latency_ci_low": "lower end of the bootstrap CI of latency_median_s (prompts resampled)",
    "latency_ci_high": "upper end of the bootstrap CI of latency_median_s",
    "n_seeds": "distinct seeds among the successful observations",
    "latency_p10_s": "10th percentile of the per-observation latency (s)",
    "latency_p90_s": "90th percentile of the per-observation latency (s)",
    "latency_iqr_s": "interquartile range of the per-observation latency (s)",
    "images_per_s": "images generated per second of steady-state calls (sum images / sum time)",
}


@dataclass(frozen=True)
class Metric:
    """A quality column of the results table and how to read it."""

    column: str  # the results table's column
    label: str  # display name, e.g. "CLIP score"
    higher_is_better: bool  # direction of "better"
    relative: bool  # measured against the teacher's image (fidelity): no paired difference


#: Quality metrics the summaries know, by column; a table offers those it has values for
#: (:func:`available_metrics`). Fidelity columns compare a student's image with its teacher's
#: on the same latents; the preference scorers' columns appear when a store records them.
METRICS: dict[str, Metric] = {m.column: m for m in (
    Metric("clip_score", "CLIP score", True, False),
    Metric("hps", "HPS v2.1", True, False),
    Metric("pickscore", "PickScore", True, False),
    Metric("imagereward", "ImageReward", True, False),
    Metric("ssim", "SSIM vs teacher", True, True),
    Metric("psnr", "PSNR vs teacher (dB)", True, True),
    Metric("lpips", "LPIPS vs teacher", False, True),
)}


def column_of(metric: str) -> str:
    """The results-table column of a metric: ``clip`` is ``clip_score``; every other name
    (``hps``, ``pickscore``, ``imagereward``, ``lpips``, ``psnr``, ``ssim``) is its own column."""
    return "clip_score" if metric == "clip" else metric


def available_metrics(df: pd.DataFrame) -> list[str]:
    """The :data:`METRICS` columns with at least one value among ``df``'s successful rows."""
    if df.empty or "success" not in df:
        return []
    ok = df[df["success"].astype(bool)]
    return [c for c in METRICS if c in ok and pd.to_numeric(ok[c], errors="coerce").notna().any()]


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


def clustered_ci(values, clusters, *, statistic: Callable = np.nanmedian,
                 confidence: float = 0.95, method: str = "BCa", n_resamples: int = 9999,
                 seed: int = 0) -> Interval:
    """The bootstrap CI of ``statistic`` over ``values``, resampling whole ``clusters``.

    Each resample draws clusters (prompts) with replacement and applies ``statistic`` (NaN-aware:
    ``np.nanmedian``, ``np.nanmean``) to all values of the drawn clusters, so the interval is of
    the statistic itself while the resampling unit stays the prompt. Fewer than 2 clusters give
    ``(nan, nan)``, identical values a zero-width interval. When BCa is undefined (few distinct
    resampled values: its acceleration divides by zero) the percentile interval is returned.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    x = np.asarray(values, dtype=float)
    c = np.asarray(clusters, dtype=object)
    keep = ~np.isnan(x)
    x, c = x[keep], c[keep]
    labels, inverse = np.unique(c.astype(str), return_inverse=True)
    if len(labels) < 2:
        return Interval(float("nan"), float("nan"))
    if np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]))
    table = np.full((len(labels), np.bincount(inverse).max()), np.nan)
    for i in range(len(labels)):
        row = x[inverse == i]
        table[i, :len(row)] = row

    def resampled(idx, axis=-1):
        picked = table[np.asarray(idx, dtype=int)]  # (..., clusters, width)
        return statistic(picked.reshape(*picked.shape[:-2], -1), axis=-1)

    def run(how: str):
        res = stats.bootstrap((np.arange(len(labels)),), resampled, confidence_level=confidence,
                              method=how, n_resamples=n_resamples, vectorized=True,
                              rng=np.random.default_rng(seed),
                              batch=max(1, 20_000_000 // table.size))
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's degenerate-BCa warning: handled below
        low, high = run(method)
        if (math.isnan(low) or math.isnan(high)) and method == "BCa":
            low, high = run("percentile")
    return Interval(low, high)


def observations(df: pd.DataFrame, *, metric: str = "clip_score") -> pd.DataFrame:
    """One row per model and observation: the latest successful row of each, else its latest
    failure (see the module docstring). ``df`` must hold ``metric``'s column (:func:`column_of`).

    Keeps the store's row order; adds ``teacher`` (from the registry when the column is absent)
    and ``images_per_prompt`` (1 when absent). A row without a scorer (a failure: nothing was
    scored) takes the scorer of the model's scored rows under the same image conditions when
    they have exactly one, so a failed rerun is the observation it repeats, not a condition of
    its own.
    """
    _require(df, ("model", *OBSERVATION_KEY, "success", column_of(metric), "median_s"))
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


def paired_differences(df: pd.DataFrame, *, metric: str = "clip_score",
                       keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Each student's result beside its teacher's on the same prompt, seed, steps and conditions.

    Returns one row per pair with the columns ``model``, ``teacher``, the observation key, the
    student's condition columns present, ``clip_score``, ``teacher_clip_score``, ``diff``
    (student minus teacher, of ``metric``: the CLIP score by default), ``median_s``,
    ``teacher_median_s`` and ``speedup`` (teacher latency / student latency). With another
    ``metric`` its column and ``teacher_<metric>`` are there too; each column of ``keep`` (e.g.
    ``result_id``, ``image_paths``, ``psnr``) comes for both, the teacher's as ``teacher_<col>``.
    A pair needs the same values in :data:`PAIRING_COLUMNS`, except that a vs-teacher metric
    (LPIPS: the teacher has no score of its own) pairs whatever the teacher's scorer columns
    say and keeps the student's. Only successful results pair; a missing value gives a NaN
    ``diff``. ``metric`` may be a metric name (``clip``, ``hps`` ...; see :func:`column_of`).
    """
    metric = column_of(metric)
    obs = observations(df, metric=metric)
    ok = obs[obs["success"].astype(bool)]
    on = [*OBSERVATION_KEY, *_present(ok, PAIRING_COLUMNS)]
    if metric in METRICS and METRICS[metric].relative:
        on = [c for c in on if c not in SCORER_COLUMNS]
    extra = [c for c in _present(ok, CONDITION_COLUMNS) if c not in on]
    values = list(dict.fromkeys(["clip_score", metric, "median_s", *keep]))
    _require(ok, values)
    students = ok.loc[ok["teacher"].notna(), ["model", "teacher", *on, *extra, *values]]
    teachers = ok[["model", *on, *values]].rename(
        columns={"model": "teacher", **{c: f"teacher_{c}" for c in values}})
    pairs = students.merge(teachers, on=["teacher", *on], how="inner")
    pairs["diff"] = (pd.to_numeric(pairs[metric], errors="coerce").astype(float)
                     - pd.to_numeric(pairs[f"teacher_{metric}"], errors="coerce").astype(float))
    pairs["speedup"] = pairs["teacher_median_s"].astype(float) / pairs["median_s"].astype(float)
    return pairs


def summary(df: pd.DataFrame, *, metric: str = "clip_score", confidence: float = 0.95,
            method: str = "BCa", n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per model and step count (and any varying condition): score, paired difference, speed.

    The grouping columns come first: ``model``, ``steps``, then each column of
    :data:`CONDITION_COLUMNS` that varies within a model and step count. The others are
    :data:`SUMMARY_COLUMNS`; their ``clip_*``, ``n_scored``, ``n_prompts`` and ``diff_*`` columns
    summarise ``metric`` (a :data:`METRICS` column; the CLIP score by default). Rows are ordered
    by the model's first appearance in ``df`` (a teacher runs before its students, even when a
    rerun replaces its first result), then by steps. Bootstrap settings are passed to
    :func:`bootstrap_ci`. An empty ``df`` gives an empty table with these columns.

    ``metric`` may also be a metric name (``clip``, ``hps``, ``pickscore``, ``imagereward``,
    ``lpips``). For a metric other than CLIP give ``Store.results(metric=...)``: its
    ``score_checkpoint`` and ``score_scale`` then describe that metric, so scores of two
    checkpoints or scales are two rows, never one mean.
    """
    if df.empty:
        return pd.DataFrame(columns=["model", "steps", *SUMMARY_COLUMNS])
    metric = column_of(metric)
    _require(df, (metric,))
    ci = dict(confidence=confidence, method=method, n_resamples=n_resamples, seed=seed)
    obs = observations(df, metric=metric)
    by = ["model", "steps", *varying_conditions(obs)]
    groups = pd.DataFrame([{**dict(zip(by, key, strict=True)), **_group_stats(g, ci, metric)}
                           for key, g in obs.groupby(by, sort=False, dropna=False)])
    pairs = paired_differences(df, metric=metric)
    paired = pd.DataFrame([{**dict(zip(by, key, strict=True)), **_pair_stats(g, ci)}
                           for key, g in pairs.groupby(by, sort=False, dropna=False)],
                          columns=[*by, *_pair_stats(pairs.iloc[:0], ci)])
    table = groups.merge(paired, on=by, how="left")  # merge matches NaN keys, unlike a dict
    table["n_paired"] = table["n_paired"].fillna(0).astype(int)
    order = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    table = table.sort_values(["steps"], kind="stable")
    table = table.sort_values("model", key=lambda s: s.map(order), kind="stable")
    return table[[*by, *SUMMARY_COLUMNS]].reset_index(drop=True)


def prompt_mean_ci(values: pd.Series, prompts: pd.Series, ci: dict) -> tuple[float, Interval, int]:
    """The mean over prompts of ``values`` averaged within each prompt, its bootstrap CI over
    prompts, and the number of prompts: the one way a per-prompt quantity is summarised."""
    values = pd.to_numeric(values, errors="coerce").astype(float).dropna()
    prompt_means = values.groupby(prompts.loc[values.index]).mean()
    mean = float(prompt_means.mean()) if len(prompt_means) else np.nan
    return mean, bootstrap_ci(prompt_means, **ci), len(prompt_means)


def _group_stats(g: pd.DataFrame, ci: dict, metric: str = "clip_score") -> dict:
    ok = g[g["success"].astype(bool)]
    scores = pd.to_numeric(ok[metric], errors="coerce").astype(float).dropna()
    mean, score_ci, n_prompts = prompt_mean_ci(scores, ok["prompt"], ci)
    timed = ok[ok["median_s"].notna()]
    latency = timed["median_s"].astype(float)
    lat_ci = clustered_ci(latency, timed["prompt"], statistic=np.nanmedian, **ci)
    q10, q25, q75, q90 = np.percentile(latency, [10, 25, 75, 90]) if len(latency) else [np.nan] * 4
    return {
        "teacher": g["teacher"].iloc[0],
        "n": len(ok), "n_failed": len(g) - len(ok), "n_scored": len(scores),
        "n_prompts": n_prompts,
        "clip_mean": mean, "clip_ci_low": score_ci.low, "clip_ci_high": score_ci.high,
        "latency_median_s": latency.median() if len(latency) else np.nan,
        "latency_ci_low": lat_ci.low, "latency_ci_high": lat_ci.high,
        "n_seeds": ok["seed"].nunique(),
        "latency_p10_s": q10, "latency_p90_s": q90, "latency_iqr_s": q75 - q25,
        "images_per_s": (timed["images_per_prompt"].astype(float).sum() / latency.sum()
                         if latency.sum() > 0 else np.nan),
    }


def _pair_stats(p: pd.DataFrame, ci: dict) -> dict:
    mean, diff_ci, _ = prompt_mean_ci(p["diff"], p["prompt"], ci)
    return {
        "n_paired": int(p["diff"].notna().sum()),
        "diff_mean": mean, "diff_ci_low": diff_ci.low, "diff_ci_high": diff_ci.high,
        "speedup_median": p["speedup"].median() if len(p) else np.nan,
    }


#: The columns of :func:`pair_effects` after the grouping columns, and what each holds.
PAIR_EFFECT_COLUMNS = {
    "teacher": "registry key of the student's teacher",
    "category": "the prompts' category, or ALL for every prompt",
    "n_prompts": "prompts with a paired observation (the resampling unit)",
    "n_seeds": "distinct seeds among the paired observations",
    "n_pairs": "paired observations (prompt x seed)",
    "quality": "'difference' (student minus teacher) or 'fidelity' (a vs-teacher metric itself)",
    "quality_mean": "mean over prompts of the paired difference (or of the fidelity)",
    "quality_ci_low": "lower end of its bootstrap CI over prompts",
    "quality_ci_high": "upper end of its bootstrap CI over prompts",
    "latency_ratio": "geometric mean over prompts of student / teacher latency",
    "latency_ratio_ci_low": "lower end of its bootstrap CI over prompts",
    "latency_ratio_ci_high": "upper end of its bootstrap CI over prompts",
}
#: The ``category`` of :func:`pair_effects`' rows over every prompt.
ALL = "all prompts"
#: The category of prompts that no shipped suite lists.
UNCATEGORISED = "uncategorised"


def pair_effects(df: pd.DataFrame, *, metric: str = "clip_score",
                 categories: Mapping[str, str] | None = None, confidence: float = 0.95,
                 method: str = "BCa", n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Each student against its teacher: the paired quality difference and latency ratio, with
    bootstrap CIs over prompts, over all prompts and per prompt category (a forest plot's rows).

    Grouped like :func:`summary` (model, steps, varying conditions), then :data:`ALL` followed by
    each category (``categories`` maps a prompt to its category, default
    :func:`prompt_categories`; prompts it lacks are :data:`UNCATEGORISED`). Categories appear
    only when there are at least two. For a :data:`METRICS` column that is already relative to the
    teacher (fidelity), ``quality_*`` is the student's value, not a difference. The
    :data:`ALL` row's ``quality_mean`` and CI equal :func:`summary`'s ``diff_*`` for the metric.
    """
    ci = dict(confidence=confidence, method=method, n_resamples=n_resamples, seed=seed)
    columns = ["model", "steps", *PAIR_EFFECT_COLUMNS]
    if df.empty:
        return pd.DataFrame(columns=columns)
    metric = column_of(metric)
    relative = METRICS[metric].relative if metric in METRICS else False
    pairs = paired_differences(df, metric=metric)
    by = ["model", "steps", *varying_conditions(observations(df, metric=metric))]
    if pairs.empty:
        return pd.DataFrame(columns=[*by, *PAIR_EFFECT_COLUMNS])
    cats = dict(categories) if categories is not None else prompt_categories(pairs["prompt"])
    pairs["category"] = pairs["prompt"].map(lambda p: cats.get(p) or UNCATEGORISED)
    pairs["quality_value"] = pairs[metric] if relative else pairs["diff"]
    ratio = pairs["median_s"].astype(float) / pairs["teacher_median_s"].astype(float)
    pairs["log_ratio"] = np.log(ratio.where(ratio > 0))
    rows = []
    for key, g in pairs.groupby(by, sort=False, dropna=False):
        groups = [(ALL, g)]
        if g["category"].nunique() > 1:
            groups += list(g.groupby("category", sort=True))
        for name, part in groups:
            q_mean, q_ci, n_prompts = prompt_mean_ci(part["quality_value"], part["prompt"], ci)
            r_mean, r_ci, _ = prompt_mean_ci(part["log_ratio"], part["prompt"], ci)
            rows.append({**dict(zip(by, key, strict=True)), "teacher": part["teacher"].iloc[0],
                         "category": name, "n_prompts": n_prompts,
                         "n_seeds": part["seed"].nunique(), "n_pairs": len(part),
                         "quality": "fidelity" if relative else "difference",
                         "quality_mean": q_mean, "quality_ci_low": q_ci.low,
                         "quality_ci_high": q_ci.high, "latency_ratio": math.exp(r_mean),
                         "latency_ratio_ci_low": math.exp(r_ci.low),
                         "latency_ratio_ci_high": math.exp(r_ci.high)})
    return pd.DataFrame(rows, columns=[*by, *PAIR_EFFECT_COLUMNS])


def prompt_categories(prompts) -> dict[str, str]:
    """Each of ``prompts`` that a shipped suite (:func:`dsdcompare.prompts.list_suites`) lists
    with a category, mapped to that category (stored results keep the prompt, not its suite)."""
    from .prompts import list_suites, load_prompts

    wanted = set(prompts)
    found: dict[str, str] = {}
    for suite in list_suites():
        for p in load_prompts(suite):
            if p.text in wanted and p.category and p.text not in found:
                found[p.text] = p.category
    return found


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
