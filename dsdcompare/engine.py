"""compare(): one seeded Request through several models, one Result per model.

The promise: the same prompt, negative prompt and seed go through every model; each model's
latency is measured by the timing protocol (:mod:`dsdcompare.timing`); each image is checked and
scored; a model that fails becomes a Result with its error while the others go on.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .energy import EnergyMeter
from .environment import environment
from .errors import InputError
from .limits import GUIDANCE, IMAGES, REPEATS, SEED, SIZE, STEPS, WARMUP, check_prompt
from .loading import (
    LoadedPipeline,
    PipelineCache,
    default_budget_bytes,
    expected_nbytes,
    load_pipeline,
    resolve_device,
)
from .registry import ModelSpec
from .timing import PeakMemory, StageClock, Timing, summarise
from .zoo import STANDIN_SOURCES


class RequestError(InputError):
    """A Request field is invalid; the message names the field, the value and the valid range."""


@dataclass(frozen=True)
class Request:
    """What the user asked for: the same for every model in a comparison."""

    prompt: str  # the text prompt
    negative_prompt: str = ""  # what to avoid ("" for none)
    seed: int = 0  # seeds a fresh CPU generator per model (fair noise)
    steps: int = 30  # denoising steps (the tutorial this project grew from: 30)
    guidance: float = 7.5  # classifier-free guidance scale
    size: int | None = None  # None: each model at its native size; else one common size (pixels)
    images_per_prompt: int = 1  # images per call
    repeats: int = 1  # steady-state calls timed after the warm-up
    warmup: int = 1  # calls excluded from steady state (0 reports the cold call as steady)
    scheduler: str | None = None  # None: the repo's default scheduler; else a diffusers class name

    def validate(self) -> Request:
        """Return self, or raise :class:`RequestError` naming the bad value and the remedy."""
        # one table of limits, shared with the CLI, the dashboard form and its links
        try:
            check_prompt(self.prompt, "prompt")
            check_prompt(self.negative_prompt, "negative_prompt", required=False)
            for limit, value in ((SEED, self.seed), (STEPS, self.steps),
                                 (IMAGES, self.images_per_prompt), (REPEATS, self.repeats),
                                 (WARMUP, self.warmup), (GUIDANCE, self.guidance)):
                limit.check(value)
        except InputError as err:
            raise RequestError(str(err)) from None
        if self.size is not None and not SIZE.ok(self.size):
            raise RequestError(f"size must be {SIZE.describe()} (or native), got {self.size!r}")
        if self.scheduler is not None:
            import diffusers

            cls = getattr(diffusers, self.scheduler, None)
            if cls is None or not self.scheduler.endswith("Scheduler"):
                raise RequestError(f"scheduler {self.scheduler!r} is not a diffusers scheduler "
                                   f"class name, e.g. 'EulerDiscreteScheduler'")
        return self

    def size_for(self, spec: ModelSpec) -> int:
        """The image side for ``spec``: the common size, or the model's native size."""
        return self.size or spec.native_size


@dataclass
class Result:
    """One model's outcome for one Request (serialisable, except ``images``)."""

    model: str  # registry key
    model_name: str  # display name
    success: bool  # False: see error; no images
    error: str | None  # why it failed (one paragraph; the traceback is in error_detail)
    source: str  # weight source: hub | local | tiny | arch
    standin: bool  # random weights: the images are noise
    toy: bool  # toy model trained on synthetic shapes
    repo: str | None  # hub repo id or local directory
    revision: str | None  # hub revision asked for (None: default branch)
    teacher: str | None  # registry key of its teacher
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    images_per_prompt: int
    scheduler: str | None  # scheduler class used
    dtype: str | None  # fp32 | fp16 | bf16
    device: str | None  # cpu | cuda | mps
    device_name: str | None  # e.g. "NVIDIA H100 80GB HBM3" or the CPU model
    variant: str | None  # weight files variant loaded ("fp16") or None
    latents_sha: str | None  # fingerprint of the initial latents (equal within a pair)
    timing: Timing | None = None
    score: Any = None  # the CLIP metrics.Score (with provenance) or None; also scores["clip"]
    fidelity: dict | None = None  # PSNR/SSIM against the teacher's image (latent-matched pairs)
    flags: list[str] = field(default_factory=list)  # per-image problems (black, NaN, NSFW)
    nsfw: list[bool] | None = None  # the safety checker's verdict per image, when it ran
    env: dict = field(default_factory=dict)  # library versions, threads, platform
    options: dict = field(default_factory=dict)  # speed options in force
    error_detail: str | None = None  # traceback of the failure
    images: list = field(default_factory=list, repr=False)  # PIL images (not serialised)
    # metric ("clip", "hps", "pickscore", "imagereward", "lpips") -> metrics.Score ("clip" is
    # `score`); scores of different metrics, checkpoints or scales are never averaged together
    scores: dict = field(default_factory=dict)

    def put_score(self, metric: str, score) -> None:
        """Record ``score`` for ``metric`` (``clip`` also sets :attr:`score`, kept for callers
        that read the CLIP score alone)."""
        self.scores[metric] = score
        if metric == "clip":
            self.score = score

    def to_dict(self) -> dict:
        """Everything but the images, as JSON-ready plain data; each score carries its
        ``higher_is_better`` (a property of its scale), so a record says which way is better."""
        data = asdict(self)
        data.pop("images")
        # the CLIP score is the record's "score" (as before there were several metrics);
        # "scores" holds the other metrics, and is left out when there are none
        if self.scores.get("clip") is self.score:
            data["scores"].pop("clip", None)
        if not data["scores"]:
            data.pop("scores")
        for name, score in [("score", self.score), *self.scores.items()]:
            target = data["score"] if name == "score" else data.get("scores", {}).get(name)
            if isinstance(target, dict) and hasattr(score, "higher_is_better"):
                try:
                    target["higher_is_better"] = bool(score.higher_is_better)
                except KeyError:  # a scale this version does not know: direction unknown
                    pass
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        """A Result from :meth:`to_dict`'s output (e.g. a stored record), with its Timing and
        Score rebuilt; unknown keys are ignored and ``images`` is left empty."""
        known = {f.name for f in fields(cls)} - {"images"}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("timing"):
            values["timing"] = Timing.from_dict(values["timing"])
        scores = dict(values.get("scores") or {})
        if values.get("score") and "clip" not in scores:  # a record written before v4
            scores["clip"] = values["score"]
        values["scores"] = {m: _score_from_dict(s) for m, s in scores.items()}
        values["score"] = values["scores"].get("clip")
        return cls(**values)


def _score_from_dict(data):
    """A stored score dict as a metrics.Score (the dict itself when it cannot be rebuilt)."""
    if not isinstance(data, dict):
        return data
    try:
        from .metrics import Score

        return Score.from_dict(data)
    except (ImportError, TypeError):  # metrics unavailable or changed: keep the dict
        return data


@dataclass(frozen=True)
class Progress:
    """A progress event, for progress bars (CLI) and live status (dashboard)."""

    model: str  # registry key
    index: int  # position of the model in the comparison (0-based)
    total_models: int
    phase: str  # "load" | "warmup" | "repeat" | "score" | "done" | "failed"
    step: int = 0  # denoising step within the call (1-based; 0 before the first)
    total_steps: int = 0
    call: int = 0  # which timed call (1-based) within the phase
    message: str = ""


ProgressFn = Callable[[Progress], None]

# --- module state: the default pipeline cache and one lock per device ------------------------------

_device_locks: dict[str, threading.RLock] = {}
_device_locks_guard = threading.Lock()
_default_cache: PipelineCache | None = None


def device_lock(device: str) -> threading.RLock:
    """The lock that serialises timed work on ``device`` (shared pipelines are not thread-safe,
    and two concurrent calls would also spoil each other's timings)."""
    with _device_locks_guard:
        return _device_locks.setdefault(device, threading.RLock())


def default_cache() -> PipelineCache:
    """The process-wide pipeline cache, bounded by the memory policy of the default device."""
    global _default_cache
    if _default_cache is None:
        _default_cache = PipelineCache(max_bytes=default_budget_bytes(resolve_device("auto")))
    return _default_cache


# --- the comparison -------------------------------------------------------------------------------

def compare(request: Request, models: list[ModelSpec], *, source: str | None = None,
            device: str = "auto", dtype: str = "auto", local_dirs: dict[str, str] | None = None,
            cache: PipelineCache | None = None, scorer=None, scorers: dict | None = None,
            speed_options=None, progress: ProgressFn | None = None,
            on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run ``request`` through every model in ``models``; return one Result per model, in order.

    Never raises for one model: a model that cannot be loaded or fails while generating yields
    a Result with ``success=False`` and its error, and the others go on. ``source`` is the
    weight source for every model (default: each model's own); ``scorer`` (a
    :class:`dsdcompare.metrics.ClipScorer`) adds a CLIP score; ``scorers`` (metric -> scorer,
    see :func:`dsdcompare.record.open_scorers`) adds one Score per metric to
    ``Result.scores`` (``clip`` there is ``scorer``'s place; ``lpips`` scores a student's images
    against its teacher's, beside PSNR/SSIM); a scorer that fails costs that score only.
    ``speed_options`` (a :class:`dsdcompare.speed.SpeedOptions`) is applied to each pipeline and
    recorded.
    Teachers run before their students (so each student is compared with its teacher's image
    as soon as it finishes); ``on_result`` receives each Result as soon as it is complete, so a
    caller can store it before the next model starts.
    """
    # 1. Check inputs
    request.validate()
    device = resolve_device(device)
    cache = cache if cache is not None else default_cache()
    local_dirs = local_dirs or {}
    notify = progress or (lambda event: None)
    models = teachers_first(models)
    results: list[Result] = []
    finish = on_result or (lambda result: None)
    per_image = dict(scorers or {})
    if scorer is not None:
        per_image.setdefault("clip", scorer)
    lpips = per_image.pop("lpips", None)  # pairs, not single images: in add_fidelity
    # 2. Each model in turn: load (cached), generate with the timing protocol, check, score
    for index, spec in enumerate(models):
        event = functools.partial(_emit, notify, spec.key, index, len(models))
        result = _blank_result(request, spec, source or spec.default_source)
        try:
            event("load")
            loaded, cached = _cached_pipeline(cache, spec, result.source, device, dtype,
                                              local_dirs.get(spec.key))
            _describe_loaded(result, loaded)
            arrays = generate(loaded, request, result, load_cached=cached,
                              speed_options=speed_options, event=event)
        except Exception as err:  # one model never takes down the others
            _record_failure(result, err)
            event("failed", message=result.error)
            results.append(result)
            finish(result)
            continue
        # 3. Score the images with each metric (a scorer failure costs that score only)
        if per_image:
            event("score")
        for metric, metric_scorer in per_image.items():
            result.put_score(metric, _score(metric, metric_scorer, arrays, request.prompt))
        # 4. Teacher/student fidelity, when its teacher ran on the same latents
        add_fidelity(results + [result], lpips=lpips)
        event("done")
        results.append(result)
        finish(result)
    return results


def _emit(notify: ProgressFn, model: str, index: int, total: int, phase: str, **kw) -> None:
    notify(Progress(model, index, total, phase, **kw))


def _cached_pipeline(cache: PipelineCache, spec: ModelSpec, source: str, device: str, dtype: str,
                     local_dir: str | None) -> tuple[LoadedPipeline, bool]:
    """The loaded pipeline from ``cache`` (loading it on a miss), and whether it was cached."""
    key = (spec.key, source, device, dtype, local_dir)
    cached = key in cache
    # on a GPU the cache makes room *before* loading (the size comes from the meta
    # architecture, a few seconds once per model); on a CPU eviction after is enough
    size = expected_nbytes(spec, source, dtype, device) if device.startswith("cuda") and not cached \
        else None
    loaded = cache.get(key, lambda: load_pipeline(spec, source, device=device, dtype=dtype,
                                                  local_dir=local_dir), nbytes=size)
    return loaded, cached


def teachers_first(models: list[ModelSpec]) -> list[ModelSpec]:
    """``models`` reordered so that a teacher comes right before the first of its students."""
    keys = [m.key for m in models]
    out: list[ModelSpec] = []
    for m in models:
        if m in out:
            continue
        if m.teacher in keys and all(t.key != m.teacher for t in out):
            out.append(models[keys.index(m.teacher)])
        out.append(m)
    return out


def _blank_result(request: Request, spec: ModelSpec, source: str) -> Result:
    size = request.size_for(spec)
    return Result(
        model=spec.key, model_name=spec.name, success=False, error=None, source=source,
        standin=source in STANDIN_SOURCES, toy=spec.toy,
        repo=spec.repo_id if source == "hub" else spec.local_dir, revision=spec.revision,
        teacher=spec.teacher, prompt=request.prompt, negative_prompt=request.negative_prompt,
        seed=request.seed, steps=request.steps, guidance=float(request.guidance), width=size,
        height=size, images_per_prompt=request.images_per_prompt, scheduler=None, dtype=None,
        device=None, device_name=None, variant=None, latents_sha=None,
    )


def _describe_loaded(result: Result, loaded: LoadedPipeline) -> None:
    result.repo = loaded.location.path or result.repo
    result.standin = loaded.standin
    result.dtype = loaded.dtype
    result.device = loaded.device
    result.variant = loaded.variant
    result.env = environment(loaded.device)
    result.device_name = result.env["device_name"]


def _record_failure(result: Result, err: BaseException) -> None:
    result.success = False
    result.images = []
    name = type(err).__name__
    text = str(err).strip() or name
    if "out of memory" in text.lower() or name == "OutOfMemoryError":
        text = (f"Out of memory on {result.device or 'the device'}: {text.splitlines()[0]} "
                f"Remedies: a smaller size, fewer images per prompt, fp16/bf16, or fewer models "
                f"kept loaded.")
    result.error = f"{name}: {text}" if not text.startswith(name) else text
    result.error_detail = traceback.format_exc()


def initial_latents(request: Request, size: int, *, latent_channels: int = 4,
                    vae_scale_factor: int = 8):
    """The request's initial noise for a model family at ``size``: a fresh seeded CPU generator.

    Models with the same latent shape (each teacher/student pair) get identical latents; the
    pipeline scales them by its scheduler's ``init_noise_sigma``, as it would its own noise.
    """
    import torch

    gen = torch.Generator("cpu").manual_seed(request.seed)
    shape = (request.images_per_prompt, latent_channels, size // vae_scale_factor,
             size // vae_scale_factor)
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def latents_fingerprint(latents) -> str:
    """A short sha256 of the latents' bytes (equal latents, equal fingerprint)."""
    return hashlib.sha256(latents.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def fresh_pipeline(pipe, scheduler_name: str | None = None):
    """A per-call pipeline sharing ``pipe``'s weights but with its own scheduler.

    diffusers schedulers keep state (step index, PNDM's history): two threads stepping one
    scheduler raise IndexError or, worse, silently give wrong images. A shallow copy shares
    every module and gets its own scheduler (and config). Not ``Pipeline.from_pipe``: in
    diffusers 0.42 it ends with ``.to(dtype=float32)`` unless told otherwise, which would cast
    a shared fp16 pipeline to fp32 in place, and it walks every parameter on every call.
    """
    import copy

    import diffusers

    cls = getattr(diffusers, scheduler_name) if scheduler_name else type(pipe.scheduler)
    call_pipe = copy.copy(pipe)
    call_pipe.scheduler = cls.from_config(pipe.scheduler.config)  # also updates the copy's config
    call_pipe.set_progress_bar_config(disable=True)
    return call_pipe


def generate(loaded: LoadedPipeline, request: Request, result: Result, *, load_cached: bool = False,
             speed_options=None, event: Callable[..., None] = lambda phase, **kw: None) -> list:
    """Generate ``request`` on one loaded pipeline with the timing protocol; fill ``result``.

    Returns the raw float images (HxWx3 in [0, 1], NaN kept) for scoring: a NaN image must be
    excluded as NaN, not scored as the black PNG it becomes.
    """
    import torch

    spec, pipe, device = loaded.spec, loaded.pipe, loaded.device
    size = request.size_for(spec)
    if speed_options is not None:
        result.options = speed_options.apply(pipe) or asdict(speed_options)
    latents = initial_latents(request, size,
                              latent_channels=pipe.unet.config.in_channels,
                              vae_scale_factor=pipe.vae_scale_factor)
    result.latents_sha = latents_fingerprint(latents)
    latents = latents.to(device=device, dtype=pipe.unet.dtype)
    kwargs = dict(prompt=request.prompt, negative_prompt=request.negative_prompt or None,
                  num_inference_steps=request.steps, guidance_scale=request.guidance,
                  height=size, width=size, num_images_per_prompt=1, output_type="np")
    if request.images_per_prompt > 1:
        kwargs["prompt"] = [request.prompt] * request.images_per_prompt
        kwargs["negative_prompt"] = ([request.negative_prompt] * request.images_per_prompt
                                     if request.negative_prompt else None)

    with device_lock(device):
        call_pipe = fresh_pipeline(pipe, request.scheduler)
        result.scheduler = type(call_pipe.scheduler).__name__
        clock = StageClock(call_pipe, device)
        calls = []
        first = None
        output = None
        iterations = [0]  # UNet iterations of the last call (PNDM runs one more than asked)
        try:
            with PeakMemory(device) as peak, EnergyMeter(device) as meter:
                for phase, count in (("warmup", request.warmup), ("repeat", request.repeats)):
                    for n in range(count):
                        def on_step(p, i, t, kw, _phase=phase, _n=n):
                            iterations[0] = i + 1
                            event(_phase, step=i + 1, total_steps=request.steps, call=_n + 1)
                            return kw

                        # a fresh generator per call: the same noise for ancestral schedulers
                        gen = torch.Generator("cpu").manual_seed(request.seed)
                        # the meter's window encloses the clock's device syncs: all of the
                        # call's GPU work falls inside it (only timed calls count)
                        with meter.window(timed=phase == "repeat"), torch.inference_mode(), \
                                clock.call() as times:
                            output = call_pipe(**kwargs, latents=latents.clone(), generator=gen,
                                               callback_on_step_end=on_step)
                        if phase == "warmup":
                            first = first or times
                        else:
                            calls.append(times)
        finally:
            clock.restore()
    result.timing = summarise(load_s=None if load_cached else loaded.load_seconds,
                              load_cached=load_cached, first=first, steady=calls,
                              steps=iterations[0], images_per_call=request.images_per_prompt,
                              peak=peak, warmup=request.warmup, device=device,
                              threads=torch.get_num_threads())
    energy = meter.reading(images=len(calls) * request.images_per_prompt)
    result.timing.energy_j_per_image, result.timing.energy_note = energy.joules_per_image, energy.note
    if result.timing.contended:
        result.flags.append(
            f"timing: contended ({result.timing.cpu_per_wall:.2f} CPU-seconds per wall-second on "
            f"{result.timing.threads} thread(s)): the CPU was busy with other work, so this latency "
            f"measures the machine's load, not the model")
    _collect_images(result, output)
    return list(output.images)


def _collect_images(result: Result, output) -> None:
    """Convert the last call's images, flag bad ones (NaN, black, NSFW) and keep the rest."""
    import numpy as np
    from PIL import Image

    from .fidelity import check_image

    arrays = output.images
    nsfw = getattr(output, "nsfw_content_detected", None)
    result.nsfw = [bool(x) for x in nsfw] if nsfw is not None else None
    images = []
    for i, arr in enumerate(arrays):
        problem = check_image(arr)
        if problem:
            why = problem
            if result.nsfw and result.nsfw[i]:
                why += " (the safety checker flagged it as NSFW and blacked it out)"
            elif problem.startswith("NaN") and result.dtype == "fp16":
                why += " (fp16 VAE overflow? try fp32 or an fp16-fixed VAE)"
            result.flags.append(f"image {i}: {why}")
        clean = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        images.append(Image.fromarray((clean.clip(0, 1) * 255).round().astype("uint8")))
    result.images = images
    result.success = True


def _score(metric: str, scorer, *inputs):
    """``scorer.score(*inputs)``, or a Score without a value saying why it failed."""
    try:
        return scorer.score(*inputs)
    except Exception as err:  # a scorer failure never costs the images
        reason, n_images = f"{type(err).__name__}: {err}", len(inputs[0])
        checkpoint = getattr(scorer, "checkpoint", "?")
        if metric == "clip":
            from .metrics import score_unavailable

            return score_unavailable(checkpoint, reason, n_images=n_images)
        from .scorers import metric_unavailable

        return metric_unavailable(metric, reason, checkpoint=checkpoint, n_images=n_images)


def add_fidelity(results: list[Result], *, lpips=None) -> None:
    """PSNR/SSIM of each student's images against its teacher's, when both ran on equal latents;
    with ``lpips`` (a :class:`dsdcompare.scorers.LpipsScorer`) also its LPIPS Score, in
    ``scores["lpips"]``."""
    from .fidelity import fidelity

    by_key = {r.model: r for r in results if r.success}
    for student in by_key.values():
        teacher = by_key.get(student.teacher or "")
        if (student.fidelity is not None or teacher is None
                or teacher.latents_sha != student.latents_sha):
            continue
        pairs = list(zip(student.images, teacher.images))
        if not pairs:
            continue
        per_image = [fidelity(s, t) for s, t in pairs]
        student.fidelity = {"against": teacher.model, "per_image": per_image}
        for name in ("psnr", "ssim"):  # mean over images not excluded (None when none are left)
            values = [p[name] for p in per_image if p.get(name) is not None]
            student.fidelity[name] = sum(values) / len(values) if values else None
        if lpips is not None:
            student.put_score("lpips", _score("lpips", lpips, student.images, teacher.images))
