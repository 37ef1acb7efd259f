"""``*_ui`` functions: each draws widgets and returns plain values; no computation here.

Every widget has a page-unique ``key`` (``sb_`` sidebar, ``compare_``, ``sq_``, ``history_``,
``models_``); initial values come from session state (:mod:`ui.state`), never from ``value=``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dsdcompare.registry import get_model

from . import formstate, state
from .settings import MODES, SCORER_CHOICES, SIZES, Detected, FormDefaults, Settings

DTYPES = ("auto", "fp32", "fp16", "bf16")


def sidebar_ui(detected: Detected, host: dict, s: Settings, store_info: str) -> None:
    """The frame's sidebar: weights, device, dtype, scorer, results store (values in session)."""
    with st.sidebar:
        st.markdown("### Settings")
        st.selectbox(
            "Weights", ["auto", *MODES], key="sb_mode",
            format_func=lambda k: (f"Auto → {MODES[detected.mode].label.split(' (')[0]}"
                                   if k == "auto"
                                   else MODES[k].label),
            help="Where the models' weights come from. **Toy pair**: a miniature teacher and "
                 "student trained by dsdcompare on synthetic shapes. **Tiny stand-ins**: the "
                 "four seed models shrunk, random weights (noise). **Real weights**: the hub "
                 "repos (cached, or downloaded on first use). **Full size, random weights**: "
                 "real latency and memory, noise images. Auto picks real weights only when they "
                 "are cached, or a GPU can download them.")
        st.caption(f"{'Auto' if st.session_state.sb_mode == 'auto' else 'Chosen'}: "
                   f"**{s.mode.key}** — {s.mode_reason}.")
        c1, c2 = st.columns(2)
        c1.selectbox("Device", host["devices"], key="sb_device",
                     help=f"auto = {host['auto_device']} on this host")
        c2.selectbox("Precision", DTYPES, key="sb_dtype",
                     help="auto = fp32 on a CPU, fp16 on a GPU")
        st.selectbox("CLIP scorer", list(SCORER_CHOICES), key="sb_scorer",
                     format_func=SCORER_CHOICES.get)
        budget = host["budget_bytes"]
        st.caption("Pipelines kept loaded: " + (
            "one at a time (small host)" if budget == 0 else f"up to {budget / 2**30:.1f} GB")
            + f" of {host['memory_bytes'] / 2**30:.0f} GB memory.")
        st.markdown("### Results store")
        st.text_input("Store (SQLite file, folder or bundle .zip)", key="sb_store",
                      help="Where comparisons are saved and what the History and Speed vs "
                           "quality pages read. A bundle .zip opens read-only.")
        st.toggle("Save each comparison", key="sb_save", disabled=s.store_readonly,
                  help="Store every result (timings, scores, PNGs) as it finishes.")
        st.caption(store_info)


def compare_form_ui(choices: list[str], defaults: FormDefaults) -> bool:
    """The Compare form; True when Generate was pressed (values are in session state)."""
    with st.form("compare_form", border=True):
        st.text_area("Prompt", key="compare_prompt", height=80,
                     max_chars=formstate.MAX_PROMPT_CHARS,
                     placeholder="e.g. a red circle on a blue background")
        st.text_input("Negative prompt", key="compare_negative",
                      max_chars=formstate.MAX_PROMPT_CHARS,
                      help="What to steer away from. SSD-1B's card recommends one.")
        c1, c2, c3, c4 = st.columns([1.3, 1, 1, 1.6])
        lo, hi = formstate.LIMITS["seed"]
        c1.number_input("Seed", min_value=lo, max_value=hi, step=1, key="compare_seed",
                        help="The same seed gives every model the same starting noise.")
        lo, hi = formstate.LIMITS["steps"]
        c2.number_input("Steps", min_value=lo, max_value=hi, step=1, key="compare_steps")
        lo, hi = formstate.LIMITS["guidance"]
        c3.number_input("Guidance", min_value=lo, max_value=hi, step=0.5, format="%.1f",
                        key="compare_guidance")
        # Streamlit shows a None value as "no selection": its placeholder names what None means
        c4.selectbox("Size", SIZES, key="compare_size", format_func=formstate.size_label,
                     placeholder=formstate.size_label(None),
                     help="Native: each model at the resolution it was trained for.")
        st.multiselect("Models", choices, key="compare_models",
                       format_func=lambda k: get_model(k).name,
                       help="Teachers are shown beside their students.")
        with st.expander("Timing protocol"):
            t1, t2 = st.columns(2)
            lo, hi = formstate.LIMITS["warmup"]
            t1.number_input("Warm-up calls (not timed)", min_value=lo, max_value=hi, step=1,
                            key="compare_warmup")
            lo, hi = formstate.LIMITS["repeats"]
            t2.number_input("Timed repeats", min_value=lo, max_value=hi, step=1,
                            key="compare_repeats")
        b1, b2, _ = st.columns([1, 1, 3])
        with b1:
            pressed = st.form_submit_button("Generate", type="primary", key="compare_generate",
                                            width="stretch")
        with b2:
            st.form_submit_button("Random seed", key="compare_random", icon=":material/casino:",
                                  on_click=state.randomise_seed, width="stretch")
    st.caption(defaults.note)
    return bool(pressed)


def chart_filters_ui(settings: list[str], groups: list[str], steps: list[int]) -> dict:
    """Which stored results the charts use (options most common first); returns plain values."""
    c1, c2, c3, c4 = st.columns([2.2, 2, 1, 1.1])
    setting = c1.selectbox("Weights · device · precision", settings, key="sq_setting",
                           help="Latencies are comparable only on the same hardware and settings.")
    group = c2.selectbox("CLIP checkpoint (scale)", groups or ["(no scores)"], key="sq_scorer",
                         help="Scores from different checkpoints or scales are not comparable.")
    step = c3.selectbox("Steps", [*steps, "all"], key="sq_steps",
                        help="'all' pools step counts (see the steps sweep below).")
    per_mp = c4.toggle("Per megapixel", key="sq_per_mp",
                       help="Divide latency by image area: compares 512² and 1024² models fairly.")
    return {"setting": setting, "group": None if groups == [] else group,
            "steps": None if step == "all" else int(step), "per_mp": bool(per_mp)}


def history_filters_ui(models: list[str]) -> dict:
    """History filters: prompt text, model, date range; returns plain values."""
    c1, c2, c3 = st.columns([2, 1.5, 1.5])
    text = c1.text_input("Prompt contains", key="history_text")
    model = c2.selectbox("Model", ["any", *models], key="history_model",
                         format_func=lambda k: "any" if k == "any" else k)
    dates = c3.date_input("Date range (UTC)", value=(), key="history_dates",
                          max_value=dt.date.today() + dt.timedelta(days=1))
    since = dates[0] if len(dates) > 0 else None
    until = dates[1] if len(dates) > 1 else None
    return {"text": text.strip() or None, "model": None if model == "any" else model,
            "since": since, "until": until}


def side_by_side_picker_ui(pairs: list[tuple[str, int]]) -> tuple[str, int] | None:
    """Choose a stored prompt + seed to open side by side."""
    if not pairs:
        return None
    choice = st.selectbox("Open side by side (prompt · seed)", range(len(pairs)),
                          key="history_pair",
                          format_func=lambda i: f"“{pairs[i][0][:70]}” · seed {pairs[i][1]}")
    return pairs[choice]


def bundle_upload_ui(on_upload) -> None:
    """Upload a results bundle; ``on_upload`` (a callback) opens it as the active store."""
    st.file_uploader("Open a results bundle (.zip)", type=["zip"], key="history_bundle",
                     on_change=on_upload,
                     help="A bundle exported here or by `python -m dsdcompare store export`: "
                          "opened read-only, as on the Community Cloud demo.")
