"""Scores in the store (schema v4): one row per result and metric, with its provenance.

Table ``scores``: ``(result_id, metric)`` -> ``value`` (the Score's mean; NULL when there is no
score), ``per_image`` (JSON list, None where an image was excluded), ``backend``, ``checkpoint``
(a stable identity, see :func:`stable_checkpoint`), ``scale``, ``higher_is_better``,
``standin``, ``error`` (why there is no value) and ``note`` (a caveat, e.g. "HPS v2.1, not v2.0"
or why a checkpoint could not be identified). ``metric`` is ``clip``, ``hps``, ``pickscore``,
``imagereward`` or ``lpips``. The ``results`` table keeps its CLIP columns (``clip_score``,
``score_*``): the CLIP row here mirrors them.

Scores are comparable only within one metric, checkpoint and scale: :func:`metric_view` gives a
results frame whose ``score_*`` columns describe the chosen metric, so every summary groups by
that metric's checkpoint and scale and never pools two of them.

Checkpoint identity: a score's checkpoint is recorded as a name that is the same on every
machine (``org/name@commit``, ``name@sha256:<16 hex>``), never the folder it was read from, so
the same scorer in two clones, a merged store or a bundle is one checkpoint.
:func:`stable_checkpoint` turns a local path into that identity when writing, and the v4
migration rewrites stored paths that still exist here (others keep their text and get a note).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .common import StoreError, dumps, loads

#: The table schema v4 adds (run statement by statement inside the migration's transaction).
V4_TABLES = """
CREATE TABLE scores (
    result_id INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    value REAL,
    per_image TEXT NOT NULL DEFAULT '[]',
    backend TEXT,
    checkpoint TEXT,
    scale TEXT,
    higher_is_better INTEGER,
    standin INTEGER,
    error TEXT,
    note TEXT,
    PRIMARY KEY (result_id, metric)
);
CREATE INDEX scores_metric ON scores (metric, checkpoint, scale)
"""

#: Columns of :func:`scores` (the long-format frame), in order.
SCORE_COLUMNS = ("result_id", "run_id", "model", "metric", "value", "per_image", "backend",
                 "checkpoint", "scale", "higher_is_better", "standin", "error", "note")
#: The columns of the ``scores`` table, in order.
_TABLE_COLUMNS = ("result_id", "metric", "value", "per_image", "backend", "checkpoint", "scale",
                  "higher_is_better", "standin", "error", "note")
#: Prefix of open_clip checkpoints read from a local folder (metrics.OPEN_CLIP_PREFIX + schema).
_OPEN_CLIP_LOCAL = "open_clip:local-dir:"
#: Note recorded when a stored checkpoint is a path that does not exist here.
UNIDENTIFIED_NOTE = ("checkpoint recorded as a folder path that is not on this machine: its "
                     "content identity could not be computed")


# --- identity -----------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    """A checkpoint written as a file system path (absolute, ~ or ./), not a hub id or a name."""
    return (os.path.isabs(text) or text.startswith(("~", "./", "../", ".\\"))
            or (len(text) > 2 and text[1] == ":" and text[2] in "\\/"))


def stable_checkpoint(checkpoint: str | None) -> tuple[str | None, str | None]:
    """``(identity, note)`` for a stored checkpoint name.

    A path to a folder or file that exists here becomes its content identity
    (:func:`dsdcompare.scorers.checkpoint_identity`: ``name@sha256:...``, or ``org/name@commit``
    inside a hub cache); ``open_clip:local-dir:<path>`` keeps its prefix. A path that does not
    exist here is kept as it is, with :data:`UNIDENTIFIED_NOTE`. Anything else (a hub id, ``tiny``,
    an identity already) is returned unchanged.
    """
    if not isinstance(checkpoint, str) or not checkpoint:
        return checkpoint, None
    prefix, text = "", checkpoint
    if checkpoint.startswith(_OPEN_CLIP_LOCAL):
        prefix, text = _OPEN_CLIP_LOCAL, checkpoint[len(_OPEN_CLIP_LOCAL):]
    elif not _looks_like_path(checkpoint):
        return checkpoint, None
    path = Path(text).expanduser()
    if not path.exists():
        return checkpoint, UNIDENTIFIED_NOTE
    from ..scorers.weights import checkpoint_identity  # torch: only when a path is stored

    try:
        return prefix + checkpoint_identity(path), None
    except (OSError, ValueError) as err:  # unreadable, or a folder with no files
        return checkpoint, f"{UNIDENTIFIED_NOTE} ({type(err).__name__})"


def identify_checkpoints(record: dict) -> dict:
    """``record`` (a Result record) with every score's checkpoint made a stable identity
    (:func:`stable_checkpoint`; a note is added when a path cannot be identified). In place."""
    for score in _record_score_dicts(record):
        identity, note = stable_checkpoint(score.get("checkpoint"))
        score["checkpoint"] = identity
        if note and note not in (score.get("note") or ""):
            score["note"] = "; ".join(n for n in (score.get("note"), note) if n)
    return record


def _record_score_dicts(record: dict) -> list[dict]:
    """Every score dict of a record, each once (``score`` is also ``scores["clip"]``)."""
    found: list[dict] = []
    for score in [record.get("score"), *(record.get("scores") or {}).values()]:
        if isinstance(score, dict) and all(score is not f for f in found):
            found.append(score)
    return found


# --- rows ---------------------------------------------------------------------------------------


def record_scores(record: dict) -> dict[str, dict]:
    """metric -> score dict of a Result record: its ``scores``, and its ``score`` as ``clip``
    when ``scores`` has no CLIP entry (records written before v4 have only ``score``)."""
    out = {str(m): s for m, s in (record.get("scores") or {}).items() if isinstance(s, dict)}
    if isinstance(record.get("score"), dict) and "clip" not in out:
        out["clip"] = record["score"]
    return out


def _higher_is_better(metric: str, score: dict) -> int | None:
    """The score's direction: recorded with it by ``Result.to_dict``; records written before
    v4 hold CLIP scores only, on scales where higher is better (``metrics.HIGHER_IS_BETTER``)."""
    given = score.get("higher_is_better")
    if given is not None:
        return int(bool(given))
    return 1 if metric == "clip" and score.get("scale") else None


def _finite(value):
    return value if isinstance(value, (int, float)) and value == value and abs(value) != float("inf") \
        else None


def score_rows(result_id: int, record: dict) -> list[tuple]:
    """The ``scores`` table rows of one stored Result record (columns of :data:`_TABLE_COLUMNS`)."""
    rows = []
    for metric, s in record_scores(record).items():
        standin = s.get("standin")
        rows.append((result_id, metric, _finite(s.get("value")), dumps(s.get("per_image") or []),
                     s.get("backend"), s.get("checkpoint"), s.get("scale"),
                     _higher_is_better(metric, s), None if standin is None else int(bool(standin)),
                     s.get("error"), s.get("note")))
    return rows


def insert_scores(conn: sqlite3.Connection, result_id: int, record: dict) -> None:
    """Insert the score rows of one result (inside the caller's transaction)."""
    rows = score_rows(result_id, record)
    if not rows:
        return
    conn.executemany(f"INSERT INTO scores ({', '.join(_TABLE_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(_TABLE_COLUMNS))})", rows)


# --- the migration ------------------------------------------------------------------------------


def migrate_to_v4(conn: sqlite3.Connection) -> None:
    """v4: the ``scores`` table, filled from every stored record (its CLIP score, and any other
    scores it holds), with checkpoint paths that exist here rewritten to their identity in the
    scores, the results' ``score_checkpoint`` and the records (inside the caller's transaction)."""
    for statement in (s.strip() for s in V4_TABLES.split(";")):
        if statement:
            conn.execute(statement)
    rows = conn.execute("SELECT id, record FROM results ORDER BY id").fetchall()
    for result_id, text in rows:
        try:
            record = loads(text)
        except (TypeError, ValueError):  # a damaged record: nothing to migrate from it
            continue
        if not isinstance(record, dict):
            continue
        before = json.dumps(record, sort_keys=True, default=str)
        identify_checkpoints(record)
        if json.dumps(record, sort_keys=True, default=str) != before:
            clip = record.get("score") if isinstance(record.get("score"), dict) else {}
            conn.execute("UPDATE results SET record = ?, score_checkpoint = ? WHERE id = ?",
                         (dumps(record), clip.get("checkpoint"), result_id))
        insert_scores(conn, result_id, record)


# --- reading ------------------------------------------------------------------------------------


def scores(store, *, metric: str | None = None, result_id=None, run_id=None,
           model: str | None = None, checkpoint: str | None = None):
    """See :meth:`dsdcompare.store.Store.scores`."""
    import pandas as pd

    where, args = [], []
    for value, column in ((metric, "s.metric"), (model, "r.model"), (checkpoint, "s.checkpoint")):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    for value, column in ((result_id, "s.result_id"), (run_id, "r.run_id")):
        if value is None:
            continue
        ids = [int(value)] if isinstance(value, (int, str)) or hasattr(value, "item") \
            else [int(i) for i in value]
        where.append(f"{column} IN ({','.join('?' * len(ids)) or 'NULL'})")
        args.extend(ids)
    sql = ("SELECT s.result_id, r.run_id, r.model, s.metric, s.value, s.per_image, s.backend, "
           "s.checkpoint, s.scale, s.higher_is_better, s.standin, s.error, s.note FROM scores s "
           "JOIN results r ON r.id = s.result_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.result_id, s.metric")
    rows = [list(r) for r in store._query(sql, args)]
    for row in rows:
        row[5] = loads(row[5]) or []
    df = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    for c, dtype in (("result_id", "int64"), ("run_id", "int64"), ("value", "float64"),
                     ("higher_is_better", "boolean"), ("standin", "boolean")):
        df[c] = df[c].astype(dtype)
    for c in ("model", "metric", "backend", "checkpoint", "scale", "error", "note"):  # None, not NaN
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def metric_column(metric: str) -> str:
    """The results-frame column holding ``metric``'s values (:func:`dsdcompare.stats.column_of`:
    ``clip_score`` for CLIP, the table's own column, else the metric's name)."""
    from ..stats import column_of

    return column_of(metric)


def metric_view(results, score_frame, metric: str):
    """``results`` (a :meth:`Store.results` frame) seen through ``metric``.

    For ``clip`` the frame is returned as it is. For another metric, its values go into column
    :func:`metric_column` (NaN where a result has none) and the provenance columns
    ``score_backend``, ``score_checkpoint``, ``score_scale``, ``score_standin`` and
    ``score_error`` describe that metric's score, so grouping by checkpoint and scale (what
    :mod:`dsdcompare.stats` does) keeps its checkpoints apart; ``clip_score`` is blanked, since
    the provenance columns no longer describe it. ``score_frame`` is :func:`scores`' output.
    """
    if metric_column(metric) == "clip_score":
        return results
    mine = score_frame[score_frame["metric"] == metric].drop_duplicates("result_id", keep="last")
    mine = mine.set_index("result_id")
    out = results.copy()
    ids = out["result_id"]
    out[metric_column(metric)] = ids.map(mine["value"]).astype("float64")
    out["clip_score"] = float("nan")
    for column in ("backend", "checkpoint", "scale", "error"):
        out[f"score_{column}"] = ids.map(mine[column]).astype(object).where(ids.isin(mine.index), None)
    out["score_standin"] = ids.map(mine["standin"]).astype("boolean")
    return out


def check_metric(metric: str) -> str:
    """``metric`` if it is a per-image metric name, else a :class:`StoreError` listing them."""
    from ..scorers import METRICS

    if metric_column(metric) == "clip_score":
        return "clip"
    if metric not in METRICS:
        raise StoreError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


__all__ = ["SCORE_COLUMNS", "UNIDENTIFIED_NOTE", "V4_TABLES", "check_metric", "identify_checkpoints",
           "insert_scores", "metric_column", "metric_view", "migrate_to_v4", "record_scores",
           "score_rows", "scores", "stable_checkpoint"]
