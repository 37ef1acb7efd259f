"""GPU run kit: the four seed models on one GPU, in fp16 and bf16, eager and torch.compile.

On a single H100/H200, in under 8 minutes::

    python benchmarks/gpu_kit.py --out benchmarks/results/gpu-kit

Weights are the ``arch`` source (each model's exact full-size architecture, random weights:
real timings, nothing to download), each model at its native size (512 px SD 1.x, 1024 px
SDXL), SDPA attention. Measured, per model and dtype:

* eager: per-component latency (text encoding, one UNet step at batch 2 for classifier-free
  guidance, VAE decode, safety checker), UNet it/s, the estimated time per image
  (``text + steps x UNet + VAE + safety``), peak GPU memory;
* ``torch.compile`` of the UNet (the only compiled module): its step time, the compile time
  (first call minus the steady median, never in the medians) and the image estimate with the
  compiled UNet;
* utilisation: the UNet's achieved FLOP/s (FLOPs counted by :mod:`dsdcompare.profiling` on the
  meta device) over the device's dense peak for the dtype (:mod:`dsdcompare.hardware`; on a
  CPU, a measured matmul peak);
* the engine-overhead benchmark (``benchmarks/overhead.py``) on the same device;
* the seed tutorial's ordering: SDXL slowest, then SSD-1B, SD v1.4, BK-SDM-small fastest, by
  estimated time per image ("holds", "does not hold", or "not checked" when a model is missing).

It writes ``gpu_kit.md`` (the tables) and ``gpu_kit.json`` (every profile and number) into
``--out`` and prints the tables. A time budget (``--budget-s``) keeps it self-limiting: before
each pass it estimates the pass from the ones done so far and skips it, saying so, when it
would end past the budget. Passes run by priority: eager in the first dtype, the overhead
benchmark, eager in the other dtypes, then compiled (smallest UNet first).

A CPU smoke run of the same script (tests/test_gpu_kit.py)::

    python benchmarks/gpu_kit.py --out /tmp/kit --device cpu --size 64 --steps 2 --source tiny \\
        --models sd-v1-4,bk-sdm-small --dtypes fp32 --no-compile --warmup 1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dsdcompare.cli.common import int_arg, size_arg
from dsdcompare.hardware import HardwareError, Peak, device_peak, utilisation
from dsdcompare.limits import REPEATS, STEPS, THREADS, WARMUP
from dsdcompare.loading import release_memory, resolve_device
from dsdcompare.profiling import (
    PROFILE_SOURCES,
    ModelProfile,
    ProfileSpec,
    count_params,
    format_markdown,
    profile_model,
    ratio_table,
    ratios,
)
from dsdcompare.registry import ModelSpec, resolve_models
from dsdcompare.speed import COMPILE_MODES, SpeedOptions

#: The seed tutorial's order by time per image, slowest first.
EXPECTED_ORDER = ("sdxl-base", "ssd-1b", "sd-v1-4", "bk-sdm-small")
KIT_DTYPES = ("fp32", "fp16", "bf16")
#: Guesses for a pass before any has run (seconds): (eager, compiled) per device kind. A
#: compiled pass is one cold torch.compile of a full-size UNet (default mode) plus its timing.
FIRST_GUESS_S = {"cuda": (45.0, 150.0), "cpu": (60.0, 300.0)}


def _dtypes(text: str) -> tuple[str, ...]:
    names = tuple(d.strip() for d in text.split(",") if d.strip())
    bad = [d for d in names if d not in KIT_DTYPES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--dtypes takes a comma list of {list(KIT_DTYPES)}, "
                                         f"got {text!r}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    """The kit's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--out", required=True, metavar="DIR",
        help="folder for gpu_kit.md and gpu_kit.json (created if missing)")
    add("--models", default="all", help="registry keys, comma-separated (default: the four seed "
        "models); the ordering check needs all four")
    add("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    add("--dtypes", type=_dtypes, default=("fp16", "bf16"),
        help="comma list of fp16, bf16, fp32 (default: fp16,bf16)")
    add("--source", default="arch", choices=list(PROFILE_SOURCES),
        help="weight source (default: arch, full size, random weights)")
    add("--size", type=size_arg, default=None,
        help="image side for every model, or 'native' (default: each model's native size)")
    add("--steps", type=int_arg(STEPS), default=30,
        help="denoising steps of the per-image estimate and the overhead benchmark's calls "
             "(default: 30)")
    add("--warmup", type=int_arg(WARMUP), default=2,
        help="untimed calls per component, at least 1 (default: 2)")
    add("--repeats", type=int_arg(REPEATS), default=5, help="timed calls per component (default: 5)")
    add("--compile-mode", default="default", choices=list(COMPILE_MODES),
        help="torch.compile mode (default: default; max-autotune compiles for many minutes)")
    add("--no-compile", action="store_true", help="skip the compiled passes")
    add("--no-overhead", action="store_true", help="skip the engine-overhead benchmark")
    add("--overhead-model", default="sd-v1-4", help="model of the overhead benchmark")
    add("--overhead-rounds", type=int_arg(REPEATS), default=3,
        help="interleaved rounds of the overhead benchmark (default: 3)")
    add("--threads", type=int_arg(THREADS), default=None,
        help="CPU threads for torch (default: dsdcompare's policy, half the cores)")
    add("--budget-s", type=float, default=420.0,
        help="total seconds: a pass that would end past it is skipped and reported (default: "
             "420, leaving margin under 8 minutes for the pass in flight and the start-up)")
    return parser.parse_args(argv)


# --- the passes ----------------------------------------------------------------------------------

@dataclass
class KitRun:
    """Everything one run measured, plus what it skipped or failed and why (plain data)."""

    device: str  # resolved device
    device_name: str  # the GPU's (or CPU's) name
    budget_s: float  # the time budget the passes were fitted into
    started: float  # perf_counter() at which the budget's clock started
    peaks: dict[str, Peak | str] = field(default_factory=dict)  # dtype -> peak or why none
    eager: list[ModelProfile] = field(default_factory=list)  # every component, SDPA
    compiled: list[ModelProfile] = field(default_factory=list)  # UNet only, compiled
    overhead: dict | None = None  # benchmarks/overhead.py's measure_overhead result
    skipped: dict[str, str] = field(default_factory=dict)  # pass -> why (time budget)
    failed: dict[str, str] = field(default_factory=dict)  # pass -> error
    pass_s: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"eager": [], "compiled": []})  # kind -> (seconds, size units)


class Kit:
    """Runs the passes in priority order under the time budget."""

    def __init__(self, args: argparse.Namespace, started: float):
        self.args = args
        self.models = resolve_models(args.models)
        self.device = resolve_device(args.device)
        self.kind = "cuda" if self.device.startswith("cuda") else "cpu"
        self.run = KitRun(self.device, _device_name(self.device), args.budget_s, started)
        self._units: dict[str, float] = {}

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.run.started

    def units(self, model: ModelSpec) -> float:
        """Relative size of a model's passes: its UNet parameters (1 where not countable)."""
        if model.key not in self._units:
            try:
                self._units[model.key] = count_params(model, self.args.source)["unet"] / 1e6
            except Exception:  # hub/local sources: not countable without loading
                self._units[model.key] = 1.0
        return self._units[model.key]

    def fits(self, kind: str, label: str, model: ModelSpec) -> bool:
        """Whether a pass is expected to end within the budget; records the skip when not."""
        history = self.run.pass_s[kind]
        if history:
            estimate = max(s / u for s, u in history) * self.units(model)
        else:
            estimate = FIRST_GUESS_S[self.kind][kind == "compiled"]
        if self.elapsed() + estimate <= self.args.budget_s:
            return True
        self.run.skipped[label] = (f"time budget: {self.elapsed():.0f} s spent, this pass "
                                   f"estimated at {estimate:.0f} s, budget "
                                   f"{self.args.budget_s:.0f} s")
        self.say(f"{label}: skipped ({self.run.skipped[label]})")
        return False

    def spec(self, dtype: str, compiled: bool) -> ProfileSpec:
        a = self.args
        options = SpeedOptions(sdpa=True, compile_unet=compiled, compile_mode=a.compile_mode)
        spec = ProfileSpec(size=a.size, steps=a.steps, device=self.device, dtype=dtype,
                           options=options, source=a.source, warmup=a.warmup, repeats=a.repeats)
        return replace(spec, stages=("unet",)) if compiled else spec

    def profile(self, model: ModelSpec, dtype: str, compiled: bool) -> None:
        """One pass: profile ``model`` in ``dtype``, eager or compiled, within the budget."""
        kind = "compiled" if compiled else "eager"
        label = f"{model.key} {dtype} {kind}"
        if not self.fits(kind, label, model):
            return
        start = time.perf_counter()
        try:
            profile = profile_model(model, self.spec(dtype, compiled), progress=self.say)
            (self.run.compiled if compiled else self.run.eager).append(profile)
        except Exception as err:  # one failed pass (a compile error, OOM) costs its row only
            self.run.failed[label] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            self.say(f"{label}: failed: {self.run.failed[label]}")
        finally:
            if compiled:
                import torch

                torch._dynamo.reset()
            release_memory()
        self.run.pass_s[kind].append((time.perf_counter() - start, self.units(model)))

    def overhead(self, dtype: str) -> None:
        """The engine-overhead benchmark on this device (benchmarks/overhead.py's functions)."""
        a = self.args
        if a.no_overhead:
            return
        model = resolve_models(a.overhead_model)[0]
        label = f"overhead {model.key} {dtype}"
        if not self.fits("eager", label, model):
            return
        measure_overhead = _overhead_module().measure_overhead
        self.say(f"{label}: {a.overhead_rounds} interleaved rounds")
        start = time.perf_counter()
        try:
            self.run.overhead = measure_overhead(
                model=model.key, source=a.source, size=a.size or model.native_size,
                steps=a.steps, rounds=a.overhead_rounds, device=self.device, dtype=dtype)
        except Exception as err:
            self.run.failed[label] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            self.say(f"{label}: failed: {self.run.failed[label]}")
        release_memory()
        self.run.pass_s["eager"].append((time.perf_counter() - start, self.units(model)))

    def go(self) -> KitRun:
        """Every pass, by priority, within the budget."""
        a = self.args
        for dtype in a.dtypes:
            self.run.peaks[dtype] = _peak(self.device, self.run.device_name, dtype)
        first, *rest = a.dtypes
        for model in self.models:
            self.profile(model, first, compiled=False)
        self.overhead(first)
        for dtype in rest:
            for model in self.models:
                self.profile(model, dtype, compiled=False)
        if not a.no_compile:
            for dtype in a.dtypes:
                for model in sorted(self.models, key=self.units):
                    self.profile(model, dtype, compiled=True)
        return self.run


def _overhead_module():
    """benchmarks/overhead.py, beside this file (benchmarks/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "overhead.py"
    spec = importlib.util.spec_from_file_location("dsdcompare_bench_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _device_name(device: str) -> str:
    from dsdcompare.environment import environment

    return environment(device)["device_name"]


def _peak(device: str, device_name: str, dtype: str) -> Peak | str:
    try:
        return device_peak(device, dtype, device_name=device_name)
    except HardwareError as err:
        return str(err)


# --- tables --------------------------------------------------------------------------------------

def _ms(seconds):
    return None if seconds is None else round(seconds * 1e3, 1)


def _pct(flops, seconds, peak):
    if not flops or not seconds or not isinstance(peak, Peak):
        return None
    return round(100 * utilisation(flops, seconds, peak), 1)


def combined_rows(eager: list[ModelProfile], compiled: list[ModelProfile],
                  peaks: dict[str, Peak | str] | None = None) -> list[dict]:
    """One row per model and dtype: the eager profile, the compiled UNet beside it if measured."""
    by_key = {(p.model, p.dtype): p for p in compiled}
    peaks = peaks or {}
    rows = []
    for p in eager:
        c = by_key.get((p.model, p.dtype))
        unet, unet_c = p.seconds("unet"), c.seconds("unet") if c else None
        est = p.est_image_s
        est_c = est - p.steps * unet + p.steps * unet_c if (est and unet and unet_c) else None
        flops, peak = p.flops.get("unet"), peaks.get(p.dtype)
        rows.append({
            "model": p.model, "size": p.size, "dtype": p.dtype,
            "UNet ms/step": _ms(unet), "UNet ms/step compiled": _ms(unet_c),
            "it/s": round(1 / unet, 2) if unet else None,
            "it/s compiled": round(1 / unet_c, 2) if unet_c else None,
            "compile speed-up": round(unet / unet_c, 3) if unet and unet_c else None,
            "compile (s)": round(c.compile_s, 1) if c and c.compile_s is not None else None,
            "text ms": _ms(p.seconds("text")), "VAE ms": _ms(p.seconds("vae")),
            "safety ms": _ms(p.seconds("safety")),
            "est. s/image": round(est, 3) if est else None,
            "est. s/image compiled": round(est_c, 3) if est_c else None,
            "UNet GFLOP/step": round(flops / 1e9, 1) if flops else None,
            "UNet TFLOP/s": float(f"{flops / unet / 1e12:.3g}") if flops and unet else None,
            "UNet util. (%)": _pct(flops, unet, peak),
            "UNet util. compiled (%)": _pct(flops, unet_c, peak),
            "peak mem (GB)": round(p.peak_memory_bytes / 1e9, 2) if p.peak_memory_bytes else None,
            "peak mem compiled (GB)": round(c.peak_memory_bytes / 1e9, 2)
            if c and c.peak_memory_bytes else None,
        })
    return rows


def ordering(rows: list[dict]) -> list[dict]:
    """The seed tutorial's four-model order checked per dtype, eager and compiled."""
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        for variant, column in (("eager", "est. s/image"), ("compiled", "est. s/image compiled")):
            times = {r["model"]: r[column] for r in rows if r["dtype"] == dtype}
            missing = [m for m in EXPECTED_ORDER if times.get(m) is None]
            if variant == "compiled" and len(missing) == len(EXPECTED_ORDER):
                continue  # nothing compiled in this dtype: no line
            measured = sorted((m for m in EXPECTED_ORDER if m not in missing),
                              key=lambda m: -times[m])
            order = " > ".join(f"{m} {times[m]:.3g} s" for m in measured)
            if missing:
                holds, verdict = None, f"not checked: no {variant} time for {', '.join(missing)}"
            else:
                holds = measured == list(EXPECTED_ORDER)
                verdict = "holds" if holds else "does not hold"
            out.append({"dtype": dtype, "variant": variant, "holds": holds, "verdict": verdict,
                        "measured order (slowest first)": order or None})
    return out


LATENCY_COLUMNS = ["model", "size", "dtype", "text ms", "UNet ms/step", "UNet ms/step compiled",
                   "compile speed-up", "compile (s)", "VAE ms", "safety ms", "est. s/image",
                   "est. s/image compiled"]
THROUGHPUT_COLUMNS = ["model", "dtype", "it/s", "it/s compiled", "UNet GFLOP/step",
                      "UNet TFLOP/s", "UNet util. (%)", "UNet util. compiled (%)",
                      "peak mem (GB)", "peak mem compiled (GB)"]


def render(eager: list[ModelProfile], compiled: list[ModelProfile],
           skipped: dict[str, str] | None = None, *, run: KitRun | None = None,
           command: str = "", wall_s: float | None = None) -> str:
    """The Markdown report: latency, throughput and utilisation, ordering, overhead, ratios,
    conditions, and every skipped or failed pass with its reason."""
    peaks = run.peaks if run else {}
    rows = combined_rows(eager, compiled, peaks)
    steps = eager[0].steps if eager else None
    parts = [f"## GPU kit: latency ({steps} steps per image estimate)", "",
             format_markdown(rows, LATENCY_COLUMNS), "",
             "## Throughput and utilisation (UNet, one step at batch 2)", "",
             format_markdown(rows, THROUGHPUT_COLUMNS), "",
             "## Seed tutorial ordering (SDXL > SSD-1B > SD v1.4 > BK-SDM-small, s/image)", "",
             format_markdown(ordering(rows)) if rows else "(no rows)"]
    if run and run.overhead:
        parts += ["", "## Engine overhead", "", _overhead_module().overhead_table(run.overhead)]
    ratio_rows = ratio_table(ratios(eager))
    if ratio_rows:
        parts += ["", "## Student / teacher (eager)", "",
                  format_markdown(ratio_rows, ["student / teacher", "metric", "measured",
                                               "published", "conditions"])]
    parts += ["", "## Conditions", ""] + _conditions(eager, compiled, run, command, wall_s)
    for what, why in (skipped or {}).items():
        parts.append(f"- skipped {what}: {why}")
    for what, why in (run.failed if run else {}).items():
        parts.append(f"- FAILED {what}: {why}")
    return "\n".join(parts)


def _conditions(eager, compiled, run, command, wall_s) -> list[str]:
    lines = [f"- command: `{command}`"] if command else []
    if eager:
        p = eager[0]
        lines += [f"- {p.device} ({p.device_name}), source {p.source}, SDPA, CFG (UNet batch 2), "
                  f"{p.warmup} warm-up + {p.repeats} timed calls per component, medians",
                  f"- torch {p.env.get('torch')}, diffusers {p.env.get('diffusers')}, CUDA "
                  f"{p.env.get('cuda')}, {p.env.get('torch_threads')} torch thread(s)"]
        lines += [f"- {n}" for n in sorted({n for q in eager for n in q.notes})]
    if compiled:
        lines.append(f"- compiled: torch.compile(unet, mode={compiled[0].options['compile_mode']});"
                     f" compile (s) = first call minus steady median, excluded from medians; "
                     f"the compiled image estimate reuses the eager text, VAE and safety times")
    for dtype, peak in (run.peaks.items() if run else ()):
        text = f"{peak.label()}: {peak.source}" if isinstance(peak, Peak) else f"unknown: {peak}"
        lines.append(f"- peak {dtype}: {text}")
    if wall_s is not None:
        budget = f" (budget {run.budget_s:.0f} s)" if run else ""
        lines.append(f"- total wall time {wall_s:.0f} s{budget}")
    return lines


def to_json(run: KitRun, command: str, wall_s: float) -> dict:
    """Every measured number of a run as plain data."""
    rows = combined_rows(run.eager, run.compiled, run.peaks)
    peaks = {d: ({"flops_per_s": p.flops_per_s, "label": p.label(), "source": p.source,
                  "kind": p.kind, "threads": p.threads} if isinstance(p, Peak)
                 else {"unknown": p}) for d, p in run.peaks.items()}
    return {"command": command, "device": run.device, "device_name": run.device_name,
            "wall_s": wall_s, "budget_s": run.budget_s, "peaks": peaks,
            "table": rows, "ordering": ordering(rows), "overhead": run.overhead,
            "skipped": run.skipped, "failed": run.failed,
            "ratios": [asdict(r) for r in ratios(run.eager)],
            "eager": [p.to_dict() for p in run.eager],
            "compiled": [p.to_dict() for p in run.compiled]}


def main(argv=None) -> int:
    """Run the kit; write gpu_kit.md and gpu_kit.json into --out; print the tables."""
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/gpu_kit.py", *(sys.argv[1:] if argv is None
                                                                  else argv)])
    started = time.perf_counter()  # torch is imported lazily, after this: the budget counts it
    from dsdcompare.threads import apply, decide

    apply(decide(requested=args.threads))  # the project's CPU thread policy, before torch loads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Kit(args, started).go()
    wall_s = time.perf_counter() - started
    table = render(run.eager, run.compiled, run.skipped, run=run, command=command, wall_s=wall_s)
    (out / "gpu_kit.md").write_text(table + "\n", encoding="utf-8")
    (out / "gpu_kit.json").write_text(json.dumps(to_json(run, command, wall_s), indent=1,
                                                 default=str), encoding="utf-8")
    print(table)
    print(f"\nwrote {out / 'gpu_kit.md'} and {out / 'gpu_kit.json'}", file=sys.stderr)
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
