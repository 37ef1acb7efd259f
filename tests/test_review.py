"""Reviews: statistics against reference values, blinding, votes (also from several processes at
once), the schema migration, the decision record and its exports, the CLI, the offline toy flow."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from review_fixtures import (
    CHOICES,
    STUDENT,
    TEACHER,
    fill_store,
    make_review,
    toy_selection,
)

from dsdcompare import review as rv
from dsdcompare.review import decision as dec
from dsdcompare.review import model as rm
from dsdcompare.review import statistics as rs
from dsdcompare.store import MIGRATIONS, SCHEMA_VERSION, Store

VOTER = Path(__file__).parent / "review_fixtures.py"


@pytest.fixture
def store(store_path):
    with Store(store_path) as s:
        yield s


def frame_of(rows) -> pd.DataFrame:
    """A vote frame from (pair, reviewer, choice, prompt) rows of one model pair."""
    return pd.DataFrame([{"pair_idx": p, "reviewer": r, "choice": c, "left_is_a": True,
                          "comment": "", "prompt": prompt, "category": "x", "seed": 0,
                          "model_a": "A", "model_b": "B", "score_b": rs.SCORE_B[c]}
                         for p, r, c, prompt in rows])


# --- statistics against reference values ---------------------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (7, 20), (20, 20), (1, 1), (45, 120)])
def test_wilson_interval_equals_scipys(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = rs.wilson_interval(k, n)
    assert got.low == pytest.approx(ref.low, abs=1e-12)
    assert got.high == pytest.approx(ref.high, abs=1e-12)
    assert math.isnan(rs.wilson_interval(0, 0).low)


def test_win_rate_counts_ties_half_and_its_interval_is_scipys_bootstrap_over_prompts():
    from scipy import stats

    rows, choices = [], ["b", "a", "tie", "both_bad", "b", "b", "a", "tie"]
    for p in range(8):  # 8 prompts, 2 reviewers each
        rows += [(p, "r1", choices[p], f"prompt {p}"), (p, "r2", choices[(p + 3) % 8], f"prompt {p}")]
    frame = frame_of(rows)
    table = rs.win_rates(frame)
    row = table.iloc[0]
    assert (row["wins_a"], row["wins_b"], row["ties"], row["both_bad"]) == (4, 6, 4, 2)
    per_prompt = frame.groupby("prompt")["score_b"].mean()
    assert row["win_rate_b"] == pytest.approx((6 + 0.5 * 6) / 16)  # balanced: the vote mean
    ref = stats.bootstrap((per_prompt.to_numpy(),), np.mean, confidence_level=0.95,
                          method="BCa", n_resamples=9999, rng=np.random.default_rng(0))
    assert row["ci_low"] == pytest.approx(ref.confidence_interval.low)
    assert row["ci_high"] == pytest.approx(ref.confidence_interval.high)


def test_bradley_terry_recovers_a_hand_computed_example():
    # strengths 4 : 2 : 1. Observed win shares equal the model's probabilities on every pair
    # (A-B 2 of 3 = 4/6, A-C 4 of 5 = 4/5, B-C 2 of 3 = 2/3), so the MLE equations
    # wins_i = sum_j n_ij p_i / (p_i + p_j) hold exactly at p = (4, 2, 1):
    # A: 2 + 4 = 3*4/6 + 5*4/5 = 6, B: 1 + 2 = 3*2/6 + 3*2/3 = 3.
    wins = np.array([[0, 2, 4], [1, 0, 2], [0, 1, 1]], dtype=float)
    wins[2, 0] = 1  # C beat A once (of 5)
    theta = rs.fit_bradley_terry(wins, prior=0.0)
    assert theta == pytest.approx([0.0, math.log(2 / 4), math.log(1 / 4)], abs=1e-6)
    # a tie is half a win each way: two ties between equals give equal strengths
    assert rs.fit_bradley_terry(np.array([[0, 1.0], [1.0, 0]])) == pytest.approx([0, 0], abs=1e-9)


def test_bradley_terry_of_votes_with_bootstrap_intervals():
    rows, k = [], 0
    for p in range(6):  # B beats A mostly, C beats both mostly; ties half
        for a, b, c in (("A", "B", "b"), ("A", "C", "b"), ("B", "C", "b"), ("A", "B", "tie")):
            rows.append({"pair_idx": k, "reviewer": "r", "choice": c, "left_is_a": True,
                         "comment": "", "prompt": f"p{p}", "category": "x", "seed": 0,
                         "model_a": a, "model_b": b, "score_b": rs.SCORE_B[c]})
            k += 1
    rows[0]["choice"], rows[0]["score_b"] = "a", 0.0  # one upset keeps the MLE finite
    bt = rs.bradley_terry(pd.DataFrame(rows), ["A", "B", "C"], n_resamples=200)
    assert list(bt["model"]) == ["A", "B", "C"] and bt["strength"].iloc[0] == 0
    assert bt["strength"].iloc[0] < bt["strength"].iloc[1] < bt["strength"].iloc[2]
    inside = (bt["ci_low"] <= bt["strength"] + 1e-9) & (bt["strength"] <= bt["ci_high"] + 1e-9)
    assert inside.all()
    assert bt["p_beats_reference"].iloc[2] == pytest.approx(1 / (1 + math.exp(-bt["strength"].iloc[2])))


def test_krippendorff_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", first example: two
    # observers, ten units, binary data: alpha = 0.095
    obs_a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    obs_b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    rows = [(u, r, "ab"[v], f"p{u}") for u in range(10) for r, v in (("A", obs_a[u]), ("B", obs_b[u]))]
    got = rs.agreement(frame_of(rows), n_resamples=200)
    assert got["alpha"] == pytest.approx(0.095, abs=5e-4)
    assert got["n_pairs"] == 10 and got["n_reviewers"] == 2
    assert got["percent_agreement"] == pytest.approx(0.6)
    assert got["ci_low"] <= got["alpha"] <= got["ci_high"]
    same = rs.agreement(frame_of([(u, r, "tie", f"p{u}") for u in range(3) for r in "AB"]))
    assert math.isnan(same["alpha"]) and "undefined" in same["note"]


# --- reviews, blinding, votes ---------------------------------------------------------------------

def test_plan_lists_missing_generations_with_the_exact_bench_command(store):
    fill_store(store, seeds=(0,), limit=3, models=(TEACHER,))  # the student is missing
    plan = rm.plan_review(store, [STUDENT, TEACHER], toy_selection(limit=3, seeds=(0, 1)))
    assert plan.models == (TEACHER, STUDENT)  # the teacher is model A, the baseline
    assert plan.pairs == ()
    assert len(plan.missing) == 3 * 2 + 3  # student everywhere, teacher on seed 1
    command = rm.bench_command(store, plan)
    assert command == (f"dsdcompare bench --store {store.path} --models toy-teacher,toy-student "
                       f"--prompts {rm.TOY_PROMPTS} --limit 3 --seeds 0-1 --steps 25 --guidance 3")
    with pytest.raises(rv.ReviewError, match="no stored pairs"):
        rm.create_review(store, "r", "olga", plan)
    text_plan = rm.plan_review(store, [TEACHER, STUDENT], rm.Selection(
        str(rm.TOY_PROMPTS), (0,), 25, 3.0, text="triangle"))
    assert {m.prompt for m in text_plan.missing} == {p.text for p in text_plan.prompts}
    command = rm.bench_command(store, text_plan)  # no text filter in bench: a prompt file
    listed = Path(command.split("--prompts ")[1].split()[0]).read_text()
    assert len(listed.splitlines()) == 1 + 4 and "circle" not in listed


def test_create_review_blinds_per_reviewer_and_one_vote_per_reviewer_and_pair(store):
    review = make_review(store, limit=6)
    assert len(review.pairs) == 12 and all(p.latent_matched for p in review.pairs)
    assert {(p.model_a, p.model_b) for p in review.pairs} == {(TEACHER, STUDENT)}
    with pytest.raises(rv.ReviewError, match="contains the model name"):
        rm.check_review_name("toy-student vs teacher", review.models)
    with pytest.raises(Exception, match="exists already"):
        make_review(store, fill=False, limit=6)
    order_a, order_b = rm.reviewer_order(review, "ana"), rm.reviewer_order(review, "ben")
    assert sorted(order_a) == list(range(12)) and order_a != order_b
    assert order_a == rm.reviewer_order(rm.load_review(store, review.name), "ana")  # stable
    sides = [rm.left_is_a(review, "ana", i) for i in range(12)]
    assert 0 < sum(sides) < 12  # both sides occur
    left_a = rm.left_is_a(review, "ana", 3)
    assert rm.choice_from_side("left", left_a) == ("a" if left_a else "b")
    assert rm.side_from_choice(rm.choice_from_side("right", left_a), left_a) == "right"
    assert rm.vote(store, review, "ana", 3, "a") is False
    assert rm.vote(store, review, "ana", 3, "b", comment="sharper") is True  # replaced
    votes = rm.load_votes(store, review)
    assert [(v.reviewer, v.pair_idx, v.choice, v.comment) for v in votes] == [("ana", 3, "b", "sharper")]
    assert votes[0].left_is_a == left_a
    assert not rm.can_see_results(review, votes, "ana") and rm.can_see_results(review, votes, "olga")
    for i in range(12):
        rm.vote(store, review, "ana", i, "tie")
    assert rm.can_see_results(review, rm.load_votes(store, review), "ana")
    with pytest.raises(rv.ReviewError, match="not 12"):
        rm.vote(store, review, "ana", 12, "a")


def test_votes_from_several_processes_at_once_lose_and_duplicate_nothing(store, tmp_path):
    review = make_review(store, limit=12)  # 24 pairs
    go = tmp_path / "go"
    voters = [("ana", 0), ("ben", 1), ("caro", 2), ("dan", 3), ("shared", 0), ("shared", 1)]
    procs = [subprocess.Popen([sys.executable, str(VOTER), str(store.path), review.name,
                               "--reviewer", name, "--offset", str(off), "--wait-for", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, off in voters]
    for p in procs:  # every child has imported and opened the store
        assert p.stdout.readline().strip() == "waiting", p.stderr.read()
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "voted 24"
    rows = sqlite3.connect(store.path).execute(
        "SELECT reviewer, pair_idx, choice, comment FROM votes").fetchall()
    assert len(rows) == 5 * 24  # four reviewers, and one vote per pair for "shared"
    assert len({(r, i) for r, i, _, _ in rows}) == len(rows)
    for name, off in voters[:4]:
        mine = {i: c for r, i, c, _ in rows if r == name}
        assert mine == {i: CHOICES[(i + off) % 4] for i in range(24)}
    for _, i, c, comment in (r for r in rows if r[0] == "shared"):  # one writer's whole vote
        assert (c, comment) in {(CHOICES[(i + off) % 4], f"shared {off}") for off in (0, 1)}


def test_v2_store_migrates_to_v3_with_a_backup(store_path):
    conn = sqlite3.connect(store_path, isolation_level=None)
    conn.execute("BEGIN")
    for version in (1, 2):
        MIGRATIONS[version](conn)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    conn.close()
    with Store(store_path) as s:
        assert rm.list_reviews(s) == []
        fill_store(s, limit=1, seeds=(0,))
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"reviews", "review_pairs", "votes"} <= tables
    backup = sqlite3.connect(store_path.with_name("results.v2-backup.sqlite"))
    assert backup.execute("PRAGMA user_version").fetchone()[0] == 2


# --- analysis, decision record, exports -----------------------------------------------------------

def test_analysis_and_decision_record_against_known_numbers(store):
    # the student is exactly twice as fast and scores 0.5 higher on every pair; one flag
    review = make_review(store, limit=6, criteria=dec.DEFAULT_CRITERIA,
                         clip=lambda m, i, seed: 30.0 + i + (0.5 if m == STUDENT else 0.0),
                         flagged={(STUDENT, 0, 0)})
    for reviewer, choice in (("ana", "b"), ("ben", "tie"), ("caro", "b")):
        for p in review.pairs:
            rm.vote(store, review, reviewer, p.idx, choice if p.idx % 4 else "a")
    analysis = rv.analyse(store, review, n_resamples=999, refit_resamples=100)
    auto = analysis.automatic.iloc[0]
    assert auto["latency_ratio"] == pytest.approx(0.5) and auto["latency_ratio_low"] == pytest.approx(0.5)
    assert auto["clip_diff"] == pytest.approx(0.5) and auto["clip_diff_high"] == pytest.approx(0.5)
    assert auto["psnr"] == pytest.approx(32.5) and auto["ssim"] == pytest.approx(0.9)
    assert auto["flagged_b"] == pytest.approx(1 / 12) and auto["flagged_a"] == 0
    wr = analysis.win_rates.iloc[0]
    assert wr["n_votes"] == 36 and wr["wins_a"] == 9 and wr["ties"] == 9
    assert wr["win_rate_b"] == pytest.approx((18 + 4.5) / 36)
    assert set(analysis.by_category["category"]) == {"circle", "square"}
    assert list(analysis.by_reviewer["reviewer"]) == ["ana", "ben", "caro"]
    record = dec.decision_record(store, review, analysis)
    assert (record.baseline, record.candidate) == (TEACHER, STUDENT)
    outcome = {e.criterion.metric: e.passed for e in record.evaluations}
    assert outcome == {"latency_ratio": True, "win_rate": True, "clip_diff": True, "flagged": False}
    assert record.votes_before_criteria == 0 and not record.all_passed and record.verdict is None
    dec.state_criteria(store, review, ["flagged estimate <= 0.1", "win_rate low >= 0.99"])
    dec.decide(store, review, "more-data", "olga", "one flagged image")
    record = dec.decision_record(store, review, analysis)
    assert [e.passed for e in record.evaluations] == [True, False]
    assert record.votes_before_criteria == 36  # restated after the votes: the record says so
    assert (record.verdict, record.decided_by, record.notes) == ("more-data", "olga", "one flagged image")
    with pytest.raises(rv.ReviewError, match="not 'METRIC BOUND OP NUMBER'"):
        dec.parse_criterion("win_rate >= 0.3")


def test_html_report_is_self_contained_and_json_complete(store):
    review = make_review(store, limit=3, criteria=dec.DEFAULT_CRITERIA)
    for p in review.pairs:
        rm.vote(store, review, "ana", p.idx, "b", comment="<b>bold</b>")
        rm.vote(store, review, "ben", p.idx, "a" if p.idx else "both_bad")
    analysis = rv.analyse(store, review, n_resamples=999, refit_resamples=100)
    html, data = rv.build(store, review, analysis, dec.decision_record(store, review, analysis))
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "src='http" not in html and 'src="http' not in html and "url(" not in html
    assert html.count("<img ") == 2 * len(review.pairs)
    assert html.count("src='data:image/png;base64,") == 2 * len(review.pairs)
    assert html.count("data-figure=") >= 4 + len(dec.DEFAULT_CRITERIA)
    assert "&lt;b&gt;bold&lt;/b&gt;" in html  # comments are escaped
    text = json.dumps(data, allow_nan=False)  # standard JSON
    assert data["format"] == "dsdcompare-review" and len(data["votes"]) == 2 * len(review.pairs)
    assert len(data["decision_record"]["criteria"]) == 4
    man = data["manifest"]
    assert man["hardware"]["device_name"] == ["Test CPU"] and man["dtype"] == ["fp32"]
    assert man["scheduler"] == ["PNDMScheduler"] and man["steps"] == ["25"]
    assert man["seeds"] == [0, 1] and man["metric_checkpoints"]["clip"] == ["test-clip"]
    assert man["versions"]["torch"] == ["2.test"] and json.loads(text) == data


def test_three_models_get_all_pairs_and_bradley_terry(store):
    fill_store(store, models=(TEACHER, STUDENT, "sd-v1-4"), limit=4, seeds=(0,))
    selection = toy_selection(limit=4, seeds=(0,))
    plan = rm.plan_review(store, [TEACHER, STUDENT, "sd-v1-4"],
                          rm.Selection(**{**selection.to_dict(), "seeds": (0,)}))
    # sd-v1-4's own source is the hub: its local results are not taken
    assert {m.model for m in plan.missing} == {"sd-v1-4"}
    plan = rm.plan_review(store, ["sd-v1-4", TEACHER, STUDENT], rm.Selection(
        **{**selection.to_dict(), "seeds": (0,), "source": "local"}))
    assert len(plan.pairs) == 4 * 3 and plan.models[0] == "sd-v1-4"
    review = rm.create_review(store, "three", "olga", plan)
    for p in review.pairs:
        rm.vote(store, review, "ana", p.idx, "b" if p.idx % 3 else "a")
    analysis = rv.analyse(store, review, n_resamples=999, refit_resamples=100)
    assert analysis.bradley_terry is not None and len(analysis.bradley_terry) == 3
    assert len(analysis.win_rates) == 3


# --- command line and the offline toy flow --------------------------------------------------------

def cli(*argv) -> int:
    from dsdcompare.cli import review as review_cli

    parser = argparse.ArgumentParser()
    review_cli.configure(parser)
    return review_cli.run(parser.parse_args(argv))


def test_cli_create_vote_decide_report(store, tmp_path, capsys):
    fill_store(store, limit=2, seeds=(0,))
    s = str(store.path)
    base = ["create", "--store", s, "--models", f"{STUDENT},{TEACHER}", "--prompts",
            str(rm.TOY_PROMPTS), "--limit", "2", "--name", "cli-review", "--owner", "olga"]
    assert cli(*base, "--seeds", "0-1") == 1
    out = capsys.readouterr().out
    assert "4 generations missing" in out and "--seeds 1 --steps 25" in out
    assert "nothing created" in out
    assert cli(*base, "--seeds", "0", "--criterion", "win_rate low >= 0.2") == 0
    assert "created review 'cli-review': 2 pairs" in capsys.readouterr().out
    votes = tmp_path / "votes.csv"
    votes.write_text("reviewer,pair,choice,comment\nana,0,toy-student,crisp\nana,1,tie,\n"
                     "ben,0,a,\nben,1,both-bad,blurry\nana,0,b,changed\n")
    assert cli("vote", "--store", s, "cli-review", "--csv", str(votes)) == 0
    assert "5 votes recorded" in capsys.readouterr().out
    assert cli("decide", "--store", s, "cli-review", "--verdict", "keep", "--by", "olga") == 0
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    assert cli("report", "--store", s, "cli-review", "--html", str(html), "--json", str(js)) == 0
    out = capsys.readouterr().out
    assert "win_rate low >= 0.2" in out and "verdict: keep by olga" in out
    data = json.loads(js.read_text())
    assert len(data["votes"]) == 4 and html.read_text().startswith("<!doctype html>")
    assert cli("list", "--store", s) == 0
    assert "cli-review" in capsys.readouterr().out


def test_toy_pair_review_generates_offline_and_can_be_voted_on(store):
    from dsdcompare.review.generate import generate_missing

    selection = rm.Selection(str(rm.TOY_PROMPTS), (0,), 2, 3.0, limit=2)  # 2 steps: fast
    plan = rm.plan_review(store, ["toy-student", "toy-teacher"], selection)
    assert len(plan.missing) == 4
    started = time.perf_counter()
    outcome = generate_missing(store, plan, device="cpu")
    assert outcome.stored == 4 and outcome.failed == 0, outcome.failures
    plan = rm.plan_review(store, plan.models, selection)
    assert len(plan.pairs) == 2 and not plan.missing and all(p.latent_matched for p in plan.pairs)
    review = rm.create_review(store, "offline-demo", "olga", plan, criteria=dec.DEFAULT_CRITERIA)
    rm.vote(store, review, "ana", 0, "tie")
    analysis = rv.analyse(store, review, n_resamples=999, refit_resamples=100)
    auto = analysis.automatic.iloc[0]
    assert auto["n_scored"] == 2 and not math.isnan(auto["ssim"])  # toy CLIP and fidelity
    assert 0 < auto["latency_ratio"] < 5
    print(f"\ntoy generation of 4 results: {time.perf_counter() - started:.1f} s")
