"""The Compare page: the form as plain data, its link, its widgets, running it, showing the outcome.

A comparison is shared as a link: :func:`to_params` writes the form into query parameters and
:func:`from_params` reads them back. The widgets make out-of-range values impossible; values
arriving through a link are checked against the *same* limits (:mod:`dsdcompare.limits`, the
CLI's too, so a comparison made on the command line reopens here), and each bad one is rejected
with a message naming the parameter, the value and the valid range, never silently clamped.

Adding a form field: a :class:`FormState` attribute, a row of :data:`FIELDS` (link parameter,
widget key, link parser) and its widget in :func:`_form_widgets_ui`, all in this module.

Widget keys start with ``compare_``. Streamlit forgets a page's widget values when the user
moves to another page, so the form keeps its last committed values in ``compare_last`` (plain
data) and restores them on return.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import streamlit as st

from dsdcompare import limits
from dsdcompare.engine import Request, RequestError
from dsdcompare.errors import InputError
from dsdcompare.record import open_scorer, open_scorers, run_request
from dsdcompare.registry import get_model
from dsdcompare.tokenizers import prompt_truncation

from . import resources
from .common import messages, plain
from .cost import URL_PARAM as COST_PARAM
from .results import ProgressPanel, downloads, result_columns, results_table
from .sidebar import Mode, Settings, model_choices, resolved_device

DEFAULT_PROMPT = "a red circle on a blue background"
#: Live progress is redrawn at most this often (each redraw is a message to the browser; a
#: toy-pair call has 25 steps in a fraction of a second).
PROGRESS_INTERVAL_S = 0.25
#: Common sizes offered in the form; ``None`` is each model's native size. A link may carry any
#: size the limits allow (the CLI's ``--size``): it is added to the choices.
SIZES = (None, 64, 128, 256, 512, 768, 1024)


@dataclass(frozen=True)
class FormState:
    """What the Compare form holds."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 4
    guidance: float = 7.5
    size: int | None = None  # None: each model at its native size
    models: tuple[str, ...] = ()  # registry keys
    images: int = 1  # images per prompt (one batched call)
    repeats: int = 1  # steady-state calls timed
    warmup: int = 1  # warm-up calls excluded from the steady state

    def request(self) -> Request:
        """The engine Request for this form (validated by the caller)."""
        return Request(prompt=self.prompt, negative_prompt=self.negative_prompt, seed=self.seed,
                       steps=self.steps, guidance=float(self.guidance), size=self.size,
                       images_per_prompt=self.images, repeats=self.repeats, warmup=self.warmup)


@dataclass(frozen=True)
class FormDefaults:
    """Form values that suit the host and mode, and why (shown under the form)."""

    steps: int  # denoising steps
    size: int | None  # None: native
    guidance: float  # classifier-free guidance scale
    note: str  # why these values, one or two sentences


# --- the link ----------------------------------------------------------------------------------

def size_label(size: int | None) -> str:
    """``None`` -> "native (each model its own)", 256 -> "256 × 256 (all models)"."""
    return "native (each model its own)" if size is None else f"{size} × {size} (all models)"


def _integer(param: str, limit: limits.Limit) -> Callable[[str, Sequence[str]], int]:
    def parse(text: str, _models: Sequence[str]) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{param}={text!r} is not an integer; it must be from {limit.lo} "
                             f"to {limit.hi}") from None
        if not limit.ok(value):
            raise ValueError(f"{param}={value} is out of range; it must be from {limit.lo} "
                             f"to {limit.hi}")
        return value
    return parse


def _guidance(text: str, _models: Sequence[str]) -> float:
    lim = limits.GUIDANCE
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"cfg={text!r} is not a number; guidance must be from {lim.lo:g} "
                         f"to {lim.hi:g}") from None
    if not math.isfinite(value) or not lim.ok(value):
        raise ValueError(f"cfg={text} is out of range; guidance must be from {lim.lo:g} "
                         f"to {lim.hi:g}")
    return value


def _size(text: str, _models: Sequence[str]) -> int | None:
    try:
        return limits.parse_size(text)
    except InputError:
        common = ", ".join(["native"] + [str(s) for s in SIZES if s])
        raise ValueError(f"size={text} is not one of {common}, or {limits.SIZE.describe()}") \
            from None


def _models(text: str, allowed: Sequence[str]) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise ValueError(f"models={text!r}: {', '.join(map(repr, unknown))} cannot be compared "
                         f"with these weights; choose from {', '.join(allowed)}")
    if not keys:
        raise ValueError("models is empty; choose at least one model")
    return keys


def _text(param: str) -> Callable[[str, Sequence[str]], str]:
    def parse(text: str, _models: Sequence[str]) -> str:
        return limits.check_prompt(text, param, required=False)
    return parse


@dataclass(frozen=True)
class Field:
    """One form field: how it travels in a link and which widget holds it."""

    param: str  # query parameter (short, readable links)
    key: str  # widget key in session state
    parse: Callable[[str, Sequence[str]], Any]  # (link text, allowed models) -> value or ValueError
    always: bool = False  # in every link; otherwise only when it differs from FormState's default


#: FormState attribute -> its field, in form order.
FIELDS: dict[str, Field] = {
    "prompt": Field("prompt", "compare_prompt", _text("prompt"), always=True),
    "negative_prompt": Field("neg", "compare_negative", _text("neg")),
    "seed": Field("seed", "compare_seed", _integer("seed", limits.SEED), always=True),
    "steps": Field("steps", "compare_steps", _integer("steps", limits.STEPS), always=True),
    "guidance": Field("cfg", "compare_guidance", _guidance, always=True),
    "size": Field("size", "compare_size", _size, always=True),
    "models": Field("models", "compare_models", _models, always=True),
    "images": Field("images", "compare_images", _integer("images", limits.IMAGES)),
    "repeats": Field("repeats", "compare_repeats", _integer("repeats", limits.REPEATS)),
    "warmup": Field("warmup", "compare_warmup", _integer("warmup", limits.WARMUP)),
}
#: Query parameters a link may carry (``weights`` is the sidebar's).
PARAMS = (*(f.param for f in FIELDS.values()), "weights", COST_PARAM)  # usd_h: ui/cost.py


def _link_text(name: str, value) -> str:
    if name == "size":
        return "native" if value is None else str(value)
    if name == "models":
        return ",".join(value)
    if name == "guidance":
        return f"{value:.15g}"  # 30.0 -> "30", and every digit a CLI value had
    return str(value)


def to_params(form: FormState, mode: str | None = None) -> dict[str, str]:
    """Query parameters for ``form`` (and the weight mode): a shareable link."""
    default = FormState()
    params = {f.param: _link_text(name, getattr(form, name)) for name, f in FIELDS.items()
              if f.always or getattr(form, name) != getattr(default, name)}
    if mode:
        params["weights"] = mode
    return params


def from_params(params: Mapping[str, str], base: FormState,
                allowed_models: Sequence[str]) -> tuple[FormState, list[str]]:
    """``base`` updated with the valid query parameters, and one message per rejected one.

    A rejected value keeps ``base``'s value for that field; the message says which it kept.
    """
    allowed = list(allowed_models)
    changes: dict = {}
    errors: list[str] = []
    for name, f in FIELDS.items():
        if f.param not in params:
            continue
        try:
            changes[name] = f.parse(params[f.param], allowed)
        except ValueError as err:
            errors.append(f"Link parameter rejected: {err}. "
                          f"Kept {_describe(name, getattr(base, name))}.")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        errors.append(f"Link parameter(s) {', '.join(unknown)} are not used by this page "
                      f"(known: {', '.join(PARAMS)}).")
    return replace(base, **changes), errors


def _describe(name: str, value) -> str:
    if name == "models":
        return ", ".join(value) or "no models"
    if name == "size":
        return size_label(value)
    return repr(value)


# --- the form's state ---------------------------------------------------------------------------

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


def base_form(s: Settings) -> FormState:
    """The Compare form's defaults for these settings (host- and mode-dependent)."""
    d = form_defaults(s.mode, resolved_device(s))
    return FormState(prompt=DEFAULT_PROMPT, seed=0, steps=d.steps, guidance=d.guidance,
                     size=d.size, models=tuple(s.mode.default_models))


def init_form(s: Settings) -> list[str]:
    """Fill the form's widget state once: from the URL (first visit), else the last committed
    form, else the defaults. Returns messages to show (rejected link values, a reset).

    When the sidebar's weight mode changes, the models and host defaults follow it.
    """
    ss = st.session_state
    out: list[str] = []
    choices = model_choices(s.mode)
    if "compare_url_done" not in ss:
        ss.compare_url_done = True
        params = {k: v for k, v in st.query_params.to_dict().items() if k != "weights"}
        form, errors = from_params(params, base_form(s), choices)
        out += ss.get("url_errors", []) + errors
        ss.compare_from_url = bool(params)
        _write_form(form)
        ss.compare_mode_seen = s.mode.key
    elif ss.get("compare_mode_seen") != s.mode.key:
        base = base_form(s)
        current = _read_form() if FIELDS["prompt"].key in ss else (ss.get("compare_last") or base)
        _write_form(replace(current, models=base.models, steps=base.steps, size=base.size))
        ss.compare_mode_seen = s.mode.key
        out.append(f"Weights changed to “{s.mode.label}”: models, steps and size reset "
                   f"to its defaults.")
    elif FIELDS["prompt"].key not in ss:  # back from another page: restore the last form
        _write_form(ss.get("compare_last") or base_form(s))
    key = FIELDS["models"].key
    ss[key] = [m for m in ss[key] if m in choices]
    return out


def _write_form(form: FormState) -> None:
    for name, f in FIELDS.items():
        value = getattr(form, name)
        st.session_state[f.key] = list(value) if name == "models" else value


def _read_form() -> FormState:
    values = {name: st.session_state.get(f.key) for name, f in FIELDS.items()}
    values["models"] = tuple(values["models"] or ())
    values["guidance"] = float(values["guidance"])
    return FormState(**values)


def committed_form() -> FormState:
    """The form's committed values (plain data), remembered as ``compare_last`` so the form is
    restored when the user comes back from another page."""
    form = _read_form()
    st.session_state.compare_last = form
    return form


def randomise_seed() -> None:
    """Callback of the "Random seed" button (runs before the script, so it may set the widget)."""
    st.session_state[FIELDS["seed"].key] = random.randint(limits.SEED.lo, limits.MAX_SEED)


# --- widgets --------------------------------------------------------------------------------------

def form_ui(s: Settings) -> tuple[FormState, bool]:
    """The Compare form, filled once from the link or the last form: its committed values and
    whether Generate was pressed."""
    messages(init_form(s))
    if st.session_state.get("compare_from_url"):
        st.caption(":material/link: Form filled from the link. Press **Generate** to run it.")
    pressed = _form_widgets_ui(model_choices(s.mode), form_defaults(s.mode, resolved_device(s)))
    return committed_form(), pressed


def _number(column, label: str, name: str, limit: limits.Limit, **kwargs) -> None:
    column.number_input(label, min_value=limit.lo, max_value=limit.hi, key=FIELDS[name].key,
                        **kwargs)


def _form_widgets_ui(choices: list[str], defaults: FormDefaults) -> bool:
    keys = {name: f.key for name, f in FIELDS.items()}
    size_now = st.session_state.get(keys["size"])
    sizes = SIZES if size_now in SIZES else (*SIZES, size_now)  # a link's size stays choosable
    with st.form("compare_form", border=True):
        st.text_area("Prompt", key=keys["prompt"], height=80, max_chars=limits.MAX_PROMPT_CHARS,
                     placeholder="e.g. a red circle on a blue background")
        st.text_input("Negative prompt", key=keys["negative_prompt"],
                      max_chars=limits.MAX_PROMPT_CHARS,
                      help="What to steer away from. SSD-1B's card recommends one.")
        c1, c2, c3, c4 = st.columns([1.3, 1, 1, 1.6])
        _number(c1, "Seed", "seed", limits.SEED, step=1,
                help="The same seed gives every model the same starting noise.")
        _number(c2, "Steps", "steps", limits.STEPS, step=1)
        _number(c3, "Guidance", "guidance", limits.GUIDANCE, step=0.5, format="%.1f")
        # Streamlit shows a None value as "no selection": its placeholder names what None means
        c4.selectbox("Size", sizes, key=keys["size"], format_func=size_label,
                     placeholder=size_label(None),
                     help="Native: each model at the resolution it was trained for.")
        st.multiselect("Models", choices, key=keys["models"], format_func=lambda k: get_model(k).name,
                       help="Teachers are shown beside their students.")
        with st.expander("Batch and timing protocol"):
            t1, t2, t3 = st.columns(3)
            _number(t1, "Images per prompt", "images", limits.IMAGES, step=1,
                    help="Generated in one batched call; the latency is the whole batch's.")
            _number(t2, "Warm-up calls (not timed)", "warmup", limits.WARMUP, step=1)
            _number(t3, "Timed repeats", "repeats", limits.REPEATS, step=1)
        b1, b2, _ = st.columns([1, 1, 3])
        with b1:
            pressed = st.form_submit_button("Generate", type="primary", key="compare_generate",
                                            width="stretch")
        with b2:
            st.form_submit_button("Random seed", key="compare_random", icon=":material/casino:",
                                  on_click=randomise_seed, width="stretch")
    st.caption(defaults.note)
    return bool(pressed)


# --- running it ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One finished comparison, kept in session state (plain data and PIL images, no pipelines)."""

    request: Request  # what ran
    results: list  # engine Results, teachers before their students
    mode: str  # weight mode key
    seconds: float  # wall time from Generate to the last result
    run_id: int | None = None  # id in the results store, when saved
    notes: list[str] = field(default_factory=list)  # scorer or store problems to show
    warm_skipped: bool = False  # the form's warm-up calls were not run: every pipeline was warm


class Throttled:
    """A progress callback that passes on phase changes, first and last steps, and other steps
    at most every ``interval`` seconds (a redraw per denoising step costs more than the step)."""

    def __init__(self, show, interval: float = PROGRESS_INTERVAL_S):
        self.show = show
        self.interval = interval
        self.last = (None, 0.0)  # (model, phase, call) last shown, when

    def __call__(self, ev) -> None:
        now = time.perf_counter()
        where = (ev.model, ev.phase, ev.call)
        stepping = ev.phase in ("warmup", "repeat") and 1 < ev.step < ev.total_steps
        if stepping and where == self.last[0] and now - self.last[1] < self.interval:
            return
        self.last = (where, now)
        self.show(ev)


def wait_for_warm_start(warm) -> None:
    """Generate pressed while the warm start still loads: wait for it (it is loading what this
    comparison needs first), saying what is left, instead of loading the same things twice."""
    if warm is None or warm.finished:
        return
    with st.status("Finishing the background loading…", expanded=False) as box:
        while not warm.wait(0.5):
            box.update(label=plain(f"Finishing the background loading: {warm.current or '…'}"))
        box.update(label="Background loading finished", state="complete")


def warm_request(s: Settings, request: Request, models: list[str]) -> Request:
    """``request`` without its warm-up calls when every model's pipeline is loaded and has run
    at this shape already (a warm-up call on a warm pipeline measures nothing), else as is."""
    if request.warmup == 0:
        return request
    warmth, cache = resources.warmth(), resources.pipeline_cache()
    keys = [(k, s.mode.source, s.device, s.dtype) for k in models]
    if all(warmth.warm(key, request, cache) for key in keys):
        return replace(request, warmup=0)
    return request


def run_comparison(s: Settings, request: Request, models: list[str], panel: ProgressPanel, *,
                   warm_skipped: bool = False) -> Outcome:
    """Run ``request`` through ``models`` on the one recording path, with the dashboard's shared
    pipeline cache and scorer; each result is stored as it finishes and shown in ``panel``, and
    each pipeline that ran is remembered as warm at this shape (:class:`ui.resources.Warmth`)."""
    started = time.perf_counter()
    warmth = resources.warmth()

    def finished(result) -> None:
        warmth.record((result.model, s.mode.source, s.device, s.dtype), request, result)
        panel.finished(result)

    notes: list[str] = []
    specs = [get_model(k) for k in models]
    # 1. The shared scorer and store (either may be unavailable: say so, go on)
    scorer, why_no_score = open_scorer(s.scorer_choice, specs, s.mode.source, s.device,
                                       loader=resources.scorer)
    if why_no_score and s.scorer is not None:
        notes.append(f"No CLIP score: {why_no_score}")
    extra, why_none = open_scorers(s.extra_metrics, specs, s.mode.source, s.device,
                                   metric_loader=resources.metric_scorer)
    notes += [f"No {metric} score: {why}" for metric, why in why_none.items()]
    store = None
    if s.save and not s.store_readonly:
        store, why = resources.cached_store(s.store_path, readonly=False, create=True)
        if store is None:
            notes.append(f"Not saved: {why}")
    # 2. The comparison (one Result per model; a failing model never stops the others)
    recording = run_request(
        request, specs, store=store, note="dashboard", scorer=scorer,
        scorer_choice=s.scorer or "none", no_score_reason=why_no_score, on_result=finished,
        scorers=extra, no_score_reasons=why_none,
        source=s.mode.source, device=s.device, dtype=s.dtype, cache=resources.pipeline_cache(),
        progress=Throttled(panel))
    panel.close(recording.results)
    return Outcome(request, recording.results, s.mode.key, time.perf_counter() - started,
                   recording.run_id, notes + recording.notes, warm_skipped)


def _problem(form: FormState) -> str | None:
    if not form.prompt.strip():
        return "Enter a prompt first: an empty prompt gives every model nothing to follow."
    if not form.models:
        return "Choose at least one model."
    try:
        form.request().validate()
    except RequestError as err:
        return str(err)
    return None


def generate_ui(s: Settings, form: FormState) -> None:
    """Generate was pressed: check the form, put it in the URL, run it with live progress and
    keep the outcome in session state (an inline message instead when the form is not runnable)."""
    problem = _problem(form)
    if problem:
        st.error(plain(problem), icon=":material/edit_note:")
        return
    from .sidebar import warm_start

    wait_for_warm_start(warm_start())  # before anything here imports transformers
    for text, what in ((form.prompt, "prompt"), (form.negative_prompt, "negative prompt")):
        cut = prompt_truncation(text) if text else None
        if cut:
            st.warning(plain(cut.message(what)), icon=":material/content_cut:")
    st.query_params.from_dict(to_params(form, s.mode.key))
    st.session_state.compare_from_url = False
    request = warm_request(s, form.request(), list(form.models))
    panel = ProgressPanel({k: plain(get_model(k).name) for k in form.models},  # Markdown text
                          warmup=request.warmup, repeats=form.repeats, steps=form.steps)
    try:
        st.session_state.compare_outcome = run_comparison(
            s, request, list(form.models), panel, warm_skipped=request.warmup < form.warmup)
    except (RequestError, ValueError) as err:  # e.g. a device this host lacks
        panel.failed()
        st.error(plain(err))


def outcome_ui() -> None:
    """The last outcome: images side by side, the table, downloads (a hint before the first)."""
    outcome = st.session_state.get("compare_outcome")
    if outcome is None:
        st.info("Results appear here, one column per model, teachers beside their students.",
                icon=":material/compare:")
        return
    req = outcome.request
    st.subheader("Results")
    negative = f" · negative “{plain(req.negative_prompt)}”" if req.negative_prompt else ""
    st.caption(f"“{plain(req.prompt)}”{negative}"
               + f" · seed {req.seed} · {req.steps} steps · guidance {req.guidance:g} · "
               + ("native size" if req.size is None else f"{req.size}²")
               + (f" · {req.images_per_prompt} images each" if req.images_per_prompt > 1 else "")
               + f" · {len(outcome.results)} models in {outcome.seconds:.1f} s"
               + (f" · saved as run {outcome.run_id}" if outcome.run_id else "")
               + (" · no warm-up call: the pipelines were already warm at this size"
                  if getattr(outcome, "warm_skipped", False) else ""))
    messages(outcome.notes)
    result_columns(outcome.results, key_prefix="compare", prompt=req.prompt, seed=req.seed)
    results_table(outcome.results)
    downloads(outcome.results, key_prefix="compare", prompt=req.prompt, seed=req.seed)
    st.caption("Latency is the steady-state median of the timed calls (warm-up excluded); stages "
               "add up to it. The address bar holds this comparison: share the link to reopen it.")
