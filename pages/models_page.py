"""Models: the registry, parameters per component, and how each student differs from its teacher."""

import streamlit as st

from dsdcompare import charts
from dsdcompare.registry import get_model, list_models
from ui import resources, tables

# 1. The registry
specs = [get_model(k) for k in list_models()]
st.dataframe(tables.registry_table(specs), hide_index=True, width="stretch",
             column_config={"notes": st.column_config.TextColumn("notes", width="large")})

# 2. Parameters per component (counted on the meta device: fast, no weights)
st.subheader("Parameters per component")
params = resources.params_table(tuple(
    (s.key, "arch" if s.arch else "local") for s in specs
    if s.arch or tables.local_weights_present(s)))
if params is None:
    st.caption("Parameter counts come from `dsdcompare.profiling.count_params`, which is not "
               "available in this installation.")
else:
    st.dataframe(params, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(c, format="%.1f") for c in params.columns
        if c.endswith("(M)")})
    st.caption("Counted from each architecture on PyTorch's meta device: no weights are loaded. "
               "The VAE and CLIP ViT-L text encoder are shared by all four seed models.")

# 3. Each teacher/student pair: what distillation removed
st.subheader("Teacher and student: what differs")
for student in [s for s in specs if s.teacher]:
    teacher = get_model(student.teacher)
    with st.container(border=True):
        st.markdown(f"**{teacher.name}** → **{student.name}**")
        if student.notes:
            st.caption(student.notes)
        a, b = tables.unet_config(teacher), tables.unet_config(student)
        if a is None or b is None:
            st.caption("UNet configs not available here (toy weights not built yet).")
            continue
        st.dataframe(tables.config_differences(a, b, tables.unet_defaults()), hide_index=True,
                     width="stretch",
                     key=f"models_diff_{student.key}")

# 4. Published figures
st.subheader("Published figures")
st.dataframe(charts.facts_table(specs), hide_index=True, width="stretch")
