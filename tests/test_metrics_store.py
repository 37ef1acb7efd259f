"""Many metrics, one model: --metrics, the scores table (schema v4) with provenance, checkpoint
identity, per-metric summaries that never pool checkpoints, FID/KID over a stored sweep, and the
scorer weights the download command plans. Offline: scorers are built with random tiny weights."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from store_writer import fake_request, fake_result

from dsdcompare.engine import Request, Result
from dsdcompare.errors import InputError
from dsdcompare.metrics import SCALE_CLIPSCORE, SCALE_HPS, SCALE_LPIPS, Score
from dsdcompare.record import open_scorer, open_scorers, parse_metrics, run_request
from dsdcompare.registry import TOY_CLIP_DIR, get_model
from dsdcompare.scorers import METRICS, checkpoint_identity
from dsdcompare.store import MIGRATIONS, SCHEMA_VERSION, Store, flat_record
from dsdcompare.store.scores import UNIDENTIFIED_NOTE, stable_checkpoint

HPS_A = "xswu/HPSv2@aaaa:HPS_v2.1_compressed.pt"
HPS_B = "HPS_v2.1_compressed.pt@sha256:bbbbbbbbbbbbbbbb"


def score(value, *, checkpoint="tiny", scale=SCALE_CLIPSCORE, backend="torchmetrics", n=2,
          standin=False, note=None, error=None) -> Score:
    """A Score as a scorer makes it (per-image values around ``value``)."""
    per = [None] * n if value is None else [value - 0.5, value + 0.5][:n]
    return Score(value=value, per_image=per, excluded=[None] * n, backend=backend,
                 checkpoint=checkpoint, scale=scale, standin=standin, prompt_tokens=3,
                 max_prompt_tokens=75, truncated=False, scored_prompt="p", error=error, note=note)


def hps(value, checkpoint=HPS_A) -> Score:
    return score(value, checkpoint=checkpoint, scale=SCALE_HPS, backend="hpsv2",
                 note="HPS v2.1 (HPS_v2.1_compressed.pt), not v2.0")


def lpips(value) -> Score:
    return score(value, checkpoint="lpips-alex: alexnet@sha256:0123456789abcdef", scale=SCALE_LPIPS,
                 note="teacher-referenced")


def scored_result(model, request, *, teacher=None, **scores) -> Result:
    result = fake_result(model, request, teacher=teacher)
    for metric, s in scores.items():
        result.put_score(metric, s)
    return result


# --- --metrics ------------------------------------------------------------------------------------

def test_metrics_are_parsed_in_order_once_and_unknown_names_are_one_line_errors(capsys):
    from dsdcompare.cli import main

    assert parse_metrics(None) == parse_metrics("") == ("clip",)  # today's behaviour
    assert parse_metrics("hps, clip,HPS") == ("hps", "clip")
    assert parse_metrics("all") == tuple(METRICS) and parse_metrics("none") == ()
    with pytest.raises(InputError) as err:
        parse_metrics("clip,hpsv3")
    text = str(err.value)
    assert "'hpsv3'" in text and "\n" not in text
    assert all(m in text for m in ("clip", "hps", "pickscore", "imagereward", "lpips"))
    # the command line: one line, exit 2, before any model is loaded
    assert main(["compare", "a cat", "--metrics", "clip,fid", "--no-store", "--models", "toy"]) == 2
    err_line = capsys.readouterr().err.strip()
    assert err_line.startswith("error: unknown metric 'fid'") and "\n" not in err_line
    assert main(["bench", "--report", "--metric", "sharpness", "--models", "toy"]) == 2
    assert "choose one of clip, hps" in capsys.readouterr().err


# --- the store: round trip, merge, bundle ----------------------------------------------------------

def test_several_metrics_round_trip_through_the_store_with_provenance(tmp_path):
    request = fake_request()
    teacher = scored_result("t", request, clip=score(21.5), hps=hps(0.25))
    student = scored_result("s", request, teacher="t", clip=score(20.0), hps=hps(0.22),
                            lpips=lpips(0.31))
    student.scores["pickscore"] = score(None, checkpoint="yuvalkirstain/PickScore_v1@main",
                                        scale="PickScore: logit scale x cosine", backend="pickscore",
                                        error="pickscore scorer unavailable: not cached")
    assert student.score is student.scores["clip"]
    path = tmp_path / "a" / "results.sqlite"
    with Store(path) as store:
        store.save(request, [teacher, student], source="tiny")
        df = store.results()
        assert "hps" not in df.columns and list(df["clip_score"]) == [21.5, 20.0]  # columns kept
        long = store.scores()
        assert store.metrics() == ["clip", "hps", "lpips"]
        rows = {(r.model, r.metric): r for r in long.itertuples()}
        assert set(rows) == {("t", "clip"), ("t", "hps"), ("s", "clip"), ("s", "hps"),
                             ("s", "lpips"), ("s", "pickscore")}
        h = rows[("s", "hps")]
        assert (h.value, h.per_image, h.backend, h.checkpoint, h.scale) == \
            (0.22, [pytest.approx(-0.28), pytest.approx(0.72)], "hpsv2", HPS_A, SCALE_HPS)
        assert h.higher_is_better and not h.standin and "not v2.0" in h.note
        lower = rows[("s", "lpips")].higher_is_better
        assert pd.notna(lower) and not lower  # LPIPS: lower is closer
        p = rows[("s", "pickscore")]
        assert np.isnan(p.value) and "unavailable" in p.error
        # a metric view: values and provenance of that metric, the teacher has no LPIPS
        view = store.results(metric="lpips")
        assert list(view["lpips"].isna()) == [True, False] and view["clip_score"].isna().all()
        assert list(view["score_scale"]) == [None, SCALE_LPIPS]
        # the full record round-trips into Score objects
        loaded = store.load_result(int(df["result_id"].iloc[1]))
        assert set(loaded.scores) == {"clip", "hps", "lpips", "pickscore"}
        assert loaded.scores["hps"].checkpoint == HPS_A and loaded.score is loaded.scores["clip"]
        bundle = store.export_bundle(tmp_path / "b.zip")
    # merges and bundles carry the scores
    with Store(tmp_path / "m" / "results.sqlite") as dest:
        dest.merge(path)
        assert len(dest.scores()) == 6 and dest.scores(metric="hps")["checkpoint"].eq(HPS_A).all()
        assert dest.merge(path)["results_added"] == 0 and len(dest.scores()) == 6  # idempotent
    with Store(bundle) as opened:
        assert opened.scores(metric="lpips")["value"].tolist() == [0.31]
    # an old record (CLIP score only) still loads, its score as scores["clip"]
    old = {k: v for k, v in student.to_dict().items() if k != "scores"}
    rebuilt = Result.from_dict(json.loads(json.dumps(old)))
    assert rebuilt.scores == {"clip": rebuilt.score} and rebuilt.score.value == 20.0


# --- checkpoint identity --------------------------------------------------------------------------

def test_the_toy_clip_is_one_checkpoint_in_every_clone(tmp_path):
    clone = tmp_path / "elsewhere" / "toy-clip"
    shutil.copytree(TOY_CLIP_DIR, clone)
    identity = checkpoint_identity(TOY_CLIP_DIR)
    assert identity == checkpoint_identity(clone)
    assert identity.startswith("toy-clip@sha256:") and str(tmp_path) not in identity
    assert stable_checkpoint(str(clone)) == (identity, None)
    assert stable_checkpoint("openai/clip-vit-large-patch14") == ("openai/clip-vit-large-patch14", None)
    assert stable_checkpoint(str(tmp_path / "gone" / "toy-clip")) == \
        (str(tmp_path / "gone" / "toy-clip"), UNIDENTIFIED_NOTE)
    # what scores a toy comparison records: the identity, not this clone's folder
    scorer, why = open_scorer("toy", [get_model("toy-teacher")], None, "cpu",
                              loader=lambda name, dev, toy: SimpleNamespace(checkpoint=name))
    assert why is None and scorer.checkpoint == identity


def _old_store(path, version: int, checkpoints: list[str | None]) -> None:
    """A database at schema ``version`` as an older dsdcompare wrote it: one run, one result
    per checkpoint (None: a failed result), CLIP scores in the records only."""
    request = fake_request()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for step in range(1, version + 1):
        MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {step}")
    conn.execute("INSERT INTO runs (created_at, prompt, seed, steps, guidance, request) VALUES "
                 "('2025-01-02T03:04:05.000000+00:00', ?, ?, ?, ?, '{}')",
                 (request.prompt, request.seed, request.steps, request.guidance))
    for i, checkpoint in enumerate(checkpoints):
        result = fake_result(f"m{i}", request, success=checkpoint is not None,
                             score=score(20.0 + i, checkpoint=checkpoint) if checkpoint else None)
        record = {k: v for k, v in result.to_dict().items() if k != "scores"}  # as before v4
        flat = flat_record(record)
        names = ["run_id", "created_at", *flat, "record"]
        conn.execute(f"INSERT INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                     (1, f"2025-01-02T03:04:3{i}.000000+00:00", *flat.values(), json.dumps(record)))
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("version", [3, 2])
def test_old_stores_migrate_to_v4_with_a_backup_scores_and_identities(tmp_path, version):
    path = tmp_path / "results.sqlite"
    moved = str(tmp_path / "another-machine" / "toy-clip")
    _old_store(path, version, [str(TOY_CLIP_DIR), moved, "tiny", None])
    with Store(path) as store:
        df = store.results()
        identity = checkpoint_identity(TOY_CLIP_DIR)
        assert list(df["score_checkpoint"].iloc[:3]) == [identity, moved, "tiny"]
        long = store.scores()
        assert list(long["metric"]) == ["clip"] * 3 and list(long["value"]) == [20.0, 21.0, 22.0]
        assert list(long["checkpoint"]) == [identity, moved, "tiny"]
        assert long["higher_is_better"].all()
        assert long["note"].iloc[1] == UNIDENTIFIED_NOTE and long["note"].iloc[0] is None
        record = store.result_record(int(df["result_id"].iloc[0]))
        assert record["score"]["checkpoint"] == identity  # the record agrees with its row
        assert store.load_result(int(df["result_id"].iloc[0])).scores["clip"].value == 20.0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    backup = sqlite3.connect(path.with_name(f"results.v{version}-backup.sqlite"))
    assert backup.execute("PRAGMA user_version").fetchone()[0] == version
    assert backup.execute("SELECT score_checkpoint FROM results ORDER BY id").fetchone()[0] == \
        str(TOY_CLIP_DIR)  # the backup is the database as it was


def test_a_v4_database_without_a_sound_scores_table_is_refused_untouched(tmp_path):
    from dsdcompare.store import StoreError

    for i, sabotage in enumerate(("DROP TABLE scores",
                                  "DROP TABLE scores; CREATE VIEW scores AS SELECT 1 AS result_id")):
        path = tmp_path / f"{i}.sqlite"
        conn = sqlite3.connect(path, isolation_level=None)
        for step in range(1, SCHEMA_VERSION + 1):
            MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executescript(sabotage)
        conn.close()
        before = path.read_bytes()
        with pytest.raises(StoreError, match="not a sound dsdcompare database.*scores"):
            Store(path, readonly=True)
        assert path.read_bytes() == before


# --- the engine and the recording path with two metrics --------------------------------------------

@pytest.fixture(scope="module")
def tiny_hps(tmp_path_factory):
    """The HPS v2.1 scorer's architecture, tiny, with random weights saved as upstream ships them
    (the configuration of tests/test_preference.py)."""
    import open_clip
    from test_preference import HPS_TINY, jitter

    folder = tmp_path_factory.mktemp("hps")
    (folder / "dsd-test-hps-tiny.json").write_text(json.dumps(HPS_TINY))
    open_clip.add_model_config(folder / "dsd-test-hps-tiny.json")
    torch.manual_seed(0)
    model = open_clip.create_model("dsd-test-hps-tiny", pretrained=None)
    weights = folder / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": jitter(model.state_dict())}, weights)
    return weights


class _StubLpips:
    """A pair scorer with LpipsScorer's interface: mean absolute pixel difference."""

    checkpoint = "stub-lpips@sha256:0000000000000000"

    def score(self, students, teachers):
        per = [float(np.abs(np.asarray(s, float) - np.asarray(t, float)).mean() / 255)
               for s, t in zip(students, teachers)]
        return score(float(np.mean(per)), checkpoint=self.checkpoint, scale=SCALE_LPIPS, n=len(per))


class _Broken:
    checkpoint = "broken@sha256:1111111111111111"

    def score(self, images, prompt):
        raise RuntimeError("scorer exploded")


def test_the_engine_scores_each_image_with_each_metric_and_the_store_keeps_them(tiny_hps, tmp_path):
    from dsdcompare.metrics import SCORER_STANDIN
    from dsdcompare.scorers import load_hps

    def metric_loader(metric, device):
        if metric == "hps":
            return load_hps(tiny_hps, arch="dsd-test-hps-tiny", standin=True, device=device)
        return {"lpips": _StubLpips(), "pickscore": _Broken()}[metric]

    models = [get_model("sd-v1-4"), get_model("bk-sdm-small")]
    scorers, why = open_scorers(("clip", "hps", "lpips", "pickscore", "imagereward"), models,
                                "tiny", "cpu", metric_loader=lambda m, d: (
                                    metric_loader(m, d) if m != "imagereward" else load_hps("/nowhere.pt")))
    assert set(scorers) == {"clip", "hps", "lpips", "pickscore"} and scorers["clip"].checkpoint == SCORER_STANDIN
    assert list(why) == ["imagereward"] and "hps scorer unavailable: no file" in why["imagereward"]
    request = Request("a red circle", seed=3, steps=2, size=64, repeats=1, warmup=0)
    with Store(tmp_path / "results.sqlite") as store:
        recording = run_request(request, models, store=store, scorers=scorers, no_score_reasons=why,
                                source="tiny", device="cpu")
        teacher, student = recording.results
        assert teacher.success and student.success
        assert set(teacher.scores) == {"clip", "hps", "pickscore", "imagereward"}  # no LPIPS alone
        assert set(student.scores) == {"clip", "hps", "pickscore", "imagereward", "lpips"}
        h = student.scores["hps"]
        assert h.backend == "hpsv2" and h.standin and h.value is not None
        assert h.checkpoint == checkpoint_identity(tiny_hps) and len(h.per_image) == 1
        assert student.score is student.scores["clip"] and student.score.value is not None
        # a failing scorer costs its score only; a missing one is recorded with the reason
        assert student.scores["pickscore"].value is None
        assert "scorer exploded" in student.scores["pickscore"].error
        assert "no file" in student.scores["imagereward"].error
        # LPIPS beside PSNR/SSIM, for the latent-matched pair only
        assert student.fidelity["against"] == "sd-v1-4" and student.scores["lpips"].value >= 0
        stored = store.scores()
        assert len(stored) == 4 + 5 and set(stored["metric"]) == {"clip", "hps", "pickscore",
                                                                  "imagereward", "lpips"}
        assert stored.loc[stored["metric"] == "hps", "value"].notna().all()
        assert set(store.results(metric="hps")["score_checkpoint"]) == {h.checkpoint}


# --- per-metric statistics ------------------------------------------------------------------------

def test_a_per_metric_summary_never_pools_two_checkpoints(tmp_path):
    from dsdcompare.bench import format_report, report_table
    from dsdcompare.stats import pair_effects, paired_differences, summary

    prompts = ["a red circle", "a blue square", "a green star"]
    with Store(tmp_path / "results.sqlite") as store:
        for ck, offset in ((HPS_A, 0.0), (HPS_B, 10.0)):  # the same images scored twice
            for i, prompt in enumerate(prompts):
                request = replace(fake_request(), prompt=prompt)
                store.save(request, [
                    scored_result("t", request, clip=score(20.0), hps=hps(offset + 1.0 + i, ck)),
                    scored_result("s", request, teacher="t", clip=score(19.0),
                                  hps=hps(offset + 0.5 + i, ck), lpips=lpips(0.1 * (i + 1)))])
        df = store.results(metric="hps")
        lp = store.results(metric="lpips")
        plain = store.results()
    table = summary(df, metric="hps", n_resamples=999)
    assert list(table["model"]) == ["t", "t", "s", "s"]
    assert set(table["score_checkpoint"]) == {HPS_A, HPS_B}  # two rows a model, never one mean
    by = {(r.model, r.score_checkpoint): r for r in table.itertuples()}
    assert by[("t", HPS_A)].clip_mean == pytest.approx(2.0)
    assert by[("t", HPS_B)].clip_mean == pytest.approx(12.0)
    assert by[("s", HPS_A)].diff_mean == pytest.approx(-0.5) and by[("s", HPS_A)].n_paired == 3
    assert by[("s", HPS_B)].diff_mean == pytest.approx(-0.5)
    pairs = paired_differences(df, metric="hps")  # each student beside its teacher, per checkpoint
    assert len(pairs) == 6 and set(pairs["score_checkpoint"]) == {HPS_A, HPS_B}
    assert pairs["diff"].tolist() == pytest.approx([-0.5] * 6)
    # CLIP is still the default, and "clip" names it
    pd.testing.assert_frame_equal(summary(plain, metric="clip", n_resamples=99),
                                  summary(plain, n_resamples=99))
    # LPIPS (a vs-teacher metric) pairs though the teacher has no score of its own
    effects = pair_effects(lp, metric="lpips", n_resamples=999)
    assert list(effects["quality"].unique()) == ["fidelity"]
    assert effects.loc[effects["category"] == "all prompts", "quality_mean"].iloc[0] == pytest.approx(0.2)
    text = format_report(*report_table(df, metric="hps"), metric="hps")
    assert "HPS v2.1 mean [95% CI]" in text and "never averaged" in text


# --- FID and KID over a stored sweep ---------------------------------------------------------------

@pytest.fixture(scope="module")
def inception_hub(tmp_path_factory):
    """torch hub's folder holding a random FID Inception (tests/test_distribution.py's)."""
    import os

    from test_distribution import _random_inception

    from dsdcompare.scorers import SCORER_WEIGHTS

    folder = tmp_path_factory.mktemp("torch-hub")
    (folder / "checkpoints").mkdir()
    _random_inception(folder / "checkpoints" / os.path.basename(SCORER_WEIGHTS["fid"][0].url))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(folder))
    yield folder
    torch.hub.set_dir(previous)


def test_fid_and_kid_over_a_stored_sweep_with_sample_sizes_and_the_small_sample_warning(
        inception_hub, tmp_path, capsys):
    from dsdcompare.cli import main
    from dsdcompare.distance import distance_table, sweep_distances
    from dsdcompare.scorers import load_inception

    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        for prompt in ("a red circle", "a blue square"):
            request = replace(fake_request(), prompt=prompt)
            store.save(request, [fake_result("toy-teacher", request),
                                 fake_result("toy-student", request, teacher="toy-teacher")])
        rows = store.results()
    found = sweep_distances(rows, extractor=load_inception())
    [d] = found
    assert (d.model, d.reference, d.n_student, d.n_reference) == ("toy-student", "teacher toy-teacher", 4, 4)
    assert d.fid is not None and d.fid > 0 and d.kid is not None and d.fid_too_small
    assert any("compare KID instead" in w for w in d.warnings)
    assert list(distance_table(found)["fid"]) == [d.fid]
    # the command: bench --report --distance over the same selection
    code = main(["bench", "--report", "--distance", "--store", str(path), "--models", "toy",
                 "--negative", "blurry", "--guidance", "6", "--size", "64", "--images", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("toy-student") and "teacher" in x)
    assert "4/4" in line and f"{d.fid:.3f}*" in line
    assert "warning: FID from 4 images per set is biased upward" in out


# --- downloads ----------------------------------------------------------------------------------

def test_download_plans_exactly_the_scorer_weights(tmp_path):
    from dsdcompare.download import RepoFile, missing_urls, plan_scorer_weights, scorer_checkpoints

    listings = {
        "xswu/HPSv2": [RepoFile("HPS_v2.1_compressed.pt", 10), RepoFile("HPS_v2_compressed.pt", 10)],
        "yuvalkirstain/PickScore_v1": [RepoFile("config.json", 1), RepoFile("model.safetensors", 9),
                                       RepoFile("pytorch_model.bin", 9)],
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": [
            RepoFile(n, 1) for n in ("preprocessor_config.json", "tokenizer.json", "vocab.json",
                                     "open_clip_pytorch_model.bin", "merges.txt")],
    }
    plans, urls = plan_scorer_weights("hps,pickscore,lpips,fid,kid",
                                      listing=lambda repo, rev: ("c0ffee", listings[repo]))
    files = {p.repo_id: [f.path for f in p.files] for p in plans}
    assert files == {"xswu/HPSv2": ["HPS_v2.1_compressed.pt"],  # v2.1 only
                     "yuvalkirstain/PickScore_v1": ["config.json", "model.safetensors"],
                     "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": ["merges.txt", "preprocessor_config.json",
                                                               "tokenizer.json", "vocab.json"]}
    assert all(p.revision == "c0ffee" for p in plans)
    assert [u.name for u in urls] == ["lpips", "fid"]  # kid shares fid's file
    assert urls[1].path.name == "weights-inception-2015-12-05-6726825d.pth"
    assert missing_urls(urls) == [u for u in urls if not u.path.is_file()]
    # quality scorer names are not CLIP checkpoints
    assert scorer_checkpoints("hps,clip", [get_model("sd-v1-4")]) == ["openai/clip-vit-large-patch14"]
