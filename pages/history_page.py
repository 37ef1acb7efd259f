"""History: browse stored runs, reopen one prompt + seed side by side, export, open bundles."""

from ui import history, sidebar

settings = sidebar.settings()
store = history.store_ui(settings)  # stops with a hint when there is no store yet
runs = history.runs_ui(settings, store)
history.side_by_side_ui(store, runs)
