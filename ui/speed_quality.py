"""The Speed vs quality page's widgets (the page, ``pages/speed_quality_page.py``, draws the charts).

Widget keys start with ``sq_``.
"""

from __future__ import annotations

import streamlit as st


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
