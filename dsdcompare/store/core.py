"""The :class:`Store` facade: opening a store, writing runs and results, and the public methods
that delegate to the store's parts (queries, images, bundles, merge)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import __version__
from . import bundles as _bundles
from . import images as _images
from . import merge as _merge
from . import queries as _queries
from . import scores as _scores
from .common import DB_NAME, DuplicateResultError, StoreError, default_store_path, dumps, now
from .guard import damage, translated
from .records import FLAT_COLUMNS, flat_record, request_dict, request_key, result_record_dict
from .schema import open_database


class Store:
    """Runs, Results and their images in one SQLite database plus PNG files (see
    :mod:`dsdcompare.store`).

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
        self.path = given  # until opened (messages name it)
        try:
            if given.is_dir() or str(path or "").endswith(("/", os.sep)):  # "new/" is a folder
                given = given / DB_NAME
            bundle = _bundles.is_bundle(given)
            resolved = given.resolve() if given.exists() else given.absolute()
        except OSError as err:
            raise StoreError(f"{given} cannot be read ({err.strerror or err}); check the path "
                             f"and its permissions, or give --store another path.") from None
        if bundle:
            self.readonly = True
            self.bundle = resolved
            self._open_bundle(self.bundle)  # sets path and root (a temporary folder)
        else:
            self.readonly = bool(readonly)
            self.path = resolved
            self.root = self.path.parent  # the folder holding the database and images/
            self._conn = open_database(self.path, readonly=self.readonly)

    def __repr__(self) -> str:
        mode = "bundle" if self.bundle else ("read-only" if self.readonly else "read-write")
        return f"Store({str(self.bundle or self.path)!r}, {mode})"

    def _open_bundle(self, bundle: Path) -> None:
        """Extract ``bundle`` to a private temporary folder, verify it, and open it read-only."""
        tmp = Path(tempfile.mkdtemp(prefix="dsdcompare-bundle-"))
        self._tmpdir = tmp
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, True)
        self.path, self.root = tmp / DB_NAME, tmp
        try:
            self._conn = _bundles.open_bundle(bundle, tmp)
            _bundles.check_images(self, bundle)
        except BaseException:
            self.close()
            raise

    # --- writing ------------------------------------------------------------------------------

    def start_run(self, request, *, source: str | None = None, note: str = "",
                  resume: bool = False) -> int:
        """Record a new run of ``request`` (a :class:`dsdcompare.engine.Request`); return its id.

        ``source`` is the weight source of every model (None: each model's own). With
        ``resume=True`` the newest unfinished run of the same request and source (one whose
        writer was killed) is returned instead, if there is one, so a rerun completes it.
        """
        fields = request_dict(request)
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
                (now(), fields["prompt"], fields.get("negative_prompt") or "", fields["seed"],
                 fields["steps"], float(fields["guidance"]), fields.get("size"),
                 fields.get("images_per_prompt", 1), fields.get("repeats"), fields.get("warmup"),
                 fields.get("scheduler"), source, note, __version__, dumps(fields), key))
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
        # every score's checkpoint as a stable identity, never this machine's folder path
        record = _scores.identify_checkpoints(result_record_dict(result))
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
        """Insert the result row and its image rows (inside the caller's transaction)."""
        flat = flat_record(record)
        names = ("run_id", "created_at", *FLAT_COLUMNS, "record")
        values = (run_id, now(), *(flat[c] for c in FLAT_COLUMNS), dumps(record))
        cur = conn.execute(f"INSERT INTO results ({', '.join(names)}) "
                           f"VALUES ({', '.join('?' * len(names))})", values)
        result_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO images (result_id, idx, sha256, path, width, height, bytes) "
            "VALUES (?,?,?,?,?,?,?)",
            [(result_id, i, s["sha256"], s["path"], s["width"], s["height"], s["bytes"])
             for i, s in enumerate(stored)])
        _scores.insert_scores(conn, result_id, record)
        return result_id

    def finish_run(self, run_id: int) -> None:
        """Mark the run finished (unfinished runs are interrupted ones, or still running)."""
        with self._transaction() as conn:
            cur = conn.execute("UPDATE runs SET finished_at = ? WHERE id = ? AND finished_at IS "
                               "NULL", (now(), run_id))
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

    def _write_image(self, image) -> dict:
        """Write one image as PNG under ``images/`` named by its sha256; return its image row
        (with its bytes under ``data``, for :meth:`_restore_missing`)."""
        data, width, height = _images.encode_png(image)
        sha, rel = self._put_image_bytes(data)
        return {"sha256": sha, "path": rel, "width": width, "height": height,
                "bytes": len(data), "data": data}

    def _put_image_bytes(self, data: bytes) -> tuple[str, str]:
        """Write PNG bytes under ``images/`` (see :func:`dsdcompare.store.images.put_image_bytes`)."""
        return _images.put_image_bytes(self.root, data)

    def _restore_missing(self, stored: list[dict]) -> None:
        """Inside the write transaction, just before the rows that point at them are inserted:
        write again any file :meth:`prune` removed since it was written (``prune`` deletes only
        while holding the write lock, so once this has run the files stay until commit)."""
        for item in stored:
            if not (self.root / item["path"]).is_file():
                self._put_image_bytes(item["data"])

    # --- merging ------------------------------------------------------------------------------

    def merge(self, other) -> dict:
        """Copy every run and result of ``other`` (a store path, folder, bundle .zip or an open
        :class:`Store`) that this store lacks, with its images; return what happened.

        This is how the per-node stores of a multi-node ``bench`` become one: ids are renumbered,
        everything else (created/finished times, notes, full records, scores, images) is kept, so
        :meth:`completed` and resuming see the union. A run is the same run when its request key,
        source and ``created_at`` match, a result when its run, model and ``created_at`` match:
        merging twice adds nothing. Each run is copied in its own transaction, image files first
        (sha256-checked); a result whose image files are missing or damaged in ``other`` is
        skipped and reported in ``problems``, the rest is merged.

        Returns ``{"runs_added", "results_added", "results_present", "images_copied",
        "problems"}``.
        """
        return _merge.merge(self, other)

    # --- queries ------------------------------------------------------------------------------

    def completed(self, request, model: str, source: str) -> bool:
        """Whether a successful result of ``model`` from ``source`` for the same request is stored
        (same prompt, negative prompt, seed, steps, guidance, size, images, scheduler) with
        every image file present: a rerun can skip it."""
        return _queries.completed(self, request, model, source)

    def completed_result(self, request, model: str, source: str):
        """The newest :meth:`completed` Result of ``model`` for ``request`` (with its images),
        or None: what a resumed comparison shows for a model it skipped."""
        result_id = _queries.completed_id(self, request, model, source)
        return None if result_id is None else self.load_result(result_id)

    def pending(self, request, models: Iterable, source: str | None = None) -> list:
        """The models of ``models`` (ModelSpecs or keys) not :meth:`completed` for ``request``.

        ``source`` None means each ModelSpec's ``default_source`` (required for plain keys).
        """
        return _queries.pending(self, request, models, source)

    def runs(self, *, prompt: str | None = None, model: str | None = None, since=None,
             until=None, limit: int | None = None, text: str | None = None) -> list[dict]:
        """Runs, newest first, as dicts: ``run_id, created_at, finished_at, finished, prompt,
        negative_prompt, seed, steps, guidance, size, images_per_prompt, repeats, warmup,
        scheduler, source, note, dsdcompare_version, request_key, n_results, n_success, models``.

        Filters: ``prompt`` (exact), ``text`` (substring of the prompt, any case), ``model`` (runs
        with a result of that model), ``since`` / ``until`` (datetime, date or ISO string; a date
        for ``until`` includes that whole day; naive datetimes are UTC).
        """
        return _queries.runs(self, prompt=prompt, model=model, since=since, until=until,
                            limit=limit, text=text)

    def results(self, *, run_id: int | Iterable[int] | None = None, prompt: str | None = None,
                seed: int | None = None, model: str | None = None, source: str | None = None,
                steps: int | None = None, since=None, until=None, success: bool | None = None,
                metric: str | None = None):
        """One row per stored result, oldest first, as a pandas DataFrame of
        :data:`~dsdcompare.store.records.RESULT_COLUMNS` (documented in
        :mod:`dsdcompare.store.records`). Every filter is optional and exact; ``run_id`` may be
        one id or a list of ids; ``since`` / ``until`` as in :meth:`runs`.

        ``metric`` (``hps``, ``pickscore``, ``imagereward``, ``lpips``; ``clip`` or None: the
        table as it is) adds that metric's values as a column of its name and makes the
        ``score_*`` provenance columns describe it (:func:`dsdcompare.store.scores.metric_view`):
        the frame :func:`dsdcompare.stats.summary` takes for that metric."""
        df = _queries.results(self, run_id=run_id, prompt=prompt, seed=seed, model=model,
                              source=source, steps=steps, since=since, until=until,
                              success=success)
        if metric is None or _scores.check_metric(metric) == "clip":
            return df
        return _scores.metric_view(df, self.scores(metric=metric), metric)

    def scores(self, *, metric: str | None = None, result_id=None, run_id=None,
               model: str | None = None, checkpoint: str | None = None):
        """Every stored score in long format, one row per result and metric, as a pandas
        DataFrame of :data:`~dsdcompare.store.scores.SCORE_COLUMNS`: ``result_id, run_id,
        model, metric`` (clip | hps | pickscore | imagereward | lpips), ``value`` (NaN: not
        scored, see ``error``), ``per_image`` (list), and the provenance ``backend,
        checkpoint`` (a stable identity), ``scale, higher_is_better, standin, error, note``.
        Filters are optional and exact; ``result_id`` / ``run_id`` may be one id or a list."""
        return _scores.scores(self, metric=metric, result_id=result_id, run_id=run_id,
                              model=model, checkpoint=checkpoint)

    def metrics(self) -> list[str]:
        """The metrics with at least one stored value, CLIP first, then in name order."""
        found = {m for (m,) in self._query("SELECT DISTINCT metric FROM scores WHERE value IS "
                                           "NOT NULL")}
        return sorted(found, key=lambda m: (m != "clip", m))

    def side_by_side(self, prompt: str, seed: int, *, source: str | None = None,
                     steps: int | None = None):
        """The latest result per model for ``prompt`` + ``seed`` (a successful one when there is
        one, else the latest failure), in first-stored order of the models: one row per model."""
        return _queries.side_by_side(self, prompt, seed, source=source, steps=steps)

    def result_record(self, result_id: int) -> dict:
        """The full stored Result dict (``Result.to_dict()``: timing, score with per_image, env,
        options, error_detail), plus ``result_id``, ``run_id``, ``created_at`` and
        ``image_paths`` (absolute, as strings)."""
        return _queries.result_record(self, result_id)

    def images(self, result_id: int) -> list[Path]:
        """Absolute paths of a result's PNG files, in order (checked to lie inside the store)."""
        return _queries.images(self, result_id)

    def load_result(self, result_id: int, *, with_images: bool = True):
        """Rebuild a :class:`dsdcompare.engine.Result` (Timing, Score and images included)."""
        return _queries.load_result(self, result_id, with_images=with_images)

    # --- checks and image files ---------------------------------------------------------------

    def verify(self) -> list[str]:
        """Problems found (empty when sound): SQLite's integrity check, records that do not
        parse, image files missing or whose sha256 differs from their name."""
        return _images.verify(self)

    def check_database(self) -> None:
        """Raise :class:`StoreError` unless every page of the database reads back sound
        (``PRAGMA quick_check``: quick next to :meth:`verify`, which also hashes every image)."""
        with self._lock, self._translated():
            problem = damage(self._connection())
        if problem:
            raise StoreError(f"{self.bundle or self.path} is damaged ({problem}); it was left "
                             f"untouched. `dsdcompare store check` lists the damage.")

    def unreferenced(self, *, min_age_s: float = 0.0) -> list[Path]:
        """Files under ``images/`` no result refers to, untouched for ``min_age_s`` seconds:
        what a writer killed between writing its PNGs and committing their row leaves (and its
        half-written ``.tmp`` files). Harmless but disk space; :meth:`prune` removes them."""
        return _images.unreferenced(self, min_age_s=min_age_s)

    def prune(self, *, min_age_s: float = 3600.0) -> tuple[int, int]:
        """Delete :meth:`unreferenced` files older than ``min_age_s``; return (files, bytes).

        Holds the write lock while it decides and deletes, and every writer re-checks its files
        under that lock before committing rows (and writes back any that are gone), so a result
        being stored concurrently is never left pointing at a deleted file. The age margin
        (default an hour) only spares in-flight writers that rewrite.
        """
        return _images.prune(self, min_age_s=min_age_s)

    # --- export -------------------------------------------------------------------------------

    def export_csv(self, path, **filters) -> Path:
        """Write :meth:`results` (``filters`` as there) to a CSV file; return its path.

        Lists are joined with ``;``; ``image_paths`` are relative to the store folder (the
        export says nothing about this machine's folders); times are UTC ISO 8601. ``path`` may
        also be ``-`` (standard output) or a device; a folder, a missing folder or a symbolic
        link is refused (see :mod:`dsdcompare.store.targets`), as for every export.
        """
        return _queries.export_csv(self, path, **filters)

    def export_json(self, path, **filters) -> Path:
        """Write a JSON document ``{"format", "schema", "exported_at", "dsdcompare", "runs":
        [...], "results": [{...flat row..., "record": full Result dict}]}``; return its path.

        Flat rows are :meth:`results` rows with ``image_paths`` relative to the store folder;
        NaN and infinities become ``null`` (standard JSON).
        """
        return _queries.export_json(self, path, **filters)

    def export_bundle(self, path, *, run_ids: Iterable[int] | None = None) -> Path:
        """Write one ``.zip`` with the database (a consistent copy) and its images; return it.

        The zip holds ``results.sqlite`` (rollback-journal mode, so it opens read-only
        anywhere), ``images/ab/<sha256>.png`` for every image the copy refers to, and
        ``manifest.json`` (format, versions, counts, the sha256 of the database and of every
        image). ``run_ids`` keeps only those runs. Open it with ``Store("bundle.zip")`` or
        ``--store bundle.zip``: that is how a GPU run is shown on the CPU-only demo.
        """
        return _bundles.export_bundle(self, path, run_ids=run_ids)

    # --- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (and remove a bundle's temporary folder)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Store:
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
        with self._lock, self._translated():
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

    def _translated(self):
        """A context in which an SQLite error (a damaged file, a busy or read-only database)
        becomes a StoreError naming this store and the remedy."""
        return translated(self.bundle or self.path)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock, self._translated():
            return self._connection().execute(sql, tuple(args)).fetchall()

    def _image_path(self, rel: str) -> Path:
        """The absolute path of a stored image path, checked to lie inside the store folder
        (see :func:`dsdcompare.store.images.checked_path`)."""
        if self._root_real is None:
            self._root_real = self.root.resolve()
        return _images.checked_path(self.root, self._root_real, rel, self.bundle or self.path)
