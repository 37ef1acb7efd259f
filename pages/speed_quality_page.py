"""Speed vs quality: charts over the stored results, with bootstrap intervals over prompts."""

import streamlit as st

from dsdcompare import charts, stats
from dsdcompare.registry import get_model, list_models
from ui import resources, sidebar, speed_quality
from ui.common import plain

# 1. The stored results (cached; a new write to the store refreshes them)
settings = sidebar.settings()
store, why = resources.cached_store(settings.store_path, settings.store_readonly)
if store is None:
    st.info(plain(why) + " Run a comparison on the Compare page, or open a bundle on the History page.",
            icon=":material/database:")
    st.stop()
stamp = resources.store_stamp(settings.store_path)
score_metric = speed_quality.score_metric_ui(
    resources.stored_metrics(settings.store_path, settings.store_readonly, stamp))
df = resources.stored_results(settings.store_path, settings.store_readonly, stamp,
                              None if score_metric == "clip" else score_metric)
df = df[df["success"]]
if df.empty:
    st.info("No successful results stored yet: run a comparison on the Compare page.",
            icon=":material/database:")
    st.stop()

# 2. Which results: one setting, one scorer, one step count (latencies compare only like this)
labels = charts.setting_labels(df)
choice = speed_quality.chart_filters_ui(
    labels.value_counts().index.tolist(), charts.score_groups(df),
    df["steps"].value_counts().index.astype(int).tolist(), stats.available_metrics(df))
chosen = charts.select(df, setting=choice["setting"], score_group=choice["group"],
                       steps=choice["steps"])
if chosen.empty:
    st.info("No stored results match these choices.")
    st.stop()
st.caption(speed_quality.counts_caption(chosen))
if chosen["standin"].any():
    st.warning("These results come from stand-in models (random weights): the numbers test the "
               "plumbing, not the models.", icon=":material/warning:")

# 3. The figures of one view (cached per selection)
if speed_quality.view_ui() == "overview":
    speed_quality.overview_ui(chosen, choice)
else:
    speed_quality.paired_ui(chosen, choice)

# 4. The numbers behind them, and the published figures
speed_quality.summary_ui(chosen, choice)
with st.expander("Published figures (measured elsewhere: other hardware, scorers, datasets)"):
    st.dataframe(charts.facts_table([get_model(k) for k in list_models()]), hide_index=True,
                 width="stretch")
