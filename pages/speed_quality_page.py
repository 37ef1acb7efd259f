"""Speed vs quality: charts over the stored results."""

import streamlit as st

from dsdcompare import charts
from dsdcompare.registry import get_model, list_models
from ui import resources, sidebar, speed_quality

# 1. The stored results (cached; a new write to the store refreshes them)
settings = sidebar.settings()
store, why = resources.cached_store(settings.store_path, settings.store_readonly)
if store is None:
    st.info(f"{why} Run a comparison on the Compare page, or open a bundle on the History page.",
            icon=":material/database:")
    st.stop()
df = resources.stored_results(settings.store_path, settings.store_readonly,
                              resources.store_stamp(settings.store_path))
df = df[df["success"]]
if df.empty:
    st.info("No successful results stored yet: run a comparison on the Compare page.",
            icon=":material/database:")
    st.stop()

# 2. Which results: one setting, one scorer, one step count (latencies compare only like this)
labels = charts.setting_labels(df)
choice = speed_quality.chart_filters_ui(
    labels.value_counts().index.tolist(), charts.score_groups(df),
    df["steps"].value_counts().index.astype(int).tolist())
chosen = charts.select(df, setting=choice["setting"], score_group=choice["group"],
                       steps=choice["steps"])
if chosen.empty:
    st.info("No stored results match these choices.")
    st.stop()
st.caption(f"{len(chosen)} results · {chosen['prompt'].nunique()} prompts · "
           f"{chosen['seed'].nunique()} seeds · {chosen['model'].nunique()} models. "
           "Error bars: latency range and CLIP score spread over prompts and seeds.")
if chosen["standin"].any():
    st.warning("These results come from stand-in models (random weights): the numbers test the "
               "plumbing, not the models.", icon=":material/warning:")

# 3. The figures (cached per selection)
try:
    figs = resources.figures(chosen, choice["per_mp"])
except charts.ChartError as err:
    st.error(str(err))
    st.stop()
left, right = st.columns(2, gap="large")
left.plotly_chart(figs["latency_vs_score"], key="sq_scatter", width="stretch")
right.plotly_chart(figs["student_vs_teacher"], key="sq_ratio", width="stretch")
st.plotly_chart(figs["stages"], key="sq_stages", width="stretch")
if figs["sweep"] is not None:
    st.plotly_chart(figs["sweep"], key="sq_sweep", width="stretch")

# 4. The numbers behind them, and the published figures
with st.expander("Per-model summary (the numbers behind the charts, as `bench --report` gives them)"):
    summary = charts.model_summary(chosen, per_mp=choice["per_mp"])
    st.dataframe(summary.drop(columns=["point", "series"]), hide_index=True, width="stretch")
with st.expander("Published figures (measured elsewhere: other hardware, scorers, datasets)"):
    st.dataframe(charts.facts_table([get_model(k) for k in list_models()]), hide_index=True,
                 width="stretch")
