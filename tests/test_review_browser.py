"""Reviews in a real browser (Debian's chromium driven by Playwright; see tests/test_browser.py).

1. The decision record's HTML report, opened from a ``file://`` URL with the network off,
   renders every figure and every thumbnail, and asks for nothing outside itself.
2. The Review page under ``streamlit run``: the time from "Start reviewing" to the first pair,
   a vote, and the owner's unblinded results. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time

import pytest
from browser_common import launch, require_browser
from review_fixtures import MODEL_LABELS, make_review
from test_browser import ARTIFACTS, VIEWPORT, server, shoot  # noqa: F401

from dsdcompare import review as rv
from dsdcompare.review import decision as dec
from dsdcompare.review.report import write_atomic
from dsdcompare.store import Store

pytestmark = pytest.mark.slow

#: Reports what every figure and image of the page drew (sizes are the rendered ones).
RENDERED = """() => ({
  figures: [...document.querySelectorAll('svg[data-figure]')].map(s => {
    const box = s.getBoundingClientRect();
    return {name: s.dataset.figure, w: box.width, h: box.height,
            marks: s.querySelectorAll('circle, rect, line').length};
  }),
  images: [...document.images].map(i => ({complete: i.complete, w: i.naturalWidth,
                                          h: i.naturalHeight, shown: i.getBoundingClientRect().width})),
})"""


def _report(tmp_path):
    """A store with a review of 12 toy pairs, three reviewers' votes, a decision; its HTML."""
    with Store(tmp_path / "store" / "results.sqlite") as store:
        review = make_review(store, limit=6, criteria=dec.DEFAULT_CRITERIA,
                             models=("toy-teacher", "toy-student"))
        for i, reviewer in enumerate(("ana", "ben", "caro")):
            for p in review.pairs:
                rv.vote(store, review, reviewer, p.idx, ("a", "b", "tie", "both_bad")[(p.idx + i) % 4])
        dec.decide(store, review, "more-data", "olga", "rerun with more seeds")
        analysis = rv.analyse(store, review, n_resamples=999, refit_resamples=200)
        html, _ = rv.build(store, review, analysis, dec.decision_record(store, review, analysis))
    return write_atomic(tmp_path / "review.html", html), len(review.pairs)


def test_html_report_renders_every_figure_and_image_offline(tmp_path):
    require_browser()
    import playwright.sync_api as sync_api
    path, n_pairs = _report(tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    asked = []
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(offline=True, viewport=VIEWPORT)  # the network is off
        context.route("**/*", lambda route: (asked.append(route.request.url),
                                             route.continue_() if route.request.url.startswith("file:")
                                             else route.abort()))
        page = context.new_page()
        try:
            page.goto(path.as_uri(), wait_until="load")
            drawn = page.evaluate(RENDERED)
            page.screenshot(path=ARTIFACTS / "review-report.png", full_page=True)
        finally:
            browser.close()
    assert asked == [path.as_uri()]  # nothing but the file itself was requested
    names = {f["name"] for f in drawn["figures"]}
    assert {"win-rates", "votes", "by-category", "clip-diff", "latency-ratio"} <= names
    assert {f"criterion-{i}" for i in range(len(dec.DEFAULT_CRITERIA))} <= names
    for f in drawn["figures"]:
        assert f["w"] > 0 and f["h"] > 0 and f["marks"] > 0, f
    assert len(drawn["images"]) == 2 * n_pairs
    for img in drawn["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 0, img


@pytest.fixture
def no_warm_start(monkeypatch):
    """No background model loading on the server (it would compete with the timing below;
    blinding during a warm start is tests/test_review_page.py's)."""
    monkeypatch.setenv("DSDCOMPARE_WARM_START", "0")


def test_review_page_first_pair_vote_and_owner_results(no_warm_start, server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    # the server's store (see test_browser.server) gets a review of 12 toy pairs
    with Store(tmp_path / "store" / "results.sqlite") as store:
        make_review(store, "team-review", owner="olga", limit=6)
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=120_000)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(120_000)
        try:
            page.goto(f"{server}/review")
            page.get_by_label("Your name", exact=True).fill("ana")
            page.get_by_label("Your name", exact=True).press("Enter")  # commit the text before the click
            started = time.perf_counter()
            page.get_by_role("button", name="Start reviewing").click()
            images = page.locator('[data-testid="stImage"] img')
            expect(images).to_have_count(2)
            for i in range(2):
                expect(images.nth(i)).to_be_visible()
            took = time.perf_counter() - started
            print(f"\nReview page: Start reviewing -> first pair visible in the browser: {took:.2f} s")
            (ARTIFACTS / "review-first-pair-seconds.txt").write_text(f"{took:.2f}\n")
            expect(page.get_by_text("0 of 12 voted")).to_be_visible()
            text = page.content().lower()
            assert not [m for m in MODEL_LABELS if m.lower() in text]  # blind: no model named
            shoot(page, "review-page-vote.png")
            page.get_by_role("button", name="Left better").click()
            expect(page.get_by_text("1 of 12 voted")).to_be_visible()
            # the owner, in a new session, sees the results
            page.goto(f"{server}/review")
            page.get_by_label("Your name", exact=True).fill("olga")
            page.get_by_label("Your name", exact=True).press("Enter")
            page.get_by_role("button", name="Start reviewing").click()
            page.get_by_text("Results", exact=True).click()
            expect(page.get_by_text("Decision record", exact=True)).to_be_visible()
            expect(page.locator("svg[data-figure='win-rates']")).to_be_visible()
            shoot(page, "review-page-results.png")
        except Exception:
            page.screenshot(path=ARTIFACTS / "review-failure.png", full_page=True)
            raise
        finally:
            browser.close()
