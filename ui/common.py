"""Small helpers the feature modules share: user text shown as text, messages, file contents and
names, the frame runner."""

from __future__ import annotations

import io
import re
import runpy
from pathlib import Path

import streamlit as st
from PIL import Image

#: The repository root: ``dashboard.py`` and ``pages/`` live here.
ROOT = Path(__file__).resolve().parents[1]
#: Characters that start Markdown or Streamlit syntax anywhere in a line: emphasis, code,
#: links and images, HTML and autolinks, maths, strikethrough, tables, entities, e-mail links;
#: an underscore only at a word's edge (inside a word, as in ``DSDCOMPARE_STORE``, it is text).
_INLINE = r"[\\`*\[\]<>$~|&@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"
#: Streamlit's ``:red[...]`` and the ``://`` of a bare URL (GFM links those while parsing).
_DIRECTIVE = r":(?=[A-Za-z0-9/])"
_SPECIAL = re.compile(f"({_INLINE}|{_DIRECTIVE})")
#: What is turned into a link or an icon *after* parsing, where escapes no longer count: a bare
#: ``http://``, ``https://`` or ``www.``, an e-mail's ``@``, and Streamlit's ``:material/icon:``
#: and ``:emoji:`` shortcodes. An invisible word joiner (U+2060) there keeps the text as text.
_AFTER_PARSING = re.compile(r"(?i)(?=https?://|www\.)|(?<=@)|(?<=:)(?=[A-Za-z0-9])")
WORD_JOINER = "\u2060"
#: What makes a line a block (list, heading, quote, rule, setext underline, ordered list).
_LINE_START = re.compile(r"^(\s*)([-+=#>]|\d+(?=[.)]))", re.MULTILINE)


def plain(text) -> str:
    """``text`` made safe to embed in Markdown (``st.markdown``, ``st.caption``, ``st.error``,
    ``st.progress`` texts, widget labels): it shows as typed, and nothing in it becomes a link,
    an image, HTML, a heading, a list, an icon or a colour. Use it for every user-supplied string
    the dashboard shows (link values, prompts, model names from a models file, store paths,
    messages that quote input).

    Only what would start syntax is backslash-escaped (CommonMark makes an escaped ASCII
    punctuation character literal), so the Markdown source stays readable. What is linked or
    replaced after parsing (bare URLs, e-mail addresses, icon and emoji shortcodes) gets an
    invisible word joiner (:data:`WORD_JOINER`) that those rules do not cross.
    """
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    escaped = _SPECIAL.sub(r"\\\1", _AFTER_PARSING.sub(WORD_JOINER, text))
    escaped = _LINE_START.sub(lambda m: f"{m[1]}\\{m[2]}" if not m[2][0].isdigit()
                              else f"{m[1]}{m[2]}\\", escaped)
    # a line break stays a line break (a Markdown hard break), never a new block
    return escaped.replace("\n", "  \n")


def messages(texts: list[str]) -> None:
    """Warnings collected before drawing (rejected link values, resets, unsaved results): they
    quote what the user or the link gave, so they are shown as text."""
    for text in texts:
        st.warning(plain(text), icon=":material/link_off:" if text.startswith("Link") else None)


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
