"""What a latency costs: dollars per 1,000 images from a price per device-hour.

``$ per 1,000 images = seconds per call / images per call x 1,000 x $ per hour / 3,600``: the
device is billed for the steady-state call time only (no loading, no idle time), which is how
per-second GPU clouds bill a busy worker. Prices change and differ between providers, so every
figure is an editable default (the dashboard's sidebar, remembered in the link); the defaults
and where they come from are :data:`DEFAULT_RATES` and :data:`CPU_RATE`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .limits import USD_PER_HOUR

#: Where the GPU defaults come from: one provider's per-second on-demand list, so they compare
#: with each other (one GPU per hour, not a multi-GPU instance divided).
_MODAL = "Modal per-second GPU pricing (modal.com/pricing), list prices as of May 2026"


@dataclass(frozen=True)
class Rate:
    """A default price of one device-hour, and where it comes from."""

    pattern: str  # regex searched (case-insensitive) in the device name ("" matches any)
    usd_per_hour: float  # US dollars for one device-hour
    device: str  # what the price is for, e.g. "1x H100"
    source: str  # where it is listed, and when


#: Default GPU prices, most specific pattern first (:func:`default_rate` takes the first match).
#: H200 and other GPUs without a listed price fall back to the H100's (the last entry).
DEFAULT_RATES: tuple[Rate, ...] = (
    Rate(r"a100", 2.4984, "1x A100 80 GB", _MODAL),
    Rate(r"l40s", 1.9512, "1x L40S", _MODAL),
    Rate(r"\bl4\b", 0.7992, "1x L4", _MODAL),
    Rate(r"\bt4\b", 0.5904, "1x T4", _MODAL),
    Rate(r"", 3.9492, "1x H100 (also the default for GPUs without a listed price)", _MODAL),
)
#: Default CPU price: a 4-vCPU general compute instance.
CPU_RATE = Rate(r"", 0.1785, "AWS EC2 c7i.xlarge (4 vCPU)",
                "AWS EC2 on-demand pricing, Linux, us-east-1")


def default_rate(device: str | None, device_name: str | None = None) -> Rate:
    """The default price for ``device`` ("cpu", "cuda", "mps", ...) named ``device_name``."""
    if not device or not device.startswith("cuda"):
        return CPU_RATE
    for rate in DEFAULT_RATES:
        if re.search(rate.pattern, device_name or "", flags=re.IGNORECASE):
            return rate
    return DEFAULT_RATES[-1]


def usd_per_1000_images(seconds_per_call, images_per_call, usd_per_hour: float) -> float:
    """Dollars for 1,000 images at ``seconds_per_call`` for ``images_per_call`` images.

    NaN when the latency or image count is missing or not positive; raises
    :class:`~dsdcompare.errors.InputError` for a price outside :data:`dsdcompare.limits.USD_PER_HOUR`.
    """
    USD_PER_HOUR.check(usd_per_hour)
    try:
        seconds, images = float(seconds_per_call), float(images_per_call)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(seconds) and math.isfinite(images)) or seconds <= 0 or images <= 0:
        return math.nan
    return seconds / images * 1000.0 * usd_per_hour / 3600.0


__all__ = ["CPU_RATE", "DEFAULT_RATES", "Rate", "default_rate", "usd_per_1000_images"]
