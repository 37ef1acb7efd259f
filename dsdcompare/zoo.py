"""Weight sources: where a model's weights come from.

* ``hub``   — the model's Hugging Face repo (the normal cache and ``HF_HUB_OFFLINE`` apply).
* ``local`` — a directory in the hub layout (``model_index.json`` and component folders).
* ``tiny``  — an architecture-faithful miniature with random weights, built offline once and
  cached in the hub layout (fp16 variant files where the real repo has them). Its images are noise.
* ``arch``  — the exact full-size architecture with random weights, materialised in memory (too
  big to save). Real latency, memory and FLOPs; its images are noise.

``hub``, ``local`` and ``tiny`` all resolve to something ``from_pretrained`` loads, so the stand-ins
exercise the very code path that real weights take (see :mod:`dsdcompare.loading`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archs import Architecture, get_architecture, miniature
from .errors import DsdCompareError, InputError
from .paths import cache_dir
from .registry import ModelSpec

SOURCES = ("hub", "local", "tiny", "arch")
#: Sources whose weights are random: their images are noise and every view must say so.
STANDIN_SOURCES = ("tiny", "arch")
#: Bump when the miniatures change, so old cached builds are not reused.
TINY_VERSION = 2  # 2: fp16 variant files per folder, where the real repo has them
TINY_SEED = 0
#: Held while a model is built on the meta device or loaded: accelerate's ``init_empty_weights``
#: patches ``torch.nn.Module.register_parameter`` for the whole process, so a meta build in one
#: thread (the Models page counting) and a load in another (the warm start) would corrupt each
#: other ("Cannot copy out of meta tensor"). Re-entrant: a build may load, a load may build.
MODEL_BUILD_LOCK = threading.RLock()


class WeightsUnavailable(DsdCompareError, RuntimeError):
    """A model's weights cannot be had from the chosen source. Callers catch it per model."""


@dataclass(frozen=True)
class Location:
    """Where ``from_pretrained`` finds a model, and what kind of weights they are."""

    model: str  # registry key
    source: str  # one of SOURCES
    path: str  # hub repo id or local directory ("" for the in-memory ``arch`` source)
    revision: str | None  # hub revision (None: the repo's default branch)
    has_fp16_variant: bool  # the location holds ``*.fp16.safetensors`` files
    standin: bool  # random weights: images are noise


def check_source(source: str) -> str:
    """Return ``source`` or raise naming the valid sources."""
    if source not in SOURCES:
        raise InputError(f"Unknown weight source {source!r}: choose one of {list(SOURCES)}")
    return source


def locate(spec: ModelSpec, source: str, *, local_dir: str | os.PathLike | None = None) -> Location:
    """Resolve ``spec`` and ``source`` to a :class:`Location`, building a tiny stand-in if needed.

    Raises :class:`WeightsUnavailable` (naming the model and the remedies) when the source
    cannot provide the model, e.g. a local directory that does not exist.
    """
    check_source(source)
    if source == "hub":
        if not spec.repo_id:
            raise WeightsUnavailable(
                f"{spec.key}: no hub repo is registered for it; use --source local with its "
                f"directory" + (f" ({spec.local_dir})" if spec.local_dir else "")
            )
        return Location(spec.key, "hub", spec.repo_id, spec.revision, bool(spec.fp16_variant),
                        False)
    if source == "local":
        path = Path(local_dir or spec.local_dir or "")
        if not (local_dir or spec.local_dir) or not (path / "model_index.json").is_file():
            raise WeightsUnavailable(missing_weights_message(spec, "local", str(path) if
                                     (local_dir or spec.local_dir) else None))
        has_variant = any(path.glob("*/*.fp16.safetensors"))
        return Location(spec.key, "local", str(path), None, has_variant, False)
    _require_arch(spec, source)
    if source == "tiny":
        path = build_tiny(spec)
        return Location(spec.key, "tiny", str(path), None, bool(spec.fp16_variant), True)
    return Location(spec.key, "arch", "", None, False, True)


def can_load(spec: ModelSpec, source: str) -> bool:
    """Whether ``source`` has a place for ``spec``'s weights, the first thing :func:`locate` needs:
    ``hub`` a registered repo, ``local`` a registered directory, ``tiny``/``arch`` a known
    architecture. Cheap: nothing is built, downloaded or looked for on disk, so a model whose
    directory is still empty is offered, and :func:`locate` says what is missing when it runs.
    """
    check_source(source)
    if source == "hub":
        return bool(spec.repo_id)
    if source == "local":
        return bool(spec.local_dir)
    return bool(spec.arch)


def _require_arch(spec: ModelSpec, source: str) -> Architecture:
    if not spec.arch:
        raise WeightsUnavailable(
            f"{spec.key}: the {source!r} source needs a known architecture, and this model has "
            f"none registered (set 'arch' in its registry entry to one of the seed models); "
            f"use --source hub or local for it"
        )
    return get_architecture(spec.arch)


def missing_weights_message(spec: ModelSpec, source: str, where: str | None, cause: str = "") -> str:
    """The error text for weights that cannot be loaded: names the model, repo and remedies."""
    what = f"{spec.name} ({spec.key})"
    lines = [f"Weights for {what} are not available from source {source!r}"
             + (f" at {where}" if where else "") + (f": {cause}" if cause else ".")]
    lines.append("Remedies:")
    if spec.repo_id:
        lines.append(f"  - go online once so the hub repo {spec.repo_id!r} is downloaded into the "
                     f"Hugging Face cache (then HF_HUB_OFFLINE=1 works), or")
    lines.append("  - download the repo elsewhere and point at its directory with --source local "
                 "--local-dir DIR (a folder holding model_index.json), or")
    if spec.arch:
        lines.append("  - use --source tiny (an offline stand-in: same architecture, random "
                     "weights, images are noise).")
    return "\n".join(lines)


# --- building models from configs ----------------------------------------------------------------

def build_components(arch: Architecture, *, seed: int = TINY_SEED, tokenizer_dir: Path) -> dict[str, Any]:
    """Instantiate every pipeline component of ``arch`` with seeded random weights.

    Tokenizers are the real CLIP BPE tokenizer (built from open_clip's vocabulary file) saved
    under ``tokenizer_dir``. Meant for miniatures: a full-size build takes minutes of CPU (the
    ``arch`` source uses :func:`build_arch_pipeline` instead).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    from .tokenizers import build_clip_tokenizer

    torch.manual_seed(seed)
    comps: dict[str, Any] = {
        "unet": UNet2DConditionModel.from_config(arch.unet),
        "vae": AutoencoderKL.from_config(arch.vae),
        "scheduler": _scheduler_from_config(arch.scheduler),
    }
    for i, cfg in enumerate(arch.text_encoders):
        suffix = "" if i == 0 else f"_{i + 1}"
        cls = CLIPTextModel if i == 0 else CLIPTextModelWithProjection
        comps["text_encoder" + suffix] = cls(CLIPTextConfig(**cfg))
        comps["tokenizer" + suffix] = build_clip_tokenizer(
            tokenizer_dir / f"tokenizer{suffix}", pad_token=arch.pad_tokens[i])
    if arch.pipeline == "StableDiffusionPipeline":
        if arch.safety_checker is not None:
            cfg = arch.safety_checker
            size = cfg["vision_config"].get("image_size", 224)
            comps["safety_checker"] = StableDiffusionSafetyChecker(CLIPConfig(**cfg))
            comps["feature_extractor"] = CLIPImageProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        else:
            comps["safety_checker"] = None
            comps["feature_extractor"] = None
    return comps


def _scheduler_from_config(config: dict[str, Any]):
    import diffusers

    config = dict(config)
    cls = getattr(diffusers, config.pop("_class_name"))
    return cls.from_config(config)


def pipeline_class(name: str):
    """The diffusers pipeline class called ``name``."""
    import diffusers

    return getattr(diffusers, name)


def tiny_dir(spec: ModelSpec) -> Path:
    """The cache folder of ``spec``'s tiny stand-in (it may not be built yet)."""
    return cache_dir("tiny") / f"{spec.arch}-v{TINY_VERSION}"


def build_tiny(spec: ModelSpec) -> Path:
    """Build (once) and return the hub-layout folder of ``spec``'s tiny stand-in.

    Deterministic: seeded weights, written with ``save_pretrained(safe_serialization=True)``,
    plus ``*.fp16.safetensors`` variant files when the real repo has an fp16 variant. Built in
    a temporary folder and renamed into place, so concurrent builders never see half a model.
    """
    arch = _require_arch(spec, "tiny")
    target = tiny_dir(spec)
    if (target / "model_index.json").is_file():
        return target
    import torch

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with MODEL_BUILD_LOCK:  # real parameters: never while another thread builds on meta
            comps = build_components(miniature(arch), tokenizer_dir=tmp / ".tok")
            pipe = pipeline_class(arch.pipeline)(**comps)
        pipe.save_pretrained(tmp, safe_serialization=True)
        # fp16 files only in the folders where the real repo has them (e.g. BK-SDM-small's unet/
        # and vae/), so loading with variant="fp16" exercises diffusers' per-folder fallback
        for name in spec.fp16_variant:
            comp = pipe.components.get(name)
            if isinstance(comp, torch.nn.Module):  # plain cast: diffusers' .to() warns here
                torch.nn.Module.to(comp, torch.float16)
                comp.save_pretrained(tmp / name, safe_serialization=True, variant="fp16")
        shutil.rmtree(tmp / ".tok", ignore_errors=True)
        (tmp / "STANDIN.json").write_text(json.dumps({
            "what": "dsdcompare tiny stand-in: same architecture as the real model, shrunk, "
                    "random weights. Its images are noise.",
            "architecture": arch.key, "version": TINY_VERSION, "seed": TINY_SEED,
        }, indent=1))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_arch_pipeline(spec: ModelSpec, *, device: str = "cpu", dtype=None, seed: int = 0,
                        materialize: Collection[str] | None = None):
    """The full-size architecture of ``spec`` with random weights, without a slow initialisation.

    Components are built with empty (meta) parameters, so building costs neither memory nor
    the minutes a full random initialisation takes, then materialised on ``device`` in
    ``dtype`` and filled with seeded, scale-aware random values (see
    :func:`materialize_random`): seconds, not minutes. Schedulers, tokenizers and other
    non-module parts are built normally. Images are noise.

    ``materialize`` names the modules to materialise (default: all); the others stay on the
    meta device, e.g. to profile one component at a time in the memory of the largest one
    (:func:`materialize_random` fills one in later). Each module's values depend only on
    ``seed`` and its name, not on which others are materialised or in what order.
    """
    import torch
    from accelerate import init_empty_weights

    arch = _require_arch(spec, "arch")
    dtype = dtype or torch.float32
    # Only parameters go to the meta device: a blanket ``torch.device("meta")`` would also put
    # schedulers' tensors there (EulerDiscreteScheduler then fails to build).
    with MODEL_BUILD_LOCK, tempfile.TemporaryDirectory() as tok_dir, \
            init_empty_weights(include_buffers=False):
        comps = build_components(arch, tokenizer_dir=Path(tok_dir))
    for name, comp in comps.items():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
            if materialize is None or name in materialize:
                materialize_random(comp, device=device, dtype=dtype, seed=component_seed(seed, name))
            else:
                torch.nn.Module.to(comp, device="meta", dtype=dtype)
    return pipeline_class(arch.pipeline)(**comps)


def component_seed(seed: int, name: str) -> int:
    """The fill seed of component ``name``: stable across processes and materialisation order."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


def materialize_random(module, *, device: str, dtype, seed: int):
    """Give ``module`` real storage on ``device`` in ``dtype``, filled with seeded random values.

    Weights of two or more dimensions get variance 1/fan_in (uniform), norm scales 1, other
    floating parameters 0, so activations stay finite through deep stacks. Values are drawn in place on
    the device (no host copy, no float32 detour), so peak memory is the module's own size; the
    same seed gives the same values on the same device type (CPU and CUDA differ). On the meta
    device this only casts. Returns ``module``.
    """
    import torch

    # free and instant: the storage is made below. (``nn.Module.to`` itself: diffusers' override
    # warns about modules to keep in fp32 on every cast, and none are listed for these models.)
    torch.nn.Module.to(module, device="meta", dtype=dtype)
    module.to_empty(device=device)
    if torch.device(device).type != "meta":
        gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
        _fill_random(module, gen)
    return module


_NORM_TYPES = ("LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm2d", "AdaGroupNorm")


def _fill_random(module, gen) -> None:
    import torch

    # norm scales by module type; names ("norm", "ln_") are the fallback for custom norms
    norm_weights = {id(m.weight) for m in module.modules()
                    if type(m).__name__ in _NORM_TYPES and getattr(m, "weight", None) is not None}
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("embeds_weights"):
                # safety checker thresholds: 1 (their initial value) keeps noise from being
                # flagged as NSFW by random concept embeddings
                t.fill_(1.0)
            elif not t.is_floating_point():
                if "position_ids" in name:  # CLIP's integer buffer 0..76
                    t.copy_(torch.arange(t.numel(), device=t.device).reshape(t.shape))
                else:
                    t.zero_()
            elif id(t) in norm_weights or (t.dim() == 1 and leaf == "weight" and (
                    "norm" in name.lower() or ".ln" in name.lower())):
                t.fill_(1.0)
            elif t.dim() >= 2:
                # uniform with the variance of N(0, 1/fan_in): seeded uniform_ is about 3x
                # faster than seeded normal_ on a CPU, and the shape of the law is irrelevant
                bound = math.sqrt(3.0 / t[0].numel())
                t.uniform_(-bound, bound, generator=gen)
            else:
                t.zero_()
