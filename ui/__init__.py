"""The dashboard's helpers, one module per feature (Streamlit lives here and in ``dashboard.py``
/ ``pages/``, never in ``dsdcompare``; domain rules live in ``dsdcompare``).

- :mod:`ui.sidebar` — weight modes, the scorer choice, session settings, the sidebar, banners.
- :mod:`ui.compare` — the Compare form as data, its link, its widgets, running it, its outcome.
- :mod:`ui.results` — drawing Results: live progress, image columns, table, downloads.
- :mod:`ui.history` — the History page: stored runs, side by side, exports, bundles.
- :mod:`ui.models` — the Models page: registry, parameters, teacher/student differences.
- :mod:`ui.speed_quality` — the Speed vs quality page's filters.
- :mod:`ui.resources` — ``st.cache_resource`` / ``st.cache_data`` wrappers (pipelines, scorers,
  stores, tables, figures).
- :mod:`ui.common` — small shared helpers.

A page calls a few ``*_ui`` functions: each draws widgets and returns plain values.
"""
