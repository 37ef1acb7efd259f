"""dsdcompare dashboard: the router and frame.

Run with ``streamlit run dashboard.py``. The sidebar chooses the weights (real, toy pair, tiny
stand-ins), device, precision, CLIP scorer and results store; every page shows a banner while
stand-in models or scorers are in use. Pages live in ``pages/*_page.py`` and are listed here
only (``st.navigation`` turns off the automatic ``pages/`` discovery, after the first run: see
``pages/compare.py``).
"""

import streamlit as st

from ui import sidebar

st.set_page_config(page_title="dsdcompare", page_icon=":material/compare:", layout="wide")

# 1. Session defaults (once) and the sidebar's choices, resolved
settings = sidebar.settings()

# 2. Pages. Compare is the default, served at "/" (a default page's URL is always "/"), and also
# at /compare through a hidden alias, so every page has a URL named after it.
COMPARE = "pages/compare_page.py"
pages = [
    st.Page(COMPARE, title="Compare", icon=":material/compare:", url_path="", default=True),
    st.Page("pages/speed_quality_page.py", title="Speed vs quality",
            icon=":material/scatter_plot:", url_path="speed-quality"),
    st.Page("pages/history_page.py", title="History", icon=":material/history:",
            url_path="history"),
    st.Page("pages/models_page.py", title="Models", icon=":material/account_tree:",
            url_path="models"),
    st.Page("pages/review_page.py", title="Review", icon=":material/rate_review:",
            url_path="review"),
    st.Page(COMPARE, title="Compare", icon=":material/compare:", url_path="compare",
            visibility="hidden"),
]
page = st.navigation(pages)

# 3. Sidebar, then the frame: title, stand-in banners, the page
sidebar.sidebar_ui(settings)
st.title(page.title)
sidebar.banners_ui(settings)
page.run()
