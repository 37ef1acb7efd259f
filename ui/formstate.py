"""The Compare form as plain data, and its round trip through the URL (no Streamlit here).

A comparison is shared as a link: :func:`to_params` writes the form into query parameters and
:func:`from_params` reads them back. The widgets make out-of-range values impossible; values
arriving through a URL are checked against the *same* limits (:data:`LIMITS`), and each bad one
is rejected with a message naming the parameter, the value and the valid range — never silently
clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from dsdcompare.engine import Request

from .settings import MODES, SIZES

#: Widget and URL limits: name -> (min, max).
LIMITS = {"seed": (0, 2**32 - 1), "steps": (1, 100), "guidance": (0.0, 20.0),
          "repeats": (1, 10), "warmup": (0, 3)}
MAX_PROMPT_CHARS = 2000
#: Query parameter names (short, readable links).
PARAMS = ("prompt", "neg", "seed", "steps", "cfg", "size", "models", "repeats", "warmup", "weights")


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
    repeats: int = 1  # steady-state calls timed
    warmup: int = 1  # warm-up calls excluded from the steady state

    def request(self) -> Request:
        """The engine Request for this form (validated by the caller)."""
        return Request(prompt=self.prompt, negative_prompt=self.negative_prompt, seed=self.seed,
                       steps=self.steps, guidance=float(self.guidance), size=self.size,
                       repeats=self.repeats, warmup=self.warmup)


def size_label(size: int | None) -> str:
    """``None`` -> "native (each model its own)", 256 -> "256 × 256 (all models)"."""
    return "native (each model its own)" if size is None else f"{size} × {size} (all models)"


def to_params(form: FormState, mode: str | None = None) -> dict[str, str]:
    """Query parameters for ``form`` (and the weight mode) — a shareable link."""
    params = {"prompt": form.prompt, "seed": str(form.seed), "steps": str(form.steps),
              "cfg": f"{form.guidance:g}", "size": "native" if form.size is None else str(form.size),
              "models": ",".join(form.models)}
    if form.negative_prompt:
        params["neg"] = form.negative_prompt
    if form.repeats != 1:
        params["repeats"] = str(form.repeats)
    if form.warmup != 1:
        params["warmup"] = str(form.warmup)
    if mode:
        params["weights"] = mode
    return params


def _int(name: str, text: str) -> int:
    lo, hi = LIMITS[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer; it must be from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is out of range; it must be from {lo} to {hi}")
    return value


def _guidance(text: str) -> float:
    lo, hi = LIMITS["guidance"]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"cfg={text!r} is not a number; guidance must be from {lo:g} to {hi:g}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"cfg={text} is out of range; guidance must be from {lo:g} to {hi:g}")
    return value


def _size(text: str) -> int | None:
    if text == "native":
        return None
    allowed = ", ".join(["native"] + [str(s) for s in SIZES if s])
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"size={text!r} is not one of {allowed}") from None
    if value not in SIZES:
        raise ValueError(f"size={value} is not one of {allowed}")
    return value


def _models(text: str, allowed: Iterable[str]) -> tuple[str, ...]:
    allowed = list(allowed)
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise ValueError(f"models={text!r}: {', '.join(map(repr, unknown))} cannot be compared "
                         f"with these weights; choose from {', '.join(allowed)}")
    if not keys:
        raise ValueError("models is empty; choose at least one model")
    return keys


def mode_from_params(params: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The ``weights`` parameter: ``(mode, None)``, ``(None, error)`` or ``(None, None)``."""
    value = params.get("weights")
    if value is None:
        return None, None
    if value not in MODES:
        return None, f"weights={value!r} is not one of {', '.join(MODES)}"
    return value, None


def from_params(params: Mapping[str, str], base: FormState,
                allowed_models: Iterable[str]) -> tuple[FormState, list[str]]:
    """``base`` updated with the valid query parameters, and one message per rejected one.

    A rejected value keeps ``base``'s value for that field; the message says which it kept.
    """
    changes: dict = {}
    errors: list[str] = []
    parsers = {
        "prompt": ("prompt", lambda t: _text("prompt", t)),
        "neg": ("negative_prompt", lambda t: _text("neg", t)),
        "seed": ("seed", lambda t: _int("seed", t)),
        "steps": ("steps", lambda t: _int("steps", t)),
        "cfg": ("guidance", _guidance),
        "size": ("size", _size),
        "models": ("models", lambda t: _models(t, allowed_models)),
        "repeats": ("repeats", lambda t: _int("repeats", t)),
        "warmup": ("warmup", lambda t: _int("warmup", t)),
    }
    for name, (fieldname, parse) in parsers.items():
        if name not in params:
            continue
        try:
            changes[fieldname] = parse(params[name])
        except ValueError as err:
            errors.append(f"Link parameter rejected: {err}. "
                          f"Kept {_describe(fieldname, getattr(base, fieldname))}.")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        errors.append(f"Link parameter(s) {', '.join(unknown)} are not used by this page "
                      f"(known: {', '.join(PARAMS)}).")
    return replace(base, **changes), errors


def _describe(fieldname: str, value) -> str:
    if fieldname == "models":
        return ", ".join(value) or "no models"
    if fieldname == "size":
        return size_label(value)
    return repr(value)


def _text(name: str, text: str) -> str:
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} has {len(text)} characters; at most {MAX_PROMPT_CHARS}")
    return text
