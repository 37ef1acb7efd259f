"""The environment recorded with every result and profile: versions, hardware, machine load.

One place, so that a comparison's Result and a profile describe the machine the same way.
"""

from __future__ import annotations

import os
import platform

from . import __version__, threads


def environment(device: str, *, machine_load: bool = False) -> dict:
    """Library versions and hardware of ``device``; with ``machine_load`` also the CPU's load.

    ``machine_load`` adds the CPU count, whether the CPU computes bf16 natively, and the load
    average before the measurement (``load_average_before``): profiles record them because a
    shared machine's load, not the model, can explain a slow timing.
    """
    import diffusers
    import torch
    import transformers

    if device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = cpu_name()
    env = {
        "dsdcompare": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device_name": device_name,
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        **threads.current(),
    }
    if machine_load:
        env["cpu_bf16_native"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        env["cpu_count"] = os.cpu_count()
        env["load_average_before"] = load_average()
    return env


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded; None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not on every platform (Windows)
        return None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


__all__ = ["cpu_name", "environment", "load_average"]
