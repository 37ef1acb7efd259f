"""Figures of paired differences: the forest plot of each student against its teacher, and the
per-pixel difference of one latent-matched pair. Pure functions, like :mod:`dsdcompare.charts`
(which re-exports them and lends its colours and interval helpers).
"""

from __future__ import annotations

import pandas as pd

from .charts import (
    _WARNING,
    NEUTRAL,
    NEUTRAL_FAINT,
    ChartError,
    _ci_text,
    _interval,
    metric_label,
    model_colours,
)


def forest_plot(df: pd.DataFrame, *, metric: str = "clip_score", categories=None,
                effects: pd.DataFrame | None = None):
    """Each student against its teacher, over all prompts and per prompt category: the paired
    quality difference (left) and latency ratio (right, log scale), each with its bootstrap CI.

    The rows are :func:`dsdcompare.stats.pair_effects` of ``df`` (or ``effects``, already
    computed); each row's label names the prompts and seeds behind it. For a metric relative to
    the teacher (SSIM, PSNR, LPIPS) the left panel is the metric itself. An empty selection
    gives a figure that says no pair was measured.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .stats import ALL, METRICS, pair_effects

    effects = pair_effects(df, metric=metric, categories=categories) if effects is None else effects
    label = metric_label(metric)
    relative = METRICS[metric].relative if metric in METRICS else False
    left = f"{label} of the student" if relative else f"{label}: student − teacher"
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(left, "latency ratio, student / teacher (log scale)"))
    colours = model_colours(df) if len(df) else {}
    names = dict(zip(df["model"], df["model_name"], strict=False)) if len(df) else {}
    rows = list(effects.iterrows())
    labels = []
    for _, r in rows:
        pair = f"{names.get(r['model'], r['model'])} vs {names.get(r['teacher'], r['teacher'])}"
        where = pair if r["category"] == ALL else f"· {r['category']}"
        labels.append(f"{where} ({r['n_prompts']} prompts × {r['n_seeds']} seeds)")
    for i, (_, r) in enumerate(rows):
        overall = r["category"] == ALL
        style = dict(color=colours.get(r["model"], NEUTRAL), size=12 if overall else 8,
                     symbol="diamond" if overall else "circle")
        for col, (value, low, high, fmt) in enumerate((
                (r["quality_mean"], r["quality_ci_low"], r["quality_ci_high"], ".3f"),
                (r["latency_ratio"], r["latency_ratio_ci_low"], r["latency_ratio_ci_high"], ".3f")),
                start=1):
            above, below, _ = _interval(value, low, high)
            fig.add_trace(go.Scatter(
                x=[value], y=[labels[i]], mode="markers", marker=style, showlegend=False,
                error_x=dict(type="data", symmetric=False, array=[above], arrayminus=[below],
                             thickness=1.5),
                hovertemplate=(f"<b>{labels[i]}</b><br>%{{x:{fmt}}} "
                               f"({_ci_text(low, high)})<br>{r['n_pairs']} paired results"
                               "<extra></extra>")), row=1, col=col)
    if not relative:
        fig.add_vline(x=0, line=dict(color=NEUTRAL_FAINT, width=1), row=1, col=1)
    fig.add_vline(x=1, line=dict(color=NEUTRAL_FAINT, width=1), row=1, col=2)
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=labels)
    if not rows:
        fig.add_annotation(text="no teacher/student pair measured on the same prompts and seeds",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=13, color=_WARNING))
    fig.update_layout(
        title=dict(text="Paired differences, student vs its teacher<br><sup>same prompt, seed "
                        "and latents; points: mean over prompts, whiskers: 95% bootstrap "
                        "intervals over prompts</sup>"),
        height=max(260, 90 + 34 * len(rows)), margin=dict(t=90, l=10))
    return fig


def difference_heatmap(student, teacher):
    """|student − teacher| per pixel (mean over RGB, 0–255) of two same-size images.

    Accepts PIL images or HxWx3 uint8 arrays. The colour scale is left to the theme. Raises
    :class:`ChartError` when the sizes differ.
    """
    import numpy as np
    import plotly.graph_objects as go

    a = np.asarray(student.convert("RGB") if hasattr(student, "convert") else student, dtype=float)
    b = np.asarray(teacher.convert("RGB") if hasattr(teacher, "convert") else teacher, dtype=float)
    if a.shape != b.shape:
        raise ChartError(f"the student image is {a.shape[1]}x{a.shape[0]} and the teacher's "
                         f"{b.shape[1]}x{b.shape[0]}: a pixel difference needs equal sizes")
    diff = np.abs(a - b).mean(axis=-1)
    fig = go.Figure(go.Heatmap(z=diff, zmin=0, zmax=255, colorbar=dict(title="|Δ|"),
                               hovertemplate="x %{x}, y %{y}: |Δ| %{z:.1f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showgrid=False, visible=False)
    fig.update_xaxes(showgrid=False, visible=False, constrain="domain")
    fig.update_layout(title=dict(text=f"|student − teacher| per pixel<br><sup>mean over RGB, "
                                      f"0–255; mean {diff.mean():.1f}, max {diff.max():.0f}</sup>"),
                      height=420, margin=dict(t=70, l=10, r=10, b=10))
    return fig


__all__ = ["difference_heatmap", "forest_plot"]
