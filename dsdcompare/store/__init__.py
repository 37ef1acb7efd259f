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

Writing and resuming (what :func:`dsdcompare.record.run_request` does for the CLI, bench and the
dashboard)::

    todo = store.pending(request, models, source)          # models not yet done for this request
    run_id = store.start_run(request, source=source, resume=True)   # reuses an interrupted run
    compare(request, todo, source=source, on_result=lambda r: store.add_result(run_id, r))
    store.finish_run(run_id)

Merging: :meth:`Store.merge` copies another store's (or bundle's) runs, results and images in,
keeping their times and records and skipping what is already there; it combines the per-node
stores of a multi-node ``bench`` (``python -m dsdcompare store --store all/ merge node0/ node1/``).

The parts: :mod:`~dsdcompare.store.core` (the :class:`Store` facade and writing),
:mod:`~dsdcompare.store.schema` (tables, migrations, opening a file safely),
:mod:`~dsdcompare.store.records` (row builders and the columns of :meth:`Store.results`),
:mod:`~dsdcompare.store.queries` (reading and CSV/JSON exports),
:mod:`~dsdcompare.store.images` (content-addressed files, checks, prune),
:mod:`~dsdcompare.store.bundles` and :mod:`~dsdcompare.store.merge`,
:mod:`~dsdcompare.store.reviews` (blind A/B reviews and their votes, schema v3; a merge copies
runs and results, not reviews), :mod:`~dsdcompare.store.scores` (one score per result and metric
with its provenance, schema v4; merges and bundles carry them), :mod:`~dsdcompare.store.guard` (a file may come from anyone: the
structural schema check before any query, time-limited statements, SQLite errors as
StoreErrors), :mod:`~dsdcompare.store.targets` (where an export may be written: files replaced
atomically, devices and ``-`` written through, links refused) and
:mod:`~dsdcompare.store.uploads` (bundles uploaded to the dashboard, capped, LRU).
"""

from __future__ import annotations

from .common import DB_NAME, DEFAULT_STORE, STORE_ENV, DuplicateResultError, StoreError, default_store_path
from .core import Store
from .records import RESULT_COLUMNS, flat_record, request_key, result_record_dict
from .schema import APPLICATION_ID, BUSY_TIMEOUT_S, MIGRATIONS, SCHEMA_VERSION
from .scores import SCORE_COLUMNS, metric_view

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "DB_NAME", "DEFAULT_STORE", "DuplicateResultError",
           "MIGRATIONS", "RESULT_COLUMNS", "SCHEMA_VERSION", "SCORE_COLUMNS", "STORE_ENV", "Store", "StoreError",
           "default_store_path", "flat_record", "metric_view", "request_key",
           "result_record_dict"]
