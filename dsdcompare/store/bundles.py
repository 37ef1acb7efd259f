"""Bundles: one ``.zip`` holding a consistent copy of the database, its images and a manifest
with the sha256 of every file, so a store travels (a GPU run shown on the CPU-only demo).

Opening one extracts it to a private temporary folder and checks everything before use. A bundle
may come from anyone (the demo takes uploads), so: only our own member names, stored or deflated
and unencrypted; what it extracts to is capped by a multiple of its own size and an absolute
limit, counted while streaming; the database is extracted first and its schema checked
structurally (:func:`dsdcompare.store.guard.check_structure`) before any query; each image's size
in the zip must equal the size its database row records, and that size must be possible for a
PNG of the recorded width and height; every file must match its sha256 in the manifest. Any
failure is a :class:`StoreError` naming the bundle, and the temporary folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import zipfile
import zlib
from pathlib import Path

from .. import __version__
from ..limits import SIZE
from .common import DB_NAME, StoreError, now, sha256_file
from .guard import UNTRUSTED_STATEMENT_S, damage, translated
from .images import IMAGE_PATH, checked_path
from .schema import SCHEMA_VERSION, connect, inspect, migrate
from .targets import STDOUT, check_target, writing

#: Bundle format written by :meth:`Store.export_bundle` (its manifest says which).
BUNDLE_FORMAT = "dsdcompare-bundle"
BUNDLE_VERSION = 1
#: Most bytes a bundle may extract to, whatever its size (bundles can be uploaded on the demo).
MAX_BUNDLE_BYTES = 20 * 2**30
#: Most a bundle may extract to, as a multiple of its own size: PNGs are stored as they are and a
#: database deflates a few times over, so a real bundle stays far below this; a zip bomb does not.
MAX_EXPANSION = 100
#: What any bundle may extract to whatever that ratio (a nearly empty one compresses well).
MIN_EXTRACT_BYTES = 64 * 2**20
#: Most bytes ``manifest.json`` may have (it is read into memory; about 150 bytes an image).
MAX_MANIFEST_BYTES = 64 * 2**20
_MANIFEST = "manifest.json"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# what reading a broken member raises: bad CRC, truncated or invalid deflate data, and the like
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError,
                    RuntimeError, RecursionError, OverflowError)


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
    database (an older schema is migrated in the extracted copy first). Its statements are
    time-limited: the database came from anyone."""
    db, version = extract_bundle(bundle, dest)
    with translated(bundle):
        if version < SCHEMA_VERSION:  # a bundle from an older dsdcompare: migrate the copy
            conn = connect(db, readonly=False)
            try:
                migrate(conn, bundle)
            finally:
                conn.close()
        conn = connect(db, readonly=True, time_limit_s=UNTRUSTED_STATEMENT_S)
        try:
            problem = damage(conn)
            if problem:
                raise StoreError(f"{bundle}: its database is damaged ({problem}); export it again")
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


def extract_bundle(bundle: Path, dest: Path) -> tuple[Path, int]:
    """Extract and verify a bundle into ``dest``; return the database path there and its schema
    version (see the module docstring for every check)."""
    try:
        zf = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError, *_ZIP_READ_ERRORS) as err:
        raise _invalid(bundle, f"not a readable zip file ({err})") from None
    with zf:
        try:
            return _extract(bundle, zf, dest)
        except StoreError:
            raise
        except OSError as err:  # reading the zip or writing the temporary folder
            raise StoreError(f"{bundle} cannot be extracted to {dest.parent} ({err.strerror or err}"
                             f"); free space there or export the bundle again") from None
        except _ZIP_READ_ERRORS as err:
            raise _invalid(bundle, f"a member cannot be read ({type(err).__name__}: "
                                   f"{str(err)[:200]})") from None


class _Budget:
    """Bytes a bundle may still extract to: checked against what the zip declares before
    anything is written, and counted again while streaming (declared sizes can lie)."""

    def __init__(self, bundle: Path, dest: Path, infos: list[zipfile.ZipInfo]):
        self.bundle = bundle
        ratio_cap = max(MIN_EXTRACT_BYTES, MAX_EXPANSION * bundle.stat().st_size)
        self.cap = min(MAX_BUNDLE_BYTES, ratio_cap)
        self.used = 0
        size = sum(i.file_size for i in infos)
        free = shutil.disk_usage(dest).free
        if size > min(self.cap, free):
            raise StoreError(f"{bundle} would take {size / 2**30:.1f} GiB once extracted (limit "
                             f"{self.cap / 2**30:.1f} GiB for a bundle of its size, "
                             f"{free / 2**30:.1f} GiB free in {dest.parent}); free space or "
                             f"bundle fewer runs (--run)")

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise _invalid(self.bundle, f"it extracts to more than {self.cap} bytes, more than "
                                        f"its members declare")


def _extract(bundle: Path, zf: zipfile.ZipFile, dest: Path) -> tuple[Path, int]:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    _check_members(bundle, infos)
    budget = _Budget(bundle, dest, infos)
    by_name = {i.filename: i for i in infos}
    expected = _read_manifest(bundle, zf, by_name[_MANIFEST], list(by_name))
    # 1. The database, then its schema, before anything it says is believed
    _extract_checked(bundle, zf, by_name[DB_NAME], dest, expected, budget)
    db = dest / DB_NAME
    version = inspect(db, label=bundle)
    # 2. Each image's size against its row, before the image is extracted
    images = [i for name, i in by_name.items() if name.startswith("images/")]
    _check_image_sizes(bundle, db, dest, images)
    for info in images:
        _extract_checked(bundle, zf, info, dest, expected, budget)
    return db, version


def _check_members(bundle: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse anything but our own names, stored or deflated, unencrypted."""
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _invalid(bundle, "it holds the same file twice")
    for info in infos:  # only our own names: no ../, absolute paths or links
        name = info.filename
        if name not in (_MANIFEST, DB_NAME) and not IMAGE_PATH.fullmatch(name):
            raise _invalid(bundle, f"unexpected member {name!r}")
        if info.flag_bits & 0x1:
            raise _invalid(bundle, f"{name} is encrypted (a password-protected zip); export "
                                   f"it without a password")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _invalid(bundle, f"{name} uses compression method {info.compress_type}; "
                                   f"bundles use stored or deflated members")
    if _MANIFEST not in names or DB_NAME not in names:
        raise _invalid(bundle, "manifest.json or results.sqlite is missing")


def _read_manifest(bundle: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                   names: list[str]) -> dict[str, str]:
    """The manifest's sha256 of every member but itself, checked against the members."""
    if info.file_size > MAX_MANIFEST_BYTES:
        raise _invalid(bundle, f"manifest.json is larger than {MAX_MANIFEST_BYTES} bytes")
    with zf.open(info) as src:
        data = src.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = json.loads(data[:MAX_MANIFEST_BYTES])
    except RecursionError:
        raise _invalid(bundle, "manifest.json is nested too deeply to be a manifest") from None
    except ValueError as err:
        raise _invalid(bundle, f"manifest.json is not JSON ({str(err)[:200]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _invalid(bundle, "its manifest does not say format 'dsdcompare-bundle'")
    if not isinstance(manifest.get("bundle_version"), int) \
            or manifest["bundle_version"] > BUNDLE_VERSION:
        raise StoreError(f"{bundle} was written by a newer dsdcompare (bundle format "
                         f"v{str(manifest.get('bundle_version'))[:20]}); upgrade dsdcompare to "
                         f"open it")
    listed = manifest.get("images")
    database = manifest.get("database")
    if not isinstance(listed, dict) or not isinstance(database, dict) \
            or not all(isinstance(v, str) for v in (*listed.values(), database.get("sha256"))):
        raise _invalid(bundle, "its manifest lacks the sha256 of the database or of the images")
    images = {n for n in names if n.startswith("images/")}
    if images != set(listed):
        extra = sorted(images ^ set(listed))
        raise _invalid(bundle, f"manifest and files disagree (first: {extra[0][:100]})")
    return {DB_NAME: database["sha256"], **listed}


def png_size_bound(width: int, height: int) -> int:
    """Most bytes a PNG of ``width`` x ``height`` can take as dsdcompare writes them (even
    uncompressed, 16-bit RGBA), with room for headers and block overheads."""
    raw = height * (1 + 8 * width)
    return raw + raw // 1000 + 4096


def _check_image_sizes(bundle: Path, db: Path, dest: Path, images: list[zipfile.ZipInfo]) -> None:
    """Each stored image path must be one of ours, and each image member's size the ``bytes``
    its database rows record, possible for a PNG of the recorded width and height (no 1 GiB
    "image", however well its checksum agrees)."""
    with translated(bundle):
        conn = connect(db, readonly=True, time_limit_s=UNTRUSTED_STATEMENT_S)
        try:
            rows = conn.execute("SELECT path, bytes, width, height FROM images").fetchall()
        finally:
            conn.close()
    recorded: dict[str, list[tuple]] = {}
    root_real = dest.resolve()
    for path, size, width, height in rows:
        if path not in recorded:
            checked_path(dest, root_real, path, bundle)  # ours, and inside the folder
        recorded.setdefault(path, []).append((size, width, height))
    for info in images:
        name = info.filename
        if name not in recorded:
            raise _invalid(bundle, f"{name} is not referred to by its database")
        for size, width, height in recorded[name]:
            if not all(isinstance(v, int) for v in (size, width, height)) \
                    or not (0 < width <= SIZE.hi and 0 < height <= SIZE.hi):
                raise _invalid(bundle, f"{name}: its database row records an impossible image "
                                       f"({width!r} x {height!r}, {size!r} bytes)")
            if size != info.file_size or size > png_size_bound(width, height):
                raise _invalid(bundle, f"{name} has {info.file_size} bytes but its database "
                                       f"records a {width} x {height} PNG of {size} bytes")


def _extract_checked(bundle: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path,
                     expected: dict[str, str], budget: _Budget) -> None:
    """Extract one member, counting and hashing it on the way; refuse it unless it is what its
    name says (a PNG named by its sha256, or our database) and the manifest agrees."""
    target = dest / info.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    first = b""
    with zf.open(info) as src, open(target, "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            budget.take(len(chunk))
            first = first or chunk[:16]
            digest.update(chunk)
            out.write(chunk)
    sha = digest.hexdigest()
    if sha != expected[info.filename]:
        raise _invalid(bundle, f"{info.filename} does not match its sha256 in the manifest")
    match = IMAGE_PATH.fullmatch(info.filename)
    if match and match.group(2) != sha:
        raise _invalid(bundle, f"{info.filename} is not named by its sha256")
    if match and not first.startswith(_PNG_MAGIC):
        raise _invalid(bundle, f"{info.filename} is not a PNG file")


# --- writing ------------------------------------------------------------------------------------


def export_bundle(store, path, *, run_ids=None) -> Path:
    """See :meth:`dsdcompare.store.Store.export_bundle`."""
    check_target(path, what="bundle")  # before the work: a bad target costs nothing
    with tempfile.TemporaryDirectory(prefix="dsdcompare-export-") as td:
        copy = Path(td) / DB_NAME
        rels, counts = _database_copy(store, copy, run_ids)
        manifest = _manifest(store, copy, rels, counts)
        # written beside the target and renamed into place (or copied to a stream)
        with writing(path, what="bundle") as tmp, zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(_MANIFEST, json.dumps(manifest, indent=1),
                        compress_type=zipfile.ZIP_DEFLATED)
            zf.write(copy, DB_NAME, compress_type=zipfile.ZIP_DEFLATED)
            for rel in rels:  # PNGs are compressed already
                zf.write(store._image_path(rel), rel, compress_type=zipfile.ZIP_STORED)
    return path if os.fspath(path) == STDOUT else Path(path)


def _database_copy(store, copy: Path, run_ids) -> tuple[list[str], dict]:
    """A consistent copy of the database at ``copy`` (SQLite's backup API, safe while others
    write), cut down to ``run_ids`` when given; its image paths and counts. A damaged store
    fails here, named, before anything is written."""
    dst = sqlite3.connect(copy)
    try:
        with store._translated():
            with store._lock:
                store._connection().backup(dst)
            problem = damage(dst)
            if problem:
                raise sqlite3.DatabaseError(f"database disk image is malformed: {problem}")
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
