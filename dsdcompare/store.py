"""The results store: an embedded SQLite database plus content-hashed PNG files beside it.

Nothing that finished may be lost, so every Result is written in its own transaction as soon as
it is complete (PNG files first, then the row that points at them), the database runs in WAL mode
with ``synchronous=FULL``, and writers take the write lock up front (``BEGIN IMMEDIATE``) with a
long busy timeout, so a dashboard and a CLI run can write at once. A writer killed half-way leaves
at worst an unreferenced image file (``store check`` counts them, ``store prune`` removes them);
every committed result is whole.

Layout of a store folder (``root``)::

    results.sqlite            the database (plus -wal / -shm while open)
    images/ab/abcdef....png   every image, named by the sha256 of its PNG bytes

Opening:

- ``Store()`` opens ``default_store_path()`` ($DSDCOMPARE_STORE, else
  ``./dsdcompare-results/results.sqlite``); ``Store(path)`` a ``.sqlite`` file (created when
  missing) or a folder holding ``results.sqlite``; ``Store(path, readonly=True)`` never writes.
- ``Store("bundle.zip")``: a results bundle (see :meth:`Store.export_bundle`), always read-only.
  It is extracted to a temporary folder and every file is checked against the manifest's sha256
  before use; the folder is removed on :meth:`Store.close`.
- A file that is not a dsdcompare database, or one written by a newer dsdcompare (newer schema),
  raises :class:`StoreError` and is left untouched. An older schema is migrated in one
  transaction, after a backup copy (``results.v<N>-backup.sqlite``) is made.

Writing and resuming (what the CLI, bench and the dashboard do)::

    todo = store.pending(request, models, source)          # models not yet done for this request
    run_id = store.start_run(request, source=source, resume=True)   # reuses an interrupted run
    compare(request, todo, source=source, on_result=lambda r: store.add_result(run_id, r))
    store.finish_run(run_id)

Merging: :meth:`Store.merge` copies another store's (or bundle's) runs, results and images in,
keeping their times and records and skipping what is already there; it combines the per-node
stores of a multi-node ``bench`` (``python -m dsdcompare store --store all/ merge node0/ node1/``).

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`):

- ``runs``: one row per comparison: the Request (``prompt, negative_prompt, seed, steps, guidance,
  size`` (NULL: native size per model), ``images_per_prompt, repeats, warmup, scheduler``), the
  whole Request as JSON (``request``), ``request_key`` (v2: sha256 of the fields that define "the
  same request"), ``source`` (NULL: each model's own), ``note``, ``dsdcompare_version``,
  ``created_at`` and ``finished_at`` (UTC ISO 8601; NULL: interrupted or still running).
- ``results``: one row per model per run: flat columns for queries (listed below) and ``record``,
  the full ``Result.to_dict()`` as JSON (timing with every repeat, score with per-image values,
  env, options, traceback): nothing is lost.
- ``images``: ``(result_id, idx)`` → ``sha256, path`` (relative, ``images/ab/<sha256>.png``),
  ``width, height, bytes``. Paths are checked on every read: nothing can point outside ``root``.

Schema history: v1 (runs, results, images); v2 adds ``runs.request_key`` and its index, backfilled
from the stored requests (what :meth:`Store.completed` and resuming need).

Columns of :meth:`Store.results` (the dashboard's charts and history pages read these; the names
are stable, new columns are only ever appended) — :data:`RESULT_COLUMNS`:

==================== ================================================================================
run_id, result_id    ids of the run and of this result
created_at           when the result was stored (pandas datetime, UTC)
model, model_name    registry key and display name
success, error       False: see error (no images, no timing)
source               weight source: hub | local | tiny | arch
standin, toy         random stand-in weights (images are noise) / toy model on synthetic shapes
teacher              registry key of the model's teacher (None for teachers)
repo, revision       hub repo id or local directory; hub revision (None: default branch)
prompt ... scheduler prompt, negative_prompt, seed, steps, guidance, size (the request's policy:
                     NaN = native), width, height, images_per_prompt, repeats, warmup, scheduler
dtype, device        fp32 | fp16 | bf16; cpu | cuda | mps
device_name          e.g. "NVIDIA H100 80GB HBM3" or the CPU model
variant, latents_sha weight variant loaded; fingerprint of the initial latents (equal in a pair)
load_s, load_cached  pipeline load seconds (NaN when it came from the cache); cached flag
first_call_s         the warm-up call (seconds)
median_s, min_s,     steady-state latency of one call (seconds): median, fastest, slowest
max_s
text_s, denoise_s,   median seconds per stage; they add up to median_s
decode_s, safety_s,
other_s
its_per_s            denoising iterations per second
peak_memory_bytes,   peak memory during the timed calls and what was measured
memory_kind
clip_score           Score.value (NaN: not scored)
score_backend,       provenance: scores are comparable only with equal checkpoint and scale
score_checkpoint,
score_scale,
score_standin
score_error          why there is no score
psnr, ssim,          fidelity to the teacher's image (latent-matched pairs), and which teacher
fidelity_against
flags                per-image problems joined with "; " ("" when none)
n_images             images stored
image_paths          list of absolute paths of the PNG files, in order
image_sha256         list of the PNGs' sha256, in order
dsdcompare_version,  versions that produced the result
torch_version,
diffusers_version,
transformers_version
run_note             the run's note
==================== ================================================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time as clock
import urllib.parse
import weakref
import zipfile
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

from . import __version__

#: Setting that names the default store (a .sqlite file, a folder, or a bundle .zip).
STORE_ENV = "DSDCOMPARE_STORE"
#: Default store, relative to the working directory, when $DSDCOMPARE_STORE is not set.
DEFAULT_STORE = Path("dsdcompare-results") / "results.sqlite"
#: Database file name inside a store folder and inside a bundle.
DB_NAME = "results.sqlite"
#: ``PRAGMA application_id`` of every dsdcompare database ("dsdc" in ASCII).
APPLICATION_ID = 0x64736463
#: Current schema version (``PRAGMA user_version``).
SCHEMA_VERSION = 2
#: Bundle format written by :meth:`Store.export_bundle` (its manifest says which).
BUNDLE_FORMAT = "dsdcompare-bundle"
BUNDLE_VERSION = 1
#: Most bytes a bundle may extract to (bundles can be uploaded on the demo: no zip bombs).
MAX_BUNDLE_BYTES = 20 * 2**30
#: Seconds a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 60.0

_SQLITE_MAGIC = b"SQLite format 3\x00"
_IMAGE_PATH = re.compile(r"images/([0-9a-f]{2})/([0-9a-f]{64})\.png")
_REQUEST_KEY_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "size",
                       "images_per_prompt", "scheduler")

RESULT_COLUMNS = (
    "run_id", "result_id", "created_at", "model", "model_name", "success", "error", "source",
    "standin", "toy", "teacher", "repo", "revision", "prompt", "negative_prompt", "seed", "steps",
    "guidance", "size", "width", "height", "images_per_prompt", "repeats", "warmup", "scheduler",
    "dtype", "device", "device_name", "variant", "latents_sha", "load_s", "load_cached",
    "first_call_s", "median_s", "min_s", "max_s", "text_s", "denoise_s", "decode_s", "safety_s",
    "other_s", "its_per_s", "peak_memory_bytes", "memory_kind", "clip_score", "score_backend",
    "score_checkpoint", "score_scale", "score_standin", "score_error", "psnr", "ssim",
    "fidelity_against", "flags", "n_images", "image_paths", "image_sha256", "dsdcompare_version",
    "torch_version", "diffusers_version", "transformers_version", "run_note",
)

#: Flat columns of the ``results`` table, derived from the Result record (see :func:`flat_record`).
_FLAT_COLUMNS = (
    "model", "model_name", "success", "error", "source", "standin", "toy", "teacher", "repo",
    "revision", "prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height",
    "images_per_prompt", "scheduler", "dtype", "device", "device_name", "variant", "latents_sha",
    "load_s", "load_cached", "first_call_s", "median_s", "min_s", "max_s", "text_s", "denoise_s",
    "decode_s", "safety_s", "other_s", "its_per_s", "peak_memory_bytes", "memory_kind", "repeats",
    "warmup", "clip_score", "score_backend", "score_checkpoint", "score_scale", "score_standin",
    "score_error", "psnr", "ssim", "fidelity_against", "flags", "dsdcompare_version",
    "torch_version", "diffusers_version", "transformers_version",
)

#: Columns :meth:`Store.aggregates` groups by: a latency is only comparable with equal settings.
AGGREGATE_KEYS = ("model", "source", "steps", "width", "height", "dtype", "device_name")


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message names the file and the remedy."""


class DuplicateResultError(StoreError):
    """The run already holds a successful result for this model (measure again in a new run)."""


def default_store_path() -> Path:
    """The default store: ``$DSDCOMPARE_STORE`` when set, else ``./dsdcompare-results/results.sqlite``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_STORE


def request_key(request) -> str:
    """sha256 of the fields that make two requests "the same" for resuming and skipping.

    ``prompt, negative_prompt, seed, steps, guidance, size, images_per_prompt, scheduler``;
    repeats and warm-up change how a model is measured, not what it generates, so they are left out.
    """
    fields = _request_dict(request)
    ident = [fields.get(name) for name in _REQUEST_KEY_FIELDS]
    ident[4] = float(ident[4]) if ident[4] is not None else None  # 7 and 7.0 are one guidance
    return hashlib.sha256(json.dumps(ident).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------

_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    prompt TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    guidance REAL NOT NULL,
    size INTEGER,
    images_per_prompt INTEGER NOT NULL DEFAULT 1,
    repeats INTEGER,
    warmup INTEGER,
    scheduler TEXT,
    source TEXT,
    note TEXT NOT NULL DEFAULT '',
    dsdcompare_version TEXT,
    request TEXT NOT NULL
);
CREATE INDEX runs_prompt_seed ON runs (prompt, seed);
CREATE INDEX runs_created ON runs (created_at);
CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    model TEXT NOT NULL, model_name TEXT, success INTEGER NOT NULL, error TEXT, source TEXT,
    standin INTEGER, toy INTEGER, teacher TEXT, repo TEXT, revision TEXT,
    prompt TEXT, negative_prompt TEXT, seed INTEGER, steps INTEGER, guidance REAL,
    width INTEGER, height INTEGER, images_per_prompt INTEGER, scheduler TEXT,
    dtype TEXT, device TEXT, device_name TEXT, variant TEXT, latents_sha TEXT,
    load_s REAL, load_cached INTEGER, first_call_s REAL, median_s REAL, min_s REAL, max_s REAL,
    text_s REAL, denoise_s REAL, decode_s REAL, safety_s REAL, other_s REAL, its_per_s REAL,
    peak_memory_bytes INTEGER, memory_kind TEXT, repeats INTEGER, warmup INTEGER,
    clip_score REAL, score_backend TEXT, score_checkpoint TEXT, score_scale TEXT,
    score_standin INTEGER, score_error TEXT,
    psnr REAL, ssim REAL, fidelity_against TEXT,
    flags TEXT NOT NULL DEFAULT '[]',
    dsdcompare_version TEXT, torch_version TEXT, diffusers_version TEXT, transformers_version TEXT,
    record TEXT NOT NULL
);
CREATE INDEX results_run ON results (run_id);
CREATE INDEX results_model ON results (model, source);
CREATE TABLE images (
    result_id INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    bytes INTEGER,
    PRIMARY KEY (result_id, idx)
);
"""


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    # statement by statement: executescript() would COMMIT the migration's transaction
    for statement in _split_sql(_V1):
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    """v2: ``runs.request_key`` (what "the same request" means), backfilled from each run's request."""
    conn.execute("ALTER TABLE runs ADD COLUMN request_key TEXT")
    rows = conn.execute("SELECT id, prompt, negative_prompt, seed, steps, guidance, size, "
                        "images_per_prompt, scheduler FROM runs").fetchall()
    for row in rows:
        fields = dict(zip(("prompt", "negative_prompt", "seed", "steps", "guidance", "size",
                           "images_per_prompt", "scheduler"), row[1:]))
        conn.execute("UPDATE runs SET request_key = ? WHERE id = ?", (request_key(fields), row[0]))
    conn.execute("CREATE INDEX runs_request_key ON runs (request_key, source)")


#: version -> the step that brings a database from version-1 to it. Every new database goes
#: through all of them, so the migration path is exercised on every fresh store.
MIGRATIONS = {1: _migrate_to_v1, 2: _migrate_to_v2}


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class Store:
    """Runs, Results and their images in one SQLite database plus PNG files (see module doc).

    Thread-safe (one connection guarded by a lock, so one Store may be shared by Streamlit
    sessions) and multi-process safe (SQLite WAL, ``BEGIN IMMEDIATE`` writes).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False):
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._tmpdir: Path | None = None
        self._root_real: Path | None = None  # root with symlinks resolved (for path checks)
        self._cleanup = None
        self.bundle: Path | None = None  # the bundle .zip this store was opened from, if any
        given = Path(path).expanduser() if path is not None else default_store_path()
        if given.is_dir() or str(path or "").endswith(("/", os.sep)):  # "new/" is a folder too
            given = given / DB_NAME
        if _is_bundle(given):
            self.readonly = True
            self.bundle = given.resolve()
            self._open_bundle(self.bundle)  # sets path and root (a temporary folder)
        else:
            self.readonly = bool(readonly)
            self.path = given.resolve() if given.exists() else given.absolute()
            self.root = self.path.parent  # the folder holding the database and images/
            self._conn = self._open_database(self.path, readonly=self.readonly)

    def __repr__(self) -> str:
        mode = "bundle" if self.bundle else ("read-only" if self.readonly else "read-write")
        return f"Store({str(self.bundle or self.path)!r}, {mode})"

    # --- opening ------------------------------------------------------------------------------

    def _open_database(self, path: Path, *, readonly: bool) -> sqlite3.Connection:
        """Check ``path`` without writing, then connect (and migrate when read-write)."""
        # 1. Check the file: anything that is not ours, or newer, is refused before any write
        version = _inspect(path) if path.exists() and path.stat().st_size > 0 else 0
        if readonly:
            if not path.exists():
                raise StoreError(f"{path}: no results database there. Check the path, or run "
                                 f"`python -m dsdcompare compare ...` to create one.")
            if version < SCHEMA_VERSION:
                raise StoreError(f"{path}: schema v{version} is older than this dsdcompare's "
                                 f"v{SCHEMA_VERSION} and cannot be migrated read-only. Open it "
                                 f"once read-write to migrate it (a backup is kept).")
            return _connect(path, readonly=True)
        # 2. Connect read-write, WAL, and bring the schema up to date in one transaction
        path.parent.mkdir(parents=True, exist_ok=True)
        if 0 < version < SCHEMA_VERSION:
            _backup_before_migration(path, version)
        conn = _connect(path, readonly=False)
        try:
            mode = _switch_to_wal(conn)
            if mode.lower() != "wal":
                raise StoreError(f"{path}: SQLite could not switch to WAL mode (got {mode!r}); "
                                 f"is the folder on a network file system? Use a local disk.")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_bundle(self, bundle: Path) -> None:
        """Extract ``bundle`` to a private temporary folder, verify it, and open it read-only."""
        tmp = Path(tempfile.mkdtemp(prefix="dsdcompare-bundle-"))
        self._tmpdir = tmp
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, True)
        self.path, self.root = tmp / DB_NAME, tmp
        try:
            db = _extract_bundle(bundle, tmp)
            version = _inspect(db, label=bundle)
            if version < SCHEMA_VERSION:  # a bundle from an older dsdcompare: migrate the copy
                conn = _connect(db, readonly=False)
                try:
                    _migrate(conn, bundle)
                finally:
                    conn.close()
            self._conn = _connect(db, readonly=True)
            (check,) = self._conn.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise StoreError(f"{bundle}: its database is damaged ({check}); export it again")
            self._check_bundle_images(bundle)
        except BaseException:
            self.close()
            raise

    def _check_bundle_images(self, bundle: Path) -> None:
        missing = [rel for (rel,) in self._query("SELECT DISTINCT path FROM images")
                   if not self._image_path(rel).is_file()]
        if missing:
            raise StoreError(f"{bundle}: the bundle lacks {len(missing)} image file(s) its "
                             f"database refers to (first: {missing[0]}). Export it again.")

    # --- writing ------------------------------------------------------------------------------

    def start_run(self, request, *, source: str | None = None, note: str = "",
                  resume: bool = False) -> int:
        """Record a new run of ``request`` (a :class:`dsdcompare.engine.Request`); return its id.

        ``source`` is the weight source of every model (None: each model's own). With
        ``resume=True`` the newest unfinished run of the same request and source (one whose
        writer was killed) is returned instead, if there is one, so a rerun completes it.
        """
        fields = _request_dict(request)
        missing = [f for f in ("prompt", "seed", "steps", "guidance") if fields.get(f) is None]
        if missing:
            raise StoreError(f"start_run(): the request lacks {', '.join(missing)}; give a "
                             f"dsdcompare Request")
        key = request_key(fields)
        with self._transaction() as conn:
            if resume:
                row = conn.execute(
                    "SELECT id FROM runs WHERE request_key = ? AND source IS ? AND finished_at "
                    "IS NULL ORDER BY id DESC LIMIT 1", (key, source)).fetchone()
                if row:
                    return int(row[0])
            cur = conn.execute(
                "INSERT INTO runs (created_at, prompt, negative_prompt, seed, steps, guidance, size,"
                " images_per_prompt, repeats, warmup, scheduler, source, note, dsdcompare_version,"
                " request, request_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (_now(), fields["prompt"], fields.get("negative_prompt") or "", fields["seed"],
                 fields["steps"], float(fields["guidance"]), fields.get("size"),
                 fields.get("images_per_prompt", 1), fields.get("repeats"), fields.get("warmup"),
                 fields.get("scheduler"), source, note, __version__, _dumps(fields), key))
            return int(cur.lastrowid)

    def add_result(self, run_id: int, result) -> int:
        """Store one :class:`dsdcompare.engine.Result` and its images; return the result id.

        The PNG files are written first (content-hashed, atomically renamed into place), then
        the row and its image rows in one transaction: a writer killed at any point leaves
        either the whole result or none of it (plus, at worst, an unreferenced image file).
        Raises :class:`DuplicateResultError` when the run already holds a successful result
        for the model.
        """
        self._check_writable()
        record = result_record_dict(result)
        # 1. Image files, outside the transaction (slow I/O must not hold the write lock)
        stored = [self._write_image(image) for image in (getattr(result, "images", None) or [])]
        # 2. Row and image rows in one transaction
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"{self.path}: there is no run {run_id}; call start_run() first")
            if record.get("success") and conn.execute(
                    "SELECT 1 FROM results WHERE run_id = ? AND model = ? AND success = 1",
                    (run_id, record.get("model"))).fetchone():
                raise DuplicateResultError(
                    f"{self.path}: run {run_id} already has a successful result for "
                    f"{record.get('model')!r}; start a new run to measure it again")
            self._restore_missing(stored)
            return self._insert_result(conn, run_id, record, stored)

    def _insert_result(self, conn: sqlite3.Connection, run_id: int, record: dict,
                       stored: list[dict]) -> int:
        flat = flat_record(record)
        names = ("run_id", "created_at", *_FLAT_COLUMNS, "record")
        values = (run_id, _now(), *(flat[c] for c in _FLAT_COLUMNS), _dumps(record))
        cur = conn.execute(f"INSERT INTO results ({', '.join(names)}) "
                           f"VALUES ({', '.join('?' * len(names))})", values)
        result_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO images (result_id, idx, sha256, path, width, height, bytes) "
            "VALUES (?,?,?,?,?,?,?)",
            [(result_id, i, s["sha256"], s["path"], s["width"], s["height"], s["bytes"])
             for i, s in enumerate(stored)])
        return result_id

    def finish_run(self, run_id: int) -> None:
        """Mark the run finished (unfinished runs are interrupted ones, or still running)."""
        with self._transaction() as conn:
            cur = conn.execute("UPDATE runs SET finished_at = ? WHERE id = ? AND finished_at IS "
                               "NULL", (_now(), run_id))
            if cur.rowcount == 0 and conn.execute("SELECT 1 FROM runs WHERE id = ?",
                                                  (run_id,)).fetchone() is None:
                raise StoreError(f"{self.path}: there is no run {run_id}")

    def save(self, request, results: Iterable, *, source: str | None = None, note: str = "",
             resume: bool = False) -> int:
        """Start a run, add every Result (each in its own transaction), finish it; return its id."""
        run_id = self.start_run(request, source=source, note=note, resume=resume)
        for result in results:
            self.add_result(run_id, result)
        self.finish_run(run_id)
        return run_id

    def update_fidelity(self, result_id: int, fidelity: dict | None) -> None:
        """Set a stored result's teacher fidelity (PSNR/SSIM), e.g. when its teacher ran later."""
        with self._transaction() as conn:
            row = conn.execute("SELECT record FROM results WHERE id = ?", (result_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: there is no result {result_id}")
            record = _loads(row[0])
            record["fidelity"] = fidelity
            flat = flat_record(record)
            conn.execute("UPDATE results SET record = ?, psnr = ?, ssim = ?, fidelity_against = ?"
                         " WHERE id = ?", (_dumps(record), flat["psnr"], flat["ssim"],
                                           flat["fidelity_against"], result_id))

    def _write_image(self, image) -> dict:
        """Write one image as PNG under ``images/`` named by its sha256; return its image row."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            import numpy as np

            image = Image.fromarray(np.asarray(image))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        sha, rel = self._put_image_bytes(data)
        return {"sha256": sha, "path": rel, "width": image.width, "height": image.height,
                "bytes": len(data), "data": data}

    def _restore_missing(self, stored: list[dict]) -> None:
        """Inside the write transaction, just before the rows that point at them are inserted:
        write again any file :meth:`prune` removed since it was written (``prune`` deletes only
        while holding the write lock, so once this has run the files stay until commit)."""
        for item in stored:
            if not (self.root / item["path"]).is_file():
                self._put_image_bytes(item["data"])

    def _put_image_bytes(self, data: bytes) -> tuple[str, str]:
        """Write PNG bytes as ``images/ab/<sha256>.png`` (fsynced, renamed into place; kept
        when already there); return ``(sha256, relative path)``."""
        sha = hashlib.sha256(data).hexdigest()
        rel = f"images/{sha[:2]}/{sha}.png"
        target = self.root / rel
        if not (target.is_file() and target.stat().st_size == len(data)):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{sha[:16]}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())  # the row may only ever point at a whole file
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return sha, rel

    # --- merging ------------------------------------------------------------------------------

    def merge(self, other) -> dict:
        """Copy every run and result of ``other`` (a store path, folder, bundle .zip or an open
        :class:`Store`) that this store lacks, with its images; return what happened.

        This is how the per-node stores of a multi-node ``bench`` become one: ids are renumbered,
        everything else (created/finished times, notes, full records, images) is kept, so
        :meth:`completed` and resuming see the union. A run is the same run when its request key,
        source and ``created_at`` match, a result when its run, model and ``created_at`` match:
        merging twice adds nothing. Each run is copied in its own transaction, image files first
        (sha256-checked); a result whose image files are missing or damaged in ``other`` is
        skipped and reported in ``problems``, the rest is merged.

        Returns ``{"runs_added", "results_added", "results_present", "images_copied",
        "problems"}``.
        """
        self._check_writable()
        opened = not isinstance(other, Store)
        src = Store(other, readonly=True) if opened else other
        try:
            if src.path.resolve() == self.path.resolve():
                raise StoreError(f"{self.path}: cannot merge a store into itself")
            return self._merge_from(src)
        finally:
            if opened:
                src.close()

    def _merge_from(self, src: "Store") -> dict:
        label = src.bundle or src.path
        report = {"runs_added": 0, "results_added": 0, "results_present": 0,
                  "images_copied": 0, "problems": []}
        run_cols = [c for c in self._columns("runs") if c != "id"]
        res_cols = [c for c in self._columns("results") if c not in ("id", "run_id")]
        for run in src._query(f"SELECT id, {', '.join(run_cols)} FROM runs ORDER BY id"):
            src_run, fields = run[0], dict(zip(run_cols, run[1:]))
            results = src._query(f"SELECT id, {', '.join(res_cols)} FROM results WHERE run_id = ?"
                                 f" ORDER BY id", (src_run,))
            # 1. Image files first, outside the transaction (as add_result does)
            images: dict[int, list[dict]] = {}
            for row in results:
                try:
                    images[row[0]] = self._copy_images(src, row[0])
                except StoreError as err:
                    report["problems"].append(f"{label}: run {src_run}, result {row[0]} "
                                              f"({dict(zip(res_cols, row[1:]))['model']}) not "
                                              f"merged: {err}")
            # 2. The run and its new results in one transaction
            with self._transaction() as conn:
                found = conn.execute(
                    "SELECT id FROM runs WHERE request_key IS ? AND source IS ? AND created_at = ?",
                    (fields["request_key"], fields["source"], fields["created_at"])).fetchone()
                if found:
                    run_id = int(found[0])
                    if fields["finished_at"] is not None:
                        conn.execute("UPDATE runs SET finished_at = ? WHERE id = ? AND "
                                     "finished_at IS NULL", (fields["finished_at"], run_id))
                else:
                    cur = conn.execute(
                        f"INSERT INTO runs ({', '.join(run_cols)}) "
                        f"VALUES ({', '.join('?' * len(run_cols))})", run[1:])
                    run_id = int(cur.lastrowid)
                    report["runs_added"] += 1
                for row in results:
                    if row[0] not in images:
                        continue
                    values = dict(zip(res_cols, row[1:]))
                    if conn.execute("SELECT 1 FROM results WHERE run_id = ? AND model = ? AND "
                                    "created_at = ?", (run_id, values["model"],
                                                       values["created_at"])).fetchone():
                        report["results_present"] += 1
                        continue
                    cur = conn.execute(
                        f"INSERT INTO results (run_id, {', '.join(res_cols)}) "
                        f"VALUES (?, {', '.join('?' * len(res_cols))})", (run_id, *row[1:]))
                    result_id = int(cur.lastrowid)
                    self._restore_missing(images[row[0]])
                    conn.executemany(
                        "INSERT INTO images (result_id, idx, sha256, path, width, height, bytes)"
                        " VALUES (?,?,?,?,?,?,?)",
                        [(result_id, i["idx"], i["sha256"], i["path"], i["width"], i["height"],
                          i["bytes"]) for i in images[row[0]]])
                    report["results_added"] += 1
                    report["images_copied"] += len(images[row[0]])
        return report

    def _copy_images(self, src: "Store", result_id: int) -> list[dict]:
        """Copy one result's image files from ``src`` (sha256-checked); its image rows."""
        rows = src._query("SELECT idx, sha256, path, width, height, bytes FROM images WHERE "
                          "result_id = ? ORDER BY idx", (result_id,))
        out = []
        for idx, sha, rel, width, height, size in rows:
            path = src._image_path(rel)
            if not path.is_file():
                raise StoreError(f"image file missing: {rel}")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise StoreError(f"image file damaged (sha256 differs): {rel}")
            out.append({"idx": idx, "sha256": sha, "path": self._put_image_bytes(data)[1],
                        "width": width, "height": height, "bytes": size, "data": data})
        return out

    def _columns(self, table: str) -> list[str]:
        return [row[1] for row in self._query(f"PRAGMA table_info({table})")]

    # --- queries ------------------------------------------------------------------------------

    def completed(self, request, model: str, source: str) -> bool:
        """Whether a successful result of ``model`` from ``source`` for the same request is stored
        (same prompt, negative prompt, seed, steps, guidance, size, images, scheduler) with
        every image file present: a rerun can skip it."""
        rows = self._query(
            "SELECT r.id FROM results r JOIN runs ON runs.id = r.run_id WHERE runs.request_key = ?"
            " AND r.model = ? AND r.source = ? AND r.success = 1 ORDER BY r.id DESC",
            (request_key(request), model, source))
        return any(all(p.is_file() for p in self.images(rid)) for (rid,) in rows)

    def pending(self, request, models: Iterable, source: str | None = None) -> list:
        """The models of ``models`` (ModelSpecs or keys) not :meth:`completed` for ``request``.

        ``source`` None means each ModelSpec's ``default_source`` (required for plain keys).
        """
        out = []
        for m in models:
            key = getattr(m, "key", m)
            src = source or getattr(m, "default_source", None)
            if src is None:
                raise StoreError(f"pending(): give source= for model key {key!r}")
            if not self.completed(request, key, src):
                out.append(m)
        return out

    def runs(self, *, prompt: str | None = None, model: str | None = None, since=None,
             until=None, limit: int | None = None, text: str | None = None) -> list[dict]:
        """Runs, newest first, as dicts: ``run_id, created_at, finished_at, finished, prompt,
        negative_prompt, seed, steps, guidance, size, images_per_prompt, repeats, warmup,
        scheduler, source, note, dsdcompare_version, request_key, n_results, n_success, models``.

        Filters: ``prompt`` (exact), ``text`` (substring of the prompt, any case), ``model`` (runs
        with a result of that model), ``since`` / ``until`` (datetime, date or ISO string; a date
        for ``until`` includes that whole day; naive datetimes are UTC).
        """
        where, args = [], []
        if prompt is not None:
            where.append("runs.prompt = ?")
            args.append(prompt)
        if text:
            where.append("instr(lower(runs.prompt), lower(?)) > 0")
            args.append(text)
        if model is not None:
            where.append("runs.id IN (SELECT run_id FROM results WHERE model = ?)")
            args.append(model)
        _date_filter("runs.created_at", since, until, where, args)
        sql = ("SELECT runs.id, runs.created_at, runs.finished_at, runs.prompt, "
               "runs.negative_prompt, runs.seed, runs.steps, runs.guidance, runs.size, "
               "runs.images_per_prompt, runs.repeats, runs.warmup, runs.scheduler, runs.source, "
               "runs.note, runs.dsdcompare_version, runs.request_key, COUNT(r.id), "
               "COALESCE(SUM(r.success), 0) FROM runs LEFT JOIN results r ON r.run_id = runs.id"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " GROUP BY runs.id ORDER BY runs.id DESC")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        names = ("run_id", "created_at", "finished_at", "prompt", "negative_prompt", "seed",
                 "steps", "guidance", "size", "images_per_prompt", "repeats", "warmup",
                 "scheduler", "source", "note", "dsdcompare_version", "request_key", "n_results",
                 "n_success")
        out = [dict(zip(names, row)) for row in self._query(sql, args)]
        models: dict[int, list[str]] = {}
        ids = [item["run_id"] for item in out]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for run_id, model in self._query(
                    f"SELECT run_id, model FROM results WHERE run_id IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY id", chunk):
                models.setdefault(run_id, []).append(model)
        for item in out:
            item["models"] = list(dict.fromkeys(models.get(item["run_id"], [])))  # stored order
            item["finished"] = item["finished_at"] is not None
        return out

    def results(self, *, run_id: int | Iterable[int] | None = None, prompt: str | None = None,
                seed: int | None = None, model: str | None = None, source: str | None = None,
                steps: int | None = None, since=None, until=None, success: bool | None = None):
        """One row per stored result, oldest first, as a pandas DataFrame of :data:`RESULT_COLUMNS`
        (documented in the module docstring). Every filter is optional and exact; ``run_id``
        may be one id or a list of ids; ``since`` / ``until`` as in :meth:`runs`."""
        import pandas as pd

        where, args = _result_filters(locals())
        sql = ("SELECT r.*, runs.size AS run_size, runs.note AS run_note FROM results r "
               "JOIN runs ON runs.id = r.run_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id")
        with self._lock:
            cur = self._connection().execute(sql, tuple(args))
            names = [d[0] for d in cur.description]
            raw = [dict(zip(names, row)) for row in cur.fetchall()]
        images = self._image_rows([r["id"] for r in raw])
        rows = []
        for r in raw:
            row = {c: r.get(c) for c in RESULT_COLUMNS}
            row.update(result_id=r["id"], size=r["run_size"], run_note=r["run_note"])
            for c in ("success", "standin", "toy", "load_cached"):
                row[c] = None if r[c] is None else bool(r[c])
            row["score_standin"] = None if r["score_standin"] is None else bool(r["score_standin"])
            row["flags"] = "; ".join(_loads(r["flags"]) or [])
            mine = images.get(r["id"], [])
            row["n_images"] = len(mine)
            row["image_paths"] = [str(self._image_path(rel)) for rel, _ in mine]
            row["image_sha256"] = [sha for _, sha in mine]
            rows.append(row)
        df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
        for c in ("success", "standin", "toy"):
            df[c] = df[c].astype(bool)
        for c in ("load_cached", "score_standin"):
            df[c] = df[c].astype("boolean")
        for c in ("run_id", "result_id", "n_images"):
            df[c] = df[c].astype("int64")
        for c in ("seed", "steps", "width", "height", "size", "images_per_prompt", "repeats",
                  "warmup", "peak_memory_bytes"):  # nullable: a damaged or hand-made row
            df[c] = df[c].astype("Int64")
        for c in ("guidance", "load_s", "first_call_s", "median_s", "min_s", "max_s", "text_s",
                  "denoise_s", "decode_s", "safety_s", "other_s", "its_per_s", "clip_score",
                  "psnr", "ssim"):
            df[c] = df[c].astype("float64")
        return df

    def side_by_side(self, prompt: str, seed: int, *, source: str | None = None,
                     steps: int | None = None):
        """The latest result per model for ``prompt`` + ``seed`` (a successful one when there is
        one, else the latest failure), in first-stored order of the models: one row per model."""
        df = self.results(prompt=prompt, seed=seed, source=source, steps=steps)
        if df.empty:
            return df
        ranked = df.assign(_ok=df["success"].astype(int)).sort_values(["_ok", "result_id"])
        latest = ranked.groupby("model", sort=False).tail(1)
        first_seen = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
        latest = latest.sort_values("model", key=lambda s: s.map(first_seen))
        return latest.drop(columns="_ok").reset_index(drop=True)

    def aggregates(self, *, by: tuple[str, ...] = AGGREGATE_KEYS, **filters):
        """Per model and setting (``by``, default :data:`AGGREGATE_KEYS`), one row:

        ``n`` (successful results), ``n_failed``, ``median_s`` (median of the results' median
        latency), ``latency_min_s``, ``latency_max_s``, ``latency_std_s``, ``its_per_s``
        (median), ``first_call_s`` and ``load_s`` (medians), ``peak_memory_bytes`` (max),
        ``clip_score_mean``, ``clip_score_std``, ``clip_n``, ``score_checkpoint``,
        ``score_scale`` (NaN means and ``"mixed"`` when scores from different checkpoints or
        scales meet: they are not comparable), ``psnr_mean``, ``ssim_mean``, plus
        ``model_name, teacher, standin, toy``. ``filters`` are those of :meth:`results`.
        """
        import pandas as pd

        df = self.results(**filters)
        cols = [*by, "model_name", "teacher", "standin", "toy", "n", "n_failed", "median_s",
                "latency_min_s", "latency_max_s", "latency_std_s", "its_per_s", "first_call_s",
                "load_s", "peak_memory_bytes", "clip_score_mean", "clip_score_std", "clip_n",
                "score_checkpoint", "score_scale", "psnr_mean", "ssim_mean"]
        rows = []
        for keys, g in df.groupby(list(by), dropna=False, sort=False):
            ok = g[g["success"]]
            scored = ok[ok["clip_score"].notna()]
            provenance = scored[["score_checkpoint", "score_scale"]].drop_duplicates()
            comparable = len(provenance) <= 1
            row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,)))
            row.update(
                model_name=g["model_name"].iloc[-1], teacher=g["teacher"].iloc[-1],
                standin=bool(g["standin"].any()), toy=bool(g["toy"].any()),
                n=len(ok), n_failed=int((~g["success"]).sum()),
                median_s=ok["median_s"].median(), latency_min_s=ok["median_s"].min(),
                latency_max_s=ok["median_s"].max(), latency_std_s=ok["median_s"].std(),
                its_per_s=ok["its_per_s"].median(), first_call_s=ok["first_call_s"].median(),
                load_s=ok["load_s"].median(), peak_memory_bytes=ok["peak_memory_bytes"].max(),
                clip_score_mean=scored["clip_score"].mean() if comparable else math.nan,
                clip_score_std=scored["clip_score"].std() if comparable else math.nan,
                clip_n=len(scored),
                score_checkpoint=(provenance["score_checkpoint"].iloc[0] if len(provenance) == 1
                                  else ("mixed" if len(provenance) > 1 else None)),
                score_scale=(provenance["score_scale"].iloc[0] if len(provenance) == 1
                             else ("mixed" if len(provenance) > 1 else None)),
                psnr_mean=ok["psnr"].mean(), ssim_mean=ok["ssim"].mean(),
            )
            rows.append(row)
        return pd.DataFrame(rows, columns=cols)

    def result_record(self, result_id: int) -> dict:
        """The full stored Result dict (``Result.to_dict()``: timing, score with per_image, env,
        options, error_detail), plus ``result_id``, ``run_id``, ``created_at`` and
        ``image_paths`` (absolute, as strings)."""
        rows = self._query("SELECT run_id, created_at, record FROM results WHERE id = ?",
                           (result_id,))
        if not rows:
            raise StoreError(f"{self.path}: there is no result {result_id}")
        run_id, created_at, record = rows[0]
        out = _loads(record)
        out.update(result_id=int(result_id), run_id=run_id, created_at=created_at,
                   image_paths=[str(p) for p in self.images(result_id)])
        return out

    def images(self, result_id: int) -> list[Path]:
        """Absolute paths of a result's PNG files, in order (checked to lie inside the store)."""
        rows = self._image_rows([result_id]).get(result_id, [])
        return [self._image_path(rel) for rel, _ in rows]

    def load_result(self, result_id: int, *, with_images: bool = True):
        """Rebuild a :class:`dsdcompare.engine.Result` (Timing, Score and images included)."""
        from PIL import Image

        from .engine import Result
        from .timing import StageTimes, Timing

        record = self.result_record(result_id)
        paths = record.pop("image_paths")
        for extra in ("result_id", "run_id", "created_at"):
            record.pop(extra)
        known = {f.name for f in dataclasses.fields(Result)}
        data = {k: v for k, v in record.items() if k in known}
        if data.get("timing"):
            timing = dict(data["timing"])
            timing["stages"] = StageTimes(**timing.get("stages") or {})
            data["timing"] = Timing(**{k: v for k, v in timing.items()
                                       if k in {f.name for f in dataclasses.fields(Timing)}})
        if data.get("score"):
            try:
                from .metrics import Score

                names = {f.name for f in dataclasses.fields(Score)}
                data["score"] = Score(**{k: v for k, v in data["score"].items() if k in names})
            except Exception:  # metrics unavailable or changed: keep the plain dict
                pass
        result = Result(**data)
        if with_images:
            result.images = []
            for p in paths:
                with Image.open(p) as img:
                    result.images.append(img.copy())
        return result

    def verify(self) -> list[str]:
        """Problems found (empty when sound): SQLite's integrity check, records that do not
        parse, image files missing or whose sha256 differs from their name."""
        problems = [f"sqlite: {msg}" for (msg,) in self._query("PRAGMA integrity_check")
                    if msg != "ok"]
        for rid, record in self._query("SELECT id, record FROM results"):
            try:
                _loads(record)
            except ValueError as err:
                problems.append(f"result {rid}: record is not JSON ({err})")
        for rid, rel, sha in self._query("SELECT result_id, path, sha256 FROM images"):
            try:
                path = self._image_path(rel)
            except StoreError as err:
                problems.append(f"result {rid}: {err}")
                continue
            if not path.is_file():
                problems.append(f"result {rid}: image file missing: {rel}")
            elif _sha256_file(path) != sha:
                problems.append(f"result {rid}: image file damaged (sha256 differs): {rel}")
        return problems

    def unreferenced(self, *, min_age_s: float = 0.0) -> list[Path]:
        """Files under ``images/`` no result refers to, untouched for ``min_age_s`` seconds:
        what a writer killed between writing its PNGs and committing their row leaves (and its
        half-written ``.tmp`` files). Harmless but disk space; :meth:`prune` removes them."""
        found = self._image_files(min_age_s)
        referenced = {rel for (rel,) in self._query("SELECT DISTINCT path FROM images")}
        return [path for rel, path in found if rel not in referenced]

    def prune(self, *, min_age_s: float = 3600.0) -> tuple[int, int]:
        """Delete :meth:`unreferenced` files older than ``min_age_s``; return (files, bytes).

        Holds the write lock while it decides and deletes, and every writer re-checks its files
        under that lock before committing rows (and writes back any that are gone), so a result
        being stored concurrently is never left pointing at a deleted file. The age margin
        (default an hour) only spares in-flight writers that rewrite.
        """
        files = removed = 0
        with self._transaction() as conn:
            found = self._image_files(min_age_s)
            referenced = {rel for (rel,) in conn.execute("SELECT DISTINCT path FROM images")}
            for rel, path in found:
                if rel in referenced:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    files, removed = files + 1, removed + size
        return files, removed

    def _image_files(self, min_age_s: float) -> list[tuple[str, Path]]:
        """(relative path, path) of every file under ``images/`` older than ``min_age_s``."""
        folder = self.root / "images"
        if not folder.is_dir():
            return []
        cutoff = clock.time() - min_age_s
        out = []
        for path in sorted(folder.glob("*/*")):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime <= cutoff:
                    out.append((path.relative_to(self.root).as_posix(), path))
        return out

    # --- export -------------------------------------------------------------------------------

    def export_csv(self, path, **filters) -> Path:
        """Write :meth:`results` (``filters`` as there) to a CSV file; return its path.

        Lists are joined with ``;``; ``image_paths`` are relative to the store folder (the
        export says nothing about this machine's folders); times are UTC ISO 8601.
        """
        df = self._export_frame(**filters)
        path = Path(path)
        df.to_csv(_tmp_beside(path), index=False)
        os.replace(_tmp_beside(path), path)
        return path

    def export_json(self, path, **filters) -> Path:
        """Write a JSON document ``{"format", "schema", "exported_at", "dsdcompare", "runs":
        [...], "results": [{...flat row..., "record": full Result dict}]}``; return its path.

        Flat rows are :meth:`results` rows with ``image_paths`` relative to the store folder;
        NaN and infinities become ``null`` (standard JSON).
        """
        df = self._export_frame(**filters, join_lists=False)
        rows = [_plain(r) for r in df.to_dict(orient="records")]
        for row in rows:
            (record,), = self._query("SELECT record FROM results WHERE id = ?",
                                     (row["result_id"],))
            row["record"] = _loads(record)
        run_ids = {r["run_id"] for r in rows}
        runs = [r for r in self.runs() if r["run_id"] in run_ids]
        doc = {"format": "dsdcompare-results", "schema": SCHEMA_VERSION,
               "exported_at": _now(), "dsdcompare": __version__,
               "runs": list(reversed(runs)), "results": rows}
        path = Path(path)
        tmp = _tmp_beside(path)
        tmp.write_text(json.dumps(_finite(doc), indent=1, ensure_ascii=False, allow_nan=False),
                       encoding="utf-8")
        os.replace(tmp, path)
        return path

    def export_bundle(self, path, *, run_ids: Iterable[int] | None = None) -> Path:
        """Write one ``.zip`` with the database (a consistent copy) and its images; return it.

        The zip holds ``results.sqlite`` (rollback-journal mode, so it opens read-only
        anywhere), ``images/ab/<sha256>.png`` for every image the copy refers to, and
        ``manifest.json`` (format, versions, counts, the sha256 of the database and of every
        image). ``run_ids`` keeps only those runs. Open it with ``Store("bundle.zip")`` or
        ``--store bundle.zip``: that is how a GPU run is shown on the CPU-only demo.
        """
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="dsdcompare-export-") as td:
            # 1. A consistent copy of the database (SQLite's backup API, safe while others write)
            copy = Path(td) / DB_NAME
            dst = sqlite3.connect(copy)
            try:
                with self._lock:
                    self._connection().backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
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
            # 2. Manifest: the sha256 of every file, checked when the bundle is opened
            images = {}
            for rel in rels:
                src = self._image_path(rel)
                if not src.is_file():
                    raise StoreError(f"{self.path}: image file missing: {rel}; cannot bundle "
                                     f"(run verify() to list every problem)")
                images[rel] = _sha256_file(src)
                if images[rel] != _IMAGE_PATH.fullmatch(rel).group(2):
                    raise StoreError(f"{self.path}: image file damaged (sha256 differs): {rel}")
            manifest = {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION,
                        "schema": SCHEMA_VERSION, "dsdcompare": __version__,
                        "created_at": _now(), "source_store": self.path.name, "counts": counts,
                        "database": {"path": DB_NAME, "sha256": _sha256_file(copy)},
                        "images": images}
            # 3. The zip, written beside the target and renamed into place
            tmp = _tmp_beside(path)
            with zipfile.ZipFile(tmp, "w") as zf:
                zf.writestr("manifest.json", json.dumps(manifest, indent=1),
                            compress_type=zipfile.ZIP_DEFLATED)
                zf.write(copy, DB_NAME, compress_type=zipfile.ZIP_DEFLATED)
                for rel in rels:  # PNGs are compressed already
                    zf.write(self._image_path(rel), rel, compress_type=zipfile.ZIP_STORED)
            os.replace(tmp, path)
        return path

    def _export_frame(self, *, join_lists: bool = True, **filters):
        df = self.results(**filters)
        root = self.root
        df["image_paths"] = [[Path(p).relative_to(root).as_posix() for p in ps]
                             for ps in df["image_paths"]]
        df["created_at"] = [_iso(t) for t in df["created_at"]]
        if join_lists:
            for c in ("image_paths", "image_sha256"):
                df[c] = [";".join(v) for v in df[c]]
        return df

    # --- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (and remove a bundle's temporary folder)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def _check_writable(self) -> None:
        if self.readonly:
            what = f"bundle {self.bundle}" if self.bundle else f"store {self.path}"
            raise StoreError(f"{what} is open read-only; open a .sqlite store read-write to "
                             f"write results")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from the start (no upgrade
        deadlocks between processes); rolled back on any error."""
        self._check_writable()
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, tuple(args)).fetchall()

    def _image_rows(self, result_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
        out: dict[int, list[tuple[str, str]]] = {}
        for start in range(0, len(result_ids), 500):
            chunk = result_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for rid, rel, sha in self._query(
                    f"SELECT result_id, path, sha256 FROM images WHERE result_id IN ({marks}) "
                    f"ORDER BY result_id, idx", chunk):
                out.setdefault(rid, []).append((rel, sha))
        return out

    def _resolved_root(self) -> Path:
        if self._root_real is None:
            self._root_real = self.root.resolve()
        return self._root_real

    def _image_path(self, rel: str) -> Path:
        """The absolute path of a stored image path, refused unless it is exactly
        ``images/ab/<sha256>.png`` and resolves inside the store folder."""
        match = _IMAGE_PATH.fullmatch(rel) if isinstance(rel, str) else None
        if match is None or match.group(1) != match.group(2)[:2]:
            raise StoreError(f"{self.bundle or self.path}: refusing stored image path {rel!r}: "
                             f"not of the form images/ab/<sha256>.png (a damaged or crafted "
                             f"database)")
        path = self.root / rel
        root = self._resolved_root()
        if not path.resolve().is_relative_to(root):
            raise StoreError(f"{self.bundle or self.path}: refusing image path {rel!r}: it leads "
                             f"outside the store folder {root}")
        return path


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the database.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once instead
    of calling the busy handler when a second process is creating or switching the same new
    database (its deadlock avoidance), so ``busy_timeout`` alone does not cover two writers
    that start together. Retries with a jittered backoff for up to :data:`BUSY_TIMEOUT_S`.
    """
    deadline = clock.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as err:
            message = str(err).lower()
            if ("locked" not in message and "busy" not in message) or clock.monotonic() > deadline:
                raise
        clock.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def _param(value):
    """A numpy scalar as the Python number it holds (ids and seeds often come from a DataFrame):
    sqlite3 would bind ``np.int64(3)`` as an 8-byte BLOB that equals no row, silently."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    return value


def _params(args):
    if isinstance(args, dict):
        return {k: _param(v) for k, v in args.items()}
    return tuple(_param(v) for v in args)


class _Connection(sqlite3.Connection):
    """sqlite3.Connection whose parameters may be numpy scalars (see :func:`_param`)."""

    def execute(self, sql, parameters=(), /):
        return super().execute(sql, _params(parameters))

    def executemany(self, sql, seq_of_parameters, /):
        return super().executemany(sql, (_params(p) for p in seq_of_parameters))


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    mode = "ro" if readonly else "rwc"
    uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False, factory=_Connection)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # a bundle may come from anyone: its schema may not run SQL functions with side effects
    conn.execute("PRAGMA trusted_schema = OFF")
    return conn


def _inspect(path: Path, *, label: Path | None = None) -> int:
    """The schema version of an existing file, read without writing; StoreError unless it is a
    dsdcompare database this version can open. 0: an empty SQLite file (one being created)."""
    label = label or path
    with open(path, "rb") as fh:
        header = fh.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{label} is not a dsdcompare results database (not an SQLite file). "
                         f"It was left untouched; give --store a new path or an existing store.")
    try:
        conn = _connect(path, readonly=True)
        try:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{label} cannot be read as an SQLite database ({err}); it was left "
                         f"untouched. Give --store another path.") from None
    if app == 0 and version == 0 and not tables:
        return 0
    if app != APPLICATION_ID:
        raise StoreError(f"{label} is an SQLite database but not a dsdcompare results database "
                         f"(application_id {app:#x}); it was left untouched. Give --store a new "
                         f"path or an existing dsdcompare store.")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{label} was written by a newer dsdcompare (schema v{version}; this is "
                         f"dsdcompare {__version__}, schema v{SCHEMA_VERSION}); it was left "
                         f"untouched. Upgrade dsdcompare (pip install -U dsdcompare) to open it.")
    missing = {"runs", "results", "images"} - tables
    if version < 1 or missing:
        raise StoreError(f"{label} is marked as a dsdcompare database but is damaged (schema "
                         f"v{version}, missing tables: {sorted(missing) or 'none'}); it was left "
                         f"untouched. Give --store another path.")
    return version


def _migrate(conn: sqlite3.Connection, label: Path) -> None:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # another process upgraded it since we looked
            raise StoreError(f"{label} was written by a newer dsdcompare (schema v{version}); "
                             f"upgrade dsdcompare to open it")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](conn)
            conn.execute(f"PRAGMA user_version = {target}")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _backup_before_migration(path: Path, version: int) -> None:
    backup = path.with_name(f"{path.stem}.v{version}-backup{path.suffix}")
    if backup.exists():
        return
    src = _connect(path, readonly=True)
    try:
        dst = sqlite3.connect(_tmp_beside(backup))
        try:
            src.backup(dst)
        finally:
            dst.close()
        os.replace(_tmp_beside(backup), backup)
    finally:
        src.close()


def _is_bundle(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        if not path.is_file():
            raise StoreError(f"{path}: no such bundle file; check the path")
        return True
    if path.is_file():
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    return False


def _extract_bundle(bundle: Path, dest: Path) -> Path:
    """Extract and verify a bundle into ``dest``; return the database path there."""
    def bad(why: str) -> StoreError:
        return StoreError(f"{bundle} is not a valid dsdcompare bundle: {why}. Nothing was "
                          f"written outside a temporary folder; export the bundle again "
                          f"(python -m dsdcompare store export --bundle ...).")

    try:
        zf = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as err:
        raise bad(f"not a readable zip file ({err})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = [i.filename for i in infos]
        size = sum(i.file_size for i in infos)  # zipfile never extracts more than declared
        free = shutil.disk_usage(dest).free
        if size > min(MAX_BUNDLE_BYTES, free):
            raise StoreError(f"{bundle} would take {size / 2**30:.1f} GiB once extracted (limit "
                             f"{MAX_BUNDLE_BYTES / 2**30:.0f} GiB, {free / 2**30:.1f} GiB free "
                             f"in {dest.parent}); free space or bundle fewer runs (--run)")
        if len(set(names)) != len(names):
            raise bad("it holds the same file twice")
        for name in names:  # only our own names: no ../, absolute paths or links
            if name not in ("manifest.json", DB_NAME) and not _IMAGE_PATH.fullmatch(name):
                raise bad(f"unexpected member {name!r}")
        if "manifest.json" not in names or DB_NAME not in names:
            raise bad("manifest.json or results.sqlite is missing")
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except ValueError as err:
            raise bad(f"manifest.json is not JSON ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise bad("its manifest does not say format 'dsdcompare-bundle'")
        if not isinstance(manifest.get("bundle_version"), int) \
                or manifest["bundle_version"] > BUNDLE_VERSION:
            raise StoreError(f"{bundle} was written by a newer dsdcompare (bundle format "
                             f"v{manifest.get('bundle_version')}); upgrade dsdcompare to open it")
        listed = manifest.get("images")
        if not isinstance(listed, dict):
            raise bad("its manifest has no image list")
        images = {n for n in names if n.startswith("images/")}
        if images != set(listed):
            extra = sorted(images ^ set(listed))
            raise bad(f"manifest and files disagree (first: {extra[0]})")
        expected = {DB_NAME: (manifest.get("database") or {}).get("sha256"), **listed}
        for info in infos:
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with zf.open(info) as src, open(target, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if info.filename == "manifest.json":
                continue
            sha = digest.hexdigest()
            if sha != expected[info.filename]:
                raise bad(f"{info.filename} does not match its sha256 in the manifest")
            match = _IMAGE_PATH.fullmatch(info.filename)
            if match and match.group(2) != sha:
                raise bad(f"{info.filename} is not named by its sha256")
    return dest / DB_NAME


def _request_dict(request) -> dict:
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return dataclasses.asdict(request)
    if isinstance(request, dict):
        return dict(request)
    raise StoreError(f"expected a dsdcompare Request (or a dict of its fields), got "
                     f"{type(request).__name__}")


def result_record_dict(result) -> dict:
    """A Result (or its dict) as the plain JSON-round-tripped record the store keeps."""
    if hasattr(result, "to_dict"):
        record = result.to_dict()
    elif isinstance(result, dict):
        record = {k: v for k, v in result.items() if k != "images"}
    else:
        raise StoreError(f"expected a dsdcompare Result, got {type(result).__name__}")
    if not record.get("model"):
        raise StoreError("the Result has no model key; nothing was stored")
    # a plain JSON round trip: what is stored is what result_record() gives back
    return _loads(_dumps(record))


def flat_record(record: dict) -> dict:
    """The flat columns of a Result record (``Result.to_dict()``): the results table's row."""
    timing = record.get("timing") or {}
    stages = timing.get("stages") or {}
    score = record.get("score") or {}
    fidelity = record.get("fidelity") or {}
    env = record.get("env") or {}
    flat = {c: record.get(c) for c in _FLAT_COLUMNS}
    flat.update(
        success=bool(record.get("success")),
        load_s=timing.get("load_s"), load_cached=timing.get("load_cached"),
        first_call_s=timing.get("first_call_s"), median_s=timing.get("median_s"),
        min_s=timing.get("min_s"), max_s=timing.get("max_s"),
        text_s=stages.get("text"), denoise_s=stages.get("denoise"),
        decode_s=stages.get("decode"), safety_s=stages.get("safety"),
        other_s=stages.get("other"), its_per_s=timing.get("its_per_s"),
        peak_memory_bytes=timing.get("peak_memory_bytes"), memory_kind=timing.get("memory_kind"),
        repeats=timing.get("repeats"), warmup=timing.get("warmup"),
        clip_score=score.get("value"), score_backend=score.get("backend"),
        score_checkpoint=score.get("checkpoint"), score_scale=score.get("scale"),
        score_standin=score.get("standin"), score_error=score.get("error"),
        psnr=fidelity.get("psnr"), ssim=fidelity.get("ssim"),
        fidelity_against=fidelity.get("against"),
        flags=json.dumps(list(record.get("flags") or [])),
        dsdcompare_version=env.get("dsdcompare") or __version__,
        torch_version=env.get("torch"), diffusers_version=env.get("diffusers"),
        transformers_version=env.get("transformers"),
    )
    for c in ("clip_score", "its_per_s", "psnr", "ssim"):  # SQLite has no NaN; NULL it is
        if isinstance(flat[c], float) and not math.isfinite(flat[c]):
            flat[c] = None
    return flat


def _result_filters(given: dict) -> tuple[list[str], list]:
    where, args = [], []
    run_id = given.get("run_id")
    if run_id is not None and not isinstance(_param(run_id), int):  # several runs
        ids = [int(i) for i in run_id]
        where.append(f"r.run_id IN ({','.join('?' * len(ids)) or 'NULL'})")
        args.extend(ids)
        given = {**given, "run_id": None}
    for name, column in (("run_id", "r.run_id"), ("prompt", "r.prompt"), ("seed", "r.seed"),
                         ("model", "r.model"), ("source", "r.source"), ("steps", "r.steps")):
        if given.get(name) is not None:
            where.append(f"{column} = ?")
            args.append(given[name])
    if given.get("success") is not None:
        where.append("r.success = ?")
        args.append(int(bool(given["success"])))
    _date_filter("r.created_at", given.get("since"), given.get("until"), where, args)
    return where, args


def _date_filter(column: str, since, until, where: list, args: list) -> None:
    if since is not None:
        where.append(f"{column} >= ?")
        args.append(_as_utc_iso(since))
    if until is not None:
        if isinstance(until, date) and not isinstance(until, datetime):
            where.append(f"{column} < ?")
            args.append(_as_utc_iso(until + timedelta(days=1)))
        else:
            where.append(f"{column} <= ?")
            args.append(_as_utc_iso(until))


def _as_utc_iso(value) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(f"not an ISO date or time: {value!r} (e.g. 2026-01-31 or "
                             f"2026-01-31T12:00)") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=timezone.utc)
    if not isinstance(value, datetime):
        raise StoreError(f"expected a datetime, date or ISO string, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return _iso(value)


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


def _iso(value) -> str:
    """UTC ISO 8601 with microseconds: one format, so text order is time order."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _json_default(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a result record")


def _dumps(value) -> str:
    # NaN is kept (Python's JSON reads it back) so a record round-trips exactly
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _loads(text):
    return json.loads(text) if text is not None else None


def _finite(value):
    """``value`` with NaN and infinities replaced by None (standard JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plain(row: dict) -> dict:
    """A DataFrame row as plain Python values (numpy scalars, pandas NA -> JSON types)."""
    out = {}
    for k, v in row.items():
        if v is None or (not isinstance(v, (list, str)) and _isna(v)):
            out[k] = None
        elif hasattr(v, "item") and not isinstance(v, (list, str)):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _isna(value) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


# --------------------------------------------------------------------------------------------
# Command line: python -m dsdcompare store ...
# --------------------------------------------------------------------------------------------


def configure_parser(p) -> None:
    """``store`` subcommand: ``runs``, ``export``, ``check`` and ``merge`` on a results store."""
    p.add_argument("--store", metavar="PATH",
                   help="results database, folder or bundle .zip (default: $DSDCOMPARE_STORE or "
                        "./dsdcompare-results/results.sqlite)")
    sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    r = sub.add_parser("runs", help="list stored runs, newest first")
    r.add_argument("--prompt", help="only runs of exactly this prompt")
    r.add_argument("--text", help="only runs whose prompt contains this text")
    r.add_argument("--model", help="only runs with a result of this model key")
    r.add_argument("--since", help="only runs from this date or time on (ISO, UTC)")
    r.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    e = sub.add_parser("export", help="export results to CSV, JSON or a bundle .zip")
    e.add_argument("--csv", metavar="FILE", help="flat rows, one per result")
    e.add_argument("--json", metavar="FILE", help="runs and results with full records")
    e.add_argument("--bundle", metavar="ZIP",
                   help="database + images in one file; open elsewhere with --store ZIP")
    e.add_argument("--run", type=int, action="append", metavar="ID",
                   help="only this run (repeatable; default all)")
    sub.add_parser("check", help="verify the database and every image file's sha256, and "
                                 "count image files no result refers to")
    pr = sub.add_parser("prune", help="delete image files no result refers to (left by killed "
                                      "writers)")
    pr.add_argument("--older-than", type=float, default=1.0, metavar="HOURS",
                    help="only files untouched this long (default 1 hour)")
    m = sub.add_parser("merge", help="copy the runs and results of other stores (e.g. one per "
                                     "node of a multi-node bench) into --store")
    m.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="store .sqlite, store folder or bundle .zip to copy from (kept as is)")


def run(args) -> int:
    """Run the ``store`` subcommand; returns the exit code."""
    import sys

    try:
        if args.store_command == "merge":
            return _run_merge(args)
        if args.store_command == "prune":
            if not args.older_than >= 0:
                print(f"store prune: --older-than must be 0 or more hours, got "
                      f"{args.older_than}", file=sys.stderr)
                return 2
            with Store(args.store) as store:
                files, size = store.prune(min_age_s=args.older_than * 3600)
                print(f"{store.path}: removed {files} unreferenced image file(s), "
                      f"{size / 1e6:.1f} MB")
            return 0
        with Store(args.store, readonly=True) as store:
            if args.store_command == "runs":
                for r in store.runs(prompt=args.prompt, text=args.text, model=args.model,
                                    since=args.since, limit=args.limit):
                    state = "" if r["finished"] else "  [unfinished]"
                    print(f"{r['run_id']:>5}  {r['created_at'][:19]}  seed {r['seed']}  "
                          f"{r['steps']} steps  {r['n_success']}/{r['n_results']} ok  "
                          f"{','.join(r['models'])}  {r['prompt'][:60]!r}{state}")
                return 0
            if args.store_command == "check":
                problems = store.verify()
                for p in problems:
                    print(p)
                extra = store.unreferenced()
                if extra:  # not damage: what killed writers leave; `prune` reclaims the space
                    size = sum(p.stat().st_size for p in extra if p.exists()) / 1e6
                    print(f"note: {len(extra)} image file(s) ({size:.1f} MB) no result refers "
                          f"to (left by interrupted writes); `store prune` removes them")
                print(f"{store.bundle or store.path}: "
                      + ("sound" if not problems else f"{len(problems)} problem(s)"))
                return 1 if problems else 0
            if not (args.csv or args.json or args.bundle):
                print("store export: give --csv, --json and/or --bundle", file=sys.stderr)
                return 2
            filters = {"run_id": args.run} if args.run else {}
            if args.csv:
                print(f"wrote {store.export_csv(args.csv, **filters)}")
            if args.json:
                print(f"wrote {store.export_json(args.json, **filters)}")
            if args.bundle:
                print(f"wrote {store.export_bundle(args.bundle, run_ids=args.run)}")
            return 0
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run_merge(args) -> int:
    import sys

    failed = False
    with Store(args.store) as store:
        for source in args.sources:
            try:
                report = store.merge(source)
            except StoreError as err:  # one bad source does not stop the others
                print(f"error: {err}", file=sys.stderr)
                failed = True
                continue
            for problem in report["problems"]:
                print(f"warning: {problem}", file=sys.stderr)
            failed = failed or bool(report["problems"])
            print(f"{source}: {report['runs_added']} run(s) and {report['results_added']} "
                  f"result(s) added, {report['results_present']} already there, "
                  f"{report['images_copied']} image(s) copied"
                  + (f", {len(report['problems'])} result(s) skipped" if report["problems"]
                     else ""))
        print(f"into {store.path}")
    return 1 if failed else 0


__all__ = ["AGGREGATE_KEYS", "APPLICATION_ID", "DuplicateResultError", "MIGRATIONS",
           "RESULT_COLUMNS", "SCHEMA_VERSION", "STORE_ENV", "Store", "StoreError",
           "default_store_path", "request_key"]
