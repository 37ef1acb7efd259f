"""dsdcompare dashboard: the router and frame.

Run with ``streamlit run dashboard.py``. The sidebar chooses the weights (real, toy pair, tiny
stand-ins), device, precision, CLIP scorer and results store; every page shows a banner while
stand-in models or scorers are in use. Pages live in ``pages/*_page.py`` and are listed here
only (``st.navigation`` turns off the automatic ``pages/`` discovery, after the first run: see
``pages/compare.py``).

Before anything else, the frame reads the operator's settings: the models file
(``DSDCOMPARE_MODELS``: a bad one is an error on every page, the built-in models still work), the
CPU thread policy (:mod:`dsdcompare.threads`, put in force before torch is imported, recorded in
every Result), public mode (``DSDCOMPARE_PUBLIC``: no error details for visitors) and the default
weights; a setting the server cannot run with stops every page with one message. The first page
rendered also starts the warm start (``ui.resources.WarmStart``): the default models and scorer
load in the background while the visitor reads the form.
"""

import streamlit as st

from dsdcompare.public import public_mode
from ui import resources
from ui.common import plain

# an emoji favicon is drawn by the browser; a :material/ one is fetched from fonts.gstatic.com
st.set_page_config(page_title="dsdcompare", page_icon="⚖️", layout="wide")

# 0. The operator's settings, before anything lists the models or imports torch
models_file = resources.models_file()  # takes DSDCOMPARE_MODELS over from the registry
problem = resources.configuration_problem()  # applies the thread policy first
if problem:
    st.error(plain(f"This server cannot start: {problem}"), icon=":material/error:")
    st.stop()
models_problem = models_file.check()
if public_mode():  # a visitor sees that something failed, never a traceback or message
    st.set_option("client.showErrorDetails", "none")

from ui import sidebar  # noqa: E402  (imports torch: after the thread policy is in force)

# 1. Session defaults (once) and the sidebar's choices, resolved; the warm start (once)
settings = sidebar.settings()
warm = sidebar.warm_start()

# 2. Pages. Compare is the default, served at "/" (a default page's URL is always "/"), and also
# at /compare through a hidden alias, so every page has a URL named after it.
COMPARE = "pages/compare_page.py"
pages = [
    st.Page(COMPARE, title="Compare", icon=":material/compare:", url_path="", default=True),
    st.Page("pages/speed_quality_page.py", title="Speed vs quality",
            icon=":material/scatter_plot:", url_path="speed-quality"),
    st.Page("pages/history_page.py", title="History", icon=":material/history:",
            url_path="history"),
    st.Page("pages/pairs_page.py", title="Pairs", icon=":material/join:", url_path="pairs"),
    st.Page("pages/models_page.py", title="Models", icon=":material/account_tree:",
            url_path="models"),
    st.Page("pages/review_page.py", title="Review", icon=":material/rate_review:",
            url_path="review"),
    st.Page(COMPARE, title="Compare", icon=":material/compare:", url_path="compare",
            visibility="hidden"),
]
page = st.navigation(pages)

# 3. Sidebar, then the frame: title, stand-in banners, models file, warm start; the page
sidebar.sidebar_ui(settings)
st.title(page.title)
sidebar.banners_ui(settings)
sidebar.models_file_ui(models_problem)
sidebar.warm_status_ui(warm, blind=page.url_path == "review")  # a blind review names no model
if warm is not None and page.url_path not in ("", "compare"):
    warm.wait_imports()  # pages may import what the warm start is importing (not thread-safe)
page.run()
