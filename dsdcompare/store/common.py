"""What every part of the store shares: its errors, where the default store is, time stamps,
JSON encoding of records, and file helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from datetime import UTC, date, datetime, time
from pathlib import Path

from ..errors import DsdCompareError

#: Setting that names the default store (a .sqlite file, a folder, or a bundle .zip).
STORE_ENV = "DSDCOMPARE_STORE"
#: Default store, relative to the working directory, when $DSDCOMPARE_STORE is not set.
DEFAULT_STORE = Path("dsdcompare-results") / "results.sqlite"
#: Database file name inside a store folder and inside a bundle.
DB_NAME = "results.sqlite"


class StoreError(DsdCompareError, RuntimeError):
    """The store cannot do what was asked; the message names the file and the remedy."""


class DuplicateResultError(StoreError):
    """The run already holds a successful result for this model (measure again in a new run)."""


def default_store_path() -> Path:
    """The default store: ``$DSDCOMPARE_STORE`` when set, else ``./dsdcompare-results/results.sqlite``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_STORE


# --- time stamps ------------------------------------------------------------------------------


def now() -> str:
    """The current time as the store writes it (see :func:`iso`)."""
    return iso(datetime.now(UTC))


def iso(value) -> str:
    """UTC ISO 8601 with microseconds: one format, so text order is time order."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def as_utc_iso(value) -> str:
    """A datetime, date or ISO string given as a filter, in the store's time format (naive
    times are UTC; a date is its midnight, UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(f"not an ISO date or time: {value!r} (e.g. 2026-01-31 or "
                             f"2026-01-31T12:00)") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=UTC)
    if not isinstance(value, datetime):
        raise StoreError(f"expected a datetime, date or ISO string, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return iso(value)


# --- JSON ---------------------------------------------------------------------------------------


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


def dumps(value) -> str:
    """``value`` as the JSON text the store keeps (dataclasses, paths, numpy values included)."""
    # NaN is kept (Python's JSON reads it back) so a record round-trips exactly
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def loads(text):
    """The value of stored JSON text (None stays None)."""
    return json.loads(text) if text is not None else None


def finite(value):
    """``value`` with NaN and infinities replaced by None (standard JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def plain(row: dict) -> dict:
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


# --- files --------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tmp_beside(path: Path) -> Path:
    """A temporary name next to ``path``: written there, then renamed into place atomically."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
