"""Pre-fetch what a comparison loads from the Hugging Face hub: a plan, a disk check, progress.

A :class:`DownloadPlan` lists exactly the files ``from_pretrained`` fetches for one model at
one precision. It is computed from the repo's file listing (``HfApi().model_info(repo,
files_metadata=True)`` online; the published listings in ``tests/fixtures`` in the tests), so the
choice of files is testable without a network. It mirrors diffusers 0.42's own download
(``DiffusionPipeline.download`` with ``use_safetensors=True``, checked against it in the tests):

* per folder, the ``fp16`` variant files where that folder has them and the plain files
  elsewhere: diffusers falls back per folder (BK-SDM-small ships fp16 files only in some folders);
* safetensors only: never ``.bin``, ``.msgpack``, ONNX or OpenVINO files;
* the config, tokenizer, scheduler and feature-extractor files of the pipeline's folders;
* never the root single-file checkpoints (``SSD-1B*.safetensors``, ``sd_xl_base_1.0*.safetensors``);
* like diffusers, the weights of weight folders that are not pipeline components (SDXL's
  ``vae_1_0/``): ``from_pretrained`` would fetch them anyway, so they are fetched and marked
  "not read" (:attr:`DownloadPlan.unread`).

:func:`fetch` downloads file by file with ``hf_hub_download``: resumable (an interrupted file
continues from its ``.incomplete`` part), huggingface_hub's own progress bars, ``HF_TOKEN`` for
gated repos, the normal cache (``HF_HOME``/``HF_HUB_CACHE``). ``HF_HUB_OFFLINE`` is refused at once
with the remedy. The dashboard calls :func:`plan_downloads`, :func:`missing_files` and
:func:`fetch` with ``on_progress`` (a :class:`FetchProgress` per chunk of bytes).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DsdCompareError, first_line


class DownloadError(DsdCompareError, RuntimeError):
    """Files cannot be planned or fetched (offline, gated, no room); the message names the remedy."""


@dataclass(frozen=True)
class RepoFile:
    """One file of a hub repo listing."""

    path: str  # path inside the repo, e.g. "unet/diffusion_pytorch_model.fp16.safetensors"
    size: int | None = None  # bytes; None when the listing does not say


@dataclass(frozen=True)
class DownloadPlan:
    """The files one model (or CLIP scorer) needs from one hub repo, before anything is fetched."""

    name: str  # registry key of the model, or the scorer checkpoint
    repo_id: str  # hub repo id
    revision: str | None  # the commit the listing came from (None: the default branch)
    variant: str | None  # what from_pretrained is asked for: "fp16" or None
    files: tuple[RepoFile, ...]  # exactly the files to fetch, sorted by path
    unread: tuple[str, ...] = ()  # fetched (diffusers fetches them too) but never read

    @property
    def total_bytes(self) -> int:
        """Bytes of the files whose size the listing gives."""
        return sum(f.size or 0 for f in self.files)

    @property
    def unknown_sizes(self) -> int:
        """How many files have no size in the listing."""
        return sum(f.size is None for f in self.files)


@dataclass(frozen=True)
class FetchProgress:
    """Where a :func:`fetch` stands, reported as bytes arrive."""

    file: str  # "repo_id/path" of the file being fetched
    done_bytes: int  # bytes fetched so far in this call, all files together
    total_bytes: int  # bytes this call fetches (files of known size)
    files_done: int  # files finished so far
    files_total: int  # files this call fetches


# --- the plan: which files from_pretrained fetches ------------------------------------------------

#: diffusers' and transformers' weight file stems and suffixes (pipeline_loading_utils.py).
_WEIGHT_STEMS = "diffusion_pytorch_model|pytorch_model|model|weights"
_WEIGHT_SUFFIXES = "bin|safetensors|onnx|pb"
_SHARD = r"\d{5}-of-\d{5}"
#: What a safetensors load never fetches (diffusers' ignore patterns without ONNX pipelines).
_IGNORED_SUFFIXES = (".bin", ".msgpack", ".onnx", ".pb")
#: Files that mark a folder as holding model weights (diffusers' filter_model_files).
_MODEL_SUFFIXES = (".bin", ".safetensors", ".onnx", ".pb", ".flashpack")
#: Root files diffusers always allows (configs, custom pipeline, transformers aux files).
_ROOT_FILES = ("model_index.json", "scheduler_config.json", "config.json", "pipeline.py",
               "chat_template.jinja", "generation_config.json", "preprocessor_config.json",
               "processor_config.json", "tokenizer.json", "tokenizer_config.json")


def _variant_re(variant: str) -> re.Pattern:
    return re.compile(rf"({_WEIGHT_STEMS})\.({variant}|{variant}-{_SHARD})\.({_WEIGHT_SUFFIXES})$")


_PLAIN_RE = re.compile(rf"({_WEIGHT_STEMS})(-{_SHARD})?\.({_WEIGHT_SUFFIXES})$")
_PLAIN_INDEX_RE = re.compile(rf"({_WEIGHT_STEMS})\.({_WEIGHT_SUFFIXES})\.index\.json$")


def _ignored(path: str) -> bool:
    # diffusers ignores these suffixes and their shard indexes ("*.bin.index.*json")
    return path.endswith(_IGNORED_SUFFIXES) or any(
        fnmatch.fnmatchcase(path, f"*{s}.index.*json") for s in _IGNORED_SUFFIXES)


def _folder(path: str) -> str:
    return path.split("/")[0] if path.count("/") == 1 else ""


def weight_folders(files: Iterable[RepoFile], components: Iterable[str]) -> list[str]:
    """Pipeline component folders that hold model weights (unet, vae, text_encoder...)."""
    components = set(components)
    return sorted({_folder(f.path) for f in files
                   if f.path.endswith(_MODEL_SUFFIXES) and _folder(f.path) in components})


def fp16_folders(files: Iterable[RepoFile], components: Iterable[str]) -> list[str]:
    """Weight folders of the pipeline that ship ``*.fp16.safetensors`` files."""
    files = list(files)
    fp16 = _variant_re("fp16")
    return [d for d in weight_folders(files, components)
            if any(_folder(f.path) == d and f.path.endswith(".safetensors")
                   and fp16.match(f.path.rsplit("/", 1)[-1]) for f in files)]


def plan_variant(files: Sequence[RepoFile], components: Iterable[str], dtype: str) -> str | None:
    """The variant to ask ``from_pretrained`` for: ``"fp16"`` for half precision where any weight
    folder has fp16 files; otherwise None, unless a folder has *only* fp16 safetensors (then
    ``"fp16"``: diffusers loads them and casts up)."""
    components = list(components)
    with_fp16 = fp16_folders(files, components)
    if dtype == "fp16":
        return "fp16" if with_fp16 else None
    plain = {_folder(f.path) for f in files
             if f.path.endswith(".safetensors") and _PLAIN_RE.match(f.path.rsplit("/", 1)[-1])}
    return "fp16" if any(d not in plain for d in with_fp16) else None


def pipeline_files(files: Sequence[RepoFile], components: Iterable[str],
                   variant: str | None) -> tuple[list[RepoFile], list[str]]:
    """The files ``Pipeline.from_pretrained(repo, variant=variant, use_safetensors=True)`` fetches,
    and those of them it never reads. ``components`` are model_index.json's component names.

    Raises :class:`DownloadError` when a weight folder has no safetensors file to load.
    """
    components = set(components)
    by_folder: dict[str, list[RepoFile]] = {}
    for f in files:
        by_folder.setdefault(_folder(f.path), []).append(f)
    chosen: set[str] = set()
    for group in by_folder.values():
        names = {f.path: f.path.rsplit("/", 1)[-1] for f in group if not _ignored(f.path)}
        picked = []
        if variant:
            vre = _variant_re(variant)
            index = re.compile(rf"({_WEIGHT_STEMS})\.({_WEIGHT_SUFFIXES})\.index\.{variant}\.json$")
            picked = [p for p, n in names.items() if vre.match(n) or index.match(n)]
        if not picked:
            picked = [p for p, n in names.items() if _PLAIN_RE.match(n) or _PLAIN_INDEX_RE.match(n)]
        chosen.update(picked)
    model_dirs = weight_folders(files, components)
    for d in model_dirs:
        if not any(_folder(p) == d and p.endswith(".safetensors") for p in chosen):
            raise DownloadError(f"folder {d!r} has no safetensors weights (variant={variant}); "
                                f"dsdcompare never loads pickled .bin files: use a repo that ships "
                                f"safetensors, or convert it and use --source local")
    allow = [f"{d}/*" for d in components if d not in model_dirs]
    allow += [f"{d}/config.json" for d in model_dirs]
    picked = [f for f in files
              if not _ignored(f.path)
              and (f.path in chosen or f.path in _ROOT_FILES
                   or any(fnmatch.fnmatchcase(f.path, p) for p in allow))]
    unread = sorted(f.path for f in picked if _folder(f.path) and _folder(f.path) not in components)
    return sorted(picked, key=lambda f: f.path), unread


def scorer_files(files: Sequence[RepoFile], repo_id: str) -> list[RepoFile]:
    """The files ``CLIPModel.from_pretrained`` and ``CLIPProcessor.from_pretrained`` read from a
    transformers CLIP repo: root configs, tokenizer files and the safetensors weights."""
    weights = [f for f in files if "/" not in f.path and (
        re.fullmatch(rf"model(-{_SHARD})?\.safetensors", f.path)
        or f.path == "model.safetensors.index.json")]
    if not weights:
        raise DownloadError(f"scorer {repo_id!r} has no model.safetensors; dsdcompare never loads "
                            f"pickled weights: choose a scorer that ships safetensors")
    extra = [f for f in files if "/" not in f.path and f.path.endswith((".json", ".txt"))]
    return sorted(set(weights) | set(extra), key=lambda f: f.path)


def plan_model(spec, files: Sequence[RepoFile], model_index: dict, dtype: str, *,
               revision: str | None = None) -> DownloadPlan:
    """The plan for ``spec`` at ``dtype`` ("fp32", "fp16", "bf16"), from its repo's listing."""
    components = [k for k, v in model_index.items() if isinstance(v, list) and k != "_class_name"]
    variant = plan_variant(files, components, dtype)
    chosen, unread = pipeline_files(files, components, variant)
    return DownloadPlan(spec.key, spec.repo_id, revision, variant, tuple(chosen), tuple(unread))


def plan_scorer(checkpoint: str, files: Sequence[RepoFile], *,
                revision: str | None = None) -> DownloadPlan:
    """The plan for a transformers CLIP scorer checkpoint on the hub."""
    return DownloadPlan(checkpoint, checkpoint, revision, None,
                        tuple(scorer_files(files, checkpoint)))


# --- online: listings, the offline guard, the plan for a request -----------------------------------

def check_online() -> None:
    """Raise a one-line :class:`DownloadError` when ``HF_HUB_OFFLINE`` forbids the network."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    if constants.HF_HUB_OFFLINE or value.strip().upper() in ("1", "ON", "YES", "TRUE"):
        raise DownloadError("HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it "
                            "(or HF_HUB_OFFLINE=0) and run `dsdcompare download` again on a "
                            "machine with internet access, or copy its Hugging Face cache (HF_HOME)")


def _hub_error(repo_id: str, err: BaseException) -> DownloadError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(err, GatedRepoError):
        return DownloadError(f"{repo_id} is gated: accept its terms at https://huggingface.co/"
                             f"{repo_id} and set HF_TOKEN to a read token, then run again")
    if isinstance(err, RepositoryNotFoundError):
        return DownloadError(f"{repo_id} was not found on the hub (or is private): check the name, "
                             f"or set HF_TOKEN to a token that can read it")
    return DownloadError(f"{repo_id}: {first_line(err)} (run `dsdcompare download` again to "
                         f"resume; finished files are kept)")


def hub_listing(repo_id: str, revision: str | None = None) -> tuple[str | None, list[RepoFile]]:
    """The commit and the file listing (with sizes) of a hub repo; needs the network."""
    from huggingface_hub import HfApi

    check_online()
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as err:  # hub errors, HTTP and network errors alike become one line
        raise _hub_error(repo_id, err) from err
    return info.sha, [RepoFile(s.rfilename, s.size) for s in info.siblings or ()]


def hub_model_index(repo_id: str, revision: str | None = None) -> dict:
    """The repo's ``model_index.json`` (under 1 KB; fetched into the cache like any file)."""
    from huggingface_hub import hf_hub_download

    check_online()
    try:
        path = hf_hub_download(repo_id, "model_index.json", revision=revision)
    except Exception as err:
        raise _hub_error(repo_id, err) from err
    return json.loads(Path(path).read_text(encoding="utf-8"))


def scorer_checkpoints(choice: str, models: Sequence) -> list[str]:
    """Hub checkpoints a ``--scorers`` choice needs: ``default`` (the scorer of real-weight
    comparisons), ``none``, or comma-separated hub names. Local folders and the built-in
    stand-ins need nothing; open_clip scorers are fetched by open_clip itself."""
    from .errors import InputError
    from .metrics import OPEN_CLIP_PREFIX, SCORER_STANDIN
    from .record import scorer_checkpoint
    from .scorers import SCORER_WEIGHTS

    out: list[str] = []
    for name in [c.strip() for c in choice.split(",") if c.strip()]:
        if name in SCORER_WEIGHTS:  # a quality scorer: plan_scorer_weights plans its files
            continue
        if name == "clip":
            name = "default"
        if name in ("default", "auto"):
            name = scorer_checkpoint(name, models, "hub")[0] or "none"
        if name in ("none", "toy", SCORER_STANDIN):
            continue
        if name.startswith(OPEN_CLIP_PREFIX):
            raise InputError(f"scorer {name!r}: open_clip fetches its own weights on first use; "
                             f"download only 'default' or hub CLIP names here")
        if name and not Path(name).expanduser().is_dir() and name not in out:
            out.append(name)
    return out


ListingFn = Callable[[str, str | None], tuple[str | None, list[RepoFile]]]
IndexFn = Callable[[str, str | None], dict]


def plan_downloads(models: Sequence, scorers: Sequence[str], dtype: str, *,
                   listing: ListingFn | None = None,
                   model_index: IndexFn | None = None) -> tuple[list[DownloadPlan], list[str]]:
    """Plans for ``models`` (ModelSpecs) at ``dtype`` and for the ``scorers`` checkpoints, and a
    note for each model that has no hub repo. ``listing``/``model_index`` default to the hub."""
    listing = listing or hub_listing
    model_index = model_index or hub_model_index
    plans, skipped = [], []
    for spec in models:
        if not spec.repo_id:
            skipped.append(f"{spec.key}: no hub repo (its weights are local: {spec.local_dir})")
            continue
        sha, files = listing(spec.repo_id, spec.revision)
        index = model_index(spec.repo_id, sha or spec.revision)
        plans.append(plan_model(spec, files, index, dtype, revision=sha or spec.revision))
    for checkpoint in scorers:
        sha, files = listing(checkpoint, None)
        plans.append(plan_scorer(checkpoint, files, revision=sha))
    return plans, skipped


@dataclass(frozen=True)
class UrlFile:
    """A release file a scorer reads from torch hub's ``checkpoints`` folder (torchvision's
    AlexNet for LPIPS, torch-fidelity's Inception for FID/KID): not a hub repo file."""

    name: str  # the scorer name that needs it, e.g. "lpips", "fid"
    url: str  # where it is published
    path: Path  # where torch hub keeps it (what the scorer looks for)


def plan_scorer_weights(choice: str, *, listing: ListingFn | None = None
                        ) -> tuple[list[DownloadPlan], list[UrlFile]]:
    """What ``--scorers`` names of :data:`dsdcompare.scorers.SCORER_WEIGHTS` (``hps``,
    ``pickscore``, ``imagereward``, ``lpips``, ``lpips-vgg``, ``fid``, ``kid``) need: one plan per
    scorer and hub repo (exactly the files the scorer looks up, at its pinned revision), and the
    release files for torch hub's folder. Other names (CLIP checkpoints) are left to
    :func:`scorer_checkpoints`.

    Raises:
        DownloadError: a planned file is not in the repo's listing.
    """
    import torch

    from .scorers import SCORER_WEIGHTS

    listing = listing or hub_listing
    plans: list[DownloadPlan] = []
    urls: list[UrlFile] = []
    for name in dict.fromkeys(c.strip() for c in choice.split(",") if c.strip()):
        repos: dict[tuple[str, str | None], list] = {}
        for wf in SCORER_WEIGHTS.get(name, ()):
            if wf.repo is None:
                path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(wf.url)
                if all(u.url != wf.url for u in urls):
                    urls.append(UrlFile(name, wf.url, path))
            else:
                repos.setdefault((wf.repo, wf.revision), []).append(wf)
        for (repo, revision), wanted in repos.items():
            sha, files = listing(repo, revision)
            chosen = {f for f in files for wf in wanted
                      if f.path == wf.filename or any(fnmatch.fnmatchcase(f.path, p)
                                                      for p in wf.patterns)}
            for wf in wanted:
                if wf.filename and all(f.path != wf.filename for f in chosen):
                    raise DownloadError(f"{repo} has no file {wf.filename!r} (needed by the "
                                        f"{name} scorer); the repo changed: report it")
            plans.append(DownloadPlan(f"{name} ({repo})", repo, sha or revision, None,
                                      tuple(sorted(chosen, key=lambda f: f.path))))
    return plans, urls


def missing_urls(urls: Sequence[UrlFile]) -> list[UrlFile]:
    """The release files not yet in torch hub's folder (works offline)."""
    return [u for u in urls if not u.path.is_file()]


def fetch_urls(urls: Sequence[UrlFile]) -> int:
    """Download each missing release file into torch hub's folder, as torch hub itself would
    (written beside it and renamed into place, with its progress bar); return how many."""
    import torch

    check_online()
    todo = missing_urls(urls)
    for u in todo:
        u.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(u.url, str(u.path), progress=True)
        except Exception as err:  # HTTP, network and disk errors alike: one line with the remedy
            raise DownloadError(f"{u.url}: {first_line(err)} (run `dsdcompare download` again "
                                f"where there is network)") from err
    return len(todo)


# --- the cache, the disk, the fetch ------------------------------------------------------------------

def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def missing_files(plan: DownloadPlan, cache_dir: str | os.PathLike | None = None) -> list[RepoFile]:
    """The plan's files that are not in the local hub cache yet (works offline)."""
    from huggingface_hub import try_to_load_from_cache

    return [f for f in plan.files
            if not isinstance(try_to_load_from_cache(plan.repo_id, f.path, cache_dir=cache_dir,
                                                     revision=plan.revision), str)]


def check_disk(plans: Sequence[DownloadPlan], cache_dir: str | os.PathLike | None = None, *,
               free_bytes: int | None = None) -> int:
    """Bytes still to fetch; raises :class:`DownloadError` when the cache's disk lacks room."""
    need = sum(f.size or 0 for p in plans for f in missing_files(p, cache_dir))
    root = Path(cache_dir) if cache_dir else hub_cache_dir()
    if free_bytes is None:
        probe = root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free_bytes = shutil.disk_usage(probe).free
    if need > free_bytes:
        raise DownloadError(f"the download needs {gb(need)} and {root} has {gb(free_bytes)} free: "
                            f"free some space or point HF_HUB_CACHE (or HF_HOME) at a larger disk")
    return need


def gb(n: int) -> str:
    """``1_234_000_000`` -> ``"1.23 GB"`` (decimal, as the hub shows sizes)."""
    return f"{n / 1e9:.2f} GB"


def human(n: int | None) -> str:
    """A file size as the hub shows it: ``"1.72 GB"``, ``"525 kB"``; ``"?"`` when unknown."""
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _reporting_tqdm(report: Callable[[int], None]):
    from huggingface_hub.utils import tqdm as hub_tqdm

    class _Reporting(hub_tqdm):
        # the dashboard draws its own bar, so this one only counts bytes
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            report(int(n or 0))
            return super().update(n)

    return _Reporting


def fetch(plans: Sequence[DownloadPlan], *, cache_dir: str | os.PathLike | None = None,
          on_progress: Callable[[FetchProgress], None] | None = None) -> int:
    """Download every missing file of ``plans`` into the hub cache; return the files fetched.

    Without ``on_progress`` huggingface_hub shows its own bars; with it, each chunk of bytes is
    reported as a :class:`FetchProgress` (for the dashboard's progress bar). An interrupted
    fetch resumes where it stopped when called again.
    """
    from huggingface_hub import hf_hub_download

    check_online()
    todo = [(p, f) for p in plans for f in missing_files(p, cache_dir)]
    total = sum(f.size or 0 for _, f in todo)
    state = {"done": 0, "files": 0, "file": ""}

    def report(n: int) -> None:
        state["done"] += n
        on_progress(FetchProgress(state["file"], state["done"], total, state["files"], len(todo)))

    tqdm_class = _reporting_tqdm(report) if on_progress else None
    for plan, f in todo:
        state["file"] = f"{plan.repo_id}/{f.path}"
        try:
            hf_hub_download(plan.repo_id, f.path, revision=plan.revision, cache_dir=cache_dir,
                            tqdm_class=tqdm_class)
        except Exception as err:  # hub, HTTP and disk errors alike: one line with the remedy
            raise _hub_error(plan.repo_id, err) from err
        state["files"] += 1
        if on_progress:
            report(0)
    return len(todo)


__all__ = ["DownloadError", "DownloadPlan", "FetchProgress", "RepoFile", "UrlFile", "check_disk",
           "check_online", "fetch", "fetch_urls", "fp16_folders", "gb", "hub_cache_dir",
           "hub_listing", "human", "hub_model_index", "missing_files", "missing_urls",
           "pipeline_files", "plan_downloads", "plan_model", "plan_scorer", "plan_scorer_weights",
           "plan_variant", "scorer_checkpoints", "scorer_files", "weight_folders"]
