"""Peak compute of the device a measurement ran on, and the utilisation it achieved.

Utilisation = achieved FLOP/s (the FLOPs the profiling package counts for a call, over the
call's measured seconds) / the device's peak FLOP/s for the dtype. The peak comes from

* a GPU: :data:`GPU_PEAKS`, the vendor's published dense peaks, matched from
  ``torch.cuda.get_device_name()`` (:func:`match_gpu`, :func:`gpu_peak`);
* a CPU: :func:`measured_cpu_matmul_peak`, the best FLOP/s of large square matmuls measured
  here with the current thread count (a CPU's datasheet peak depends on its vector units,
  turbo and thread placement; the achievable matmul rate is the honest ceiling).

Dense, not sparse: NVIDIA's Ampere-and-later datasheets print the 2:4 structured-sparsity
figure (marked with an asterisk) for tensor-core dtypes. Diffusion models run dense matmuls, so
the table holds the dense figure: the datasheet's own dense number where it prints one, else
its sparse figure halved (the datasheets' footnote: "specifications 1/2 lower without
sparsity"); each entry's ``note`` says which.

fp16 peaks are tensor-core rates with FP32 accumulate, which is what PyTorch's fp16 matmuls and
convolutions use. On GeForce cards that rate is half the "FP16 accumulate" rate printed first
in the whitepapers; data-center cards run both at the same rate.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field

from .errors import DsdCompareError

#: dtype names this module knows; "tf32" is fp32 matmuls on tensor cores, "fp32" without them.
PEAK_DTYPES = ("fp32", "tf32", "fp16", "bf16")


class HardwareError(DsdCompareError, ValueError):
    """A peak cannot be given: unknown GPU, unsupported dtype, or invalid numbers."""


@dataclass(frozen=True)
class GpuSpec:
    """Published peak throughput of one GPU model (TFLOP/s), with where it comes from."""

    name: str  # display name, e.g. "H100 SXM"
    pattern: str  # regex searched (case-insensitive) in torch.cuda.get_device_name()
    dense: dict[str, float]  # dtype -> dense peak TFLOP/s (see PEAK_DTYPES); absent: unpublished
    sparse: dict[str, float] = field(default_factory=dict)  # dtype -> 2:4-sparsity TFLOP/s
    source: str = ""  # the vendor document the figures come from
    note: str = ""  # how the dense figures were read (halved from sparse, accumulate mode)


_HALVED = "datasheet prints 2:4-sparsity figures; dense = sparse / 2 (its footnote)"

#: Published peaks, most specific pattern first (``match_gpu`` takes the first match).
GPU_PEAKS: tuple[GpuSpec, ...] = (
    GpuSpec("H100 PCIe", r"h100\s*pcie",
            dense={"fp16": 756.5, "bf16": 756.5, "tf32": 378.0, "fp32": 51.0},
            sparse={"fp16": 1513.0, "bf16": 1513.0, "tf32": 756.0},
            source="NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe column)", note=_HALVED),
    GpuSpec("H100 SXM", r"h100(?!\s*(pcie|nvl))",  # "NVIDIA H100 80GB HBM3" is the SXM part
            dense={"fp16": 989.5, "bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
            sparse={"fp16": 1979.0, "bf16": 1979.0, "tf32": 989.0},
            source="NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column)", note=_HALVED),
    GpuSpec("H200 SXM", r"(?<!g)h200(?!\s*nvl)",  # not GH200 (Grace Hopper), not H200 NVL
            dense={"fp16": 989.5, "bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
            sparse={"fp16": 1979.0, "bf16": 1979.0, "tf32": 989.0},
            source="NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column; same GH100 compute "
                   "as H100 SXM)", note=_HALVED),
    GpuSpec("A100 (40/80 GB, SXM/PCIe)", r"a100",
            dense={"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
            sparse={"fp16": 624.0, "bf16": 624.0, "tf32": 312.0},
            source="NVIDIA A100 Tensor Core GPU datasheet (same peaks for 40/80 GB, SXM/PCIe)",
            note="datasheet prints dense | sparse; dense taken as printed"),
    GpuSpec("L40S", r"l40s",
            dense={"fp16": 362.05, "bf16": 362.05, "tf32": 183.0, "fp32": 91.6},
            sparse={"fp16": 733.0, "bf16": 733.0, "tf32": 366.0},
            source="NVIDIA L40S datasheet",
            note="datasheet prints dense | sparse; dense taken as printed"),
    GpuSpec("L4", r"\bl4\b",
            dense={"fp16": 121.0, "bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
            sparse={"fp16": 242.0, "bf16": 242.0, "tf32": 120.0},
            source="NVIDIA L4 Tensor Core GPU datasheet", note=_HALVED),
    GpuSpec("A10", r"\ba10\b(?!g)",
            dense={"fp16": 125.0, "bf16": 125.0, "tf32": 62.5, "fp32": 31.2},
            sparse={"fp16": 250.0, "bf16": 250.0, "tf32": 125.0},
            source="NVIDIA A10 Tensor Core GPU datasheet",
            note="datasheet prints dense | sparse; dense taken as printed"),
    GpuSpec("T4", r"\bt4\b",
            dense={"fp16": 65.0, "fp32": 8.1},
            source="NVIDIA T4 Tensor Core GPU datasheet (FP16/FP32 mixed precision 65 TFLOPS)",
            note="Turing: no sparsity, no bf16 or tf32 tensor cores"),
    GpuSpec("V100 SXM2", r"v100(?!s).*sxm",
            dense={"fp16": 125.0, "fp32": 15.7},
            source="NVIDIA Tesla V100 datasheet (SXM2: tensor performance 125 TFLOPS)",
            note="Volta: no sparsity, no bf16 or tf32 tensor cores"),
    GpuSpec("V100 PCIe", r"v100(?!s)",  # not V100S (higher clocks)
            dense={"fp16": 112.0, "fp32": 14.0},
            source="NVIDIA Tesla V100 datasheet (PCIe: tensor performance 112 TFLOPS)",
            note="Volta: no sparsity, no bf16 or tf32 tensor cores"),
    GpuSpec("GeForce RTX 4090", r"rtx\s*4090(?!\s*(d\b|laptop))",  # not 4090 D, not laptop
            dense={"fp16": 165.2, "bf16": 165.2, "tf32": 82.6, "fp32": 82.6},
            sparse={"fp16": 330.4, "bf16": 330.4, "tf32": 165.2},
            source="NVIDIA Ada GPU architecture whitepaper, RTX 4090 specifications",
            note="fp16 with FP32 accumulate (the FP16-accumulate rate, 330.3, is twice it on "
                 "GeForce); whitepaper prints dense / sparse"),
    GpuSpec("GeForce RTX 3090", r"rtx\s*3090(?!\s*ti)",
            dense={"fp16": 71.0, "bf16": 71.0, "tf32": 35.6, "fp32": 35.6},
            sparse={"fp16": 142.0, "bf16": 142.0, "tf32": 71.0},
            source="NVIDIA Ampere GA102 GPU architecture whitepaper, appendix A (RTX 3090)",
            note="fp16 with FP32 accumulate: half the 142 TFLOPS FP16-accumulate rate on "
                 "GeForce; whitepaper prints dense / sparse"),
)

#: GPUs met in practice whose peak no vendor document gives: pattern -> why there is no entry.
UNPUBLISHED: dict[str, str] = {
    r"a10g": "the A10G is an AWS-only variant of the A10 with different tensor throughput, and "
             "NVIDIA publishes no datasheet for it",
}


@dataclass(frozen=True)
class Peak:
    """A device's peak FLOP/s for one dtype, and how it is known."""

    flops_per_s: float  # peak floating-point operations per second (one multiply-add = 2)
    dtype: str  # one of PEAK_DTYPES
    device_name: str  # the GPU's or CPU's name
    kind: str  # "datasheet" (GPU table) or "measured" (CPU matmul benchmark)
    source: str  # the document, or how it was measured
    threads: int | None = None  # CPU threads of the measurement (None for a datasheet)

    @property
    def tflops(self) -> float:
        """The peak in TFLOP/s."""
        return self.flops_per_s / 1e12

    def label(self) -> str:
        """A short description for tables, e.g. '989.5 TFLOP/s fp16 (datasheet, dense)'."""
        value = f"{self.tflops:.4g} TFLOP/s" if self.tflops >= 1 else \
            f"{self.flops_per_s / 1e9:.4g} GFLOP/s"
        how = "datasheet, dense" if self.kind == "datasheet" else \
            f"measured matmul, {self.threads} thread(s)"
        return f"{value} {self.dtype} ({how})"


def dtype_key(dtype) -> str:
    """``torch.float16`` or ``"fp16"`` -> ``"fp16"``; raises :class:`HardwareError` otherwise."""
    name = str(dtype).replace("torch.", "")
    name = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16",
            "bfloat16": "bf16"}.get(name, name)
    if name not in PEAK_DTYPES:
        raise HardwareError(f"dtype {dtype!r} has no peak here: choose one of {list(PEAK_DTYPES)}")
    return name


def match_gpu(device_name: str) -> GpuSpec | None:
    """The :data:`GPU_PEAKS` entry for a ``torch.cuda.get_device_name()`` string, or None."""
    if any(re.search(p, device_name, flags=re.IGNORECASE) for p in UNPUBLISHED):
        return None
    for spec in GPU_PEAKS:
        if re.search(spec.pattern, device_name, flags=re.IGNORECASE):
            return spec
    return None


def gpu_peak(device_name: str, dtype) -> Peak:
    """The published dense peak of the GPU named ``device_name`` for ``dtype``.

    Raises :class:`HardwareError` naming the GPU when the table has no entry for it (or no
    figure for the dtype), with the remedy: add its datasheet figures to :data:`GPU_PEAKS`.
    """
    key = dtype_key(dtype)
    for pattern, why in UNPUBLISHED.items():
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            raise HardwareError(f"no published peak for GPU {device_name!r}: {why}")
    spec = match_gpu(device_name)
    if spec is None:
        raise HardwareError(f"no published peak for GPU {device_name!r}: add its datasheet "
                            f"figures to dsdcompare.hardware.GPU_PEAKS")
    if key not in spec.dense:
        raise HardwareError(f"{spec.name} ({device_name!r}) has no published {key} peak "
                            f"(published: {sorted(spec.dense)}); {spec.note}")
    return Peak(spec.dense[key] * 1e12, key, device_name, "datasheet",
                f"{spec.source}; {spec.note}")


def measured_cpu_matmul_peak(dtype="fp32", seconds: float = 1.0, *, size: int | None = None,
                             threads: int | None = None) -> Peak:
    """The CPU's achieved matmul FLOP/s: the best of repeated square ``torch.mm`` calls.

    ``size`` is the matrix side; by default it grows (from 1024, doubling, at most 4096) until
    one call takes at least a fiftieth of ``seconds``, so the measurement is of the compute
    units, not of call overhead. Calls repeat (at least three) until ``seconds`` have passed;
    the fastest counts, because on a shared machine slower calls measure the other work.
    ``threads`` sets torch's thread count for the measurement (default: the current one),
    recorded in the result.
    """
    import torch

    key = dtype_key(dtype)
    if key == "tf32":
        raise HardwareError("tf32 is a GPU tensor-core mode: measure the CPU peak in fp32")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise HardwareError(f"seconds must be a positive number, got {seconds!r}")
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[key]
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        n, best, calls = _time_matmuls(torch, torch_dtype, seconds, size)
    finally:
        torch.set_num_threads(previous)
    from .environment import cpu_name

    return Peak(2.0 * n ** 3 / best, key, cpu_name(), "measured",
                f"best of {calls} {n}x{n} {key} torch.mm calls on {used} thread(s)", used)


def _time_matmuls(torch, torch_dtype, seconds: float, size: int | None) -> tuple[int, float, int]:
    gen = torch.Generator().manual_seed(0)

    def one(n: int) -> float:
        a = torch.rand(n, n, generator=gen).to(torch_dtype)
        b = torch.rand(n, n, generator=gen).to(torch_dtype)
        torch.mm(a, b)  # the first call also starts the thread pool and allocates
        start = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - start

    n = size or 1024  # from 1024: smaller calls time thread start-up and stalls on a busy CPU
    if size is None:  # grow until one call is long enough to time the compute, not the call
        while n < 4096 and one(n) < seconds / 50:
            n *= 2
    a = torch.rand(n, n, generator=gen).to(torch_dtype)
    b = torch.rand(n, n, generator=gen).to(torch_dtype)
    torch.mm(a, b)  # warm (allocations, thread pool)
    best, calls, deadline = math.inf, 0, time.perf_counter() + seconds
    while calls < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
        calls += 1
    return n, max(best, 1e-9), calls


_cpu_peaks: dict[tuple[str, int], Peak] = {}
_cpu_lock = threading.Lock()


def device_peak(device: str, dtype, *, device_name: str | None = None,
                cpu_seconds: float = 1.0) -> Peak:
    """The peak of ``device`` ("cpu", "cuda", "cuda:N") for ``dtype``.

    A GPU's comes from :data:`GPU_PEAKS` (``device_name`` defaults to the visible GPU's name);
    a CPU's is measured once per process, dtype and thread count (``cpu_seconds`` of matmuls)
    and reused. Raises :class:`HardwareError` when no peak is known.
    """
    key = dtype_key(dtype)
    if device.startswith("cuda"):
        if device_name is None:
            import torch

            device_name = torch.cuda.get_device_name(torch.device(device))
        return gpu_peak(device_name, key)
    if device != "cpu":
        raise HardwareError(f"no peak is known for device {device!r}: use cpu or cuda[:N]")
    import torch

    cache_key = (key, torch.get_num_threads())
    with _cpu_lock:
        if cache_key not in _cpu_peaks:
            _cpu_peaks[cache_key] = measured_cpu_matmul_peak(key, cpu_seconds)
        return _cpu_peaks[cache_key]


def utilisation(flops: float, seconds: float, peak: Peak | float) -> float:
    """Achieved FLOP/s (``flops`` done in ``seconds``) over ``peak`` (a :class:`Peak` or FLOP/s).

    1.0 is the device's peak. Raises :class:`HardwareError` for a negative or non-finite FLOP
    count, non-positive seconds or a non-positive peak.
    """
    peak_flops = peak.flops_per_s if isinstance(peak, Peak) else peak
    for name, value, ok in (("flops", flops, lambda v: v >= 0),
                            ("seconds", seconds, lambda v: v > 0),
                            ("peak", peak_flops, lambda v: v > 0)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
            raise HardwareError(f"utilisation needs a finite {name} "
                                f"{'>= 0' if name == 'flops' else '> 0'}, got {value!r}")
    return flops / seconds / peak_flops


__all__ = ["GPU_PEAKS", "PEAK_DTYPES", "UNPUBLISHED", "GpuSpec", "HardwareError", "Peak",
           "device_peak", "dtype_key", "gpu_peak", "match_gpu", "measured_cpu_matmul_peak",
           "utilisation"]
