"""Bundles: one ``.zip`` holding a consistent copy of the database, its images and a manifest
with the sha256 of every file, so a store travels (a GPU run shown on the CPU-only demo).
Opening one extracts it to a private temporary folder and checks every file before use; a bundle
may come from anyone, so only our own member names are accepted and its size is capped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import zipfile
from pathlib import Path

from .. import __version__
from .common import DB_NAME, StoreError, now, sha256_file, tmp_beside
from .images import IMAGE_PATH
from .schema import SCHEMA_VERSION, connect, inspect, migrate

#: Bundle format written by :meth:`Store.export_bundle` (its manifest says which).
BUNDLE_FORMAT = "dsdcompare-bundle"
BUNDLE_VERSION = 1
#: Most bytes a bundle may extract to (bundles can be uploaded on the demo: no zip bombs).
MAX_BUNDLE_BYTES = 20 * 2**30
_MANIFEST = "manifest.json"


def is_bundle(path: Path) -> bool:
    """Whether ``path`` names a bundle: a ``.zip`` (which must exist) or a file that is a zip."""
    if path.suffix.lower() == ".zip":
        if not path.is_file():
            raise StoreError(f"{path}: no such bundle file; check the path")
        return True
    if path.is_file():
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    return False


# --- opening ------------------------------------------------------------------------------------


def open_bundle(bundle: Path, dest: Path) -> sqlite3.Connection:
    """Extract and verify ``bundle`` into ``dest``; return a read-only connection to its
    database (an older schema is migrated in the extracted copy first)."""
    db = extract_bundle(bundle, dest)
    version = inspect(db, label=bundle)
    if version < SCHEMA_VERSION:  # a bundle from an older dsdcompare: migrate the copy
        conn = connect(db, readonly=False)
        try:
            migrate(conn, bundle)
        finally:
            conn.close()
    conn = connect(db, readonly=True)
    try:
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise StoreError(f"{bundle}: its database is damaged ({check}); export it again")
    except BaseException:
        conn.close()
        raise
    return conn


def check_images(store, bundle: Path) -> None:
    """Refuse a bundle whose database refers to an image file it does not hold."""
    missing = [rel for (rel,) in store._query("SELECT DISTINCT path FROM images")
               if not store._image_path(rel).is_file()]
    if missing:
        raise StoreError(f"{bundle}: the bundle lacks {len(missing)} image file(s) its "
                         f"database refers to (first: {missing[0]}). Export it again.")


def _invalid(bundle: Path, why: str) -> StoreError:
    return StoreError(f"{bundle} is not a valid dsdcompare bundle: {why}. Nothing was written "
                      f"outside a temporary folder; export the bundle again "
                      f"(python -m dsdcompare store export --bundle ...).")


def extract_bundle(bundle: Path, dest: Path) -> Path:
    """Extract and verify a bundle into ``dest``; return the database path there."""
    try:
        zf = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as err:
        raise _invalid(bundle, f"not a readable zip file ({err})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        _check_members(bundle, dest, infos)
        expected = _read_manifest(bundle, zf, [i.filename for i in infos])
        for info in infos:
            _extract_checked(bundle, zf, info, dest, expected)
    return dest / DB_NAME


def _check_members(bundle: Path, dest: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a bundle too large to extract, or holding anything but our own names."""
    names = [i.filename for i in infos]
    size = sum(i.file_size for i in infos)  # zipfile never extracts more than declared
    free = shutil.disk_usage(dest).free
    if size > min(MAX_BUNDLE_BYTES, free):
        raise StoreError(f"{bundle} would take {size / 2**30:.1f} GiB once extracted (limit "
                         f"{MAX_BUNDLE_BYTES / 2**30:.0f} GiB, {free / 2**30:.1f} GiB free "
                         f"in {dest.parent}); free space or bundle fewer runs (--run)")
    if len(set(names)) != len(names):
        raise _invalid(bundle, "it holds the same file twice")
    for name in names:  # only our own names: no ../, absolute paths or links
        if name not in (_MANIFEST, DB_NAME) and not IMAGE_PATH.fullmatch(name):
            raise _invalid(bundle, f"unexpected member {name!r}")
    if _MANIFEST not in names or DB_NAME not in names:
        raise _invalid(bundle, "manifest.json or results.sqlite is missing")


def _read_manifest(bundle: Path, zf: zipfile.ZipFile, names: list[str]) -> dict[str, str]:
    """The manifest's sha256 of every member but itself, checked against the members."""
    try:
        manifest = json.loads(zf.read(_MANIFEST))
    except ValueError as err:
        raise _invalid(bundle, f"manifest.json is not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _invalid(bundle, "its manifest does not say format 'dsdcompare-bundle'")
    if not isinstance(manifest.get("bundle_version"), int) \
            or manifest["bundle_version"] > BUNDLE_VERSION:
        raise StoreError(f"{bundle} was written by a newer dsdcompare (bundle format "
                         f"v{manifest.get('bundle_version')}); upgrade dsdcompare to open it")
    listed = manifest.get("images")
    if not isinstance(listed, dict):
        raise _invalid(bundle, "its manifest has no image list")
    images = {n for n in names if n.startswith("images/")}
    if images != set(listed):
        extra = sorted(images ^ set(listed))
        raise _invalid(bundle, f"manifest and files disagree (first: {extra[0]})")
    return {DB_NAME: (manifest.get("database") or {}).get("sha256"), **listed}


def _extract_checked(bundle: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path,
                     expected: dict[str, str]) -> None:
    """Extract one member, hashing it on the way; refuse it unless the manifest agrees."""
    target = dest / info.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with zf.open(info) as src, open(target, "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if info.filename == _MANIFEST:
        return
    sha = digest.hexdigest()
    if sha != expected[info.filename]:
        raise _invalid(bundle, f"{info.filename} does not match its sha256 in the manifest")
    match = IMAGE_PATH.fullmatch(info.filename)
    if match and match.group(2) != sha:
        raise _invalid(bundle, f"{info.filename} is not named by its sha256")


# --- writing ------------------------------------------------------------------------------------


def export_bundle(store, path, *, run_ids=None) -> Path:
    """See :meth:`dsdcompare.store.Store.export_bundle`."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="dsdcompare-export-") as td:
        copy = Path(td) / DB_NAME
        rels, counts = _database_copy(store, copy, run_ids)
        manifest = _manifest(store, copy, rels, counts)
        # the zip is written beside the target and renamed into place
        tmp = tmp_beside(path)
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(_MANIFEST, json.dumps(manifest, indent=1),
                        compress_type=zipfile.ZIP_DEFLATED)
            zf.write(copy, DB_NAME, compress_type=zipfile.ZIP_DEFLATED)
            for rel in rels:  # PNGs are compressed already
                zf.write(store._image_path(rel), rel, compress_type=zipfile.ZIP_STORED)
        os.replace(tmp, path)
    return path


def _database_copy(store, copy: Path, run_ids) -> tuple[list[str], dict]:
    """A consistent copy of the database at ``copy`` (SQLite's backup API, safe while others
    write), cut down to ``run_ids`` when given; its image paths and counts."""
    dst = sqlite3.connect(copy)
    try:
        with store._lock:
            store._connection().backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # so the copy opens read-only anywhere
        if run_ids is not None:
            keep = sorted({int(i) for i in run_ids})
            marks = ",".join("?" * len(keep)) or "NULL"
            dst.execute("PRAGMA foreign_keys = ON")
            dst.execute(f"DELETE FROM runs WHERE id NOT IN ({marks})", keep)
            dst.commit()
        dst.execute("VACUUM")
        rels = sorted({rel for (rel,) in dst.execute("SELECT path FROM images")})
        counts = {"runs": dst.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                  "results": dst.execute("SELECT COUNT(*) FROM results").fetchone()[0],
                  "images": len(rels)}
    finally:
        dst.close()
    return rels, counts


def _manifest(store, copy: Path, rels: list[str], counts: dict) -> dict:
    """The manifest: the sha256 of every file, checked when the bundle is opened."""
    images = {}
    for rel in rels:
        src = store._image_path(rel)
        if not src.is_file():
            raise StoreError(f"{store.path}: image file missing: {rel}; cannot bundle "
                             f"(run verify() to list every problem)")
        images[rel] = sha256_file(src)
        if images[rel] != IMAGE_PATH.fullmatch(rel).group(2):
            raise StoreError(f"{store.path}: image file damaged (sha256 differs): {rel}")
    return {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION,
            "schema": SCHEMA_VERSION, "dsdcompare": __version__,
            "created_at": now(), "source_store": store.path.name, "counts": counts,
            "database": {"path": DB_NAME, "sha256": sha256_file(copy)},
            "images": images}
