"""What the browser tests share: starting ``streamlit run dashboard.py`` and Debian's Chromium.

No browser is downloaded: ``/usr/bin/chromium`` comes from apt (``apt-get install -y chromium``)
and the ``playwright`` Python package only drives it. pytest is imported only where a test needs
it, so a benchmark can load this file by path (``benchmarks/dashboard_latency.py`` does).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_browser() -> None:
    """Skip the calling test when Chromium or the playwright package is missing."""
    import pytest

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is missing: "
                                                       "pip install playwright")


@contextlib.contextmanager
def dashboard_server(tmp_path: Path, env: dict, *, start_timeout_s: float = 180) -> Iterator[str]:
    """``streamlit run dashboard.py`` on a free port of 127.0.0.1; yields its URL once
    ``/_stcore/health`` answers. ``env`` is laid over this process's environment (this
    checkout first on PYTHONPATH, the hub offline); the log goes to ``tmp_path/streamlit.log``.
    The server is always stopped on the way out (killed if it does not end in 20 s)."""
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env,
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log_path = Path(tmp_path) / "streamlit.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def launch(playwright):
    """Debian's Chromium, headless, through a ``sync_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
