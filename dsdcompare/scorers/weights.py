"""Where each scorer's weights come from, how they are found offline, and what they are called.

Scorers never download at run time: the weights must already be in the Hugging Face cache (hub
files) or in torch hub's ``checkpoints`` folder (torchvision and torch-fidelity release files), put
there by ``dsdcompare download --scorers NAME``. :data:`SCORER_WEIGHTS` is that command's list of
what to fetch. A missing file raises :class:`~dsdcompare.metrics.ScorerUnavailable` naming the file
and the command.

:func:`checkpoint_identity` names a checkpoint so the same weights get the same name on every
machine: ``repo@commit`` for a hub file or snapshot, ``name@sha256:<16 hex>`` for a local file or
folder (a content hash of its weights, never the path it happens to lie at).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..metrics import ScorerUnavailable

#: File name endings that hold weights (what a folder's content hash covers).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")
#: Hex digits of the content hash kept in an identity (64 bits: collisions are not a concern here).
_HASH_CHARS = 16


@dataclass(frozen=True)
class WeightFile:
    """One download a scorer needs; the download command fetches each, the scorer only looks."""

    repo: str | None  # Hugging Face repo id; None for a plain URL
    filename: str | None = None  # one file in the repo; None with `patterns` = a filtered snapshot
    patterns: tuple[str, ...] = ()  # allow_patterns of a snapshot (config, tokenizer, weights)
    url: str | None = None  # a release file saved under torch hub's checkpoints folder (repo None)
    revision: str | None = None  # pinned hub revision; None = the repo's main branch


#: What ``dsdcompare download --scorers NAME`` fetches for each scorer name.
SCORER_WEIGHTS: dict[str, tuple[WeightFile, ...]] = {
    # HPS v2.1 only: the ViT-H-14 base weights upstream loads first are all overwritten by this file.
    "hps": (WeightFile("xswu/HPSv2", "HPS_v2.1_compressed.pt"),),
    "pickscore": (
        WeightFile("yuvalkirstain/PickScore_v1", patterns=("config.json", "model.safetensors")),
        WeightFile(
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
            patterns=("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                      "special_tokens_map.json", "vocab.json", "merges.txt"),
        ),
    ),
    "imagereward": (
        WeightFile("THUDM/ImageReward", "ImageReward.pt"),
        WeightFile("THUDM/ImageReward", "med_config.json"),
        WeightFile("google-bert/bert-base-uncased",
                   patterns=("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json")),
    ),
    "lpips": (WeightFile(None, url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),),
    "lpips-vgg": (WeightFile(None, url="https://download.pytorch.org/models/vgg16-397923af.pth"),),
    "fid": (WeightFile(None, url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                                 "weights-inception-2015-12-05-6726825d.pth"),),
}
SCORER_WEIGHTS["kid"] = SCORER_WEIGHTS["fid"]


def _fetch_hint(scorer: str) -> str:
    return f"fetch it with `dsdcompare download --scorers {scorer}` where there is network"


# --------------------------------------------------------------------------------------------
# Finding weights offline
# --------------------------------------------------------------------------------------------


def _commit_of(path: Path) -> str | None:
    """The commit of a file or folder inside a hub cache snapshot (``.../snapshots/<commit>/...``)."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith("models--"):
            return parts[i + 1]
    return None


def _repo_of(path: Path) -> str | None:
    """The repo id of a path inside a hub cache (``models--org--name`` -> ``org/name``)."""
    for part in reversed(path.parts):
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return None


def hub_file(repo: str, filename: str, *, scorer: str, revision: str | None = None,
             cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``filename`` of hub ``repo`` in the local cache; never downloads.

    Raises:
        ScorerUnavailable: the file is not cached; the message names it and the download command.
    """
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
    if not isinstance(found, str):  # None (unknown) or the "known missing" sentinel
        raise ScorerUnavailable(
            f"{scorer} scorer unavailable: {repo!r} file {filename!r} (revision {revision or 'main'}) is "
            f"not in the Hugging Face cache; {_fetch_hint(scorer)}, or pass a local copy."
        )
    return Path(found)


def hub_snapshot(repo: str, required: tuple[str, ...], *, scorer: str, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of a cached hub snapshot holding every file in ``required``; never downloads.

    Raises:
        ScorerUnavailable: the snapshot or one of the files is not cached.
    """
    folder = None
    for name in required:
        folder = hub_file(repo, name, scorer=scorer, revision=revision, cache_dir=cache_dir).parent
    assert folder is not None, "required names at least one file"
    return folder


def torch_hub_file(url: str, *, scorer: str) -> Path:
    """Path of a release file (torchvision, torch-fidelity) in torch hub's checkpoints folder.

    This is where ``torch.hub.load_state_dict_from_url`` keeps it, so torchvision and torchmetrics
    read the same file without a download.

    Raises:
        ScorerUnavailable: the file is not there.
    """
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise ScorerUnavailable(
            f"{scorer} scorer unavailable: {path.name} is not in torch hub's cache ({path.parent}); "
            f"{_fetch_hint(scorer)} (or download {url} into that folder)."
        )
    return path


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------

_hash_lock = threading.Lock()
_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's content, remembered per (path, size, mtime) in this process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's weight files (relative path + content of each).

    A folder without weight files (:data:`WEIGHT_SUFFIXES`) is hashed over all its files.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    weights = [p for p in files if p.name.endswith(WEIGHT_SUFFIXES)] or files
    if not weights:
        raise FileNotFoundError(f"{str(path)!r} holds no files to identify.")
    digest = hashlib.sha256()
    for file in weights:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file_sha256(file).encode() + b"\n")
    return digest.hexdigest()


def checkpoint_identity(path_or_repo: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None) -> str:
    """A stable name for a checkpoint: the same weights give the same name on every machine.

    - a path inside a Hugging Face cache snapshot: ``org/name@<commit>`` (``:<file>`` added for
      one file of the snapshot);
    - any other local file or folder: ``<name>@sha256:<16 hex>``, the name being the file's or
      folder's own name and the hash covering its weights (:func:`content_hash`), not its location;
    - a hub repo id: ``org/name@<commit>`` when the cache knows the revision's commit, else
      ``org/name@<revision or main>``.
    """
    text = os.fspath(path_or_repo)
    path = Path(text).expanduser()
    if path.exists():
        commit, repo = _commit_of(path), _repo_of(path)
        if commit and repo:
            snapshot = next(p for p in [path, *path.parents] if p.parent.name == "snapshots")
            inner = path.relative_to(snapshot).as_posix()
            return f"{repo}@{commit}" + (f":{inner}" if inner != "." else "")
        return f"{path.resolve().name}@sha256:{content_hash(path)[:_HASH_CHARS]}"
    return f"{text}@{_cached_commit(text, revision, cache_dir) or revision or 'main'}"


def _cached_commit(repo: str, revision: str | None, cache_dir: str | os.PathLike | None) -> str | None:
    """The commit the local hub cache maps ``revision`` of ``repo`` to, or None if unknown."""
    from huggingface_hub import constants

    root = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    folder = root / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / (revision or "main")
    if ref.is_file():
        return ref.read_text().strip() or None
    if revision and (folder / "snapshots" / revision).is_dir():  # a commit given as the revision
        return revision
    return None


__all__ = [
    "SCORER_WEIGHTS",
    "WEIGHT_SUFFIXES",
    "WeightFile",
    "checkpoint_identity",
    "content_hash",
    "file_sha256",
    "hub_file",
    "hub_snapshot",
    "torch_hub_file",
]
