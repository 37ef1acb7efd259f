"""End to end in a real browser: Playwright drives Debian's chromium against `streamlit run`.

No browser is downloaded: ``/usr/bin/chromium`` comes from apt (``apt-get install -y chromium``)
and the ``playwright`` Python package only drives it. Screenshots go to ``test-artifacts/``.
Each test gets a fresh server: the deep-link tests check the very first load of a process, the
one Streamlit resolves against the ``pages/`` file names.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from browser_common import dashboard_server, launch, require_browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
START_TIMEOUT_S = 180
GENERATE_TIMEOUT_S = 600
VIEWPORT = {"width": 1500, "height": 1000}

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """``streamlit run dashboard.py`` on 127.0.0.1 with a fresh store and the tiny stand-ins."""
    require_browser()
    env = {"DSDCOMPARE_STORE": str(tmp_path / "store" / "results.sqlite"),
           "DSDCOMPARE_DASHBOARD_MODE": "tiny"}
    with dashboard_server(tmp_path, env, start_timeout_s=START_TIMEOUT_S) as url:
        yield url


def shoot(page, name: str) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its main block, not the document,
    so the viewport is grown to the content's height first."""
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        return Math.max(main ? main.scrollHeight : 0, document.body.scrollHeight);
    }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 900), 6000)})
    page.wait_for_timeout(800)  # let plotly relayout at the new size
    page.screenshot(path=ARTIFACTS / name)
    page.set_viewport_size(VIEWPORT)


@contextlib.contextmanager
def browser_page():
    """A fresh chromium page (Debian's, driven by Playwright); a failure leaves failure.png."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=START_TIMEOUT_S * 1000)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(START_TIMEOUT_S * 1000)
        try:
            yield page
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()


#: Every page's URL -> its title and the last thing it draws (the run has finished by then).
DEEP_LINKS = {
    "/": ("Compare", "Results appear here"),
    "/compare": ("Compare", "Results appear here"),
    "/speed-quality": ("Speed vs quality", "Run a comparison on the Compare page"),
    "/history": ("History", "Run a comparison on the Compare page first"),
    "/models": ("Models", "Published figures"),
    "/pairs": ("Pairs", None),  # None: the title alone
    "/review": ("Review", None),  # None: the title alone (the page asks for a reviewer name)
    "/compare?prompt=a+green+square&seed=1099511627776&steps=200&cfg=30":
        ("Compare", "Results appear here"),
}


@pytest.mark.parametrize("path", list(DEEP_LINKS))
def test_every_page_url_opens_on_a_fresh_servers_first_load(server, path):
    """Streamlit's first run in a process resolves the URL against pages/ file names: each URL
    must still open its page, with no "Page not found" dialog, on that very first load."""
    from playwright.sync_api import expect

    title, last = DEEP_LINKS[path]
    with browser_page() as page:
        page.goto(server + path)
        expect(page.locator("h1").first).to_have_text(title)
        if last:
            expect(page.get_by_text(last).first).to_be_visible()
        page.wait_for_timeout(500 if last else 3000)  # a dialog sent in the run is drawn by now
        expect(page.get_by_text("Page not found")).to_have_count(0)
        assert page.url == server + path  # not bounced to the default page
        if "prompt=" in path:
            expect(page.get_by_label("Prompt", exact=True)).to_have_value("a green square")
            expect(page.get_by_role("spinbutton", name="Seed")).to_have_value("1099511627776")
            expect(page.get_by_role("spinbutton", name="Steps")).to_have_value("200")
            expect(page.get_by_text("Link parameter rejected")).to_have_count(0)
            shoot(page, "00-deep-link-compare.png")


def test_generate_four_images_then_see_a_chart(server):
    from playwright.sync_api import expect

    with browser_page() as page:
        # 1. Compare: fill the prompt, press Generate, see four images and the table
        page.goto(server)
        prompt = page.get_by_label("Prompt", exact=True)
        prompt.fill("a red circle on a blue background")
        expect(page.get_by_text("Stand-in models:")).to_be_visible()
        shoot(page, "01-compare-form.png")
        started = time.perf_counter()
        page.get_by_role("button", name="Generate").click()
        images = page.locator('[data-testid="stImage"] img')
        expect(images).to_have_count(4, timeout=GENERATE_TIMEOUT_S * 1000)
        for i in range(4):
            expect(images.nth(i)).to_be_visible()
        took = time.perf_counter() - started
        print(f"\nGenerate -> four images in the browser (tiny stand-ins): {took:.1f} s")
        (ARTIFACTS / "generate-seconds.txt").write_text(f"{took:.1f}\n")
        expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1)
        expect(page.get_by_text("SDXL base 1.0").first).to_be_visible()
        assert "prompt=a+red+circle" in page.url  # the comparison is a shareable link
        shoot(page, "02-compare-results.png")

        # 2. Speed vs quality: the stored results are charted
        page.get_by_role("link", name="Speed vs quality").click()
        charts = page.locator('[data-testid="stPlotlyChart"]')
        expect(charts.first).to_be_visible()
        expect(page.locator(".js-plotly-plot").first).to_be_visible()
        # the page may redraw once the cached figures arrive: wait for the three charts to stand
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length >= 3",
            timeout=60_000)
        assert charts.count() >= 3
        shoot(page, "03-speed-vs-quality.png")

        # 3. History and Models, for the review
        page.get_by_role("link", name="History").click()
        expect(page.locator('[data-testid="stImage"] img')).to_have_count(4)
        shoot(page, "04-history.png")
        page.get_by_role("link", name="Models").click()
        expect(page.get_by_text("Teacher and student: what differs")).to_be_visible()
        shoot(page, "05-models.png")
