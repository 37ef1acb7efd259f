"""Which weights, models, scorer and form defaults a dashboard session uses (no Streamlit here).

The dashboard offers four *weight modes*; each is one engine ``source`` plus the models and the
CLIP scorer that make sense with it:

=======  ==========  =====================================  ===================================
mode     source      models                                  scorer
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
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from dsdcompare.registry import SEED_MODELS, TOY_MODELS, TOY_CLIP_DIR, get_model, list_models

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
        """Whether this mode's source can load the model ``key``."""
        spec = get_model(key)
        if self.source == "hub":
            return bool(spec.repo_id)
        if self.source == "local":
            return bool(spec.local_dir)
        return bool(spec.arch)


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
#: Scorer choices offered in the sidebar (value -> label).
SCORER_CHOICES = {"auto": "Auto (follows the weights)", "none": "None (no CLIP score)",
                  "default": "CLIP ViT-L/14 (openai/clip-vit-large-patch14)",
                  "toy": "Toy CLIP (trained on synthetic shapes)",
                  "tiny": "Tiny random CLIP (stand-in, meaningless)"}
#: Common sizes offered in the form; ``None`` is each model's native size.
SIZES = (None, 64, 128, 256, 512, 768, 1024)


@dataclass(frozen=True)
class Detected:
    """The default weight mode and why it was chosen."""

    mode: str  # a key of MODES
    reason: str  # one sentence, shown in the sidebar


@dataclass(frozen=True)
class FormDefaults:
    """Form values that suit the host and mode, and why (shown under the form)."""

    steps: int
    size: int | None  # None: native
    guidance: float
    note: str


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose, resolved: everything a page needs to run or read."""

    mode: Mode
    mode_reason: str  # why this mode (auto detection or "chosen in the sidebar")
    device: str  # "auto" | "cpu" | "cuda" | ...
    dtype: str  # "auto" | "fp32" | "fp16" | "bf16"
    scorer: str | None  # checkpoint passed to load_scorer (None: no scoring)
    scorer_standin: bool  # the scorer's numbers are meaningless for real models
    store_path: str  # the active results store (SQLite file or a bundle .zip)
    save: bool  # store each comparison
    banners: tuple[str, ...] = field(default=())  # what every page says (stand-ins, toy scorer)

    @property
    def store_readonly(self) -> bool:
        """Bundles are opened read-only."""
        return self.store_path.lower().endswith(".zip")


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


def resolve_scorer(choice: str, mode: Mode) -> tuple[str | None, bool]:
    """The checkpoint for a sidebar scorer ``choice`` under ``mode``, and whether it is a stand-in.

    ``auto`` follows the mode: ViT-L/14 for hub, the toy CLIP for toy (the tiny CLIP when the
    toy CLIP is not built), the tiny CLIP for random-weight stand-ins.
    """
    from dsdcompare.metrics import DEFAULT_CHECKPOINT, SCORER_STANDIN

    if choice not in SCORER_CHOICES:
        raise ValueError(f"scorer choice {choice!r} is not one of {list(SCORER_CHOICES)}")
    if choice == "auto":
        choice = {"hub": "default", "toy": "toy"}.get(mode.key, "tiny")
    if choice == "none":
        return None, False
    if choice == "toy":
        if TOY_CLIP_DIR.is_dir():
            return str(TOY_CLIP_DIR), True
        return SCORER_STANDIN, True
    if choice == "tiny":
        return SCORER_STANDIN, True
    return DEFAULT_CHECKPOINT, False


def banners(mode: Mode, scorer: str | None, scorer_standin: bool) -> tuple[str, ...]:
    """What every page says about stand-ins: models first, then the scorer."""
    from dsdcompare.metrics import SCORER_STANDIN

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


def form_defaults(mode: Mode, device: str) -> FormDefaults:
    """Steps, size and guidance that finish in reasonable time on ``device`` (cpu | cuda | mps)."""
    if mode.key == "toy":
        specs = [get_model(k) for k in mode.default_models]
        steps = max(s.steps for s in specs)
        guidance = max(s.guidance for s in specs)  # the toy pair's own (3.0): 7.5 over-saturates
        return FormDefaults(steps, None, guidance, f"Toy pair: native 32 px, {steps} steps, "
                                                   f"guidance {guidance:g} (well under a second "
                                                   "per image on a CPU).")
    if mode.key == "tiny":
        return FormDefaults(4, 64, 7.5, "Tiny stand-ins: 64 px and 4 steps (seconds per model).")
    if device == "cpu":
        return FormDefaults(4, 256, 7.5, "CPU-only host: 256 px and 4 steps, so four models "
                                         "finish in minutes rather than hours; raise both on a "
                                         "GPU (the models were trained for native size, 30 steps).")
    return FormDefaults(30, None, 7.5, "GPU: native size and 30 steps, as in the model cards.")
