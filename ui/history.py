"""The History page: stored runs, filtered; one prompt + seed side by side again; exports; bundles.

Widget keys start with ``history_``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dsdcompare.registry import list_models

from . import resources
from .results import result_columns, results_table
from .sidebar import Settings


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Stored runs, compact: id, when, prompt, seed, steps, size, source, models, results."""
    if runs.empty:
        return runs
    return pd.DataFrame({
        "run": runs["run_id"], "when (UTC)": pd.to_datetime(runs["created_at"], utc=True,
                                                           format="ISO8601").dt.strftime("%Y-%m-%d %H:%M"),
        "prompt": runs["prompt"], "seed": runs["seed"], "steps": runs["steps"],
        "size": runs["size"].map(lambda v: "native" if pd.isna(v) else f"{int(v)}²"),
        "weights": runs["source"].fillna("own"),
        "models": runs["models"].map(lambda m: ", ".join(m)),
        "ok": runs["n_success"].astype(str) + "/" + runs["n_results"].astype(str),
        "finished": runs["finished"],
    })


def open_uploaded_bundle() -> None:
    """Callback of the bundle uploader: save the upload and make it the active (read-only) store."""
    import hashlib

    from dsdcompare.paths import cache_dir

    upload = st.session_state.get("history_bundle")
    if upload is None:
        return
    data = upload.getvalue()
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in upload.name)
    path = cache_dir("bundles") / f"{hashlib.sha256(data).hexdigest()[:12]}-{name}"
    if not path.exists():
        path.write_bytes(data)
    st.session_state.sb_store = str(path)


def store_ui(s: Settings):
    """The active store, and a bundle uploader (open when there is no store); None stops here."""
    store, why = resources.cached_store(s.store_path, s.store_readonly)
    with st.expander("Open a results bundle", expanded=store is None):
        st.file_uploader("Open a results bundle (.zip)", type=["zip"], key="history_bundle",
                         on_change=open_uploaded_bundle,
                         help="A bundle exported here or by `python -m dsdcompare store export`: "
                              "opened read-only, as on the Community Cloud demo.")
        st.caption(f"Active store: `{s.store_path}`"
                   + (" (read-only bundle)" if s.store_readonly else "")
                   + ". Any store path or bundle can also be typed in the sidebar.")
    if store is None:
        st.info(f"{why} Run a comparison on the Compare page first.", icon=":material/database:")
        st.stop()
    return store


def _filters_ui(models: list[str]) -> dict:
    c1, c2, c3 = st.columns([2, 1.5, 1.5])
    text = c1.text_input("Prompt contains", key="history_text")
    model = c2.selectbox("Model", ["any", *models], key="history_model")
    dates = c3.date_input("Date range (UTC)", value=(), key="history_dates",
                          max_value=dt.date.today() + dt.timedelta(days=1))
    since = dates[0] if len(dates) > 0 else None
    until = dates[1] if len(dates) > 1 else None
    return {"text": text.strip() or None, "model": None if model == "any" else model,
            "since": since, "until": until}


def runs_ui(s: Settings, store) -> pd.DataFrame:
    """Filters, the matching runs (newest first) and their exports; returns the runs listed."""
    f = _filters_ui(list_models())
    runs = resources.stored_runs(s.store_path, s.store_readonly, resources.store_stamp(s.store_path),
                                 f["text"], f["model"], f["since"], f["until"])
    if runs.empty:
        st.info("No stored runs match these filters.", icon=":material/filter_alt_off:")
        st.stop()
    st.dataframe(runs_table(runs), hide_index=True, width="stretch",
                 height=min(38 + 35 * len(runs), 320))
    store_downloads(store, runs["run_id"].tolist(), key_prefix="history_export")
    return runs


def side_by_side_ui(store, runs: pd.DataFrame) -> None:
    """One listed prompt + seed side by side again: the latest stored result of each model."""
    pairs = list(dict.fromkeys(zip(runs["prompt"], runs["seed"].astype(int), strict=True)))
    choice = st.selectbox("Open side by side (prompt · seed)", range(len(pairs)),
                          key="history_pair",
                          format_func=lambda i: f"“{pairs[i][0][:70]}” · seed {pairs[i][1]}")
    prompt, seed = pairs[choice]
    rows = store.side_by_side(prompt, seed)
    if rows.empty:
        st.info("Nothing stored for this prompt and seed.")
        return
    results = [store.load_result(int(i)) for i in rows["result_id"]]
    st.caption(f"Latest stored result of each model for this prompt and seed "
               f"({', '.join(sorted(set(rows['source'])))} weights; stored "
               f"{rows['created_at'].min():%Y-%m-%d %H:%M}–{rows['created_at'].max():%H:%M} UTC).")
    result_columns(results, key_prefix="history", prompt=prompt, seed=seed, standin_badges=True)
    results_table(results)


def store_downloads(store, run_ids: list[int], *, key_prefix: str) -> None:
    """CSV, JSON and bundle downloads of the listed runs, built only when clicked."""
    import tempfile
    from pathlib import Path

    ids = [int(i) for i in run_ids]

    def export(kind: str):
        def build() -> bytes:
            with tempfile.TemporaryDirectory(prefix="dsdcompare-dl-") as td:
                path = Path(td) / f"export.{kind}"
                if kind == "csv":
                    store.export_csv(path, run_id=ids)
                elif kind == "json":
                    store.export_json(path, run_id=ids)
                else:
                    store.export_bundle(path, run_ids=ids)
                return path.read_bytes()
        return build

    n = f"{len(ids)} run{'s' if len(ids) != 1 else ''}"
    c1, c2, c3, _ = st.columns([1, 1, 1, 1.5])
    c1.download_button(f"CSV ({n})", data=export("csv"), file_name="dsdcompare-results.csv",
                       mime="text/csv", on_click="ignore", key=f"{key_prefix}_csv",
                       icon=":material/table:", width="stretch", disabled=not ids)
    c2.download_button(f"JSON ({n})", data=export("json"), file_name="dsdcompare-results.json",
                       mime="application/json", on_click="ignore", key=f"{key_prefix}_json",
                       icon=":material/data_object:", width="stretch", disabled=not ids)
    c3.download_button(f"Bundle .zip ({n})", data=export("zip"),
                       file_name="dsdcompare-bundle.zip", mime="application/zip",
                       on_click="ignore", key=f"{key_prefix}_bundle",
                       icon=":material/folder_zip:", width="stretch", disabled=not ids,
                       help="Database and images in one file: open it here or on the demo.")
