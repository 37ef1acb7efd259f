"""Reading the store: runs, results (the flat table the dashboard draws), side by side, what is
already done for a request (``completed`` / ``pending``), full records, and the CSV and JSON
exports of the results table. Each function takes the :class:`~dsdcompare.store.Store`; the
public documentation is on its methods."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path

from .. import __version__
from .common import StoreError, as_utc_iso, finite, iso, loads, now, plain
from .images import image_rows
from .records import request_key, result_frame, result_row
from .schema import SCHEMA_VERSION, param
from .targets import STDOUT, check_target, writing

_RUN_FIELDS = ("run_id", "created_at", "finished_at", "prompt", "negative_prompt", "seed",
               "steps", "guidance", "size", "images_per_prompt", "repeats", "warmup",
               "scheduler", "source", "note", "dsdcompare_version", "request_key", "n_results",
               "n_success")


def completed(store, request, model: str, source: str) -> bool:
    """See :meth:`dsdcompare.store.Store.completed`."""
    return completed_id(store, request, model, source) is not None


def completed_id(store, request, model: str, source: str) -> int | None:
    """The newest successful result of ``model`` from ``source`` for ``request`` whose image
    files are all present (what :meth:`~dsdcompare.store.Store.completed` looks for), or None."""
    rows = store._query(
        "SELECT r.id FROM results r JOIN runs ON runs.id = r.run_id WHERE runs.request_key = ?"
        " AND r.model = ? AND r.source = ? AND r.success = 1 ORDER BY r.id DESC",
        (request_key(request), model, source))
    return next((rid for (rid,) in rows if all(p.is_file() for p in images(store, rid))), None)


def pending(store, request, models, source: str | None = None) -> list:
    """See :meth:`dsdcompare.store.Store.pending`."""
    out = []
    for m in models:
        key = getattr(m, "key", m)
        src = source or getattr(m, "default_source", None)
        if src is None:
            raise StoreError(f"pending(): give source= for model key {key!r}")
        if not completed(store, request, key, src):
            out.append(m)
    return out


def runs(store, *, prompt=None, model=None, since=None, until=None, limit=None,
         text=None) -> list[dict]:
    """See :meth:`dsdcompare.store.Store.runs`."""
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
    out = [dict(zip(_RUN_FIELDS, row, strict=True)) for row in store._query(sql, args)]
    models: dict[int, list[str]] = {}
    ids = [item["run_id"] for item in out]
    for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
        chunk = ids[start:start + 500]
        for run_id, name in store._query(
                f"SELECT run_id, model FROM results WHERE run_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id", chunk):
            models.setdefault(run_id, []).append(name)
    for item in out:
        item["models"] = list(dict.fromkeys(models.get(item["run_id"], [])))  # stored order
        item["finished"] = item["finished_at"] is not None
    return out


def results(store, *, run_id=None, prompt=None, seed=None, model=None, source=None, steps=None,
            since=None, until=None, success=None):
    """See :meth:`dsdcompare.store.Store.results`."""
    where, args = _result_filters(dict(run_id=run_id, prompt=prompt, seed=seed, model=model,
                                       source=source, steps=steps, since=since, until=until,
                                       success=success))
    sql = ("SELECT r.*, runs.size AS run_size, runs.note AS run_note FROM results r "
           "JOIN runs ON runs.id = r.run_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id")
    with store._lock, store._translated():
        cur = store._connection().execute(sql, tuple(args))
        names = [d[0] for d in cur.description]
        raw = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    found = image_rows(store, [r["id"] for r in raw])
    return result_frame([result_row(r, found.get(r["id"], []), store._image_path) for r in raw])


def side_by_side(store, prompt: str, seed: int, *, source=None, steps=None):
    """See :meth:`dsdcompare.store.Store.side_by_side`."""
    df = results(store, prompt=prompt, seed=seed, source=source, steps=steps)
    if df.empty:
        return df
    ranked = df.assign(_ok=df["success"].astype(int)).sort_values(["_ok", "result_id"])
    latest = ranked.groupby("model", sort=False).tail(1)
    first_seen = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    latest = latest.sort_values("model", key=lambda s: s.map(first_seen))
    return latest.drop(columns="_ok").reset_index(drop=True)


def result_record(store, result_id: int) -> dict:
    """See :meth:`dsdcompare.store.Store.result_record`."""
    rows = store._query("SELECT run_id, created_at, record FROM results WHERE id = ?",
                        (result_id,))
    if not rows:
        raise StoreError(f"{store.path}: there is no result {result_id}")
    run_id, created_at, record = rows[0]
    out = loads(record)
    out.update(result_id=int(result_id), run_id=run_id, created_at=created_at,
               image_paths=[str(p) for p in images(store, result_id)])
    return out


def images(store, result_id: int) -> list[Path]:
    """See :meth:`dsdcompare.store.Store.images`."""
    rows = image_rows(store, [result_id]).get(result_id, [])
    return [store._image_path(rel) for rel, _ in rows]


def load_result(store, result_id: int, *, with_images: bool = True):
    """See :meth:`dsdcompare.store.Store.load_result`."""
    from PIL import Image

    from ..engine import Result

    record = result_record(store, result_id)
    paths = record.pop("image_paths")
    result = Result.from_dict(record)  # it ignores result_id, run_id and created_at
    if with_images:
        result.images = []
        for p in paths:
            with Image.open(p) as img:
                result.images.append(img.copy())
    return result


def _result_filters(given: dict) -> tuple[list[str], list]:
    where, args = [], []
    run_id = given.get("run_id")
    if run_id is not None and not isinstance(param(run_id), int):  # several runs
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
        args.append(as_utc_iso(since))
    if until is not None:
        if isinstance(until, date) and not isinstance(until, datetime):  # the whole day
            where.append(f"{column} < ?")
            args.append(as_utc_iso(until + timedelta(days=1)))
        else:
            where.append(f"{column} <= ?")
            args.append(as_utc_iso(until))


# --- exports ------------------------------------------------------------------------------------


def export_csv(store, path, **filters) -> Path:
    """See :meth:`dsdcompare.store.Store.export_csv`."""
    with writing(path, what="CSV export") as tmp:
        _export_frame(store, **filters).to_csv(tmp, index=False)
    return path if os.fspath(path) == STDOUT else Path(path)


def export_json(store, path, **filters) -> Path:
    """See :meth:`dsdcompare.store.Store.export_json`."""
    check_target(path, what="JSON export")  # before the work: a bad target costs nothing
    df = _export_frame(store, **filters, join_lists=False)
    rows = [plain(r) for r in df.to_dict(orient="records")]
    for row in rows:
        (record,), = store._query("SELECT record FROM results WHERE id = ?",
                                  (row["result_id"],))
        row["record"] = loads(record)
    run_ids = {r["run_id"] for r in rows}
    chosen = [r for r in runs(store) if r["run_id"] in run_ids]
    doc = {"format": "dsdcompare-results", "schema": SCHEMA_VERSION,
           "exported_at": now(), "dsdcompare": __version__,
           "runs": list(reversed(chosen)), "results": rows}
    text = json.dumps(finite(doc), indent=1, ensure_ascii=False, allow_nan=False)
    with writing(path, what="JSON export") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path if os.fspath(path) == STDOUT else Path(path)


def _export_frame(store, *, join_lists: bool = True, **filters):
    """:func:`results` with image paths relative to the store folder (an export says nothing
    about this machine's folders), ISO times, and lists joined with ``;`` for CSV."""
    df = results(store, **filters)
    root = store.root
    df["image_paths"] = [[Path(p).relative_to(root).as_posix() for p in ps]
                         for ps in df["image_paths"]]
    df["created_at"] = [iso(t) for t in df["created_at"]]
    if join_lists:
        for c in ("image_paths", "image_sha256"):
            df[c] = [";".join(v) for v in df[c]]
    return df
