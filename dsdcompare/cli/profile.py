"""``dsdcompare profile``: parameters, FLOPs and measured latency per component, and the
student/teacher ratios beside the published claims (see :mod:`dsdcompare.profiling`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import DsdCompareError
from ..limits import REPEATS, ROUNDS, SEED, STEPS, THREADS, WARMUP
from ..loading import DTYPES
from ..profiling import (
    PROFILE_SOURCES,
    PROFILE_STAGES,
    ModelProfile,
    ProfileError,
    ProfileSpec,
    check_stages,
    load_profiles,
    merge_profiles,
    profile_models,
    profile_table,
    ratios,
    report,
    summary_table,
)
from ..speed import COMPILE_MODES, SpeedOptions
from .common import fail, int_arg, size_arg

DESCRIPTION = ("Per model and component: parameters, weight bytes, FLOPs and measured latency "
               "(text encoding, UNet step, VAE decode), the estimated time per image, and "
               "student/teacher ratios beside the published claims. The default 'arch' source "
               "is each model's full-size architecture with random weights: real sizes and "
               "timings, no download.")


def _components(text: str) -> tuple[str, ...]:
    """``--components``: stage names, comma-separated, or 'none' (count only)."""
    if text.strip() in ("", "none"):
        return ()
    try:
        return check_stages(s.strip() for s in text.split(",") if s.strip())
    except ProfileError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``profile`` command's options to ``parser``."""
    parser.description = DESCRIPTION
    add = parser.add_argument
    add("--models", default="all",
        help="comma-separated registry keys, 'all' (the four seed models) or 'toy' (default: all)")
    add("--size", type=size_arg, default=None,
        help="image side in pixels, a multiple of 8 (e.g. 256, 512, 1024), or 'native' "
             "(default: each model's native size)")
    add("--steps", type=int_arg(STEPS), default=None,
        help="denoising steps for the estimated time per image (default: each model's "
             "recommended steps, 30)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    add("--dtype", default="auto", choices=list(DTYPES),
        help="weights and compute precision (default auto: fp16 on a GPU, fp32 on a CPU; bf16 "
             "is the CPU's half precision)")
    add("--source", default="arch", choices=list(PROFILE_SOURCES),
        help="weight source (default arch: full size, random weights, no download; tiny: "
             "offline miniatures for quick checks)")
    add("--components", type=_components, default=PROFILE_STAGES,
        help=f"components to time, comma-separated from {','.join(PROFILE_STAGES)}, or 'none' "
             f"to count parameters and FLOPs only (default: all)")
    add("--warmup", type=int_arg(WARMUP), default=1,
        help="untimed calls per component before timing, at least 1; the first is reported "
             "apart as 'first call' (default: 1)")
    add("--repeats", type=int_arg(REPEATS), default=3,
        help="timed calls per component and round; the median is reported (default: 3)")
    add("--rounds", type=int_arg(ROUNDS), default=1,
        help="rebuild and measure every model this many times, interleaved, and merge the "
             "samples (spreads a shared machine's load; default: 1)")
    add("--low-memory", action="store_true",
        help="(arch source) build and time one component at a time, so peak memory is the "
             "largest component, not the whole pipeline")
    add("--no-cfg", action="store_true",
        help="time without classifier-free guidance (UNet batch 1, no negative prompt)")
    _add_speed_options(parser)
    add("--threads", type=int_arg(THREADS), default=None,
        help="CPU threads for torch (default: torch's own choice); recorded")
    add("--seed", type=int_arg(SEED), default=0, help="seed of the random weights and inputs")
    add("--json", metavar="FILE", default=None,
        help="also write the profiles, tables and ratios as JSON to FILE")
    add("--csv", metavar="FILE", default=None,
        help="also write the per-component table as CSV to FILE")
    add("--from-json", metavar="FILE", nargs="+", default=None,
        help="measure nothing: print the report of profiles saved with --json; several files' "
             "rounds of the same model and conditions are merged")
    add("--quiet", action="store_true", help="no progress messages on stderr")


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--no-sdpa", action="store_true",
        help="classic attention instead of PyTorch's scaled-dot-product attention (SDPA is "
             "the default)")
    add("--channels-last", action="store_true", help="UNet and VAE in channels_last memory format")
    add("--compile", action="store_true",
        help="torch.compile the UNet; the compiling first call is reported apart")
    add("--compile-mode", default="default", choices=list(COMPILE_MODES),
        help="torch.compile mode for --compile (default: default)")
    add("--vae-slicing", action="store_true",
        help="VAE slicing: decode a batch one image at a time")
    add("--vae-tiling", action="store_true",
        help="VAE tiling: decode in overlapping tiles (large images)")


def options_from_args(args: argparse.Namespace) -> SpeedOptions:
    """The :class:`SpeedOptions` that parsed command-line flags ask for."""
    return SpeedOptions(sdpa=not args.no_sdpa, channels_last=args.channels_last,
                        compile_unet=args.compile, compile_mode=args.compile_mode,
                        vae_slicing=args.vae_slicing, vae_tiling=args.vae_tiling)


def spec_from_args(args: argparse.Namespace) -> ProfileSpec:
    """The :class:`ProfileSpec` that parsed command-line flags ask for."""
    return ProfileSpec(size=args.size, steps=args.steps, device=args.device, dtype=args.dtype,
                       options=options_from_args(args), source=args.source,
                       stages=args.components, warmup=args.warmup, repeats=args.repeats,
                       rounds=args.rounds, low_memory=args.low_memory, cfg=not args.no_cfg,
                       seed=args.seed)


def _measure(args: argparse.Namespace) -> list[ModelProfile]:
    from ..registry import resolve_models

    spec = spec_from_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    progress = None if args.quiet else _say
    return profile_models(resolve_models(args.models), spec, progress=progress)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """The ``profile`` command: print the report; write ``--json`` / ``--csv`` files."""
    try:
        if args.from_json:
            profiles = merge_profiles(p for path in args.from_json for p in load_profiles(path))
        else:
            profiles = _measure(args)
    except (DsdCompareError, ValueError) as err:  # loading's device check is a plain ValueError
        return fail(err)
    print(report(profiles, peak_of=_peak))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "profiles": [p.to_dict() for p in profiles],
            "components": profile_table(profiles), "summary": summary_table(profiles),
            "ratios": [asdict(r) for r in ratios(profiles)],
        }, indent=1, default=str), encoding="utf-8")
    if args.csv:
        rows = profile_table(profiles)
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _peak(profile):
    """The device's peak for utilisation (measured once on a CPU); None where none is known."""
    from ..hardware import HardwareError, device_peak

    try:
        return device_peak(profile.device, profile.dtype, device_name=profile.device_name)
    except HardwareError:
        return None
