"""Screenshots of every page in the light and the dark theme, for people to look at.

Playwright drives Debian's ``/usr/bin/chromium`` (nothing is downloaded) against one
``streamlit run dashboard.py`` with the toy pair and a store of latent-matched pairs built here;
the browser's colour scheme picks the theme (``.streamlit/config.toml`` defines both). The
PNGs go to ``test-artifacts/screens/<page>-<theme>.png``; the test checks that each page drew
its title without an exception and that the dark pages are dark.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_common import dashboard_server, launch, require_browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screens"
VIEWPORT = {"width": 1400, "height": 900}
#: URL path -> (file stem, the page's title, text the page draws last or None).
PAGES = {"/": ("compare", "Compare", "Form filled from the link"),
         "/speed-quality": ("speed-quality", "Speed vs quality", "Published figures (measured"),
         "/history": ("history", "History", None), "/pairs": ("pairs", "Pairs", "teacher | student"),
         "/models": ("models", "Models", "Published figures"), "/review": ("review", "Review", None)}
#: The Compare page is shot with a finished comparison of the toy pair.
COMPARE_LINK = "/?prompt=a+red+circle+on+a+blue+background&seed=3&models=toy-teacher,toy-student&images=2"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """``streamlit run dashboard.py`` with the toy pair and a store of stored pairs."""
    from test_analysis_views import stored_pairs

    from ui.sidebar import toy_weights_ready

    require_browser()
    if not toy_weights_ready():
        pytest.skip("toy weights not trained (python -m dsdcompare toyzoo train)")
    store = stored_pairs(tmp_path / "store" / "results.sqlite")
    env = {"DSDCOMPARE_STORE": str(store), "DSDCOMPARE_DASHBOARD_MODE": "toy"}
    with dashboard_server(tmp_path, env, start_timeout_s=90) as url:
        yield url


def settle(page, title: str, last: str | None = None, timeout_s: float = 90) -> None:
    """Wait for the page's title, the text it draws last, and the end of the script run (the
    toolbar's Stop button goes away)."""
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
    if last:
        page.get_by_text(last).first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_timeout(300)
    page.get_by_role("button", name="Stop").wait_for(state="detached", timeout=90_000)
    page.wait_for_timeout(600)  # plotly draws after the run


def generate(page, title: str, scheme: str, tries: int = 3) -> None:
    """Press Generate until the results are drawn: a click that lands while a background rerun
    redraws the form (the warm start's status) can be lost."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        page.get_by_role("button", name="Generate").click()
        try:
            settle(page, title, "share the link to reopen it", timeout_s=40)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                page.screenshot(path=SHOTS / f"failure-{scheme}.png", full_page=True)
                raise


def shoot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the viewport grows first."""
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        return Math.max(main ? main.scrollHeight : 0, document.body.scrollHeight);
    }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 900), 5000)})
    page.wait_for_timeout(700)
    page.screenshot(path=path)
    page.set_viewport_size(VIEWPORT)


def background_luminance(page) -> float:
    """Relative brightness (0-1) of the app's background colour."""
    rgb = page.evaluate("""() => getComputedStyle(
        document.querySelector('[data-testid="stApp"]')).backgroundColor""")
    r, g, b = (int(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_every_page_in_light_and_dark(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
                page = context.new_page()
                for path, (stem, title, last) in PAGES.items():
                    page.goto(server + (COMPARE_LINK if stem == "compare" else path))
                    try:
                        settle(page, title, last)
                    except Exception:
                        page.screenshot(path=SHOTS / f"failure-{stem}-{scheme}.png", full_page=True)
                        raise
                    if stem == "compare":  # a finished comparison: the gallery and stage chart
                        generate(page, title, scheme)
                    assert not page.locator('[data-testid="stException"]').count(), (stem, scheme)
                    light = background_luminance(page)
                    assert (light > 0.8) if scheme == "light" else (light < 0.2), (stem, scheme, light)
                    shoot(page, SHOTS / f"{stem}-{scheme}.png")
                context.close()
        finally:
            browser.close()
    assert len(list(SHOTS.glob("*.png"))) >= 2 * len(PAGES)
    print(f"\n{2 * len(PAGES)} screenshots in {time.monotonic() - started:.0f} s -> {SHOTS}")
