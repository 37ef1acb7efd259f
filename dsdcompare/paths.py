"""Where dsdcompare keeps files it builds (stand-in models, scorers) and results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the dsdcompare cache.

    The cache lives in ``$DSDCOMPARE_CACHE`` when set, else ``$XDG_CACHE_HOME/dsdcompare``,
    else ``~/.cache/dsdcompare``. Everything in it can be rebuilt; deleting it is safe.
    """
    root = os.environ.get("DSDCOMPARE_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "dsdcompare"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
