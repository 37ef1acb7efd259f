"""The GPU run kit (benchmarks/gpu_kit.py): its tables, the ordering check, the time budget, and
a CPU run at 64 px within a time limit (the same script a GPU box runs)."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_profiling import _fake  # the one synthetic-profile builder

from dsdcompare.profiling import ComponentTiming
from dsdcompare.speed import SpeedOptions

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "benchmarks" / "gpu_kit.py"


def _kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", KIT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


# moved from tests/test_profiling.py with benchmarks/gpu_profile.py (folded into the kit)
def test_gpu_script_table_sets_compiled_beside_eager():
    gpu = _kit()
    eager = [_fake("sd-v1-4", 0.05), _fake("bk-sdm-small", 0.03)]
    compiled = [_fake("sd-v1-4", 0.04, options=SpeedOptions(compile_unet=True).to_dict(),
                      timings={"unet": ComponentTiming.from_samples([30.0], [0.04])})]
    rows = gpu.combined_rows(eager, compiled)
    sd, bk = rows
    assert sd["compile speed-up"] == pytest.approx(1.25) and sd["compile (s)"] > 29
    assert sd["est. s/image compiled"] == pytest.approx(
        eager[0].est_image_s - 30 * 0.05 + 30 * 0.04, abs=0.01)
    assert bk["UNet ms/step compiled"] is None  # not compiled (e.g. time budget): shown as —
    assert "| sd-v1-4 |" in gpu.render(eager, compiled, skipped={"bk-sdm-small": "time budget"})


def test_rows_pair_compiled_with_eager_of_the_same_dtype_and_give_utilisation():
    from dsdcompare.hardware import Peak

    gpu = _kit()
    eager = [_fake("sd-v1-4", 0.05, dtype="fp16", flops={"text": 1, "unet": 5e10, "vae": 2}),
             _fake("sd-v1-4", 0.06, dtype="bf16", flops={"text": 1, "unet": 5e10, "vae": 2})]
    compiled = [_fake("sd-v1-4", 0.025, dtype="bf16",
                      options=SpeedOptions(compile_unet=True).to_dict(),
                      timings={"unet": ComponentTiming.from_samples([20.0], [0.025])})]
    peaks = {"fp16": Peak(2e12, "fp16", "g", "datasheet", "s"), "bf16": "no published peak"}
    fp16, bf16 = gpu.combined_rows(eager, compiled, peaks)
    assert fp16["UNet ms/step compiled"] is None and bf16["UNet ms/step compiled"] == 25.0
    assert fp16["it/s"] == pytest.approx(20.0) and bf16["it/s compiled"] == pytest.approx(40.0)
    assert fp16["UNet TFLOP/s"] == pytest.approx(1.0)  # 50 GFLOP in 50 ms
    assert fp16["UNet util. (%)"] == pytest.approx(50.0)  # of a 2 TFLOP/s peak
    assert bf16["UNet util. (%)"] is None  # no peak known: no utilisation, never a guess


@pytest.mark.parametrize("times, verdict, holds", [
    ({"sdxl-base": 9.0, "ssd-1b": 6.0, "sd-v1-4": 3.0, "bk-sdm-small": 2.0}, "holds", True),
    ({"sdxl-base": 9.0, "ssd-1b": 6.0, "sd-v1-4": 2.0, "bk-sdm-small": 3.0}, "does not hold",
     False),
    ({"sd-v1-4": 3.0, "bk-sdm-small": 2.0}, "not checked: no eager time for sdxl-base, ssd-1b",
     None),
])
def test_ordering_check_of_the_seed_tutorial(times, verdict, holds):
    gpu = _kit()
    rows = [{"model": m, "dtype": "fp16", "est. s/image": t, "est. s/image compiled": None}
            for m, t in times.items()]
    [check] = gpu.ordering(rows)  # nothing compiled: no compiled line
    assert (check["verdict"], check["holds"]) == (verdict, holds)
    assert check["measured order (slowest first)"].startswith(max(times, key=times.get))


def test_a_pass_that_would_not_fit_the_budget_is_skipped_and_reported(tmp_path, capsys,
                                                                     monkeypatch):
    from dsdcompare import threads

    monkeypatch.setattr(threads, "_applied", threads._applied)  # main() applies the policy
    gpu = _kit()
    code = gpu.main(["--out", str(tmp_path), "--device", "cpu", "--source", "tiny",
                     "--models", "sd-v1-4", "--dtypes", "fp32", "--budget-s", "1",
                     "--threads", "1"])
    assert code == 0
    data = json.loads((tmp_path / "gpu_kit.json").read_text())
    assert data["eager"] == [] and data["failed"] == {}
    assert set(data["skipped"]) >= {"sd-v1-4 fp32 eager", "overhead sd-v1-4 fp32",
                                    "sd-v1-4 fp32 compiled"}
    assert all("time budget" in why for why in data["skipped"].values())
    out = capsys.readouterr().out
    assert "- skipped sd-v1-4 fp32 eager: time budget" in out
    assert (tmp_path / "gpu_kit.md").read_text().strip() == out.strip()


@pytest.mark.slow
def test_the_kit_runs_green_on_cpu_at_64px_within_its_limit(tmp_path):
    """The GPU script end to end on a CPU: two SD 1.x models (tiny stand-ins), 64 px, 2 steps."""
    limit_s = 90  # on 2 shared cores; typically ~20 s
    command = [sys.executable, str(KIT), "--out", str(tmp_path), "--device", "cpu",
               "--size", "64", "--steps", "2", "--source", "tiny",
               "--models", "sd-v1-4,bk-sdm-small", "--dtypes", "fp32", "--no-compile",
               "--warmup", "1", "--repeats", "1", "--overhead-rounds", "1", "--threads", "1",
               "--budget-s", str(limit_s)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3 * limit_s)
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_kit.json").read_text())
    assert data["failed"] == {} and data["skipped"] == {}
    assert wall < 2 * limit_s  # self-limiting: the budget, plus start-up and the last pass
    assert [p["model"] for p in data["eager"]] == ["sd-v1-4", "bk-sdm-small"]
    assert all(p["size"] == 64 and p["steps"] == 2 and p["options"]["sdpa"]
               for p in data["eager"])
    assert data["peaks"]["fp32"]["kind"] == "measured" and data["peaks"]["fp32"]["flops_per_s"] > 0
    assert all(row["UNet util. (%)"] > 0 for row in data["table"])
    [check] = data["ordering"]
    assert check["holds"] is None and check["verdict"].startswith("not checked")
    assert data["overhead"]["bare_s"] > 0 and data["overhead"]["device"] == "cpu"
    table = (tmp_path / "gpu_kit.md").read_text()
    assert table.strip() in done.stdout
    for heading in ("## GPU kit: latency", "## Throughput and utilisation",
                    "## Seed tutorial ordering", "## Engine overhead", "## Conditions"):
        assert heading in table
    assert "| bk-sdm-small | fp32 |" in table and "not checked" in table
