"""dsdcompare.charts: pure figures of a results table, checked without Streamlit or models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from dsdcompare import charts, pair_charts
from dsdcompare.registry import Fact, get_model, list_models


def rows(*specs, **common) -> pd.DataFrame:
    """A results table: each spec is (model, teacher, median_s, clip_score) plus overrides."""
    out = []
    for i, spec in enumerate(specs):
        model, teacher, median, score = spec[:4]
        m = median or 0.0
        extra = spec[4] if len(spec) > 4 else {}
        row = {c: None for c in charts.COLUMNS}
        row.update(run_id=1, result_id=i + 1, model=model, model_name=model.upper(),
                   success=True, source="tiny", standin=False, toy=False, teacher=teacher,
                   prompt="a red circle", seed=0, steps=4, guidance=7.5, width=512, height=512,
                   dtype="fp32", device="cpu", device_name="cpu", median_s=median,
                   min_s=m * 0.9, max_s=m * 1.1, text_s=0.1 * m, denoise_s=0.7 * m,
                   decode_s=0.15 * m, safety_s=0.0, other_s=0.05 * m, clip_score=score, score_checkpoint="ck",
                   score_scale="100 x cosine, clamped at 0")
        row.update(common)
        row.update(extra)
        out.append(row)
    return pd.DataFrame(out, columns=list(charts.COLUMNS))


PAIRS = rows(("teacher-a", None, 10.0, 30.0), ("student-a", "teacher-a", 6.0, 28.0),
             ("teacher-b", None, 4.0, 25.0), ("student-b", "teacher-b", 3.0, 20.0))


def test_pareto_frontier_keeps_models_nothing_beats_on_both_axes():
    summary = pd.DataFrame({"model": list("abcde"), "latency": [1.0, 2.0, 3.0, 4.0, 2.5],
                            "score": [10.0, 12.0, 11.0, 20.0, math.nan]})
    # c is slower and worse than b; e has no score
    assert charts.pareto_frontier(summary) == ["a", "b", "d"]


def test_pareto_frontier_of_measured_pairs():
    summary = charts.model_summary(PAIRS)
    assert charts.pareto_frontier(summary) == ["student-b", "teacher-b", "student-a", "teacher-a"]
    slower_and_worse = rows(("fast", None, 1.0, 30.0), ("slow", None, 2.0, 20.0))
    assert charts.pareto_frontier(charts.model_summary(slower_and_worse)) == ["fast"]


def test_model_summary_spreads_over_prompts_and_seeds():
    df = rows(("m", None, 1.0, 20.0, {"seed": 0}), ("m", None, 3.0, 24.0, {"seed": 1}),
              ("m", None, 2.0, 22.0, {"seed": 2, "prompt": "x"}))
    s = charts.model_summary(df).iloc[0]
    assert (s["latency"], s["latency_lo"], s["latency_hi"]) == (2.0, 1.0, 3.0)
    assert s["score"] == pytest.approx(22.0) and s["score_sd"] == pytest.approx(2.0)
    assert (s["n"], s["prompts"], s["seeds"]) == (3, 2, 3)
    one = charts.model_summary(rows(("m", None, 2.0, 20.0))).iloc[0]
    assert (one["latency_lo"], one["latency_hi"], one["score_sd"]) == (1.8, 2.2, 0.0)


def test_failed_results_are_left_out_of_the_summary():
    df = rows(("ok", None, 1.0, 20.0), ("bad", None, None, None, {"success": False, "error": "x"}))
    assert charts.model_summary(df)["model"].tolist() == ["ok"]


def test_model_summary_is_stats_summary_with_reruns_counted_once():
    from dsdcompare import stats

    # the second row reruns the first (same prompt and seed): the later result counts
    df = rows(("m", None, 1.0, 20.0), ("m", None, 3.0, 30.0), ("m", None, 2.0, 22.0, {"seed": 1}))
    s = charts.model_summary(df).iloc[0]
    assert (s["n"], s["latency"], s["score"]) == (2, 2.5, pytest.approx(26.0))
    table = stats.summary(df)
    assert s["latency_median_s"] == table.loc[0, "latency_median_s"]
    assert s["clip_mean"] == table.loc[0, "clip_mean"]


def test_several_step_counts_are_several_points_never_pooled():
    df = rows(("t", None, 2.0, 20.0, {"steps": 2}), ("t", None, 4.0, 24.0, {"steps": 4}),
              ("s", "t", 1.0, 19.0, {"steps": 2}), ("s", "t", 2.0, 23.0, {"steps": 4}))
    summary = charts.model_summary(df)
    assert list(summary["label"]) == ["T · 2 steps", "T · 4 steps", "S · 2 steps", "S · 4 steps"]
    assert list(summary["series"]) == ["T", "T", "S", "S"]
    points = [t.name for t in charts.latency_vs_score(df).data if t.name != "Pareto frontier"]
    assert points == list(summary["label"])
    ratio = charts.student_vs_teacher(df)
    measured = [(t.x[0], round(t.y[0], 4)) for t in ratio.data if t.name and "measured" in t.name]
    assert measured == [(0.5, round(19 / 20, 4)), (0.5, round(23 / 24, 4))]  # same steps only
    sweep = charts.steps_sweep(df)
    assert [t.name for t in sweep.data] == ["T", "T", "S", "S"]


def test_per_megapixel_divides_latency_by_area():
    df = rows(("small", None, 1.0, 20.0), ("big", None, 4.0, 20.0, {"width": 1024, "height": 1024}))
    mp = charts.per_megapixel(df)
    assert mp["median_s"].tolist() == pytest.approx([1.0 / 0.262144, 4.0 / 1.048576])
    assert mp["clip_score"].tolist() == [20.0, 20.0]  # only latencies change


def test_latency_vs_score_draws_each_model_with_error_bars_and_the_frontier():
    fig = charts.latency_vs_score(PAIRS)
    points = [t for t in fig.data if t.name != "Pareto frontier"]
    assert [t.name for t in points] == ["TEACHER-A", "STUDENT-A", "TEACHER-B", "STUDENT-B"]
    assert all(t.error_x.array is not None and t.error_y.array is not None for t in points)
    frontier = next(t for t in fig.data if t.name == "Pareto frontier")
    assert list(frontier.x) == [3.0, 4.0, 6.0, 10.0]
    assert "higher is better" in fig.layout.yaxis.title.text
    per_mp = charts.latency_vs_score(PAIRS, per_mp=True)
    assert "per megapixel" in per_mp.layout.xaxis.title.text


def test_latency_vs_score_marks_standins_and_refuses_mixed_scorers():
    fig = charts.latency_vs_score(rows(("m", None, 1.0, 20.0, {"standin": True})))
    assert "stand-in" in fig.data[0].name
    mixed = rows(("a", None, 1.0, 20.0), ("b", None, 2.0, 0.3, {"score_checkpoint": "other",
                                                                 "score_scale": "raw cosine"}))
    with pytest.raises(charts.ChartError, match="not comparable"):
        charts.latency_vs_score(mixed)


def test_models_without_a_score_are_named_not_plotted():
    fig = charts.latency_vs_score(rows(("a", None, 1.0, 20.0), ("b", None, 2.0, None)))
    assert [t.name for t in fig.data] == ["A", "Pareto frontier"]
    assert "no CLIP score, not plotted: B" in fig.layout.annotations[0].text


def test_stage_breakdown_stacks_stages_that_add_up_to_the_call():
    fig = charts.stage_breakdown(PAIRS)
    bars = [t for t in fig.data if t.type == "bar"]
    assert fig.layout.barmode == "stack"
    assert [b.name for b in bars] == ["text encoding", "denoising loop", "VAE decode",
                                      "other (latents, post-processing)"]  # no safety checker ran
    totals = [sum(b.y[i] for b in bars) for i in range(4)]
    assert totals == pytest.approx([10.0, 6.0, 4.0, 3.0])


def test_steps_sweep_only_when_several_step_counts_exist():
    assert charts.steps_sweep(PAIRS) is None
    sweep = rows(("m", None, 1.0, 20.0, {"steps": 2}), ("m", None, 2.0, 24.0, {"steps": 4}),
                 ("m", None, 4.0, 25.0, {"steps": 8}))
    fig = charts.steps_sweep(sweep)
    assert list(fig.data[0].x) == [2, 4, 8] and list(fig.data[0].y) == [1.0, 2.0, 4.0]
    assert list(fig.data[1].y) == [20.0, 24.0, 25.0]


def test_published_claims_are_ratios_read_from_registry_facts():
    claims = charts.published_claims(get_model(k) for k in list_models())
    by = {(c.student, c.source.split(" (")[0]): c for c in claims}
    bk = by[("bk-sdm-small", "nota-ai/bk-sdm-small model card")]
    assert bk.latency_ratio == pytest.approx(0.64)  # "36% ... less latency"
    assert bk.score_ratio == pytest.approx(0.2677 / 0.2958)
    koala = by[("ssd-1b", "KOALA paper chart")]
    assert koala.latency_ratio == pytest.approx(2.09 / 3.23) and koala.score_ratio is None
    card = by[("ssd-1b", "segmind/SSD-1B model card")]
    assert card.latency_ratio == pytest.approx(1 / 1.6)  # "60% speedup"


def test_published_claims_parse_only_what_they_understand():
    teacher = SimpleNamespace(key="t", name="T", teacher=None,
                              facts=(Fact("latency, A100", "2.0 s", "paper X"),
                                     Fact("CLIP score", "n/a", "paper X")))
    student = SimpleNamespace(key="s", name="S", teacher="t",
                              facts=(Fact("latency, A100", "1.5 s", "paper X"),
                                     Fact("CLIP score", "0.3", "paper X"),
                                     Fact("claim", "much better", "blog")))
    (claim,) = charts.published_claims([teacher, student])
    assert (claim.latency_ratio, claim.score_ratio) == (0.75, None)


def test_published_figures_live_in_one_place_parsed_once():
    from dsdcompare import published

    for key, facts in published.FACTS.items():
        assert get_model(key).facts == facts and all(f.source for f in facts)
    unet = {k: next(f for f in get_model(k).facts if f.name == "UNet parameters")
            for k in ("sd-v1-4", "bk-sdm-small", "sdxl-base", "ssd-1b")}
    assert [(f.number, f.unit) for f in unet.values()] == [
        (859.5e6, "count"), (482.3e6, "count"), (2567.5e6, "count"), (1.3e9, "count")]
    assert Fact("claim", "50% smaller", "card").number is None
    # the profiler's published ratios read the same parsed numbers and claims
    ratio, claim, source = published.published_ratio(get_model("bk-sdm-small"),
                                                     get_model("sd-v1-4"), "generation_params")
    assert ratio == pytest.approx(0.66 / 1.04) and "36% reduced" in claim
    assert "nota-ai/bk-sdm-small model card" in source
    ratio, claim, _ = published.published_ratio(get_model("ssd-1b"), get_model("sdxl-base"),
                                                "image_s")
    assert ratio == pytest.approx(2.09 / 3.23) and "60% speedup" in claim


def test_student_vs_teacher_puts_measurements_and_claims_on_shared_ratio_axes():
    claims = [charts.Claim("student-a", "teacher-a", 0.64, 0.9, "card: both", "card"),
              charts.Claim("student-b", "teacher-b", 0.62, None, "card: speed only", "card")]
    fig = charts.student_vs_teacher(PAIRS, claims)
    measured = [t for t in fig.data if t.name and "measured here" in t.name]
    assert [(round(t.x[0], 3), round(t.y[0], 3)) for t in measured] == [(0.6, 0.933), (0.75, 0.8)]
    published = [t for t in fig.data if t.name and t.name.startswith("published")]
    assert [t.name for t in published] == ["published: card: both",
                                           "published: card: speed only: ×0.62 latency"]
    assert any(s.x0 == 0.62 for s in fig.layout.shapes)  # a latency-only claim is a line
    lonely = charts.student_vs_teacher(rows(("teacher-a", None, 1.0, 20.0)), claims)
    assert any("no teacher/student pair" in a.text for a in lonely.layout.annotations)


def test_select_keeps_one_setting_scorer_and_step_count():
    df = rows(("a", None, 1.0, 20.0), ("a", None, 1.0, 0.3, {"score_checkpoint": "oc",
                                                              "score_scale": "raw cosine"}),
              ("a", None, 1.0, None, {"success": False}), ("a", None, 2.0, 21.0, {"steps": 8}),
              ("a", None, 9.0, 22.0, {"device_name": "gpu"}))
    assert charts.score_groups(df)[0] == "ck (100 x cosine, clamped at 0)"
    labels = charts.setting_labels(df)
    chosen = charts.select(df, setting=labels.iloc[0], score_group="ck (100 x cosine, clamped at 0)",
                           steps=4)
    assert chosen.index.tolist() == [0, 2]  # the other scorer, step count and device are out


def test_frame_from_results_has_the_store_columns():
    from dsdcompare.engine import Result
    from dsdcompare.metrics import Score
    from dsdcompare.timing import StageTimes, Timing

    timing = Timing(load_s=1.0, load_cached=False, first_call_s=2.0, steady_s=[0.5], median_s=0.5,
                    min_s=0.4, max_s=0.6, its_per_s=8.0, peak_memory_bytes=2**30,
                    stages=StageTimes(text=0.1, denoise=0.3, decode=0.05, safety=0.0, other=0.05,
                                      total=0.5),
                    steps=2, images_per_call=1, memory_kind="process RSS (sampled)", warmup=1,
                    repeats=1)
    score = Score(value=21.5, per_image=[21.5], excluded=[None], backend="torchmetrics",
                  checkpoint="tiny", scale="100 x cosine, clamped at 0", standin=True,
                  prompt_tokens=1, max_prompt_tokens=75, truncated=False, scored_prompt="p")
    ok = Result(model="m", model_name="M", success=True, error=None, source="tiny",
                standin=True, toy=False, repo=None, revision=None, teacher=None, prompt="p",
                negative_prompt="", seed=1, steps=2, guidance=7.5, width=64, height=64,
                images_per_prompt=1, scheduler="PNDMScheduler", dtype="fp32", device="cpu",
                device_name="cpu", variant=None, latents_sha=None, timing=timing, score=score,
                flags=["image 0: all black"])
    bad = Result(**{**vars(ok), "model": "x", "success": False, "error": "boom",
                    "timing": None, "score": None, "flags": []})
    df = charts.frame_from_results([ok, bad])
    assert list(df.columns) == list(charts.COLUMNS)
    assert df.loc[0, "median_s"] == 0.5 and df.loc[0, "clip_score"] == 21.5
    assert df.loc[0, "flags"] == "image 0: all black"
    assert df.loc[1, "error"] == "boom" and pd.isna(df.loc[1, "median_s"])


def test_chart_columns_are_the_stores():
    from dsdcompare.store import RESULT_COLUMNS

    assert set(charts.COLUMNS) <= set(RESULT_COLUMNS)


# --- intervals, paired differences, theme -----------------------------------------------------------

def test_error_bars_are_the_summarys_bootstrap_intervals_and_points_name_their_prompts():
    df = pd.concat([rows(("m", None, 1.0 + 0.1 * i, 20.0 + i, {"prompt": f"p{i}", "seed": s}))
                    for i in range(5) for s in (0, 1)], ignore_index=True)
    fig = charts.latency_vs_score(df)
    summary = charts.model_summary(df).iloc[0]
    [point] = [t for t in fig.data if t.name == "M"]
    assert point.error_y.array[0] == pytest.approx(summary["clip_ci_high"] - summary["score"])
    assert point.error_y.arrayminus[0] == pytest.approx(summary["score"] - summary["clip_ci_low"])
    assert point.error_x.array[0] == pytest.approx(summary["latency_ci_high"] - summary["latency"])
    assert point.text[0] == "5 prompts × 2 seeds"


def test_forest_plot_rows_are_pair_effects_with_their_intervals():
    from dsdcompare import stats

    df = pd.concat([rows(("t", None, 1.0, 20.0 + i, {"prompt": f"p{i}"}),
                         ("s", "t", 0.5, 19.0 + i + 0.1 * (i % 2), {"prompt": f"p{i}"}))
                    for i in range(6)], ignore_index=True)
    cats = {f"p{i}": "even" if i % 2 == 0 else "odd" for i in range(6)}
    effects = stats.pair_effects(df, categories=cats, n_resamples=500)
    fig = pair_charts.forest_plot(df, effects=effects)
    quality = [t for t in fig.data if t.xaxis == "x"]
    assert [t.y[0] for t in quality] == ["S vs T (6 prompts × 1 seeds)", "· even (3 prompts × 1 seeds)",
                                         "· odd (3 prompts × 1 seeds)"]
    assert [t.x[0] for t in quality] == pytest.approx(list(effects["quality_mean"]))
    ratio = [t for t in fig.data if t.xaxis == "x2"]
    assert ratio[0].x[0] == pytest.approx(0.5) and fig.layout.xaxis2.type == "log"
    empty = pair_charts.forest_plot(rows(("t", None, 1.0, 20.0)))
    assert "no teacher/student pair" in empty.layout.annotations[-1].text


def test_difference_heatmap_is_the_mean_absolute_difference():
    import numpy as np
    from PIL import Image

    a = Image.new("RGB", (4, 4), (0, 0, 0))
    b = Image.new("RGB", (4, 4), (30, 60, 90))
    fig = pair_charts.difference_heatmap(a, b)
    assert np.asarray(fig.data[0].z) == pytest.approx(np.full((4, 4), 60.0))
    with pytest.raises(charts.ChartError, match="equal sizes"):
        pair_charts.difference_heatmap(a, Image.new("RGB", (8, 8)))


def test_scorer_labels_never_show_a_machines_paths(tmp_path):
    assert charts.short_checkpoint(str(tmp_path / "dsdcompare" / "toyzoo" / "weights" / "toy-clip")) \
        == "toy-clip"
    assert charts.short_checkpoint("openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"
    assert charts.short_checkpoint(None) == "no scorer"
    assert charts.score_group_label("/x/y/toy-clip (100 x cosine, clamped at 0)") == \
        "toy-clip (100 x cosine, clamped at 0)"


def test_figures_set_no_white_or_fixed_grey_so_they_follow_the_theme():
    figs = [charts.latency_vs_score(PAIRS), charts.stage_breakdown(PAIRS),
            charts.student_vs_teacher(PAIRS, [charts.Claim("student-a", "teacher-a", 0.6, 0.9,
                                                           "c", "s")]),
            pair_charts.forest_plot(PAIRS)]
    # the colours the figures set themselves (Streamlit replaces plotly's default template)
    text = " ".join(f.update_layout(template=None).to_json() for f in figs).lower()
    for colour in ('"white"', "#fff", "#333", "#bbb", "#6b6b6b", "#c7c7c7", "#9e9e9e"):
        assert colour not in text
