"""Measuring: load a model, apply the speed options, count it and time each stage.

:func:`profile_model` times each component the way the pipeline calls it (see
:func:`.stages.stage_calls`) with the device synchronised around every call; the first call is
kept apart (lazy initialisation, compilation) and the steady-state calls give the medians.
:func:`profile_models` profiles several models, one in memory at a time, in rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..environment import environment, load_average
from ..errors import InputError
from ..limits import REPEATS, ROUNDS, STEPS, WARMUP, Limit
from ..loading import dtype_name, release_memory
from ..registry import ModelSpec, get_model
from ..speed import SpeedOptions, pipeline_modules
from ..zoo import STANDIN_SOURCES
from .counting import meta_twin, pipeline_flops, pipeline_params, vae_decoder_params
from .results import ComponentTiming, ModelProfile
from .stages import (
    PROFILE_STAGES,
    STAGE_LABELS,
    STAGE_MODULES,
    ProfileError,
    check_dtype,
    check_size,
    check_stages,
    stage_calls,
    vae_upcasts,
)

#: Receives a short progress message at each phase of a profile.
MessageFn = Callable[[str], None]



def _check(limit: Limit, value):
    try:
        return limit.check(value)
    except InputError as err:  # the limits table's message, as a profiling error
        raise ProfileError(str(err)) from None


@dataclass(frozen=True)
class ProfileSpec:
    """How to profile: every setting of :func:`profile_model` and :func:`profile_models`.

    Checked when made; a bad value raises :class:`ProfileError` (or the registry's error for a
    bad source) naming it and the remedy.
    """

    size: int | None = None  # image side in pixels, a multiple of 8; None: each model's native
    steps: int | None = None  # denoising steps of the image estimate; None: each model's own
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (auto: a GPU if one is visible)
    dtype: str = "auto"  # auto (fp16 on a GPU, fp32 on a CPU) | fp32 | fp16 | bf16
    options: SpeedOptions = SpeedOptions()  # speed options applied before counting and timing
    source: str = "arch"  # weight source; arch = full-size architecture, random weights
    stages: tuple[str, ...] = PROFILE_STAGES  # components to time; () only counts
    warmup: int = 1  # untimed calls per component; the first is reported apart as first_s
    repeats: int = 3  # timed calls per component (interleaved across components)
    rounds: int = 1  # rebuild-and-measure rounds profile_models merges (profile_model: one)
    low_memory: bool = False  # (arch only) one component materialised and timed at a time
    cfg: bool = True  # classifier-free guidance: UNet at batch 2, negative prompt encoded
    seed: int = 0  # seeds the random weights and the inputs

    def __post_init__(self):
        from ..zoo import check_source

        if self.size is not None:
            check_size(self.size)
        if self.steps is not None:
            _check(STEPS, self.steps)
        _check(WARMUP, self.warmup)
        if self.warmup < 1:  # the first call is always made: it is what first_s reports
            raise ProfileError(f"warmup must be at least 1 when profiling (the first call is "
                               f"reported apart), got {self.warmup}")
        _check(REPEATS, self.repeats)
        _check(ROUNDS, self.rounds)
        check_source(self.source)
        object.__setattr__(self, "stages", check_stages(self.stages))
        if self.low_memory and self.source != "arch":
            raise ProfileError(f"low_memory builds components one at a time from the "
                               f"architecture: it needs source 'arch', got {self.source!r}")


@dataclass(frozen=True)
class _Setup:
    """A :class:`ProfileSpec` settled for one model on this machine."""

    model: ModelSpec  # the model profiled
    size: int  # image side in pixels (the spec's, or the model's native size)
    steps: int  # denoising steps of the estimate (the spec's, or the model's own)
    device: str  # the resolved device
    torch_dtype: Any  # the resolved torch dtype
    dtype_notes: tuple[str, ...]  # caveats of the dtype on this device (emulated half types)


@dataclass
class _Measured:
    """What timing the stages found (filled in while timing)."""

    firsts: dict[str, float] = field(default_factory=dict)  # stage -> first call's seconds
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (wall, CPU)
    build_s: float = 0.0  # low-memory mode: seconds spent materialising components
    peak_bytes: int | None = None  # peak memory while timing
    memory_kind: str | None = None  # how the peak was measured


def profile_model(model: ModelSpec | str, spec: ProfileSpec = ProfileSpec(), *,
                  progress: MessageFn | None = None) -> ModelProfile:
    """Parameters, FLOPs and measured latency of each component of one model.

    ``model`` is a :class:`ModelSpec` or a registry key; ``spec`` says how to profile it (one
    round: ``spec.rounds`` is for :func:`profile_models`); ``progress`` receives a short
    message at each phase. The profile's ``est_image_s`` is the estimated end-to-end time.
    """
    say = progress or (lambda message: None)
    # 1. Settle the settings for this model and record the machine
    setup = _settle(model, spec)
    env = environment(setup.device, machine_load=True)
    # 2. Load (or, in low-memory mode, build on the meta device); apply the speed options
    pipe, load_s = _load(setup, spec, say)
    spec.options.apply(pipe)
    # 3. Count parameters and FLOPs (on a meta twin: no real forward pass)
    params = pipeline_params(pipe)
    flops = pipeline_flops(meta_twin(pipe), setup.size, cfg=spec.cfg)
    upcast = vae_upcasts(pipe)
    stages = tuple(s for s in spec.stages
                   if s != "safety" or getattr(pipe, "safety_checker", None) is not None)
    # 4. Time each stage: warm-up, device sync around every call, repeats
    measured = _time_stages(pipe, setup, spec, stages, say)
    env["load_average_after"] = load_average()
    # 5. The profile
    return ModelProfile(
        model=setup.model.key, name=setup.model.name, teacher=setup.model.teacher,
        source=spec.source, standin=spec.source in STANDIN_SOURCES, size=setup.size,
        latent_size=setup.size // pipe.vae_scale_factor, steps=setup.steps, cfg=spec.cfg,
        device=setup.device, device_name=env.get("device_name", setup.device),
        dtype=dtype_name(setup.torch_dtype), options=spec.options.to_dict(), params=params,
        vae_decoder_params=vae_decoder_params(pipe.vae), flops=flops,
        timings={s: ComponentTiming.from_samples([measured.firsts[s]],
                                                 [w for w, _ in measured.samples[s]],
                                                 [c for _, c in measured.samples[s]])
                 for s in stages},
        load_s=(load_s + measured.build_s,), vae_upcast=upcast,
        low_memory=spec.low_memory, warmup=spec.warmup, repeats=spec.repeats, rounds=1,
        peak_memory_bytes=measured.peak_bytes, memory_kind=measured.memory_kind,
        notes=_notes(setup, spec, upcast), env=env,
    )


def _settle(model: ModelSpec | str, spec: ProfileSpec) -> _Setup:
    from ..loading import resolve_device, resolve_dtype

    model = get_model(model) if isinstance(model, str) else model
    # a model's own native size is valid by registration (the toy pair's is 32 px, under the
    # limit on sizes a user asks for)
    size = check_size(spec.size) if spec.size is not None else model.native_size
    steps = _check(STEPS, spec.steps if spec.steps is not None else model.steps)
    device = resolve_device(spec.device)
    torch_dtype = resolve_dtype(spec.dtype, device)
    notes = check_dtype(device, torch_dtype)
    return _Setup(model, size, steps, device, torch_dtype, tuple(notes))


def _load(setup: _Setup, spec: ProfileSpec, say: MessageFn) -> tuple[Any, float]:
    from ..loading import load_pipeline
    from ..zoo import build_arch_pipeline

    say(f"{setup.model.key}: loading ({spec.source}, {setup.device}, "
        f"{dtype_name(setup.torch_dtype)})")
    start = time.perf_counter()
    if spec.low_memory:  # modules stay on the meta device until their stage is timed
        pipe = build_arch_pipeline(setup.model, device=setup.device, dtype=setup.torch_dtype,
                                   seed=spec.seed, materialize=())
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = load_pipeline(setup.model, spec.source, device=setup.device,
                             dtype=spec.dtype).pipe
    return pipe, time.perf_counter() - start


def _time_stages(pipe, setup: _Setup, spec: ProfileSpec, stages: tuple[str, ...],
                 say: MessageFn) -> _Measured:
    import torch

    from ..timing import PeakMemory

    measured = _Measured(samples={s: [] for s in stages})
    with torch.inference_mode(), PeakMemory(setup.device) as peak:
        calls = stage_calls(pipe, setup.size, device=setup.device, dtype=setup.torch_dtype,
                            cfg=spec.cfg, seed=spec.seed)
        if spec.low_memory:
            _time_one_at_a_time(pipe, calls, setup, spec, stages, measured, say)
        else:
            _time_interleaved(calls, setup, spec, stages, measured, say)
    if stages:
        measured.peak_bytes, measured.memory_kind = peak.peak_bytes, peak.kind
    return measured


def _time_interleaved(calls: dict, setup: _Setup, spec: ProfileSpec, stages: tuple[str, ...],
                      measured: _Measured, say: MessageFn) -> None:
    for stage in stages:
        measured.firsts[stage] = _warm_up(stage, calls[stage], setup, spec.warmup, say)
    for r in range(spec.repeats):  # interleaved: slow drifts of the machine hit every stage
        say(f"{setup.model.key}: repeat {r + 1}/{spec.repeats}")
        for stage in stages:
            measured.samples[stage].append(time_call(calls[stage], setup.device))


def _time_one_at_a_time(pipe, calls: dict, setup: _Setup, spec: ProfileSpec,
                        stages: tuple[str, ...], measured: _Measured, say: MessageFn) -> None:
    import torch

    from ..zoo import component_seed, materialize_random

    for stage in stages:  # one component in memory at a time
        names = [n for n in STAGE_MODULES[stage] if n in pipeline_modules(pipe)]
        say(f"{setup.model.key}: materialising {', '.join(names)}")
        start = time.perf_counter()
        for n in names:
            materialize_random(getattr(pipe, n), device=setup.device, dtype=setup.torch_dtype,
                               seed=component_seed(spec.seed, n))
        measured.build_s += time.perf_counter() - start  # building counts as loading
        spec.options.apply(pipe)
        measured.firsts[stage] = _warm_up(stage, calls[stage], setup, spec.warmup, say)
        for _ in range(spec.repeats):
            measured.samples[stage].append(time_call(calls[stage], setup.device))
        for n in names:
            torch.nn.Module.to(getattr(pipe, n), device="meta")
        release_memory()


def _warm_up(stage: str, call, setup: _Setup, warmup: int, say: MessageFn) -> float:
    say(f"{setup.model.key}: {STAGE_LABELS[stage]}: first call")
    first, _ = time_call(call, setup.device)
    for _ in range(warmup - 1):
        time_call(call, setup.device)
    return first


def time_call(call: Callable[[], Any], device: str) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of one call, the device synchronised around it."""
    from ..timing import synchronize

    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    call()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def _notes(setup: _Setup, spec: ProfileSpec, upcast: bool) -> tuple[str, ...]:
    notes = list(setup.dtype_notes)
    if setup.model.arch and spec.source in STANDIN_SOURCES:
        from ..archs import get_architecture

        if get_architecture(setup.model.arch).note:
            notes.append(get_architecture(setup.model.arch).note)
    if spec.source in STANDIN_SOURCES:
        notes.append("random weights: sizes and timings are real, images would be noise")
    if upcast:
        notes.append("the VAE decodes in fp32 (the pipeline upcasts SDXL's fp16 VAE): timed so")
    return tuple(notes)


def profile_models(models: Iterable[ModelSpec | str], spec: ProfileSpec = ProfileSpec(), *,
                   progress: MessageFn | None = None) -> list[ModelProfile]:
    """:func:`profile_model` for each model, one model in memory at a time, in ``spec.rounds``.

    Each round rebuilds and measures every model in turn; the rounds' samples are merged. On a
    shared machine this spreads other processes' load over all models instead of one.
    """
    models = [get_model(m) if isinstance(m, str) else m for m in models]
    say = progress or (lambda message: None)
    merged: dict[str, ModelProfile] = {}
    for r in range(spec.rounds):
        for model in models:
            say(f"round {r + 1}/{spec.rounds}: {model.key}")
            profile = profile_model(model, spec, progress=progress)
            merged[model.key] = merged[model.key].merged(profile) if model.key in merged \
                else profile
            del profile
            release_memory()
    return [merged[m.key] for m in models]


__all__ = ["MessageFn", "ProfileSpec", "profile_model", "profile_models", "time_call"]
