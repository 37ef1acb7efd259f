"""A profile's results as plain data: :class:`ComponentTiming` and :class:`ModelProfile`."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace

from .stages import STAGE_MODULES, ProfileError


@dataclass(frozen=True)
class ComponentTiming:
    """Measured latency of one component: first calls apart from the steady state."""

    first_s: tuple[float, ...]  # the first call after each load (lazy init, compilation)
    samples_s: tuple[float, ...]  # steady-state calls, after warm-up, of every round
    median_s: float  # median of samples_s: the headline number
    min_s: float  # fastest steady-state call
    max_s: float  # slowest steady-state call
    #: process CPU seconds of each steady-state call (all threads): with T threads, CPU / wall
    #: well under T means the process waited for the CPU (a shared machine), not for work
    cpu_samples_s: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, first_s: Iterable[float], samples_s: Iterable[float],
                     cpu_samples_s: Iterable[float] = ()) -> ComponentTiming:
        """Summarise measured seconds."""
        first, samples = tuple(first_s), tuple(samples_s)
        if not samples:
            raise ProfileError("a timing needs at least one steady-state sample: repeats >= 1")
        return cls(first, samples, statistics.median(samples), min(samples), max(samples),
                   tuple(cpu_samples_s))

    @property
    def cpu_per_wall(self) -> float | None:
        """Process CPU seconds per wall second over the steady-state calls."""
        if not self.cpu_samples_s:
            return None
        return sum(self.cpu_samples_s) / sum(self.samples_s)

    def merged(self, other: ComponentTiming) -> ComponentTiming:
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
    device: str  # where it ran: cpu | cuda[:N] | mps
    device_name: str  # the GPU's or CPU's model name
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

    def merged(self, other: ModelProfile) -> ModelProfile:
        """This profile and another round of the same model under the same conditions."""
        if (other.model, other.conditions()) != (self.model, self.conditions()):
            raise ProfileError(f"cannot merge profiles of {self.model!r} and {other.model!r} "
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
    def from_dict(cls, data: dict) -> ModelProfile:
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


__all__ = ["ComponentTiming", "ModelProfile"]
