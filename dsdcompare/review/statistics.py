"""The numbers of a review: human preference, rater agreement, and the automatic metrics of the
same pairs.

Why they are computed this way:

- **Ties count as half a win** for each side, and "both bad" is a tie (as in public arenas'
  Bradley-Terry fits); both are also counted apart, so a tie-heavy result is visible.
- **The prompt is the resampling unit**, as in :mod:`dsdcompare.stats`: seeds of one prompt and
  the reviewers of one pair share the prompt's difficulty, so votes are averaged within a prompt
  first and the bootstrap (:func:`dsdcompare.stats.bootstrap_ci`, BCa, seeded) resamples
  prompts. Treating every vote as independent would make the intervals too narrow.
- **Wilson intervals** (no continuity correction, as
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``) are used where the votes are one
  reviewer's, one per pair, and for counts of flagged images.
- **Bradley-Terry** strengths (log scale, the baseline at 0) are the maximum-likelihood fit of
  the pairwise votes (ties half), computed with scipy, with a weak Gaussian prior
  (:data:`BT_PRIOR`) that keeps a model that won or lost every vote finite; intervals are
  percentile bootstraps over prompts.
- **Rater agreement** is Krippendorff's alpha (nominal; the ``krippendorff`` package) over the
  four choices in model terms, with missing votes allowed; its interval resamples pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..stats import Interval, bootstrap_ci
from .model import CHOICES, Review

#: Score of a vote for model B: a win 1, a loss 0, a tie or "both bad" one half.
SCORE_B = {"b": 1.0, "a": 0.0, "tie": 0.5, "both_bad": 0.5}
#: Code of each choice in the agreement matrix (nominal categories).
CHOICE_CODES = {c: i for i, c in enumerate(CHOICES)}
#: Precision of the Gaussian prior on Bradley-Terry log-strengths (variance 1 / BT_PRIOR).
BT_PRIOR = 0.01
#: Bootstrap resamples for Bradley-Terry and agreement intervals (refits per resample).
REFIT_RESAMPLES = 1000


@dataclass(frozen=True)
class Analysis:
    """Everything a review's results show (tables are pandas DataFrames)."""

    review: Review  # the review analysed
    votes: tuple  # its votes (dsdcompare.review.model.Vote)
    win_rates: pd.DataFrame  # per model pair (see win_rates)
    by_category: pd.DataFrame  # per model pair and prompt category
    by_reviewer: pd.DataFrame  # per reviewer and model pair (see by_reviewer)
    bradley_terry: pd.DataFrame | None  # strengths for three or more models, else None
    agreement: dict  # Krippendorff's alpha and friends (see agreement)
    disagreements: pd.DataFrame  # the most disagreed pairs
    automatic: pd.DataFrame  # CLIP, fidelity, latency and flags of the same pairs
    position: dict  # how often the left image was chosen among decisive votes


# --- intervals ------------------------------------------------------------------------------------


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of a proportion ``successes / n`` (NaN when ``n`` is 0).

    Equals ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` for whole numbers;
    ``successes`` may be fractional (ties counted as half).
    """
    from scipy.stats import norm

    if n <= 0:
        return Interval(float("nan"), float("nan"))
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 and n successes the bounds are exactly 0 and 1; rounding must not move them
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return Interval(low, high)


# --- the votes as a table -------------------------------------------------------------------------


def vote_frame(review: Review, votes) -> pd.DataFrame:
    """One row per vote with its pair's prompt, category, seed and models, and ``score_b``."""
    pairs = {p.idx: p for p in review.pairs}
    rows = []
    for v in votes:
        p = pairs[v.pair_idx]
        rows.append({"pair_idx": v.pair_idx, "reviewer": v.reviewer, "choice": v.choice,
                     "left_is_a": v.left_is_a, "comment": v.comment, "prompt": p.prompt,
                     "category": p.category or "(none)", "seed": p.seed, "model_a": p.model_a,
                     "model_b": p.model_b, "score_b": SCORE_B[v.choice]})
    columns = ["pair_idx", "reviewer", "choice", "left_is_a", "comment", "prompt", "category",
               "seed", "model_a", "model_b", "score_b"]
    return pd.DataFrame(rows, columns=columns)


def _counts(g: pd.DataFrame) -> dict:
    c = g["choice"].value_counts()
    return {"n_votes": len(g), "n_pairs": g["pair_idx"].nunique(), "n_prompts": g["prompt"].nunique(),
            "wins_a": int(c.get("a", 0)), "wins_b": int(c.get("b", 0)),
            "ties": int(c.get("tie", 0)), "both_bad": int(c.get("both_bad", 0))}


# --- human preference -----------------------------------------------------------------------------


def win_rates(frame: pd.DataFrame, *, by: tuple[str, ...] = (), confidence: float = 0.95,
              n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per model pair (and ``by`` columns): vote counts and model B's win rate over A.

    ``win_rate_b`` is the mean over prompts of the prompt's mean vote score (ties half), and
    ``ci_low`` / ``ci_high`` its bootstrap interval over prompts. ``ties`` and ``both_bad`` are
    shown apart.
    """
    keys = ["model_a", "model_b", *by]
    rows = []
    for key, g in frame.groupby(keys, sort=False):
        per_prompt = g.groupby("prompt")["score_b"].mean()
        ci = bootstrap_ci(per_prompt, confidence=confidence, n_resamples=n_resamples, seed=seed)
        rows.append({**dict(zip(keys, key, strict=True)), **_counts(g),
                     "win_rate_b": float(per_prompt.mean()), "ci_low": ci.low, "ci_high": ci.high})
    columns = [*keys, "n_votes", "n_pairs", "n_prompts", "wins_a", "wins_b", "ties", "both_bad",
               "win_rate_b", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def by_reviewer(review: Review, frame: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per reviewer and model pair: votes, completion, choices, B's win rate with its Wilson
    interval (one vote per pair), how often the left image won a decisive vote, and how often
    the reviewer agreed with the others' majority on the same pairs."""
    rows = []
    majority = _others_majority(frame)
    for (reviewer, a, b), g in frame.groupby(["reviewer", "model_a", "model_b"], sort=True):
        counts = _counts(g)
        wins = counts["wins_b"] + 0.5 * (counts["ties"] + counts["both_bad"])
        ci = wilson_interval(wins, len(g), confidence=confidence)
        decisive = g[g["choice"].isin(["a", "b"])]
        left = ((decisive["choice"] == "a") == decisive["left_is_a"]).sum()
        agree = [majority.get((reviewer, i)) for i in g["pair_idx"]]
        judged = [(m, c) for m, c in zip(agree, g["choice"], strict=True) if m is not None]
        rows.append({"reviewer": reviewer, "model_a": a, "model_b": b, **counts,
                     "done": counts["n_pairs"] / max(1, sum(1 for p in review.pairs
                                                            if (p.model_a, p.model_b) == (a, b))),
                     "win_rate_b": wins / len(g), "ci_low": ci.low, "ci_high": ci.high,
                     "left_chosen": left / len(decisive) if len(decisive) else float("nan"),
                     "agrees_with_others": (sum(m == c for m, c in judged) / len(judged)
                                            if judged else float("nan"))})
    columns = ["reviewer", "model_a", "model_b", "n_votes", "n_pairs", "n_prompts", "wins_a",
               "wins_b", "ties", "both_bad", "done", "win_rate_b", "ci_low", "ci_high",
               "left_chosen", "agrees_with_others"]
    return pd.DataFrame(rows, columns=columns)


def _others_majority(frame: pd.DataFrame) -> dict:
    """(reviewer, pair) -> the others' most common choice on that pair, when there is one."""
    out = {}
    for pair_idx, g in frame.groupby("pair_idx"):
        for reviewer in g["reviewer"]:
            others = g.loc[g["reviewer"] != reviewer, "choice"].value_counts()
            if len(others) and (len(others) == 1 or others.iloc[0] > others.iloc[1]):
                out[(reviewer, pair_idx)] = others.index[0]
    return out


def position_bias(frame: pd.DataFrame, *, confidence: float = 0.95) -> dict:
    """How often the left image won among decisive votes (0.5 when sides do not matter)."""
    decisive = frame[frame["choice"].isin(["a", "b"])]
    left = int(((decisive["choice"] == "a") == decisive["left_is_a"]).sum())
    ci = wilson_interval(left, len(decisive), confidence=confidence)
    return {"n_decisive": len(decisive), "left_chosen": left,
            "rate": left / len(decisive) if len(decisive) else float("nan"),
            "ci_low": ci.low, "ci_high": ci.high}


# --- Bradley-Terry --------------------------------------------------------------------------------


def fit_bradley_terry(wins, *, prior: float = 0.0, reference: int = 0,
                      tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Bradley-Terry log-strengths from a wins matrix (``wins[i, j]``: times i beat j; a tie adds
    one half to both), with ``theta[reference] = 0``.

    Maximises ``sum W_ij log sigmoid(theta_i - theta_j) - prior / 2 * sum theta^2`` by Newton's
    method with the exact Hessian and step halving (a few iterations, so bootstraps can refit
    a thousand times in a second); scipy's L-BFGS finishes the rare case Newton does not.
    ``prior=0`` is the plain maximum-likelihood estimate, which exists when every model both
    won and lost against a connected set of others.
    """
    w = np.asarray(wins, dtype=float)
    k = w.shape[0]
    free = np.array([i for i in range(k) if i != reference], dtype=int)
    n = w + w.T  # comparisons between each two models

    def full(x):
        theta = np.zeros(k)
        theta[free] = x
        return theta

    def nll(x):
        d = full(x)[:, None] - full(x)[None, :]
        return float((w * np.logaddexp(0.0, -d)).sum()) + prior / 2 * float(x @ x)

    def grad_hess(x):
        theta = full(x)
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # P(i beats j)
        grad = -(w.sum(axis=1) - (n * p).sum(axis=1))  # of the negative log-likelihood
        v = n * p * (1 - p)
        hess = np.diag(v.sum(axis=1)) - v
        return (grad[free] + prior * x,
                hess[np.ix_(free, free)] + prior * np.eye(len(free)))

    x = np.zeros(k - 1)
    for _ in range(max_iter):
        g, h = grad_hess(x)
        if np.abs(g).max() < tol:
            return full(x)
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        f0, t = nll(x), 1.0
        while t > 1e-8 and nll(x - t * step) > f0:
            t /= 2
        x = x - t * step
    from scipy.optimize import minimize

    res = minimize(lambda y: (nll(y), grad_hess(y)[0]), x, jac=True, method="L-BFGS-B",
                   options={"gtol": tol, "maxiter": 10_000})
    return full(res.x)


def _wins_by_prompt(frame: pd.DataFrame, models: list[str]) -> tuple[list[str], np.ndarray]:
    """Prompts, and a (prompts, k, k) array of each prompt's wins matrix."""
    index = {m: i for i, m in enumerate(models)}
    prompts = list(dict.fromkeys(frame["prompt"]))
    where = {p: i for i, p in enumerate(prompts)}
    out = np.zeros((len(prompts), len(models), len(models)))
    for row in frame.itertuples(index=False):
        a, b, s = index[row.model_a], index[row.model_b], row.score_b
        out[where[row.prompt], b, a] += s
        out[where[row.prompt], a, b] += 1.0 - s
    return prompts, out


def bradley_terry(frame: pd.DataFrame, models, *, prior: float = BT_PRIOR,
                  confidence: float = 0.95, n_resamples: int = REFIT_RESAMPLES,
                  seed: int = 0) -> pd.DataFrame:
    """Bradley-Terry strengths of ``models`` (the first is the reference, at 0) with percentile
    bootstrap intervals over prompts; ``p_beats_reference`` is sigmoid(strength)."""
    models = list(models)
    _, per_prompt = _wins_by_prompt(frame, models)
    theta = fit_bradley_terry(per_prompt.sum(axis=0), prior=prior)
    low = high = np.full(len(models), np.nan)
    if len(per_prompt) >= 2:
        rng = np.random.default_rng(seed)
        draws = np.array([fit_bradley_terry(per_prompt[rng.integers(0, len(per_prompt),
                                                                    len(per_prompt))].sum(axis=0),
                                            prior=prior) for _ in range(n_resamples)])
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    sig = lambda x: 1 / (1 + np.exp(-x))
    return pd.DataFrame({"model": models, "strength": theta, "ci_low": low, "ci_high": high,
                         "p_beats_reference": sig(theta), "p_low": sig(low), "p_high": sig(high)})


# --- agreement and disagreement -------------------------------------------------------------------


def agreement(frame: pd.DataFrame, *, confidence: float = 0.95,
              n_resamples: int = REFIT_RESAMPLES, seed: int = 0) -> dict:
    """Krippendorff's alpha (nominal, four choices in model terms) over pairs voted by two or
    more reviewers, with a percentile bootstrap interval over pairs, and the plain share of
    agreeing reviewer pairs. ``note`` says why alpha is NaN when it is."""
    import krippendorff

    out = {"alpha": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "n_reviewers": int(frame["reviewer"].nunique()), "n_pairs": 0,
           "percent_agreement": float("nan"), "note": ""}
    counts = frame.groupby("pair_idx")["reviewer"].nunique()
    units = counts[counts >= 2].index.tolist()
    out["n_pairs"] = len(units)
    if not units:
        out["note"] = "no pair has votes from two reviewers yet"
        return out
    raters = sorted(frame["reviewer"].unique())
    data = np.full((len(raters), len(units)), np.nan)
    col = {u: i for i, u in enumerate(units)}
    row = {r: i for i, r in enumerate(raters)}
    for v in frame[frame["pair_idx"].isin(units)].itertuples(index=False):
        data[row[v.reviewer], col[v.pair_idx]] = CHOICE_CODES[v.choice]
    out["percent_agreement"] = float(_percent_agreement(data))
    domain = list(CHOICE_CODES.values())

    def alpha(d):
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 when no variation
                return float(krippendorff.alpha(reliability_data=d, value_domain=domain,
                                                 level_of_measurement="nominal"))
        except (ValueError, ZeroDivisionError):  # one value only: alpha is undefined
            return float("nan")

    out["alpha"] = alpha(data)
    if math.isnan(out["alpha"]):
        out["note"] = "every vote is the same choice: alpha is undefined (no variation to agree on)"
        return out
    if len(units) >= 2:
        rng = np.random.default_rng(seed)
        draws = np.array([alpha(data[:, rng.integers(0, len(units), len(units))])
                          for _ in range(n_resamples)])
        draws = draws[~np.isnan(draws)]
        if len(draws):
            tail = (1 - confidence) / 2 * 100
            out["ci_low"], out["ci_high"] = (float(x) for x in np.percentile(draws, [tail, 100 - tail]))
    return out


def _percent_agreement(data: np.ndarray) -> float:
    """Share of reviewer pairs, over units, that chose the same."""
    agree = total = 0
    for unit in data.T:
        values = unit[~np.isnan(unit)]
        for i in range(len(values)):
            for j in range(i + 1, len(values)):
                total += 1
                agree += values[i] == values[j]
    return agree / total if total else float("nan")


def disagreements(review: Review, frame: pd.DataFrame, *, top: int = 10) -> pd.DataFrame:
    """The pairs reviewers disagreed on most: ``disagreement`` = 1 - share of the most common
    choice (0 when unanimous), among pairs with two or more votes; comments joined."""
    pairs = {p.idx: p for p in review.pairs}
    rows = []
    for idx, g in frame.groupby("pair_idx"):
        if len(g) < 2:
            continue
        c = g["choice"].value_counts()
        comments = "; ".join(f"{r}: {t}" for r, t in zip(g["reviewer"], g["comment"], strict=True) if t)
        p = pairs[idx]
        rows.append({"pair_idx": idx, "prompt": p.prompt, "seed": p.seed, "model_a": p.model_a,
                     "model_b": p.model_b, "n_votes": len(g),
                     **{k: int(c.get(k, 0)) for k in CHOICES},
                     "disagreement": 1 - c.iloc[0] / len(g), "comments": comments})
    columns = ["pair_idx", "prompt", "seed", "model_a", "model_b", "n_votes", *CHOICES,
               "disagreement", "comments"]
    df = pd.DataFrame(rows, columns=columns)
    df = df[df["disagreement"] > 0] if len(df) else df
    return df.sort_values(["disagreement", "n_votes", "pair_idx"],
                          ascending=[False, False, True]).head(top).reset_index(drop=True)
