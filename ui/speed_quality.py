"""The Speed vs quality page: which results, which view, and the numbers behind the charts.

Every number comes from :mod:`dsdcompare.stats` (the summary ``bench --report`` prints, and
:func:`~dsdcompare.stats.pair_effects` for the paired view), so the intervals on the charts
and in the tables are the same ones. Widget keys start with ``sq_``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsdcompare import charts, pair_charts, stats

from . import cost, resources
from .common import plain

#: The page's views: one draws the overview figures, the other the paired differences.
VIEWS = {"overview": "Speed and quality", "paired": "Paired differences (forest plot)"}
#: Summary columns shown, with their labels (the rest of stats.SUMMARY_COLUMNS stays in the CSV).
SHOWN = {
    "label": "model", "n": "results", "n_prompts": "prompts", "n_seeds": "seeds",
    "latency_median_s": "latency s (median)", "latency_ci_low": "latency CI low",
    "latency_ci_high": "latency CI high", cost.COLUMN: cost.COLUMN, "clip_mean": "score (mean)",
    "clip_ci_low": "score CI low", "clip_ci_high": "score CI high",
    "diff_mean": "vs teacher", "diff_ci_low": "vs teacher CI low",
    "diff_ci_high": "vs teacher CI high", "speedup_median": "speed-up ×",
    "images_per_s": "images / s",
}


def chart_filters_ui(settings: list[str], groups: list[str], steps: list[int],
                     metrics: list[str] | None = None) -> dict:
    """Which stored results the charts use (options most common first), and the quality metric
    (a chooser once the results hold several); returns plain values."""
    c1, c2, c3, c4 = st.columns([2.2, 2, 1, 1.1])
    setting = c1.selectbox("Weights · device · precision", settings, key="sq_setting",
                           help="Latencies are comparable only on the same hardware and settings.")
    group = c2.selectbox("CLIP checkpoint (scale)", groups or ["(no scores)"], key="sq_scorer",
                         format_func=lambda g: g if g == "(no scores)" else charts.score_group_label(g),
                         help="Scores from different checkpoints or scales are not comparable.")
    step = c3.selectbox("Steps", [*steps, "all"], key="sq_steps",
                        help="'all' pools step counts (see the steps sweep below).")
    per_mp = c4.toggle("Per megapixel", key="sq_per_mp",
                       help="Divide latency by image area: compares 512² and 1024² models fairly.")
    metrics = metrics or ["clip_score"]
    metric = metrics[0]
    if len(metrics) > 1:
        metric = st.selectbox("Quality metric", metrics, key="sq_metric",
                              format_func=charts.metric_label,
                              help="Fidelity metrics (SSIM, PSNR, LPIPS) compare a student's image "
                                   "with its teacher's on the same latents.")
    return {"setting": setting, "group": None if groups == [] else group,
            "steps": None if step == "all" else int(step), "per_mp": bool(per_mp),
            "metric": metric}


def score_metric_ui(metrics: list[str]) -> str:
    """Which stored score the charts use (CLIP, HPS v2.1, PickScore, ImageReward, LPIPS...): a
    chooser once the store holds more than one; returns the metric name."""
    if len(metrics) <= 1:
        return metrics[0] if metrics else "clip"
    return st.selectbox("Score", metrics, key="sq_score_metric",
                        help="Each score is charted alone, with its own checkpoint and scale: "
                             "scores of different metrics are never averaged together.")


def view_ui() -> str:
    """The view chooser: one view's figures are drawn at a time."""
    choice = st.segmented_control("View", list(VIEWS), format_func=VIEWS.get, key="sq_view",
                                  default="overview", label_visibility="collapsed")
    return choice or "overview"


def counts_caption(chosen: pd.DataFrame) -> str:
    """How many results, prompts, seeds and models the charts stand on."""
    return (f"{len(chosen)} results · {chosen['prompt'].nunique()} prompts · "
            f"{chosen['seed'].nunique()} seeds · {chosen['model'].nunique()} models. "
            "Error bars: 95% bootstrap intervals over prompts (seeds averaged within a prompt; "
            "a latency's interval resamples prompts with all their results).")


def overview_ui(chosen: pd.DataFrame, choice: dict) -> None:
    """Latency vs quality, the student/teacher ratios, the stages and the steps sweep."""
    try:
        figs = resources.figures(chosen, choice["per_mp"], choice["metric"])
    except charts.ChartError as err:
        st.error(plain(err))
        return
    left, right = st.columns(2, gap="large")
    left.plotly_chart(figs["latency_vs_score"], key="sq_scatter", width="stretch")
    right.plotly_chart(figs["student_vs_teacher"], key="sq_ratio", width="stretch")
    st.plotly_chart(figs["stages"], key="sq_stages", width="stretch")
    if figs["sweep"] is not None:
        st.plotly_chart(figs["sweep"], key="sq_sweep", width="stretch")


@st.cache_data(show_spinner="Bootstrapping the paired differences…", max_entries=16)
def effects(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """:func:`dsdcompare.stats.pair_effects` of the chart columns of ``df`` (cached)."""
    return stats.pair_effects(df, metric=metric)


def paired_ui(chosen: pd.DataFrame, choice: dict) -> None:
    """The forest plot of paired differences, overall and per category, and its numbers."""
    frame = resources.chart_frame(chosen)
    table = effects(frame, choice["metric"])
    st.plotly_chart(pair_charts.forest_plot(frame, metric=choice["metric"], effects=table),
                    key="sq_forest", width="stretch")
    if table.empty:
        st.info("No student and teacher share a prompt and seed in this selection: run both on "
                "the same prompts (Compare, or `dsdcompare bench`).", icon=":material/join:")
        return
    st.caption("Categories come from the shipped prompt suites (`dsdcompare.prompts`); prompts "
               f"outside them are “{stats.UNCATEGORISED}”. The latency ratio is a geometric mean.")
    st.dataframe(table, hide_index=True, width="stretch", key="sq_effects")


def summary_table(chosen: pd.DataFrame, choice: dict) -> pd.DataFrame:
    """The numbers behind the charts: :func:`dsdcompare.charts.model_summary` (the stats path)
    with the cost of each latency at the sidebar's rate, labelled for reading."""
    summary = charts.model_summary(resources.chart_frame(chosen), per_mp=choice["per_mp"],
                                   metric=choice["metric"])
    images = chosen.groupby("model")["images_per_prompt"].first()
    summary[cost.COLUMN] = [cost.per_1000(r["latency_median_s"], images.get(r["model"], 1))
                            if not choice["per_mp"] else float("nan")
                            for _, r in summary.iterrows()]
    return summary


def summary_ui(chosen: pd.DataFrame, choice: dict) -> None:
    """The per-model table (the same intervals as the charts and ``bench --report``)."""
    label = charts.metric_label(choice["metric"])
    with st.expander(f"Per-model summary: the numbers behind the charts ({plain(label)}), as "
                     "`bench --report` gives them", expanded=False):
        summary = summary_table(chosen, choice)
        shown = summary[[c for c in SHOWN if c in summary]].rename(columns=SHOWN)
        st.dataframe(shown, hide_index=True, width="stretch", key="sq_summary", column_config={
            c: st.column_config.NumberColumn(c, format="%.3f") for c in shown.columns
            if c not in ("model", "results", "prompts", "seeds")})
        st.caption("Score columns summarise the chosen quality metric; “vs teacher” is the paired "
                   "difference, student minus teacher, on the same prompt and seed. "
                   f"{cost.COLUMN}: the steady-state latency at the sidebar's $ per device-hour.")
