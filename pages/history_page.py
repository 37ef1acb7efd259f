"""History: browse stored runs, reopen one prompt + seed side by side, export, open bundles."""

import streamlit as st

from dsdcompare.registry import list_models
from ui import resources, state, tables, views, widgets

# 1. The active store (a bundle can be opened here)
settings = state.settings()
store, why = resources.open_store(settings.store_path, settings.store_readonly)
with st.expander("Open a results bundle", expanded=store is None):
    widgets.bundle_upload_ui(state.open_uploaded_bundle)
    st.caption(f"Active store: `{settings.store_path}`"
               + (" (read-only bundle)" if settings.store_readonly else "")
               + ". Any store path or bundle can also be typed in the sidebar.")
if store is None:
    st.info(f"{why} Run a comparison on the Compare page first.", icon=":material/database:")
    st.stop()

# 2. Runs, filtered
stamp = resources.store_stamp(settings.store_path)
f = widgets.history_filters_ui(list_models())
runs = resources.stored_runs(settings.store_path, settings.store_readonly, stamp,
                             f["text"], f["model"], f["since"], f["until"])
if runs.empty:
    st.info("No stored runs match these filters.", icon=":material/filter_alt_off:")
    st.stop()
st.dataframe(tables.runs_table(runs), hide_index=True, width="stretch",
             height=min(38 + 35 * len(runs), 320))

# 3. Export what is listed
views.store_downloads(store, runs["run_id"].tolist(), key_prefix="history_export")

# 4. One prompt + seed side by side again (the latest result of each model)
pairs = list(dict.fromkeys(zip(runs["prompt"], runs["seed"].astype(int))))
pair = widgets.side_by_side_picker_ui(pairs)
rows = store.side_by_side(pair[0], pair[1])
if rows.empty:
    st.info("Nothing stored for this prompt and seed.")
    st.stop()
results = [store.load_result(int(i)) for i in rows["result_id"]]
st.caption(f"Latest stored result of each model for this prompt and seed "
           f"({', '.join(sorted(set(rows['source'])))} weights; stored "
           f"{rows['created_at'].min():%Y-%m-%d %H:%M}–{rows['created_at'].max():%H:%M} UTC).")
views.result_columns(results, key_prefix="history", prompt=pair[0], seed=pair[1],
                     standin_badges=True)
views.results_table(results)
