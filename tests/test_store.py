"""The results store: schema and migrations, queries, exports, bundles, and faults with real
processes (SIGKILL mid-run, two concurrent writers)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dsdcompare import store as store_mod
from dsdcompare.cli import store as store_cli
from dsdcompare.store import (
    APPLICATION_ID,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    DuplicateResultError,
    Store,
    StoreError,
    default_store_path,
    request_key,
)
from dsdcompare.store import bundles as bundles_mod
from dsdcompare.store.common import finite

sys.path.insert(0, str(Path(__file__).parent))
from store_writer import fake_request, fake_result  # noqa: E402

WRITER = Path(__file__).parent / "store_writer.py"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def clip_score(value, checkpoint="tiny", per_image=None):
    from dsdcompare.metrics import SCALE_CLIPSCORE, Score

    per_image = per_image or [value - 1.0, value + 1.0]
    return Score(value=value, per_image=per_image, excluded=[None] * len(per_image),
                 backend="torchmetrics", checkpoint=checkpoint, scale=SCALE_CLIPSCORE,
                 standin=checkpoint == "tiny", prompt_tokens=3, max_prompt_tokens=75,
                 truncated=False, scored_prompt="a red circle", note="stand-in")


@pytest.fixture
def store(store_path):
    with Store(store_path) as s:
        yield s


def saved(store, models=("m0", "m1"), seed=7, **kw):
    request = fake_request(seed)
    results = [fake_result(m, request, **kw) for m in models]
    return store.save(request, results, source="tiny"), request, results


# --------------------------------------------------------------------------------------------
# Schema, writing, reading
# --------------------------------------------------------------------------------------------


def test_new_store_has_versioned_schema_in_wal_mode(store_path):
    with Store() as s:  # the default store follows $DSDCOMPARE_STORE (store_path fixture)
        assert s.path == store_path and s.root == store_path.parent and not s.readonly
    assert default_store_path() == store_path
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # v4: scores
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "results", "images"} <= tables


def test_default_store_path_without_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("DSDCOMPARE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / "dsdcompare-results" / "results.sqlite"


def test_store_folder_path_means_results_sqlite_inside(tmp_path):
    with Store(tmp_path) as s:
        assert s.path == tmp_path / "results.sqlite"
    with Store(f"{tmp_path / 'new'}/") as s:  # a folder not there yet, named with a slash
        assert s.path == tmp_path / "new" / "results.sqlite" and s.path.is_file()


def test_result_round_trips_with_provenance_and_content_hashed_images(store):
    request = fake_request()
    result = fake_result("m1", request, score=clip_score(21.5))
    result.fidelity = {"against": "m0", "psnr": 18.5, "ssim": 0.5, "per_image": [{"psnr": 18.5}]}
    result.timing.its_per_s = float("nan")  # what the timing protocol gives with no denoise time
    run_id = store.start_run(request, source="tiny", note="review 1")
    rid = store.add_result(run_id, result)
    store.finish_run(run_id)

    record = store.result_record(rid)
    expected = json.loads(json.dumps(result.to_dict()))
    for key, value in expected.items():
        if key != "timing":
            assert record[key] == value, key
    assert math.isnan(record["timing"]["its_per_s"])
    assert record["score"]["per_image"] == [20.5, 22.5]
    assert record["score"]["checkpoint"] == "tiny" and record["env"]["torch"] == "2.x"
    assert (record["result_id"], record["run_id"]) == (rid, run_id)

    paths = store.images(rid)
    assert [str(p) for p in paths] == record["image_paths"]
    for path, image in zip(paths, result.images):
        assert path.parent.parent == store.root / "images"
        assert path.name == sha256(path) + ".png" and path.parent.name == path.name[:2]
        from PIL import Image

        with Image.open(path) as stored:
            assert stored.tobytes() == image.tobytes()

    row = store.results(run_id=run_id).iloc[0]
    assert list(store.results().columns) == list(RESULT_COLUMNS)
    assert row["clip_score"] == 21.5 and row["score_checkpoint"] == "tiny"
    assert row["score_standin"] and row["psnr"] == 18.5 and row["fidelity_against"] == "m0"
    assert math.isnan(row["its_per_s"]) and row["median_s"] == result.timing.median_s
    assert row["flags"] == "image 1: all black" and row["run_note"] == "review 1"
    assert row["n_images"] == 2 and row["image_sha256"] == [p.stem for p in paths]
    assert row["size"] == 64 and row["repeats"] == 2 and row["device_name"] == "Test CPU"
    assert store.verify() == []


def test_ids_and_values_from_a_dataframe_work_like_python_numbers(store):
    """numpy scalars (what a DataFrame hands back) would bind as BLOBs matching no row."""
    import numpy as np

    run_id, request, _ = saved(store)
    df = store.results()
    rid = df["result_id"].iloc[0]
    assert isinstance(rid, np.integer)
    assert len(store.images(rid)) == 2 and store.result_record(rid)["model"] == "m0"
    assert len(store.results(run_id=df["run_id"].iloc[0])) == 2
    assert len(store.results(seed=np.int64(request.seed), steps=np.int32(request.steps))) == 2
    again = store.start_run(request, source="tiny")
    store.add_result(np.int64(again), fake_result("m0", request))
    store.finish_run(np.int64(again))
    assert store.runs()[0]["finished"] and store.runs()[0]["n_results"] == 1


def test_load_result_rebuilds_a_result(store):
    run_id, request, results = saved(store, ("m0",), score=clip_score(30.0))
    rid = int(store.results(run_id=run_id)["result_id"].iloc[0])
    back = store.load_result(rid)
    assert back.to_dict() == json.loads(json.dumps(results[0].to_dict()))
    assert type(back.score).__name__ == "Score" and back.timing.stages.decode == 0.04
    assert [i.tobytes() for i in back.images] == [i.tobytes() for i in results[0].images]


def test_result_from_dict_rebuilds_timing_and_score_and_ignores_extra_keys():
    from dsdcompare.engine import Result
    from dsdcompare.metrics import Score
    from dsdcompare.timing import Timing

    request = fake_request()
    original = fake_result("m0", request, score=clip_score(25.0))
    data = json.loads(json.dumps(original.to_dict()))
    data.update(result_id=3, run_id=1, created_at="2026-01-01T00:00:00+00:00")
    data["timing"]["stages"]["gpu_idle"] = 0.0  # a key a newer version might add
    back = Result.from_dict(data)
    assert isinstance(back.timing, Timing) and isinstance(back.score, Score)
    assert back.timing.stages.denoise == original.timing.stages.denoise and back.images == []
    assert back.to_dict() == json.loads(json.dumps(original.to_dict()))
    failed = Result.from_dict(fake_result("m1", request, success=False).to_dict())
    assert failed.timing is None and failed.score is None and not failed.success


def test_store_errors_are_project_errors(tmp_path):
    from dsdcompare.errors import DsdCompareError

    assert issubclass(DuplicateResultError, StoreError)
    (tmp_path / "notes.sqlite").write_text("not a database")
    with pytest.raises(DsdCompareError, match="not a dsdcompare results database"):
        Store(tmp_path / "notes.sqlite")
    with pytest.raises(RuntimeError):  # callers that catch RuntimeError still do
        Store(tmp_path / "notes.sqlite")


def test_failed_result_is_stored_and_not_completed(store):
    request = fake_request()
    run_id = store.save(request, [fake_result("m0", request, success=False)], source="tiny")
    row = store.results(run_id=run_id).iloc[0]
    assert not row["success"] and row["error"] == "RuntimeError: boom" and row["n_images"] == 0
    assert store.result_record(int(row["result_id"]))["error_detail"].endswith("boom")
    assert not store.completed(request, "m0", "tiny")


def test_completed_means_same_request_model_source_and_images_present(store):
    run_id, request, _ = saved(store)
    assert store.completed(request, "m0", "tiny")
    assert not store.completed(request, "m0", "hub")
    assert not store.completed(request, "m9", "tiny")
    for change in ({"seed": 8}, {"steps": 4}, {"size": None}, {"guidance": 7.0},
                   {"negative_prompt": ""}, {"images_per_prompt": 1},
                   {"scheduler": "EulerDiscreteScheduler"}, {"prompt": "a blue square"}):
        other = request.__class__(**{**request.__dict__, **change})
        assert not store.completed(other, "m0", "tiny"), change
    # repeats and warm-up change the measurement, not what is generated
    again = request.__class__(**{**request.__dict__, "repeats": 5, "warmup": 0})
    assert request_key(again) == request_key(request) and store.completed(again, "m0", "tiny")
    assert store.pending(request, ["m0", "m1", "m2"], "tiny") == ["m2"]
    # an image file lost from disk: not complete any more, a rerun makes it again
    store.images(int(store.results(model="m1")["result_id"].iloc[0]))[0].unlink()
    assert not store.completed(request, "m1", "tiny")


def test_a_run_holds_one_successful_result_per_model(store):
    run_id, request, _ = saved(store, ("m0",))
    with pytest.raises(DuplicateResultError, match="already has a successful result for 'm0'"):
        store.add_result(run_id, fake_result("m0", request))
    assert len(store.results()) == 1
    with pytest.raises(StoreError, match="no run 999"):
        store.add_result(999, fake_result("m0", request))


def test_runs_queries_by_prompt_model_and_date(store):
    a, _, _ = saved(store, ("m0", "m1"), seed=1)
    b, _, _ = saved(store, ("m2",), seed=2)
    c = store.save(fake_request(3, prompt="a blue square"), [], source="tiny")
    assert [r["run_id"] for r in store.runs()] == [c, b, a]
    assert [r["run_id"] for r in store.runs(prompt="a red circle")] == [b, a]
    assert [r["run_id"] for r in store.runs(text="BLUE")] == [c]
    assert [r["run_id"] for r in store.runs(model="m1")] == [a]
    assert [r["run_id"] for r in store.runs(limit=1)] == [c]
    first = store.runs()[-1]
    assert first["models"] == ["m0", "m1"] and first["n_success"] == 2 and first["finished"]
    now = datetime.now(UTC)
    assert len(store.runs(since=now - timedelta(minutes=5))) == 3
    assert store.runs(since=now + timedelta(minutes=5)) == []
    assert len(store.runs(until=date.today() + timedelta(days=1))) == 3
    assert store.runs(until="2000-01-01") == []
    with pytest.raises(StoreError, match="not an ISO date"):
        store.runs(since="yesterday")


def test_side_by_side_gives_the_latest_result_per_model(store):
    saved(store, ("m0", "m1"), seed=5)
    _, request, _ = saved(store, ("m1",), seed=5)
    store.save(request, [fake_result("m0", request, success=False)], source="tiny")
    saved(store, ("m0",), seed=6)  # another seed: not in this view
    df = store.side_by_side("a red circle", 5)
    assert list(df["model"]) == ["m0", "m1"]
    ids = store.results(seed=5)
    m1_latest = ids[(ids["model"] == "m1")]["result_id"].max()
    m0_success = ids[(ids["model"] == "m0") & ids["success"]]["result_id"].max()
    assert list(df["result_id"]) == [m0_success, m1_latest]  # a newer failure does not hide m0
    assert store.side_by_side("nothing like this", 5).empty


def test_one_store_shared_by_threads(store):
    request = fake_request()
    run_id = store.start_run(request, source="tiny")
    errors = []

    def write(k):
        try:
            for j in range(5):
                store.add_result(run_id, fake_result(f"t{k}-{j}", request))
                store.results(run_id=run_id)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(store.results(run_id=run_id)["model"]) == sorted(
        f"t{k}-{j}" for k in range(4) for j in range(5))


# --------------------------------------------------------------------------------------------
# Bad input: foreign files, newer schemas, read-only, crafted paths
# --------------------------------------------------------------------------------------------


def _foreign_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind, message", [
    ("text", "not an SQLite file"),
    ("png", "not an SQLite file"),
    ("foreign", "not a dsdcompare results database"),
    ("corrupt", "cannot be read as an SQLite database"),
    ("marked", "marked as a dsdcompare database but is damaged"),
])
def test_not_a_dsdcompare_database_is_refused_and_untouched(tmp_path, kind, message):
    path = tmp_path / "results.sqlite"
    if kind == "text":
        path.write_text("prompt,seed\na cat,1\n")
    elif kind == "png":
        fake_result("m0", fake_request()).images[0].save(path, format="PNG")
    elif kind == "foreign":
        _foreign_sqlite(path)
    elif kind == "marked":  # our application id, but not our tables
        _foreign_sqlite(path)
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(StoreError, match=message) as info:
        Store(path)
    assert str(path) in str(info.value) and "left untouched" in str(info.value)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]


def test_newer_schema_is_refused_and_untouched(store_path):
    with Store(store_path) as s:
        saved(s)
    conn = sqlite3.connect(store_path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before, mtime = store_path.read_bytes(), store_path.stat().st_mtime_ns
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"newer dsdcompare \(schema v99.*Upgrade"):
            Store(store_path, readonly=readonly)
    assert store_path.read_bytes() == before and store_path.stat().st_mtime_ns == mtime


def test_read_only_store_refuses_writes(store_path):
    with Store(store_path) as s:
        _, request, _ = saved(s)
    with Store(store_path, readonly=True) as ro:
        assert len(ro.results()) == 2
        with pytest.raises(StoreError, match="read-only"):
            ro.start_run(request)
        with pytest.raises(StoreError, match="read-only"):
            ro.add_result(1, fake_result("m9", request))
    with pytest.raises(StoreError, match="no results database there"):
        Store(store_path.with_name("missing.sqlite"), readonly=True)


def _craft_image_path(db, rel):
    conn = sqlite3.connect(db)
    conn.execute("UPDATE images SET path = ? WHERE result_id = 1 AND idx = 0", (rel,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("rel", [
    "../../outside.png", "/etc/passwd", "images/ab/../../../x.png",
    "images/00/" + "a" * 64 + ".png",  # folder does not match the hash
])
def test_crafted_image_paths_never_escape(store_path, tmp_path, rel):
    with Store(store_path) as s:
        saved(s, ("m0",))
    _craft_image_path(store_path, rel)
    with Store(store_path) as s:
        with pytest.raises(StoreError, match="refusing stored image path"):
            s.images(1)
        with pytest.raises(StoreError, match="refusing"):
            s.results()
        assert any("refusing" in p for p in s.verify())
        with pytest.raises(StoreError, match="refusing"):
            s.export_bundle(tmp_path / "b.zip")


def test_symlinked_image_folder_cannot_lead_outside(store_path, tmp_path_factory):
    with Store(store_path) as s:
        saved(s, ("m0",))
        path = s.images(1)[0]
    outside = tmp_path_factory.mktemp("outside") / "elsewhere"
    shutil.move(str(path.parent), outside)
    path.parent.symlink_to(outside, target_is_directory=True)
    with Store(store_path) as s:
        with pytest.raises(StoreError, match="outside the store folder"):
            s.images(1)


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


def _make_v1(path, request):
    """A v1 database as dsdcompare 0.1's store wrote it: v1 tables, one run, one result."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    store_mod.MIGRATIONS[1](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (created_at, finished_at, prompt, negative_prompt, seed, steps, "
        "guidance, size, images_per_prompt, repeats, warmup, scheduler, source, note, request) "
        "VALUES ('2025-01-02T03:04:05.000000+00:00', '2025-01-02T03:05:00.000000+00:00', ?, ?, "
        "?, ?, ?, ?, ?, 2, 1, NULL, 'tiny', 'old', '{}')",
        (request.prompt, request.negative_prompt, request.seed, request.steps,
         request.guidance, request.size, request.images_per_prompt))
    record = fake_result("m0", request).to_dict()
    flat = {**store_mod.flat_record(record), "median_s": 0.5}  # v1 had every flat column of today
    names = ["run_id", "created_at", *flat, "record"]
    conn.execute(f"INSERT INTO results ({', '.join(names)}) VALUES "
                 f"({', '.join('?' * len(names))})",
                 (1, "2025-01-02T03:04:30.000000+00:00", *flat.values(), json.dumps(record)))
    conn.execute("COMMIT")
    conn.close()


def test_v1_database_migrates_to_v2_with_a_backup(store_path):
    request = fake_request()
    _make_v1(store_path, request)
    with Store(store_path) as s:
        assert s.runs()[0]["request_key"] == request_key(request)  # backfilled
        assert s.completed(request, "m0", "tiny")  # what v2 is for
        df = s.results()
        assert list(df["model"]) == ["m0"] and df["median_s"].iloc[0] == 0.5
        assert s.runs()[0]["note"] == "old"
        saved(s, ("m1",))  # and it takes new results
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    backup = store_path.with_name("results.v1-backup.sqlite")
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    assert old.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


def test_failed_migration_leaves_the_database_at_v1(store_path, monkeypatch):
    request = fake_request()
    _make_v1(store_path, request)

    def broken(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN request_key TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(store_mod.MIGRATIONS, 2, broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        Store(store_path)
    conn = sqlite3.connect(store_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "request_key" not in [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    monkeypatch.undo()
    with Store(store_path) as s:  # the real migration still works afterwards
        assert s.completed(request, "m0", "tiny")


def test_old_schema_cannot_be_opened_read_only(store_path):
    _make_v1(store_path, fake_request())
    with pytest.raises(StoreError, match="Open it once read-write to migrate"):
        Store(store_path, readonly=True)


# --------------------------------------------------------------------------------------------
# Exports and bundles
# --------------------------------------------------------------------------------------------


def _raw_rows(db):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM results")}
    images = {}
    for r in conn.execute("SELECT result_id, path, sha256 FROM images ORDER BY result_id, idx"):
        images.setdefault(r["result_id"], []).append((r["path"], r["sha256"]))
    conn.close()
    return rows, images


def _filled_store(store):
    request = fake_request()
    store.save(request, [fake_result("m0", request, score=clip_score(20.0)),
                         fake_result("m1", request, success=False)], source="tiny")
    other = fake_request(9, prompt='comma, "quote" and\nnewline')
    store.save(other, [fake_result("m1", other, score=clip_score(31.25, checkpoint="B"))],
               source="tiny", note="second")


def test_export_csv_rows_match_the_database(store, tmp_path):
    _filled_store(store)
    path = store.export_csv(tmp_path / "out.csv")
    raw, images = _raw_rows(store.path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(RESULT_COLUMNS) and len(rows) == len(raw) == 3
    for row in rows:
        db = raw[int(row["result_id"])]
        assert row["model"] == db["model"] and row["prompt"] == db["prompt"]
        assert int(row["seed"]) == db["seed"] and row["success"] == str(bool(db["success"]))
        for col in ("median_s", "clip_score", "load_s", "its_per_s"):
            assert (float(row[col]) if row[col] else None) == db[col], col
        assert row["error"] == (db["error"] or "")
        assert row["flags"] == "; ".join(json.loads(db["flags"]))
        assert row["image_paths"] == ";".join(p for p, _ in images.get(db["id"], []))
        assert row["image_sha256"] == ";".join(s for _, s in images.get(db["id"], []))
        assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(
            db["created_at"])


def test_export_json_rows_and_records_match_the_database(store, tmp_path):
    _filled_store(store)
    store.add_result(store.start_run(fake_request(4), source="tiny"),
                     _nan_result())
    path = store.export_json(tmp_path / "out.json")
    doc = json.loads(path.read_text(encoding="utf-8"),
                     parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    raw, images = _raw_rows(store.path)
    assert doc["format"] == "dsdcompare-results" and doc["schema"] == SCHEMA_VERSION
    assert [r["run_id"] for r in doc["runs"]] == [1, 2, 3]
    assert len(doc["results"]) == len(raw) == 4
    for row in doc["results"]:
        db = raw[row["result_id"]]
        assert set(RESULT_COLUMNS) <= set(row)
        for col in ("model", "prompt", "seed", "error", "median_s", "clip_score", "score_scale",
                    "dtype", "width", "run_id"):
            assert row[col] == db[col], col
        assert row["success"] is bool(db["success"])
        assert row["image_paths"] == [p for p, _ in images.get(db["id"], [])]
        assert row["record"] == finite(json.loads(db["record"]))
    assert doc["results"][-1]["its_per_s"] is None  # NaN: null in standard JSON


def _nan_result():
    result = fake_result("m5", fake_request(4))
    result.timing.its_per_s = float("nan")
    return result


def test_bundle_opens_read_only_on_a_fresh_directory_with_images_intact(store, tmp_path,
                                                                        tmp_path_factory):
    _filled_store(store)
    original = store.results()
    hashes = {r: [sha256(p) for p in store.images(r)] for r in original["result_id"]}
    bundle = store.export_bundle(tmp_path / "review.zip")
    store.close()
    # another machine: only the zip, in a fresh folder; the original store is gone
    fresh = tmp_path_factory.mktemp("other-machine")
    moved = Path(shutil.move(str(bundle), fresh / "review.zip"))
    shutil.rmtree(store.root / "images")
    store.path.unlink()
    with zipfile.ZipFile(moved) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["counts"] == {"runs": 2, "results": 3, "images": 4}
    with Store(moved) as b:
        assert b.readonly and b.bundle == moved.resolve()
        df = b.results()
        cols = [c for c in RESULT_COLUMNS if c not in ("image_paths",)]
        assert df[cols].astype(str).equals(original[cols].astype(str))
        for rid, expected in hashes.items():
            paths = b.images(rid)
            assert [sha256(p) for p in paths] == expected
            assert all(p.is_relative_to(b.root) for p in paths)
        assert b.verify() == []
        assert b.side_by_side("a red circle", 7)["model"].tolist() == ["m0", "m1"]
        with pytest.raises(StoreError, match="read-only"):
            b.start_run(fake_request())
        tmp_root = b.root
    assert not tmp_root.exists()  # the extracted copy is removed on close
    assert sorted(p.name for p in fresh.iterdir()) == ["review.zip"]  # nothing written beside it
    with Store(moved, readonly=False) as b:  # a bundle is always read-only
        assert b.readonly


def test_empty_store_queries_and_exports(store, tmp_path):
    assert store.runs() == [] and store.results().empty
    assert list(store.results().columns) == list(RESULT_COLUMNS)
    assert store.side_by_side("a red circle", 7).empty
    store.export_csv(tmp_path / "e.csv")
    assert json.loads(store.export_json(tmp_path / "e.json").read_text())["results"] == []
    with Store(store.export_bundle(tmp_path / "e.zip")) as b:
        assert b.results().empty


def test_bundle_of_chosen_runs(store, tmp_path):
    _filled_store(store)
    with Store(store.export_bundle(tmp_path / "one.zip", run_ids=[2])) as b:
        assert [r["run_id"] for r in b.runs()] == [2]
        assert b.results()["model"].tolist() == ["m1"] and b.verify() == []
        with zipfile.ZipFile(tmp_path / "one.zip") as zf:
            assert len([n for n in zf.namelist() if n.startswith("images/")]) == 2


def _rewrite_zip(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for name, new in change(info.filename, data):
                zout.writestr(name, new)


def test_tampered_or_crafted_bundles_are_refused(store, tmp_path):
    _filled_store(store)
    good = store.export_bundle(tmp_path / "good.zip")
    image = next(n for n in zipfile.ZipFile(good).namelist() if n.startswith("images/"))
    cases = {
        "image bytes changed": lambda n, d: [(n, d + b"x" if n == image else d)],
        "escaping member": lambda n, d: [(n, d)] + ([("../../evil.txt", b"x")]
                                                   if n == "manifest.json" else []),
        "image dropped": lambda n, d: [] if n == image else [(n, d)],
        "database changed": lambda n, d: [(n, d[:-1] + b"\x01" if n == "results.sqlite" else d)],
        "manifest missing": lambda n, d: [] if n == "manifest.json" else [(n, d)],
    }
    for why, change in cases.items():
        bad = tmp_path / f"bad-{len(why)}.zip"
        _rewrite_zip(good, bad, change)
        with pytest.raises(StoreError, match="not a valid dsdcompare bundle"):
            Store(bad)
    assert not (tmp_path.parent / "evil.txt").exists()
    (tmp_path / "nozip.zip").write_text("hello")
    with pytest.raises(StoreError, match="not a readable zip"):
        Store(tmp_path / "nozip.zip")
    with pytest.raises(StoreError, match="no such bundle"):
        Store(tmp_path / "missing.zip")


def test_bundle_too_large_to_extract_is_refused(store, tmp_path, monkeypatch):
    _filled_store(store)
    bundle = store.export_bundle(tmp_path / "big.zip")
    monkeypatch.setattr(bundles_mod, "MAX_BUNDLE_BYTES", 1000)
    with pytest.raises(StoreError, match="GiB once extracted"):
        Store(bundle)


def test_bundle_whose_database_points_outside_is_refused(store, tmp_path):
    _filled_store(store)
    good = store.export_bundle(tmp_path / "good.zip")
    work = tmp_path / "work"
    with zipfile.ZipFile(good) as zf:
        zf.extractall(work)
    _craft_image_path(work / "results.sqlite", "../../../etc/passwd")
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["database"]["sha256"] = sha256(work / "results.sqlite")
    (work / "manifest.json").write_text(json.dumps(manifest))
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(crafted, "w") as zf:
        for p in sorted(work.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(work).as_posix())
    with pytest.raises(StoreError, match="refusing stored image path"):
        Store(crafted)


def test_store_command_line(store_path, tmp_path, capsys):
    with Store(store_path) as s:
        _filled_store(s)
    parser = argparse.ArgumentParser()
    store_cli.configure(parser)

    def run(*argv):
        return store_cli.run(parser.parse_args(["--store", str(store_path), *argv]))

    assert run("runs") == 0 and "a red circle" in capsys.readouterr().out
    assert run("export", "--csv", str(tmp_path / "a.csv"), "--json", str(tmp_path / "a.json"),
               "--bundle", str(tmp_path / "a.zip"), "--run", "2") == 0
    assert len(list(csv.DictReader(open(tmp_path / "a.csv")))) == 1
    assert run("check") == 0 and "sound" in capsys.readouterr().out
    assert store_cli.run(parser.parse_args(["--store", str(tmp_path / "a.zip"), "check"])) == 0
    (tmp_path / "x.sqlite").write_text("not a db")
    assert store_cli.run(parser.parse_args(["--store", str(tmp_path / "x.sqlite"), "runs"])) == 2
    assert "not a dsdcompare results database" in capsys.readouterr().err


def test_store_export_of_chosen_runs_through_the_command_line_entry_point(store_path, tmp_path):
    """``--run`` must not clobber the entry point cli.main keeps in ``args.run``."""
    from dsdcompare.cli import main

    with Store(store_path) as s:
        _filled_store(s)
    out = tmp_path / "one.csv"
    assert main(["store", "--store", str(store_path), "export", "--csv", str(out),
                 "--run", "2"]) == 0
    assert [r["run_id"] for r in csv.DictReader(open(out))] == ["2"]


# --------------------------------------------------------------------------------------------
# Merging stores (one per node of a multi-node bench)
# --------------------------------------------------------------------------------------------


def _content(store) -> set[tuple]:
    """What a store holds, without its ids: one tuple per result."""
    df = store.results()
    return {(r.prompt, r.seed, r.model, bool(r.success), str(r.created_at), r.median_s
             if r.success else None, tuple(r.image_sha256), r.run_note)
            for r in df.itertuples()}


def _node_stores(tmp_path):
    """Two node stores: node a ran seed 1 (m2 failed), node b seed 2 and an interrupted seed 3."""
    with Store(tmp_path / "a") as a:
        request = fake_request(1)
        a.save(request, [fake_result("m0", request), fake_result("m1", request),
                         fake_result("m2", request, success=False)], source="tiny", note="node a")
    with Store(tmp_path / "b") as b:
        request = fake_request(2)
        b.save(request, [fake_result(m, request) for m in ("m0", "m1", "m2")], source="tiny",
               note="node b")
        run_id = b.start_run(fake_request(3), source="tiny", note="node b, killed")
        b.add_result(run_id, fake_result("m0", fake_request(3)))
    return tmp_path / "a", tmp_path / "b"


def test_merge_copies_the_union_with_records_and_images_and_twice_adds_nothing(tmp_path):
    a, b = _node_stores(tmp_path)
    with Store(a, readonly=True) as sa, Store(b, readonly=True) as sb:
        union = _content(sa) | _content(sb)
        records = {(r["model"], r["seed"], r["success"]): r for s in (sa, sb)
                   for r in map(s.result_record, s.results()["result_id"])}
        runs = {r["note"]: r for s in (sa, sb) for r in s.runs()}
    with Store(tmp_path / "all") as dest:
        first = [dest.merge(a), dest.merge(b)]
        assert [(r["runs_added"], r["results_added"], r["results_present"], r["problems"])
                for r in first] == [(1, 3, 0, []), (2, 4, 0, [])]
        assert first[0]["images_copied"] == 4 and first[1]["images_copied"] == 8
        assert _content(dest) == union and len(dest.results()) == 7
        for rid in dest.results()["result_id"]:  # the full records came along unchanged
            record = dest.result_record(rid)
            before = records[(record["model"], record["seed"], record["success"])]
            ids = ("run_id", "result_id")  # renumbered; everything else unchanged
            assert {k: v for k, v in record.items() if k not in ids} == \
                {k: v for k, v in before.items() if k not in ids}
        merged = {r["note"]: r for r in dest.runs()}
        for note, run in runs.items():  # times, finished state and request key are kept
            for key in ("created_at", "finished_at", "request_key", "source", "seed"):
                assert merged[note][key] == run[key], (note, key)
        assert not merged["node b, killed"]["finished"]
        assert dest.verify() == []
        # merging again (or the same node twice) adds nothing
        again = dest.merge(b)
        assert (again["runs_added"], again["results_added"], again["results_present"]) == (0, 0, 4)
        assert len(dest.results()) == 7
        # resuming sees the union: only what no node finished is pending
        models = ["m0", "m1", "m2"]
        assert dest.pending(fake_request(1), models, "tiny") == ["m2"]
        assert dest.pending(fake_request(2), models, "tiny") == []
        assert dest.pending(fake_request(3), models, "tiny") == ["m1", "m2"]
        interrupted = merged["node b, killed"]["run_id"]
        assert dest.start_run(fake_request(3), source="tiny", resume=True) == interrupted


def test_merge_skips_a_result_with_a_missing_image_and_merges_the_rest(tmp_path):
    a, b = _node_stores(tmp_path)
    with Store(b) as sb:
        m1 = sb.results(seed=2, model="m1")["result_id"].iloc[0]
        sb.images(int(m1))[1].unlink()
    with Store(tmp_path / "all") as dest:
        report = dest.merge(b)
        (problem,) = report["problems"]
        assert f"result {m1} (m1)" in problem and "image file missing" in problem
        assert report["results_added"] == 3
        assert sorted(dest.results(seed=2)["model"]) == ["m0", "m2"]
        assert dest.verify() == []
        assert dest.pending(fake_request(2), ["m0", "m1", "m2"], "tiny") == ["m1"]


def test_merge_from_a_bundle_and_never_into_itself(tmp_path):
    a, _ = _node_stores(tmp_path)
    with Store(a) as sa:
        bundle = sa.export_bundle(tmp_path / "a.zip")
        with pytest.raises(StoreError, match="into itself"):
            sa.merge(a)
        assert len(sa.results()) == 3
    with Store(tmp_path / "all") as dest:
        assert dest.merge(bundle)["results_added"] == 3
        with Store(a, readonly=True) as sa:
            assert _content(dest) == _content(sa)
    with Store(bundle) as sbundle, pytest.raises(StoreError, match="read-only"):
        sbundle.merge(a)


def test_store_merge_command_line_goes_on_past_a_bad_source(tmp_path, capsys):
    a, b = _node_stores(tmp_path)
    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database")
    parser = argparse.ArgumentParser()
    store_cli.configure(parser)
    dest = tmp_path / "all" / "results.sqlite"
    code = store_cli.run(parser.parse_args(["--store", str(dest), "merge", str(a), str(bad),
                                            str(b)]))
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{bad} is not a dsdcompare results database" in err and bad.read_text() == \
        "not a database"
    assert "1 run(s) and 3 result(s) added" in out and "2 run(s) and 4 result(s) added" in out
    with Store(dest, readonly=True) as s:
        assert len(s.results()) == 7
    assert store_cli.run(parser.parse_args(["--store", str(dest), "merge", str(a)])) == 0
    assert "0 run(s) and 0 result(s) added, 3 already there" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Faults with real processes
# --------------------------------------------------------------------------------------------


def _writer(db, *args):
    return subprocess.Popen([sys.executable, str(WRITER), str(db), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_until(proc, marker, timeout=60.0):
    """Lines of ``proc``'s stdout up to the first containing ``marker``."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if marker in line:
            return lines
    proc.kill()
    pytest.fail(f"child never printed {marker!r}; got {lines}; stderr: {proc.stderr.read()}")


def _kill9(proc):
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _assert_intact(db, models):
    """Every stored result whole: rows, records, image files with their hashes."""
    with Store(db, readonly=True) as s:
        df = s.results()
        assert sorted(df["model"]) == sorted(models)
        assert df["result_id"].is_unique
        assert s.verify() == []
        request = fake_request()
        for _, row in df.iterrows():
            expected = fake_result(row["model"], request)
            assert s.result_record(int(row["result_id"]))["model"] == row["model"]
            assert [sha256(p) for p in row["image_paths"]] == row["image_sha256"]
            from PIL import Image

            for path, image in zip(row["image_paths"], expected.images):
                with Image.open(path) as stored:
                    assert stored.tobytes() == image.tobytes()
        return df


MODELS = "m0,m1,m2,m3"


def test_sigkill_mid_run_keeps_finished_results_and_a_rerun_completes(tmp_path):
    db = tmp_path / "results.sqlite"
    proc = _writer(db, "--models", MODELS, "--delay", "0.3")
    _read_until(proc, "result 2 stored")
    _kill9(proc)  # while "generating" the third model
    df = _assert_intact(db, ["m0", "m1"])
    with Store(db, readonly=True) as s:
        (run,) = s.runs()
        assert not run["finished"] and run["n_results"] == 2
    # the same request again: only the missing models run, into the interrupted run
    rerun = _writer(db, "--models", MODELS, "--resume")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert f"run {run['run_id']} todo=m2,m3" in out
    df = _assert_intact(db, MODELS.split(","))
    assert set(df["run_id"]) == {run["run_id"]}
    with Store(db, readonly=True) as s:
        assert s.runs()[0]["finished"] and s.pending(fake_request(), MODELS.split(","),
                                                     "tiny") == []


@pytest.mark.parametrize("hang_at", ["files", "insert"])
def test_sigkill_inside_add_result_leaves_no_partial_result(tmp_path, hang_at):
    """Killed after the PNGs are written but before the row, or with the row inserted but not
    committed (holding SQLite's write lock): no partial result, and the lock dies with it."""
    db = tmp_path / "results.sqlite"
    proc = _writer(db, "--models", MODELS, "--hang-at", hang_at, "--hang-result", "3")
    _read_until(proc, "result 3 files written" if hang_at == "files" else "result 3 inserted")
    _kill9(proc)
    _assert_intact(db, ["m0", "m1"])
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # another writer gets the write lock at once and the rerun completes the run
    start = time.monotonic()
    rerun = _writer(db, "--models", MODELS, "--resume")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert time.monotonic() - start < 30 and "todo=m2,m3" in out
    _assert_intact(db, MODELS.split(","))


def test_opening_waits_for_another_process_creating_the_same_new_store(tmp_path):
    """SQLite refuses the switch to WAL at once ("database is locked", no busy handler) while
    another connection holds the write lock on a new database: two writers starting together
    hit it (CI did). Opening must wait for the lock instead of failing."""
    db = tmp_path / "results.sqlite"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the other process, mid-creation
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # what SQLite does by itself
        probe = sqlite3.connect(db, timeout=5, isolation_level=None)
        try:
            probe.execute("PRAGMA journal_mode = WAL")
        finally:
            probe.close()
    release = threading.Timer(0.4, lambda: holder.execute("ROLLBACK"))
    release.start()
    start = time.monotonic()
    try:
        with Store(db) as s:
            waited = time.monotonic() - start
            assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert s.runs() == []
    finally:
        release.join()
        holder.close()
    assert waited >= 0.3  # it really waited for the holder instead of slipping past it


def test_files_left_by_a_killed_writer_are_reported_and_pruned_and_nothing_else(tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    proc = _writer(db, "--models", MODELS, "--hang-at", "files", "--hang-result", "3")
    _read_until(proc, "result 3 files written")
    _kill9(proc)
    with Store(db, readonly=True) as s:
        kept = {rel for (rel,) in s._query("SELECT path FROM images")}
        orphans = s.unreferenced()
        assert len(orphans) == 2 and s.unreferenced(min_age_s=3600) == []  # m2's two images
        assert not {p.relative_to(s.root).as_posix() for p in orphans} & kept
    parser = argparse.ArgumentParser()
    store_cli.configure(parser)
    assert store_cli.run(parser.parse_args(["--store", str(db), "check"])) == 0
    assert "note: 2 image file(s)" in capsys.readouterr().out
    # the default age margin spares fresh files; --older-than 0 removes them
    assert store_cli.run(parser.parse_args(["--store", str(db), "prune"])) == 0
    assert "removed 0 " in capsys.readouterr().out and all(p.exists() for p in orphans)
    assert store_cli.run(parser.parse_args(["--store", str(db), "prune", "--older-than",
                                            "0"])) == 0
    assert "removed 2 " in capsys.readouterr().out and not any(p.exists() for p in orphans)
    with Store(db) as s:
        assert s.verify() == [] and s.unreferenced() == []
        assert {rel for (rel,) in s._query("SELECT path FROM images")} == kept
    _assert_intact(db, ["m0", "m1"])
    assert store_cli.run(parser.parse_args(["--store", str(db), "prune", "--older-than",
                                            "-1"])) == 2


def test_a_result_whose_files_were_pruned_before_its_commit_is_still_whole(store, monkeypatch):
    """prune runs between a writer's file write and its transaction: the writer writes the files
    again under the write lock, so the committed rows never point at a missing file."""
    original = Store._put_image_bytes
    state = {"first": True}

    def written_then_pruned(self, data):
        sha, rel = original(self, data)
        if state["first"]:  # the first write of each file, outside the lock: prune strikes
            assert self.prune(min_age_s=0)[0] == 1
        return sha, rel

    monkeypatch.setattr(Store, "_put_image_bytes", written_then_pruned)
    request = fake_request(5)
    run_id = store.start_run(request, source="tiny")
    result = fake_result("m0", request)
    rows = [store._write_image(img) for img in result.images]
    assert not any((store.root / r["path"]).exists() for r in rows)
    state["first"] = False
    store.add_result(run_id, result)  # writes again (content-hashed: same names) and commits
    assert store.verify() == [] and len(store.images(store.results()["result_id"].iloc[0])) == 2


def test_two_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    db = tmp_path / "new" / "results.sqlite"  # neither writer finds a database: both create it
    go = tmp_path / "go"
    n = 15
    models = ",".join(f"w{i:02d}" for i in range(n))
    procs = [_writer(db, "--models", models, "--wait-for", str(go), "--note", f"writer {k}",
                     "--delay", "0.02",
                     "--seed", str(k)) for k in (1, 2)]
    for proc in procs:  # both are up before either starts, however slow the machine
        _read_until(proc, "waiting")
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out)
    with Store(db, readonly=True) as s:
        df = s.results()
        runs = {r["note"]: r for r in s.runs()}
        assert s.verify() == []
    assert len(df) == 2 * n and df["result_id"].is_unique
    assert set(runs) == {"writer 1", "writer 2"}
    for k, out in zip((1, 2), outs):
        run_id = runs[f"writer {k}"]["run_id"]
        mine = df[df["run_id"] == run_id]
        assert sorted(mine["model"]) == models.split(",") and set(mine["seed"]) == {k}
        printed = sorted(int(w.split("=")[1]) for line in out.splitlines()
                         for w in line.split() if w.startswith("id="))
        assert printed == sorted(mine["result_id"])  # every id a writer was given is there
    # the writers really interleaved (not one after the other)
    order = df.sort_values("result_id")["run_id"].tolist()
    assert sum(a != b for a, b in zip(order, order[1:])) >= 2


# --------------------------------------------------------------------------------------------
# Real Results from a tiny comparison
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_results_from_a_tiny_compare(store, tmp_path):
    from dsdcompare.engine import Request, compare
    from dsdcompare.registry import resolve_models

    request = Request("a red circle", size=64, steps=2, warmup=0, repeats=1)
    run_id = store.start_run(request, source="tiny")
    results = compare(request, resolve_models("sd-v1-4,bk-sdm-small"), source="tiny",
                      on_result=lambda r: store.add_result(run_id, r))
    store.finish_run(run_id)
    assert all(r.success for r in results)
    df = store.results(run_id=run_id).set_index("model")
    assert list(df.index) == ["sd-v1-4", "bk-sdm-small"]
    student = df.loc["bk-sdm-small"]
    assert student["teacher"] == "sd-v1-4" and student["fidelity_against"] == "sd-v1-4"
    assert student["psnr"] == pytest.approx(results[1].fidelity["psnr"])
    assert student["standin"] and student["device"] == "cpu"
    assert student["median_s"] == results[1].timing.median_s
    stages = student[["text_s", "denoise_s", "decode_s", "safety_s", "other_s"]].sum()
    assert stages == pytest.approx(student["median_s"])
    for r in results:
        rid = int(df.loc[r.model, "result_id"])
        assert store.result_record(rid)["env"] == r.env
        from PIL import Image

        for path, image in zip(store.images(rid), r.images):
            with Image.open(path) as stored:
                assert stored.tobytes() == image.tobytes()
        assert store.completed(request, r.model, "tiny")
    assert store.verify() == []
