"""The Review page: blind A/B voting on a review, its results once unblinded, the decision record.

A reviewer gives a name once per session. Pairs come in the order shuffled for that reviewer,
each with its sides drawn for them (:mod:`dsdcompare.review.model`); nothing on the page names a
model until :func:`dsdcompare.review.can_see_results` allows it (every pair voted, or the
review's owner). Votes go straight to the store, so reviewers in other sessions (or processes)
never overwrite one another; voting again on a pair replaces one's own vote.

Widget keys start with ``review_``.
"""

from __future__ import annotations

import io
import time

import pandas as pd
import streamlit as st

from dsdcompare import review as rv
from dsdcompare.review import decision as dec
from dsdcompare.review import model as rm
from dsdcompare.review import report

from . import resources
from .common import plain
from .sidebar import Settings, model_choices

#: Smallest side the voting page shows an image at (toy images are 32 px: enlarged, no blur).
DISPLAY_SIDE = 256
#: Page modes: key -> label.
MODES = {"vote": "Vote", "results": "Results", "new": "New review"}


# --- store, reviewer, choice ----------------------------------------------------------------------

def store_ui(s: Settings):
    """The active store (created when missing, unless it is a bundle); stops when unusable."""
    store, why = resources.cached_store(s.store_path, s.store_readonly, create=True)
    if store is None:
        st.info(f"{plain(why)} Choose a store in the sidebar.", icon=":material/database:")
        st.stop()
    return store


def _start_reviewing() -> None:
    text = st.session_state.get("review_name_input", "")
    try:
        st.session_state.review_reviewer = rm.check_reviewer(text)
        st.session_state.review_name_error = None
    except rv.ReviewError as err:
        st.session_state.review_name_error = str(err)


def reviewer_ui() -> str:
    """The reviewer's name, asked once per session (stops until given)."""
    ss = st.session_state
    if ss.get("review_reviewer"):
        c1, c2 = st.columns([5, 1])
        c1.caption(f"Reviewing as **{ss.review_reviewer}**. Votes are stored with this name.")
        c2.button("Change name", key="review_change_name",
                  on_click=lambda: ss.pop("review_reviewer", None))
        return ss.review_reviewer
    st.text_input("Your name", key="review_name_input", max_chars=80,
                  help="Shown with your votes; the same name in another session continues "
                       "your votes.")
    st.button("Start reviewing", key="review_start", type="primary", on_click=_start_reviewing)
    if ss.get("review_name_error"):
        st.error(plain(ss.review_name_error))
    st.stop()


def _make_toy(store, reviewer: str) -> None:
    from dsdcompare.review.generate import create_toy_review

    with st.spinner("Generating the toy pair's 48 images (about a minute on a CPU)…"):
        try:
            st.session_state.review_choice = create_toy_review(store, reviewer).name
        except Exception as err:  # shown, not raised: the page stays usable
            st.session_state.review_toy_error = f"{type(err).__name__}: {err}"


def choose_ui(store, reviewer: str) -> tuple[rm.Review | None, str]:
    """The review to work on and the mode (vote, results, new); offers the toy review when the
    store has none."""
    rows = rm.list_reviews(store)
    ss = st.session_state
    if not rows:
        st.info("No reviews in this store yet. Make the offline demo review of the toy pair, "
                "or create one under **New review**.", icon=":material/rate_review:")
        st.button("Create the toy review (24 pairs; generates the images if needed)",
                  key="review_make_toy", disabled=store.readonly,
                  on_click=_make_toy, args=(store, reviewer))
        if ss.get("review_toy_error"):
            st.error(plain(ss.review_toy_error))
        mode = st.segmented_control("Mode", ["new"], format_func=MODES.get, key="review_mode_empty")
        return None, mode or ""
    names = [r["name"] for r in rows]
    info = {r["name"]: r for r in rows}
    if ss.get("review_created") in names:  # a review just created under New review
        ss.review_choice, ss.review_mode = ss.pop("review_created"), "vote"
    if ss.get("review_choice") not in names:
        ss.review_choice = names[0]
    c1, c2 = st.columns([3, 2])
    name = c1.selectbox("Review", names, key="review_choice",
                        format_func=lambda n: f"{n} · {info[n]['n_pairs']} pairs · owner "
                                              f"{info[n]['owner']}")
    ss.setdefault("review_mode", "vote")
    mode = c2.segmented_control("Mode", list(MODES), format_func=MODES.get, key="review_mode")
    return rm.load_review(store, name), mode or "vote"


# --- voting ---------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=512)
def display_png(path: str) -> bytes:
    """A stored image as PNG bytes for the page, enlarged without blur when small."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if max(img.size) < DISPLAY_SIDE:
            factor = -(-DISPLAY_SIDE // max(img.size))
            img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return buf.getvalue()


def _position_key(review: rm.Review, reviewer: str) -> str:
    return f"review_pos::{review.name}::{reviewer}"


def _next_unvoted(order: list[int], voted: set[int], start: int) -> int:
    """The first position at or after ``start`` (wrapping) whose pair is not voted, else start."""
    n = len(order)
    for step in range(n):
        pos = (start + step) % n
        if order[pos] not in voted:
            return pos
    return start % n


def _cast(store, review: rm.Review, reviewer: str, pair_idx: int, side: str, left_a: bool) -> None:
    comment = st.session_state.get(f"review_comment_{pair_idx}", "")
    rm.vote(store, review, reviewer, pair_idx, rm.choice_from_side(side, left_a),
            comment=comment, left_a=left_a)
    order = rm.reviewer_order(review, reviewer)
    voted = {v.pair_idx for v in rm.load_votes(store, review) if v.reviewer == reviewer}
    key = _position_key(review, reviewer)
    st.session_state[key] = _next_unvoted(order, voted, st.session_state[key] + 1)


def _move(review: rm.Review, reviewer: str, step: int) -> None:
    key = _position_key(review, reviewer)
    st.session_state[key] = (st.session_state[key] + step) % len(review.pairs)


def vote_ui(store, review: rm.Review, reviewer: str) -> None:
    """One pair at a time, blind: progress, the two images, the four choices, comment, back and
    skip."""
    if store.readonly:
        st.info("This store is a read-only bundle: votes cannot be stored here.")
        return
    votes = rm.load_votes(store, review)
    mine = {v.pair_idx: v for v in votes if v.reviewer == reviewer}
    order = rm.reviewer_order(review, reviewer)
    key = _position_key(review, reviewer)
    if key not in st.session_state:
        st.session_state[key] = _next_unvoted(order, set(mine), 0)
    pos = st.session_state[key] % len(order)
    pair = review.pairs[order[pos]]
    left_a = rm.left_is_a(review, reviewer, pair.idx)
    done, total = len(mine), len(review.pairs)
    st.progress(done / total, text=f"{done} of {total} voted")
    st.markdown(f"#### Pair {pos + 1} of {total}")
    st.markdown(f"**Prompt:** {plain(pair.prompt)} · seed {pair.seed}")
    left, right = ((pair.result_a, pair.result_b) if left_a else (pair.result_b, pair.result_a))
    cols = st.columns(2)
    for col, rid, label in ((cols[0], left, "Left"), (cols[1], right, "Right")):
        paths = store.images(rid)
        col.image(display_png(str(paths[0])), caption=label, width=DISPLAY_SIDE)
    current = mine.get(pair.idx)
    if current is not None:
        side = rm.side_from_choice(current.choice, current.left_is_a)
        st.info(f"Your vote: **{rm.SIDE_CHOICES[side]}**"
                + (f" — “{current.comment}”" if current.comment else "")
                + ". Vote again to change it.", icon=":material/how_to_vote:")
    st.text_input("Comment (optional)", key=f"review_comment_{pair.idx}",
                  value=current.comment if current else "")
    buttons = st.columns(4)
    for col, side in zip(buttons, rm.SIDE_CHOICES, strict=True):
        col.button(rm.SIDE_CHOICES[side], key=f"review_vote_{side}", width="stretch",
                   type="primary" if side in ("left", "right") else "secondary",
                   on_click=_cast, args=(store, review, reviewer, pair.idx, side, left_a))
    nav = st.columns([1, 1, 4])
    nav[0].button("Back", key="review_back", icon=":material/arrow_back:",
                  on_click=_move, args=(review, reviewer, -1))
    nav[1].button("Skip", key="review_skip", icon=":material/arrow_forward:",
                  on_click=_move, args=(review, reviewer, 1))
    if done == total:
        st.success(f"You have voted on all {total} pairs: the results are unlocked (Mode → "
                   f"Results). You can still change any vote.", icon=":material/lock_open:")


# --- results --------------------------------------------------------------------------------------

@st.cache_data(show_spinner="Computing the review's numbers…", max_entries=8)
def _analysis(path: str, readonly: bool, name: str, stamp: tuple):
    store = resources.store(path, readonly)
    return rv.analyse(store, rm.load_review(store, name))


def results_ui(store, review: rm.Review, reviewer: str, s: Settings) -> None:
    """The unblinded results, or why they are still locked; then the decision record."""
    votes = rm.load_votes(store, review)
    done, total = rm.progress(review, votes, reviewer)
    if not rm.can_see_results(review, votes, reviewer):
        st.info(f"Results unlock when you have voted on all {total} pairs ({done} so far), "
                f"or for the review's owner. Blind until then.", icon=":material/lock:")
        return
    if reviewer == review.owner and done < total:
        st.warning("You own this review, so you see the results before voting: your own votes "
                   "are no longer blind.", icon=":material/visibility:")
    analysis = _analysis(s.store_path, s.store_readonly, review.name,
                         resources.store_stamp(s.store_path))
    record = _record_ui(store, review, analysis, reviewer)
    figs = report.figures(analysis)
    st.subheader("Human preference")
    st.caption("Win rate of model B over model A; ties and 'both bad' count half. 95% intervals: "
               "bootstrap over prompts.")
    _table(analysis.win_rates, report.WIN_COLUMNS)
    for name in ("win-rates", "votes", "bradley-terry", "by-category"):
        if name in figs:
            st.markdown(figs[name], unsafe_allow_html=True)  # inline SVG (st.html drops it)
    if analysis.bradley_terry is not None:
        _table(analysis.bradley_terry, {c: c for c in analysis.bradley_terry.columns})
    ag = analysis.agreement
    st.markdown(f"**Rater agreement** (Krippendorff's alpha, nominal): {_num(ag['alpha'])} "
                f"[{_num(ag['ci_low'])}, {_num(ag['ci_high'])}] over {ag['n_pairs']} pairs, "
                f"{ag['n_reviewers']} reviewers. {ag['note']}")
    st.markdown("**Per reviewer**")
    _table(analysis.by_reviewer, report.REVIEWER_COLUMNS)
    st.subheader("Automatic numbers for the same pairs")
    _table(analysis.automatic, report.QUALITY_COLUMNS)
    _table(analysis.automatic, report.SPEED_COLUMNS)
    for name in ("clip-diff", "latency-ratio"):
        if name in figs:
            st.markdown(figs[name], unsafe_allow_html=True)  # inline SVG (st.html drops it)
    _disagreements_ui(store, review, analysis)
    _downloads_ui(store, review, analysis, record)


def _num(value, spec: str = ".2f") -> str:
    return "-" if value is None or pd.isna(value) else format(value, spec)


def _table(df: pd.DataFrame | None, columns: dict[str, str]) -> None:
    if df is None or df.empty:
        st.caption("No votes yet.")
        return
    shown = df[list(columns)].rename(columns=columns)
    st.dataframe(shown.round(3), hide_index=True, width="stretch")


def _disagreements_ui(store, review: rm.Review, analysis) -> None:
    st.subheader("Most disagreed pairs")
    dis = analysis.disagreements
    if dis.empty:
        st.caption("No pair was disagreed on.")
        return
    pairs = {p.idx: p for p in review.pairs}
    for row in dis.head(5).to_dict(orient="records"):
        p = pairs[row["pair_idx"]]
        counts = ", ".join(f"{rm.CHOICES[c]} {row[c]}" for c in rm.CHOICES if row[c])
        st.markdown(f"**#{p.idx}** “{plain(p.prompt)}” · seed {p.seed} — {counts}"
                    + (f" — {plain(row['comments'])}" if row["comments"] else ""))
        cols = st.columns(4)
        for col, model, rid in ((cols[0], p.model_a, p.result_a), (cols[1], p.model_b, p.result_b)):
            col.image(display_png(str(store.images(rid)[0])), caption=plain(model), width=160)


# --- decision record ------------------------------------------------------------------------------

def _state_criteria(store, review: rm.Review) -> None:
    lines = [ln for ln in st.session_state.get("review_criteria_text", "").splitlines() if ln.strip()]
    try:
        dec.state_criteria(store, review, [dec.parse_criterion(ln) for ln in lines])
        st.session_state.review_criteria_error = None
    except rv.ReviewError as err:
        st.session_state.review_criteria_error = str(err)


def _decide(store, review: rm.Review) -> None:
    ss = st.session_state
    try:
        dec.decide(store, review, ss.review_verdict, ss.review_decided_by, ss.review_notes)
        ss.review_decide_error = None
    except rv.ReviewError as err:
        ss.review_decide_error = str(err)


def _record_ui(store, review: rm.Review, analysis, reviewer: str):
    """Criteria (the owner may restate them), evidence with pass/fail, the verdict form."""
    ss = st.session_state
    st.subheader("Decision record")
    models = list(review.models)
    c1, c2 = st.columns(2)
    baseline = c1.selectbox("Baseline", models, key="review_baseline")
    others = [m for m in models if m != baseline]
    default = dec.default_candidate(review)
    candidate = c2.selectbox("Candidate", others, key="review_candidate",
                             index=others.index(default) if default in others else 0)
    record = dec.decision_record(store, review, analysis, baseline=baseline, candidate=candidate)
    stated = (f"Criteria stated {record.criteria_at}"
              + (" — before any vote." if record.votes_before_criteria == 0 else
                 f" — after {record.votes_before_criteria} votes had been cast.")
              if record.criteria_at else "No criteria stated yet.")
    st.caption(stated)
    rows = [{"criterion": e.criterion.describe(),
             "evidence": dec.format_value(e.criterion.metric, e.evidence.value),
             "95% interval": f"[{dec.format_value(e.criterion.metric, e.evidence.low)}, "
                             f"{dec.format_value(e.criterion.metric, e.evidence.high)}]",
             "n": e.evidence.n,
             "outcome": {True: "pass", False: "FAIL", None: "no evidence"}[e.passed]}
            for e in record.evaluations]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if reviewer == review.owner and not store.readonly:
        with st.expander("Restate the criteria (owner)"):
            ss.setdefault("review_criteria_text", "\n".join(
                e.criterion.text() for e in record.evaluations) or "\n".join(
                c.text() for c in dec.DEFAULT_CRITERIA))
            st.text_area("One criterion a line: METRIC BOUND OP NUMBER", key="review_criteria_text",
                         help=f"Metrics: {', '.join(dec.METRICS)}; bounds: estimate, low, high. "
                              "The record shows when they were stated and how many votes "
                              "were in by then.")
            st.button("State criteria", key="review_state_criteria",
                      on_click=_state_criteria, args=(store, review))
            if ss.get("review_criteria_error"):
                st.error(plain(ss.review_criteria_error))
    verdict = (f"**Verdict:** {dec.VERDICTS[record.verdict]} — by {plain(record.decided_by)} at "
               f"{record.decided_at}" + (f". Notes: {plain(record.notes)}" if record.notes else "")
               if record.verdict else "**Verdict:** not recorded yet.")
    st.markdown(verdict + ("  (every criterion passed)" if record.all_passed else ""))
    if not store.readonly:
        with st.expander("Record the decision", expanded=record.verdict is None):
            st.radio("Verdict", list(dec.VERDICTS), format_func=dec.VERDICTS.get,
                     key="review_verdict", horizontal=True)
            ss.setdefault("review_decided_by", reviewer)
            st.text_input("Decided by", key="review_decided_by")
            st.text_area("Notes", key="review_notes")
            st.button("Record decision", key="review_decide", type="primary",
                      on_click=_decide, args=(store, review))
            if ss.get("review_decide_error"):
                st.error(plain(ss.review_decide_error))
    return record


def _downloads_ui(store, review: rm.Review, analysis, record) -> None:
    """The decision record as HTML and JSON, built when clicked."""
    def build(kind: str):
        def make() -> bytes:
            html, data = report.build(store, review, analysis, record)
            return (html if kind == "html" else report.json_text(data)).encode("utf-8")
        return make

    st.subheader("Export")
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button("Decision record (HTML)", data=build("html"),
                       file_name=f"{review.name}-decision.html", mime="text/html",
                       on_click="ignore", key="review_download_html", icon=":material/description:",
                       help="One self-contained file: figures and thumbnails embedded, opens offline.")
    c2.download_button("Decision record (JSON)", data=build("json"),
                       file_name=f"{review.name}-decision.json", mime="application/json",
                       on_click="ignore", key="review_download_json", icon=":material/data_object:")


# --- creating -------------------------------------------------------------------------------------

def create_ui(store, s: Settings, reviewer: str) -> None:
    """A new review: models, prompts, seeds, criteria; what is missing and how to fill it."""
    from dsdcompare.limits import SEED, parse_int_list
    from dsdcompare.prompts import list_suites

    ss = st.session_state
    if store.readonly:
        st.info("This store is a read-only bundle: reviews cannot be created here.")
        return
    st.caption("Pairs come from stored results (the same prompt, seed and initial latents). "
               "State the decision criteria now, before anyone looks.")
    models = st.multiselect("Models (teachers become model A, the baseline)", model_choices(s.mode),
                            default=list(s.mode.default_models[:2]), key="review_new_models")
    prompt_sources = [str(rm.TOY_PROMPTS), *list_suites()]
    c1, c2, c3 = st.columns([2, 2, 1])
    prompts = c1.selectbox("Prompts", prompt_sources, key="review_new_prompts",
                           format_func=lambda p: "toy prompts (12)" if p == str(rm.TOY_PROMPTS) else p)
    text = c2.text_input("Only prompts containing", key="review_new_text")
    seeds = c3.text_input("Seeds", value="0-1", key="review_new_seeds")
    name = st.text_input("Name (must not name a model)", key="review_new_name")
    criteria = st.text_area("Criteria, one a line", key="review_new_criteria",
                            value="\n".join(c.text() for c in dec.DEFAULT_CRITERIA))
    if st.button("Find pairs", key="review_new_find") and len(models) >= 2:
        try:
            steps, guidance = rm.default_settings(models)
            selection = rm.Selection(prompts=prompts, seeds=tuple(parse_int_list(seeds, SEED)),
                                     steps=steps, guidance=guidance, text=text.strip() or None)
            ss.review_plan = rm.plan_review(store, models, selection)
        except rv.ReviewError as err:
            st.error(plain(str(err)))
    plan = ss.get("review_plan")
    if plan is None:
        return
    st.write(f"{len(plan.pairs)} pairs stored; {len(plan.missing)} generations missing.")
    if plan.missing:
        st.dataframe(pd.DataFrame([m.__dict__ for m in plan.missing]), hide_index=True,
                     height=200)
        st.code(rm.bench_command(store, plan), language="bash")
        if st.button("Generate the missing images here", key="review_new_generate"):
            with st.spinner(f"Generating {len(plan.missing)} images…"):
                from dsdcompare.review.generate import generate_missing

                generate_missing(store, plan, device=s.device, dtype=s.dtype)
                ss.review_plan = rm.plan_review(store, plan.models, plan.selection)
            st.rerun()
    if st.button("Create review", key="review_new_create", type="primary", disabled=not plan.pairs):
        try:
            parsed = [dec.parse_criterion(ln) for ln in criteria.splitlines() if ln.strip()]
            review = rm.create_review(store, name or f"review-{int(time.time())}", reviewer,
                                      plan, criteria=parsed)
            ss.review_created, ss.review_plan = review.name, None
            st.rerun()
        except Exception as err:  # a bad name or criterion: say so, keep the form
            st.error(plain(str(err)))
