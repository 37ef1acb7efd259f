"""Bundles uploaded to the dashboard: kept on disk under a cap, least recently used removed first.

An upload is saved under a folder of the dsdcompare cache (``bundles/``, or a subfolder per
session in public mode), named by the sha256 of its bytes, so the same upload is kept once.
:func:`save_upload` saves one and then :func:`prune_uploads` removes the least recently used
files until at most :data:`MAX_UPLOADS` files and :data:`MAX_UPLOAD_BYTES` bytes remain (the one
just saved is always kept). :func:`touch_upload` marks one as used. The dashboard calls these;
nothing here knows about Streamlit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from .common import StoreError

#: Most uploaded bundles kept on disk at once (all sessions together).
MAX_UPLOADS = 20
#: Most bytes the kept uploads may take together.
MAX_UPLOAD_BYTES = 2 * 2**30
_SUFFIX = ".zip"


def uploads_folder(*parts: str) -> Path:
    """The folder uploads are saved in (``bundles/`` in the dsdcompare cache, and ``parts``
    below it, e.g. a session id in public mode), created."""
    from ..paths import cache_dir

    for part in parts:  # a session id names a folder: nothing that leads elsewhere
        if not part or not all(c.isalnum() or c in "-_" for c in part):
            raise StoreError(f"upload folder name {part!r} must be letters, digits, '-' or '_'")
    return cache_dir("bundles", *parts)


def save_upload(data: bytes, name: str, folder: Path | None = None, *, root: Path | None = None,
                max_files: int = MAX_UPLOADS, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Save an uploaded bundle's bytes under ``folder`` (default :func:`uploads_folder`) as
    ``<sha256 prefix>-<cleaned name>.zip``, then prune every upload under ``root`` (default
    ``folder``; give the common parent of per-session folders to cap them together, see
    :func:`prune_uploads`); return its path. An upload larger than ``max_bytes`` alone is
    refused."""
    if len(data) > max_bytes:
        raise StoreError(f"the upload {name!r} has {len(data)} bytes; at most {max_bytes} are "
                         f"kept: bundle fewer runs (store export --bundle ... --run ID)")
    folder = Path(folder) if folder is not None else uploads_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).stem)[:60]
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem or 'bundle'}{_SUFFIX}"
    if not (path.is_file() and path.stat().st_size == len(data)):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    touch_upload(path)
    prune_uploads(Path(root) if root is not None else folder, max_files=max_files,
                  max_bytes=max_bytes, keep=(path,))
    return path


def touch_upload(path: Path) -> None:
    """Mark an upload as just used (its modification time is its place in the LRU order)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_uploads(folder: Path, *, max_files: int = MAX_UPLOADS,
                  max_bytes: int = MAX_UPLOAD_BYTES, keep=()) -> list[Path]:
    """Delete the least recently used ``.zip`` files under ``folder`` (subfolders included)
    until at most ``max_files`` files and ``max_bytes`` bytes remain; never those in ``keep``.
    Return the deleted paths. Emptied subfolders are removed too."""
    found = []
    for path in Path(folder).rglob(f"*{_SUFFIX}"):
        with contextlib.suppress(OSError):
            info = path.stat()
            found.append((info.st_mtime, info.st_size, path))
    found.sort(key=lambda item: item[0])  # oldest use first
    kept = {Path(p).resolve() for p in keep}
    count, total = len(found), sum(size for _, size, _ in found)
    removed = []
    for _, size, path in found:
        if count <= max_files and total <= max_bytes:
            break
        if path.resolve() in kept:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
        count, total = count - 1, total - size
        with contextlib.suppress(OSError):  # a session's folder, once empty
            if path.parent != Path(folder) and not any(path.parent.iterdir()):
                path.parent.rmdir()
    return removed
