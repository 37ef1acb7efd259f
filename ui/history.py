"""The History page: stored runs, filtered; one prompt + seed side by side again; exports; bundles.

An uploaded bundle is saved by :func:`dsdcompare.store.uploads.save_upload` (at most 20 kept, 2
GiB together, least recently used removed first) and opened read-only. In public mode it goes to a
folder of the visitor's session and becomes that session's store only (``public_bundle``); the
server's own store stays the operator's.

Widget keys start with ``history_``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dsdcompare.registry import list_models

from . import resources
from .common import plain
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


def session_token() -> str:
    """A random name for this session's uploads folder (public mode), made once per session."""
    import secrets

    return st.session_state.setdefault("history_session_token", secrets.token_hex(12))


def open_uploaded_bundle() -> None:
    """Callback of the bundle uploader: save the upload (capped, least recently used pruned) and
    make it the active, read-only store: this session's own in public mode."""
    from dsdcompare.public import public_mode
    from dsdcompare.store import StoreError
    from dsdcompare.store.uploads import save_upload, uploads_folder

    ss = st.session_state
    upload = ss.get("history_bundle")
    if upload is None:
        return
    try:
        if public_mode():
            path = save_upload(upload.getvalue(), upload.name,
                               uploads_folder("sessions", session_token()),
                               root=uploads_folder())
            ss.public_bundle = str(path)
        else:
            ss.sb_store = str(save_upload(upload.getvalue(), upload.name))
        ss.pop("history_upload_error", None)
    except (StoreError, OSError) as err:
        ss.history_upload_error = f"The upload {upload.name!r} was not kept: {err}"


def store_ui(s: Settings):
    """The active store, and a bundle uploader (open when there is no store); None stops here."""
    store, why = resources.cached_store(s.store_path, s.store_readonly)
    with st.expander("Open a results bundle", expanded=store is None):
        st.file_uploader("Open a results bundle (.zip)", type=["zip"], key="history_bundle",
                         on_change=open_uploaded_bundle,
                         help="A bundle exported here or by `python -m dsdcompare store export`: "
                              "opened read-only, as on the Community Cloud demo.")
        if st.session_state.get("history_upload_error"):
            st.error(plain(st.session_state.history_upload_error), icon=":material/error:")
        where = ("your uploaded bundle (read-only, this session only)"
                 if resources.session_upload(s.store_path) else
                 f"{s.store_path}" + (" (read-only bundle)" if s.store_readonly else ""))
        st.caption(f"Active store: {plain(where)}. " + (
            "This is a public server: its store is set by the operator." if s.public else
            "Any store path or bundle can also be typed in the sidebar."))
    if store is None:
        st.info(plain(why) + " Run a comparison on the Compare page first.",
                icon=":material/database:")
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
               f"({plain(', '.join(sorted(set(rows['source']))))} weights; stored "
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
