"""The dashboard's helpers (Streamlit lives here and in ``dashboard.py`` / ``pages/``, never in
``dsdcompare``).

- :mod:`ui.settings` — which weights, models and scorer a session uses (pure, no Streamlit).
- :mod:`ui.formstate` — the Compare form as plain data, to and from the URL (pure).
- :mod:`ui.prompts` — prompt token counting and what CLIP truncates (pure).
- :mod:`ui.resources` — ``st.cache_resource`` / ``st.cache_data`` wrappers (pipelines, scorers,
  stores, tables).
- :mod:`ui.state` — session defaults, initialised once.
- :mod:`ui.widgets` — ``*_ui`` functions: draw widgets, return plain values.
- :mod:`ui.views` — draw results (image columns, tables, downloads).
"""
