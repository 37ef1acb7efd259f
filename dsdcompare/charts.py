"""Speed-vs-quality figures: plotly figures as pure functions of a results DataFrame.

Every function takes the flat table that :meth:`dsdcompare.store.Store.results` returns (one
row per model and comparison; :func:`frame_from_results` builds the same table from engine
Results) and returns a ``plotly.graph_objects.Figure`` or a DataFrame. Nothing here draws,
caches or imports Streamlit: the dashboard and a notebook call the same functions.

The numbers come from :func:`dsdcompare.stats.summary` (through :func:`model_summary`), the same
summary ``bench --report`` prints: reruns count once, and a model that ran under several step
counts or conditions is several points, never a pooled one.

Honesty rules the figures follow:

- Scores from different CLIP checkpoints or scales are not comparable: a figure refuses a
  table that mixes them (:class:`ChartError` names them) instead of plotting them together.
- Stand-in (random weight) and toy results are marked in the legend and hover text.
- Published claims (``ModelSpec.facts``, from :mod:`dsdcompare.published`) were measured
  elsewhere (other hardware, scorer, dataset). They are drawn only as *ratios of student to
  teacher*, the one scale they share with measurements, and labelled "published".
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from .errors import DsdCompareError
from .published import Claim, published_claims

#: Stage columns of the results table, in drawing order, with their labels.
STAGE_COLUMNS = {"text_s": "text encoding", "denoise_s": "denoising loop", "decode_s": "VAE decode",
          "safety_s": "safety checker", "other_s": "other (latents, post-processing)"}
#: Columns the charts read and :func:`frame_from_results` fills: a subset of the store's results
#: table (``dsdcompare.store.RESULT_COLUMNS``), built by the store's own row builder.
COLUMNS = ("run_id", "result_id", "created_at", "model", "model_name", "success", "error",
           "source", "standin", "toy", "teacher", "prompt", "negative_prompt", "seed", "steps",
           "guidance", "width", "height", "images_per_prompt", "dtype", "device", "device_name",
           "scheduler", "load_s",
           "first_call_s", "median_s", "min_s", "max_s", *STAGE_COLUMNS, "its_per_s",
           "peak_memory_bytes", "clip_score", "score_backend", "score_checkpoint", "score_scale",
           "score_standin", "psnr", "ssim", "flags", "image_paths")
#: Latency columns that the per-megapixel view divides by the image area.
LATENCY_COLUMNS = ("load_s", "first_call_s", "median_s", "min_s", "max_s", *STAGE_COLUMNS)

# Colours follow the dashboard's light and dark themes: text, axes, grids and the heatmap's
# scale are left to the theme (Streamlit's plotly theme sets them per theme), and the colours
# set here are mid-tones that read on a white and on a near-black background alike. Neutral
# marks (reference lines, the frontier, published claims) are translucent, so they take the
# tone of whichever background is under them; nothing is drawn in white or a fixed grey.
#: (teacher, student) colour pairs: a pair shares a hue, the teacher is the deeper shade.
_PAIR_COLOURS = [("#2f6fb0", "#7fb3e6"), ("#c25e00", "#f5a65b"), ("#238a4a", "#7bcf97"),
                 ("#7744a8", "#b796dc"), ("#b02a55", "#e98aa8"), ("#0f8a8a", "#6fd0d0")]
_STAGE_COLOURS = {"text_s": "#8da0cb", "denoise_s": "#2f6fb0", "decode_s": "#f0a04b",
                  "safety_s": "#e07a9a", "other_s": "#66c2a5"}
#: Neutral marks: translucent, so they show on either theme's background.
NEUTRAL = "rgba(128, 128, 128, 0.85)"
NEUTRAL_FAINT = "rgba(128, 128, 128, 0.4)"
#: Warnings drawn on a figure (models left out): an orange legible on both themes.
_WARNING = "#e8590c"
_CLAIM_COLOUR = NEUTRAL
_DASHES = ("dot", "dash", "dashdot", "longdash")


class ChartError(DsdCompareError, ValueError):
    """The table cannot be drawn honestly as asked (e.g. scores on different scales)."""


# --- tables ----------------------------------------------------------------------------------------

def frame_from_results(results: Iterable) -> pd.DataFrame:
    """The flat results table (the store's columns) of engine Results, one row per Result.

    Each row is the store's own (:func:`dsdcompare.store.flat_record`), so a table of fresh
    Results and one read back from the store have the same schema. ``run_id``, ``result_id``,
    ``created_at`` and ``image_paths`` are empty: those belong to a store. ``flags`` is one
    string ("; " between flags), as :meth:`Store.results <dsdcompare.store.Store.results>` has it.
    """
    from .store import flat_record, result_record_dict

    rows = []
    for r in results:
        record = result_record_dict(r)
        rows.append({**flat_record(record), "run_id": None, "result_id": None,
                     "created_at": None, "image_paths": None,
                     "flags": "; ".join(record.get("flags") or [])})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def per_megapixel(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every latency column divided by the image area in megapixels.

    Lets models of different native size (512² vs 1024²) be compared per unit of output.
    """
    out = df.copy()
    mp = out["width"].astype(float) * out["height"].astype(float) / 1e6
    for col in LATENCY_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce") / mp
    return out


def setting_labels(df: pd.DataFrame) -> pd.Series:
    """``"source · device name · dtype"`` per row: latencies compare only within one label."""
    return (df["source"].astype(str) + " · " + df["device_name"].fillna("?").astype(str) + " · "
            + df["dtype"].fillna("?").astype(str))


def select(df: pd.DataFrame, *, setting: str | None = None, score_group: str | None = None,
           steps: int | None = None) -> pd.DataFrame:
    """Rows of one setting (:func:`setting_labels`), step count and score group.

    Rows scored by another checkpoint are dropped; unscored rows (failures, no scorer) stay.
    ``None`` means any.
    """
    keep = pd.Series(True, index=df.index)
    if setting is not None:
        keep &= setting_labels(df) == setting
    if steps is not None:
        keep &= df["steps"] == steps
    if score_group is not None:
        scored = pd.to_numeric(df["clip_score"], errors="coerce").notna()
        keep &= ~scored | (_score_label(df) == score_group)
    return df[keep]


def _score_label(df: pd.DataFrame) -> pd.Series:
    return df["score_checkpoint"].astype(str) + " (" + df["score_scale"].astype(str) + ")"


def short_checkpoint(name) -> str:
    """A scorer checkpoint as a label: a folder path by its last folder ("toy-clip"), a hub id or
    an ``open_clip:`` name as it is, nothing as "no scorer" (labels never show a machine's paths)."""
    if name is None or (isinstance(name, float) and math.isnan(name)) or str(name) in ("", "None"):
        return "no scorer"
    text = str(name)
    if text.startswith(("/", "~", ".")) or "\\" in text or (len(text) > 2 and text[1] == ":"):
        parts = [p for p in text.replace("\\", "/").split("/") if p]
        return parts[-1] if parts else text
    return text


def score_group_label(group: str) -> str:
    """A :func:`score_groups` label with its checkpoint shortened (:func:`short_checkpoint`)."""
    checkpoint, _, scale = group.rpartition(" (")
    return f"{short_checkpoint(checkpoint)} ({scale}" if checkpoint else group


def score_groups(df: pd.DataFrame) -> list[str]:
    """Distinct ``"checkpoint (scale)"`` labels of the scored rows of ``df``."""
    scored = df[pd.to_numeric(df["clip_score"], errors="coerce").notna()]
    return _score_label(scored).value_counts().index.tolist()


#: Columns :func:`model_summary` adds to :func:`dsdcompare.stats.summary`'s, and what each holds.
VIEW_COLUMNS = {
    "point": "the chart point's key: the model key, plus the step count and conditions when the "
             "model has several rows",
    "label": "the point's display name (model name, plus step count and conditions if needed)",
    "series": "the steps sweep's line: the label without the step count",
    "model_name": "display name of the model",
    "latency": "latency_median_s (the chart's x)",
    "latency_lo": "lowest per-observation latency, or the fastest repeat for one observation",
    "latency_hi": "highest per-observation latency, or the slowest repeat for one observation",
    "score": "clip_mean (the chart's y)",
    "score_sd": "standard deviation of the CLIP score over observations (0 for one)",
    "score_n": "n_scored",
    "standin": "any result came from stand-in weights",
    "toy": "any result came from a toy model",
    "prompts": "distinct prompts among the observations",
    "seeds": "distinct seeds among the observations",
    **{col: f"median {label} time over observations (0 when not recorded)"
       for col, label in STAGE_COLUMNS.items()},
}


def model_summary(df: pd.DataFrame, *, per_mp: bool = False,
                  metric: str = "clip_score") -> pd.DataFrame:
    """The table behind the charts: :func:`dsdcompare.stats.summary` of ``df``, one row per
    model and step count (and varying condition) with a timed success, plus :data:`VIEW_COLUMNS`.

    A thin view: the numbers are the summary's (``latency`` is ``latency_median_s``, ``score``
    is ``clip_mean``, ``n`` its observations, reruns counted once; error bars are its bootstrap
    intervals); the view adds spreads and the stage medians, over the same de-duplicated
    observations (:func:`dsdcompare.stats.observations`). ``per_mp`` summarises
    :func:`per_megapixel` latencies; ``metric`` is the quality column summarised as ``score``
    (a :data:`dsdcompare.stats.METRICS` key).
    """
    from .stats import SUMMARY_COLUMNS, observations, summary

    data = per_megapixel(df) if per_mp else df
    table = summary(data, metric=metric)
    by = [c for c in table.columns if c not in SUMMARY_COLUMNS]  # model, steps, conditions
    table = table[table["latency_median_s"].notna()]
    cols = [*table.columns, *VIEW_COLUMNS]
    if table.empty:
        return pd.DataFrame(columns=cols)
    obs = observations(data)
    ok = obs[obs["success"].astype(bool)]
    spreads = pd.DataFrame([{**dict(zip(by, key, strict=True)), **_spread(g, metric)}
                            for key, g in ok.groupby(by, sort=False, dropna=False)])
    table = table.merge(spreads, on=by, how="left")  # merge matches NaN keys, unlike a dict
    table["latency"] = table["latency_median_s"].astype(float)
    table["score"] = table["clip_mean"].astype(float)
    table["score_n"] = table["n_scored"]
    table["point"], table["label"], table["series"] = _point_names(table, by[1:])
    return table[cols].reset_index(drop=True)


def _spread(g: pd.DataFrame, metric: str = "clip_score") -> dict:
    """Error-bar spreads and stage medians of one group of successful observations."""
    med = pd.to_numeric(g["median_s"], errors="coerce").dropna()
    if len(med) > 1:
        lo, hi = med.min(), med.max()
    else:  # one observation: the spread of its repeats
        lo = pd.to_numeric(g["min_s"], errors="coerce").min()
        hi = pd.to_numeric(g["max_s"], errors="coerce").max()
    middle = float(med.median()) if len(med) else math.nan
    scores = pd.to_numeric(g[metric], errors="coerce").dropna()
    row = {"model_name": g["model_name"].iloc[0],
           "latency_lo": float(lo) if pd.notna(lo) else middle,
           "latency_hi": float(hi) if pd.notna(hi) else middle,
           "score_sd": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
           "standin": bool(g["standin"].astype(bool).any()), "toy": bool(g["toy"].astype(bool).any()),
           "prompts": g["prompt"].nunique(), "seeds": g["seed"].nunique()}
    for col in STAGE_COLUMNS:
        vals = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else pd.Series([], dtype=float)
        row[col] = float(vals.median()) if len(vals) else 0.0
    return row


def _point_names(table: pd.DataFrame, split: list[str]) -> tuple[list, list, list]:
    """Point keys, labels and sweep series: a model's name alone when it has one row, else
    followed by what tells its rows apart (step count, conditions)."""
    points, labels, series = [], [], []
    for _, row in table.iterrows():
        mine = table[table["model"] == row["model"]]
        differ = [c for c in split if mine[c].astype(str).nunique() > 1]
        parts = [f"{row[c]} steps" if c == "steps" else f"{c} {row[c]}" for c in differ]
        tail = [p for c, p in zip(differ, parts, strict=True) if c != "steps"]
        points.append(" · ".join([row["model"], *parts]))
        labels.append(" · ".join([row["model_name"], *parts]))
        series.append(" · ".join([row["model_name"], *tail]))
    return points, labels, series


def pareto_frontier(summary: pd.DataFrame) -> list[str]:
    """Points no other point beats on both axes: faster *and* at least as good a score.

    Lower latency is better, higher CLIP score is better (``metrics.HIGHER_IS_BETTER``).
    Returned fastest first, by ``point`` (:func:`model_summary`; else ``model``); rows without
    a score are never on the frontier.
    """
    key = "point" if "point" in summary.columns else "model"
    pts = summary.dropna(subset=["latency", "score"]).sort_values(["latency", "score"],
                                                                  ascending=[True, False])
    frontier, best = [], -math.inf
    for _, row in pts.iterrows():
        if row["score"] > best:
            frontier.append(row[key])
            best = row["score"]
    return frontier


def model_colours(df: pd.DataFrame) -> dict[str, str]:
    """A colour per model: each teacher/student pair shares a hue, the teacher is darker."""
    teacher_of = dict(zip(df["model"], df["teacher"], strict=True))
    roots: list[str] = []
    colours: dict[str, str] = {}
    for model in dict.fromkeys(df["model"]):
        root = _none_if_nan(teacher_of.get(model)) or model
        if root not in roots:
            roots.append(root)
        dark, light = _PAIR_COLOURS[roots.index(root) % len(_PAIR_COLOURS)]
        colours[model] = dark if root == model else light
    return colours


# --- published claims (read from dsdcompare.published) ----------------------------------------------

def facts_table(specs: Iterable) -> pd.DataFrame:
    """Every published fact of ``specs`` as rows: model, fact, value, source."""
    rows = [{"model": s.name, "fact": f.name, "value": f.value, "source": f.source}
            for s in specs for f in s.facts]
    return pd.DataFrame(rows, columns=["model", "fact", "value", "source"])


# --- figures ---------------------------------------------------------------------------------------

def metric_label(metric: str) -> str:
    """Display name of a quality column (:data:`dsdcompare.stats.METRICS`)."""
    from .stats import METRICS

    return METRICS[metric].label if metric in METRICS else metric


def _interval(value, low, high) -> tuple[float, float, bool]:
    """Error-bar lengths (above, below) of ``value`` for the CI ``[low, high]``; zero and False
    when the interval is unknown (fewer than two prompts)."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (value, low, high)):
        return 0.0, 0.0, False
    return max(0.0, float(high) - float(value)), max(0.0, float(value) - float(low)), True


def _ci_text(low, high, digits: int = 3) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return "no interval (one prompt)"
    return f"95% CI {low:.{digits}f}–{high:.{digits}f}"


def latency_vs_score(df: pd.DataFrame, *, per_mp: bool = False, metric: str = "clip_score"):
    """Steady-state latency (x) against a quality metric (y), one point per model, Pareto
    frontier marked.

    Error bars: the bootstrap intervals of :func:`dsdcompare.stats.summary` over prompts (the
    latency's resamples prompts with their observations; none with one prompt). Each point is
    labelled with the prompts and seeds behind it. Raises :class:`ChartError` when the table
    mixes score checkpoints or scales.
    """
    import plotly.graph_objects as go

    groups = score_groups(df)
    if len(groups) > 1:
        raise ChartError(f"CLIP scores from {len(groups)} checkpoints/scales are not comparable: "
                         f"{groups}; choose one")
    summary = model_summary(df, per_mp=per_mp, metric=metric)
    colours = model_colours(df)
    frontier = pareto_frontier(summary) if _higher_is_better(metric) else []
    unit = "s per megapixel" if per_mp else "s per call"
    label = metric_label(metric)
    fig = go.Figure()
    scored = summary.dropna(subset=["score"])
    for _, row in scored.iterrows():
        is_student = _none_if_nan(row["teacher"]) is not None
        tags = [t for t, on in (("stand-in", row["standin"]), ("toy", row["toy"])) if on]
        name = row["label"] + (f" [{', '.join(tags)}]" if tags else "")
        x_hi, x_lo, _ = _interval(row["latency"], row["latency_ci_low"], row["latency_ci_high"])
        y_hi, y_lo, _ = _interval(row["score"], row["clip_ci_low"], row["clip_ci_high"])
        behind = f"{row['n_prompts']} prompts × {row['n_seeds']} seeds"
        fig.add_trace(go.Scatter(
            x=[row["latency"]], y=[row["score"]], mode="markers+text", name=name,
            text=[behind], textposition="top center", textfont=dict(size=10),
            marker=dict(size=15, color=colours.get(row["model"]),
                        symbol="diamond" if is_student else "circle", opacity=0.9),
            error_x=dict(type="data", symmetric=False, array=[x_hi], arrayminus=[x_lo],
                         thickness=1.5),
            error_y=dict(type="data", symmetric=False, array=[y_hi], arrayminus=[y_lo],
                         thickness=1.5),
            hovertemplate=(f"<b>{name}</b><br>latency %{{x:.3f}} {unit} "
                           f"({_ci_text(row['latency_ci_low'], row['latency_ci_high'])})<br>"
                           f"{label} %{{y:.3f}} "
                           f"({_ci_text(row['clip_ci_low'], row['clip_ci_high'])})<br>"
                           f"{row['n']} results: {behind}<extra></extra>"),
        ))
    if len(frontier) > 0:
        pts = scored.set_index("point").loc[frontier]
        fig.add_trace(go.Scatter(
            x=pts["latency"], y=pts["score"], mode="lines+markers", name="Pareto frontier",
            line=dict(color=NEUTRAL, dash="dash", width=1.5),
            marker=dict(size=24, symbol="circle-open", color=NEUTRAL, line=dict(width=1.5)),
            hoverinfo="skip"))
    missing = summary[summary["score"].isna()]["label"].tolist()
    if missing:
        fig.add_annotation(text=f"no {label}, not plotted: " + ", ".join(missing),
                           xref="paper", yref="paper", x=0, y=-0.2, showarrow=False,
                           font=dict(size=11, color=_WARNING), xanchor="left")
    scorer = score_group_label(groups[0]) if groups else "no scores"
    better = "higher" if _higher_is_better(metric) else "lower"
    fig.update_layout(
        title=dict(text=f"Latency vs {label} ({'per megapixel' if per_mp else 'steady state'})"
                        f"<br><sup>{'CLIP: ' + scorer + ' · ' if metric == 'clip_score' else ''}"
                        "error bars: 95% bootstrap intervals over prompts</sup>"),
        xaxis_title=f"latency, steady-state median ({unit}) — lower is better",
        yaxis_title=f"{label} — {better} is better",
        legend=dict(orientation="h", yanchor="top", y=-0.18 if not missing else -0.28, x=0),
        margin=dict(t=80, b=90), height=480)
    if len(scored):
        x_top = pd.concat([scored["latency_ci_high"], scored["latency"]], axis=1).max(axis=1)
        hi = float(x_top.max())
        fig.update_xaxes(range=[0, hi * 1.2 if hi > 0 else 1])
        lo_y = float(pd.concat([scored["clip_ci_low"], scored["score"]], axis=1).min(axis=1).min())
        hi_y = float(pd.concat([scored["clip_ci_high"], scored["score"]], axis=1).max(axis=1).max())
        pad = max((hi_y - lo_y) * 0.15, abs(hi_y) * 0.05, 0.5 if metric == "clip_score" else 0.01)
        fig.update_yaxes(range=[lo_y - pad, hi_y + pad * 1.5])  # room for the labels above
    return fig


def _higher_is_better(metric: str) -> bool:
    from .stats import METRICS

    return METRICS[metric].higher_is_better if metric in METRICS else True


def stage_breakdown(df: pd.DataFrame, *, per_mp: bool = False):
    """Stacked bars: median seconds of each latency stage per model (they add up to the call)."""
    import plotly.graph_objects as go

    summary = model_summary(df, per_mp=per_mp)
    unit = "s per megapixel" if per_mp else "s per call"
    fig = go.Figure()
    for col, label in STAGE_COLUMNS.items():
        if col == "safety_s" and not (summary[col] > 0).any():
            continue  # no model ran a safety checker: leave it out of the legend
        fig.add_trace(go.Bar(
            x=summary["label"], y=summary[col], name=label,
            marker_color=_STAGE_COLOURS[col],
            hovertemplate=f"%{{x}}<br>{label}: %{{y:.3f}} {unit}<extra></extra>"))
    above, below = zip(*[_interval(r["latency"], r["latency_ci_low"], r["latency_ci_high"])[:2]
                         for _, r in summary.iterrows()]) if len(summary) else ((), ())
    fig.add_trace(go.Scatter(  # the call's median and its interval over prompts, labelled
        x=summary["label"], y=summary["latency"], mode="markers+text", name="whole call, 95% CI",
        text=[f"{t:.2f}" for t in summary["latency"]], textposition="top right",
        marker=dict(size=7, symbol="line-ew-open", color=NEUTRAL, line=dict(width=2)),
        error_y=dict(type="data", symmetric=False, array=list(above), arrayminus=list(below),
                     color=NEUTRAL, thickness=1.5, width=8),
        hovertemplate=[f"{r['label']}<br>whole call %{{y:.3f}} {unit}<br>"
                       f"{_ci_text(r['latency_ci_low'], r['latency_ci_high'])} · "
                       f"{r['n_prompts']} prompts × {r['n_seeds']} seeds<extra></extra>"
                       for _, r in summary.iterrows()]))
    fig.update_layout(barmode="stack", title=dict(text="Where the time goes (median per stage)"
                                                       "<br><sup>whiskers: 95% bootstrap interval "
                                                       "of the whole call over prompts</sup>"),
                      yaxis_title=f"seconds ({unit})", xaxis_title=None, height=420,
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0,
                                  traceorder="normal"),
                      margin=dict(t=60, b=80))
    return fig


def steps_sweep(df: pd.DataFrame, *, per_mp: bool = False):
    """Latency and CLIP score against the number of steps, one line per model (and condition).

    The points are :func:`model_summary`'s. Returns None when the table holds fewer than two
    step counts (nothing to sweep).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ok = df[df["success"].astype(bool)]
    if ok["steps"].nunique() < 2:
        return None
    if len(score_groups(ok)) > 1:
        raise ChartError(f"CLIP scores from several checkpoints are not comparable: "
                         f"{score_groups(ok)}; choose one")
    summary = model_summary(df, per_mp=per_mp)
    colours = model_colours(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency", "CLIP score"))
    for name, g in summary.groupby("series", sort=False):
        g = g.sort_values("steps", kind="stable")
        steps = [int(n) for n in g["steps"]]
        style = dict(color=colours.get(g["model"].iloc[0]))
        fig.add_trace(go.Scatter(x=steps, y=g["latency"].tolist(), mode="lines+markers",
                                 name=name, line=style, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=g["score"].tolist(), mode="lines+markers",
                                 name=name, line=style, legendgroup=name, showlegend=False),
                      row=1, col=2)
    fig.update_xaxes(title_text="denoising steps")
    fig.update_yaxes(title_text="s per megapixel" if per_mp else "s per call", row=1, col=1)
    fig.update_yaxes(title_text="CLIP score", row=1, col=2)
    fig.update_layout(title=dict(text="Steps sweep"), height=400,
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


def student_vs_teacher(df: pd.DataFrame, claims: Iterable[Claim] = ()):
    """Each measured student relative to its teacher, with published claims as reference marks.

    x = student latency / teacher latency, y = student CLIP score / teacher CLIP score; the
    teacher sits at (1, 1). Ratios are the one scale on which numbers measured here and numbers
    published elsewhere (other GPUs, scorers, datasets) can share axes. Each student point of
    :func:`model_summary` is set against its teacher's point of the same step count and pairing
    conditions. A claim with both ratios is a grey open diamond; one with a single ratio is a
    grey line named in the legend. Raises :class:`ChartError` when scores from several
    checkpoints are mixed.
    """
    import plotly.graph_objects as go

    from .stats import PAIRING_COLUMNS

    groups = score_groups(df)
    if len(groups) > 1:
        raise ChartError(f"CLIP scores from {len(groups)} checkpoints/scales are not comparable: "
                         f"{groups}; choose one")
    summary = model_summary(df)
    match = [c for c in summary.columns if c in ("steps", *PAIRING_COLUMNS)]
    colours = model_colours(df)
    fig = go.Figure()
    fig.add_hline(y=1, line=dict(color=NEUTRAL_FAINT, width=1))
    fig.add_vline(x=1, line=dict(color=NEUTRAL_FAINT, width=1))
    fig.add_trace(go.Scatter(x=[1], y=[1], mode="markers+text", text=["teacher"],
                             textposition="bottom right", name="teacher (reference)",
                             marker=dict(size=10, color=NEUTRAL), hoverinfo="skip"))
    claims = list(claims)
    xs = [1.0] + [c.latency_ratio for c in claims if c.latency_ratio is not None]
    measured = 0
    for _, row in summary.iterrows():
        same = summary["model"] == _none_if_nan(row["teacher"])
        for c in match:
            same &= summary[c].astype(str) == str(row[c])
        if not same.any():
            continue
        t = summary[same].iloc[0]
        lat = row["latency"] / t["latency"] if t["latency"] else math.nan
        score = row["score"] / t["score"] if t["score"] and not math.isnan(t["score"]) else math.nan
        measured += 1
        xs.append(lat)
        fig.add_trace(go.Scatter(
            x=[lat], y=[score if not math.isnan(score) else 1.0], mode="markers+text",
            name=f"{row['label']} / {t['label']} (measured here)",
            text=[row["label"]], textposition="top center",
            marker=dict(size=16, color=colours.get(row["model"]), symbol="diamond", opacity=0.9),
            hovertemplate=(f"<b>{row['label']}</b> vs {t['label']}, measured here<br>"
                           "latency ×%{x:.2f}<br>"
                           + ("CLIP ×%{y:.3f}" if not math.isnan(score) else "no CLIP score")
                           + "<extra></extra>")))
    x_max = max(x for x in xs if x is not None and math.isfinite(x)) * 1.2
    _draw_claims(fig, claims)
    if not measured:
        fig.add_annotation(text="no teacher/student pair measured in this selection",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=13, color=_WARNING))
    fig.update_layout(
        title=dict(text="Student relative to its teacher<br><sup>measured here (filled) and "
                        "published elsewhere (grey): ratios share one scale</sup>"),
        xaxis_title="latency ratio, student / teacher — lower is faster",
        yaxis_title="CLIP score ratio, student / teacher",
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, font=dict(size=11)),
        margin=dict(t=80, b=120), height=520)
    fig.update_xaxes(range=[0, x_max])
    return fig


def _draw_claims(fig, claims: list[Claim]) -> None:
    """Published claims on the ratio axes: a point when both ratios are claimed, else a line."""
    import plotly.graph_objects as go

    lines = 0
    for c in claims:
        hover = f"<b>published</b> (not measured here)<br>{c.label}<br>source: {c.source}"
        name = f"published: {c.document or c.label}"
        if c.latency_ratio is not None and c.score_ratio is not None:
            fig.add_trace(go.Scatter(
                x=[c.latency_ratio], y=[c.score_ratio], mode="markers+text", name=name,
                text=["published"], textposition="bottom center",
                textfont=dict(color=_CLAIM_COLOUR, size=11),
                marker=dict(size=13, symbol="diamond-open", color=_CLAIM_COLOUR, line=dict(width=2)),
                hovertemplate=hover + "<extra></extra>"))
        elif c.latency_ratio is not None:  # a speed claim only: a vertical line (its legend
            dash = _DASHES[lines % len(_DASHES)]  # entry names it; the dash tells lines apart)
            lines += 1
            fig.add_vline(x=c.latency_ratio, line=dict(color=_CLAIM_COLOUR, dash=dash, width=1.5))
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines",
                                     name=f"{name}: ×{c.latency_ratio:.2f} latency",
                                     line=dict(color=_CLAIM_COLOUR, dash=dash)))
        elif c.score_ratio is not None:  # a quality claim only: a horizontal line
            dash = _DASHES[lines % len(_DASHES)]
            lines += 1
            fig.add_hline(y=c.score_ratio, line=dict(color=_CLAIM_COLOUR, dash=dash, width=1.5))
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines",
                                     name=f"{name}: ×{c.score_ratio:.2f} CLIP",
                                     line=dict(color=_CLAIM_COLOUR, dash=dash)))


def _none_if_nan(value):
    if value is None:
        return None
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


# the paired-difference figures live in their own module; importable from here as well

__all__ = ["COLUMNS", "NEUTRAL", "NEUTRAL_FAINT", "STAGE_COLUMNS", "ChartError", "Claim",
           "facts_table", "frame_from_results",
           "latency_vs_score", "metric_label", "model_colours", "model_summary",
           "pareto_frontier", "per_megapixel", "published_claims", "score_group_label",
           "score_groups", "select", "setting_labels", "short_checkpoint", "stage_breakdown",
           "steps_sweep", "student_vs_teacher", "VIEW_COLUMNS"]
