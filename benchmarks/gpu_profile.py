"""Profile the four seed models on one GPU: native size, fp16, with and without torch.compile.

Run once on a machine with a GPU (``benchmarks/gpu_profile.sh`` wraps it and saves the output);
prints one markdown table, per model: UNet ms/step (eager and compiled), text encoding ms, VAE
decode ms, estimated seconds per image, peak GPU memory and the compile speed-up, then the
student/teacher ratios. Weights are the ``arch`` source (exact architectures, random weights):
timings are real, nothing is downloaded.

The compiled pass times only the UNet (the only compiled module); its image estimate reuses the
eager pass's text, VAE and safety-checker times. Compilation happens in the first call, which is
reported apart ("compile (s)" = first call minus the steady median) and never in the medians.
A time budget skips compiled passes that would start too late, and says so.

Tested on a CPU with tiny stand-ins::

    benchmarks/gpu_profile.sh --device cpu --dtype fp32 --size 64 --source tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from dsdcompare.cli.common import int_arg, size_arg
from dsdcompare.limits import REPEATS, STEPS, WARMUP
from dsdcompare.loading import DTYPES, release_memory
from dsdcompare.profiling import (
    ModelProfile,
    ProfileSpec,
    format_markdown,
    profile_model,
    ratio_table,
    ratios,
)
from dsdcompare.registry import resolve_models
from dsdcompare.speed import COMPILE_MODES, SpeedOptions


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", default="all",
        help="registry keys, comma-separated (default: the four seed models)")
    add("--device", default="cuda", help="device (default: cuda)")
    add("--dtype", default="fp16", choices=list(DTYPES),
        help="precision (default: fp16)")
    add("--source", default="arch",
        help="weight source (default: arch, full size, random weights)")
    add("--size", type=size_arg, default=None,
        help="image side for every model, or 'native' (default: each model's native size)")
    add("--steps", type=int_arg(STEPS), default=30,
        help="steps of the per-image estimate (default: 30)")
    add("--warmup", type=int_arg(WARMUP), default=2,
        help="untimed calls per component, at least 1 (default: 2)")
    add("--repeats", type=int_arg(REPEATS), default=5,
        help="timed calls per component (default: 5)")
    add("--compile-mode", default="default", choices=list(COMPILE_MODES),
        help="torch.compile mode (default: default; max-autotune compiles for many minutes)")
    add("--no-compile", action="store_true", help="skip the compiled pass")
    add("--budget-s", type=float, default=450.0,
        help="target total seconds: a compiled pass is skipped when the longest one so far "
             "(at first, 120 s) would end past it (default: 450)")
    add("--json", metavar="FILE", help="also write every profile as JSON")
    return parser.parse_args(argv)


def _ms(seconds):
    return None if seconds is None else round(seconds * 1e3, 1)


def combined_rows(eager: list[ModelProfile], compiled: list[ModelProfile]) -> list[dict]:
    """One row per model: the eager profile, with the compiled UNet beside it where measured."""
    by_model = {p.model: p for p in compiled}
    rows = []
    for p in eager:
        c = by_model.get(p.model)
        unet, unet_c = p.seconds("unet"), c.seconds("unet") if c else None
        est = p.est_image_s
        est_c = est - p.steps * unet + p.steps * unet_c if (est and unet and unet_c) else None
        rows.append({
            "model": p.model, "size": p.size, "dtype": p.dtype,
            "UNet ms/step": _ms(unet), "UNet ms/step compiled": _ms(unet_c),
            "compile speed-up": round(unet / unet_c, 3) if unet and unet_c else None,
            "compile (s)": round(c.compile_s, 1) if c and c.compile_s is not None else None,
            "text ms": _ms(p.seconds("text")), "VAE ms": _ms(p.seconds("vae")),
            "safety ms": _ms(p.seconds("safety")),
            "est. s/image": round(est, 3) if est else None,
            "est. s/image compiled": round(est_c, 3) if est_c else None,
            "peak mem (GB)": round(p.peak_memory_bytes / 1e9, 2) if p.peak_memory_bytes else None,
            "peak mem compiled (GB)": round(c.peak_memory_bytes / 1e9, 2)
            if c and c.peak_memory_bytes else None,
        })
    return rows


def render(eager: list[ModelProfile], compiled: list[ModelProfile],
           skipped: dict[str, str] | None = None) -> str:
    """The printed report: the combined table, the ratios, the conditions."""
    title = f"## GPU profile ({eager[0].steps} steps per image estimate)" if eager else \
        "## GPU profile"
    parts = [title, "", format_markdown(combined_rows(eager, compiled))]
    eager_ratios = ratio_table(ratios(eager))
    if eager_ratios:
        parts += ["", "## Student / teacher (eager)", "",
                  format_markdown(eager_ratios, ["student / teacher", "metric", "measured",
                                                 "published", "claim"])]
    # only the UNet is timed compiled: its time per step is the one new ratio
    compiled_ratios = ratio_table([r for r in ratios(compiled) if r.metric == "unet_s"])
    if compiled_ratios:
        parts += ["", "## Student / teacher (compiled UNet)", "",
                  format_markdown(compiled_ratios, ["student / teacher", "metric", "measured"])]
    if eager:
        p = eager[0]
        parts += ["", "## Conditions", "",
                  f"- {p.device} ({p.device_name}), {p.dtype}, source {p.source}, CFG (UNet "
                  f"batch 2), {p.warmup} warm-up + {p.repeats} timed calls per component, medians",
                  f"- torch {p.env.get('torch')}, diffusers {p.env.get('diffusers')}, "
                  f"CUDA {p.env.get('cuda')}"]
        parts += [f"- {n}" for n in sorted({n for q in eager for n in q.notes})]
        if compiled:
            c = compiled[0]
            parts.append(f"- compiled: torch.compile(unet, mode={c.options['compile_mode']}); "
                         f"compile time = first call minus steady median, excluded from "
                         f"medians")
    for model, why in (skipped or {}).items():
        parts.append(f"- {model}: compiled pass skipped ({why})")
    return "\n".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    common = ProfileSpec(size=args.size, steps=args.steps, device=args.device, dtype=args.dtype,
                         source=args.source, warmup=args.warmup, repeats=args.repeats)
    eager, compiled, skipped = [], [], {}
    pass_seconds: list[float] = []  # wall time of each compiled pass so far
    for model in resolve_models(args.models):
        # 1. eager (SDPA, no compile): every component
        eager.append(profile_model(model, replace(common, options=SpeedOptions()), progress=say))
        release_memory()
        # 2. compiled UNet only (the other components are not compiled)
        if args.no_compile:
            continue
        elapsed = time.perf_counter() - started
        # until one has run, guess 120 s (a full-size UNet, default mode, 16 cores compiling)
        longest_compiled_pass = max(pass_seconds, default=120.0)
        if elapsed + longest_compiled_pass > args.budget_s:
            skipped[model.key] = (f"time budget: {elapsed:.0f} s spent, a compiled pass takes up "
                                 f"to {longest_compiled_pass:.0f} s, budget {args.budget_s:.0f} s")
            say(f"{model.key}: compiled pass skipped ({skipped[model.key]})")
            continue
        import torch

        opts = SpeedOptions(compile_unet=True, compile_mode=args.compile_mode)
        pass_start = time.perf_counter()
        try:
            compiled.append(profile_model(model, replace(common, options=opts, stages=("unet",)),
                                          progress=say))
        except Exception as err:  # a compile failure costs this row's compiled numbers only
            skipped[model.key] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            say(f"{model.key}: compiled pass failed: {skipped[model.key]}")
        pass_seconds.append(time.perf_counter() - pass_start)
        torch._dynamo.reset()
        release_memory()
    print(render(eager, compiled, skipped))
    print(f"\n(total wall time {time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "eager": [p.to_dict() for p in eager], "compiled": [p.to_dict() for p in compiled],
            "skipped": skipped, "table": combined_rows(eager, compiled),
            "ratios": [asdict(r) for r in ratios(eager)],
        }, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
