"""Progress over the denoising steps of several models, for people and for logs.

On a terminal: a live tqdm bar. Anywhere else (a log file, CI, a pipe): at most one line per
model and phase, so a long sweep writes a readable log instead of thousands of carriage-return
updates.
"""

from __future__ import annotations

import sys
from typing import TextIO


class StepProgress:
    """Counts denoising steps; shows them live on a terminal, as phase lines elsewhere.

    Feed it engine :class:`~dsdcompare.engine.Progress` events with :meth:`event`; ``n`` is the
    number of steps counted so far (callers correct it with :meth:`update`).
    """

    def __init__(self, total: int, desc: str, *, stream: TextIO | None = None,
                 live: bool | None = None, disable: bool = False, position: int | None = None):
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if live is None else live) and not disable
        self.desc, self.total, self.disable = desc, total, disable
        self.n = 0
        self._last: tuple[str, str] | None = None
        self._bar = None
        if self.live:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="step", desc=desc, file=self.stream,
                             position=position, dynamic_ncols=True)

    def event(self, ev, steps: int) -> None:
        """One engine progress event of a call with ``steps`` denoising steps."""
        if ev.phase in ("warmup", "repeat") and 0 < ev.step <= steps:
            self.update(1)
        if self._bar is not None:
            self._bar.set_postfix_str(f"{ev.model}: {ev.phase}", refresh=False)
        elif not self.disable and (ev.model, ev.phase) != self._last:
            self._last = (ev.model, ev.phase)
            detail = f" ({ev.message})" if ev.message else ""
            print(f"{self.desc}: {ev.model}: {ev.phase}{detail}", file=self.stream, flush=True)

    def update(self, k: int) -> None:
        """Count ``k`` more steps (negative corrects an over-count)."""
        self.n += k
        if self._bar is not None:
            self._bar.update(k)

    def note(self, text: str) -> None:
        """A status after the bar (live) or nothing (the phase lines already say enough)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """Finish the bar, or print the closing count."""
        if self._bar is not None:
            self._bar.close()
        elif not self.disable and self.total:
            print(f"{self.desc}: {self.n} of {self.total} steps done", file=self.stream, flush=True)
