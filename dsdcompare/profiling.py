"""Architecture-true profiling: parameters, bytes, FLOPs and measured latency per component.

Distillation's claims are speed and size. Both depend on the architecture, not on the weight
values, so they are measured here on the ``arch`` weight source (each model's exact full-size
architecture with random weights) on any machine, without downloading weights:

* :func:`count_params` and :func:`count_flops` build the pipeline on the meta device (no memory,
  well under a second of compute) and count parameters, and FLOPs with
  ``torch.utils.flop_counter.FlopCounterMode``.
* :func:`profile_model` loads the pipeline through the normal loading path and times each
  component the way the pipeline calls it: text encoding (``encode_prompt``, with the negative
  prompt of classifier-free guidance), one UNet step at batch 2 (CFG), the VAE decode of one
  image (in fp32 where the pipeline upcasts it) and the safety checker where the repo ships one.
  The estimated time per image is ``text + steps * unet + vae + safety``; scheduler arithmetic
  and post-processing (well under 1% at full size) are left out.
* :func:`ratios` sets each student beside its registry teacher, and beside the published claims.

Speed options (:class:`SpeedOptions`) and the dtype are explicit settings, recorded with every
profile. The core functions print nothing; :func:`run` is the command line's entry.
"""

from __future__ import annotations

import argparse
import csv
import gc
import inspect
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from .registry import ModelSpec, get_model

#: The components timed, in pipeline order.
STAGES = ("text", "unet", "vae", "safety")
#: Display names of the stages.
STAGE_LABELS = {"text": "text encoding", "unet": "UNet step", "vae": "VAE decode",
                "safety": "safety checker"}
#: Pipeline modules each stage runs.
STAGE_MODULES = {"text": ("text_encoder", "text_encoder_2"), "unet": ("unet",), "vae": ("vae",),
                 "safety": ("safety_checker",)}
#: The prompt encoded while timing (its content does not change the cost: CLIP pads to 77).
PROMPT = "a photograph of an astronaut riding a horse on the moon"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MIN_SIZE, MAX_SIZE = 64, 2048
PROFILE_SOURCES = ("arch", "tiny", "hub", "local")

ProgressFn = Callable[[str], None]


class ProfileError(ValueError):
    """A profiling setting is invalid; the message names the value and the remedy."""


# --- speed options -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpeedOptions:
    """Speed settings applied to a pipeline, recorded with every result measured under them.

    The dtype (fp32, fp16, bf16: "bf16 on CPU") is a separate setting of its own, recorded next
    to these. :meth:`apply` sets every option both ways, so a cached pipeline reused under other
    options ends up exactly as asked.
    """

    sdpa: bool = True  # PyTorch scaled-dot-product attention; False: classic (AttnProcessor, eager)
    channels_last: bool = False  # UNet and VAE weights in channels_last memory format
    compile_unet: bool = False  # torch.compile the UNet (its first call compiles; reported apart)
    compile_mode: str = "default"  # torch.compile mode, one of COMPILE_MODES
    vae_slicing: bool = False  # decode a batch one image at a time (saves memory at batch > 1)
    vae_tiling: bool = False  # decode in overlapping tiles (saves memory at large sizes)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in (bool, "bool") and not isinstance(value, bool):
                raise ProfileError(f"speed option {f.name} must be True or False, got {value!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ProfileError(f"compile_mode {self.compile_mode!r} is not a torch.compile mode: "
                               f"choose one of {list(COMPILE_MODES)}")

    def to_dict(self) -> dict:
        """The options as plain data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SpeedOptions":
        """Options from :meth:`to_dict` output; unknown keys fail, naming the valid ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ProfileError(f"unknown speed option(s) {unknown}: valid options are {names}")
        return cls(**data)

    def label(self) -> str:
        """A short name for tables: ``"sdpa"``, ``"eager-attn+channels_last+compile"``..."""
        parts = ["sdpa" if self.sdpa else "eager-attn"]
        parts += [name for name, on in (("channels_last", self.channels_last),
                                        ("vae_slicing", self.vae_slicing),
                                        ("vae_tiling", self.vae_tiling)) if on]
        if self.compile_unet:
            mode = self.compile_mode
            parts.append("compile" if mode == "default" else f"compile:{mode}")
        return "+".join(parts)

    def apply(self, pipe) -> dict:
        """Put ``pipe`` in exactly this state (idempotent); return the record of what is in force.

        Attention: diffusers modules (UNet, VAE) get ``AttnProcessor2_0`` (SDPA) or
        ``AttnProcessor``; transformers modules (text encoders, safety checker) the ``"sdpa"``
        or ``"eager"`` implementation. channels_last applies to the UNet and the VAE. The UNet
        is compiled in place (``nn.Module.compile``), lazily: its next call compiles.
        """
        import torch
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        # Change only what differs: a compiled UNet recompiles when its modules change, and
        # the engine applies the options before every call of a cached pipeline.
        processor = AttnProcessor2_0 if self.sdpa else AttnProcessor
        for module in _modules(pipe).values():
            if hasattr(module, "set_attn_processor") and getattr(module, "attn_processors", None):
                if {type(p) for p in module.attn_processors.values()} != {processor}:
                    module.set_attn_processor(processor())
            else:
                _set_transformers_attention(module, "sdpa" if self.sdpa else "eager")
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for module in (pipe.unet, pipe.vae):
            if not all(p.is_contiguous(memory_format=fmt) for p in module.parameters()
                       if p.dim() == 4):
                torch.nn.Module.to(module, memory_format=fmt)
        compiled = getattr(pipe.unet, "_compiled_call_impl", None) is not None
        if self.compile_unet and not compiled:
            pipe.unet.compile(mode=None if self.compile_mode == "default" else self.compile_mode)
        elif not self.compile_unet and compiled:
            # torch has no public "uncompile"; nn.Module.compile only sets this attribute
            pipe.unet._compiled_call_impl = None
        (pipe.vae.enable_slicing if self.vae_slicing else pipe.vae.disable_slicing)()
        (pipe.vae.enable_tiling if self.vae_tiling else pipe.vae.disable_tiling)()
        return self.to_dict()


def _set_transformers_attention(module, implementation: str) -> None:
    if not hasattr(module, "set_attn_implementation"):  # not a transformers model
        return
    if getattr(module, "_supports_sdpa", False):
        if module.config._attn_implementation != implementation:
            module.set_attn_implementation(implementation)
    else:  # a wrapper without attention of its own (the safety checker) around models with it
        for child in module.children():
            _set_transformers_attention(child, implementation)


def _modules(pipe) -> dict[str, Any]:
    import torch

    return {name: comp for name, comp in pipe.components.items()
            if isinstance(comp, torch.nn.Module)}


# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComponentTiming:
    """Measured latency of one component: first calls apart from the steady state."""

    first_s: tuple[float, ...]  # the first call after each load (lazy init, compilation)
    samples_s: tuple[float, ...]  # steady-state calls, after warm-up, of every round
    median_s: float  # median of samples_s: the headline number
    min_s: float
    max_s: float
    #: process CPU seconds of each steady-state call (all threads): with T threads, CPU / wall
    #: well under T means the process waited for the CPU (a shared machine), not for work
    cpu_samples_s: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, first_s: Iterable[float], samples_s: Iterable[float],
                     cpu_samples_s: Iterable[float] = ()) -> "ComponentTiming":
        """Summarise measured seconds."""
        first, samples = tuple(first_s), tuple(samples_s)
        if not samples:
            raise ValueError("a timing needs at least one steady-state sample")
        return cls(first, samples, statistics.median(samples), min(samples), max(samples),
                   tuple(cpu_samples_s))

    @property
    def cpu_per_wall(self) -> float | None:
        """Process CPU seconds per wall second over the steady-state calls."""
        if not self.cpu_samples_s:
            return None
        return sum(self.cpu_samples_s) / sum(self.samples_s)

    def merged(self, other: "ComponentTiming") -> "ComponentTiming":
        """Both rounds' measurements together."""
        return ComponentTiming.from_samples(self.first_s + other.first_s,
                                            self.samples_s + other.samples_s,
                                            self.cpu_samples_s + other.cpu_samples_s)


@dataclass(frozen=True)
class ModelProfile:
    """Size, FLOPs and measured latency of one model under one set of settings (plain data)."""

    model: str  # registry key
    name: str  # display name
    teacher: str | None  # registry key of its teacher
    source: str  # weight source: arch (full size, random) | tiny | hub | local
    standin: bool  # random weights: images would be noise (sizes and timings are real)
    size: int  # image side in pixels
    latent_size: int  # latent side (size / VAE scale factor)
    steps: int  # denoising steps of the end-to-end estimate
    cfg: bool  # classifier-free guidance: UNet at batch 2, negative prompt encoded
    device: str
    device_name: str
    dtype: str  # fp32 | fp16 | bf16
    options: dict  # SpeedOptions.to_dict() in force
    params: dict  # parameters per pipeline module (unet, vae, text_encoder[_2], safety_checker)
    vae_decoder_params: int  # the VAE's decoding half (decoder + post_quant_conv)
    flops: dict  # FLOPs of one call per stage (text, unet = one step, vae = decode, safety)
    timings: dict  # stage -> ComponentTiming (empty when latency was not measured)
    load_s: tuple[float, ...]  # loading (arch: building and random fill) seconds of each round
    vae_upcast: bool  # the pipeline decodes in fp32 (SDXL's VAE overflows in fp16): timed so
    low_memory: bool  # components were materialised and timed one at a time
    warmup: int  # calls per component excluded from steady state (the first is kept apart)
    repeats: int  # steady-state calls per component and round
    rounds: int  # rebuild-and-measure rounds merged into this profile
    peak_memory_bytes: int | None  # peak while timing (see memory_kind)
    memory_kind: str | None  # "cuda max allocated" | "process RSS (sampled)"
    notes: tuple[str, ...]  # caveats shown with the numbers (reconstructed config, emulated dtype)
    env: dict  # library versions, threads, device, load average before and after

    @property
    def total_params(self) -> int:
        """Every parameter the pipeline loads."""
        return sum(self.params.values())

    @property
    def generation_params(self) -> int:
        """Parameters that make an image: text encoders + UNet + VAE decoder (BK-SDM's count)."""
        text = sum(self.params.get(m, 0) for m in STAGE_MODULES["text"])
        return text + self.params.get("unet", 0) + self.vae_decoder_params

    def seconds(self, stage: str) -> float | None:
        """Median seconds of one call of ``stage``, or None when it was not measured."""
        timing = self.timings.get(stage)
        return timing.median_s if timing is not None else None

    @property
    def est_image_s(self) -> float | None:
        """Estimated seconds per image: text + steps x UNet step + VAE decode (+ safety checker)."""
        if not all(s in self.timings for s in ("text", "unet", "vae")):
            return None
        total = self.seconds("text") + self.steps * self.seconds("unet") + self.seconds("vae")
        return total + (self.seconds("safety") or 0.0)

    @property
    def compile_s(self) -> float | None:
        """Extra seconds of the UNet's first call when compiled (compilation, roughly)."""
        timing = self.timings.get("unet")
        if not self.options.get("compile_unet") or timing is None or not timing.first_s:
            return None
        return statistics.median(timing.first_s) - timing.median_s

    def conditions(self) -> tuple:
        """What must be equal for two profiles' numbers to be compared."""
        return (self.size, self.steps, self.cfg, self.device, self.dtype, self.source,
                tuple(sorted(self.options.items())))

    def merged(self, other: "ModelProfile") -> "ModelProfile":
        """This profile and another round of the same model under the same conditions."""
        if (other.model, other.conditions()) != (self.model, self.conditions()):
            raise ValueError(f"cannot merge profiles of {self.model!r} and {other.model!r} "
                             f"measured under different conditions")
        timings = {s: (t.merged(other.timings[s]) if s in other.timings else t)
                   for s, t in self.timings.items()}
        peaks = [p for p in (self.peak_memory_bytes, other.peak_memory_bytes) if p is not None]
        env = {**self.env, "load_average_after": other.env.get("load_average_after")}
        return replace(self, timings=timings, load_s=self.load_s + other.load_s,
                       rounds=self.rounds + other.rounds, env=env,
                       peak_memory_bytes=max(peaks) if peaks else None)

    def to_dict(self) -> dict:
        """JSON-ready plain data, with the derived numbers."""
        data = asdict(self)
        data.update(total_params=self.total_params, generation_params=self.generation_params,
                    est_image_s=self.est_image_s, compile_s=self.compile_s)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelProfile":
        """Inverse of :meth:`to_dict` (derived numbers are recomputed)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["timings"] = {s: ComponentTiming(tuple(t["first_s"]), tuple(t["samples_s"]),
                                            t["median_s"], t["min_s"], t["max_s"],
                                            tuple(t.get("cpu_samples_s", ())))
                         for s, t in data["timings"].items()}
        kw["load_s"] = tuple(kw["load_s"])
        kw["notes"] = tuple(kw["notes"])
        return cls(**kw)


# --- validation ----------------------------------------------------------------------------------

def check_size(size: int) -> int:
    """Return ``size`` or raise naming it: a multiple of 8 from 64 to 2048 pixels."""
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE \
            or size % 8:
        hint = f"; try {max(MIN_SIZE, min(MAX_SIZE, round(size / 8) * 8))}" \
            if isinstance(size, (int, float)) and not isinstance(size, bool) else ""
        raise ProfileError(f"size must be a multiple of 8 (the VAE works on 8x8 pixel blocks) "
                           f"from {MIN_SIZE} to {MAX_SIZE}, got {size!r}{hint}")
    return size


def check_dtype(device: str, dtype) -> list[str]:
    """Raise :class:`ProfileError` if ``device`` cannot compute in ``dtype``; return caveats.

    bf16 needs an Ampere or newer GPU on CUDA. On a CPU both half types run; without native
    support (AVX512-BF16/AMX, AVX512-FP16) they are emulated and slower than fp32: a caveat.
    """
    import torch

    kind = device.split(":")[0]
    name = _dtype_name(dtype)
    if kind == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        gpu = torch.cuda.get_device_name(device)
        raise ProfileError(f"dtype bf16 was asked for on {device} ({gpu}), "
                           f"which has no bf16 support (it needs compute capability 8.0+); "
                           f"use --dtype fp16 on this GPU")
    if kind == "mps" and dtype == torch.bfloat16 and not _mps_bf16_ok():
        raise ProfileError("dtype bf16 was asked for on mps, which needs macOS 14 or newer; "
                           "use --dtype fp16 or fp32")
    notes = []
    mkldnn = torch.ops.mkldnn
    if kind == "cpu" and dtype == torch.bfloat16 and not mkldnn._is_mkldnn_bf16_supported():
        notes.append("bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32")
    if kind == "cpu" and dtype == torch.float16 and not mkldnn._is_mkldnn_fp16_supported():
        notes.append(f"{name} is emulated on this CPU (no native fp16): slower than fp32; "
                     f"bf16 is the CPU's half precision")
    return notes


def _mps_bf16_ok() -> bool:
    import torch

    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


def _check_stages(stages: Iterable[str]) -> tuple[str, ...]:
    stages = tuple(stages)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ProfileError(f"unknown component(s) {bad}: choose from {list(STAGES)}")
    return stages


def _dtype_name(dtype) -> str:
    from .loading import dtype_name

    return dtype_name(dtype)


# --- counting on the meta device -----------------------------------------------------------------

def meta_pipeline(spec: ModelSpec, source: str = "arch"):
    """``spec``'s pipeline with every module on the meta device: configs only, no storage.

    ``source`` ``"arch"`` is the full-size architecture, ``"tiny"`` its miniature stand-in.
    """
    import torch
    from accelerate import init_empty_weights

    from .archs import get_architecture, miniature
    from .zoo import WeightsUnavailable, build_components, pipeline_class

    if source not in ("arch", "tiny"):
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
    with tempfile.TemporaryDirectory() as tok_dir, init_empty_weights(include_buffers=False):
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

    twins = {}
    for name, module in _modules(pipe).items():
        with init_empty_weights(include_buffers=False):
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
    return {name: sum(p.numel() for p in m.parameters()) for name, m in _modules(pipe).items()}


def _vae_decoder_params(vae) -> int:
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
    counts["vae_decoder"] = _vae_decoder_params(pipe.vae)
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

    calls = _stage_calls(pipe, size, device="meta", dtype=torch.float32, cfg=cfg, seed=0,
                         for_flops=True)
    flops = {}
    with torch.no_grad():
        for stage, call in calls.items():
            with FlopCounterMode(display=False) as counter:
                call()
            flops[stage] = int(counter.get_total_flops())
    return flops


# --- the stage calls ------------------------------------------------------------------------------

def _stage_calls(pipe, size: int, *, device: str, dtype, cfg: bool, seed: int,
                 for_flops: bool = False) -> dict[str, Callable[[], Any]]:
    """One callable per stage, each doing what the pipeline does for that stage."""
    import torch

    gen = torch.Generator("cpu").manual_seed(seed)
    dev = torch.device(device)
    unet, vae = pipe.unet, pipe.vae
    latent = size // pipe.vae_scale_factor
    batch = 2 if cfg else 1

    def rand(*shape, dt=dtype):
        return torch.randn(shape, generator=gen).to(device=dev, dtype=dt)

    # 1. text: exactly the pipeline's encode_prompt (tokenizing included)
    def text():
        return pipe.encode_prompt(prompt=PROMPT, device=dev, num_images_per_prompt=1,
                                  do_classifier_free_guidance=cfg)

    # 2. unet: one step; inputs shaped as the pipeline makes them
    cfg_u = unet.config
    sample = rand(batch, cfg_u.in_channels, latent, latent)
    hidden = rand(batch, 77, cfg_u.cross_attention_dim)
    timestep = torch.tensor(999, device=dev)
    kwargs: dict[str, Any] = {}
    if cfg_u.addition_embed_type == "text_time":
        time_dim = cfg_u.addition_time_embed_dim
        n_ids = 6  # SDXL micro-conditioning: original size, crop corner, target size
        pooled = cfg_u.projection_class_embeddings_input_dim - n_ids * time_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": rand(batch, pooled),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, device=dev,
                                     dtype=dtype)}

    def unet_step():
        return unet(sample, timestep, encoder_hidden_states=hidden, return_dict=False, **kwargs)[0]

    # 3. vae: decode one image; SDXL pipelines decode in fp32 when the VAE is fp16 and its
    #    config says force_upcast (it overflows in fp16), casting the VAE there and back
    upcast = _vae_upcasts(pipe)
    latents = rand(1, vae.config.latent_channels, latent, latent) / vae.config.scaling_factor

    def decode():
        if upcast and not for_flops:
            torch.nn.Module.to(vae, dtype=torch.float32)
            try:
                return vae.decode(latents.float(), return_dict=False)[0]
            finally:
                torch.nn.Module.to(vae, dtype=torch.float16)
        return vae.decode(latents, return_dict=False)[0]

    calls = {"text": text, "unet": unet_step, "vae": decode}

    # 4. safety checker: what run_safety_checker does (post-processing, CLIP vision tower)
    checker = getattr(pipe, "safety_checker", None)
    if checker is not None:
        image = (torch.rand((1, 3, size, size), generator=gen) * 2 - 1).to(dev, dtype)
        crop = pipe.feature_extractor.crop_size
        clip_input = rand(1, 3, crop["height"], crop["width"])

        def safety():
            if for_flops:  # the checker itself moves scores to numpy: count its vision tower
                pooled_out = checker.vision_model(clip_input)[1]
                return checker.visual_projection(pooled_out)
            return pipe.run_safety_checker(image, dev, dtype)

        calls["safety"] = safety
    return calls


def _vae_upcasts(pipe) -> bool:
    import torch

    # only pipelines that implement the upcast do it (StableDiffusionXLPipeline has upcast_vae)
    return (hasattr(type(pipe), "upcast_vae") and pipe.vae.dtype == torch.float16
            and bool(getattr(pipe.vae.config, "force_upcast", False)))


def _time_call(call: Callable[[], Any], device: str) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of one call, the device synchronised around it."""
    from .timing import synchronize

    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    call()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


# --- profiling ------------------------------------------------------------------------------------

def environment(device: str) -> dict:
    """Versions, hardware and machine load, recorded with every profile."""
    import torch

    from .engine import environment as engine_environment

    env = dict(engine_environment(device))
    env["cpu_bf16_native"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    env["cpu_count"] = os.cpu_count()
    env["load_average_before"] = _load_average()
    return env


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def profile_model(spec: ModelSpec | str, *, size: int | None = None, steps: int | None = None,
                  device: str = "auto", dtype: str = "auto",
                  options: SpeedOptions | None = None, source: str = "arch",
                  stages: Iterable[str] = STAGES, warmup: int = 1, repeats: int = 3,
                  low_memory: bool = False, cfg: bool = True, seed: int = 0,
                  progress: ProgressFn | None = None) -> ModelProfile:
    """Parameters, FLOPs and measured latency of each component of one model.

    Args:
        spec: the model (a :class:`ModelSpec` or a registry key).
        size: image side in pixels (default: the model's native size), multiple of 8.
        steps: denoising steps for the end-to-end estimate (default: the model's own).
        device, dtype: as in :func:`dsdcompare.loading.load_pipeline` (``auto``: fp16 on a GPU,
            fp32 on a CPU).
        options: speed options applied before timing (default: SDPA only).
        source: weight source; ``arch`` (full size, random weights) needs no download.
        stages: components to time (default all; ``()`` only counts parameters and FLOPs).
        warmup: untimed calls per component before the repeats (the first is kept apart as
            ``first_s``: lazy initialisation and compilation land there).
        repeats: timed calls per component; in normal mode interleaved across components.
        low_memory: (``arch`` only) materialise and time one component at a time and free it
            before the next, so peak memory is the largest component, not the whole pipeline.
        cfg: classifier-free guidance (UNet batch 2 and the negative prompt).
        seed: seeds the random weights and inputs.
        progress: called with a short message at each phase.

    Returns:
        A :class:`ModelProfile`; its ``est_image_s`` is the estimated end-to-end time.
    """
    import torch

    from .loading import load_pipeline, resolve_device, resolve_dtype
    from .timing import PeakMemory
    from .zoo import build_arch_pipeline, check_source, component_seed, materialize_random

    say = progress or (lambda message: None)
    # 1. Check inputs
    spec = get_model(spec) if isinstance(spec, str) else spec
    size = check_size(size if size is not None else spec.native_size)
    steps = steps if steps is not None else spec.steps
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
        raise ProfileError(f"steps must be an integer from 1 to 1000, got {steps!r}")
    for name, value, lo in (("warmup", warmup, 1), ("repeats", repeats, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= 100:
            raise ProfileError(f"{name} must be an integer from {lo} to 100, got {value!r}")
    check_source(source)
    stages = _check_stages(stages)
    if low_memory and source != "arch":
        raise ProfileError(f"low_memory builds components one at a time from the architecture: "
                           f"it needs source 'arch', got {source!r}")
    options = options or SpeedOptions()
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    notes = check_dtype(device, torch_dtype)
    env = environment(device)

    # 2. Load (or, in low-memory mode, build on the meta device)
    say(f"{spec.key}: loading ({source}, {device}, {_dtype_name(torch_dtype)})")
    start = time.perf_counter()
    if low_memory:
        pipe = build_arch_pipeline(spec, device=device, dtype=torch_dtype, seed=seed,
                                   materialize=())
        pipe.set_progress_bar_config(disable=True)
    else:
        loaded = load_pipeline(spec, source, device=device, dtype=dtype)
        pipe = loaded.pipe
    load_s = time.perf_counter() - start
    options.apply(pipe)

    # 3. Count parameters and FLOPs (on a meta twin: no real forward pass)
    params = pipeline_params(pipe)
    flops = pipeline_flops(meta_twin(pipe), size, cfg=cfg)
    upcast = _vae_upcasts(pipe)
    if getattr(pipe, "safety_checker", None) is None:
        stages = tuple(s for s in stages if s != "safety")

    # 4. Time each stage: warm-up, device sync around every call, repeats
    firsts: dict[str, float] = {}
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in stages}  # (wall, CPU)
    with torch.inference_mode(), PeakMemory(device) as peak:
        calls = _stage_calls(pipe, size, device=device, dtype=torch_dtype, cfg=cfg, seed=seed)
        if low_memory:
            for stage in stages:  # one component in memory at a time
                names = [n for n in STAGE_MODULES[stage] if n in _modules(pipe)]
                say(f"{spec.key}: materialising {', '.join(names)}")
                start = time.perf_counter()
                for n in names:
                    materialize_random(getattr(pipe, n), device=device, dtype=torch_dtype,
                                       seed=component_seed(seed, n))
                load_s += time.perf_counter() - start  # building counts as loading
                options.apply(pipe)
                firsts[stage] = _warm_up(stage, calls[stage], device, warmup, spec.key, say)
                for r in range(repeats):
                    samples[stage].append(_time_call(calls[stage], device))
                for n in names:
                    torch.nn.Module.to(getattr(pipe, n), device="meta")
                _release_memory()
        else:
            for stage in stages:
                firsts[stage] = _warm_up(stage, calls[stage], device, warmup, spec.key, say)
            for r in range(repeats):  # interleaved: slow drifts of the machine hit every stage
                say(f"{spec.key}: repeat {r + 1}/{repeats}")
                for stage in stages:
                    samples[stage].append(_time_call(calls[stage], device))
    env["load_average_after"] = _load_average()

    # 5. The profile
    if spec.arch:
        from .archs import get_architecture

        if get_architecture(spec.arch).note and source in ("arch", "tiny"):
            notes.append(get_architecture(spec.arch).note)
    if source in ("arch", "tiny"):
        notes.append("random weights: sizes and timings are real, images would be noise")
    if upcast:
        notes.append("the VAE decodes in fp32 (the pipeline upcasts SDXL's fp16 VAE): timed so")
    return ModelProfile(
        model=spec.key, name=spec.name, teacher=spec.teacher, source=source,
        standin=source in ("arch", "tiny"), size=size, latent_size=size // pipe.vae_scale_factor,
        steps=steps, cfg=cfg, device=device, device_name=env.get("device_name", device),
        dtype=_dtype_name(torch_dtype), options=options.to_dict(), params=params,
        vae_decoder_params=_vae_decoder_params(pipe.vae), flops=flops,
        timings={s: ComponentTiming.from_samples([firsts[s]], [w for w, _ in samples[s]],
                                                 [c for _, c in samples[s]]) for s in stages},
        load_s=(load_s,), vae_upcast=upcast, low_memory=low_memory, warmup=warmup,
        repeats=repeats, rounds=1, peak_memory_bytes=peak.peak_bytes if stages else None,
        memory_kind=peak.kind if stages else None, notes=tuple(notes), env=env,
    )


def _warm_up(stage: str, call, device: str, warmup: int, key: str, say: ProgressFn) -> float:
    say(f"{key}: {STAGE_LABELS[stage]}: first call")
    first, _ = _time_call(call, device)
    for _ in range(warmup - 1):
        _time_call(call, device)
    return first


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def profile_models(specs: Iterable[ModelSpec | str], *, rounds: int = 1,
                   progress: ProgressFn | None = None, **kwargs) -> list[ModelProfile]:
    """:func:`profile_model` for each model, one model in memory at a time, in ``rounds``.

    Each round rebuilds and measures every model in turn; the rounds' samples are merged. On a
    shared machine this spreads other processes' load over all models instead of one.
    """
    specs = [get_model(s) if isinstance(s, str) else s for s in specs]
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 20:
        raise ProfileError(f"rounds must be an integer from 1 to 20, got {rounds!r}")
    say = progress or (lambda message: None)
    merged: dict[str, ModelProfile] = {}
    for r in range(rounds):
        for spec in specs:
            say(f"round {r + 1}/{rounds}: {spec.key}")
            profile = profile_model(spec, progress=progress, **kwargs)
            merged[spec.key] = merged[spec.key].merged(profile) if spec.key in merged else profile
            del profile
            _release_memory()
    return [merged[s.key] for s in specs]


# --- ratios ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ratio:
    """A student/teacher ratio of one metric, measured, beside what is published."""

    student: str  # registry key
    teacher: str  # registry key
    metric: str  # what is compared (a key of METRICS)
    label: str  # display name of the metric
    measured: float | None  # student / teacher under equal conditions (None: not measured)
    published: float | None  # the same ratio from published figures of both (None: none)
    claim: str  # published claims about the pair that speak to this metric ("" if none)
    source: str  # where the published figures and claims come from
    conditions: str  # size, dtype, device, options, source of the measurement


#: Metrics compared between a student and its teacher: key -> (label, value of a profile).
METRICS: dict[str, tuple[str, Callable[[ModelProfile], float | None]]] = {
    "unet_params": ("UNet parameters", lambda p: p.params.get("unet")),
    "generation_params": ("parameters: text encoders + UNet + VAE decoder",
                          lambda p: p.generation_params),
    "unet_flops": ("UNet FLOPs per step", lambda p: p.flops.get("unet")),
    "unet_s": ("UNet time per step", lambda p: p.seconds("unet")),
    "image_s": ("estimated time per image", lambda p: p.est_image_s),
}
#: Published facts (registry ``Fact.name`` prefixes) that speak to each metric. Figures both
#: models publish under one name give a published ratio; the student's other facts are claims.
PUBLISHED_FOR_METRIC = {
    "unet_params": ("UNet parameters",),
    "generation_params": ("whole-model reduction", "claim"),
    "image_s": ("latency", "whole-model reduction", "claim"),
}


def parse_figure(value: str) -> tuple[float, str] | None:
    """``"859.5 M"`` -> ``(859.5e6, "count")``, ``"3.23 s"`` -> ``(3.23, "s")``; else None."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kMBG]|s|ms)?\s*", value)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2) or ""
    scale = {"k": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}
    if unit in scale:
        return number * scale[unit], "count"
    if unit == "ms":
        return number / 1e3, "s"
    return number, unit or "number"


def _published(student: ModelSpec, teacher: ModelSpec,
               metric: str) -> tuple[float | None, str, str]:
    prefixes = PUBLISHED_FOR_METRIC.get(metric, ())
    ratio, claims, sources = None, [], []
    teacher_facts = {f.name: f for f in teacher.facts}
    for fact in student.facts:
        if not fact.name.startswith(prefixes):
            continue
        other = teacher_facts.get(fact.name)
        mine, theirs = parse_figure(fact.value), parse_figure(other.value) if other else None
        if mine and theirs and mine[1] == theirs[1] and theirs[0] > 0 and ratio is None:
            ratio = mine[0] / theirs[0]
            sources.append(f"{fact.name}: {fact.value} vs {other.value} ({fact.source}; "
                           f"{other.source})")
        elif other is None:
            claims.append(f"{fact.value}" if fact.name == "claim" else f"{fact.name}: {fact.value}")
            sources.append(fact.source)
    return ratio, "; ".join(claims), "; ".join(dict.fromkeys(sources))


def ratios(profiles: Iterable[ModelProfile]) -> list[Ratio]:
    """Student/teacher ratios for every registry pair profiled under equal conditions."""
    profiles = list(profiles)
    out = []
    for student in profiles:
        if not student.teacher:
            continue
        for teacher in profiles:
            if teacher.model != student.teacher or teacher.conditions() != student.conditions():
                continue
            s_spec, t_spec = get_model(student.model), get_model(teacher.model)
            conditions = (f"{student.size} px, {student.dtype}, {student.device}, "
                          f"{SpeedOptions.from_dict(student.options).label()}, {student.source}")
            for metric, (label, value) in METRICS.items():
                s_val, t_val = value(student), value(teacher)
                measured = s_val / t_val if s_val is not None and t_val else None
                published, claim, source = _published(s_spec, t_spec, metric)
                if measured is None and published is None and not claim:
                    continue
                out.append(Ratio(student.model, teacher.model, metric, label, measured,
                                 published, claim, source, conditions))
    return out


# --- tables ---------------------------------------------------------------------------------------

def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return round(seconds * 1e3, 1 if seconds < 10 else 0)


def _stage_params(profile: ModelProfile, stage: str) -> int:
    return sum(profile.params.get(m, 0) for m in STAGE_MODULES[stage])


def profile_table(profiles: Iterable[ModelProfile]) -> list[dict]:
    """One row per model and component, plus an ``image (est.)`` row per model.

    Columns: parameters (M), weight bytes in fp32 and fp16 (GB), GFLOP per call, median and
    range of the measured time (ms), the first call (ms), and the conditions. The image row
    holds the whole pipeline's parameters and ``text + steps x UNet + VAE (+ safety)``.
    Used by the command line and the dashboard's Models page.
    """
    rows = []
    for p in profiles:
        common = {"model": p.model, "size": p.size, "dtype": p.dtype, "device": p.device,
                  "options": SpeedOptions.from_dict(p.options).label(), "source": p.source}
        for stage in STAGES:
            if stage == "safety" and "safety_checker" not in p.params:
                continue
            n = _stage_params(p, stage)
            t = p.timings.get(stage)
            batch = " (batch 2)" if stage == "unet" and p.cfg else ""
            rows.append({
                **common, "component": STAGE_LABELS[stage] + batch,
                "params (M)": _r(n / 1e6), "fp32 (GB)": _r(n * 4 / 1e9, 2),
                "fp16 (GB)": _r(n * 2 / 1e9, 2),
                "GFLOP": _r(p.flops.get(stage, 0) / 1e9),
                "time (ms)": _ms(t.median_s) if t else None,
                "min–max (ms)": f"{_ms(t.min_s)}–{_ms(t.max_s)}" if t else None,
                "first call (ms)": _ms(statistics.median(t.first_s)) if t and t.first_s else None,
                "n": len(t.samples_s) if t else 0,
            })
        est_flops = (p.flops.get("text", 0) + p.steps * p.flops.get("unet", 0)
                     + p.flops.get("vae", 0) + p.flops.get("safety", 0))
        rows.append({
            **common, "component": f"image (est., {p.steps} steps)",
            "params (M)": _r(p.total_params / 1e6), "fp32 (GB)": _r(p.total_params * 4 / 1e9, 2),
            "fp16 (GB)": _r(p.total_params * 2 / 1e9, 2), "GFLOP": _r(est_flops / 1e9),
            "time (ms)": _ms(p.est_image_s), "min–max (ms)": None,
            "first call (ms)": None, "n": None,
        })
    return rows


def summary_table(profiles: Iterable[ModelProfile]) -> list[dict]:
    """One row per model: sizes, per-component medians, estimated image time, peak memory."""
    rows = []
    for p in profiles:
        rows.append({
            "model": p.model, "size": p.size, "dtype": p.dtype, "device": p.device,
            "options": SpeedOptions.from_dict(p.options).label(),
            "UNet params (M)": _r(p.params.get("unet", 0) / 1e6),
            "UNet GFLOP/step": _r(p.flops.get("unet", 0) / 1e9),
            "text (ms)": _ms(p.seconds("text")), "UNet (ms/step)": _ms(p.seconds("unet")),
            "VAE (ms)": _ms(p.seconds("vae")), "safety (ms)": _ms(p.seconds("safety")),
            f"est. s/image": _r(p.est_image_s, 2), "steps": p.steps,
            "peak memory (GB)": _r(p.peak_memory_bytes / 1e9, 2) if p.peak_memory_bytes else None,
            "notes": "; ".join(p.notes),
        })
    return rows


def ratio_table(rows: Iterable[Ratio]) -> list[dict]:
    """Rows for the student/teacher ratios, measured beside published."""
    return [{"student / teacher": f"{r.student} / {r.teacher}", "metric": r.label,
             "measured": _r(r.measured, 3), "published": _r(r.published, 3),
             "claim": r.claim, "conditions": r.conditions, "published source": r.source}
            for r in rows]


def format_markdown(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (None shows as an em dash)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def cell(value) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, float):
            if abs(value) < 10:
                return f"{value:,.3f}".rstrip("0").rstrip(".")
            return f"{value:,.1f}".removesuffix(".0")
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``profile`` command's options to ``parser``."""
    parser.description = ("Per model and component: parameters, weight bytes, FLOPs and measured "
                          "latency (text encoding, UNet step, VAE decode), the estimated time per "
                          "image, and student/teacher ratios beside the published claims. The "
                          "default 'arch' source is each model's full-size architecture with "
                          "random weights: real sizes and timings, no download.")
    parser.add_argument("--models", default="all",
                        help="comma-separated registry keys, 'all' (the four seed models) or "
                             "'toy' (default: all)")
    parser.add_argument("--size", type=int, default=None,
                        help="image side in pixels, a multiple of 8 (e.g. 256, 512, 1024; "
                             "default: each model's native size)")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps for the estimated time per image (default: each "
                             "model's recommended steps, 30)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="weights and compute precision (default auto: fp16 on a GPU, fp32 "
                             "on a CPU; bf16 is the CPU's half precision)")
    parser.add_argument("--source", default="arch", choices=list(PROFILE_SOURCES),
                        help="weight source (default arch: full size, random weights, no "
                             "download; tiny: offline miniatures for quick checks)")
    parser.add_argument("--components", default=",".join(STAGES),
                        help=f"components to time, comma-separated from {','.join(STAGES)}, or "
                             f"'none' to count parameters and FLOPs only (default: all)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls per component before timing; the first is reported "
                             "apart as 'first call' (default: 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per component and round; the median is reported "
                             "(default: 3)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rebuild and measure every model this many times, interleaved, and "
                             "merge the samples (spreads a shared machine's load; default: 1)")
    parser.add_argument("--low-memory", action="store_true",
                        help="(arch source) build and time one component at a time, so peak "
                             "memory is the largest component, not the whole pipeline")
    parser.add_argument("--no-cfg", action="store_true",
                        help="time without classifier-free guidance (UNet batch 1, no negative "
                             "prompt)")
    parser.add_argument("--no-sdpa", action="store_true",
                        help="classic attention instead of PyTorch's scaled-dot-product "
                             "attention (SDPA is the default)")
    parser.add_argument("--channels-last", action="store_true",
                        help="UNet and VAE in channels_last memory format")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet; the compiling first call is reported apart")
    parser.add_argument("--compile-mode", default="default", choices=list(COMPILE_MODES),
                        help="torch.compile mode for --compile (default: default)")
    parser.add_argument("--vae-slicing", action="store_true",
                        help="VAE slicing: decode a batch one image at a time")
    parser.add_argument("--vae-tiling", action="store_true",
                        help="VAE tiling: decode in overlapping tiles (large images)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's own choice); recorded")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the profiles, tables and ratios as JSON to FILE")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="also write the per-component table as CSV to FILE")
    parser.add_argument("--from-json", metavar="FILE", nargs="+", default=None,
                        help="measure nothing: print the report of profiles saved with --json; "
                             "several files' rounds of the same model and conditions are merged")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    return parser


def options_from_args(args: argparse.Namespace) -> SpeedOptions:
    """The :class:`SpeedOptions` that parsed command-line flags ask for."""
    return SpeedOptions(sdpa=not args.no_sdpa, channels_last=args.channels_last,
                        compile_unet=args.compile, compile_mode=args.compile_mode,
                        vae_slicing=args.vae_slicing, vae_tiling=args.vae_tiling)


def profiles_from_args(args: argparse.Namespace,
                       progress: ProgressFn | None = None) -> list[ModelProfile]:
    """Run the profiles that parsed command-line flags ask for."""
    from .registry import resolve_models

    stages = () if args.components.strip() in ("", "none") else \
        tuple(s.strip() for s in args.components.split(",") if s.strip())
    if args.size is not None:
        check_size(args.size)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ProfileError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return profile_models(
        resolve_models(args.models), rounds=args.rounds, progress=progress, size=args.size,
        steps=args.steps, device=args.device, dtype=args.dtype, options=options_from_args(args),
        source=args.source, stages=stages, warmup=args.warmup, repeats=args.repeats,
        low_memory=args.low_memory, cfg=not args.no_cfg, seed=args.seed)


def load_profiles(path: str | os.PathLike) -> list[ModelProfile]:
    """Profiles saved by ``--json`` (e.g. a GPU run, for the Models page)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ProfileError(f"cannot read profiles from {str(path)!r}: {err}") from None
    return [ModelProfile.from_dict(d) for d in data["profiles"]]


def merge_profiles(profiles: Iterable[ModelProfile]) -> list[ModelProfile]:
    """Merge the rounds of each model measured under the same conditions, in first-seen order."""
    merged: dict[tuple, ModelProfile] = {}
    for p in profiles:
        key = (p.model, p.conditions())
        merged[key] = merged[key].merged(p) if key in merged else p
    return list(merged.values())


def report(profiles: list[ModelProfile]) -> str:
    """The printed report: components table, ratios, and the conditions."""
    parts = ["## Components", "", format_markdown(
        profile_table(profiles),
        ["model", "component", "params (M)", "fp32 (GB)", "fp16 (GB)", "GFLOP", "time (ms)",
         "min–max (ms)", "first call (ms)", "n"])]
    ratio_rows = ratio_table(ratios(profiles))
    if ratio_rows:
        parts += ["", "## Student / teacher", "", format_markdown(
            ratio_rows, ["student / teacher", "metric", "measured", "published", "claim"])]
    if profiles:
        p = profiles[0]
        notes = sorted({n for q in profiles for n in q.notes})
        parts += ["", "## Conditions", "",
                  f"- {p.device} ({p.device_name}), {p.dtype}, options "
                  f"{SpeedOptions.from_dict(p.options).label()}, source {p.source}, "
                  f"CFG {'on' if p.cfg else 'off'}, torch {p.env.get('torch')}, diffusers "
                  f"{p.env.get('diffusers')}, {p.env.get('torch_threads')} threads",
                  f"- sizes: " + ", ".join(f"{q.model} {q.size} px" for q in profiles),
                  f"- {p.rounds} round(s) x {p.repeats} repeat(s) after {p.warmup} warm-up "
                  f"call(s){', one component at a time' if p.low_memory else ''}; load average "
                  f"before {p.env.get('load_average_before')}, after "
                  f"{p.env.get('load_average_after')}"]
        busy = [t.cpu_per_wall for q in profiles for t in q.timings.values() if t.cpu_per_wall]
        if busy:
            parts.append(f"- process CPU seconds per wall second while timing: "
                         f"{min(busy):.2f}–{max(busy):.2f} with {p.env.get('torch_threads')} "
                         f"torch thread(s) (well below the thread count means the process "
                         f"waited for a shared CPU)")
        parts += [f"- {n}" for n in notes]
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    """The ``profile`` command: print the tables; write ``--json`` / ``--csv`` files."""
    from .registry import RegistryError
    from .zoo import WeightsUnavailable

    progress = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        if args.from_json:
            profiles = merge_profiles(p for path in args.from_json for p in load_profiles(path))
        else:
            profiles = profiles_from_args(args, progress)
    except (ProfileError, RegistryError, WeightsUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report(profiles))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "profiles": [p.to_dict() for p in profiles],
            "components": profile_table(profiles), "summary": summary_table(profiles),
            "ratios": [asdict(r) for r in ratios(profiles)],
        }, indent=1, default=str), encoding="utf-8")
    if args.csv:
        rows = profile_table(profiles)
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dsdcompare.profiling``: the profile command on its own."""
    parser = configure_parser(argparse.ArgumentParser(prog="python -m dsdcompare.profiling"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMPILE_MODES", "METRICS", "STAGES", "ComponentTiming", "ModelProfile",
           "ProfileError", "Ratio", "SpeedOptions", "check_dtype", "check_size",
           "configure_parser", "count_flops", "count_params", "format_markdown", "load_profiles",
           "merge_profiles", "meta_pipeline",
           "meta_twin", "options_from_args", "pipeline_flops", "pipeline_params",
           "profile_model", "profile_models", "profile_table", "ratio_table", "ratios", "report",
           "run", "summary_table"]
