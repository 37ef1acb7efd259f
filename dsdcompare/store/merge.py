"""Merging another store (or bundle) in: how the per-node stores of a multi-node ``bench``
become one (``python -m dsdcompare store --store all/ merge node0/ node1/``)."""

from __future__ import annotations

import hashlib
import sqlite3

from .common import StoreError


def merge(store, other) -> dict:
    """See :meth:`dsdcompare.store.Store.merge`."""
    store._check_writable()
    opened = not isinstance(other, type(store))
    src = type(store)(other, readonly=True) if opened else other
    try:
        if src.path.resolve() == store.path.resolve():
            raise StoreError(f"{store.path}: cannot merge a store into itself")
        report = {"runs_added": 0, "results_added": 0, "results_present": 0,
                  "images_copied": 0, "problems": []}
        run_cols = [c for c in _columns(store, "runs") if c != "id"]
        res_cols = [c for c in _columns(store, "results") if c not in ("id", "run_id")]
        for run in src._query(f"SELECT id, {', '.join(run_cols)} FROM runs ORDER BY id"):
            _merge_run(store, src, run[0], dict(zip(run_cols, run[1:], strict=True)), res_cols, report)
        return report
    finally:
        if opened:
            src.close()


def _merge_run(store, src, src_run: int, fields: dict, res_cols: list[str],
               report: dict) -> None:
    """Copy one run of ``src`` (``fields``: its columns but id) and those of its results not
    yet here (``res_cols``: the result columns copied as they are)."""
    label = src.bundle or src.path
    results = src._query(f"SELECT id, {', '.join(res_cols)} FROM results WHERE run_id = ? "
                         f"ORDER BY id", (src_run,))
    # 1. Image files first, outside the transaction (as add_result does)
    images: dict[int, list[dict]] = {}
    for row in results:
        try:
            images[row[0]] = _copy_images(store, src, row[0])
        except StoreError as err:
            report["problems"].append(f"{label}: run {src_run}, result {row[0]} "
                                      f"({dict(zip(res_cols, row[1:], strict=True))['model']}) not "
                                      f"merged: {err}")
    # 2. The run and its new results in one transaction
    with store._transaction() as conn:
        run_id = _find_or_add_run(conn, fields, report)
        for row in results:
            if row[0] not in images:
                continue
            values = dict(zip(res_cols, row[1:], strict=True))
            if conn.execute("SELECT 1 FROM results WHERE run_id = ? AND model = ? AND "
                            "created_at = ?", (run_id, values["model"],
                                               values["created_at"])).fetchone():
                report["results_present"] += 1
                continue
            cur = conn.execute(
                f"INSERT INTO results (run_id, {', '.join(res_cols)}) "
                f"VALUES (?, {', '.join('?' * len(res_cols))})", (run_id, *row[1:]))
            mine = images[row[0]]
            store._restore_missing(mine)
            conn.executemany(
                "INSERT INTO images (result_id, idx, sha256, path, width, height, bytes)"
                " VALUES (?,?,?,?,?,?,?)",
                [(int(cur.lastrowid), i["idx"], i["sha256"], i["path"], i["width"], i["height"],
                  i["bytes"]) for i in mine])
            _copy_scores(conn, src, row[0], int(cur.lastrowid))
            report["results_added"] += 1
            report["images_copied"] += len(mine)


def _find_or_add_run(conn: sqlite3.Connection, fields: dict, report: dict) -> int:
    """The id here of the run ``fields`` describe (same request key, source and creation time;
    its finished time is taken over when ours is unset), added when there is none."""
    found = conn.execute(
        "SELECT id FROM runs WHERE request_key IS ? AND source IS ? AND created_at = ?",
        (fields["request_key"], fields["source"], fields["created_at"])).fetchone()
    if found:
        run_id = int(found[0])
        if fields["finished_at"] is not None:
            conn.execute("UPDATE runs SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                         (fields["finished_at"], run_id))
        return run_id
    cur = conn.execute(f"INSERT INTO runs ({', '.join(fields)}) "
                       f"VALUES ({', '.join('?' * len(fields))})", tuple(fields.values()))
    report["runs_added"] += 1
    return int(cur.lastrowid)


def _copy_images(store, src, result_id: int) -> list[dict]:
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
        out.append({"idx": idx, "sha256": sha, "path": store._put_image_bytes(data)[1],
                    "width": width, "height": height, "bytes": size, "data": data})
    return out


def _copy_scores(conn: sqlite3.Connection, src, src_result: int, result_id: int) -> None:
    """Copy one result's ``scores`` rows from ``src`` (schema v4: both stores are current) under
    its new id here, provenance and all (inside the caller's transaction)."""
    columns = [c for c in _columns(src, "scores") if c != "result_id"]
    rows = src._query(f"SELECT {', '.join(columns)} FROM scores WHERE result_id = ?",
                      (src_result,))
    conn.executemany(f"INSERT INTO scores (result_id, {', '.join(columns)}) "
                     f"VALUES (?, {', '.join('?' * len(columns))})",
                     [(result_id, *row) for row in rows])


def _columns(store, table: str) -> list[str]:
    return [row[1] for row in store._query(f"PRAGMA table_info({table})")]
