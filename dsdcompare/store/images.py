"""Content-addressed image files: every image is a PNG named by the sha256 of its bytes,
``images/ab/<sha256>.png`` under the store folder. Writing (fsynced, renamed into place), the
checked way back from a stored relative path, and the files no result refers to (what a writer
killed between its files and its row leaves: counted by ``store check``, removed by ``prune``).

The functions that need the database take the :class:`~dsdcompare.store.Store` (its lock,
queries and write transaction).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
import time as clock
from pathlib import Path

from .common import StoreError, loads, sha256_file

#: The only form a stored image path may have (the folder is the hash's first two digits).
IMAGE_PATH = re.compile(r"images/([0-9a-f]{2})/([0-9a-f]{64})\.png")


def encode_png(image) -> tuple[bytes, int, int]:
    """A PIL image (or an HxWxC array) as PNG bytes, with its width and height."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), image.width, image.height


def put_image_bytes(root: Path, data: bytes) -> tuple[str, str]:
    """Write PNG bytes as ``root/images/ab/<sha256>.png`` (fsynced, renamed into place; kept
    when already there); return ``(sha256, relative path)``."""
    sha = hashlib.sha256(data).hexdigest()
    rel = f"images/{sha[:2]}/{sha}.png"
    target = root / rel
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


def checked_path(root: Path, root_real: Path, rel, label) -> Path:
    """The absolute path of a stored image path, refused unless it is exactly
    ``images/ab/<sha256>.png`` and resolves inside ``root_real`` (``root``, symlinks resolved);
    ``label`` names the store in messages."""
    match = IMAGE_PATH.fullmatch(rel) if isinstance(rel, str) else None
    if match is None or match.group(1) != match.group(2)[:2]:
        raise StoreError(f"{label}: refusing stored image path {rel!r}: not of the form "
                         f"images/ab/<sha256>.png (a damaged or crafted database)")
    path = root / rel
    if not path.resolve().is_relative_to(root_real):
        raise StoreError(f"{label}: refusing image path {rel!r}: it leads outside the store "
                         f"folder {root_real}")
    return path


def image_rows(store, result_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """result id -> its ``(relative path, sha256)`` image rows, in order."""
    out: dict[int, list[tuple[str, str]]] = {}
    for start in range(0, len(result_ids), 500):  # SQLite caps the number of parameters
        chunk = result_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for rid, rel, sha in store._query(
                f"SELECT result_id, path, sha256 FROM images WHERE result_id IN ({marks}) "
                f"ORDER BY result_id, idx", chunk):
            out.setdefault(rid, []).append((rel, sha))
    return out


def _image_files(root: Path, min_age_s: float) -> list[tuple[str, Path]]:
    """(relative path, path) of every file under ``images/`` older than ``min_age_s``."""
    folder = root / "images"
    if not folder.is_dir():
        return []
    cutoff = clock.time() - min_age_s
    out = []
    for path in sorted(folder.glob("*/*")):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime <= cutoff:
                out.append((path.relative_to(root).as_posix(), path))
    return out


def unreferenced(store, *, min_age_s: float = 0.0) -> list[Path]:
    """See :meth:`dsdcompare.store.Store.unreferenced`."""
    found = _image_files(store.root, min_age_s)
    referenced = {rel for (rel,) in store._query("SELECT DISTINCT path FROM images")}
    return [path for rel, path in found if rel not in referenced]


def prune(store, *, min_age_s: float = 3600.0) -> tuple[int, int]:
    """See :meth:`dsdcompare.store.Store.prune`."""
    files = removed = 0
    with store._transaction() as conn:  # writers re-check their files under this lock
        found = _image_files(store.root, min_age_s)
        referenced = {rel for (rel,) in conn.execute("SELECT DISTINCT path FROM images")}
        for rel, path in found:
            if rel in referenced:
                continue
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                files, removed = files + 1, removed + size
    return files, removed


def verify(store) -> list[str]:
    """See :meth:`dsdcompare.store.Store.verify`. A store too damaged to read is a problem
    reported like the others, not an exception."""
    problems: list[str] = []
    try:
        problems += [f"sqlite: {msg}" for (msg,) in store._query("PRAGMA integrity_check(100)")
                     if msg != "ok"]
        for rid, record in store._query("SELECT id, record FROM results"):
            try:
                loads(record)
            except ValueError as err:
                problems.append(f"result {rid}: record is not JSON ({err})")
        rows = store._query("SELECT result_id, path, sha256 FROM images")
    except StoreError as err:  # damaged beyond what integrity_check reports in rows
        return problems + [f"sqlite: {err}"]
    for rid, rel, sha in rows:
        try:
            path = store._image_path(rel)
        except StoreError as err:
            problems.append(f"result {rid}: {err}")
            continue
        if not path.is_file():
            problems.append(f"result {rid}: image file missing: {rel}")
        elif sha256_file(path) != sha:
            problems.append(f"result {rid}: image file damaged (sha256 differs): {rel}")
    return problems
