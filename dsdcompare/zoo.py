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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archs import Architecture, get_architecture, miniature
from .paths import cache_dir
from .registry import ModelSpec

SOURCES = ("hub", "local", "tiny", "arch")
#: Sources whose weights are random: their images are noise and every view must say so.
STANDIN_SOURCES = ("tiny", "arch")
#: Bump when the miniatures change, so old cached builds are not reused.
TINY_VERSION = 1
TINY_SEED = 0


class WeightsUnavailable(RuntimeError):
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
        raise ValueError(f"Unknown weight source {source!r}: choose one of {list(SOURCES)}")
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
        return Location(spec.key, "hub", spec.repo_id, spec.revision, spec.fp16_variant, False)
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
        return Location(spec.key, "tiny", str(path), None, spec.fp16_variant, True)
    return Location(spec.key, "arch", "", None, False, True)


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
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel,
                              CLIPTextModelWithProjection)

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
        comps = build_components(miniature(arch), tokenizer_dir=tmp / ".tok")
        pipe = pipeline_class(arch.pipeline)(**comps)
        pipe.save_pretrained(tmp, safe_serialization=True)
        if spec.fp16_variant:
            pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True, variant="fp16")
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


def build_arch_pipeline(spec: ModelSpec, *, device: str = "cpu", dtype=None, seed: int = 0):
    """The full-size architecture of ``spec`` with random weights, without a slow initialisation.

    Components are built on the meta device (no memory, no init), materialised on ``device`` in
    ``dtype`` and filled with seeded, scale-aware random values (weights ~ N(0, 1/fan_in), norm
    scales 1, biases 0), so activations stay finite through deep stacks. Images are noise.
    """
    import torch

    arch = _require_arch(spec, "arch")
    dtype = dtype or torch.float32
    with tempfile.TemporaryDirectory() as tok_dir, torch.device("meta"):
        comps = build_components(arch, tokenizer_dir=Path(tok_dir))
    gen = torch.Generator().manual_seed(seed)
    for name, comp in comps.items():
        if isinstance(comp, torch.nn.Module):
            comp.to_empty(device=device)
            _fill_random(comp, gen)
            comp.to(dtype)
            comp.eval()
    pipe = pipeline_class(arch.pipeline)(**comps)
    return pipe


def _fill_random(module, gen) -> None:
    import torch

    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("embeds_weights"):
                # safety checker thresholds: 1 (their initial value) keeps noise from being
                # flagged as NSFW by random concept embeddings
                t.fill_(1.0)
            elif t.dim() >= 2:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("weight") and ("norm" in name.lower() or "ln" in name.lower()):
                t.fill_(1.0)
            elif t.is_floating_point():
                t.zero_()
            elif "position_ids" in name:  # CLIP's integer buffer 0..76
                t.copy_(torch.arange(t.numel()).reshape(t.shape))
            else:
                t.zero_()
