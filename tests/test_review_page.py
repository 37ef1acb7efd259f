"""The Review page through the dashboard's router (``streamlit.testing.v1.AppTest``): two
reviewers vote on one review in two sessions, blinding holds until a reviewer finishes, a vote
can be changed, the owner sees results, an empty store is offered the toy review."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from review_fixtures import MODEL_LABELS, make_review

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repository root, beside dashboard.py
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from dsdcompare.review import model as rm  # noqa: E402
from dsdcompare.store import Store  # noqa: E402
from ui import resources, sidebar  # noqa: E402

PAGE = "pages/review_page.py"
TIMEOUT = 120


@pytest.fixture
def review_env(tmp_path, monkeypatch):
    """A store holding a review of 6 toy pairs owned by "olga"; the toy weight mode; no warm
    start (it loads models in the background: see test_blind_while_the_warm_start_runs)."""
    path = tmp_path / "store" / "results.sqlite"
    monkeypatch.setenv("DSDCOMPARE_STORE", str(path))
    monkeypatch.setenv(sidebar.MODE_ENV, "toy")
    monkeypatch.setenv(resources.WARM_START_ENV, "0")
    resources.detected_mode.clear()
    with Store(path) as store:
        review = make_review(store, limit=3)
    yield path, review
    resources.detected_mode.clear()


def session(reviewer: str | None = None) -> AppTest:
    """A fresh browser session on the Review page, signed in as ``reviewer``."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGE).run()
    ok(at)
    assert at.title[0].value == "Review"
    if reviewer:
        at.text_input(key="review_name_input").set_value(reviewer)
        at.button(key="review_start").click().run()
        ok(at)
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def page_text(at: AppTest) -> str:
    """Everything the page sends to the browser (every element's protobuf, as text)."""
    parts = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def assert_blind(at: AppTest) -> None:
    text = page_text(at).lower()
    shown = [label for label in MODEL_LABELS if label.lower() in text]
    assert not shown, f"model names on the page before unblinding: {shown}"


def shown_pair(at: AppTest, review) -> int:
    """The index of the pair on the page (from its heading and prompt)."""
    heading = next(m.value for m in at.markdown if m.value.startswith("#### Pair "))
    prompt = next(m.value for m in at.markdown if m.value.startswith("**Prompt:**"))
    text, seed = prompt.removeprefix("**Prompt:** ").rsplit(" · seed ", 1)
    assert heading.startswith("#### Pair ")
    return next(p.idx for p in review.pairs if p.prompt == text and p.seed == int(seed))


def test_two_reviewers_vote_blind_and_a_changed_vote_replaces_the_first(review_env):
    path, review = review_env
    started = time.perf_counter()
    ana = session("ana")
    print(f"\nReview page: name given -> first pair drawn (AppTest) {time.perf_counter() - started:.2f} s")
    ben = session("ben")
    for at, who in ((ana, "ana"), (ben, "ben")):
        assert len(at.image) == 2 and [i.proto.imgs[0].caption for i in at.image] == ["Left", "Right"]
        assert shown_pair(at, review) == rm.reviewer_order(review, who)[0]  # own order
        assert "0 of 6 voted" in page_text(at)
        assert_blind(at)
    # ana votes "left" on her first pair, then goes back and changes it to "right"
    first = shown_pair(ana, review)
    ana.button(key="review_vote_left").click().run()
    ok(ana)
    assert "1 of 6 voted" in page_text(ana) and shown_pair(ana, review) != first
    ana.button(key="review_back").click().run()
    assert shown_pair(ana, review) == first
    assert any("Your vote: **Left better**" in i.value for i in ana.info)
    ana.text_input(key=f"review_comment_{first}").set_value("cleaner edges")
    ana.button(key="review_vote_right").click().run()
    ok(ana)
    assert_blind(ana)
    # meanwhile ben votes on every pair ("tie"), in his own order, blind until the end
    for _ in range(6):
        assert_blind(ben)
        ben.button(key="review_vote_tie").click().run()
        ok(ben)
    assert "6 of 6 voted" in page_text(ben)
    with Store(path, readonly=True) as store:
        votes = rm.load_votes(store, review)
    mine = [v for v in votes if v.reviewer == "ana"]
    left_a = rm.left_is_a(review, "ana", first)
    assert [(v.pair_idx, v.choice, v.comment) for v in mine] == [
        (first, rm.choice_from_side("right", left_a), "cleaner edges")]  # replaced, not added
    assert sorted(v.pair_idx for v in votes if v.reviewer == "ben") == list(range(6))
    # results: locked for ana (1 of 6), unblinded for ben (finished)
    ana.segmented_control(key="review_mode").set_value("results").run()
    ok(ana)
    assert any("Results unlock" in i.value for i in ana.info)
    assert_blind(ana)
    ben.segmented_control(key="review_mode").set_value("results").run()
    ok(ben)
    text = page_text(ben)
    assert "toy-student" in text and "toy-teacher" in text
    figures = [m.value for m in ben.markdown if m.value.startswith("<svg")]
    assert len(ben.dataframe) >= 4 and len(figures) >= 3  # tables and inline SVG figures
    labels = [b.label for b in ben.get("download_button")]
    assert labels == ["Decision record (HTML)", "Decision record (JSON)"]
    ben.radio(key="review_verdict").set_value("keep")
    ben.text_area(key="review_notes").set_value("ties everywhere")
    ben.button(key="review_decide").click().run()
    ok(ben)
    assert any("**Verdict:** keep the baseline — by ben" in m.value for m in ben.markdown)


def test_the_owner_sees_results_before_voting(review_env):
    _, review = review_env
    olga = session("olga")
    olga.segmented_control(key="review_mode").set_value("results").run()
    ok(olga)
    assert any("no longer blind" in w.value for w in olga.warning)
    assert "toy-teacher" in page_text(olga)


def test_blind_while_the_warm_start_runs(review_env, monkeypatch):
    # the frame's warm start names the models it is loading; not on a blind page
    monkeypatch.setenv(resources.WARM_START_ENV, "1")
    assert_blind(session("ana"))


def test_an_empty_store_is_offered_the_toy_review(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDCOMPARE_STORE", str(tmp_path / "empty" / "results.sqlite"))
    monkeypatch.setenv(sidebar.MODE_ENV, "toy")
    monkeypatch.setenv(resources.WARM_START_ENV, "0")
    resources.detected_mode.clear()
    at = session("ana")
    assert any("No reviews in this store yet" in i.value for i in at.info)
    assert at.button(key="review_make_toy").label.startswith("Create the toy review")
    at.segmented_control(key="review_mode_empty").set_value("new").run()
    ok(at)
    assert at.multiselect(key="review_new_models").value == ["toy-teacher", "toy-student"]
    at.button(key="review_new_find").click().run()
    ok(at)
    assert any("toy-student" in c.value and "dsdcompare bench" in c.value for c in at.code)
    resources.detected_mode.clear()
