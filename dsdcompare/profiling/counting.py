"""Counting without loading: parameters and FLOPs of a model's architecture on the meta device.

A pipeline built on the meta device has every module's shapes and no storage, so it is counted
in well under a second of compute and no memory: parameters by summing shapes, FLOPs with
``torch.utils.flop_counter.FlopCounterMode`` over the stage calls of :mod:`.stages`.
"""

from __future__ import annotations

import inspect
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..registry import ModelSpec, get_model
from ..speed import pipeline_modules
from ..zoo import MODEL_BUILD_LOCK, STANDIN_SOURCES
from .stages import ProfileError, check_size, stage_calls


def meta_pipeline(spec: ModelSpec, source: str = "arch"):
    """``spec``'s pipeline with every module on the meta device: configs only, no storage.

    ``source`` ``"arch"`` is the full-size architecture, ``"tiny"`` its miniature stand-in.
    """
    import torch
    from accelerate import init_empty_weights

    from ..archs import get_architecture, miniature
    from ..zoo import WeightsUnavailable, build_components, pipeline_class

    if source not in STANDIN_SOURCES:
        raise ProfileError(f"counting without loading needs a known architecture: source "
                           f"{source!r} is not one of ['arch', 'tiny'] (profile_model counts "
                           f"the loaded pipeline of any source)")
    if not spec.arch:
        raise WeightsUnavailable(f"{spec.key}: no architecture is registered for it (its "
                                 f"registry entry has no 'arch'), so it cannot be counted "
                                 f"without loading; profile it with --source hub or local")
    arch = get_architecture(spec.arch)
    if source == "tiny":
        arch = miniature(arch)
    with MODEL_BUILD_LOCK, tempfile.TemporaryDirectory() as tok_dir, \
            init_empty_weights(include_buffers=False):
        comps = build_components(arch, tokenizer_dir=Path(tok_dir))
    for comp in comps.values():
        if isinstance(comp, torch.nn.Module):
            torch.nn.Module.to(comp, device="meta")
            comp.eval()
    return pipeline_class(arch.pipeline)(**comps)


_meta_lock = threading.RLock()
_meta_cache: dict[tuple, Any] = {}
_flops_cache: dict[tuple, dict[str, int]] = {}


def _shared_meta_pipeline(spec: ModelSpec, source: str):
    # read-only users (counting) share one meta pipeline per architecture: building one costs
    # seconds (tokenizers), keeping one costs nothing (no storage)
    key = (spec.arch, source, spec.pipeline)
    with _meta_lock:
        if key not in _meta_cache:
            _meta_cache[key] = meta_pipeline(spec, source)
        return _meta_cache[key]


def meta_twin(pipe):
    """A copy of ``pipe`` whose modules are rebuilt from their configs on the meta device.

    Tokenizers, scheduler and feature extractor are shared. Works for any source (its configs
    are what the loaded weights were built from), so FLOPs never cost a real forward pass.
    """
    import torch
    from accelerate import init_empty_weights

    from ..speed import uncompiled

    twins = {}
    for name, module in pipeline_modules(pipe).items():
        module = uncompiled(module)  # a compiled UNet's twin is the plain UNet's
        with MODEL_BUILD_LOCK, init_empty_weights(include_buffers=False):
            if hasattr(type(module), "from_config"):  # diffusers ModelMixin
                twin = type(module).from_config(module.config)
            else:  # transformers PreTrainedModel
                twin = type(module)(module.config)
        torch.nn.Module.to(twin, device="meta")
        twins[name] = twin.eval()
    # the pipeline's own constructor (from_pipe would cast the twins to the original's dtype)
    kwargs = {}
    for name in inspect.signature(type(pipe).__init__).parameters:
        if name in pipe.components:
            kwargs[name] = twins.get(name, pipe.components[name])
        elif name in pipe.config:
            kwargs[name] = pipe.config[name]
    return type(pipe)(**kwargs)


def pipeline_params(pipe) -> dict[str, int]:
    """Parameters of every module of ``pipe`` (works on the meta device)."""
    return {name: sum(p.numel() for p in m.parameters())
            for name, m in pipeline_modules(pipe).items()}


def vae_decoder_params(vae) -> int:
    """Parameters of the VAE's decoding half: the decoder and ``post_quant_conv``."""
    parts = [vae.decoder] + ([vae.post_quant_conv] if getattr(vae, "post_quant_conv", None) else [])
    return sum(p.numel() for part in parts for p in part.parameters())


def count_params(spec: ModelSpec | str, source: str = "arch") -> dict[str, int]:
    """Parameters per module of ``spec``'s architecture, counted on the meta device (fast).

    Keys are the pipeline's module names (``unet``, ``vae``, ``text_encoder``,
    ``text_encoder_2``, ``safety_checker``) plus ``vae_decoder`` (the part of the VAE that
    decodes, included in ``vae``).
    """
    spec = get_model(spec) if isinstance(spec, str) else spec
    pipe = _shared_meta_pipeline(spec, source)
    counts = pipeline_params(pipe)
    counts["vae_decoder"] = vae_decoder_params(pipe.vae)
    return counts


def count_flops(spec: ModelSpec | str, size: int | None = None, *, source: str = "arch",
                cfg: bool = True) -> dict[str, int]:
    """FLOPs of one call of each stage at ``size`` pixels (default: native), on the meta device.

    ``text``: ``encode_prompt`` as the pipeline calls it (with CFG, SD 1.x also encodes the
    empty negative prompt; SDXL uses zeros for it); ``unet``: one denoising step at batch 2
    (batch 1 without CFG); ``vae``: decoding one image; ``safety``: the checker's vision tower.
    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, one
    multiply-add = 2 FLOPs).
    """
    spec = get_model(spec) if isinstance(spec, str) else spec
    size = check_size(size or spec.native_size)
    key = (spec.arch, source, spec.pipeline, size, cfg)
    with _meta_lock:  # pure function of the architecture: counted once per process
        if key not in _flops_cache:
            _flops_cache[key] = pipeline_flops(_shared_meta_pipeline(spec, source), size, cfg=cfg)
        return dict(_flops_cache[key])


def pipeline_flops(pipe, size: int, *, cfg: bool = True) -> dict[str, int]:
    """FLOPs per stage of a pipeline with modules on the meta device (see :func:`count_flops`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    calls = stage_calls(pipe, size, device="meta", dtype=torch.float32, cfg=cfg, seed=0,
                        for_flops=True)
    flops = {}
    with torch.no_grad():
        for stage, call in calls.items():
            with FlopCounterMode(display=False) as counter:
                call()
            flops[stage] = int(counter.get_total_flops())
    return flops


__all__ = ["count_flops", "count_params", "meta_pipeline", "meta_twin", "pipeline_flops",
           "pipeline_params", "vae_decoder_params"]
