"""dsdcompare.energy (NVML energy per image, with a fake NVML: no GPU needed) and dsdcompare.cost."""

from __future__ import annotations

import time
from dataclasses import asdict

import pytest

from dsdcompare import energy
from dsdcompare.timing import StageTimes, Timing


class FakeNvml:
    """The few pynvml calls the meter makes: a board drawing ``watts``, with or without an
    energy counter."""

    def __init__(self, watts: float = 100.0, counter: bool = True, fail_init: bool = False):
        self.watts, self.counter, self.fail_init = watts, counter, fail_init
        self.start = time.perf_counter()
        self.shut = False

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise RuntimeError("Not Supported")
        return int((time.perf_counter() - self.start) * self.watts * 1000)  # mJ

    def nvmlDeviceGetPowerUsage(self, handle):
        return int(self.watts * 1000)  # mW


@pytest.fixture
def fake_handle(monkeypatch):
    monkeypatch.setattr(energy, "_handle_for", lambda nvml, device: "gpu0")


def run(meter: energy.EnergyMeter, timed_s: float, untimed_s: float = 0.0) -> None:
    with meter:
        with meter.window(timed=False):
            time.sleep(untimed_s)
        with meter.window(timed=True):
            time.sleep(timed_s)


def test_a_cpu_is_not_metered_and_says_why():
    meter = energy.EnergyMeter("cpu")
    run(meter, 0.01)
    reading = meter.reading(images=2)
    assert reading.joules_per_image is None
    assert reading.note == "not measured: cpu (NVML meters NVIDIA GPUs only)"


def test_the_energy_counter_measures_only_the_timed_calls(fake_handle):
    nvml = FakeNvml(watts=200.0, counter=True)
    meter = energy.EnergyMeter("cuda", nvml=nvml)
    run(meter, timed_s=0.2, untimed_s=0.3)
    reading = meter.reading(images=4)
    # 200 W for 0.2 s = 40 J over 4 images; the untimed 0.3 s (60 J) is left out
    assert reading.joules_per_image == pytest.approx(10.0, rel=0.25)
    assert reading.note.startswith("NVML energy counter over 1 timed call(s)")
    assert energy.SCOPE_NOTE in reading.note
    assert nvml.shut


def test_without_a_counter_the_power_is_sampled_and_integrated(fake_handle):
    meter = energy.EnergyMeter("cuda:0", nvml=FakeNvml(watts=50.0, counter=False),
                               interval_s=0.01)
    run(meter, timed_s=0.3, untimed_s=0.2)
    reading = meter.reading(images=1)
    assert reading.joules_per_image == pytest.approx(15.0, rel=0.25)  # 50 W x 0.3 s
    assert "power sampled every 10 ms" in reading.note


def test_no_nvml_is_a_reason_not_an_error(fake_handle, monkeypatch):
    meter = energy.EnergyMeter("cuda", nvml=FakeNvml(fail_init=True))
    run(meter, 0.01)
    assert meter.reading(images=1) == energy.EnergyReading(
        None, "not measured: NVML Shared Library Not Found")

    def missing():
        raise ImportError("nvidia-ml-py is not installed (pip install nvidia-ml-py)")

    monkeypatch.setattr(energy, "_import_nvml", missing)
    meter = energy.EnergyMeter("cuda")
    run(meter, 0.01)
    assert "nvidia-ml-py is not installed" in meter.reading(images=1).note


def test_no_timed_call_is_no_reading(fake_handle):
    meter = energy.EnergyMeter("cuda", nvml=FakeNvml())
    with meter:
        pass
    assert meter.reading(images=1).joules_per_image is None


def test_timing_stores_the_energy_and_reads_old_records_without_it():
    timing = Timing(load_s=1.0, load_cached=False, first_call_s=1.0, steady_s=[1.0], median_s=1.0,
                    min_s=1.0, max_s=1.0, stages=StageTimes(total=1.0), steps=4, its_per_s=4.0,
                    images_per_call=1, peak_memory_bytes=None, memory_kind="cuda max allocated",
                    warmup=1, repeats=1, energy_j_per_image=123.5, energy_note="NVML energy counter")
    back = Timing.from_dict(asdict(timing))
    assert (back.energy_j_per_image, back.energy_note) == (123.5, "NVML energy counter")
    old = asdict(timing)
    del old["energy_j_per_image"], old["energy_note"]
    assert Timing.from_dict(old).energy_j_per_image is None


def test_a_cpu_comparison_records_that_energy_was_not_measured():
    from dsdcompare.engine import Request, compare
    from dsdcompare.registry import get_model

    [result] = compare(Request("a red circle", steps=1, size=64, repeats=1, warmup=0),
                       [get_model("sd-v1-4")], source="tiny", device="cpu")
    assert result.success, result.error
    assert result.timing.energy_j_per_image is None
    assert "NVIDIA GPUs only" in result.timing.energy_note
    assert result.to_dict()["timing"]["energy_note"] == result.timing.energy_note


# --- cost per image (dsdcompare.cost) ---------------------------------------------------------------

def test_cost_per_1000_images_and_the_default_rates():
    from dsdcompare import cost
    from dsdcompare.errors import InputError

    # 0.9 s for 2 images at $4/h: 0.45 s an image, 450 s per 1000 images = $0.50
    assert cost.usd_per_1000_images(0.9, 2, 4.0) == pytest.approx(0.5)
    assert cost.usd_per_1000_images(None, 1, 4.0) != cost.usd_per_1000_images(None, 1, 4.0)  # NaN
    assert cost.usd_per_1000_images(1.0, 0, 4.0) != cost.usd_per_1000_images(1.0, 0, 4.0)
    with pytest.raises(InputError, match="usd_per_hour"):
        cost.usd_per_1000_images(1.0, 1, -1.0)
    assert cost.default_rate("cpu") is cost.CPU_RATE
    assert cost.default_rate("cuda", "NVIDIA A100-SXM4-80GB").device == "1x A100 80 GB"
    assert cost.default_rate("cuda", "Tesla T4").usd_per_hour == 0.5904
    assert cost.default_rate("cuda:1", "NVIDIA H200").device.startswith("1x H100")
    assert all(r.source for r in (*cost.DEFAULT_RATES, cost.CPU_RATE))
