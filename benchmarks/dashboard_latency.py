"""Dashboard latency in a real browser: the first Generate after a server start, and re-runs of
the same comparison on the cached, warm pipelines, quiet and beside a CPU-bound competitor.

    python benchmarks/dashboard_latency.py                      # toy pair, quiet and contended
    python benchmarks/dashboard_latency.py --reruns 10 --competitors 2 --conditions contended

Each condition starts its own ``streamlit run dashboard.py`` (the README's command, a fresh
results store, the toy pair, the default form), opens it in Debian's Chromium
(``/usr/bin/chromium``, driven by Playwright) and measures, from the browser:

- *server → page*: from starting the server to the Compare form being drawn;
- *page → first images*: from the form being drawn to the first comparison's images, Generate
  pressed at once (the visitor who clicks straight away; the warm start is still loading);
- *click → images* of each re-run of the same form (the pipelines cached and warm).

"Images" means the new outcome is drawn: its caption ``saved as run N`` with this run's number.
The competitor (``--competitors`` busy processes, see ``benchmarks/contention.py``) is started
before the server and stopped after the browser closes. Targets (issue 15, 2-core machine):
first Generate within 15 s of the page appearing, a re-run within 1.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _competitor_class():
    """The same competitor as the thread benchmark (benchmarks/contention.py), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("contention", Path(__file__).with_name("contention.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Competitor


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_FIRST_S = 15.0
TARGET_RERUN_S = 1.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(mode: str, store: Path, log: Path, timeout_s: float):
    """``streamlit run dashboard.py`` on a free port; yields (url, seconds until healthy)."""
    port = _free_port()
    env = {**os.environ, "DSDCOMPARE_STORE": str(store), "DSDCOMPARE_DASHBOARD_MODE": mode,
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                if proc.poll() is not None or time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"streamlit did not start; see {log}")
                time.sleep(0.2)
            yield url, started
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _drawn(page, run: int, timeout_s: float) -> None:
    """Wait until the outcome of stored run ``run`` is drawn, its images included."""
    page.get_by_text(re.compile(rf"saved as run {run}(?!\d)")).wait_for(timeout=timeout_s * 1000)
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for(timeout=timeout_s * 1000)


def measure(url: str, started: float, reruns: int, timeout_s: float) -> dict:
    """One browser session: page, first Generate, then ``reruns`` re-runs (seconds each)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url)
            generate = page.get_by_role("button", name="Generate")
            generate.wait_for(timeout=timeout_s * 1000)
            page.get_by_label("Prompt", exact=True).wait_for(timeout=timeout_s * 1000)
            appeared = time.monotonic()
            generate.click()
            _drawn(page, 1, timeout_s)
            first = time.monotonic() - appeared
            times = []
            for run in range(2, reruns + 2):
                page.wait_for_timeout(300)  # a visitor looks before pressing again
                clicked = time.monotonic()
                generate.click()
                _drawn(page, run, timeout_s)
                times.append(time.monotonic() - clicked)
        finally:
            browser.close()
    return {"page_s": appeared - started, "first_s": first, "reruns_s": times}


def load_average() -> str:
    """The 1-minute load average now (other work on a shared machine shows here)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reruns", type=int, default=5, help="re-runs timed per condition")
    ap.add_argument("--competitors", type=int, default=1,
                    help="busy processes beside the dashboard in the contended condition")
    ap.add_argument("--conditions", default="quiet,contended",
                    help="comma list of quiet and/or contended")
    ap.add_argument("--mode", default="toy", help="DSDCOMPARE_DASHBOARD_MODE (default: toy)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per wait")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    rows = []
    for condition in [c.strip() for c in args.conditions.split(",") if c.strip()]:
        if condition not in ("quiet", "contended"):
            print(f"unknown condition {condition!r}: quiet or contended", file=sys.stderr)
            return 2
        n = args.competitors if condition == "contended" else 0
        with tempfile.TemporaryDirectory(prefix="dsdcompare-latency-") as td, \
                _competitor_class()(n, max_s=args.timeout * (args.reruns + 3)):
            load = load_average()
            with server(args.mode, Path(td) / "results.sqlite", Path(td) / "streamlit.log",
                        args.timeout) as (url, started):
                got = measure(url, started, args.reruns, args.timeout)
            rows.append((condition, n, load, got))
            print(f"{condition}: {got}", file=sys.stderr)
    print(f"\nDashboard latency in Chromium ({args.mode} weights, default form; "
          f"{os.cpu_count()} cores; targets: first Generate <= {TARGET_FIRST_S:g} s after the "
          f"page appears, re-run <= {TARGET_RERUN_S:g} s)\n")
    print("| condition | competitors | load before | server -> page s | page -> first images s "
          "| re-run click -> images s (median) | re-run max s | re-runs |")
    print("|---|---|---|---|---|---|---|---|")
    for condition, n, load, got in rows:
        reruns = got["reruns_s"]
        median = statistics.median(reruns) if reruns else float("nan")
        worst = max(reruns) if reruns else float("nan")
        print(f"| {condition} | {n} | {load} | {got['page_s']:.1f} | {got['first_s']:.1f} "
              f"| {median:.2f} | {worst:.2f} | {len(reruns)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
