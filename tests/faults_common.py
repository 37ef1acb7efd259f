"""What the fault-injection tests (tests/test_faults_*.py) share: running the real command line
in a child process, asserting the promise (exit code, one `error:` line naming the value, no
traceback), snapshots proving inputs are byte-identical afterwards, small real stores, and a
read-only mount for "read-only media"."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from store_writer import fake_request, fake_result  # noqa: E402

#: The prompt and settings of the toy runs (32 px, two steps: about a second a model).
TOY_PROMPT = "a red circle on a blue background"
TOY_ARGS = ("--models", "toy", "--source", "local", "--steps", "2", "--threads", "1")


def cli(*args, cwd: Path, env: dict | None = None, timeout: float = 120,
        wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m dsdcompare ARGS`` in ``cwd`` (a real process), with ``env`` added; ``wrap``
    runs it under another command (a read-only mount)."""
    full_env = {**os.environ, "TMPDIR": str(cwd / "tmp"), **(env or {})}
    (cwd / "tmp").mkdir(exist_ok=True)
    command = [*(wrap or []), sys.executable, "-m", "dsdcompare", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The promise for bad input: exit ``code``, no traceback, and the last line of stderr is one
    ``error:`` line holding every fragment (the value and the remedy). Returns that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def assert_clean(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    """A run that worked: exit ``code`` and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself) -> the sha256 of its bytes. SQLite's
    side files of a WAL database that hold nothing (the ``-shm`` index, an empty ``-wal``),
    which any reader creates, are not content and are left out."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.name.endswith("-shm") or (path.name.endswith("-wal")
                                               and path.stat().st_size == 0):
                continue
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[Path]:
    """Temporary files left behind under ``root`` (``*.tmp`` and extraction folders)."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")
            or p.name.startswith(("dsdcompare-bundle-", "dsdcompare-export-"))]


def small_store(folder: Path, *, runs: int = 2, models=("m0", "m1")) -> Path:
    """A real store (fake results with real images, no model run) in ``folder``; its database."""
    from dsdcompare.store import Store

    with Store(folder / "results.sqlite") as store:
        for seed in range(runs):
            request = fake_request(seed)
            store.save(request, [fake_result(m, request) for m in models], source="tiny")
    return folder / "results.sqlite"


def damage_middle(db: Path, length: int = 3000) -> None:
    """Overwrite ``length`` bytes in the middle of ``db`` (its header stays intact)."""
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + length] = b"Z" * length
    db.write_bytes(bytes(data))


def rezip(src: Path, dst: Path, change) -> None:
    """Copy the bundle ``src`` to ``dst``, ``change(name, data) -> [(name, data), ...]``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            for name, data in change(info.filename, zin.read(info.filename)):
                zout.writestr(name, data)


def read_only_mount(folder: Path) -> list[str]:
    """A command prefix running its command with ``folder`` mounted read-only (real read-only
    media: even root cannot write there). Without root, the folder is made read-only instead
    (and an empty prefix returned); skips where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    prefix = [unshare or "unshare", "-m", "sh", "-c", script, "sh", str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", f"! touch '{folder}/.probe' 2>/dev/null"],
                           capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot mount a folder read-only here (unshare -m not permitted)")
    return prefix


__all__ = ["TOY_ARGS", "TOY_PROMPT", "assert_clean", "assert_refused", "cli", "damage_middle",
           "fake_request", "fake_result", "leftovers", "read_only_mount", "rezip", "small_store",
           "snapshot"]
