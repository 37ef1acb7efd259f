"""Small helpers the feature modules share: messages, file contents and names, the frame runner."""

from __future__ import annotations

import io
import re
import runpy
from pathlib import Path

import streamlit as st
from PIL import Image

#: The repository root: ``dashboard.py`` and ``pages/`` live here.
ROOT = Path(__file__).resolve().parents[1]


def messages(texts: list[str]) -> None:
    """Warnings collected before drawing (rejected link values, resets, unsaved results)."""
    for text in texts:
        st.warning(text, icon=":material/link_off:" if text.startswith("Link") else None)


def png_bytes(image: Image.Image) -> bytes:
    """PNG file contents of ``image``."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def slug(text: str) -> str:
    """A file-name-safe slug."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:48] or "image"


def run_dashboard() -> None:
    """Run ``dashboard.py`` (the frame and router) from a ``pages/`` file named after a URL.

    Streamlit's first script run in a process resolves the URL's path against the *file names*
    in ``pages/`` (the folder-based multipage apps of old), before ``dashboard.py`` has declared
    its pages with ``st.navigation``; a path no file is named after gets a "Page not found"
    dialog. ``pages/compare.py``, ``pages/history.py`` and friends are named after the URLs and
    call this, so that one run draws the frame, whose ``st.navigation`` routes to the real page.
    """
    runpy.run_path(str(ROOT / "dashboard.py"))
