"""The sidebar: which weights, device, precision, CLIP scorer and results store a session uses.

The dashboard offers four *weight modes*; each is one engine ``source`` plus the models and the
CLIP scorer that make sense with it:

=======  ==========  =====================================  ===================================
mode     source      models                                  scorer (auto)
=======  ==========  =====================================  ===================================
hub      ``hub``     the four seed models (real weights)     ``openai/clip-vit-large-patch14``
toy      ``local``   the trained toy teacher/student pair    the toy CLIP (``toyzoo/weights``)
tiny     ``tiny``    the seed models' tiny stand-ins (noise)  the tiny random CLIP (meaningless)
arch     ``arch``    full-size architectures, random weights  the tiny random CLIP
=======  ==========  =====================================  ===================================

:func:`detect_mode` picks the default cheaply and without hanging: hub only when the seed
models' weights are already in the local Hugging Face cache, or a GPU is present and
``huggingface.co`` resolves within a second; otherwise the toy pair when its weights are
committed, else the tiny stand-ins. The sidebar shows the choice and lets the user override it.
Which scorer a choice means is :func:`dsdcompare.record.scorer_checkpoint`'s rule, the CLI's too.

Widget keys start with ``sb_``; :func:`settings` resolves them into a :class:`Settings`.

In public mode (``DSDCOMPARE_PUBLIC=1``, :mod:`dsdcompare.public`) the store is the operator's:
the sidebar shows its path read-only, and a visitor's uploaded bundle (``public_bundle`` in
session state, set by the History page) is their session's active store, read-only.

The frame also draws what concerns every page: stand-in banners, an unusable models file, and
the warm start's progress (:func:`warm_start`, :func:`warm_status_ui`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import streamlit as st

from dsdcompare.engine import teachers_first
from dsdcompare.loading import DTYPES
from dsdcompare.metrics import DEFAULT_CHECKPOINT, SCORER_STANDIN
from dsdcompare.public import public_mode
from dsdcompare.record import scorer_checkpoint
from dsdcompare.registry import SEED_MODELS, TOY_MODELS, get_model, list_models
from dsdcompare.zoo import can_load

from . import cost, resources
from .common import plain

#: Environment variable that forces the default weight mode (hub | toy | tiny | arch).
MODE_ENV = "DSDCOMPARE_DASHBOARD_MODE"
HUB_HOST = "huggingface.co"
DNS_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Mode:
    """A weight mode: one engine source and what goes with it."""

    key: str  # hub | toy | tiny | arch
    label: str  # shown in the sidebar
    source: str  # the engine's weight source
    default_models: tuple[str, ...]  # registry keys compared by default
    standin: bool  # random weights: images are noise
    banner: str  # what every page says while this mode is active ("" for none)

    def serves(self, key: str) -> bool:
        """Whether this mode's source can load the model ``key`` (:func:`dsdcompare.zoo.can_load`)."""
        return can_load(get_model(key), self.source)


MODES: dict[str, Mode] = {m.key: m for m in (
    Mode("toy", "Toy pair (trained, offline)", "local", TOY_MODELS, False,
         "Toy models: a miniature teacher and its distilled student, trained by dsdcompare on "
         "32 px synthetic shapes and scored by a toy CLIP trained on the same data. They show "
         "the distillation story offline; they are not real text-to-image models."),
    Mode("tiny", "Tiny stand-ins (random weights)", "tiny", SEED_MODELS,
         True, "Stand-in models: architecture-faithful miniatures of the four seed models with "
               "random weights. Their images are noise and their CLIP scores meaningless; the "
               "timings test the plumbing, not the models."),
    Mode("hub", "Real weights (Hugging Face hub)", "hub", SEED_MODELS, False, ""),
    Mode("arch", "Full size, random weights (slow)", "arch", SEED_MODELS,
         True, "Full-size architectures with random weights: real latency and memory, but the "
               "images are noise and the CLIP scores meaningless."),
)}
#: Scores offered beside CLIP (metric -> label): dsdcompare.scorers' per-image metrics.
EXTRA_METRICS = {"hps": "HPS v2.1", "pickscore": "PickScore", "imagereward": "ImageReward",
                 "lpips": "LPIPS vs teacher (lower is better)"}
#: Scorer choices offered in the sidebar (value -> label).
SCORER_CHOICES = {"auto": "Auto (follows the weights)", "none": "None (no CLIP score)",
                  "default": "CLIP ViT-L/14 (openai/clip-vit-large-patch14)",
                  "toy": "Toy CLIP (trained on synthetic shapes)",
                  "tiny": "Tiny random CLIP (stand-in, meaningless)"}
#: Sidebar scorer choice -> the choice dsdcompare.record reads (its "default" follows the models,
#: which the sidebar calls "auto"; the sidebar's "default" is ViT-L/14 whatever the weights).
_RECORD_CHOICE = {"auto": "auto", "none": "none", "default": DEFAULT_CHECKPOINT, "toy": "toy",
                  "tiny": SCORER_STANDIN}


@dataclass(frozen=True)
class Detected:
    """The default weight mode and why it was chosen."""

    mode: str  # a key of MODES
    reason: str  # one sentence, shown in the sidebar


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose, resolved: everything a page needs to run or read."""

    mode: Mode
    mode_reason: str  # why this mode (auto detection or "chosen in the sidebar")
    device: str  # "auto" | "cpu" | "cuda" | ...
    dtype: str  # "auto" | "fp32" | "fp16" | "bf16"
    scorer_choice: str  # what dsdcompare.record.open_scorer reads ("auto", "none", a checkpoint)
    scorer: str | None  # the checkpoint it resolves to (None: no scoring)
    scorer_standin: bool  # the scorer's numbers are meaningless for real models
    store_path: str  # the active results store (SQLite file or a bundle .zip)
    save: bool  # store each comparison
    banners: tuple[str, ...] = field(default=())  # what every page says (stand-ins, toy scorer)
    public: bool = False  # public mode: the store is the operator's, uploads are per session
    extra_metrics: tuple[str, ...] = ()  # scores beside CLIP (hps, pickscore, imagereward, lpips)

    @property
    def store_readonly(self) -> bool:
        """Bundles are opened read-only."""
        return resources.is_bundle_path(self.store_path)


# --- the default weight mode ---------------------------------------------------------------------

def toy_weights_ready() -> bool:
    """Both toy models are committed (a ``model_index.json`` in each folder)."""
    return all(Path(get_model(k).local_dir or "", "model_index.json").is_file() for k in TOY_MODELS)


def hub_weights_cached(repos: list[str] | None = None) -> bool:
    """All seed repos have ``model_index.json`` in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repos = repos or [get_model(k).repo_id for k in SEED_MODELS]
    for repo in repos:
        try:
            found = try_to_load_from_cache(repo, "model_index.json")
        except Exception:  # a malformed cache never breaks the dashboard
            return False
        if not isinstance(found, str):
            return False
    return True


def resolves(host: str = HUB_HOST, timeout_s: float = DNS_TIMEOUT_S) -> bool:
    """Whether ``host`` resolves within ``timeout_s`` (a daemon thread: never hangs the caller)."""
    answer: list[bool] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, 443)
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=look_up, daemon=True, name="dsdcompare-dns")
    thread.start()
    thread.join(timeout_s)
    return bool(answer and answer[0])


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def detect_mode(env: Mapping[str, str] | None = None, *, gpu: bool = False,
                toy_ready: Callable[[], bool] = toy_weights_ready,
                cached: Callable[[], bool] = hub_weights_cached,
                online: Callable[[], bool] = resolves) -> Detected:
    """The default weight mode for this host, and the reason, decided in about a second at most.

    1. ``$DSDCOMPARE_DASHBOARD_MODE`` (hub | toy | tiny | arch) wins.
    2. ``HF_HUB_OFFLINE`` set: no hub unless every seed repo is already cached.
    3. Every seed repo cached locally: hub.
    4. A GPU and ``huggingface.co`` resolving: hub (weights download on first use).
    5. Else the toy pair if its weights are committed, else the tiny stand-ins.
    """
    env = os.environ if env is None else env
    forced = env.get(MODE_ENV, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{MODE_ENV}={forced!r} is not one of {list(MODES)}")
        return Detected(forced, f"set by {MODE_ENV}")
    if cached():
        return Detected("hub", "the seed models' weights are in the local Hugging Face cache")
    if _truthy(env.get("HF_HUB_OFFLINE")):
        why = "HF_HUB_OFFLINE is set and the seed models are not cached"
    elif not gpu:
        why = ("no GPU: the four seed models would take minutes per image on this CPU "
               "(and need several GB of downloads)")
    elif not online():
        why = f"{HUB_HOST} does not resolve (offline?) and the seed models are not cached"
    else:
        return Detected("hub", f"a GPU is present and {HUB_HOST} is reachable")
    if toy_ready():
        return Detected("toy", why + "; showing the trained toy pair")
    return Detected("tiny", why + "; the toy weights are not built yet, so showing tiny stand-ins")


def mode_from_params(params: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The link's ``weights`` parameter: ``(mode, None)``, ``(None, error)`` or ``(None, None)``."""
    value = params.get("weights")
    if value is None:
        return None, None
    if value not in MODES:
        return None, f"weights={value!r} is not one of {', '.join(MODES)}"
    return value, None


# --- resolved settings ---------------------------------------------------------------------------

def banner_texts(mode: Mode, scorer: str | None, scorer_standin: bool) -> tuple[str, ...]:
    """What every page says about stand-ins: models first, then the scorer."""
    out = [mode.banner] if mode.banner else []
    if mode.key == "toy" and not toy_weights_ready():
        out.append("The toy weights are not built here (python -m dsdcompare toyzoo train), so "
                   "the toy models will fail to load: choose the tiny stand-ins in the sidebar.")
    if scorer == SCORER_STANDIN and mode.key not in ("tiny", "arch"):
        out.append("Stand-in scorer: the toy CLIP is not built here, so CLIP scores come from a "
                   "tiny random CLIP and mean nothing.")
    elif scorer is not None and scorer_standin and mode.key == "hub":
        out.append("Real models scored by a stand-in or toy CLIP: the CLIP scores mean nothing "
                   "for these images.")
    return tuple(out)


def model_choices(mode: Mode) -> list[str]:
    """Registered models this mode's source can load, seed and toy models first."""
    return [k for k in list_models() if mode.serves(k)]


def scorer_for(choice: str, mode: Mode) -> tuple[str, str | None, bool]:
    """A sidebar scorer ``choice`` under ``mode``: the choice ``dsdcompare.record`` reads, the
    checkpoint it means (None: no scoring) and whether its numbers are a stand-in's or toy's.

    ``auto`` follows the weights: ViT-L/14 for real models, the toy CLIP for the toy pair (the
    tiny CLIP when the toy CLIP is not built), the tiny CLIP for random-weight stand-ins.
    """
    if choice not in SCORER_CHOICES:
        raise ValueError(f"scorer choice {choice!r} is not one of {list(SCORER_CHOICES)}")
    record_choice = _RECORD_CHOICE[choice]
    # the banner names the scorer before any model is chosen: the mode's own models decide it
    checkpoint, standin = scorer_checkpoint(
        record_choice, [get_model(k) for k in mode.default_models], mode.source)
    return record_choice, checkpoint, standin


def init_session() -> None:
    """Set the sidebar's session defaults once (idempotent; the frame calls it every run)."""
    ss = st.session_state
    if "sb_mode" not in ss:
        mode, error = mode_from_params(st.query_params.to_dict())
        ss.sb_mode = mode or "auto"
        ss.url_errors = [f"Link parameter rejected: {error}. Kept automatic choice."] if error else []
    ss.setdefault("sb_device", "auto")
    ss.setdefault("sb_dtype", "auto")
    ss.setdefault("sb_scorer", "auto")
    ss.setdefault("sb_metrics", [])
    ss.setdefault("sb_store", resources.default_store_path())
    ss.setdefault("sb_save", True)


def settings() -> Settings:
    """The sidebar's choices, resolved (auto weight mode, scorer, stand-in banners)."""
    init_session()
    ss = st.session_state
    detected = resources.detected_mode()
    auto = ss.sb_mode == "auto"
    mode = MODES[detected.mode if auto else ss.sb_mode]
    choice, scorer, scorer_standin = scorer_for(ss.sb_scorer, mode)
    public = public_mode()
    # public: the operator's store, or the visitor's own upload; never a path a visitor typed
    store_path = (ss.get("public_bundle") or resources.default_store_path()) if public \
        else str(ss.sb_store)
    return Settings(
        mode=mode, mode_reason=detected.reason if auto else "chosen in the sidebar",
        device=ss.sb_device, dtype=ss.sb_dtype, scorer_choice=choice, scorer=scorer,
        scorer_standin=scorer_standin, store_path=store_path, save=bool(ss.sb_save),
        banners=banner_texts(mode, scorer, scorer_standin), public=public,
        extra_metrics=tuple(ss.sb_metrics),
    )



def resolved_device(s: Settings) -> str:
    """``auto`` -> the device this host would use (for defaults and labels)."""
    return resources.host()["auto_device"] if s.device == "auto" else s.device


# --- drawing ------------------------------------------------------------------------------------

def store_info(s: Settings) -> str:
    """One line under the store field: what happens to comparisons (and a bundle's size).
    It may quote the path: show it with :func:`ui.common.plain`."""
    if s.store_readonly:
        store, why = resources.cached_store(s.store_path, readonly=True)
        return (f"Read-only bundle: {why}" if store is None else
                f"Read-only bundle, {len(store.runs())} runs. Comparisons are not saved.")
    return "Comparisons are saved here as each model finishes." if s.save else \
        "Comparisons are not saved."


def close_upload() -> None:
    """Callback of "Back to the demo's results": the session's own bundle is no longer its store."""
    st.session_state.pop("public_bundle", None)


def _store_ui(s: Settings) -> None:
    st.markdown("### Results store")
    if s.public:  # the operator's path, shown; a visitor cannot type one
        st.text_input("Store (set by the operator)", value=resources.default_store_path(),
                      disabled=True, key="sb_store_public",
                      help="This is a public server: comparisons are saved where its operator "
                           "chose. Open a bundle of your own on the History page: it is "
                           "read-only and only for this session.")
        if resources.session_upload(s.store_path):
            st.caption("Showing your uploaded bundle (read-only, this session only).")
            st.button("Back to the demo's results", key="sb_close_upload", on_click=close_upload,
                      icon=":material/undo:")
    else:
        st.text_input("Store (SQLite file, folder or bundle .zip)", key="sb_store",
                      help="Where comparisons are saved and what the History and Speed vs "
                           "quality pages read. A bundle .zip opens read-only.")
    st.toggle("Save each comparison", key="sb_save", disabled=s.store_readonly,
              help="Store every result (timings, scores, PNGs) as it finishes.")
    st.caption(plain(store_info(s)))


def sidebar_ui(s: Settings) -> None:
    """The frame's sidebar: weights, device, dtype, scorer, results store (values in session)."""
    detected, host = resources.detected_mode(), resources.host()
    with st.sidebar:
        st.markdown("### Settings")
        st.selectbox(
            "Weights", ["auto", *MODES], key="sb_mode",
            format_func=lambda k: (f"Auto → {MODES[detected.mode].label.split(' (')[0]}"
                                   if k == "auto"
                                   else MODES[k].label),
            help="Where the models' weights come from. **Toy pair**: a miniature teacher and "
                 "student trained by dsdcompare on synthetic shapes. **Tiny stand-ins**: the "
                 "four seed models shrunk, random weights (noise). **Real weights**: the hub "
                 "repos (cached, or downloaded on first use). **Full size, random weights**: "
                 "real latency and memory, noise images. Auto picks real weights only when they "
                 "are cached, or a GPU can download them.")
        st.caption(f"{'Auto' if st.session_state.sb_mode == 'auto' else 'Chosen'}: "
                   f"**{s.mode.key}** — {s.mode_reason}.")  # our own sentence
        c1, c2 = st.columns(2)
        c1.selectbox("Device", host["devices"], key="sb_device",
                     help=f"auto = {host['auto_device']} on this host")
        c2.selectbox("Precision", DTYPES, key="sb_dtype",
                     help="auto = fp32 on a CPU, fp16 on a GPU")
        st.selectbox("CLIP scorer", list(SCORER_CHOICES), key="sb_scorer",
                     format_func=SCORER_CHOICES.get)
        st.multiselect("More scores", list(EXTRA_METRICS), key="sb_metrics",
                       format_func=EXTRA_METRICS.get,
                       help="Preference models and perceptual distance, each stored with its own "
                            "checkpoint. Their weights come from `dsdcompare download --scorers "
                            "NAME` (about 1-4 GB each); a missing one costs its score only.")
        budget = host["budget_bytes"]
        st.caption("Pipelines kept loaded: " + (
            "one at a time (small host)" if budget == 0 else f"up to {budget / 2**30:.1f} GB")
            + f" of {host['memory_bytes'] / 2**30:.0f} GB memory.")
        _store_ui(s)
        cost.rate_ui()  # $ per device-hour -> the cost column (ui/cost.py)


def banners_ui(s: Settings) -> None:
    """The stand-in / toy banners every page shows under its title."""
    for text in s.banners:
        if s.mode.key == "toy" and text.startswith("Toy models"):
            st.info(text, icon=":material/toys:")
        else:
            st.warning(text, icon=":material/warning:")


def models_file_ui(problem: str | None) -> None:
    """The models file's error, on every page while it stands (the built-in models still work)."""
    if problem:
        st.error(plain(f"Your models file was not loaded, so only the built-in models are "
                       f"offered: {problem}. Fix the file and reload this page, or unset "
                       f"DSDCOMPARE_MODELS and restart the server."), icon=":material/error:")


# --- the warm start -----------------------------------------------------------------------------

def warm_start():
    """Begin (once per server) loading the default weight mode's models and scorer in the
    background and running each once at the default form's shape; the
    :class:`~ui.resources.WarmStart`, or None when it is off (``DSDCOMPARE_WARM_START=0``)."""
    if not resources.warm_start_enabled():
        return None
    from .compare import base_form  # the Compare form's defaults: the shape to warm up

    detected = resources.detected_mode()
    mode = MODES[detected.mode]
    _, checkpoint, standin = scorer_for("auto", mode)
    defaults = Settings(mode=mode, mode_reason=detected.reason, device="auto", dtype="auto",
                        scorer_choice="auto", scorer=checkpoint, scorer_standin=standin,
                        store_path="", save=False)
    form = base_form(defaults)
    request = replace(form.request(), steps=resources.WARM_STEPS, warmup=0, repeats=1)
    models = [m.key for m in teachers_first([get_model(k) for k in form.models])]
    if resources.host()["budget_bytes"] == 0:
        models = models[:1]  # one pipeline at a time: only the one a comparison needs first
    scorer_label = "the CLIP scorer" if checkpoint is None else \
        f"the CLIP scorer ({Path(checkpoint).name})"
    return resources.warm_start(
        mode.source, tuple(models), tuple(get_model(k).name for k in models),
        None if checkpoint is None else (checkpoint, "auto", standin), scorer_label, request)


def warm_status_ui(warm, *, blind: bool = False) -> None:
    """While the warm start runs: what is still loading, refreshed every second; the page
    reruns once when all is loaded (so the line goes away). ``blind``: a page that must not
    name models (a blind review) is told how many things are left, not which."""
    if warm is None or warm.finished:
        return

    @st.fragment(run_every=1.0)
    def status() -> None:
        if warm.finished:
            st.rerun()
        now, rest = warm.current, [p for p in warm.pending if p not in warm.running]
        what = (f"{len(warm.pending)} item(s) left" if blind else
                f"loading {plain(now or '…')}" + (f"; then {plain(', '.join(rest))}" if rest else ""))
        st.caption(f":material/hourglass_top: Getting ready in the background "
                   f"({time.monotonic() - warm.started:.0f} s): {what}. "
                   f"Generate works now and waits for what it needs.")
    status()
