"""The decision record: criteria stated before looking, the evidence for each with its interval,
pass or fail, the verdict, who decided and when, and notes.

A criterion compares one number of the evidence (the estimate, or the low or high end of its
95% interval) with a threshold, e.g. "human win rate of the candidate, lower bound >= 0.35".
Criteria are stored with the review and time-stamped (:func:`state_criteria`), so the record
shows whether they were stated before the votes came in. The verdict is the team's
(:func:`decide`); the record also says whether every criterion passed.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from ..store import reviews as stored
from ..store.common import now
from .model import Review, ReviewError, check_reviewer, load_votes
from .statistics import Analysis, wilson_interval

#: Metrics a criterion can name: key -> (what it measures, format of its numbers).
METRICS = {
    "win_rate": ("human win rate of the candidate over the baseline (ties and both-bad count half)",
                 ".2f"),
    "clip_diff": ("paired CLIP score difference, candidate minus baseline", "+.2f"),
    "latency_ratio": ("steady-state latency of the candidate / the baseline's (geometric mean)",
                      ".2f"),
    "flagged": ("share of the candidate's images flagged (black, NaN, NSFW)", ".1%"),
    "both_bad": ("share of votes on this pair of models that said both images are bad", ".1%"),
    "psnr": ("PSNR of the candidate's image against the baseline's (dB)", ".1f"),
    "ssim": ("SSIM of the candidate's image against the baseline's", ".3f"),
    "agreement": ("rater agreement, Krippendorff's alpha (nominal)", ".2f"),
}
#: Which number of the evidence a criterion reads.
BOUNDS = {"estimate": "estimate", "low": "lower 95% bound", "high": "upper 95% bound"}
OPERATORS = ("<=", ">=")
#: Verdicts a team can record.
VERDICTS = {"adopt": "adopt the candidate (it replaces the baseline)",
            "keep": "keep the baseline", "more-data": "undecided: collect more data"}


@dataclass(frozen=True)
class Criterion:
    """One pass/fail rule, stated before looking at the results."""

    metric: str  # a key of METRICS
    bound: str  # a key of BOUNDS: which number of the evidence is compared
    op: str  # "<=" or ">="
    threshold: float  # the number it is compared with

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ReviewError(f"criterion metric {self.metric!r} is not one of {list(METRICS)}")
        if self.bound not in BOUNDS:
            raise ReviewError(f"criterion bound {self.bound!r} is not one of {list(BOUNDS)}")
        if self.op not in OPERATORS:
            raise ReviewError(f"criterion operator {self.op!r} is not one of {list(OPERATORS)}")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise ReviewError(f"criterion threshold must be a number, got {self.threshold!r}")

    def describe(self) -> str:
        """The criterion in words."""
        return f"{METRICS[self.metric][0]}: {BOUNDS[self.bound]} {self.op} {self.threshold:g}"

    def text(self) -> str:
        """The criterion as :func:`parse_criterion` reads it."""
        return f"{self.metric} {self.bound} {self.op} {self.threshold:g}"

    def to_dict(self) -> dict:
        """Plain fields (stored with the review)."""
        return asdict(self)


#: The criteria offered by default (those of the issue that asked for reviews).
DEFAULT_CRITERIA = (
    Criterion("latency_ratio", "estimate", "<=", 0.7),
    Criterion("win_rate", "low", ">=", 0.35),
    Criterion("clip_diff", "low", ">=", -1.0),
    Criterion("flagged", "estimate", "<=", 0.02),
)


def parse_criterion(text: str) -> Criterion:
    """``"win_rate low >= 0.35"`` -> a Criterion (metric, bound, operator, threshold)."""
    match = re.fullmatch(r"\s*(\w+)\s+(\w+)\s*(<=|>=)\s*(-?[0-9.]+(?:e-?\d+)?)\s*", text or "")
    if not match:
        raise ReviewError(f"criterion {text!r} is not 'METRIC BOUND OP NUMBER', e.g. "
                          f"'win_rate low >= 0.35' (metrics: {', '.join(METRICS)}; bounds: "
                          f"{', '.join(BOUNDS)})")
    metric, bound, op, number = match.groups()
    try:
        threshold = float(number)
    except ValueError:
        raise ReviewError(f"criterion {text!r}: {number!r} is not a number") from None
    return Criterion(metric, bound, op, threshold)


@dataclass(frozen=True)
class Evidence:
    """One number of the results, with its interval."""

    value: float  # the estimate (NaN: no evidence yet)
    low: float  # lower end of its 95% interval (NaN when none)
    high: float  # upper end
    n: int  # observations behind it (votes, pairs or images)
    how: str  # how the interval was computed

    def read(self, bound: str) -> float:
        """The number a criterion with ``bound`` compares."""
        return {"estimate": self.value, "low": self.low, "high": self.high}[bound]


@dataclass(frozen=True)
class Evaluation:
    """A criterion with its evidence and outcome."""

    criterion: Criterion  # the rule
    evidence: Evidence  # the numbers it reads
    passed: bool | None  # None: no evidence (the number is NaN)


@dataclass(frozen=True)
class DecisionRecord:
    """What the team decided, on what evidence, against which criteria stated when."""

    review: str  # the review's name
    baseline: str  # registry key of the model the candidate would replace
    candidate: str  # registry key of the candidate
    criteria_at: str | None  # when the criteria were stated (UTC ISO 8601)
    votes_before_criteria: int  # votes already cast when they were stated (0: stated first)
    evaluations: tuple[Evaluation, ...]  # each criterion with its evidence
    all_passed: bool  # every criterion passed (no criterion without evidence)
    verdict: str | None  # a key of VERDICTS; None until decided
    decided_by: str | None  # who recorded the verdict
    decided_at: str | None  # when (UTC ISO 8601)
    notes: str  # the team's notes


def _pair_row(table, baseline: str, candidate: str):
    """The row of a per-model-pair table for these two models, and whether it is reversed
    (the candidate is its model A)."""
    if table is None or len(table) == 0:
        return None, False
    hit = table[((table["model_a"] == baseline) & (table["model_b"] == candidate))
                | ((table["model_a"] == candidate) & (table["model_b"] == baseline))]
    if hit.empty:
        return None, False
    row = hit.iloc[0]
    return row, row["model_a"] == candidate


def evidence(analysis: Analysis, baseline: str, candidate: str) -> dict[str, Evidence]:
    """Every metric of :data:`METRICS` for ``candidate`` against ``baseline``."""
    nan = float("nan")
    out = {m: Evidence(nan, nan, nan, 0, "no data") for m in METRICS}
    wr, rev = _pair_row(analysis.win_rates, baseline, candidate)
    if wr is not None:
        v, lo, hi = wr["win_rate_b"], wr["ci_low"], wr["ci_high"]
        if rev:
            v, lo, hi = 1 - v, 1 - hi, 1 - lo
        out["win_rate"] = Evidence(v, lo, hi, int(wr["n_votes"]), "bootstrap (BCa) over prompts")
        ci = wilson_interval(wr["both_bad"], wr["n_votes"])
        out["both_bad"] = Evidence(wr["both_bad"] / wr["n_votes"], ci.low, ci.high,
                                   int(wr["n_votes"]), "Wilson over votes")
    auto, rev = _pair_row(analysis.automatic, baseline, candidate)
    if auto is not None:
        n = int(auto["n_pairs"])
        d = (auto["clip_diff"], auto["clip_diff_low"], auto["clip_diff_high"])
        out["clip_diff"] = Evidence(*((-d[0], -d[2], -d[1]) if rev else d), int(auto["n_scored"]),
                                    "bootstrap (BCa) over prompts")
        r = (auto["latency_ratio"], auto["latency_ratio_low"], auto["latency_ratio_high"])
        out["latency_ratio"] = Evidence(*((1 / r[0], 1 / r[2], 1 / r[1]) if rev else r), n,
                                        "geometric mean, bootstrap (BCa) over prompts")
        side = "a" if rev else "b"
        out["flagged"] = Evidence(auto[f"flagged_{side}"], auto[f"flagged_{side}_low"],
                                  auto[f"flagged_{side}_high"], n, "Wilson over images")
        for m in ("psnr", "ssim"):
            out[m] = Evidence(auto[m], auto[f"{m}_low"], auto[f"{m}_high"], n,
                              "bootstrap (BCa) over prompts")
    ag = analysis.agreement
    out["agreement"] = Evidence(ag["alpha"], ag["ci_low"], ag["ci_high"], int(ag["n_pairs"]),
                                "percentile bootstrap over pairs")
    return {k: Evidence(*(float(x) for x in (e.value, e.low, e.high)), e.n, e.how)
            for k, e in out.items()}


def evaluate(criteria, found: dict[str, Evidence]) -> tuple[Evaluation, ...]:
    """Each criterion against the evidence: passed, failed, or None when its number is NaN."""
    out = []
    for c in criteria:
        e = found[c.metric]
        number = e.read(c.bound)
        passed = None if math.isnan(number) else (number <= c.threshold if c.op == "<="
                                                  else number >= c.threshold)
        out.append(Evaluation(c, e, passed))
    return tuple(out)


# --- stored criteria and decision -----------------------------------------------------------------


def stated_criteria(store, review: Review) -> tuple[tuple[Criterion, ...], str | None]:
    """The review's criteria and when they were stated (``((), None)`` before)."""
    row = stored.get_review(store, review.name)
    return tuple(Criterion(**c) for c in row["criteria"] or ()), row["criteria_at"]


def state_criteria(store, review: Review, criteria) -> str:
    """Store (or restate) the review's criteria; return the time stamp."""
    criteria = [c if isinstance(c, Criterion) else parse_criterion(c) for c in criteria]
    return stored.set_criteria(store, review.id, [c.to_dict() for c in criteria])


def decide(store, review: Review, verdict: str, decided_by: str, notes: str = "") -> dict:
    """Record the team's verdict (a key of :data:`VERDICTS`), who decided, now, and notes."""
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict {verdict!r} is not one of {list(VERDICTS)}")
    decision = {"verdict": verdict, "decided_by": check_reviewer(decided_by),
                "decided_at": now(), "notes": (notes or "").strip()}
    stored.set_decision(store, review.id, decision)
    return decision


def default_candidate(review: Review) -> str:
    """The candidate of a review's decision: the first student of the baseline, else model 2."""
    from ..registry import get_model

    for m in review.models[1:]:
        if get_model(m).teacher == review.baseline:
            return m
    return review.models[1]


def decision_record(store, review: Review, analysis: Analysis, *, baseline: str | None = None,
                    candidate: str | None = None) -> DecisionRecord:
    """The review's decision record for ``candidate`` against ``baseline`` (defaults: the
    baseline model and :func:`default_candidate`)."""
    baseline = baseline or review.baseline
    candidate = candidate or default_candidate(review)
    for m in (baseline, candidate):
        if m not in review.models:
            raise ReviewError(f"model {m!r} is not in review {review.name!r} ({list(review.models)})")
    if baseline == candidate:
        raise ReviewError("the candidate and the baseline must be two different models")
    criteria, criteria_at = stated_criteria(store, review)
    evaluations = evaluate(criteria, evidence(analysis, baseline, candidate))
    row = stored.get_review(store, review.name)
    decision = row["decision"] or {}
    votes = analysis.votes if analysis.votes is not None else load_votes(store, review)
    before = sum(1 for v in votes if criteria_at and v.created_at < criteria_at)
    return DecisionRecord(
        review=review.name, baseline=baseline, candidate=candidate, criteria_at=criteria_at,
        votes_before_criteria=before, evaluations=evaluations,
        all_passed=bool(evaluations) and all(e.passed for e in evaluations),
        verdict=decision.get("verdict"), decided_by=decision.get("decided_by"),
        decided_at=decision.get("decided_at"), notes=decision.get("notes", ""))


def format_value(metric: str, value: float) -> str:
    """A metric's number as the record shows it ("-" for NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, METRICS[metric][1])
