"""Hostile text in a real browser: Markdown, links, images and HTML arriving through the URL, the
prompt, a model name from a models file (``DSDCOMPARE_MODELS``) and the store path are shown as
typed, and never make the page link to, or load anything from, another host.

Playwright drives Debian's ``/usr/bin/chromium`` against a fresh ``streamlit run dashboard.py``
per test (as ``tests/test_browser.py`` does). Every request the page makes is recorded, and
requests to any host but the dashboard's are refused and counted; after each step no element of
the page may carry an ``href`` or ``src`` that leads elsewhere.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from pathlib import Path

import pytest
from browser_common import dashboard_server, launch, require_browser

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60
WAIT_S = 60
EVIL = "evil.example"
LINK = f"[click me](http://{EVIL}/link)"
IMAGE = f"![pic](http://{EVIL}/pic.png)"
HTML = f'<img src="http://{EVIL}/html.png">'
PROMPT = f"a red circle **bold** {LINK} {IMAGE} {HTML} :red[red] www.{EVIL}"
MODEL_NAME = f"**Evil** {LINK} {IMAGE}"
#: Every href/src on the page leading to another host (the page's own are relative, data:,
#: blob: or the dashboard's own address).
FOREIGN = """(origin) => Array.from(document.querySelectorAll('[href], [src]'))
    .map(e => e.getAttribute('href') || e.getAttribute('src'))
    .filter(v => v && /^[a-z][a-z0-9+.-]*:/i.test(v) && !/^(data|blob|javascript):/i.test(v)
                 && !v.startsWith(origin))"""

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def dashboard(tmp_path: Path, store: Path):
    """The dashboard on the toy pair, with a models file naming one model in Markdown."""
    require_browser()
    student = ROOT / "dsdcompare" / "toyzoo" / "weights" / "toy-student"
    if not (student / "model_index.json").is_file():
        pytest.skip("the toy weights are not built (python -m dsdcompare toyzoo train)")
    models = tmp_path / "models.toml"
    models.write_text(f'[models.evil-student]\nname = "{MODEL_NAME}"\n'
                      f'pipeline = "StableDiffusionPipeline"\nnative_size = 64\n'
                      f'path = "{student}"\nteacher = "toy-teacher"\nsteps = 25\nguidance = 3.0\n'
                      f'notes = "{LINK}"\n')
    env = {"DSDCOMPARE_STORE": str(store), "DSDCOMPARE_DASHBOARD_MODE": "toy",
           "DSDCOMPARE_MODELS": str(models)}
    with dashboard_server(tmp_path, env, start_timeout_s=START_TIMEOUT_S) as url:
        yield url


@contextlib.contextmanager
def browser_page(origin: str):
    """A fresh Chromium page that refuses (and records) every request to another host."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_S * 1000)
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(WAIT_S * 1000)
        page.foreign_requests = []

        def route(r):
            if r.request.url.startswith(origin):
                r.continue_()
            else:
                page.foreign_requests.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        try:
            yield page
        finally:
            browser.close()


def text(page) -> str:
    """The page's visible text (without the invisible word joiners that keep bare URLs text)."""
    return page.inner_text("body").replace("\u2060", "")


def assert_nothing_foreign(page, origin: str) -> None:
    assert page.evaluate(FOREIGN, origin) == [], page.evaluate(FOREIGN, origin)
    assert page.foreign_requests == []


def assert_thread_policy_recorded(store: Path) -> None:
    """The server applied dsdcompare's thread policy before importing torch, and every stored
    result records it (issue 15: threads and OpenMP wait policy in each Result's environment)."""
    from dsdcompare import threads
    from dsdcompare.store import Store

    policy = threads.decide()
    with Store(store, readonly=True) as db:
        envs = [db.load_result(int(i), with_images=False).env for i in db.results()["result_id"]]
    assert len(envs) == 2
    for env in envs:
        assert env["thread_policy"] == policy.reason and env["torch_threads"] == policy.threads
        assert env["omp_wait_policy"] == policy.wait_policy  # set before torch was imported


def test_link_values_prompt_and_model_names_show_as_text_after_generate(tmp_path):
    from playwright.sync_api import expect

    params = {"prompt": PROMPT, "neg": HTML, "seed": "3", "steps": LINK, "cfg": IMAGE,
              "size": "native", "models": "toy-teacher,evil-student", "weights": "toy",
              HTML: "x"}
    with dashboard(tmp_path, tmp_path / "store" / "results.sqlite") as url, \
            browser_page(url) as page:
        page.goto(f"{url}/?{urllib.parse.urlencode(params)}")
        expect(page.get_by_text("Link parameter rejected").first).to_be_visible()
        body = text(page)
        for literal in (f"steps='{LINK}'", f"cfg='{IMAGE}'", HTML):  # quoted as typed
            assert literal in body, (literal, body)
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(PROMPT)
        assert_nothing_foreign(page, url)

        page.get_by_role("button", name="Generate").click()
        expect(page.locator('[data-testid="stImage"] img')).to_have_count(2, timeout=WAIT_S * 1000)
        expect(page.get_by_text("saved as run 1").first).to_be_visible()
        body = text(page)
        assert f"“{PROMPT}”" in body  # the results caption quotes the prompt literally
        assert MODEL_NAME in body  # the column title: asterisks, brackets and all
        assert f"negative “{HTML}”" in body
        assert_nothing_foreign(page, url)
        assert_thread_policy_recorded(tmp_path / "store" / "results.sqlite")
        # the models page lists the file's model, its name and notes still as text
        page.get_by_role("link", name="Models").click()
        expect(page.get_by_text("Teacher and student: what differs")).to_be_visible()
        expect(page.get_by_text("**Evil** [click me](").filter(visible=True).first).to_be_visible()
        assert MODEL_NAME in text(page)
        assert_nothing_foreign(page, url)


def test_a_store_path_with_markdown_shows_as_text(tmp_path):
    from playwright.sync_api import expect

    store = tmp_path / f"[store](https:{EVIL}) **x** <b>y</b>" / "results.sqlite"
    with dashboard(tmp_path, store) as url, browser_page(url) as page:
        page.goto(f"{url}/history")
        expect(page.get_by_text("No results stored yet at").first).to_be_visible()
        assert f"No results stored yet at {store}." in text(page)
        assert_nothing_foreign(page, url)
        page.get_by_role("link", name="Speed vs quality").click()
        expect(page.get_by_text("No results stored yet at").first).to_be_visible()
        assert f"No results stored yet at {store}." in text(page)
        assert_nothing_foreign(page, url)
