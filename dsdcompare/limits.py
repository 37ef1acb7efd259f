"""The one table of limits on what a user may ask for.

Read by :meth:`dsdcompare.engine.Request.validate`, the CLI's argument types, the dashboard's
form widgets and URL parsing, bench's list expansion, ``profile`` and the models file. A value is
checked against its :class:`Limit` and rejected with a message naming the value and the range;
it is never silently clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Limit:
    """The valid range of one user-chosen quantity."""

    name: str  # how messages name it
    lo: int | float  # smallest valid value
    hi: int | float  # largest valid value
    integer: bool = True  # whole numbers only
    multiple: int = 1  # valid values are multiples of this (image sides: 8)

    def describe(self) -> str:
        """The valid range in words, e.g. 'an integer from 1 to 500'."""
        if self.multiple > 1:
            head = f"a multiple of {self.multiple}"
        else:
            head = "an integer" if self.integer else "a number"
        return f"{head} from {self.lo:g} to {self.hi:g}" if not self.integer \
            else f"{head} from {self.lo} to {self.hi}"

    def ok(self, value) -> bool:
        """Whether ``value`` (already a number) is valid."""
        if isinstance(value, bool):
            return False
        if self.integer:
            if not isinstance(value, int):
                return False
        elif not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return self.lo <= value <= self.hi and (not self.integer or value % self.multiple == 0)

    def check(self, value):
        """Return ``value`` or raise :class:`~dsdcompare.errors.InputError` naming it."""
        if not self.ok(value):
            raise InputError(f"{self.name} must be {self.describe()}, got {value!r}")
        return value

    def parse(self, text: str):
        """Parse user text (a CLI argument, a URL value) and check it."""
        raw = str(text).strip()
        try:
            value = int(raw) if self.integer else float(raw)
        except ValueError:
            kind = "an integer" if self.integer else "a number"
            raise InputError(f"{self.name} must be {kind}, got {text!r}") from None
        return self.check(value)


#: The browser's number field is exact only up to 2**53 - 1 (JavaScript's safe integers), so
#: that is the largest seed a dashboard link can carry; the CLI takes the same range.
MAX_SEED = 2**53 - 1

SEED = Limit("seed", 0, MAX_SEED)
STEPS = Limit("steps", 1, 500)
GUIDANCE = Limit("guidance", 0.0, 50.0, integer=False)
SIZE = Limit("size", 64, 2048, multiple=8)  # image side in pixels (all models)
NATIVE_SIZE = Limit("native_size", 64, 2048, multiple=8)  # a model's own resolution
IMAGES = Limit("images_per_prompt", 1, 8)
REPEATS = Limit("repeats", 1, 100)
WARMUP = Limit("warmup", 0, 10)
THREADS = Limit("threads", 1, 256)
ROUNDS = Limit("rounds", 1, 20)  # interleaved profiling rounds
#: Price of one device-hour in US dollars (the dashboard's cost column; dsdcompare.cost).
USD_PER_HOUR = Limit("usd_per_hour", 0.0, 1000.0, integer=False)
#: Characters in a prompt or negative prompt (CLIP reads 77 tokens; more is surely a mistake).
MAX_PROMPT_CHARS = 2000
#: Items an expanded list (``--seeds 0-99``, ``--steps 10,20``) may hold.
MAX_LIST_ITEMS = 10_000
#: (prompt, seed, steps) items one sweep may hold (checked before the list is built).
MAX_WORK_ITEMS = 100_000

#: Every numeric limit by the name Request fields use.
LIMITS: dict[str, Limit] = {lim.name: lim for lim in (
    SEED, STEPS, GUIDANCE, SIZE, NATIVE_SIZE, IMAGES, REPEATS, WARMUP, THREADS, ROUNDS)}


def check_prompt(text, name: str = "prompt", *, required: bool = True) -> str:
    """Return ``text`` or raise naming the problem (empty, too long, not text)."""
    if not isinstance(text, str):
        raise InputError(f"{name} must be text, got {type(text).__name__}")
    if required and not text.strip():
        raise InputError(f"{name} is empty: give a text prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"{name} has {len(text)} characters; at most {MAX_PROMPT_CHARS}")
    return text


def parse_size(text: str) -> int | None:
    """``'native'`` -> None (each model at its own size), else a checked pixel side."""
    if str(text).strip().lower() == "native":
        return None
    try:
        return SIZE.parse(text)
    except InputError:
        raise InputError(f"size must be 'native' or {SIZE.describe()}, got {text!r}") from None


def parse_int_list(text: str, limit: Limit, *, max_items: int = MAX_LIST_ITEMS) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``: ranges and commas, each value checked by ``limit``.

    Linear in the size of the result, which is capped at ``max_items`` *before* any range is
    expanded, so ``0-99999999999`` is refused at once rather than hanging.
    """
    out: list[int] = []
    seen: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise InputError(f"{limit.name}: empty item in {text!r}; write e.g. 0-3,7")
        lo_text, dash, hi_text = part.partition("-") if not part.startswith("-") else (part, "", "")
        lo = limit.parse(lo_text)
        hi = limit.parse(hi_text) if dash else lo
        if hi < lo:
            raise InputError(f"{limit.name}: range {part!r} runs backwards; write {hi}-{lo}")
        if len(out) + (hi - lo + 1) > max_items:
            raise InputError(f"{limit.name}: {text!r} expands to more than {max_items} values; "
                             f"give a shorter range")
        for value in range(lo, hi + 1):
            if value not in seen:
                seen.add(value)
                out.append(value)
    return out
