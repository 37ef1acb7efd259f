"""Defences against damaged and crafted databases: a store or bundle may come from anyone.

- :func:`check_structure`: before any query over its data, a database must hold our tables as
  real tables with our columns, and no views, triggers, virtual tables or generated columns: a
  view named ``images`` that recurses forever would otherwise run inside our own queries
  (``PRAGMA trusted_schema = OFF`` does not stop a recursive view, only side effects).
- :func:`translated`: any SQLite error becomes a :class:`StoreError` naming the file, what is
  wrong (damaged, busy, read-only, too slow) and the remedy, instead of a traceback.
- :func:`read_only_media`: a WAL database on read-only media opens read-only (immutable) rather
  than being reported as "not an SQLite database".
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .common import StoreError

#: Longest one statement over a database that may come from anyone (a bundle, a file being
#: inspected) may run. Over our own real tables every query is a bounded scan taking a small
#: fraction of this; only a crafted file could reach it, and then it is stopped.
UNTRUSTED_STATEMENT_S = 60.0
#: Most schema objects (tables, indexes) a dsdcompare database holds; more is a crafted file.
MAX_SCHEMA_OBJECTS = 200


@functools.cache
def reference_tables(version: int) -> dict[str, frozenset[str]]:
    """table -> its columns in a database at schema ``version``, built in memory by the
    migrations themselves (so a new migration needs no second description here)."""
    from .schema import MIGRATIONS

    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in range(1, version + 1):
            MIGRATIONS[step](conn)
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {name: frozenset(row[1] for row in conn.execute(f"PRAGMA table_info({name})"))
                for name in names}
    finally:
        conn.close()


def check_structure(conn: sqlite3.Connection, version: int, label) -> None:
    """Refuse a database whose schema is not ours at ``version``: our tables must be real tables
    with (at least) our columns, none generated; no view, trigger or virtual table may exist.

    Reads only ``sqlite_master`` (bounded) and ``PRAGMA table_xinfo``: nothing a crafted schema
    can make expensive.
    """
    objects = conn.execute("SELECT type, name, sql FROM sqlite_master LIMIT ?",
                           (MAX_SCHEMA_OBJECTS + 1,)).fetchall()

    def crafted(why: str) -> StoreError:
        return StoreError(f"{label} is not a sound dsdcompare database: {why}. It was left "
                          f"untouched and nothing was read from it; give --store (or the "
                          f"upload) a store or bundle written by dsdcompare.")

    if len(objects) > MAX_SCHEMA_OBJECTS:
        raise crafted(f"its schema has more than {MAX_SCHEMA_OBJECTS} objects")
    kinds = {name: (kind, (sql or "").lstrip().upper()) for kind, name, sql in objects}
    for name, (kind, sql) in kinds.items():
        if kind in ("view", "trigger"):
            raise crafted(f"it defines the {kind} {name!r} (ours has none)")
        if kind == "table" and sql.startswith("CREATE VIRTUAL"):
            raise crafted(f"{name!r} is a virtual table (ours are plain tables)")
    for table, columns in reference_tables(version).items():
        if kinds.get(table, ("",))[0] != "table":
            raise crafted(f"{table!r} is not a table")
        found = {row[1]: row[6] for row in conn.execute(f"PRAGMA table_xinfo({table})")}
        missing = sorted(columns - set(found))
        if missing:
            raise crafted(f"table {table!r} lacks column(s) {', '.join(missing)}")
        generated = sorted(name for name, hidden in found.items() if hidden)
        if generated:
            raise crafted(f"table {table!r} has generated column(s) {', '.join(generated)}")


def damage(conn: sqlite3.Connection) -> str | None:
    """The first problem ``PRAGMA quick_check`` finds, on one line (None: the file is sound).
    An error SQLite raises while checking (a page it cannot read at all) is a problem too."""
    try:
        found = [msg for (msg,) in conn.execute("PRAGMA quick_check(5)") if msg != "ok"]
    except sqlite3.DatabaseError as err:
        found = [str(err)]
    if not found:
        return None
    text = " ".join(" ".join(found).replace("*** in database main ***", "").split())
    return text[:300] or "damaged"


def database_error(label, err: BaseException) -> StoreError:
    """A :class:`StoreError` for an SQLite error (or an OS error) on the store ``label``: what
    it means for the user and what to do."""
    text = str(err).strip() or type(err).__name__
    low = text.lower()
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        why = (f"is damaged ({text}). It was left untouched; `dsdcompare store check` lists the "
               f"damage. Restore it from a backup, or give --store a new path")
    elif "locked" in low or "busy" in low:
        why = (f"is busy: another process held its write lock too long ({text}). Retry when "
               f"that process has finished")
    elif "readonly" in low or "read-only" in low or "permission" in low:
        why = (f"cannot be written ({text}): the file or its folder is read-only. Give --store "
               f"a writable path, or open it read-only")
    elif "interrupted" in low:
        why = (f"took too long to answer a query and the query was stopped ({text}); a "
               f"database that does this is not one dsdcompare wrote")
    elif "full" in low or "i/o" in low or "no space" in low:
        why = f"cannot be written: the disk failed or is full ({text}). Free space and retry"
    elif "unable to open" in low:
        why = (f"cannot be opened ({text}): check that the path and its folder exist and are "
               f"readable, or give --store another path")
    else:
        why = f"failed: {text}"
    return StoreError(f"{label} {why}.")


@contextlib.contextmanager
def translated(label) -> Iterator[None]:
    """Run the block; an SQLite error in it becomes :func:`database_error`'s StoreError."""
    try:
        yield
    except sqlite3.Error as err:
        raise database_error(label, err) from None


def read_only_media(path: Path) -> bool:
    """Whether ``path`` must be opened ``immutable``: its folder cannot be written (read-only
    media), so SQLite could not create the ``-shm`` file a WAL database needs, and no writer can
    be changing it either. Raises :class:`StoreError` when a journal there holds writes that
    cannot be read without writing."""
    if os.access(path.parent, os.W_OK | os.X_OK) or Path(f"{path}-shm").exists():
        return False  # SQLite opens it normally (an existing -shm is read in memory)
    for suffix in ("-wal", "-journal"):
        journal = Path(f"{path}{suffix}")
        if journal.exists() and journal.stat().st_size > 0:
            raise StoreError(f"{path}: its folder is read-only and {journal.name} holds writes "
                             f"not yet in the database file; copy the store folder to a "
                             f"writable disk and open it there.")
    return True
