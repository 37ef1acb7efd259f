"""Statistics: bootstrap CIs against scipy and an analytic case, pairing, the summary table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dsdcompare import stats

# --- bootstrap_ci ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["BCa", "percentile", "basic"])
def test_bootstrap_ci_is_scipys_interval(method):
    x = np.random.default_rng(7).gamma(2.0, 3.0, size=60)  # skewed: BCa and percentile differ
    ours = stats.bootstrap_ci(x, method=method, n_resamples=2000, seed=3)
    ref = sps.bootstrap((x,), np.mean, method=method, n_resamples=2000,
                        rng=np.random.default_rng(3)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), rel=1e-12)


def test_bootstrap_ci_of_a_normal_mean_has_the_analytic_width():
    sigma, n = 2.0, 400
    x = np.random.default_rng(0).normal(10.0, sigma, size=n)
    low, high = stats.bootstrap_ci(x, n_resamples=4000)
    assert high - low == pytest.approx(2 * 1.959964 * sigma / math.sqrt(n), rel=0.1)
    assert low < x.mean() < high


def test_bootstrap_ci_is_seeded_and_the_confidence_level_counts():
    x = np.random.default_rng(1).normal(size=50)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)
    narrow, wide = stats.bootstrap_ci(x, confidence=0.5), stats.bootstrap_ci(x, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_bootstrap_ci_degenerate_inputs():
    assert all(math.isnan(v) for v in stats.bootstrap_ci([]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([3.0, float("nan")]))  # one value left
    assert stats.bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)  # scipy: NaN and a warning
    with pytest.raises(ValueError, match="confidence must be between 0 and 1, got 95"):
        stats.bootstrap_ci([1.0, 2.0], confidence=95)


# --- a synthetic results table like Store.results() -----------------------------------------------

TEACHER_LATENCY, STUDENT_LATENCY = 1.0, 0.6


def results_table(n_prompts=12, seeds=(0, 1), steps=(10, 20), student_offset=-1.5, seed=0):
    """Teacher sd-v1-4 and student bk-sdm-small; each prompt has its own difficulty."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        difficulty = rng.normal(30, 4)
        for s in seeds:
            for n in steps:
                for model, teacher, offset, latency in (
                        ("sd-v1-4", None, 0.0, TEACHER_LATENCY),
                        ("bk-sdm-small", "sd-v1-4", student_offset, STUDENT_LATENCY)):
                    rows.append(dict(
                        model=model, teacher=teacher, prompt=f"prompt {p}", seed=s, steps=n,
                        success=True, clip_score=difficulty + offset + rng.normal(0, 0.2),
                        median_s=latency * n / 10 * (1 + rng.normal(0, 0.01)), source="tiny",
                        width=64, height=64, guidance=7.5, images_per_prompt=1, scheduler="PNDMScheduler",
                        score_checkpoint="tiny", score_scale="100 x cosine, clamped at 0"))
    return pd.DataFrame(rows)


def test_paired_differences_pair_student_and_teacher_on_prompt_seed_steps():
    df = results_table(n_prompts=3, student_offset=-1.5)
    pairs = stats.paired_differences(df)
    assert len(pairs) == 3 * 2 * 2
    assert set(pairs["model"]) == {"bk-sdm-small"} and set(pairs["teacher"]) == {"sd-v1-4"}
    row = pairs.iloc[0]
    teacher = df[(df.model == "sd-v1-4") & (df.prompt == row.prompt) & (df.seed == row.seed)
                 & (df.steps == row.steps)].iloc[0]
    assert row["diff"] == pytest.approx(row["clip_score"] - teacher["clip_score"])
    assert pairs["speedup"].median() == pytest.approx(TEACHER_LATENCY / STUDENT_LATENCY, rel=0.05)


def test_paired_differences_need_equal_conditions_and_success():
    df = results_table(n_prompts=2)
    df.loc[(df.model == "sd-v1-4") & (df.prompt == "prompt 0"), "guidance"] = 9.0
    df.loc[(df.model == "sd-v1-4") & (df.prompt == "prompt 1") & (df.seed == 0), "success"] = False
    pairs = stats.paired_differences(df)
    assert set(zip(pairs.prompt, pairs.seed, strict=True)) == {("prompt 1", 1)}


def test_summary_columns_and_values():
    df = results_table()
    table = stats.summary(df, n_resamples=2000)
    assert list(table.columns) == ["model", "steps", *stats.SUMMARY_COLUMNS]
    assert list(zip(table.model, table.steps, strict=True)) == [("sd-v1-4", 10), ("sd-v1-4", 20),
                                                   ("bk-sdm-small", 10), ("bk-sdm-small", 20)]
    student = table[(table.model == "bk-sdm-small") & (table.steps == 10)].iloc[0]
    assert student.teacher == "sd-v1-4"
    assert (student.n, student.n_failed, student.n_prompts, student.n_paired) == (24, 0, 12, 24)
    # the paired difference sees through the prompt-to-prompt spread that the plain CIs carry
    assert student.diff_ci_low < -1.5 < student.diff_ci_high
    assert student.diff_ci_high - student.diff_ci_low < 0.3 * (student.clip_ci_high - student.clip_ci_low)
    assert student.latency_median_s == pytest.approx(STUDENT_LATENCY, rel=0.05)
    assert student.latency_p10_s <= student.latency_median_s <= student.latency_p90_s
    assert student.images_per_s == pytest.approx(1 / STUDENT_LATENCY, rel=0.05)
    assert student.speedup_median == pytest.approx(TEACHER_LATENCY / STUDENT_LATENCY, rel=0.05)
    teacher = table.iloc[0]
    assert teacher.n_paired == 0 and math.isnan(teacher.diff_mean)


def test_summary_ci_resamples_prompts_not_prompt_seed_rows():
    df = results_table(n_prompts=12, steps=(10,))
    per_prompt = (df[df.model == "sd-v1-4"].groupby("prompt")["clip_score"].mean())
    row = stats.summary(df, n_resamples=2000).iloc[0]
    assert row.clip_mean == pytest.approx(per_prompt.mean())
    assert (row.clip_ci_low, row.clip_ci_high) == pytest.approx(
        tuple(stats.bootstrap_ci(per_prompt, n_resamples=2000)))


def test_summary_never_pools_different_conditions_or_scorers():
    a, b = results_table(n_prompts=4), results_table(n_prompts=4, seed=1)
    b["score_checkpoint"] = "openai/clip-vit-large-patch14"
    table = stats.summary(pd.concat([a, b], ignore_index=True), n_resamples=500)
    assert "score_checkpoint" in table.columns
    assert len(table) == 8 and set(table.n) == {8}


def test_summary_counts_failures_and_keeps_the_latest_of_repeated_rows():
    df = results_table(n_prompts=3, steps=(10,))
    again = df[df.model == "bk-sdm-small"].iloc[:1].assign(clip_score=99.0)  # a rerun, stored later
    failed = df[df.model == "bk-sdm-small"].iloc[1:2].assign(success=False, clip_score=np.nan,
                                                              median_s=np.nan)
    late_failure = df[df.model == "bk-sdm-small"].iloc[2:3].assign(success=False, clip_score=np.nan)
    df = pd.concat([df.drop(index=failed.index), again, failed, late_failure], ignore_index=True)
    student = stats.summary(df, n_resamples=500).set_index("model").loc["bk-sdm-small"]
    assert (student.n, student.n_failed) == (5, 1)  # a failure never hides a stored success
    assert 99.0 in stats.observations(df)["clip_score"].values
    assert len(stats.observations(df)) == 12


def test_summary_of_nothing_and_missing_columns():
    empty = stats.summary(results_table().iloc[:0])
    assert empty.empty and list(empty.columns) == ["model", "steps", *stats.SUMMARY_COLUMNS]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['median_s'\]"):
        stats.summary(results_table().drop(columns="median_s"))


def test_teacher_comes_from_the_registry_when_the_table_has_no_teacher_column():
    pairs = stats.paired_differences(results_table(n_prompts=2).drop(columns="teacher"))
    assert set(pairs["teacher"]) == {"sd-v1-4"}


def test_a_failure_without_a_scorer_is_the_observation_it_repeats():
    # a failed result is stored without a score: no checkpoint, no scale
    df = results_table(n_prompts=3, steps=(10,))
    rerun = df[df.model == "bk-sdm-small"].iloc[:1].assign(
        success=False, clip_score=np.nan, median_s=np.nan, score_checkpoint=None, score_scale=None)
    never = rerun.assign(prompt="prompt 9")  # failed, and never scored
    table = stats.summary(pd.concat([df, rerun, never], ignore_index=True), n_resamples=500)
    assert "score_checkpoint" not in table.columns  # no condition of its own: one row a model
    student = table.set_index("model").loc["bk-sdm-small"]
    assert (student.n, student.n_failed) == (6, 1)
    assert list(table.model) == ["sd-v1-4", "bk-sdm-small"]


# --- latency intervals, metrics, paired effects (the dashboard's analysis views) ------------------

def test_clustered_ci_resamples_clusters_and_brackets_the_median():
    rng = np.random.default_rng(4)
    clusters = np.repeat(np.arange(20), 3)
    values = 1.0 + 0.1 * rng.normal(size=20)[clusters] + 0.01 * rng.normal(size=60)
    low, high = stats.clustered_ci(values, clusters, n_resamples=2000)
    assert low < np.median(values) < high
    # one cluster per value: the plain bootstrap of the median (same resamples, same seed)
    ones = stats.clustered_ci(values[:20], np.arange(20), method="percentile", n_resamples=2000)
    ref = sps.bootstrap((values[:20],), np.median, method="percentile", n_resamples=2000,
                        rng=np.random.default_rng(0)).confidence_interval
    assert ones == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert all(math.isnan(v) for v in stats.clustered_ci([1.0, 2.0], ["a", "a"]))
    assert stats.clustered_ci([2.0, 2.0, 2.0], ["a", "b", "c"]) == (2.0, 2.0)


def test_summary_latency_interval_resamples_prompts():
    df = results_table(n_prompts=8, steps=(10,))
    row = stats.summary(df, n_resamples=1000).iloc[0]
    teacher = df[df.model == "sd-v1-4"]
    assert (row.latency_ci_low, row.latency_ci_high) == pytest.approx(tuple(stats.clustered_ci(
        teacher["median_s"], teacher["prompt"], n_resamples=1000)))
    assert row.latency_ci_low <= row.latency_median_s <= row.latency_ci_high
    assert row.n_seeds == 2


def test_available_metrics_and_a_summary_of_another_metric():
    df = results_table(n_prompts=4, steps=(10,))
    assert stats.available_metrics(df) == ["clip_score"]
    df["ssim"] = np.where(df.model == "bk-sdm-small", 0.8, np.nan)
    assert stats.available_metrics(df) == ["clip_score", "ssim"]
    table = stats.summary(df, metric="ssim", n_resamples=500).set_index("model")
    assert table.loc["bk-sdm-small", "clip_mean"] == pytest.approx(0.8)  # the metric's mean
    assert math.isnan(table.loc["sd-v1-4", "clip_mean"]) and table.loc["sd-v1-4", "n_scored"] == 0
    assert table.loc["bk-sdm-small", "n_paired"] == 0  # fidelity has no teacher value to subtract


def test_pair_effects_overall_row_is_the_summarys_paired_difference():
    df = results_table(n_prompts=6, steps=(10,))
    effects = stats.pair_effects(df, n_resamples=800)
    assert list(effects.columns) == ["model", "steps", *stats.PAIR_EFFECT_COLUMNS]
    [row] = effects.to_dict("records")  # no categories: one row over all prompts
    student = stats.summary(df, n_resamples=800).set_index("model").loc["bk-sdm-small"]
    assert row["category"] == stats.ALL and (row["n_prompts"], row["n_seeds"], row["n_pairs"]) == (6, 2, 12)
    assert row["quality_mean"] == pytest.approx(student.diff_mean)
    assert (row["quality_ci_low"], row["quality_ci_high"]) == pytest.approx(
        (student.diff_ci_low, student.diff_ci_high))
    assert row["latency_ratio"] == pytest.approx(STUDENT_LATENCY / TEACHER_LATENCY, rel=0.02)
    assert row["latency_ratio_ci_low"] < row["latency_ratio"] < row["latency_ratio_ci_high"]


def test_pair_effects_per_category_and_the_shipped_suites_categories():
    df = results_table(n_prompts=6, steps=(10,))
    cats = {f"prompt {p}": ("animals" if p < 3 else "text") for p in range(6)}
    effects = stats.pair_effects(df, categories=cats, n_resamples=500)
    assert list(effects["category"]) == [stats.ALL, "animals", "text"]
    assert list(effects["n_prompts"]) == [6, 3, 3]
    found = stats.prompt_categories(["a red fox curled up asleep in fresh snow", "not a suite prompt"])
    assert found == {"a red fox curled up asleep in fresh snow": "animals"}


def test_paired_differences_of_another_metric_keep_columns_for_both_sides():
    df = results_table(n_prompts=2, steps=(10,))
    df["result_id"] = range(len(df))
    pairs = stats.paired_differences(df, keep=("result_id",))
    assert {"result_id", "teacher_result_id"} <= set(pairs.columns)
    teacher_ids = set(df.loc[df.model == "sd-v1-4", "result_id"])
    assert set(pairs["teacher_result_id"]) <= teacher_ids
