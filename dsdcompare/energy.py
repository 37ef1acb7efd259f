"""Energy per image on NVIDIA GPUs, read from NVML while the timed calls run.

:class:`EnergyMeter` wraps the steady-state calls of one model (:func:`dsdcompare.engine.generate`
opens a window around each timed call, never around warm-up). Two NVML readings, best first:

* the board's **energy counter** (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the
  driver loaded; Volta and later): read at the start and end of each window, so the energy is
  exact whatever the call's length;
* else its **power draw** (``nvmlDeviceGetPowerUsage``, milliwatts), sampled on a daemon thread
  every ``interval_s`` while a window is open and integrated over time (trapezoids). A power
  reading is NVML's average over a short period, so calls much shorter than a few sampling
  intervals are measured coarsely; the note says which method was used.

The result is joules per image: the windows' energy over the images they generated. It is the
whole board's energy, including its idle floor and any other process using the GPU at the same
time; the note says so. Anything else (a CPU or Apple GPU, no ``nvidia-ml-py``, no NVML
driver, a GPU NVML cannot find) gives ``None`` with the reason, never an error: a missing energy
reading must not cost a measurement.

``nvidia-ml-py`` (the ``pynvml`` module) is imported only when a CUDA device is metered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

#: Seconds between power samples when the board has no energy counter.
DEFAULT_INTERVAL_S = 0.02
#: What every reading says about its scope.
SCOPE_NOTE = "whole GPU board, including idle power and any other process on it"


@dataclass(frozen=True)
class EnergyReading:
    """Energy per image of the timed calls, or why there is none."""

    joules_per_image: float | None  # None: not measured (see note)
    note: str  # how it was measured, or why not (one line)


class EnergyMeter:
    """Meters the energy of timed calls on ``device`` (see the module docstring).

    Use as a context manager around all calls, and :meth:`window` around each timed one::

        with EnergyMeter("cuda") as meter:
            for call in calls:
                with meter.window(timed=True):
                    ...
        reading = meter.reading(images=n)

    ``nvml`` replaces the ``pynvml`` module (tests); ``interval_s`` is the power sampling period.
    """

    def __init__(self, device: str, *, interval_s: float = DEFAULT_INTERVAL_S, nvml=None):
        self.device = device
        self.interval_s = interval_s
        self._nvml = nvml
        self._handle = None
        self._why_not: str | None = None
        self._counter = False  # the board has an energy counter
        self._joules = 0.0
        self._open_since: float | None = None  # perf_counter at the open window's start
        self._open_mj: int | None = None  # the counter at the open window's start
        self._last: tuple[float, float] | None = None  # (time, watts) of the last sample
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._windows = 0

    # --- setting up ------------------------------------------------------------------------------

    def __enter__(self) -> EnergyMeter:
        if not self.device.startswith("cuda"):
            self._why_not = f"not measured: {self.device} (NVML meters NVIDIA GPUs only)"
            return self
        try:
            nvml = self._nvml or _import_nvml()
            nvml.nvmlInit()
            self._nvml = nvml
            self._handle = _handle_for(nvml, self.device)
        except Exception as err:  # no package, no driver, unknown GPU: say why, measure on
            self._why_not = f"not measured: {_first_line(err)}"
            self._handle = None
            return self
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._counter = True
        except Exception:  # pre-Volta boards: sample the power instead
            self._counter = False
            self._thread = threading.Thread(target=self._sample, daemon=True,
                                             name="dsdcompare-nvml")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._handle is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down never fails a measurement
                pass

    # --- measuring -------------------------------------------------------------------------------

    def window(self, timed: bool = True):
        """A context manager: the energy spent inside counts when ``timed`` (else it is ignored)."""
        return _Window(self, timed and self._handle is not None)

    def _open(self) -> None:
        with self._lock:
            self._open_since = time.perf_counter()
            if self._counter:
                self._open_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            else:
                self._last = (self._open_since, self._watts())

    def _close(self) -> None:
        with self._lock:
            now = time.perf_counter()
            if self._counter:
                end_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self._joules += max(0, end_mj - self._open_mj) / 1000.0
            else:
                self._integrate(now, self._watts())
            self._open_since = None
            self._windows += 1

    def _watts(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0

    def _integrate(self, now: float, watts: float) -> None:
        if self._last is not None:
            then, before = self._last
            self._joules += (now - then) * (before + watts) / 2.0
        self._last = (now, watts)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._open_since is not None:
                    try:
                        self._integrate(time.perf_counter(), self._watts())
                    except Exception:  # a failed read skips one sample
                        pass

    def reading(self, images: int) -> EnergyReading:
        """Joules per image over the timed windows, which generated ``images`` images."""
        if self._why_not is not None:
            return EnergyReading(None, self._why_not)
        if self._windows == 0 or images <= 0:
            return EnergyReading(None, "not measured: no timed call")
        how = ("NVML energy counter" if self._counter
               else f"NVML power sampled every {self.interval_s * 1000:.0f} ms")
        return EnergyReading(self._joules / images,
                             f"{how} over {self._windows} timed call(s); {SCOPE_NOTE}")


class _Window:
    def __init__(self, meter: EnergyMeter, active: bool):
        self.meter = meter
        self.active = active

    def __enter__(self):
        if self.active:
            self.meter._open()
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            self.meter._close()


def _import_nvml():
    try:
        import pynvml
    except ImportError:
        raise ImportError("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    return pynvml


def _handle_for(nvml, device: str):
    """The NVML handle of the CUDA device ``device``: matched by UUID (CUDA and NVML number
    GPUs differently under CUDA_VISIBLE_DEVICES), else by index."""
    import torch

    index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        for text in (uuid, uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(text)
            except Exception:  # try the other spelling, then the index
                continue
    return nvml.nvmlDeviceGetHandleByIndex(index)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


__all__ = ["DEFAULT_INTERVAL_S", "EnergyMeter", "EnergyReading", "SCOPE_NOTE"]
