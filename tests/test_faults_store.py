"""Fault injection against the results store and bundles, with real processes and real files
(issue 13, classes 1, 2, 5 and 7): a crafted or damaged file gets one `error:` line naming it
and the remedy (exit 2), is left byte-identical, and nothing is written where it should not be."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest
from faults_common import (
    assert_clean,
    assert_refused,
    cli,
    damage_middle,
    leftovers,
    read_only_mount,
    rezip,
    small_store,
    snapshot,
)

# a recursive view in place of a table: any query over it runs forever, growing memory
_RECURSIVE_IMAGES = """
CREATE VIEW images AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
SELECT n AS result_id, 0 AS idx, '' AS sha256, 'images/aa/x.png' AS path, 1 AS width,
       1 AS height, 1 AS bytes FROM r
"""


def _bundle(tmp_path: Path) -> Path:
    """A real bundle exported by the command line from a small real store."""
    small_store(tmp_path / "src")
    proc = cli("store", "--store", "src", "export", "--bundle", "good.zip", cwd=tmp_path)
    assert_clean(proc)
    return tmp_path / "good.zip"


def _with_database(bundle: Path, dst: Path, edit) -> Path:
    """``bundle`` with its database changed by ``edit(conn)`` and the manifest made to agree
    (sha256 of the new database; its images dropped): a crafted bundle that passes checksums."""
    work = dst.with_suffix(".d")
    with zipfile.ZipFile(bundle) as zf:
        zf.extract("results.sqlite", work)
    conn = sqlite3.connect(work / "results.sqlite")
    edit(conn)
    conn.commit()
    conn.close()
    data = (work / "results.sqlite").read_bytes()
    import hashlib

    manifest = {"format": "dsdcompare-bundle", "bundle_version": 1, "images": {},
                "database": {"path": "results.sqlite", "sha256": hashlib.sha256(data).hexdigest()}}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("results.sqlite", data)
    return dst


def test_class1_a_recursive_view_is_refused_before_any_query(tmp_path):
    """A 42 KB upload made `store check` run forever: the schema is now checked structurally
    (tables, not views) before anything reads the data, and statements are time-limited."""
    def recursive(conn):
        conn.execute("DROP TABLE images")
        conn.execute(_RECURSIVE_IMAGES)

    crafted = _with_database(_bundle(tmp_path), tmp_path / "crafted.zip", recursive)
    before = snapshot(crafted)
    for action in ("check", "runs"):
        start = time.monotonic()
        proc = cli("store", "--store", crafted, action, cwd=tmp_path, timeout=60)
        assert_refused(proc, "crafted.zip", "defines the view 'images'")
        assert time.monotonic() - start < 30
    # the same database as a local store: refused, untouched, not even a -wal file beside it
    local = tmp_path / "local"
    local.mkdir()
    with zipfile.ZipFile(crafted) as zf:
        zf.extract("results.sqlite", local)
    local_before = snapshot(local)
    for args in (("runs",), ("export", "--csv", "x.csv"), ("prune",)):
        assert_refused(cli("store", "--store", local, *args, cwd=tmp_path, timeout=60),
                       "defines the view 'images'")
    assert snapshot(local) == local_before and snapshot(crafted) == before
    assert not (tmp_path / "x.csv").exists() and not leftovers(tmp_path)


def test_class1_triggers_and_generated_columns_are_refused_and_statements_are_bounded(tmp_path):
    from dsdcompare.store import StoreError
    from dsdcompare.store.guard import translated
    from dsdcompare.store.schema import connect

    bundle = _bundle(tmp_path)
    edits = {
        "the trigger 'noisy'": lambda c: c.execute(
            "CREATE TRIGGER noisy AFTER INSERT ON runs BEGIN SELECT 1; END"),
        "generated column(s) big": lambda c: (
            c.execute("ALTER TABLE images RENAME TO old_images"),
            c.execute("CREATE TABLE images (result_id INTEGER, idx INTEGER, sha256 TEXT, path "
                      "TEXT, width INTEGER, height INTEGER, bytes INTEGER, big BLOB "
                      "GENERATED ALWAYS AS (zeroblob(1000000000)))")),
        "the view 'results'": lambda c: (
            c.execute("ALTER TABLE results RENAME TO r2"),
            c.execute("CREATE VIEW results AS SELECT * FROM r2")),
        "table 'images' lacks column(s) bytes": lambda c: c.execute(
            "ALTER TABLE images DROP COLUMN bytes"),
    }
    for i, (why, edit) in enumerate(edits.items()):
        crafted = _with_database(bundle, tmp_path / f"c{i}.zip", edit)
        assert_refused(cli("store", "--store", crafted, "check", cwd=tmp_path), why)
    # any statement over an untrusted database stops at its time limit, as a StoreError
    db = tmp_path / "src" / "results.sqlite"
    conn = connect(db, readonly=True, time_limit_s=0.5)
    start = time.monotonic()
    with pytest.raises(StoreError, match="took too long"), translated(db):
        conn.execute("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                     "SELECT count(*) FROM r").fetchall()
    assert time.monotonic() - start < 10
    conn.close()


def _zip_bomb(path: Path, member: str, size: int) -> None:
    """A zip whose ``member`` is ``size`` zero bytes (deflated to almost nothing)."""
    info = zipfile.ZipInfo(member)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as zf, zf.open(info, "w", force_zip64=True) as out:
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            out.write(chunk)


def test_class2_extraction_is_tied_to_the_upload(tmp_path):
    """A small zip may not extract to much (ratio and absolute caps, counted while streaming),
    and an image may not be larger than its database row says a PNG can be; temp is cleaned."""
    import hashlib

    bundle = _bundle(tmp_path)
    # 1. a database that inflates 1000-fold: refused from its declared size, nothing extracted
    bomb = tmp_path / "bomb.zip"
    _zip_bomb(bomb, "results.sqlite", 200 * 2**20)
    with zipfile.ZipFile(bomb, "a") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "dsdcompare-bundle",
                                                 "bundle_version": 1, "images": {},
                                                 "database": {"sha256": "0" * 64}}))
    assert bomb.stat().st_size < 2**20
    assert_refused(cli("store", "--store", bomb, "check", cwd=tmp_path), "bomb.zip",
                   "once extracted", "for a bundle of its size")
    # 2. an "image" of 8 MiB zeros with a matching name and checksum, and a row that agrees
    #    on its size but says 16 x 16: refused before it is extracted
    zeros = bytes(8 * 2**20)
    sha = hashlib.sha256(zeros).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"

    def add_row(conn):
        conn.execute("UPDATE images SET path = ?, bytes = ? WHERE rowid = (SELECT min(rowid) "
                     "FROM images)", (rel, len(zeros)))
        conn.execute("DELETE FROM images WHERE path <> ?", (rel,))

    crafted = _with_database(bundle, tmp_path / "big-image.zip", add_row)
    with zipfile.ZipFile(crafted) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        database = zf.read("results.sqlite")
    manifest["images"] = {rel: sha}
    with zipfile.ZipFile(crafted, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("results.sqlite", database)
        zf.writestr(rel, zeros)
    assert_refused(cli("store", "--store", crafted, "runs", cwd=tmp_path),
                   f"{rel} has {len(zeros)} bytes but its database records a 16 x 16 PNG")
    assert not leftovers(tmp_path)
    # 3. the dashboard's uploads: least recently used removed first, under a count and size cap
    from dsdcompare.store.uploads import prune_uploads, save_upload, touch_upload

    folder = tmp_path / "uploads"
    first = save_upload(b"a" * 100, "first.zip", folder / "s1", root=folder, max_files=2)
    second = save_upload(b"b" * 100, "../../second.zip", folder / "s2", root=folder, max_files=2)
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    touch_upload(first)  # used again: now the newest
    third = save_upload(b"c" * 100, "third.zip", folder / "s3", root=folder, max_files=2)
    assert first.exists() and third.exists() and not second.exists()
    assert second.parent == folder / "s2" and not (folder / "s2").exists()  # emptied: removed
    assert prune_uploads(folder, max_files=5, max_bytes=150) == [first]
    assert third.exists() and third.read_bytes() == b"c" * 100
    assert all(p.is_relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["bad crc", "encrypted", "nested manifest", "not a zip"])
def test_class5_broken_bundles(tmp_path, kind):
    bundle = _bundle(tmp_path)
    bad = tmp_path / "bad.zip"
    data = bytearray(bundle.read_bytes())
    if kind == "bad crc":  # one byte of a stored PNG changed, its CRC not
        with zipfile.ZipFile(bundle) as zf:
            info = next(i for i in zf.infolist() if i.filename.startswith("images/"))
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        data[start + 40] ^= 0xFF
        bad.write_bytes(bytes(data))
        why = "BadZipFile"
    elif kind == "encrypted":  # the password flag set on the database's directory entry
        at = data.find(b"PK\x01\x02")
        while at >= 0:
            name_len = struct.unpack_from("<H", data, at + 28)[0]
            if data[at + 46:at + 46 + name_len] == b"results.sqlite":
                data[at + 8] |= 0x1
            at = data.find(b"PK\x01\x02", at + 4)
        bad.write_bytes(bytes(data))
        why = "results.sqlite is encrypted"
    elif kind == "nested manifest":
        rezip(bundle, bad, lambda n, d: [(n, b"[" * 200_000 + b"]" * 200_000
                                          if n == "manifest.json" else d)])
        why = "nested too deeply"
    else:
        bad.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
        why = "not a readable zip"
    before = snapshot(bad)
    assert_refused(cli("store", "--store", bad, "check", cwd=tmp_path), "bad.zip", why,
                   "export the bundle again")
    assert snapshot(bad) == before and not leftovers(tmp_path)


def test_class5_a_store_damaged_in_the_middle(tmp_path):
    """Header intact, pages in the middle overwritten: `check` lists the damage (exit 1), the
    other commands name it (exit 2); the file is left byte-identical and nothing is written."""
    db = small_store(tmp_path / "s", runs=30, models=("m0", "m1", "m2"))
    damage_middle(db)
    before = snapshot(tmp_path / "s")
    proc = cli("store", "--store", "s", "check", cwd=tmp_path)
    assert_clean(proc, code=1)
    assert "malformed" in proc.stdout and "problem(s)" in proc.stdout.splitlines()[-1]
    assert_refused(cli("store", "--store", "s", "runs", cwd=tmp_path), "is damaged",
                   "store check")
    for flag, name in (("--csv", "x.csv"), ("--json", "x.json"), ("--bundle", "x.zip")):
        assert_refused(cli("store", "--store", "s", "export", flag, name, cwd=tmp_path),
                       "is damaged")
        assert not (tmp_path / name).exists()
    assert_refused(cli("store", "--store", "s", "prune", cwd=tmp_path), "is damaged")
    assert_refused(cli("store", "--store", "all", "merge", "s", cwd=tmp_path), "no source")
    assert not (tmp_path / "all").exists()  # no destination created for nothing to merge
    assert snapshot(tmp_path / "s") == before and not leftovers(tmp_path)


def test_class5_a_wal_store_on_read_only_media_opens_read_only(tmp_path):
    folder = tmp_path / "media"
    small_store(folder)
    before = snapshot(folder)
    wrap = read_only_mount(folder)
    proc = cli("store", "--store", folder, "runs", cwd=tmp_path, wrap=wrap)
    assert_clean(proc)
    assert len(proc.stdout.splitlines()) == 2 and "m0,m1" in proc.stdout
    assert_clean(cli("store", "--store", folder, "check", cwd=tmp_path, wrap=wrap))
    # writing there is refused with a message, not "not an SQLite database"
    proc = cli("store", "--store", folder, "prune", cwd=tmp_path, wrap=wrap)
    line = assert_refused(proc)
    assert "not an SQLite" not in line and str(folder) in line
    folder.chmod(0o755)
    assert snapshot(folder) == before


@pytest.mark.parametrize("target, why", [
    ("folder", "is a folder; give a file name inside it"),
    ("missing/x.csv", "missing does not exist; create it first"),
    ("link", "is a symbolic link"),
])
def test_class5_exports_into_folders_missing_folders_and_links(tmp_path, target, why):
    small_store(tmp_path / "s")
    (tmp_path / "folder").mkdir()
    (tmp_path / "kept.csv").write_text("mine\n")
    (tmp_path / "link").symlink_to(tmp_path / "kept.csv")
    before = snapshot(tmp_path / "s", tmp_path / "kept.csv")
    for flag in ("--csv", "--json", "--bundle"):
        proc = cli("store", "--store", "s", "export", "--csv", "ok.csv", flag, target,
                   cwd=tmp_path) if flag != "--csv" else \
            cli("store", "--store", "s", "export", flag, target, "--json", "ok.json", cwd=tmp_path)
        assert_refused(proc, target.split("/")[0], why)
        # every target is checked before anything is written
        assert not (tmp_path / "ok.csv").exists() and not (tmp_path / "ok.json").exists()
    assert (tmp_path / "link").is_symlink() and list((tmp_path / "folder").iterdir()) == []
    assert snapshot(tmp_path / "s", tmp_path / "kept.csv") == before
    assert not leftovers(tmp_path)


def test_class7_exports_write_through_devices_and_stdout_and_leave_no_tmp(tmp_path):
    small_store(tmp_path / "s")
    before = snapshot(tmp_path / "s")
    null = os.stat("/dev/null")
    proc = cli("store", "--store", "s", "export", "--csv", "/dev/null", "--bundle", "/dev/null",
               cwd=tmp_path)
    assert proc.returncode == 2 and "same file" in proc.stderr  # one target, one export
    for flag in ("--csv", "--json", "--bundle"):
        assert_clean(cli("store", "--store", "s", "export", flag, "/dev/null", cwd=tmp_path))
        after = os.stat("/dev/null")
        assert stat.S_ISCHR(after.st_mode) and after.st_ino == null.st_ino  # still the device
    # standard output carries the export itself; messages go to stderr
    proc = cli("store", "--store", "s", "export", "--csv", "-", cwd=tmp_path)
    assert_clean(proc)
    assert proc.stdout.splitlines()[0].startswith("run_id,result_id,") and "wrote -" in proc.stderr
    assert len(proc.stdout.splitlines()) == 5
    proc = cli("store", "--store", "s", "export", "--json", "-", cwd=tmp_path)
    assert_clean(proc)
    assert len(json.loads(proc.stdout)["results"]) == 4
    # a file is replaced atomically; a failed export leaves neither a file nor a .tmp
    assert_clean(cli("store", "--store", "s", "export", "--bundle", "b.zip", cwd=tmp_path))
    assert zipfile.ZipFile(tmp_path / "b.zip").testzip() is None
    damaged = tmp_path / "d"
    damage_middle(small_store(damaged, runs=30, models=("m0", "m1", "m2")))
    for flag in ("--csv", "--json", "--bundle"):
        assert_refused(cli("store", "--store", damaged, "export", flag, "fail.out", cwd=tmp_path))
    assert not (tmp_path / "fail.out").exists() and not leftovers(tmp_path)
    assert snapshot(tmp_path / "s") == before
