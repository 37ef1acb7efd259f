"""The project's one error family.

Every error dsdcompare raises on purpose derives from :class:`DsdCompareError`, so a front end
(the CLI, the dashboard) can turn any of them into a one-line message naming the value and the
remedy. Each class also keeps the built-in base its callers already catch (``ValueError`` for bad
input, ``RuntimeError`` for a missing resource).
"""

from __future__ import annotations


class DsdCompareError(Exception):
    """Base of the project's errors: the message is one line, names the value and the remedy."""


class InputError(DsdCompareError, ValueError):
    """A value given by the user is outside the limits table or malformed."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (the one-line form front ends show)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
