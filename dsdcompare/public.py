"""Public mode: the dashboard served to anyone (the Community Cloud demo), set by the operator.

``DSDCOMPARE_PUBLIC=1`` (an environment variable, or a root-level key of the app's Secrets on
Community Cloud) says that visitors are strangers. The dashboard then lets no visitor choose where
the server writes: the results store is the operator's (``$DSDCOMPARE_STORE`` or the default),
fixed; a visitor's uploaded bundles are opened read-only for their session only, and uploads are
capped in number and size (:mod:`dsdcompare.store.uploads`); error details are left to
Streamlit's ``client.showErrorDetails`` (set it to ``"none"`` for a public app; see
docs/DEPLOY.md). This module only reads the setting; the dashboard applies it.
"""

from __future__ import annotations

import os

from .errors import InputError

#: The environment variable that turns public mode on.
PUBLIC_ENV = "DSDCOMPARE_PUBLIC"
_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def public_mode() -> bool:
    """Whether the operator has declared this server public (``DSDCOMPARE_PUBLIC=1``).

    Unset or ``0`` is off. Any value other than 1/0, true/false, yes/no or on/off raises
    :class:`~dsdcompare.errors.InputError`: a typo in a security setting must stop the app at
    start, not leave it silently open.
    """
    value = os.environ.get(PUBLIC_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise InputError(f"{PUBLIC_ENV}={os.environ[PUBLIC_ENV]!r} is not a valid setting; set it to "
                     f"1 (public: visitors cannot choose where the server writes) or 0")
