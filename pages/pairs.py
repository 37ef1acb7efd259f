"""/pairs on a server's first run: the dashboard, which routes to Pairs (pages/pairs_page.py).

Streamlit's first run in a process matches the URL against the file names in pages/ before
dashboard.py declares its pages; this file, named after the URL, answers that one run
(see ui.common.run_dashboard). It is not listed in st.navigation.
"""

from ui.common import run_dashboard

run_dashboard()
