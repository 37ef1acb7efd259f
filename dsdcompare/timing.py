"""The timing protocol: warm-up excluded, device synchronised, repeats, stages, peak memory.

A pipeline call is split into stages by wrapping three steps of *one call's* pipeline object:
``encode_prompt`` (text encoding), ``vae.decode`` (VAE decode) and, where present,
``run_safety_checker``. The denoising loop is the time from the end of text encoding to the
start of the decode. Whatever is left (latent preparation, post-processing) is ``other``, so the
stages add up to the measured total exactly and ``other`` shows the overhead honestly.
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields

STAGES = ("text", "denoise", "decode", "safety", "other")
#: A CPU latency is flagged as contended when the process got less than this fraction of one
#: core per thread during its timed calls: it was waiting for a CPU, and the number measures
#: the machine's load, not the model (a quiet 1-thread call gets 0.95-1.0; see
#: benchmarks/contention.py for measurements beside a competitor).
CONTENDED_FRACTION = 0.5


@dataclass
class StageTimes:
    """Seconds spent in each stage of one pipeline call (they add up to ``total``)."""

    text: float = 0.0  # prompt (and negative prompt) encoding
    denoise: float = 0.0  # the denoising loop, from encoded prompt to VAE decode
    decode: float = 0.0  # VAE decode of the final latents
    safety: float = 0.0  # safety checker (SD 1.x repos that ship one)
    other: float = 0.0  # latent preparation, post-processing: total minus the rest
    total: float = 0.0  # wall time of the whole call
    cpu: float = 0.0  # CPU seconds the process got during the call (all its threads)

    @classmethod
    def from_dict(cls, data: dict) -> StageTimes:
        """StageTimes from its ``asdict`` form (e.g. a stored record); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Timing:
    """Latency of one model under one request: load, first call and steady state apart."""

    load_s: float | None  # loading the pipeline (None when it came from the cache unmeasured)
    load_cached: bool  # the pipeline was already loaded before this request
    first_call_s: float | None  # the warm-up call (None when warm-up was skipped)
    steady_s: list[float]  # total seconds of each steady-state repeat
    median_s: float  # median of steady_s (the headline latency)
    min_s: float
    max_s: float
    stages: StageTimes  # median of each stage over the steady-state repeats
    steps: int  # denoising iterations per call, as run (PNDM runs one more than asked)
    its_per_s: float  # denoising iterations per second (steps / median denoise time)
    images_per_call: int  # images generated per call
    peak_memory_bytes: int | None  # peak during the timed calls (see memory_kind)
    memory_kind: str  # "cuda max allocated" | "process RSS (sampled)"
    warmup: int  # warm-up calls excluded from steady state
    repeats: int  # steady-state calls
    cpu_per_wall: float | None = None  # median CPU seconds per wall second of the timed calls
    threads: int | None = None  # torch threads during the timed calls
    contended: bool | None = None  # CPU: the process got far less CPU than its threads could use
    energy_j_per_image: float | None = None  # NVML energy of the timed calls per image (GPU only)
    energy_note: str = ""  # how the energy was measured, or why not (dsdcompare.energy)

    @classmethod
    def from_dict(cls, data: dict) -> Timing:
        """A Timing from its ``asdict`` form (e.g. a stored record), stages included; unknown
        keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["stages"] = StageTimes.from_dict(values.get("stages") or {})
        return cls(**values)


def synchronize(device: str) -> None:
    """Wait for queued device work so that a clock read means what it says."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device.startswith("mps"):
        torch.mps.synchronize()


class StageClock:
    """Times the stages of calls on one (per-call) pipeline object.

    Wraps ``pipe.encode_prompt`` and ``pipe.run_safety_checker`` on the instance and
    ``pipe.vae.decode`` on the shared VAE; :meth:`restore` undoes it. Callers hold the device
    lock while a clock is installed, since the VAE is shared between per-call pipelines.
    """

    def __init__(self, pipe, device: str):
        self.pipe = pipe
        self.device = device
        self._marks: dict[str, float] = {}
        self._spans: dict[str, float] = {}
        self._saved: list[tuple[object, str, object, bool]] = []
        self._wrap(pipe, "encode_prompt", "text")
        if getattr(pipe, "run_safety_checker", None) is not None:
            self._wrap(pipe, "run_safety_checker", "safety")
        self._wrap(pipe.vae, "decode", "decode")

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def _wrap(self, obj, name: str, stage: str) -> None:
        original = getattr(obj, name)
        had_instance_attr = name in vars(obj)

        def timed(*args, **kwargs):
            start = self._now()
            self._marks.setdefault(stage + ":first_start", start)
            try:
                return original(*args, **kwargs)
            finally:
                end = self._now()
                self._spans[stage] = self._spans.get(stage, 0.0) + end - start
                self._marks[stage + ":last_end"] = end

        self._saved.append((obj, name, original, had_instance_attr))
        setattr(obj, name, timed)

    def restore(self) -> None:
        """Remove the wrappers."""
        for obj, name, original, had in reversed(self._saved):
            if had:
                setattr(obj, name, original)
            else:
                delattr(obj, name)
        self._saved.clear()

    @contextmanager
    def call(self):
        """Time one pipeline call; yields a :class:`StageTimes` filled in on exit."""
        self._marks.clear()
        self._spans.clear()
        times = StageTimes()
        start = self._now()
        cpu_start = time.process_time()
        yield times
        end = self._now()
        times.cpu = time.process_time() - cpu_start
        times.total = end - start
        times.text = self._spans.get("text", 0.0)
        times.decode = self._spans.get("decode", 0.0)
        times.safety = self._spans.get("safety", 0.0)
        loop_start = self._marks.get("text:last_end", start)
        loop_end = self._marks.get("decode:first_start", end)
        times.denoise = max(0.0, loop_end - loop_start)
        times.other = times.total - times.text - times.denoise - times.decode - times.safety


def median_stages(calls: list[StageTimes]) -> StageTimes:
    """Stage-wise medians; ``other`` and ``total`` are re-derived so the stages still add up."""
    if not calls:
        return StageTimes()
    med = StageTimes(**{s: statistics.median(getattr(c, s) for c in calls)
                        for s in ("text", "denoise", "decode", "safety")})
    med.total = statistics.median(c.total for c in calls)
    med.cpu = statistics.median(c.cpu for c in calls)
    med.other = med.total - med.text - med.denoise - med.decode - med.safety
    return med


class PeakMemory:
    """Peak memory during a block: CUDA's allocator peak, or sampled process RSS on a CPU."""

    def __init__(self, device: str, interval_s: float = 0.02):
        self.device = device
        self.interval_s = interval_s
        self.peak_bytes: int | None = None
        self.kind = "cuda max allocated" if device.startswith("cuda") else "process RSS (sampled)"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            proc = psutil.Process()
            self.peak_bytes = proc.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval_s):
                    self.peak_bytes = max(self.peak_bytes or 0, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True, name="dsdcompare-rss")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            import psutil

            self.peak_bytes = max(self.peak_bytes or 0, psutil.Process().memory_info().rss)


def contention(steady: list[StageTimes], device: str, threads: int) -> tuple[float | None, bool | None]:
    """Median CPU seconds per wall second of the timed calls, and whether that is contended.

    Only a CPU's latency can be judged so (a GPU call's CPU time says nothing about the GPU).
    """
    ratios = [c.cpu / c.total for c in steady if c.total > 0]
    if not ratios or not device.startswith("cpu"):
        return None, None
    ratio = statistics.median(ratios)
    return ratio, ratio < CONTENDED_FRACTION * max(1, threads)


def summarise(*, load_s: float | None, load_cached: bool, first: StageTimes | None,
              steady: list[StageTimes], steps: int, images_per_call: int,
              peak: PeakMemory, warmup: int, device: str = "cpu", threads: int = 1) -> Timing:
    """Build a :class:`Timing` from measured calls."""
    totals = [c.total for c in steady]
    stages = median_stages(steady)
    cpu_per_wall, contended = contention(steady, device, threads)
    return Timing(
        load_s=load_s, load_cached=load_cached,
        first_call_s=first.total if first else None,
        steady_s=totals, median_s=statistics.median(totals), min_s=min(totals),
        max_s=max(totals), stages=stages, steps=steps,
        its_per_s=steps / stages.denoise if stages.denoise > 0 else float("nan"),
        images_per_call=images_per_call, peak_memory_bytes=peak.peak_bytes,
        memory_kind=peak.kind, warmup=warmup, repeats=len(steady),
        cpu_per_wall=cpu_per_wall, threads=threads, contended=contended,
    )


__all__ = ["CONTENDED_FRACTION", "STAGES", "contention", "PeakMemory", "StageClock", "StageTimes", "Timing", "median_stages",
           "summarise", "synchronize"]
