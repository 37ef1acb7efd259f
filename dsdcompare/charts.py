"""Speed-vs-quality figures: plotly figures as pure functions of a results DataFrame.

Every function takes the flat table that :meth:`dsdcompare.store.Store.results` returns (one
row per model and comparison; :func:`frame_from_results` builds the same table from engine
Results) and returns a ``plotly.graph_objects.Figure`` or a DataFrame. Nothing here draws,
caches or imports Streamlit: the dashboard and a notebook call the same functions.

Honesty rules the figures follow:

- Scores from different CLIP checkpoints or scales are not comparable: a figure refuses a
  table that mixes them (:class:`ChartError` names them) instead of plotting them together.
- Stand-in (random weight) and toy results are marked in the legend and hover text.
- Published claims (``ModelSpec.facts``) were measured elsewhere (other hardware, scorer,
  dataset). They are drawn only as *ratios of student to teacher*, the one scale they share
  with measurements, and labelled "published".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

#: Stage columns of the results table, in drawing order, with their labels.
STAGES = {"text_s": "text encoding", "denoise_s": "denoising loop", "decode_s": "VAE decode",
          "safety_s": "safety checker", "other_s": "other (latents, post-processing)"}
#: Columns :func:`frame_from_results` fills (the store's flat schema).
COLUMNS = ("run_id", "result_id", "created_at", "model", "model_name", "success", "error",
           "source", "standin", "toy", "teacher", "prompt", "negative_prompt", "seed", "steps",
           "guidance", "width", "height", "dtype", "device", "device_name", "scheduler", "load_s",
           "first_call_s", "median_s", "min_s", "max_s", *STAGES, "its_per_s",
           "peak_memory_bytes", "clip_score", "score_backend", "score_checkpoint", "score_scale",
           "score_standin", "psnr", "ssim", "flags", "image_paths")
#: Latency columns that the per-megapixel view divides by the image area.
LATENCY_COLUMNS = ("load_s", "first_call_s", "median_s", "min_s", "max_s", *STAGES)

#: (teacher, student) colour pairs: a pair shares a hue, the teacher is the darker shade.
_PAIR_COLOURS = [("#1f4e79", "#5b9bd5"), ("#9c4a00", "#f0a04b"), ("#1b6b3a", "#6cc08b"),
                 ("#5b2a86", "#b18bd6"), ("#7a1f3d", "#e07a9a"), ("#3d3d3d", "#9e9e9e")]
_STAGE_COLOURS = {"text_s": "#8da0cb", "denoise_s": "#1f4e79", "decode_s": "#f0a04b",
                  "safety_s": "#e07a9a", "other_s": "#c7c7c7"}
_CLAIM_COLOUR = "#6b6b6b"
_DASHES = ("dot", "dash", "dashdot", "longdash")


class ChartError(ValueError):
    """The table cannot be drawn honestly as asked (e.g. scores on different scales)."""


# --- tables ----------------------------------------------------------------------------------------

def frame_from_results(results: Iterable) -> pd.DataFrame:
    """The flat results table (the store's columns) of engine Results, one row per Result.

    ``run_id``, ``result_id``, ``created_at`` and ``image_paths`` are empty: those belong to
    a store. ``flags`` is one string ("; " between flags).
    """
    rows = []
    for r in results:
        t = r.timing
        stages = t.stages if t else None
        s = r.score
        fid = r.fidelity or {}
        rows.append({
            "run_id": None, "result_id": None, "created_at": None,
            "model": r.model, "model_name": r.model_name, "success": bool(r.success),
            "error": r.error, "source": r.source, "standin": bool(r.standin), "toy": bool(r.toy),
            "teacher": r.teacher, "prompt": r.prompt, "negative_prompt": r.negative_prompt,
            "seed": r.seed, "steps": r.steps, "guidance": r.guidance, "width": r.width,
            "height": r.height, "dtype": r.dtype, "device": r.device,
            "device_name": r.device_name, "scheduler": r.scheduler,
            "load_s": t.load_s if t else None, "first_call_s": t.first_call_s if t else None,
            "median_s": t.median_s if t else None, "min_s": t.min_s if t else None,
            "max_s": t.max_s if t else None,
            "text_s": stages.text if t else None, "denoise_s": stages.denoise if t else None,
            "decode_s": stages.decode if t else None, "safety_s": stages.safety if t else None,
            "other_s": stages.other if t else None,
            "its_per_s": t.its_per_s if t else None,
            "peak_memory_bytes": t.peak_memory_bytes if t else None,
            "clip_score": getattr(s, "value", None), "score_backend": getattr(s, "backend", None),
            "score_checkpoint": getattr(s, "checkpoint", None),
            "score_scale": getattr(s, "scale", None),
            "score_standin": getattr(s, "standin", None),
            "psnr": fid.get("psnr"), "ssim": fid.get("ssim"),
            "flags": "; ".join(r.flags), "image_paths": None,
        })
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


def score_groups(df: pd.DataFrame) -> list[str]:
    """Distinct ``"checkpoint (scale)"`` labels of the scored rows of ``df``."""
    scored = df[pd.to_numeric(df["clip_score"], errors="coerce").notna()]
    return _score_label(scored).value_counts().index.tolist()


def model_summary(df: pd.DataFrame, *, per_mp: bool = False) -> pd.DataFrame:
    """One row per model over the successful rows of ``df``.

    Columns: model, model_name, teacher, n (results), latency (median of the per-result
    steady-state medians), latency_lo / latency_hi (the spread: min and max over results of
    their median, or over repeats when there is one result), score (mean CLIP score),
    score_sd (standard deviation over results; 0 for one), score_n, the stage medians, standin,
    toy, and prompts / seeds (how many distinct ones the numbers span).
    """
    ok = df[df["success"].astype(bool)].copy()
    if per_mp:
        ok = per_megapixel(ok)
    rows = []
    for model, g in ok.groupby("model", sort=False):
        med = pd.to_numeric(g["median_s"], errors="coerce").dropna()
        if med.empty:
            continue
        if len(med) > 1:
            lo, hi = med.min(), med.max()
        else:
            lo = pd.to_numeric(g["min_s"], errors="coerce").min()
            hi = pd.to_numeric(g["max_s"], errors="coerce").max()
        scores = pd.to_numeric(g["clip_score"], errors="coerce").dropna()
        row = {
            "model": model, "model_name": g["model_name"].iloc[0],
            "teacher": _none_if_nan(g["teacher"].iloc[0]), "n": len(g),
            "latency": float(med.median()),
            "latency_lo": float(lo) if pd.notna(lo) else float(med.median()),
            "latency_hi": float(hi) if pd.notna(hi) else float(med.median()),
            "score": float(scores.mean()) if len(scores) else math.nan,
            "score_sd": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "score_n": len(scores),
            "standin": bool(g["standin"].astype(bool).any()), "toy": bool(g["toy"].astype(bool).any()),
            "prompts": g["prompt"].nunique(), "seeds": g["seed"].nunique(),
        }
        for col in STAGES:
            vals = pd.to_numeric(g[col], errors="coerce").dropna() if col in g else pd.Series([], dtype=float)
            row[col] = float(vals.median()) if len(vals) else 0.0
        rows.append(row)
    cols = ["model", "model_name", "teacher", "n", "latency", "latency_lo", "latency_hi", "score",
            "score_sd", "score_n", "standin", "toy", "prompts", "seeds", *STAGES]
    return pd.DataFrame(rows, columns=cols)


def pareto_frontier(summary: pd.DataFrame) -> list[str]:
    """Models no other model beats on both axes: faster *and* at least as good a score.

    Lower latency is better, higher CLIP score is better (``metrics.HIGHER_IS_BETTER``).
    Returned fastest first; rows without a score are never on the frontier.
    """
    pts = summary.dropna(subset=["latency", "score"]).sort_values(["latency", "score"],
                                                                  ascending=[True, False])
    frontier, best = [], -math.inf
    for _, row in pts.iterrows():
        if row["score"] > best:
            frontier.append(row["model"])
            best = row["score"]
    return frontier


def model_colours(df: pd.DataFrame) -> dict[str, str]:
    """A colour per model: each teacher/student pair shares a hue, the teacher is darker."""
    teacher_of = dict(zip(df["model"], df["teacher"]))
    roots: list[str] = []
    colours: dict[str, str] = {}
    for model in dict.fromkeys(df["model"]):
        root = _none_if_nan(teacher_of.get(model)) or model
        if root not in roots:
            roots.append(root)
        dark, light = _PAIR_COLOURS[roots.index(root) % len(_PAIR_COLOURS)]
        colours[model] = dark if root == model else light
    return colours


# --- published claims ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A published student-vs-teacher figure, as a ratio (student / teacher)."""

    student: str  # registry key of the student
    teacher: str  # registry key of its teacher
    latency_ratio: float | None  # student latency / teacher latency (None: not claimed)
    score_ratio: float | None  # student CLIP score / teacher CLIP score (None: not claimed)
    label: str  # what is claimed, e.g. "BK-SDM-Small, its model card: 36% less latency"
    source: str  # where it is published, in full
    document: str = ""  # the source's short name, drawn beside the mark


_SECONDS = re.compile(r"^\s*([\d.]+)\s*s\s*$")
_NUMBER = re.compile(r"^\s*([\d.]+)\s*$")
_LESS_LATENCY = re.compile(r"(\d+(?:\.\d+)?)\s*%[^.;]*?(?:less|reduced|lower)\s+latency", re.I)
_SPEEDUP = re.compile(r"(\d+(?:\.\d+)?)\s*%\s*speed-?up", re.I)


def published_claims(specs: Iterable) -> list[Claim]:
    """Student/teacher ratios read from the ``facts`` of registry specs.

    Read: a latency fact in seconds ("3.23 s") or a "CLIP score" published for both members of
    a pair under the same fact name (their ratio); "N% ... less latency" (ratio 1 - N/100) and
    "N% speedup" (ratio 1 / (1 + N/100)) in a student's facts. Claims from one document (same
    source up to its first parenthesis) are merged into one point.
    """
    specs = {s.key: s for s in specs}
    claims: dict[tuple[str, str], dict] = {}

    def add(student, teacher, source, *, latency=None, score=None, text=""):
        doc = source.split(" (")[0].strip()
        c = claims.setdefault((student, doc), {"teacher": teacher, "latency": None,
                                               "score": None, "texts": [], "source": source})
        c["latency"] = latency if latency is not None else c["latency"]
        c["score"] = score if score is not None else c["score"]
        c["texts"].append(text)

    for spec in specs.values():
        teacher = specs.get(spec.teacher or "")
        if teacher is None:
            continue
        tfacts = {f.name: f for f in teacher.facts}
        for fact in spec.facts:
            tf = tfacts.get(fact.name)
            if tf is not None and fact.name.lower().startswith("latency"):
                a, b = _SECONDS.match(fact.value), _SECONDS.match(tf.value)
                if a and b:
                    add(spec.key, teacher.key, fact.source,
                        latency=float(a.group(1)) / float(b.group(1)),
                        text=f"{fact.value} vs {tf.value} ({fact.name.split(',', 1)[-1].strip()})")
            elif tf is not None and fact.name.lower() == "clip score":
                a, b = _NUMBER.match(fact.value), _NUMBER.match(tf.value)
                if a and b:
                    add(spec.key, teacher.key, fact.source,
                        score=float(a.group(1)) / float(b.group(1)),
                        text=f"CLIP {fact.value} vs {tf.value}")
            if m := _LESS_LATENCY.search(fact.value):
                add(spec.key, teacher.key, fact.source, latency=1 - float(m.group(1)) / 100,
                    text=f"{m.group(1)}% less latency")
            elif m := _SPEEDUP.search(fact.value):
                add(spec.key, teacher.key, fact.source, latency=1 / (1 + float(m.group(1)) / 100),
                    text=f"{m.group(1)}% speedup")
    return [Claim(student, c["teacher"], c["latency"], c["score"],
                  f"{specs[student].name}, {doc}: " + "; ".join(t for t in c["texts"] if t),
                  c["source"], f"{specs[student].name} · {doc}")
            for (student, doc), c in claims.items()]


def facts_table(specs: Iterable) -> pd.DataFrame:
    """Every published fact of ``specs`` as rows: model, fact, value, source."""
    rows = [{"model": s.name, "fact": f.name, "value": f.value, "source": f.source}
            for s in specs for f in s.facts]
    return pd.DataFrame(rows, columns=["model", "fact", "value", "source"])


# --- figures ---------------------------------------------------------------------------------------

def latency_vs_score(df: pd.DataFrame, *, per_mp: bool = False):
    """Steady-state latency (x) against CLIP score (y), one point per model, Pareto frontier marked.

    Error bars: latency spread (min-max over results, or over repeats for one result) and score
    standard deviation over results (prompts x seeds). Raises :class:`ChartError` when the
    table mixes score checkpoints or scales.
    """
    import plotly.graph_objects as go

    groups = score_groups(df)
    if len(groups) > 1:
        raise ChartError(f"CLIP scores from {len(groups)} checkpoints/scales are not comparable: "
                         f"{groups}; choose one")
    summary = model_summary(df, per_mp=per_mp)
    colours = model_colours(df)
    frontier = pareto_frontier(summary)
    unit = "s per megapixel" if per_mp else "s per call"
    fig = go.Figure()
    scored = summary.dropna(subset=["score"])
    for _, row in scored.iterrows():
        is_student = _none_if_nan(row["teacher"]) is not None
        tags = [t for t, on in (("stand-in", row["standin"]), ("toy", row["toy"])) if on]
        name = row["model_name"] + (f" [{', '.join(tags)}]" if tags else "")
        fig.add_trace(go.Scatter(
            x=[row["latency"]], y=[row["score"]], mode="markers", name=name,
            marker=dict(size=15, color=colours.get(row["model"]),
                        symbol="diamond" if is_student else "circle",
                        line=dict(width=2, color="white")),
            error_x=dict(type="data", symmetric=False,
                         array=[row["latency_hi"] - row["latency"]],
                         arrayminus=[row["latency"] - row["latency_lo"]], thickness=1.5),
            error_y=dict(type="data", array=[row["score_sd"]], thickness=1.5),
            hovertemplate=(f"<b>{name}</b><br>latency %{{x:.3f}} {unit} "
                           f"(range {row['latency_lo']:.3f}–{row['latency_hi']:.3f})<br>"
                           f"CLIP %{{y:.3f}} ± {row['score_sd']:.3f}<br>"
                           f"{row['n']} results, {row['prompts']} prompts, {row['seeds']} seeds"
                           "<extra></extra>"),
        ))
    if len(frontier) > 0:
        pts = scored.set_index("model").loc[frontier]
        fig.add_trace(go.Scatter(
            x=pts["latency"], y=pts["score"], mode="lines+markers", name="Pareto frontier",
            line=dict(color="#333333", dash="dash", width=1.5),
            marker=dict(size=24, symbol="circle-open", color="#333333", line=dict(width=1.5)),
            hoverinfo="skip"))
    missing = summary[summary["score"].isna()]["model_name"].tolist()
    if missing:
        fig.add_annotation(text="no CLIP score, not plotted: " + ", ".join(missing),
                           xref="paper", yref="paper", x=0, y=-0.2, showarrow=False,
                           font=dict(size=11, color="#8a1c1c"), xanchor="left")
    scorer = groups[0] if groups else "no scores"
    fig.update_layout(
        title=dict(text=f"Latency vs CLIP score ({'per megapixel' if per_mp else 'steady state'})"
                        f"<br><sup>CLIP: {scorer}</sup>"),
        xaxis_title=f"latency, steady-state median ({unit}) — lower is better",
        yaxis_title="CLIP score — higher is better",
        legend=dict(orientation="h", yanchor="top", y=-0.18 if not missing else -0.28, x=0),
        margin=dict(t=80, b=90), height=480)
    if len(scored):
        hi = float(scored["latency_hi"].max())
        fig.update_xaxes(range=[0, hi * 1.2 if hi > 0 else 1])
        lo_y = float((scored["score"] - scored["score_sd"]).min())
        hi_y = float((scored["score"] + scored["score_sd"]).max())
        pad = max((hi_y - lo_y) * 0.15, abs(hi_y) * 0.05, 0.5)
        fig.update_yaxes(range=[lo_y - pad, hi_y + pad])
    return fig


def stage_breakdown(df: pd.DataFrame, *, per_mp: bool = False):
    """Stacked bars: median seconds of each latency stage per model (they add up to the call)."""
    import plotly.graph_objects as go

    summary = model_summary(df, per_mp=per_mp)
    unit = "s per megapixel" if per_mp else "s per call"
    fig = go.Figure()
    for col, label in STAGES.items():
        if col == "safety_s" and not (summary[col] > 0).any():
            continue  # no model ran a safety checker: leave it out of the legend
        fig.add_trace(go.Bar(
            x=summary["model_name"], y=summary[col], name=label,
            marker_color=_STAGE_COLOURS[col],
            hovertemplate=f"%{{x}}<br>{label}: %{{y:.3f}} {unit}<extra></extra>"))
    totals = summary[list(STAGES)].sum(axis=1)
    fig.add_trace(go.Scatter(x=summary["model_name"], y=totals, mode="text",
                             text=[f"{t:.2f}" for t in totals], textposition="top center",
                             showlegend=False, hoverinfo="skip"))
    fig.update_layout(barmode="stack", title=dict(text="Where the time goes (median per stage)"),
                      yaxis_title=f"seconds ({unit})", xaxis_title=None, height=420,
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0,
                                  traceorder="normal"),
                      margin=dict(t=60, b=80))
    return fig


def steps_sweep(df: pd.DataFrame, *, per_mp: bool = False):
    """Latency and CLIP score against the number of steps, one line per model.

    Returns None when the table holds fewer than two step counts (nothing to sweep).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ok = df[df["success"].astype(bool)]
    if ok["steps"].nunique() < 2:
        return None
    if len(score_groups(ok)) > 1:
        raise ChartError(f"CLIP scores from several checkpoints are not comparable: "
                         f"{score_groups(ok)}; choose one")
    if per_mp:
        ok = per_megapixel(ok)
    colours = model_colours(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency", "CLIP score"))
    for model, g in ok.groupby("model", sort=False):
        by = g.groupby("steps").agg(latency=("median_s", "median"), score=("clip_score", "mean"))
        name = g["model_name"].iloc[0]
        style = dict(color=colours.get(model))
        fig.add_trace(go.Scatter(x=by.index, y=by["latency"], mode="lines+markers", name=name,
                                 line=style, legendgroup=model), row=1, col=1)
        fig.add_trace(go.Scatter(x=by.index, y=by["score"], mode="lines+markers", name=name,
                                 line=style, legendgroup=model, showlegend=False), row=1, col=2)
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
    published elsewhere (other GPUs, scorers, datasets) can share axes. A claim with both ratios
    is a grey open diamond; one with a single ratio is a grey line named in the legend. Raises :class:`ChartError`
    when scores from several checkpoints are mixed.
    """
    import plotly.graph_objects as go

    groups = score_groups(df)
    if len(groups) > 1:
        raise ChartError(f"CLIP scores from {len(groups)} checkpoints/scales are not comparable: "
                         f"{groups}; choose one")
    summary = model_summary(df).set_index("model")
    colours = model_colours(df)
    fig = go.Figure()
    fig.add_hline(y=1, line=dict(color="#bbbbbb", width=1))
    fig.add_vline(x=1, line=dict(color="#bbbbbb", width=1))
    fig.add_trace(go.Scatter(x=[1], y=[1], mode="markers+text", text=["teacher"],
                             textposition="bottom right", name="teacher (reference)",
                             marker=dict(size=10, color="#333333"), hoverinfo="skip"))
    claims = list(claims)
    xs = [1.0] + [c.latency_ratio for c in claims if c.latency_ratio is not None]
    measured = 0
    for model, row in summary.iterrows():
        teacher = _none_if_nan(row["teacher"])
        if teacher is None or teacher not in summary.index:
            continue
        t = summary.loc[teacher]
        lat = row["latency"] / t["latency"] if t["latency"] else math.nan
        score = row["score"] / t["score"] if t["score"] and not math.isnan(t["score"]) else math.nan
        measured += 1
        xs.append(lat)
        fig.add_trace(go.Scatter(
            x=[lat], y=[score if not math.isnan(score) else 1.0], mode="markers+text",
            name=f"{row['model_name']} / {t['model_name']} (measured here)",
            text=[row["model_name"]], textposition="top center",
            marker=dict(size=16, color=colours.get(model), symbol="diamond",
                        line=dict(width=2, color="white")),
            hovertemplate=(f"<b>{row['model_name']}</b> vs {t['model_name']}, measured here<br>"
                           "latency ×%{x:.2f}<br>"
                           + ("CLIP ×%{y:.3f}" if not math.isnan(score) else "no CLIP score")
                           + "<extra></extra>")))
    x_max = max(x for x in xs if x is not None and math.isfinite(x)) * 1.2
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
    if not measured:
        fig.add_annotation(text="no teacher/student pair measured in this selection",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=13, color="#8a1c1c"))
    fig.update_layout(
        title=dict(text="Student relative to its teacher<br><sup>measured here (filled) and "
                        "published elsewhere (grey): ratios share one scale</sup>"),
        xaxis_title="latency ratio, student / teacher — lower is faster",
        yaxis_title="CLIP score ratio, student / teacher",
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, font=dict(size=11)),
        margin=dict(t=80, b=120), height=520)
    fig.update_xaxes(range=[0, x_max])
    return fig


def _none_if_nan(value):
    if value is None:
        return None
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


__all__ = ["COLUMNS", "STAGES", "ChartError", "Claim", "facts_table", "frame_from_results",
           "latency_vs_score", "model_colours", "model_summary", "pareto_frontier",
           "per_megapixel", "published_claims", "score_groups", "select", "setting_labels",
           "stage_breakdown", "steps_sweep", "student_vs_teacher"]
