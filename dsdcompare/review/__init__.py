"""Team model-selection reviews: blind A/B votes, rater agreement and a decision record.

A review (:mod:`~dsdcompare.review.model`) is a named, frozen set of latent-matched image pairs
from stored results; reviewers vote blind (order shuffled per reviewer, sides drawn per pair,
model names hidden until they finish); votes live in the results store
(:mod:`dsdcompare.store.reviews`). The results (:mod:`~dsdcompare.review.statistics`,
:mod:`~dsdcompare.review.automatic`) put win rates, Bradley-Terry strengths and Krippendorff's
alpha beside the CLIP difference, fidelity and latency of the same pairs; the decision record
(:mod:`~dsdcompare.review.decision`) checks criteria stated first and is exported as one
self-contained HTML file and JSON (:mod:`~dsdcompare.review.report`). The toy pair gives an
offline demo (:mod:`~dsdcompare.review.generate`). No Streamlit here: the page is
``pages/review_page.py`` with ``ui/review.py``; the command line is ``dsdcompare review``.

    plan = plan_review(store, "sd-v1-4,bk-sdm-small", Selection("core", (0, 1, 2, 3), 30, 7.5))
    review = create_review(store, "q3-student", "alice", plan, criteria=DEFAULT_CRITERIA)
    vote(store, review, "bob", pair_idx=0, choice="tie")
    analysis = analyse(store, review)
    html, data = build(store, review, analysis, decision_record(store, review, analysis))
"""

from .automatic import analyse
from .decision import (
    DEFAULT_CRITERIA,
    VERDICTS,
    Criterion,
    DecisionRecord,
    decide,
    decision_record,
    parse_criterion,
    state_criteria,
)
from .model import (
    CHOICES,
    SIDE_CHOICES,
    Plan,
    Review,
    ReviewError,
    ReviewPair,
    Selection,
    Vote,
    bench_command,
    can_see_results,
    create_review,
    list_reviews,
    load_review,
    load_votes,
    plan_review,
    reviewer_order,
    vote,
)
from .report import build

__all__ = ["CHOICES", "DEFAULT_CRITERIA", "SIDE_CHOICES", "VERDICTS", "Criterion",
           "DecisionRecord", "Plan", "Review", "ReviewError", "ReviewPair", "Selection", "Vote",
           "analyse", "bench_command", "build", "can_see_results", "create_review", "decide",
           "decision_record", "list_reviews", "load_review", "load_votes", "parse_criterion",
           "plan_review", "reviewer_order", "state_criteria", "vote"]
