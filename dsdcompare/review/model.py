"""Reviews and votes: what a review is, how its pairs are found in the store, and blinding.

A review is a named, frozen set of image pairs taken from stored results: for each prompt and
seed of a selection, the images of two models generated from the same initial latents. With two
models there is one pair per prompt and seed; with three or more, every pair of models (or each
model against the first, the baseline). Models are ordered teachers first, so model A of a
teacher/student pair is the teacher (the baseline).

Blinding: each reviewer sees the pairs in an order shuffled for them, and each pair's sides
(which model is on the left) drawn for them; both are derived from a hash of the review and the
reviewer's name, so they are the same on every visit and in every session, and differ between
reviewers. A vote is stored in model terms (``a``, ``b``, ``tie``, ``both_bad``) with the side A
was shown on. Results (model names) are shown to a reviewer once they have voted on every pair,
or to the review's owner.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..limits import check_prompt
from ..store import reviews as stored

#: Vote choices in model terms, with how reports name them.
CHOICES = {"a": "A better", "b": "B better", "tie": "tie", "both_bad": "both bad"}
#: Vote choices as a blind reviewer sees them (left/right), with their labels.
SIDE_CHOICES = {"left": "Left better", "right": "Right better", "tie": "Tie",
                "both_bad": "Both bad"}
#: How pairs are formed among three or more models.
PAIRINGS = ("all", "baseline")
#: The committed prompt file of the offline toy review (12 prompts, 4 per shape).
TOY_PROMPTS = Path(__file__).resolve().parent / "toy_prompts.csv"
#: Name of the offline demo review.
TOY_REVIEW_NAME = "toy-review"


class ReviewError(InputError):
    """A review cannot be created, voted on or reported as asked; the message says why and how."""


@dataclass(frozen=True)
class Selection:
    """Which stored results a review takes its pairs from (the same selection as ``bench``)."""

    prompts: str  # a suite name (dsdcompare.prompts.list_suites) or a prompt file path
    seeds: tuple[int, ...]  # seeds of the initial latents, the same for every model
    steps: int  # denoising steps of the results taken
    guidance: float  # guidance scale of the results taken
    source: str | None = None  # weight source of every model; None: each model's own
    size: int | None = None  # image side of the results taken; None: each model's native size
    limit: int | None = None  # only the first N prompts of the file or suite
    text: str | None = None  # only prompts containing this text (any case)
    prompt_column: str | None = None  # the prompt column of a CSV/TSV file, when not the usual
    pairing: str = "all"  # "all" model pairs, or "baseline": the first model against each other

    def to_dict(self) -> dict:
        """Plain JSON-ready fields (stored with the review)."""
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        """The Selection a review stored."""
        data = dict(data)
        data["seeds"] = tuple(int(s) for s in data.get("seeds") or ())
        return cls(**data)


@dataclass(frozen=True)
class ReviewPair:
    """One pair of images shown side by side (the same prompt, seed and initial latents)."""

    idx: int  # position in the review (0-based): the pair's id within it
    prompt: str  # the prompt both images were generated from
    category: str | None  # the prompt's category in its suite or file, if any
    seed: int  # the seed of the initial latents
    model_a: str  # registry key of model A (the earlier model of the review: the baseline)
    model_b: str  # registry key of model B
    result_a: int  # stored result whose first image is model A's
    result_b: int  # stored result whose first image is model B's
    latent_matched: bool  # both images come from the same initial latents (same shape)


@dataclass(frozen=True)
class Review:
    """A named, frozen set of image pairs (criteria and decision live beside it in the store)."""

    id: int  # the review's row id in the store
    name: str  # unique in the store; never names a model (reviewers see it)
    owner: str  # who created it (may see results before voting)
    created_at: str  # UTC ISO 8601
    models: tuple[str, ...]  # registry keys, teachers first; the first is the baseline
    selection: Selection  # how the pairs were chosen
    pairs: tuple[ReviewPair, ...] = field(repr=False)  # in creation order

    @property
    def baseline(self) -> str:
        """The first model (a teacher, when the review has one)."""
        return self.models[0]


@dataclass(frozen=True)
class Vote:
    """One reviewer's vote on one pair (a later vote by the same reviewer replaces it)."""

    pair_idx: int  # ReviewPair.idx
    reviewer: str  # the name the reviewer gave
    choice: str  # a key of CHOICES (model terms)
    left_is_a: bool  # model A was shown on the left
    comment: str  # optional free text
    created_at: str  # first vote on this pair by this reviewer (UTC ISO 8601)
    updated_at: str  # latest change


@dataclass(frozen=True)
class Missing:
    """A generation a review needs that the store lacks."""

    prompt: str  # the prompt
    seed: int  # the seed
    model: str  # registry key of the model without a successful stored result


@dataclass(frozen=True)
class Plan:
    """What a review of ``models`` over ``selection`` would hold, before it is created."""

    models: tuple[str, ...]  # teachers first
    selection: Selection  # as given, with steps and guidance resolved
    pairs: tuple[ReviewPair, ...]  # pairs found in the store
    missing: tuple[Missing, ...]  # generations that would complete it
    prompts: tuple = ()  # the selected dsdcompare.prompts.Prompt objects


# --- names ----------------------------------------------------------------------------------------


def check_reviewer(name: str) -> str:
    """A reviewer's name, stripped; one line, not empty."""
    text = check_prompt(name if isinstance(name, str) else "", "reviewer name").strip()
    if "\n" in text or "\r" in text:
        raise ReviewError(f"reviewer name {name!r} has a line break; give one line")
    return text


def check_review_name(name: str, models) -> str:
    """A review name, stripped; refused when it names one of ``models`` (reviewers see it)."""
    from ..registry import get_model

    text = check_prompt(name if isinstance(name, str) else "", "review name").strip()
    if "\n" in text:
        raise ReviewError(f"review name {name!r} has a line break; give one line")
    lowered = text.lower()
    for key in models:
        for label in {key, get_model(key).name}:
            if label.lower() in lowered:
                raise ReviewError(f"review name {text!r} contains the model name {label!r}, "
                                  f"which every reviewer would see; choose a neutral name")
    return text


# --- finding pairs --------------------------------------------------------------------------------


def default_settings(models) -> tuple[int, float]:
    """Steps and guidance of a review's results: the models' recommended values when they all
    agree (the toy pair: 25 and 3.0), else bench's defaults (30 steps, guidance 7.5)."""
    from ..bench import DEFAULT_STEPS
    from ..registry import get_model

    specs = [get_model(getattr(m, "key", m)) for m in models]
    steps = {s.steps for s in specs}
    guidance = {s.guidance for s in specs}
    return (steps.pop() if len(steps) == 1 else DEFAULT_STEPS[0],
            guidance.pop() if len(guidance) == 1 else 7.5)


def ordered_models(models) -> tuple[str, ...]:
    """Registry keys of ``models`` (keys or a comma list), teachers first, each once."""
    from ..engine import teachers_first
    from ..registry import resolve_models

    specs = teachers_first(resolve_models(models))
    keys = tuple(dict.fromkeys(s.key for s in specs))
    if len(keys) < 2:
        raise ReviewError(f"a review compares at least two models; got {list(keys)}")
    return keys


def select_prompts(selection: Selection) -> list:
    """The prompts of ``selection``: its suite or file, first ``limit``, containing ``text``."""
    from ..prompts import load_prompts

    prompts = load_prompts(selection.prompts, column=selection.prompt_column, limit=selection.limit)
    if selection.text:
        needle = selection.text.lower()
        prompts = [p for p in prompts if needle in p.text.lower()]
        if not prompts:
            raise ReviewError(f"no prompt of {selection.prompts!r} contains {selection.text!r}")
    return prompts


def model_pairs(models: tuple[str, ...], pairing: str) -> list[tuple[str, str]]:
    """The (A, B) model pairs of a review: all pairs, or the baseline against each other."""
    if pairing not in PAIRINGS:
        raise ReviewError(f"pairing {pairing!r} is not one of {list(PAIRINGS)}")
    if pairing == "baseline":
        return [(models[0], m) for m in models[1:]]
    return [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]


def plan_review(store, models, selection: Selection) -> Plan:
    """The pairs the store holds for ``models`` over ``selection``, and what is missing.

    For each model, prompt and seed the latest successful stored result with the selection's
    steps, guidance, size and source and no negative prompt is taken (its first image is
    shown). Two results pair when both exist; they are latent-matched when their initial
    latents' fingerprints are equal (models of one latent shape).
    """
    from ..registry import get_model

    models = ordered_models(models)
    prompts = select_prompts(selection)
    latest = _latest_results(store, models, prompts, selection)
    pairs, missing = [], []
    for prompt in prompts:
        for seed in selection.seeds:
            rows = {m: latest.get((m, prompt.text, seed)) for m in models}
            missing += [Missing(prompt.text, seed, m) for m in models if rows[m] is None]
            for a, b in model_pairs(models, selection.pairing):
                if rows[a] is None or rows[b] is None:
                    continue
                sha_a, sha_b = rows[a]["latents_sha"], rows[b]["latents_sha"]
                pairs.append(ReviewPair(len(pairs), prompt.text, prompt.category, seed, a, b,
                                        int(rows[a]["result_id"]), int(rows[b]["result_id"]),
                                        bool(sha_a) and sha_a == sha_b))
    for m in models:
        get_model(m)  # an unknown key fails here, naming the registered ones
    return Plan(models, selection, tuple(pairs), tuple(missing), tuple(prompts))


def _latest_results(store, models, prompts, selection: Selection) -> dict:
    """(model, prompt, seed) -> the latest matching successful result row."""
    from ..registry import get_model

    df = store.results(success=True)
    if df.empty:
        return {}
    texts = {p.text for p in prompts}
    keep = (df["model"].isin(models) & df["prompt"].isin(texts)
            & df["seed"].isin(list(selection.seeds)) & (df["steps"] == selection.steps)
            & ((df["guidance"] - float(selection.guidance)).abs() < 1e-9)
            & (df["negative_prompt"].fillna("") == "") & (df["n_images"] > 0))
    keep &= df["size"].isna() if selection.size is None else df["size"] == selection.size
    sources = {m: selection.source or get_model(m).default_source for m in models}
    keep &= df["source"] == df["model"].map(sources)
    chosen = df[keep.fillna(False).astype(bool)].sort_values("result_id")
    return {(r["model"], r["prompt"], int(r["seed"])): r
            for r in chosen.to_dict(orient="records")}


def bench_command(store, plan: Plan) -> str:
    """The exact ``dsdcompare bench`` command that generates ``plan``'s missing results (bench
    skips what the store holds, so it generates just those)."""
    import shlex

    s = plan.selection
    prompts = s.prompts
    limit = s.limit
    if s.text:  # bench has no text filter: the selected prompts go to a file beside the store
        prompts, limit = str(prompt_file(store, plan.prompts)), None
    seeds = sorted({m.seed for m in plan.missing}) or list(s.seeds)
    parts = ["dsdcompare", "bench", "--store", str(store.path), "--models", ",".join(plan.models),
             "--prompts", prompts]
    if s.prompt_column and not s.text:
        parts += ["--prompt-column", s.prompt_column]
    if limit:
        parts += ["--limit", str(limit)]
    parts += ["--seeds", compact_ints(seeds), "--steps", str(s.steps),
              "--guidance", f"{s.guidance:g}"]
    if s.source:
        parts += ["--source", s.source]
    if s.size:
        parts += ["--size", str(s.size)]
    return " ".join(shlex.quote(p) for p in parts)


def prompt_file(store, prompts) -> Path:
    """A CSV of ``prompts`` (prompt, category) beside the store, named by its contents."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt", "category"])
    for p in prompts:
        writer.writerow([p.text, p.category or ""])
    data = buf.getvalue().encode("utf-8")
    path = store.root / "review-prompts" / f"{hashlib.sha256(data).hexdigest()[:12]}.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def compact_ints(values) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2,5'`` (what ``--seeds`` reads)."""
    values = sorted(set(int(v) for v in values))
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


# --- creating and loading -------------------------------------------------------------------------


def create_review(store, name: str, owner: str, plan: Plan, *, criteria=None) -> Review:
    """Store ``plan``'s pairs as a new review called ``name``; return it.

    ``criteria`` (decision criteria, :class:`dsdcompare.review.decision.Criterion`) are stated
    with it, before anyone votes. Raises :class:`ReviewError` when the plan found no pairs.
    """
    name = check_review_name(name, plan.models)
    owner = check_reviewer(owner)
    if not plan.pairs:
        raise ReviewError(f"no stored pairs for {', '.join(plan.models)} in this selection "
                          f"({len(plan.missing)} generations missing); generate them first")
    pairs = [{k: v for k, v in asdict(p).items() if k != "idx"} for p in plan.pairs]
    stored.add_review(store, name=name, owner=owner, models=list(plan.models),
                      selection=plan.selection.to_dict(), pairs=pairs,
                      criteria=[c.to_dict() for c in criteria] if criteria is not None else None)
    return load_review(store, name)


def load_review(store, name: str) -> Review:
    """The review called ``name`` (StoreError naming the reviews there when there is none)."""
    row = stored.get_review(store, name)
    return Review(row["id"], row["name"], row["owner"], row["created_at"], tuple(row["models"]),
                  Selection.from_dict(row["selection"]),
                  tuple(ReviewPair(**p) for p in row["pairs"]))


def list_reviews(store) -> list[dict]:
    """Every review in the store, newest first (see :func:`dsdcompare.store.reviews.list_reviews`)."""
    return stored.list_reviews(store)


def load_votes(store, review: Review) -> tuple[Vote, ...]:
    """Every vote cast on ``review``."""
    return tuple(Vote(**v) for v in stored.votes(store, review.id))


# --- blinding and voting --------------------------------------------------------------------------


def _digest(*parts) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def reviewer_order(review: Review, reviewer: str) -> list[int]:
    """The pair indices in the order ``reviewer`` sees them (shuffled for them, stable)."""
    seed = int.from_bytes(_digest("order", review.name, review.created_at, reviewer)[:8], "big")
    order = [p.idx for p in review.pairs]
    random.Random(seed).shuffle(order)
    return order


def left_is_a(review: Review, reviewer: str, pair_idx: int) -> bool:
    """Whether ``reviewer`` sees model A on the left for this pair (drawn for them, stable)."""
    return _digest("side", review.name, review.created_at, reviewer, pair_idx)[0] % 2 == 0


def choice_from_side(side: str, left_a: bool) -> str:
    """A blind choice (a key of :data:`SIDE_CHOICES`) in model terms."""
    if side not in SIDE_CHOICES:
        raise ReviewError(f"choice {side!r} is not one of {list(SIDE_CHOICES)}")
    if side == "left":
        return "a" if left_a else "b"
    if side == "right":
        return "b" if left_a else "a"
    return side


def side_from_choice(choice: str, left_a: bool) -> str:
    """A stored choice as the side the reviewer picked (inverse of :func:`choice_from_side`)."""
    if choice in ("tie", "both_bad"):
        return choice
    return "left" if (choice == "a") == left_a else "right"


def vote(store, review: Review, reviewer: str, pair_idx: int, choice: str, *,
         comment: str = "", left_a: bool | None = None) -> bool:
    """Record ``reviewer``'s vote (model terms) on a pair, replacing an earlier one; True when
    it replaced one. ``left_a`` defaults to the side the reviewer is shown."""
    reviewer = check_reviewer(reviewer)
    if choice not in CHOICES:
        raise ReviewError(f"vote {choice!r} is not one of {list(CHOICES)}")
    if not any(p.idx == pair_idx for p in review.pairs):
        raise ReviewError(f"review {review.name!r} has pairs 0 to {len(review.pairs) - 1}, "
                          f"not {pair_idx}")
    side = left_is_a(review, reviewer, pair_idx) if left_a is None else left_a
    return stored.cast_vote(store, review.id, pair_idx, reviewer, choice, left_is_a=side,
                            comment=(comment or "").strip())


def progress(review: Review, votes, reviewer: str) -> tuple[int, int]:
    """(pairs ``reviewer`` has voted on, pairs in the review)."""
    mine = {v.pair_idx for v in votes if v.reviewer == reviewer}
    return len(mine), len(review.pairs)


def can_see_results(review: Review, votes, reviewer: str | None) -> bool:
    """Model names may be shown to ``reviewer``: the owner, or someone who voted on every pair."""
    if not reviewer:
        return False
    done, total = progress(review, votes, reviewer)
    return reviewer == review.owner or (total > 0 and done == total)
