"""The database itself: schema and migrations, and opening a file safely (check it is ours
without writing, back it up before a migration, connect, switch to WAL).

``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`. Tables:

- ``runs``: one row per comparison: the Request (``prompt, negative_prompt, seed, steps, guidance,
  size`` (NULL: native size per model), ``images_per_prompt, repeats, warmup, scheduler``), the
  whole Request as JSON (``request``), ``request_key`` (v2: sha256 of the fields that define "the
  same request"), ``source`` (NULL: each model's own), ``note``, ``dsdcompare_version``,
  ``created_at`` and ``finished_at`` (UTC ISO 8601; NULL: interrupted or still running).
- ``results``: one row per model per run: flat columns for queries (see
  :mod:`dsdcompare.store.records`) and ``record``, the full ``Result.to_dict()`` as JSON (timing
  with every repeat, score with per-image values, env, options, traceback): nothing is lost.
- ``images``: ``(result_id, idx)`` → ``sha256, path`` (relative, ``images/ab/<sha256>.png``),
  ``width, height, bytes``. Paths are checked on every read: nothing can point outside ``root``.

Schema history: v1 (runs, results, images); v2 adds ``runs.request_key`` and its index, backfilled
from the stored requests (what :meth:`Store.completed` and resuming need); v3 adds ``reviews``,
``review_pairs`` and ``votes`` (blind A/B reviews, see :mod:`dsdcompare.store.reviews`); v4 adds
``scores``, one row per result and metric with its provenance (see
:mod:`dsdcompare.store.scores`), filled from the stored records, with checkpoint paths rewritten
to stable identities.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sqlite3
import time as clock
import urllib.parse
from pathlib import Path

from .. import __version__
from .common import StoreError, tmp_beside
from .guard import UNTRUSTED_STATEMENT_S, check_structure, damage, database_error, read_only_media
from .records import REQUEST_KEY_FIELDS, request_key
from .reviews import migrate_to_v3
from .scores import migrate_to_v4

#: ``PRAGMA application_id`` of every dsdcompare database ("dsdc" in ASCII).
APPLICATION_ID = 0x64736463
#: Current schema version (``PRAGMA user_version``).
SCHEMA_VERSION = 4
#: Seconds a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 60.0

_SQLITE_MAGIC = b"SQLite format 3\x00"

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
    rows = conn.execute(f"SELECT id, {', '.join(REQUEST_KEY_FIELDS)} FROM runs").fetchall()
    for row in rows:
        fields = dict(zip(REQUEST_KEY_FIELDS, row[1:], strict=True))
        conn.execute("UPDATE runs SET request_key = ? WHERE id = ?", (request_key(fields), row[0]))
    conn.execute("CREATE INDEX runs_request_key ON runs (request_key, source)")


#: version -> the step that brings a database from version-1 to it. Every new database goes
#: through all of them, so the migration path is exercised on every fresh store.
MIGRATIONS = {1: _migrate_to_v1, 2: _migrate_to_v2, 3: migrate_to_v3, 4: migrate_to_v4}


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# --- connections --------------------------------------------------------------------------------


def param(value):
    """A numpy scalar as the Python number it holds (ids and seeds often come from a DataFrame):
    sqlite3 would bind ``np.int64(3)`` as an 8-byte BLOB that equals no row, silently."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    return value


def _params(args):
    if isinstance(args, dict):
        return {k: param(v) for k, v in args.items()}
    return tuple(param(v) for v in args)


class _Connection(sqlite3.Connection):
    """sqlite3.Connection whose parameters may be numpy scalars (see :func:`param`), and whose
    statements may be given a time limit (see :func:`connect`)."""

    _limit_s: float | None = None  # seconds one statement may run (None: no limit)
    _deadline: float = math.inf  # when the current statement's time is up

    def execute(self, sql, parameters=(), /):
        self._start_clock()
        return super().execute(sql, _params(parameters))

    def executemany(self, sql, seq_of_parameters, /):
        self._start_clock()
        return super().executemany(sql, (_params(p) for p in seq_of_parameters))

    def _start_clock(self) -> None:
        # the statement runs in execute() and in the fetches after it: both until the deadline
        if self._limit_s is not None:
            self._deadline = clock.monotonic() + self._limit_s

    def _over_time(self) -> int:
        return int(clock.monotonic() > self._deadline)


def connect(path: Path, *, readonly: bool, time_limit_s: float | None = None) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode (transactions are explicit), shareable across
    threads (the Store's lock guards it), with a long busy timeout and foreign keys on.

    ``time_limit_s`` stops any one statement that runs longer (SQLite error "interrupted"): for
    databases that may come from anyone. Read-only, a database whose folder cannot be written
    (read-only media) is opened ``immutable``, which is what lets SQLite read a WAL database there.
    """
    mode = "ro" if readonly else "rwc"
    immutable = "&immutable=1" if readonly and read_only_media(path) else ""
    uri = f"file:{urllib.parse.quote(str(path))}?mode={mode}{immutable}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False, factory=_Connection)
    if time_limit_s is not None:
        conn._limit_s = time_limit_s
        conn.set_progress_handler(conn._over_time, 10_000)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # a bundle may come from anyone: its schema may not run SQL functions with side effects
    # (recursive views and the like are refused by guard.check_structure before any query)
    conn.execute("PRAGMA trusted_schema = OFF")
    return conn


def switch_to_wal(conn: sqlite3.Connection) -> str:
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


# --- opening ------------------------------------------------------------------------------------


def open_database(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Check ``path`` without writing, then connect (and migrate when read-write).

    Read-write, an existing database is also checked page by page (``PRAGMA quick_check``)
    before anything is written: a damaged file is refused and left as it is, never written into.
    Every failure is a :class:`StoreError` naming the path and the remedy.
    """
    # 1. Check the file: anything that is not ours, damaged or newer is refused before any write
    try:
        exists = path.exists()
        if exists and not path.is_file():
            raise StoreError(f"{path} is not a regular file (a folder, device or socket); give "
                             f"--store a .sqlite file or a store folder.")
        version = inspect(path, deep=not readonly) if exists and path.stat().st_size > 0 else 0
    except OSError as err:
        raise StoreError(f"{path} cannot be read ({err.strerror or err}); check the path and "
                         f"its permissions.") from None
    if readonly:
        if not exists:
            raise StoreError(f"{path}: no results database there. Check the path, or run "
                             f"`python -m dsdcompare compare ...` to create one.")
        if version < SCHEMA_VERSION:
            raise StoreError(f"{path}: schema v{version} is older than this dsdcompare's "
                             f"v{SCHEMA_VERSION} and cannot be migrated read-only. Open it "
                             f"once read-write to migrate it (a backup is kept).")
        try:
            return connect(path, readonly=True)
        except sqlite3.Error as err:
            raise database_error(path, err) from None
    # 2. Connect read-write, WAL, and bring the schema up to date in one transaction
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if 0 < version < SCHEMA_VERSION:
            backup_before_migration(path, version)
        conn = connect(path, readonly=False)
    except OSError as err:
        raise StoreError(f"cannot create the store {path} ({err.strerror or err}); give --store "
                         f"a path in a folder you can write.") from None
    except sqlite3.Error as err:
        raise database_error(path, err) from None
    try:
        mode = switch_to_wal(conn)
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite could not switch to WAL mode (got {mode!r}); "
                             f"is the folder on a network file system? Use a local disk.")
        conn.execute("PRAGMA synchronous = FULL")
        migrate(conn, path)
    except sqlite3.Error as err:
        conn.close()
        raise database_error(path, err) from None
    except BaseException:
        conn.close()
        raise
    return conn


def inspect(path: Path, *, label: Path | None = None, deep: bool = False) -> int:
    """The schema version of an existing file, read without writing; StoreError unless it is a
    dsdcompare database this version can open, with our tables as real tables (see
    :func:`dsdcompare.store.guard.check_structure`: checked before any query over its data).
    ``deep`` also checks every page (``PRAGMA quick_check``). 0: an empty SQLite file (one
    being created)."""
    label = label or path
    with open(path, "rb") as fh:
        header = fh.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{label} is not a dsdcompare results database (not an SQLite file). "
                         f"It was left untouched; give --store a new path or an existing store.")
    try:
        conn = connect(path, readonly=True, time_limit_s=UNTRUSTED_STATEMENT_S)
        try:
            return _inspect_open(conn, label, deep)
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        if "not a database" not in str(err):  # damaged, unreadable, too slow: say which
            raise database_error(label, err) from None
        raise StoreError(f"{label} cannot be read as an SQLite database ({err}); it was left "
                         f"untouched. Give --store another path.") from None


def _inspect_open(conn: sqlite3.Connection, label, deep: bool) -> int:
    """:func:`inspect` on an open read-only connection."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master LIMIT 1000")}
    if app == 0 and version == 0 and not tables:
        return 0
    if app != APPLICATION_ID:
        raise StoreError(f"{label} is an SQLite database but not a dsdcompare results database "
                         f"(application_id {app:#x}); it was left untouched. Give --store a new "
                         f"path or an existing dsdcompare store.")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{label} was written by a newer dsdcompare (schema v{version}; this is "
                         f"dsdcompare {__version__}, schema v{SCHEMA_VERSION}); it was left "
                         f"untouched. Upgrade dsdcompare (git pull in its checkout, then pip "
                         f"install -e .) to open it.")
    missing = {"runs", "results", "images"} - tables
    if version < 1 or missing:
        raise StoreError(f"{label} is marked as a dsdcompare database but is damaged (schema "
                         f"v{version}, missing tables: {sorted(missing) or 'none'}); it was left "
                         f"untouched. Give --store another path.")
    check_structure(conn, version, label)
    if deep:
        conn._limit_s = None  # our own store: a large one may take a while, and that is fine
        problem = damage(conn)
        if problem:
            raise StoreError(f"{label} is damaged ({problem}); it was left untouched. "
                             f"`dsdcompare store check` lists the damage; restore it from a "
                             f"backup, or give --store a new path.")
    return version


def migrate(conn: sqlite3.Connection, label: Path) -> None:
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


def backup_before_migration(path: Path, version: int) -> None:
    """Copy ``path`` to ``<stem>.v<version>-backup<suffix>`` beside it (once per version)."""
    backup = path.with_name(f"{path.stem}.v{version}-backup{path.suffix}")
    if backup.exists():
        return
    src = connect(path, readonly=True)
    tmp = tmp_beside(backup)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
        os.replace(tmp, backup)
    finally:
        src.close()
        with contextlib.suppress(OSError):  # a failed backup leaves no temporary file
            tmp.unlink()
