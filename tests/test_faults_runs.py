"""Fault injection around real comparisons of the toy pair (32 px, two steps), with real
processes (issue 13, classes 8, 9 and 11): concurrent resumes, resumed outputs, pickled scorer
weights. Nothing that finished is lost, and every output folder holds the whole request."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from faults_common import TOY_ARGS, TOY_PROMPT, assert_clean, cli, snapshot
from PIL import Image

_RECORD_COLUMNS = "r.model, r.success, r.median_s, r.run_id"


def _stored(db: Path) -> dict[str, tuple]:
    """model -> (success, median_s, run_id) of every stored result (one per model expected)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM results r ORDER BY r.id").fetchall()
    finally:
        conn.close()
    out = {}
    for model, success, median, run_id in rows:
        assert model not in out, f"{model} stored twice"
        out[model] = (bool(success), median, run_id)
    return out


def _outputs(out: Path) -> dict[str, dict]:
    """model -> its record in results.json; the PNGs and contact sheet are checked there too."""
    records = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    for model in records:
        assert (out / f"{model}.png").is_file()
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width == 256 * len(records)  # one cell per model of the request
    return records


def _same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return np.array_equal(np.asarray(x.convert("RGB")), np.asarray(y.convert("RGB")))


def test_class9_a_resumed_compare_writes_the_whole_request(tmp_path):
    """The teacher was stored by an earlier run; `--resume` runs only the student, and still
    writes both models to results.json, the PNGs and the contact sheet (loaded from the store)."""
    first = cli("compare", TOY_PROMPT, *TOY_ARGS, "--models", "toy-teacher", "--store", "s/results.sqlite",
                "--out", "first", cwd=tmp_path, timeout=300)
    assert_clean(first)
    stored_before = _stored(tmp_path / "s" / "results.sqlite")
    proc = cli("compare", TOY_PROMPT, *TOY_ARGS, "--resume", "--store", "s/results.sqlite", "--out", "second",
               cwd=tmp_path, timeout=300)
    assert_clean(proc)
    assert "resume: already stored, skipped: toy-teacher" in proc.stdout
    stored = _stored(tmp_path / "s" / "results.sqlite")
    assert stored["toy-teacher"] == stored_before["toy-teacher"]  # earlier result kept as is
    records = _outputs(tmp_path / "second")
    assert list(records) == ["toy-teacher", "toy-student"]
    assert records["toy-teacher"]["timing"]["median_s"] == stored["toy-teacher"][1]
    assert records["toy-student"]["fidelity"] is None or "psnr" in records["toy-student"]["fidelity"]
    assert _same_pixels(tmp_path / "first" / "toy-teacher.png",
                        tmp_path / "second" / "toy-teacher.png")
    # nothing left to run: the outputs are still the whole request, from the store
    proc = cli("compare", TOY_PROMPT, *TOY_ARGS, "--resume", "--store", "s/results.sqlite", "--out", "third",
               cwd=tmp_path, timeout=300)
    assert_clean(proc)
    assert "nothing left to run" in proc.stdout
    assert list(_outputs(tmp_path / "third")) == ["toy-teacher", "toy-student"]
    assert _stored(tmp_path / "s" / "results.sqlite") == stored
    check = cli("store", "--store", "s/results.sqlite", "check", cwd=tmp_path)
    assert_clean(check)
    assert "sound" in check.stdout


def test_class8_two_concurrent_resumes_lose_nothing(tmp_path):
    """Two `compare --resume` of an interrupted run at once: each model is stored once, the one
    that comes second says "already stored by another run" and still writes its outputs, from
    the stored result."""
    from dsdcompare.engine import Request
    from dsdcompare.store import Store

    request = Request(prompt=TOY_PROMPT, seed=42, steps=2, guidance=7.5)  # compare's defaults
    with Store(tmp_path / "s" / "results.sqlite") as store:  # the run a killed process left unfinished
        run_id = store.start_run(request, source="local")
    args = ("compare", TOY_PROMPT, *TOY_ARGS, "--resume", "--store", "s/results.sqlite")
    procs = [subprocess.Popen([sys.executable, "-m", "dsdcompare", *args, "--out", out],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for out in ("a", "b")]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, err
    notes = "".join(err for _, err in results)
    assert "already stored by another run" in notes
    stored = _stored(tmp_path / "s" / "results.sqlite")
    assert sorted(stored) == ["toy-student", "toy-teacher"]
    assert all(ok and run == run_id for ok, _, run in stored.values())
    for out in ("a", "b"):  # loser included: the stored result of every model
        records = _outputs(tmp_path / out)
        assert list(records) == ["toy-teacher", "toy-student"]
        for model, record in records.items():
            assert record["timing"]["median_s"] == stored[model][1]
    assert _same_pixels(tmp_path / "a" / "toy-student.png", tmp_path / "b" / "toy-student.png")
    check = cli("store", "--store", "s/results.sqlite", "runs", cwd=tmp_path)
    assert_clean(check)
    assert len(check.stdout.splitlines()) == 1 and "[unfinished]" not in check.stdout


def test_class11_a_scorer_folder_with_only_pickled_weights_is_refused(tmp_path):
    """`--scorer DIR` holding only pytorch_model.bin: never loaded (safetensors only); the
    comparison goes on without a score and says why."""
    import pickle

    scorer = tmp_path / "scorer"
    scorer.mkdir()
    (scorer / "config.json").write_text("{}")
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (Path.touch, (marker,))

    (scorer / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    before = snapshot(scorer)
    proc = cli("compare", TOY_PROMPT, *TOY_ARGS, "--models", "toy-teacher", "--no-store",
               "--scorer", scorer, "--out", "out", cwd=tmp_path, timeout=300)
    assert_clean(proc)
    warning = next(line for line in proc.stderr.splitlines() if "no CLIP score" in line)
    assert "holds no .safetensors weights (only pickled pytorch_model.bin)" in warning
    assert "safetensors only" in warning
    record = json.loads((tmp_path / "out" / "results.json").read_text())[0]
    assert record["success"] and record["score"]["value"] is None
    assert "safetensors" in record["score"]["error"]
    assert not marker.exists() and snapshot(scorer) == before
    assert (tmp_path / "out" / "toy-teacher.png").is_file()
