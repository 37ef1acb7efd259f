"""Session state: defaults set once per session, and the resolved settings every page reads.

Widget keys are page-unique: ``sb_*`` for the sidebar (drawn by ``dashboard.py``), ``compare_*``,
``sq_*``, ``history_*`` and ``models_*`` for the pages. Streamlit forgets a page's widget values
when the user moves to another page, so the Compare form keeps its last submitted values in
``compare_last`` (plain data) and restores them on return.
"""

from __future__ import annotations

import random
from dataclasses import replace

import streamlit as st

from . import resources
from .formstate import FormState, from_params, mode_from_params
from .settings import MODES, Settings, banners, form_defaults, model_choices, resolve_scorer

DEFAULT_PROMPT = "a red circle on a blue background"
#: Compare form field -> widget key.
FORM_KEYS = {"prompt": "compare_prompt", "negative_prompt": "compare_negative",
             "seed": "compare_seed", "steps": "compare_steps", "guidance": "compare_guidance",
             "size": "compare_size", "models": "compare_models", "repeats": "compare_repeats",
             "warmup": "compare_warmup"}


def init_session() -> None:
    """Set the frame's session defaults once (idempotent; every page calls it)."""
    ss = st.session_state
    if "sb_mode" not in ss:
        mode, error = mode_from_params(st.query_params.to_dict())
        ss.sb_mode = mode or "auto"
        ss.url_errors = [f"Link parameter rejected: {error}. Kept automatic choice."] if error else []
    ss.setdefault("sb_device", "auto")
    ss.setdefault("sb_dtype", "auto")
    ss.setdefault("sb_scorer", "auto")
    ss.setdefault("sb_store", resources.default_store_path())
    ss.setdefault("sb_save", True)


def settings() -> Settings:
    """The sidebar's choices, resolved (auto weight mode, scorer, stand-in banners)."""
    init_session()
    ss = st.session_state
    detected = resources.detected_mode()
    auto = ss.sb_mode == "auto"
    mode = MODES[detected.mode if auto else ss.sb_mode]
    scorer, scorer_standin = resolve_scorer(ss.sb_scorer, mode)
    return Settings(
        mode=mode, mode_reason=detected.reason if auto else "chosen in the sidebar",
        device=ss.sb_device, dtype=ss.sb_dtype, scorer=scorer, scorer_standin=scorer_standin,
        store_path=str(ss.sb_store), save=bool(ss.sb_save),
        banners=banners(mode, scorer, scorer_standin),
    )


def resolved_device(s: Settings) -> str:
    """``auto`` -> the device this host would use (for defaults and labels)."""
    return resources.host()["auto_device"] if s.device == "auto" else s.device


def base_form(s: Settings) -> FormState:
    """The Compare form's defaults for these settings (host- and mode-dependent)."""
    d = form_defaults(s.mode, resolved_device(s))
    return FormState(prompt=DEFAULT_PROMPT, seed=0, steps=d.steps, guidance=d.guidance,
                     size=d.size, models=tuple(s.mode.default_models))


def init_compare_form(s: Settings) -> list[str]:
    """Fill the Compare form's widget state once: from the URL (first visit), else the last
    submitted form, else the defaults. Returns messages to show (rejected link values, a reset).

    When the sidebar's weight mode changes, the models and host defaults follow it.
    """
    ss = st.session_state
    messages: list[str] = []
    choices = model_choices(s.mode)
    if "compare_url_done" not in ss:
        ss.compare_url_done = True
        params = {k: v for k, v in st.query_params.to_dict().items() if k != "weights"}
        form, errors = from_params(params, base_form(s), choices)
        messages += ss.get("url_errors", []) + errors
        ss.compare_from_url = bool(params)
        _write_form(form)
        ss.compare_mode_seen = s.mode.key
    elif ss.get("compare_mode_seen") != s.mode.key:
        base = base_form(s)
        current = _read_form() if FORM_KEYS["prompt"] in ss else (ss.get("compare_last") or base)
        _write_form(replace(current, models=base.models, steps=base.steps, size=base.size))
        ss.compare_mode_seen = s.mode.key
        messages.append(f"Weights changed to “{s.mode.label}”: models, steps and size reset "
                        f"to its defaults.")
    elif FORM_KEYS["prompt"] not in ss:  # back from another page: restore the last form
        _write_form(ss.get("compare_last") or base_form(s))
    models = [m for m in ss[FORM_KEYS["models"]] if m in choices]
    ss[FORM_KEYS["models"]] = models
    return messages


def _write_form(form: FormState) -> None:
    for field, key in FORM_KEYS.items():
        value = getattr(form, field)
        st.session_state[key] = list(value) if field == "models" else value


def _read_form() -> FormState:
    ss = st.session_state
    values = {field: ss.get(key) for field, key in FORM_KEYS.items()}
    values["models"] = tuple(values["models"] or ())
    values["guidance"] = float(values["guidance"])
    return FormState(**values)


def compare_form() -> FormState:
    """The Compare form's committed values (plain data), remembered as ``compare_last`` so the
    form is restored when the user comes back from another page."""
    form = _read_form()
    st.session_state.compare_last = form
    return form


def randomise_seed() -> None:
    """Callback of the "Random seed" button (runs before the script, so it may set the widget)."""
    st.session_state[FORM_KEYS["seed"]] = random.randint(0, 2**32 - 1)


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
