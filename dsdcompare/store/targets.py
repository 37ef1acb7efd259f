"""Where an export may be written, and writing it there without harm.

An export target is one of:

- ``-``: standard output (the bytes are copied there once complete);
- an existing character device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe, ``>(cmd)``),
  also through a symbolic link: written *through*, never replaced;
- a regular file, existing or not, in an existing folder: written beside it under a temporary
  name and renamed into place, so a reader never sees half an export.

Anything else is refused with a message before anything is written: a folder, a missing folder,
a symbolic link to a regular file (replacing the link would silently leave its target stale), a
socket or block device. No temporary file is left behind on any path, failures included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .common import StoreError, tmp_beside

#: The target name meaning standard output.
STDOUT = "-"


def check_target(path, *, what: str = "export") -> str:
    """How ``path`` will be written: ``"stdout"``, ``"stream"`` (written through) or ``"file"``
    (replaced atomically); :class:`StoreError` naming the problem and the remedy otherwise."""
    text = os.fspath(path)
    if text == STDOUT:
        return "stdout"
    path = Path(text)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise StoreError(f"{what} target {path} cannot be examined ({err.strerror}); give "
                         f"another file name") from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            target = None
        if target is not None and (stat.S_ISCHR(target.st_mode) or stat.S_ISFIFO(target.st_mode)):
            return "stream"
        raise StoreError(f"{what} target {path} is a symbolic link (to {os.readlink(path)}); "
                         f"refusing to replace it: give the file it points to, or another name")
    if info is not None:
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            return "stream"
        if stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{what} target {path} is a folder; give a file name inside it, "
                             f"e.g. {path / 'results.csv'}")
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{what} target {path} is a special file (not a regular file, "
                             f"character device or pipe); refusing to write to it")
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(f"{what} target {path}: the folder {folder} does not exist; create it "
                         f"first (mkdir -p {folder}) or give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"{what} target {path}: the folder {folder} is not writable; give a "
                         f"path in a folder you can write")
    return "file"


@contextlib.contextmanager
def writing(path, *, what: str = "export") -> Iterator[Path]:
    """Yield a temporary path to write the whole export to; when the block ends without an
    error it becomes ``path`` (see the module docstring). The temporary file is removed on
    every path."""
    kind = check_target(path, what=what)
    if kind == "file":
        tmp = tmp_beside(Path(path))
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as err:
            raise StoreError(f"cannot write {what} {path} ({err.strerror or err}); free space or "
                             f"give another path") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return
    with tempfile.TemporaryDirectory(prefix="dsdcompare-export-") as td:
        tmp = Path(td) / "export"
        yield tmp
        try:
            with open(tmp, "rb") as src:
                if kind == "stdout":
                    sys.stdout.flush()
                    shutil.copyfileobj(src, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                else:  # opened for writing, never replaced: /dev/null stays a device
                    with open(path, "wb") as out:
                        shutil.copyfileobj(src, out)
        except OSError as err:
            raise StoreError(f"cannot write {what} to {path} ({err.strerror or err})") from None
