"""Streamlit caching of the expensive things, under the foundation's memory policy, and the
warm start that loads them before the first Generate.

- ``st.cache_resource`` (one object shared by every session, never copied): the
  :class:`~dsdcompare.loading.PipelineCache` (bounded by ``default_budget_bytes``: on a small
  CPU-only host, one pipeline at a time), CLIP scorers and open results stores. All three are
  thread-safe: the engine serialises device work with a per-device lock and gives each call a
  fresh scheduler; the scorer and the store hold their own locks. Pipelines are never put in
  ``st.session_state``.
- Opened bundles are extracted to a temporary folder: at most :data:`OPEN_BUNDLES` stay open
  (the least recently opened is closed, its folder removed), and a bundle a visitor uploads in
  public mode belongs to their session and is closed when the session ends.
- ``st.cache_data`` (a copy per caller): tables read from a store and figures drawn from them.
- :class:`WarmStart`: a background thread, started by the first page a server renders, that
  imports torch, loads the default scorer and models and runs each model once at the default
  form's shape, so the first Generate neither loads nor warms anything up. It touches only plain
  shared objects (the pipeline cache, :class:`Shared` loaders, :class:`Warmth`), never Streamlit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from dsdcompare import charts

#: Bundles (non-public mode: typed in the sidebar or uploaded) kept extracted at once, server-wide.
OPEN_BUNDLES = 4
#: Steps of the warm start's one call per model: the call warms the pipeline at the form's
#: shape (size, batch, guidance); the number of steps does not change any shape.
WARM_STEPS = 4
#: Turns the warm start off ("0"), e.g. on a host too small to keep the default models loaded.
WARM_START_ENV = "DSDCOMPARE_WARM_START"
#: Longest a process exit waits for a running warm start.
EXIT_WAIT_S = 60.0


class Shared:
    """Objects loaded once per key, by whichever thread asks first (a script run or the warm
    start); a second caller of the same key waits for the first instead of loading again. A
    load that raises caches nothing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict = {}
        self._key_locks: dict = {}

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key, load: Callable):
        """The object for ``key``, made by ``load()`` on the first call."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = load()
            with self._lock:
                self._items[key] = value
            return value


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
def thread_policy():
    """The CPU thread policy (:mod:`dsdcompare.threads`), put in force once per server: the
    frame calls this before anything imports torch, so the OpenMP wait policy applies too.
    Every Result records it (``threads.current()`` in its environment). A process that imported
    torch before the dashboard ran (a test driving it in-process) keeps its own threading: None.
    Raises ``InputError`` for a bad ``$DSDCOMPARE_THREADS`` either way."""
    import sys

    from dsdcompare import threads

    policy = threads.decide()
    return None if "torch" in sys.modules else threads.apply(policy)


def configuration_problem() -> str | None:
    """An operator setting this server cannot run with (``DSDCOMPARE_PUBLIC``,
    ``DSDCOMPARE_THREADS``, ``DSDCOMPARE_DASHBOARD_MODE``), as one line; None when all are fine.
    Puts the thread policy in force first, so call it before importing anything that imports
    torch (``ui.sidebar`` does)."""
    from dsdcompare.errors import InputError
    from dsdcompare.public import public_mode

    try:
        public_mode()
        thread_policy()
        detected_mode()
    except (InputError, ValueError) as err:
        return str(err).splitlines()[0]
    return None


@st.cache_resource(show_spinner=False)
def detected_mode():
    """The default weight mode of this server (decided once per process, in about a second)."""
    from .sidebar import detect_mode

    return detect_mode(gpu=host()["gpu"])


@st.cache_resource(show_spinner=False)
def scorers() -> Shared:
    """The server's CLIP scorers, one per (checkpoint, device, stand-in label)."""
    return Shared()


def scorer(checkpoint: str, device: str, standin: bool):
    """A shared :class:`~dsdcompare.metrics.ClipScorer`, loaded once (raises
    ``ScorerUnavailable``, and caches nothing, when it cannot load)."""
    return scorers().get((checkpoint, device, standin), _scorer_loader(checkpoint, device, standin))


def metric_scorer(metric: str, device: str):
    """A shared scorer of ``metric`` (hps, pickscore, imagereward, lpips), loaded once from the
    local caches (raises ``ScorerUnavailable`` naming the download command when absent)."""
    def load():
        from dsdcompare.loading import resolve_device
        from dsdcompare.scorers import load_metric_scorer

        return load_metric_scorer(metric, device=resolve_device(device))
    return scorers().get((metric, device, "metric"), load)


def _scorer_loader(checkpoint: str, device: str, standin: bool) -> Callable:
    def load():
        from dsdcompare.loading import resolve_device
        from dsdcompare.metrics import load_scorer

        return load_scorer(checkpoint, device=resolve_device(device), standin=standin)
    return load


# --- results stores --------------------------------------------------------------------------------

def _close(store) -> None:
    with contextlib.suppress(Exception):  # never let a failed close break a script run
        store.close()


@st.cache_resource(show_spinner="Opening the results store…")
def _file_store(path: str, readonly: bool):
    from dsdcompare.store import Store

    return Store(path, readonly=readonly)


@st.cache_resource(show_spinner="Checking and opening the bundle…", max_entries=OPEN_BUNDLES,
                   on_release=_close)
def _bundle_store(path: str):
    from dsdcompare.store import Store

    return Store(path, readonly=True)


@st.cache_resource(show_spinner="Checking and opening your bundle…", scope="session",
                   on_release=_close)
def _session_bundle_store(path: str):
    from dsdcompare.store import Store

    return Store(path, readonly=True)


def is_bundle_path(path: str) -> bool:
    """A results bundle (opened read-only, extracted to a temporary folder)."""
    return path.lower().endswith(".zip")


def store(path: str, readonly: bool):
    """A shared :class:`~dsdcompare.store.Store` (thread-safe). A bundle is extracted once and
    kept open with a few others; a bundle uploaded in public mode only for its session."""
    if not is_bundle_path(path):
        return _file_store(path, readonly)
    if session_upload(path):
        from dsdcompare.store.uploads import touch_upload

        touch_upload(Path(path))  # in use: last to be pruned
        return _session_bundle_store(path)
    return _bundle_store(path)


def session_upload(path: str) -> bool:
    """Whether ``path`` is this session's own upload (public mode keeps uploads per session)."""
    return path == st.session_state.get("public_bundle")


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
    a store. ``why`` quotes the path: show it with :func:`ui.common.plain`."""
    from dsdcompare.store import StoreError

    if (readonly or not create) and not Path(path).exists():
        if session_upload(path):
            return None, ("Your uploaded bundle was removed to make room for newer uploads: "
                          "upload it again on the History page.")
        return None, f"No results stored yet at {path}."
    try:
        return store(path, readonly), None
    except (StoreError, OSError) as err:
        return None, f"Cannot open the results store {path}: {err}"


# --- the models file ($DSDCOMPARE_MODELS) ----------------------------------------------------------

class ModelsFile:
    """The operator's models file, loaded by the dashboard itself, once per server.

    The registry loads ``$DSDCOMPARE_MODELS`` on first use and raises on every use while the
    file is bad, which would take the built-in models down with it. So the dashboard takes the
    variable out of its environment, loads the file with :func:`dsdcompare.registry.load_models_file`
    (all or nothing) and keeps the error to show on every page; a fixed file is picked up on the
    next page load (the error is retried when the file changes).
    """

    def __init__(self):
        from dsdcompare.registry import MODELS_FILE_ENV

        self.path = os.environ.pop(MODELS_FILE_ENV, None) or None
        self.error: str | None = None
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self._loaded = False

    def check(self) -> str | None:
        """Load the file if not loaded yet (again only once it changed); the error, or None."""
        if self.path is None:
            return None
        with self._lock:
            if self._loaded:
                return None
            stamp = store_stamp(self.path)
            if stamp == self._stamp:
                return self.error
            self._stamp = stamp
            from dsdcompare.registry import RegistryError, load_models_file

            try:
                load_models_file(self.path)
            except RegistryError as err:
                self.error = str(err).splitlines()[0]
                return self.error
            self._loaded, self.error = True, None
            return None


@st.cache_resource(show_spinner=False)
def models_file() -> ModelsFile:
    """The server's :class:`ModelsFile` (read from the environment on the first page load)."""
    return ModelsFile()


# --- warm pipelines --------------------------------------------------------------------------------

class Warmth:
    """Which cached pipelines have already run at which shape, so a comparison on them needs no
    warm-up call: the first call at a shape pays one-off costs (allocations, kernel selection);
    later calls at that shape are steady. A pipeline that is (re)loaded starts cold."""

    def __init__(self):
        self._lock = threading.Lock()
        self._shapes: dict[tuple, set] = {}

    @staticmethod
    def shape(request) -> tuple:
        """What a call's tensor shapes depend on (not its steps, seed or prompt)."""
        return (request.size, request.images_per_prompt, float(request.guidance) > 1.0)

    def record(self, key: tuple, request, result) -> None:
        """After a successful call of model ``key`` (model, source, device, dtype)."""
        if not result.success or result.timing is None:
            return
        with self._lock:
            shapes = self._shapes.setdefault(key, set())
            if not result.timing.load_cached:
                shapes.clear()  # a fresh pipeline: only what just ran is warm
            shapes.add(self.shape(request))

    def warm(self, key: tuple, request, cache) -> bool:
        """Model ``key`` is loaded now and has run at ``request``'s shape."""
        from dsdcompare.loading import resolve_device

        model, source, device, dtype = key
        # the engine's cache key (engine._cached_pipeline); should it change, nothing is found
        # warm and every comparison keeps its warm-up call: slower, never wrong
        if (model, source, resolve_device(device), dtype, None) not in cache:
            return False
        with self._lock:
            return self.shape(request) in self._shapes.get(key, set())


@st.cache_resource(show_spinner=False)
def warmth() -> Warmth:
    """The server's :class:`Warmth`."""
    return Warmth()


class WarmStart:
    """Loads what the first Generate of the default form needs, in daemon threads, and says what
    is still loading. ``first`` runs alone (the imports everything shares: transformers resolves
    its names lazily and not thread-safely, so no two threads may do it at once); then ``lanes``
    run side by side (a lane's jobs in order), so the scorer loads while the models do. Each job
    is ``(label, function)``; a failing job is reported and the others go on (the comparison
    then loads it itself and shows its error). Page code that imports diffusers or transformers
    waits for :meth:`wait_imports` first."""

    def __init__(self, first: tuple[str, Callable[[], None]],
                 *lanes: list[tuple[str, Callable[[], None]]]):
        self.labels = [first[0]] + [label for lane in lanes for label, _ in lane]  # every job
        self._lock = threading.Lock()
        self.running: list[str] = []  # the jobs running now
        self.pending = list(self.labels)  # not finished yet (the running ones included)
        self.errors: list[str] = []  # "label: error" of jobs that failed
        self.seconds_per_job: dict[str, float] = {}  # label -> how long it took
        self.started = time.monotonic()
        self.seconds: float | None = None  # total, once finished
        self._imported = threading.Event()  # `first` has run
        self._threads = [threading.Thread(target=self._run, args=(lane, i == 0), daemon=True,
                                          name=f"dsdcompare-warm-{i}")
                         for i, lane in enumerate([[first], *lanes])]
        for thread in self._threads:
            thread.start()
        # a daemon thread still inside torch when the interpreter exits aborts the process
        # ("terminate called without an active exception"): let it finish first
        atexit.register(self.wait, EXIT_WAIT_S)

    @property
    def current(self) -> str | None:
        """What is loading now ("A and B"), or None."""
        with self._lock:
            return " and ".join(self.running) or None

    @property
    def finished(self) -> bool:
        """Every job has run (or failed)."""
        return self.seconds is not None

    def wait_imports(self, timeout: float | None = None) -> bool:
        """Block until the shared imports are done (or ``timeout`` seconds); whether they are."""
        return self._imported.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (or ``timeout`` seconds); whether it finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.finished

    def _run(self, lane, first: bool) -> None:
        if not first:
            self._imported.wait()
        for label, job in lane:
            with self._lock:
                self.running.append(label)
            began = time.monotonic()
            try:
                job()
            except Exception as err:  # the comparison will load it and show the error itself
                with self._lock:
                    self.errors.append(f"{label}: {type(err).__name__}: {err}".splitlines()[0])
            with self._lock:
                self.seconds_per_job[label] = time.monotonic() - began
                self.running.remove(label)
                self.pending.remove(label)
                if not self.pending:
                    self.seconds = time.monotonic() - self.started
        if first:
            self._imported.set()


#: Names diffusers and transformers resolve lazily (not thread-safely) that pipelines, the
#: engine and the scorers use: resolved once, by the warm start, before anything runs alongside.
LAZY_NAMES = {"diffusers": ("StableDiffusionPipeline", "StableDiffusionXLPipeline",
                            "UNet2DConditionModel", "AutoencoderKL", "PNDMScheduler"),
              "transformers": ("CLIPTokenizer", "CLIPTextModel", "CLIPTextModelWithProjection",
                               "CLIPModel", "CLIPProcessor", "CLIPImageProcessor",
                               "CLIPVisionModelWithProjection", "CLIPConfig")}


def shared_imports() -> None:
    """The slow, shared imports, once (the warm start's first job)."""
    import importlib

    for module, names in LAZY_NAMES.items():
        imported = importlib.import_module(module)
        for name in names:
            with contextlib.suppress(AttributeError, ImportError):  # a newer library moved it
                getattr(imported, name)
    with contextlib.suppress(ImportError):
        importlib.import_module("torchmetrics.multimodal.clip_score")
    importlib.import_module("dsdcompare.engine")


def warm_start_enabled() -> bool:
    """Unless ``$DSDCOMPARE_WARM_START`` is 0/false/no/off."""
    return os.environ.get(WARM_START_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@st.cache_resource(show_spinner=False)
def warm_start(source: str, models: tuple[str, ...], labels: tuple[str, ...],
               scorer_key: tuple | None, scorer_label: str, request) -> WarmStart:
    """The server's warm start of ``models`` (run once each with ``request``) and the scorer
    ``scorer_key`` (``(checkpoint, device, standin)``), begun once per server."""
    cache, shared, warm = pipeline_cache(), scorers(), warmth()

    def model_job(key: str) -> Callable[[], None]:
        def run() -> None:
            from dsdcompare.engine import compare
            from dsdcompare.registry import get_model

            (result,) = compare(request, [get_model(key)], source=source, cache=cache)
            if not result.success:
                raise RuntimeError(result.error)
            warm.record((key, source, "auto", "auto"), request, result)
        return run

    pipelines = [(label, model_job(key)) for key, label in zip(models, labels, strict=True)]
    lanes = [pipelines]
    if scorer_key is not None:
        lanes.append([(scorer_label, lambda: shared.get(scorer_key, _scorer_loader(*scorer_key)))])
    return WarmStart(("PyTorch, diffusers and transformers", shared_imports), *lanes)


# --- data and figures ------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=16)
def stored_results(path: str, readonly: bool, stamp: tuple, metric: str | None = None) -> pd.DataFrame:
    """Every stored result (``Store.results()``); ``stamp`` (:func:`store_stamp`) keys the cache.
    With ``metric`` (e.g. "hps") the score columns hold that metric and its provenance."""
    return store(path, readonly).results(metric=metric)


@st.cache_data(show_spinner=False, max_entries=16)
def stored_metrics(path: str, readonly: bool, stamp: tuple) -> list[str]:
    """The score metrics the store holds values of (``Store.metrics()``), CLIP first."""
    return store(path, readonly).metrics()


@st.cache_data(show_spinner=False, max_entries=16)
def stored_runs(path: str, readonly: bool, stamp: tuple, text: str | None, model: str | None,
                since, until) -> pd.DataFrame:
    """Runs matching the filters, newest first, as a DataFrame (``Store.runs``)."""
    rows = store(path, readonly).runs(text=text or None, model=model, since=since, until=until)
    return pd.DataFrame(rows)


def figures(df: pd.DataFrame, per_mp: bool, metric: str = "clip_score") -> dict:
    """The Speed vs quality figures of ``df`` (None for a figure that does not apply), cached;
    ``metric`` is the quality column (``dsdcompare.stats.METRICS``).

    Raises :class:`dsdcompare.charts.ChartError` when ``df`` mixes score checkpoints.
    """
    return _figures(chart_frame(df), per_mp, metric)


def chart_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The chart columns of ``df``: list columns (image paths) are not hashable, and cache_data
    would pickle the whole frame."""
    return df[[c for c in df.columns if c in charts.COLUMNS and c != "image_paths"]]


@st.cache_data(show_spinner=False, max_entries=32)
def _figures(df: pd.DataFrame, per_mp: bool, metric: str = "clip_score") -> dict:
    from dsdcompare.registry import get_model, list_models

    claims = charts.published_claims(get_model(k) for k in list_models())
    return {
        "latency_vs_score": charts.latency_vs_score(df, per_mp=per_mp, metric=metric),
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
