"""Streamlit caching of the expensive things, under the foundation's memory policy.

- ``st.cache_resource`` (one object shared by every session, never copied): the
  :class:`~dsdcompare.loading.PipelineCache` (bounded by ``default_budget_bytes``: on a small
  CPU-only host, one pipeline at a time), CLIP scorers and open results stores. All three are
  thread-safe: the engine serialises device work with a per-device lock and gives each call a
  fresh scheduler; the scorer and the store hold their own locks. Pipelines are never put in
  ``st.session_state``.
- ``st.cache_data`` (a copy per caller): tables read from a store and figures drawn from them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dsdcompare import charts

# --- shared resources ------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def pipeline_cache():
    """The process-wide pipeline cache: one per server, shared by every session."""
    from dsdcompare.loading import PipelineCache, default_budget_bytes, resolve_device

    return PipelineCache(max_bytes=default_budget_bytes(resolve_device("auto")))


@st.cache_resource(show_spinner=False)
def host() -> dict:
    """Devices this host offers, whether it has a GPU, and the pipeline memory budget."""
    import psutil
    import torch

    from dsdcompare.loading import default_budget_bytes, resolve_device

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    auto = resolve_device("auto")
    return {"devices": devices, "gpu": auto != "cpu", "auto_device": auto,
            "budget_bytes": default_budget_bytes(auto),
            "memory_bytes": psutil.virtual_memory().total}


@st.cache_resource(show_spinner=False)
def detected_mode():
    """The default weight mode of this server (decided once per process, in about a second)."""
    from .sidebar import detect_mode

    return detect_mode(gpu=host()["gpu"])


@st.cache_resource(show_spinner="Loading the CLIP scorer…")
def scorer(checkpoint: str, device: str, standin: bool):
    """A shared :class:`~dsdcompare.metrics.ClipScorer` (raises ``ScorerUnavailable``; not cached then)."""
    from dsdcompare.loading import resolve_device
    from dsdcompare.metrics import load_scorer

    return load_scorer(checkpoint, device=resolve_device(device), standin=standin)


@st.cache_resource(show_spinner="Opening the results store…")
def store(path: str, readonly: bool):
    """A shared :class:`~dsdcompare.store.Store` (thread-safe; a bundle is extracted once)."""
    from dsdcompare.store import Store

    return Store(path, readonly=readonly)


def default_store_path() -> str:
    """``$DSDCOMPARE_STORE``, else ``./dsdcompare-results/results.sqlite``."""
    from dsdcompare.store import default_store_path as default

    return str(default())


def store_stamp(path: str) -> tuple:
    """Changes whenever the store at ``path`` is written (SQLite WAL: the -wal file changes)."""
    stamps = []
    for p in (Path(path), Path(path + "-wal")):
        try:
            st_ = p.stat()
            stamps.append((st_.st_mtime_ns, st_.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def cached_store(path: str, readonly: bool, *, create: bool = False):
    """The shared :func:`store` as ``(store, None)`` or ``(None, why)``: a missing store (unless
    ``create``) or a bad file is a message, not an exception. Pages that only read never create
    a store."""
    from dsdcompare.store import StoreError

    if (readonly or not create) and not Path(path).exists():
        return None, f"No results stored yet at {path}."
    try:
        return store(path, readonly), None
    except (StoreError, OSError) as err:
        return None, f"Cannot open the results store {path}: {err}"


# --- data and figures ------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=16)
def stored_results(path: str, readonly: bool, stamp: tuple) -> pd.DataFrame:
    """Every stored result (``Store.results()``); ``stamp`` (:func:`store_stamp`) keys the cache."""
    return store(path, readonly).results()


@st.cache_data(show_spinner=False, max_entries=16)
def stored_runs(path: str, readonly: bool, stamp: tuple, text: str | None, model: str | None,
                since, until) -> pd.DataFrame:
    """Runs matching the filters, newest first, as a DataFrame (``Store.runs``)."""
    rows = store(path, readonly).runs(text=text or None, model=model, since=since, until=until)
    return pd.DataFrame(rows)


def figures(df: pd.DataFrame, per_mp: bool) -> dict:
    """The Speed vs quality figures of ``df`` (None for a figure that does not apply), cached.

    Raises :class:`dsdcompare.charts.ChartError` when ``df`` mixes score checkpoints.
    """
    # list columns (image paths) are not hashable: cache_data would pickle the whole frame
    plain = df[[c for c in df.columns if c in charts.COLUMNS and c != "image_paths"]]
    return _figures(plain, per_mp)


@st.cache_data(show_spinner=False, max_entries=32)
def _figures(df: pd.DataFrame, per_mp: bool) -> dict:
    from dsdcompare.registry import get_model, list_models

    claims = charts.published_claims(get_model(k) for k in list_models())
    return {
        "latency_vs_score": charts.latency_vs_score(df, per_mp=per_mp),
        "student_vs_teacher": charts.student_vs_teacher(df, claims),
        "stages": charts.stage_breakdown(df, per_mp=per_mp),
        "sweep": charts.steps_sweep(df, per_mp=per_mp),
    }


@st.cache_data(show_spinner="Counting parameters (meta device, no weights)…")
def params_table(models: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """Millions of parameters per component of each ``(model, source)`` (``count_params``).

    A model that cannot be counted gets its error in the ``error`` column.
    """
    from dsdcompare.profiling import count_params
    from dsdcompare.registry import get_model

    labels = {"unet": "UNet", "text_encoder": "text encoder", "text_encoder_2": "text encoder 2",
              "vae": "VAE", "vae_decoder": "of which decoder", "safety_checker": "safety checker"}
    rows = []
    for key, source in models:
        row = {"model": get_model(key).name}
        try:
            counts = count_params(key, source=source)
        except Exception as err:  # e.g. toy weights not built: say so in its row
            rows.append({**row, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
            continue
        for comp, label in labels.items():
            row[f"{label} (M)"] = counts[comp] / 1e6 if comp in counts else None
        row["total (M)"] = sum(v for k, v in counts.items() if k != "vae_decoder") / 1e6
        rows.append(row)
    return pd.DataFrame(rows)
