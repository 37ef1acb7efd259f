"""The Models page: the registry, parameters per component, and what each student drops.

Widget keys start with ``models_``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import streamlit as st

from dsdcompare import charts
from dsdcompare.archs import unet_differences
from dsdcompare.registry import get_model

from . import resources


def registry_table(specs: Iterable) -> pd.DataFrame:
    """The registry: one row per model (repo or folder, pipeline, native size, teacher...)."""
    return pd.DataFrame([{
        "key": s.key, "name": s.name, "repo / folder": s.repo_id or s.local_dir,
        "pipeline": s.pipeline, "native size": f"{s.native_size}²",
        "teacher": s.teacher or "—", "role": "student" if s.teacher else "teacher/base",
        "steps": s.steps, "guidance": s.guidance, "fp16 variant": s.fp16_variant,
        "safety checker": s.safety_checker, "toy": s.toy, "notes": s.notes,
    } for s in specs])


def local_weights_present(spec) -> bool:
    """``spec.local_dir`` holds a pipeline (``model_index.json``)."""
    return bool(spec.local_dir) and (Path(spec.local_dir) / "model_index.json").is_file()


def registry_ui(specs: list) -> None:
    """The registry table."""
    st.dataframe(registry_table(specs), hide_index=True, width="stretch",
                 column_config={"notes": st.column_config.TextColumn("notes", width="large")})


def params_ui(specs: list) -> None:
    """Parameters per component, counted on the meta device (fast, no weights)."""
    st.subheader("Parameters per component")
    params = resources.params_table(tuple(
        (s.key, "arch" if s.arch else "local") for s in specs
        if s.arch or local_weights_present(s)))
    st.dataframe(params, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(c, format="%.1f") for c in params.columns
        if c.endswith("(M)")})
    st.caption("Counted from each architecture on PyTorch's meta device: no weights are loaded. "
               "The VAE and CLIP ViT-L text encoder are shared by all four seed models.")


def differences_ui(specs: list) -> None:
    """Each teacher/student pair: the UNet settings distillation changed."""
    st.subheader("Teacher and student: what differs")
    for student in [s for s in specs if s.teacher]:
        teacher = get_model(student.teacher)
        with st.container(border=True):
            st.markdown(f"**{teacher.name}** → **{student.name}**")
            if student.notes:
                st.caption(student.notes)
            rows = unet_differences(teacher, student)
            if rows is None:
                st.caption("UNet configs not available here (toy weights not built yet).")
                continue
            st.dataframe(pd.DataFrame(rows, columns=["setting", "teacher", "student"]),
                         hide_index=True, width="stretch", key=f"models_diff_{student.key}")


def published_ui(specs: list) -> None:
    """The published figures of every model (measured elsewhere)."""
    st.subheader("Published figures")
    st.dataframe(charts.facts_table(specs), hide_index=True, width="stretch")
