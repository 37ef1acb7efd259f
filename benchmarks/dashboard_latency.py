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
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    """A module loaded by its file path (benchmarks never edit the import path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _competitor_class():
    """The same competitor as the thread benchmark (benchmarks/contention.py), loaded by path."""
    return _load("contention", Path(__file__).with_name("contention.py")).Competitor


#: The server and browser set-up the browser tests use (tests/browser_common.py).
browser_common = _load("browser_common", ROOT / "tests" / "browser_common.py")
CHROMIUM = browser_common.CHROMIUM
TARGET_FIRST_S = 15.0
TARGET_RERUN_S = 1.5


@contextlib.contextmanager
def server(mode: str, store: Path, log_dir: Path, timeout_s: float):
    """``streamlit run dashboard.py`` on a free port (log: ``log_dir/streamlit.log``); yields
    (url, the monotonic time the server was started)."""
    env = {"DSDCOMPARE_STORE": str(store), "DSDCOMPARE_DASHBOARD_MODE": mode, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with browser_common.dashboard_server(log_dir, env, start_timeout_s=timeout_s) as url:
        yield url, started


def _drawn(page, run: int, timeout_s: float) -> None:
    """Wait until the outcome of stored run ``run`` is drawn, its images included."""
    page.get_by_text(re.compile(rf"saved as run {run}(?!\d)")).wait_for(timeout=timeout_s * 1000)
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for(timeout=timeout_s * 1000)


def measure(url: str, started: float, reruns: int, timeout_s: float) -> dict:
    """One browser session: page, first Generate, then ``reruns`` re-runs (seconds each)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = browser_common.launch(pw)
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
    if not CHROMIUM.exists():
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
            with server(args.mode, Path(td) / "results.sqlite", Path(td), args.timeout) as (url, started):
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
