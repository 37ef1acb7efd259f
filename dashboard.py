"""dsdcompare dashboard: the router and frame.

Run with ``streamlit run dashboard.py``. The sidebar chooses the weights (real, toy pair, tiny
stand-ins), device, precision, CLIP scorer and results store; every page shows a banner while
stand-in models or scorers are in use. Pages live in ``pages/`` and are listed here only
(``st.navigation`` turns off the automatic ``pages/`` discovery).
"""

import streamlit as st

from ui import resources, state, views, widgets

st.set_page_config(page_title="dsdcompare", page_icon=":material/compare:", layout="wide")

# 1. Session defaults (once) and the host's facts (once per server)
state.init_session()
host = resources.host()
detected = resources.detected_mode()
settings = state.settings()

# 2. Pages. Each file's name differs from its url_path on purpose: while a `pages/` folder
# exists, Streamlit's first run in a process (and every AppTest run) still resolves pages the
# old, folder-based way, so /history would run pages/history.py alone, without this frame.
pages = [
    st.Page("pages/compare_page.py", title="Compare", icon=":material/compare:",
            url_path="compare", default=True),
    st.Page("pages/speed_quality_page.py", title="Speed vs quality",
            icon=":material/scatter_plot:", url_path="speed-quality"),
    st.Page("pages/history_page.py", title="History", icon=":material/history:",
            url_path="history"),
    st.Page("pages/models_page.py", title="Models", icon=":material/account_tree:",
            url_path="models"),
]
page = st.navigation(pages)

# 3. Sidebar: settings and the active results store
store, why = resources.open_store(settings.store_path, readonly=True) \
    if settings.store_readonly else (None, None)
if settings.store_readonly:
    store_info = (f"Read-only bundle: {why}" if store is None else
                  f"Read-only bundle, {len(store.runs())} runs. Comparisons are not saved.")
else:
    store_info = "Comparisons are saved here as each model finishes." if settings.save else \
        "Comparisons are not saved."
widgets.sidebar_ui(detected, host, settings, store_info)

# 4. Frame: title, stand-in banners, then the page
st.title(page.title)
views.banners(settings.banners, settings.mode.key)
page.run()
