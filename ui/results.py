"""Drawing engine Results: live progress, one column per model, the compact table, downloads.

The numbers come from engine Results (or Results rebuilt from the store with
``Store.load_result``), so a live comparison (Compare) and a stored one (History) look the same.
Each model's column is a small gallery (every image of the prompt with its own score); the
table sits beside the stage chart and carries the cost of each latency and the energy per
image. User text (model names, errors, flags) is shown as text (``ui.common.plain``).
"""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st
from PIL import Image

from dsdcompare import charts
from dsdcompare.registry import get_model

from . import cost
from .common import plain, png_bytes, slug

DISPLAY_MIN_PX = 256  # small images (toy 32 px, stand-ins 64 px) are enlarged crisply to this
MAX_COLUMNS = 4  # image columns per row
#: Compact results table: column of the flat results frame -> shown label.
COMPACT = {
    "model_name": "model", "load_s": "load s", "first_call_s": "first call s",
    "median_s": "steady s (median)", "min_s": "min s", "max_s": "max s", "text_s": "text s",
    "denoise_s": "denoise s", "decode_s": "decode s", "safety_s": "safety s", "other_s": "other s",
    "its_per_s": "it/s", "peak_memory_mb": "peak memory MB", "clip_score": "CLIP score",
    "psnr": "PSNR vs teacher dB", "ssim": "SSIM vs teacher", "flags": "flags", "error": "error",
}
#: Shown for a quantity this result could not measure (energy off NVIDIA GPUs).
NOT_MEASURED = "not measured"


class ProgressPanel:
    """Live progress of a comparison: an ``st.status`` with a bar per model and step.

    Call it with each :class:`dsdcompare.engine.Progress` event (the ``progress=`` callback of
    ``run_request``) and :meth:`finished` with each Result (its ``on_result=`` callback).
    """

    PHASES = {"load": "loading the pipeline", "warmup": "warm-up call", "repeat": "timed call",
              "score": "CLIP scoring", "done": "done", "failed": "failed"}

    def __init__(self, names: dict[str, str], *, warmup: int, repeats: int, steps: int):
        self.names = names
        self.warmup = warmup
        self.calls = max(1, warmup + repeats)
        self.steps = max(1, steps)
        self.started = time.perf_counter()
        self.status = st.status(f"Comparing {len(names)} models…", expanded=True)
        with self.status:
            self.bar = st.progress(0.0, text="starting")
            self.log = st.container()

    def __call__(self, ev) -> None:
        name = self.names.get(ev.model, ev.model)
        frac = 0.0
        if ev.phase in ("warmup", "repeat"):
            # PNDM runs one step more than asked: clamp, the bar never runs backwards
            done_calls = (0 if ev.phase == "warmup" else self.warmup) + max(ev.call - 1, 0)
            frac = min(1.0, (done_calls * self.steps + min(ev.step, self.steps))
                       / (self.calls * self.steps))
        elif ev.phase in ("score", "done", "failed"):
            frac = 1.0
        overall = min(1.0, (ev.index + frac) / max(1, ev.total_models))
        what = self.PHASES.get(ev.phase, ev.phase)
        if ev.phase in ("warmup", "repeat"):
            what += f" {ev.call}, step {min(ev.step, ev.total_steps)}/{ev.total_steps}"
        self.bar.progress(overall, text=f"{name} ({ev.index + 1}/{ev.total_models}): {what}")

    def finished(self, result) -> None:
        """One line per finished model."""
        with self.log:
            if result.success:
                t = result.timing
                st.markdown(f":material/check_circle: **{plain(result.model_name)}** — "
                            f"{t.median_s:.3f} s steady state, {t.its_per_s:.1f} it/s"
                            + (" (contended: a busy CPU, not the model's speed)"
                               if getattr(t, "contended", False) else ""))
            else:
                st.markdown(f":material/error: **{plain(result.model_name)}** failed — "
                            f"{plain((result.error or 'no error text').splitlines()[0][:160])}")

    def close(self, results) -> None:
        """Collapse the panel with a summary label."""
        ok = sum(r.success for r in results)
        took = time.perf_counter() - self.started
        state = "complete" if ok == len(results) else ("error" if ok == 0 else "complete")
        self.bar.progress(1.0, text="done")
        self.status.update(label=f"{ok} of {len(results)} models finished in {took:.1f} s",
                           state=state, expanded=False)

    def failed(self) -> None:
        """Mark the panel as not run (the request was refused before any model ran)."""
        self.status.update(label="Not run", state="error")


def display_image(image: Image.Image) -> Image.Image:
    """Small images enlarged by an integer factor, nearest neighbour (pixels stay pixels)."""
    factor = max(1, -(-DISPLAY_MIN_PX // max(image.width, 1)))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def caption(result) -> str:
    """Latency (steady-state median), its cost and the CLIP score, with what they are."""
    t, s = result.timing, result.score
    parts = [f"{t.median_s:.3f} s steady-state median" if t else "no timing"]
    if t and getattr(t, "contended", False):  # the machine's load, not the model's speed
        parts[0] = f"contended: {parts[0]} on a busy CPU, not the model's speed"
    if t:
        usd = cost.per_1000(t.median_s, t.images_per_call or 1)
        if usd == usd:  # not NaN
            parts.append(f"${usd:.3g} per 1k images")
    value = getattr(s, "value", None) if s is not None else None
    if value is not None:
        parts.append(_score_text(value, getattr(s, "scale", "")))
    elif s is not None:
        parts.append("no CLIP score")
    return " · ".join(parts)


def _score_text(value: float, scale: str) -> str:
    return f"CLIP {value:.2f}" if "100" in scale else f"CLIP {value:.4f} (raw cos)"


def image_captions(result) -> list[str]:
    """One caption per image: its number and its own score, or why it was not scored."""
    s = result.score
    per_image = list(getattr(s, "per_image", None) or []) if s is not None else []
    excluded = list(getattr(s, "excluded", None) or []) if s is not None else []
    out = []
    for i in range(len(result.images)):
        value = per_image[i] if i < len(per_image) else None
        why = excluded[i] if i < len(excluded) else None
        if value is not None:
            text = _score_text(value, getattr(s, "scale", ""))
        elif why:
            text = f"not scored: {why}"
        else:
            text = "no CLIP score"
        out.append(f"#{i + 1} · {text}")
    return out


def result_columns(results, *, key_prefix: str, prompt: str, seed: int,
                   standin_badges: bool | None = None) -> None:
    """One column per model (teacher beside its student): image, caption, PNG download, or error.

    ``standin_badges`` None: a "stand-in" badge per column only when stand-ins and real models
    are mixed (a live comparison's banner already says when all are); True: always (stored
    results, which the current banner does not describe).
    """
    mixed = standin_badges if standin_badges is not None else \
        len({bool(r.standin) for r in results}) > 1
    for start in range(0, len(results), MAX_COLUMNS):
        row = results[start:start + MAX_COLUMNS]
        cols = st.columns(MAX_COLUMNS if len(results) > MAX_COLUMNS else len(row), gap="medium")
        for col, r in zip(cols, row, strict=False):  # the last row may be short
            with col, st.container(border=True):
                _result_cell(r, key_prefix=key_prefix, prompt=prompt, seed=seed, mixed=mixed)


def _result_cell(r, *, key_prefix: str, prompt: str, seed: int, mixed: bool) -> None:
    st.markdown(f"**{plain(r.model_name)}**")
    if r.teacher:
        try:
            teacher = get_model(r.teacher).name
        except ValueError:
            teacher = r.teacher
        st.markdown(f":blue-badge[student of {plain(teacher.split(' (')[0])}]")
    else:
        st.markdown(":gray-badge[teacher / base]")  # one line: the images of a row stay aligned
    if not r.success:
        st.error(plain(r.error or "failed"), icon=":material/error:")
        if getattr(r, "error_detail", None) and not _public():  # it shows server paths
            with st.expander("Traceback"):
                st.code(r.error_detail, language=None)
        return
    if not r.images:
        st.warning("No image was stored for this result.")
        return
    image = r.images[0]
    if len(r.images) == 1:
        st.image(display_image(image), caption=caption(r), width="stretch")
    else:  # a small gallery: every image of the prompt with its own score, the numbers once
        st.image([display_image(i) for i in r.images], caption=image_captions(r),
                 width=DISPLAY_MIN_PX // 2)
        st.caption(caption(r))
    if r.standin and mixed:
        st.caption(":orange[stand-in weights: this image is noise]")
    fid = r.fidelity or {}
    if fid.get("psnr") is not None:
        ssim = fid.get("ssim")
        st.caption(f"vs teacher: PSNR {fid['psnr']:.1f} dB"
                   + (f" · SSIM {ssim:.3f}" if ssim is not None else ""))
    for flag in r.flags:
        st.caption(f":material/flag: {plain(flag)}")
    st.download_button(
        "PNG", data=png_bytes(image), mime="image/png", icon=":material/download:",
        file_name=f"{slug(r.model)}-seed{seed}-{slug(prompt)}.png", on_click="ignore",
        key=f"{key_prefix}_png_{r.model}", width="stretch")


def compact_results(df: pd.DataFrame) -> pd.DataFrame:
    """The Compare/History results table: timings, stages, it/s, memory, score, flags."""
    out = df.copy()
    out["peak_memory_mb"] = pd.to_numeric(out["peak_memory_bytes"], errors="coerce") / 2**20
    if not (pd.to_numeric(out["safety_s"], errors="coerce").fillna(0) > 0).any():
        out = out.drop(columns=["safety_s"])
    if out["error"].isna().all() or (out["error"].fillna("") == "").all():
        out = out.drop(columns=["error"])
    cols = [c for c in COMPACT if c in out]
    return out[cols].rename(columns=COMPACT).reset_index(drop=True)


def dashes(df: pd.DataFrame, formats: dict[str, str] | None = None) -> pd.DataFrame:
    """``df`` for display: in a column with missing values they show as "—" (Streamlit draws
    "None") and its numbers as text with ``formats[column]`` (default ``{:.4g}``); complete
    columns keep their numbers (sortable, formatted by the column config)."""
    out = df.copy()
    for col in out.columns:
        if out[col].isna().any():
            fmt = (formats or {}).get(col, "{:.4g}")
            out[col] = [("—" if pd.isna(v) else fmt.format(v) if isinstance(v, (int, float))
                         else str(v)) for v in out[col]]
    return out


def numeric_config(shown: pd.DataFrame, config: dict) -> dict:
    """``config`` less the number formats of columns :func:`dashes` turned into text."""
    def number(v) -> bool:
        return (v.get("type_config") or {}).get("type") == "number"

    return {k: v for k, v in config.items()
            if k not in shown or pd.api.types.is_numeric_dtype(shown[k]) or not number(v)}


#: Number formats of the compact table's columns, for :func:`dashes`.
COMPACT_FORMATS = {**{label: "{:.3f}" for col, label in COMPACT.items() if col.endswith("_s")},
                   "it/s": "{:.2f}", "peak memory MB": "{:.0f}", "CLIP score": "{:.3f}",
                   "PSNR vs teacher dB": "{:.1f}", "SSIM vs teacher": "{:.3f}",
                   "$ / 1k images": "${:.4g}"}


def energy_text(timing) -> str:
    """Joules per image, or "not measured" (a CPU, no NVML: the reason is in the tooltip)."""
    value = getattr(timing, "energy_j_per_image", None) if timing is not None else None
    return f"{value:.1f} J" if value is not None else NOT_MEASURED


def results_table(results, *, key_prefix: str = "results") -> None:
    """The compact table (timings, stages, it/s, memory, cost, energy, score, flags) beside the
    stage chart: where each model's steady-state call spends its time."""
    df = compact_results(charts.frame_from_results(results))
    at = df.columns.get_loc("steady s (median)") + 1 if "steady s (median)" in df else len(df.columns)
    df.insert(at, cost.COLUMN, [cost.per_1000(r.timing.median_s, r.timing.images_per_call or 1)
                                if r.timing else float("nan") for r in results])
    df.insert(at + 1, "energy / image", [energy_text(r.timing) for r in results])
    ok = [r for r in results if r.success and r.timing]
    left, right = st.columns([1.7, 1], gap="medium") if ok else (st.container(), None)
    shown = dashes(df, COMPACT_FORMATS)
    left.dataframe(shown, hide_index=True, width="stretch",
                   column_config=numeric_config(shown, _column_config(df)))
    if right is not None:
        fig = charts.stage_breakdown(charts.frame_from_results(ok))
        names = list(fig.data[0].x)  # short names under narrow bars: "(synthetic shapes)" off
        fig.update_xaxes(tickmode="array", tickvals=names, tickangle=0,
                         ticktext=[str(n).split(" (")[0] for n in names])
        fig.update_layout(height=380, title=dict(text="Where the time goes"),
                          legend=dict(font=dict(size=10)))
        right.plotly_chart(fig, key=f"{key_prefix}_stages", width="stretch")


def _column_config(df) -> dict:
    numbers = {c: st.column_config.NumberColumn(c, format="%.3f") for c in df.columns
               if c.endswith(" s") or c.endswith("(median)")}
    numbers.update({
        "it/s": st.column_config.NumberColumn("it/s", format="%.2f"),
        "peak memory MB": st.column_config.NumberColumn("peak memory MB", format="%.0f",
                                                        help="process RSS on a CPU"),
        "CLIP score": st.column_config.NumberColumn("CLIP score", format="%.3f"),
        "PSNR vs teacher dB": st.column_config.NumberColumn("PSNR vs teacher dB", format="%.1f"),
        "SSIM vs teacher": st.column_config.NumberColumn("SSIM vs teacher", format="%.3f"),
        cost.COLUMN: st.column_config.NumberColumn(
            cost.COLUMN, format="$%.4g", help="steady-state latency x the sidebar's $ per "
                                              "device-hour (busy time only)"),
        "energy / image": st.column_config.TextColumn(
            "energy / image", help="NVML energy of the timed calls per image (NVIDIA GPUs only; "
                                   "whole board)"),
    })
    return {k: v for k, v in numbers.items() if k in df.columns}


def downloads(results, *, key_prefix: str, prompt: str, seed: int) -> None:
    """Contact sheet, results table (CSV) and full records (JSON) downloads."""
    from dsdcompare.sheet import contact_sheet

    stem = f"dsdcompare-seed{seed}-{slug(prompt)}"
    c1, c2, c3, _ = st.columns([1, 1, 1, 1.5])
    c1.download_button("Contact sheet (PNG)", data=lambda: png_bytes(contact_sheet(results)),  # built when clicked
                       file_name=f"{stem}-sheet.png", mime="image/png", on_click="ignore",
                       key=f"{key_prefix}_sheet", icon=":material/grid_view:", width="stretch")
    c2.download_button("Results table (CSV)",
                       data=lambda: charts.frame_from_results(results).to_csv(index=False),
                       file_name=f"{stem}.csv", mime="text/csv", on_click="ignore",
                       key=f"{key_prefix}_csv", icon=":material/table:", width="stretch")
    c3.download_button("Full records (JSON)",
                       data=lambda: json.dumps([r.to_dict() for r in results], indent=1,
                                                default=str),
                       file_name=f"{stem}.json", mime="application/json", on_click="ignore",
                       key=f"{key_prefix}_json", icon=":material/data_object:", width="stretch")


def _public() -> bool:
    from dsdcompare.public import public_mode

    return public_mode()
