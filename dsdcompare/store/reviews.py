"""Reviews in the store (schema v3): named, frozen sets of image pairs, and the votes cast on them.

Tables (see :data:`V3_TABLES`):

- ``reviews``: one row per review: ``name`` (unique), ``owner``, ``created_at``, ``models``
  (JSON list of registry keys, baseline first), ``selection`` (JSON: how the pairs were chosen),
  ``criteria`` / ``criteria_at`` (the decision criteria, stated before looking; NULL until
  stated), ``decision`` (JSON: verdict, who, when, notes; NULL until decided).
- ``review_pairs``: ``(review_id, idx)`` -> the prompt, category, seed, the two models and the
  two stored results whose first image is shown, and whether both images come from the same
  initial latents. A pair is never changed once the review exists.
- ``votes``: ``(review_id, pair_idx, reviewer)`` -> ``choice`` (``a``, ``b``, ``tie`` or
  ``both_bad``, in model terms, never left/right), ``left_is_a`` (which side model A was shown
  on, for position-bias checks), ``comment``, ``created_at`` / ``updated_at``. The primary key
  makes it one vote per reviewer and pair: voting again replaces the vote (an upsert inside one
  ``BEGIN IMMEDIATE`` transaction, so reviewers voting at once from several processes lose and
  duplicate nothing).

Deleting results (a bundle of a few runs) removes the pairs that show them and their votes.
The functions take the :class:`~dsdcompare.store.Store`; values are plain dicts and JSON text is
decoded here, so :mod:`dsdcompare.review` never writes SQL.
"""

from __future__ import annotations

import sqlite3

from .. import __version__
from .common import StoreError, dumps, loads, now

#: The tables schema v3 adds (run statement by statement inside the migration's transaction).
V3_TABLES = """
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    owner TEXT NOT NULL,
    models TEXT NOT NULL,
    selection TEXT NOT NULL,
    criteria TEXT,
    criteria_at TEXT,
    decision TEXT,
    dsdcompare_version TEXT
);
CREATE TABLE review_pairs (
    review_id INTEGER NOT NULL REFERENCES reviews (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    category TEXT,
    seed INTEGER NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    result_a INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    result_b INTEGER NOT NULL REFERENCES results (id) ON DELETE CASCADE,
    latent_matched INTEGER NOT NULL,
    PRIMARY KEY (review_id, idx)
);
CREATE INDEX review_pairs_result_a ON review_pairs (result_a);
CREATE INDEX review_pairs_result_b ON review_pairs (result_b);
CREATE TABLE votes (
    review_id INTEGER NOT NULL,
    pair_idx INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    left_is_a INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (review_id, pair_idx, reviewer),
    FOREIGN KEY (review_id, pair_idx) REFERENCES review_pairs (review_id, idx) ON DELETE CASCADE
)
"""

#: Vote choices as stored (model terms: ``a`` = model A's image is better).
VOTE_CHOICES = ("a", "b", "tie", "both_bad")

_PAIR_FIELDS = ("idx", "prompt", "category", "seed", "model_a", "model_b", "result_a", "result_b",
                "latent_matched")
_VOTE_FIELDS = ("pair_idx", "reviewer", "choice", "left_is_a", "comment", "created_at",
                "updated_at")


def migrate_to_v3(conn: sqlite3.Connection) -> None:
    """v3: the ``reviews``, ``review_pairs`` and ``votes`` tables (inside the caller's transaction)."""
    for statement in (s.strip() for s in V3_TABLES.split(";")):
        if statement:
            conn.execute(statement)


# --- writing ------------------------------------------------------------------------------------


def add_review(store, *, name: str, owner: str, models: list[str], selection: dict,
               pairs: list[dict], criteria: list[dict] | None = None) -> int:
    """Store a new review and its pairs in one transaction; return its id.

    ``pairs`` are dicts with the keys of :data:`_PAIR_FIELDS` but ``idx`` (given in order).
    Raises :class:`StoreError` when a review of that name exists or a result id is unknown.
    """
    stamp = now()
    with store._transaction() as conn:
        if conn.execute("SELECT 1 FROM reviews WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"{store.path}: a review named {name!r} exists already; choose "
                             f"another name (reviews are never overwritten)")
        cur = conn.execute(
            "INSERT INTO reviews (name, created_at, owner, models, selection, criteria, "
            "criteria_at, dsdcompare_version) VALUES (?,?,?,?,?,?,?,?)",
            (name, stamp, owner, dumps(list(models)), dumps(selection),
             dumps(criteria) if criteria is not None else None,
             stamp if criteria is not None else None, __version__))
        review_id = int(cur.lastrowid)
        try:
            conn.executemany(
                "INSERT INTO review_pairs (review_id, idx, prompt, category, seed, model_a, "
                "model_b, result_a, result_b, latent_matched) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(review_id, i, p["prompt"], p.get("category"), p["seed"], p["model_a"],
                  p["model_b"], p["result_a"], p["result_b"], int(bool(p["latent_matched"])))
                 for i, p in enumerate(pairs)])
        except sqlite3.IntegrityError as err:
            raise StoreError(f"{store.path}: review {name!r} refers to a result that is not "
                             f"stored ({err}); create it again from the current store") from None
    return review_id


def cast_vote(store, review_id: int, pair_idx: int, reviewer: str, choice: str, *,
              left_is_a: bool, comment: str = "") -> bool:
    """Record ``reviewer``'s vote on one pair, replacing an earlier one; True when it replaced.

    One transaction holding the write lock from the start, so concurrent voters (threads of a
    dashboard, or processes) never lose or duplicate a vote.
    """
    if choice not in VOTE_CHOICES:
        raise StoreError(f"vote choice {choice!r} is not one of {list(VOTE_CHOICES)}")
    stamp = now()
    with store._transaction() as conn:
        if conn.execute("SELECT 1 FROM review_pairs WHERE review_id = ? AND idx = ?",
                        (review_id, pair_idx)).fetchone() is None:
            raise StoreError(f"{store.path}: review {review_id} has no pair {pair_idx}")
        existed = conn.execute(
            "SELECT 1 FROM votes WHERE review_id = ? AND pair_idx = ? AND reviewer = ?",
            (review_id, pair_idx, reviewer)).fetchone() is not None
        conn.execute(
            "INSERT INTO votes (review_id, pair_idx, reviewer, choice, left_is_a, comment, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT (review_id, pair_idx, reviewer) DO UPDATE SET choice = excluded.choice, "
            "left_is_a = excluded.left_is_a, comment = excluded.comment, "
            "updated_at = excluded.updated_at",
            (review_id, pair_idx, reviewer, choice, int(bool(left_is_a)), comment or "", stamp,
             stamp))
    return existed


def set_criteria(store, review_id: int, criteria: list[dict]) -> str:
    """Store the decision criteria of a review (replacing earlier ones); return the time stamp."""
    stamp = now()
    with store._transaction() as conn:
        cur = conn.execute("UPDATE reviews SET criteria = ?, criteria_at = ? WHERE id = ?",
                           (dumps(criteria), stamp, review_id))
        if cur.rowcount == 0:
            raise StoreError(f"{store.path}: there is no review {review_id}")
    return stamp


def set_decision(store, review_id: int, decision: dict) -> None:
    """Store the decision (verdict, who, when, notes) of a review, replacing an earlier one."""
    with store._transaction() as conn:
        cur = conn.execute("UPDATE reviews SET decision = ? WHERE id = ?",
                           (dumps(decision), review_id))
        if cur.rowcount == 0:
            raise StoreError(f"{store.path}: there is no review {review_id}")


# --- reading ------------------------------------------------------------------------------------


def list_reviews(store) -> list[dict]:
    """Every review, newest first: ``id, name, created_at, owner, models, n_pairs, n_votes,
    n_reviewers, decided``."""
    rows = store._query(
        "SELECT r.id, r.name, r.created_at, r.owner, r.models, r.decision IS NOT NULL, "
        "(SELECT COUNT(*) FROM review_pairs p WHERE p.review_id = r.id), "
        "(SELECT COUNT(*) FROM votes v WHERE v.review_id = r.id), "
        "(SELECT COUNT(DISTINCT reviewer) FROM votes v WHERE v.review_id = r.id) "
        "FROM reviews r ORDER BY r.id DESC")
    return [{"id": rid, "name": name, "created_at": created, "owner": owner,
             "models": loads(models), "decided": bool(decided), "n_pairs": n_pairs,
             "n_votes": n_votes, "n_reviewers": n_reviewers}
            for rid, name, created, owner, models, decided, n_pairs, n_votes, n_reviewers in rows]


def get_review(store, name: str) -> dict:
    """One review by name, with its ``pairs`` (dicts, in order) and decoded JSON fields."""
    rows = store._query(
        "SELECT id, name, created_at, owner, models, selection, criteria, criteria_at, decision, "
        "dsdcompare_version FROM reviews WHERE name = ?", (name,))
    if not rows:
        known = [r["name"] for r in list_reviews(store)]
        raise StoreError(f"{store.path}: there is no review named {name!r}; reviews here: "
                         f"{known or 'none'} (create one with `dsdcompare review create`)")
    (rid, name, created, owner, models, selection, criteria, criteria_at, decision,
     version) = rows[0]
    pairs = [dict(zip(_PAIR_FIELDS, row, strict=True)) for row in store._query(
        f"SELECT {', '.join(_PAIR_FIELDS)} FROM review_pairs WHERE review_id = ? ORDER BY idx",
        (rid,))]
    for p in pairs:
        p["latent_matched"] = bool(p["latent_matched"])
    return {"id": rid, "name": name, "created_at": created, "owner": owner,
            "models": loads(models), "selection": loads(selection), "criteria": loads(criteria),
            "criteria_at": criteria_at, "decision": loads(decision),
            "dsdcompare_version": version, "pairs": pairs}


def votes(store, review_id: int) -> list[dict]:
    """Every vote of a review, by pair then reviewer."""
    rows = store._query(
        f"SELECT {', '.join(_VOTE_FIELDS)} FROM votes WHERE review_id = ? "
        f"ORDER BY pair_idx, reviewer", (review_id,))
    out = [dict(zip(_VOTE_FIELDS, row, strict=True)) for row in rows]
    for v in out:
        v["left_is_a"] = bool(v["left_is_a"])
    return out
