"""``dsdcompare review ACTION``: blind A/B reviews of stored images, and their decision record.

Actions: ``create`` (a review from stored results; lists what is missing with the exact
``bench`` command that fills it, or generates it with ``--generate``), ``toy`` (the offline
demo review of the toy pair), ``list``, ``vote`` (for scripting; people vote on the dashboard's
Review page), ``criteria`` (state the decision criteria), ``decide`` (record the verdict) and
``report`` (the decision record as self-contained HTML and JSON). The library is
:mod:`dsdcompare.review`.
"""

from __future__ import annotations

import csv
import getpass
import os
from datetime import UTC, datetime

from ..limits import GUIDANCE, SEED, STEPS, parse_int_list
from .common import float_arg, int_arg, size_arg, warn

#: Missing generations listed before "... and N more".
SHOW_MISSING = 30
#: Vote words accepted besides a model key.
VOTE_WORDS = {"a": "a", "b": "b", "tie": "tie", "both-bad": "both_bad", "both_bad": "both_bad"}


def _store_option(p) -> None:
    p.add_argument("--store", metavar="PATH",
                   help="results database or folder (default: $DSDCOMPARE_STORE or "
                        "./dsdcompare-results/results.sqlite); a bundle .zip opens read-only")


def _default_owner() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def configure(p) -> None:
    """Options of ``review``: one action (create, toy, list, vote, criteria, decide, report)."""
    from ..review.decision import METRICS, VERDICTS
    from ..review.model import PAIRINGS
    from ..zoo import SOURCES

    sub = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="a review from stored results (lists what is missing)")
    _store_option(c)
    c.add_argument("--models", required=True, help="comma-separated registry keys (two or more; "
                                                   "teachers become model A, the baseline)")
    c.add_argument("--models-file", metavar="TOML", help="a TOML file of extra models")
    c.add_argument("--prompts", required=True, metavar="FILE|SUITE",
                   help="a suite (e.g. core) or a prompt file, as for bench")
    c.add_argument("--prompt-column", metavar="NAME", help="prompt column of a CSV/TSV file")
    c.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    c.add_argument("--text", metavar="TEXT", help="only prompts containing TEXT (any case)")
    c.add_argument("--seeds", default="0", metavar="LIST", help="seeds, e.g. 0-3 (default 0)")
    c.add_argument("--steps", type=int_arg(STEPS),
                   help="steps of the results (default: the models' recommended value when "
                        "they agree, else 30)")
    c.add_argument("--guidance", type=float_arg(GUIDANCE),
                   help="guidance of the results (default: the models' when they agree, else 7.5)")
    c.add_argument("--source", choices=list(SOURCES), help="weight source (default: each model's own)")
    c.add_argument("--size", type=size_arg, default=None, metavar="native|PIXELS",
                   help="image side of the results (default native)")
    c.add_argument("--pairs", choices=list(PAIRINGS), default="all",
                   help="with three or more models: all pairs (default) or the baseline vs each")
    c.add_argument("--name", help="review name (default review-<date>); must not name a model")
    c.add_argument("--owner", default=_default_owner(),
                   help="who owns it (may see results before voting; default $USER)")
    c.add_argument("--criterion", action="append", metavar="'METRIC BOUND OP NUMBER'",
                   help=f"a decision criterion, stated now (repeatable; default: the four "
                        f"defaults). Metrics: {', '.join(METRICS)}; bounds: estimate, low, high")
    c.add_argument("--no-criteria", action="store_true", help="state no criteria now")
    c.add_argument("--generate", action="store_true",
                   help="generate the missing images here first (as the printed bench command would)")
    c.add_argument("--partial", action="store_true",
                   help="create the review from the pairs stored even when some are missing")
    c.add_argument("--device", default="auto", help="with --generate: auto, cpu, cuda, ...")
    c.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    t = sub.add_parser("toy", help="the offline demo: toy teacher vs toy student, 24 pairs")
    _store_option(t)
    t.add_argument("--name", default="toy-review")
    t.add_argument("--owner", default=_default_owner())
    _store_option(sub.add_parser("list", help="reviews in the store, newest first"))
    v = sub.add_parser("vote", help="cast votes from a script (people use the Review page)")
    _store_option(v)
    v.add_argument("name", metavar="NAME")
    v.add_argument("--reviewer", help="who votes")
    v.add_argument("--pair", type=int, help="pair index (0-based)")
    v.add_argument("--choice", help="a, b, tie, both-bad, or the key of the better model")
    v.add_argument("--comment", default="")
    v.add_argument("--csv", metavar="FILE",
                   help="many votes: a CSV with columns reviewer, pair, choice[, comment]")
    cr = sub.add_parser("criteria", help="state (or restate) the decision criteria")
    _store_option(cr)
    cr.add_argument("name", metavar="NAME")
    cr.add_argument("--criterion", action="append", required=True,
                    metavar="'METRIC BOUND OP NUMBER'", help="e.g. 'win_rate low >= 0.35'")
    d = sub.add_parser("decide", help="record the team's verdict")
    _store_option(d)
    d.add_argument("name", metavar="NAME")
    d.add_argument("--verdict", required=True, choices=list(VERDICTS))
    d.add_argument("--by", required=True, help="who decided")
    d.add_argument("--notes", default="")
    r = sub.add_parser("report", help="the decision record as self-contained HTML and JSON")
    _store_option(r)
    r.add_argument("name", metavar="NAME")
    r.add_argument("--html", metavar="FILE", help="write the HTML report here")
    r.add_argument("--json", metavar="FILE", help="write the JSON record here")
    r.add_argument("--baseline", help="model the candidate would replace (default: model A)")
    r.add_argument("--candidate", help="the candidate (default: the baseline's student)")


def run(args) -> int:
    """Run one ``review`` action; 0 done, 1 missing generations (create), 2 bad input."""
    actions = {"create": _create, "toy": _toy, "list": _list, "vote": _vote,
               "criteria": _criteria, "decide": _decide, "report": _report}
    return actions[args.review_command](args)


def _open(args, *, readonly: bool = False):
    from ..store import Store

    return Store(args.store, readonly=readonly) if args.store else Store(readonly=readonly)


# --- create ---------------------------------------------------------------------------------------


def _selection(args, models):
    from ..review.model import Selection, default_settings

    steps, guidance = default_settings(models)
    return Selection(prompts=args.prompts, seeds=tuple(parse_int_list(args.seeds, SEED)),
                     steps=args.steps or steps,
                     guidance=args.guidance if args.guidance is not None else guidance,
                     source=args.source, size=args.size, limit=args.limit,
                     text=args.text or None, prompt_column=args.prompt_column,
                     pairing=args.pairs)


def _criteria_of(args):
    from ..review.decision import DEFAULT_CRITERIA, parse_criterion

    if args.no_criteria:
        return None
    return [parse_criterion(c) for c in args.criterion] if args.criterion else DEFAULT_CRITERIA


def _print_plan(store, plan) -> None:
    from ..review.model import bench_command

    matched = sum(p.latent_matched for p in plan.pairs)
    print(f"{len(plan.pairs)} pairs stored ({matched} latent-matched) for "
          f"{', '.join(plan.models)} over {len(plan.prompts)} prompts x "
          f"{len(plan.selection.seeds)} seeds ({plan.selection.steps} steps, guidance "
          f"{plan.selection.guidance:g})")
    if plan.missing:
        print(f"{len(plan.missing)} generations missing:")
        for m in plan.missing[:SHOW_MISSING]:
            print(f"  {m.model}  seed {m.seed}  {m.prompt}")
        if len(plan.missing) > SHOW_MISSING:
            print(f"  ... and {len(plan.missing) - SHOW_MISSING} more")
        print("fill them with (bench skips what is stored):")
        print(f"  {bench_command(store, plan)}")


def _create(args) -> int:
    from ..registry import load_models_file
    from ..review.generate import generate_missing
    from ..review.model import create_review, ordered_models, plan_review

    if args.models_file:
        load_models_file(args.models_file)
    models = ordered_models(args.models)
    criteria = _criteria_of(args)  # parse before any work
    name = args.name or f"review-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with _open(args) as store:
        plan = plan_review(store, models, _selection(args, models))
        _print_plan(store, plan)
        if plan.missing and args.generate:
            print(f"generating {len(plan.missing)} missing results ...")
            generate_missing(store, plan, device=args.device, dtype=args.dtype,
                             progress_bar=_progress_bar)
            plan = plan_review(store, models, plan.selection)
            _print_plan(store, plan)
        if plan.missing and not args.partial:
            print("nothing created: run the command above (or add --generate, or --partial to "
                  "review only what is stored), then this command again")
            return 1
        if plan.missing:
            warn(f"{len(plan.missing)} generations missing: the review holds only the "
                 f"{len(plan.pairs)} stored pairs")
        review = create_review(store, name, args.owner, plan, criteria=criteria)
        print(f"created review {review.name!r}: {len(review.pairs)} pairs, owner "
              f"{review.owner}; vote on the dashboard's Review page")
    return 0


def _progress_bar(total: int, tag: str, position: int | None):
    from .progress import StepProgress

    return StepProgress(total, tag, position=position, disable=not total)


def _toy(args) -> int:
    from ..review.generate import create_toy_review

    with _open(args) as store:
        review = create_toy_review(store, args.owner, name=args.name)
        print(f"created review {review.name!r}: {len(review.pairs)} pairs of the toy pair, "
              f"owner {review.owner}")
    return 0


def _list(args) -> int:
    from ..review.model import list_reviews

    with _open(args, readonly=True) as store:
        rows = list_reviews(store)
    if not rows:
        print("no reviews in this store; create one with `dsdcompare review create` or "
              "`dsdcompare review toy`")
        return 0
    for r in rows:
        print(f"{r['name']}  {r['created_at'][:16]}  owner {r['owner']}  "
              f"{' vs '.join(r['models'])}  {r['n_pairs']} pairs  {r['n_votes']} votes by "
              f"{r['n_reviewers']} reviewers  {'decided' if r['decided'] else 'open'}")
    return 0


# --- votes, criteria, decision --------------------------------------------------------------------


def _choice(review, pair_idx: int, word: str) -> str:
    from ..review.model import ReviewError

    word = (word or "").strip()
    if word in VOTE_WORDS:
        return VOTE_WORDS[word]
    pair = next((p for p in review.pairs if p.idx == pair_idx), None)
    if pair is not None and word in (pair.model_a, pair.model_b):
        return "a" if word == pair.model_a else "b"
    raise ReviewError(f"vote {word!r} is not a, b, tie, both-bad or a model of pair {pair_idx}")


def _vote(args) -> int:
    from ..review.model import ReviewError, load_review, vote

    if args.csv:
        with open(args.csv, newline="", encoding="utf-8") as fh:
            rows = [(r["reviewer"], int(r["pair"]), r["choice"], r.get("comment") or "")
                    for r in csv.DictReader(fh)]
    elif args.reviewer and args.pair is not None and args.choice:
        rows = [(args.reviewer, args.pair, args.choice, args.comment)]
    else:
        raise ReviewError("give --reviewer, --pair and --choice, or --csv FILE")
    replaced = 0
    with _open(args) as store:
        review = load_review(store, args.name)
        for reviewer, pair_idx, word, comment in rows:
            replaced += vote(store, review, reviewer, pair_idx, _choice(review, pair_idx, word),
                             comment=comment)
    print(f"{len(rows)} votes recorded on {args.name!r} ({replaced} replaced earlier ones)")
    return 0


def _criteria(args) -> int:
    from ..review.decision import parse_criterion, state_criteria
    from ..review.model import load_review

    criteria = [parse_criterion(c) for c in args.criterion]
    with _open(args) as store:
        stamp = state_criteria(store, load_review(store, args.name), criteria)
    print(f"{len(criteria)} criteria stated for {args.name!r} at {stamp}")
    return 0


def _decide(args) -> int:
    from ..review.decision import decide
    from ..review.model import load_review

    with _open(args) as store:
        decision = decide(store, load_review(store, args.name), args.verdict, args.by, args.notes)
    print(f"verdict {decision['verdict']!r} recorded for {args.name!r} by "
          f"{decision['decided_by']} at {decision['decided_at']}")
    return 0


def _report(args) -> int:
    from ..review import analyse, build, decision_record, load_review
    from ..review.decision import format_value
    from ..review.report import json_text, write_atomic

    with _open(args, readonly=True) as store:
        review = load_review(store, args.name)
        analysis = analyse(store, review)
        record = decision_record(store, review, analysis, baseline=args.baseline,
                                 candidate=args.candidate)
        html, data = build(store, review, analysis, record) if (args.html or args.json) else (None, None)
    print(f"{review.name}: {len(review.pairs)} pairs, {len(analysis.votes)} votes by "
          f"{analysis.agreement['n_reviewers']} reviewers; candidate {record.candidate} vs "
          f"baseline {record.baseline}")
    for e in record.evaluations:
        c, ev = e.criterion, e.evidence
        outcome = {True: "pass", False: "FAIL", None: "no evidence"}[e.passed]
        print(f"  {outcome:11s} {c.text():32s} {format_value(c.metric, ev.value)} "
              f"[{format_value(c.metric, ev.low)}, {format_value(c.metric, ev.high)}]")
    ag = analysis.agreement
    print(f"  agreement: Krippendorff's alpha {format_value('agreement', ag['alpha'])} "
          f"[{format_value('agreement', ag['ci_low'])}, {format_value('agreement', ag['ci_high'])}]"
          + (f" ({ag['note']})" if ag["note"] else ""))
    print(f"  verdict: {record.verdict or 'not recorded'}"
          + (f" by {record.decided_by} at {record.decided_at}" if record.verdict else ""))
    if args.html:
        print(f"wrote {write_atomic(args.html, html)}")
    if args.json:
        print(f"wrote {write_atomic(args.json, json_text(data))}")
    return 0
