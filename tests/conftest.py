"""Shared test setup: an isolated cache for the whole session, offline, fixed thread count."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Subprocesses (the CLI, accelerate, streamlit) import this checkout's package, whatever else the
# environment has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# Built stand-ins are shared by every test of one session (built once, a few seconds), but never
# mixed with the user's own cache. Set before any dsdcompare import reads it.
_SESSION_CACHE = tempfile.mkdtemp(prefix="dsdcompare-test-cache-")
os.environ["DSDCOMPARE_CACHE"] = os.environ.get("DSDCOMPARE_TEST_CACHE", _SESSION_CACHE)
# No hub: fail fast instead of trying the network (the tests must pass offline).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def _fixed_threads():
    """Bit-identical images need a fixed thread count (1 and 2 threads give slightly different
    images). One thread: the tiny models are
    overhead-bound, and two OpenMP threads on a busy 2-core machine (a Streamlit server beside
    the tests) made each call up to 14x slower."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def cache_root() -> str:
    """The session's dsdcompare cache folder."""
    return os.environ["DSDCOMPARE_CACHE"]


@pytest.fixture
def store_path(tmp_path, monkeypatch):
    """A fresh results store path for one test (also the default store via the env var)."""
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("DSDCOMPARE_STORE", str(path))
    return path
