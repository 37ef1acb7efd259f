"""Drawing engine Results: live progress, one column per model, the compact table, downloads.

The numbers come from engine Results (or Results rebuilt from the store with
``Store.load_result``), so a live comparison (Compare) and a stored one (History) look the same.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st
from PIL import Image

from dsdcompare import charts
from dsdcompare.registry import get_model

from .common import png_bytes, slug

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
                st.write(f":material/check_circle: **{result.model_name}** — "
                         f"{t.median_s:.3f} s steady state, {t.its_per_s:.1f} it/s")
            else:
                st.write(f":material/error: **{result.model_name}** failed — "
                         f"{(result.error or '').splitlines()[0][:160]}")

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
    """Latency (steady-state median) and CLIP score, with what they are."""
    t, s = result.timing, result.score
    parts = [f"{t.median_s:.3f} s steady-state median" if t else "no timing"]
    value = getattr(s, "value", None) if s is not None else None
    if value is not None:
        scale = getattr(s, "scale", "")
        parts.append(f"CLIP {value:.2f}" if "100" in scale else f"CLIP {value:.4f} (raw cos)")
    elif s is not None:
        parts.append("no CLIP score")
    return " · ".join(parts)


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
    st.markdown(f"**{r.model_name}**")
    if r.teacher:
        try:
            teacher = get_model(r.teacher).name
        except ValueError:
            teacher = r.teacher
        st.markdown(f":blue-badge[student of {teacher.split(' (')[0]}]")
    else:
        st.markdown(":gray-badge[teacher / base]")  # one line: the images of a row stay aligned
    if not r.success:
        st.error(r.error or "failed", icon=":material/error:")
        if getattr(r, "error_detail", None):
            with st.expander("Traceback"):
                st.code(r.error_detail, language=None)
        return
    if not r.images:
        st.warning("No image was stored for this result.")
        return
    image = r.images[0]
    if len(r.images) == 1:
        st.image(display_image(image), caption=caption(r), width="stretch")
    else:  # several images per prompt: all of them, the numbers once
        st.image([display_image(i) for i in r.images], width=DISPLAY_MIN_PX // 2)
        st.caption(caption(r))
    if r.standin and mixed:
        st.caption(":orange[stand-in weights: this image is noise]")
    fid = r.fidelity or {}
    if fid.get("psnr") is not None:
        st.caption(f"vs teacher: PSNR {fid['psnr']:.1f} dB · SSIM {fid['ssim']:.3f}")
    for flag in r.flags:
        st.caption(f":material/flag: {flag}")
    st.download_button(
        "PNG", data=png_bytes(image), mime="image/png", icon=":material/download:",
        file_name=f"{r.model}-seed{seed}-{slug(prompt)}.png", on_click="ignore",
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


def results_table(results) -> None:
    """The compact table under the images (timings, stages, it/s, memory, score, flags)."""
    df = compact_results(charts.frame_from_results(results))
    st.dataframe(df, hide_index=True, width="stretch", column_config=_column_config(df))


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
    })
    return {k: v for k, v in numbers.items() if k in df.columns}


def downloads(results, *, key_prefix: str, prompt: str, seed: int) -> None:
    """Contact sheet, results table (CSV) and full records (JSON) downloads."""
    from dsdcompare.sheet import contact_sheet

    stem = f"dsdcompare-seed{seed}-{slug(prompt)}"
    c1, c2, c3, _ = st.columns([1, 1, 1, 1.5])
    c1.download_button("Contact sheet (PNG)", data=png_bytes(contact_sheet(results)),
                       file_name=f"{stem}-sheet.png", mime="image/png", on_click="ignore",
                       key=f"{key_prefix}_sheet", icon=":material/grid_view:", width="stretch")
    c2.download_button("Results table (CSV)",
                       data=charts.frame_from_results(results).to_csv(index=False),
                       file_name=f"{stem}.csv", mime="text/csv", on_click="ignore",
                       key=f"{key_prefix}_csv", icon=":material/table:", width="stretch")
    c3.download_button("Full records (JSON)",
                       data=json.dumps([r.to_dict() for r in results], indent=1, default=str),
                       file_name=f"{stem}.json", mime="application/json", on_click="ignore",
                       key=f"{key_prefix}_json", icon=":material/data_object:", width="stretch")
