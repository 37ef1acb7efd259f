"""``dsdcompare bench``: prompt suites x seeds x step counts through several models, at scale.

The sweep itself (work items, sharding under accelerate, resume, the report table) is
:mod:`dsdcompare.bench`; this module parses the options and prints.
"""

from __future__ import annotations

import argparse
import sys

from ..bench import DEFAULT_SEEDS, DEFAULT_STEPS, BenchError
from ..limits import GUIDANCE, IMAGES, REPEATS, SEED, STEPS, WARMUP, parse_int_list
from .common import (
    SIZE_CHOICES_HELP,
    add_model_options,
    float_arg,
    int_arg,
    open_store,
    setup_models,
    size_arg,
    warn,
)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``dsdcompare bench``."""
    from ..prompts import list_suites

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("examples:\n"
                "  dsdcompare bench --prompts core --models all --seeds 0-3 --steps 10,20,30\n"
                "  dsdcompare bench --prompts my.csv --prompt-column Prompt --limit 20\n"
                "  dsdcompare bench --prompts core --steps 10,20,30 --report --report-csv s.csv\n"
                "  dsdcompare bench --prompts core --metrics clip,hps,lpips   (then --report --metric hps)\n"
                "  dsdcompare bench --prompts core --report --distance [--reference DIR|STATS.npz]\n"
                "  accelerate launch --multi_gpu --num_processes 4 -m dsdcompare bench --prompts core "
                "...  (one process per GPU)")
    p.add_argument("--prompts", metavar="FILE|SUITE",
                   help=f"a suite ({', '.join(list_suites())}) or a prompt file: .txt (one a line), "
                        f".csv/.tsv (a prompt column), .jsonl (a 'prompt' key). Required unless "
                        f"--report")
    p.add_argument("--prompt-column", metavar="NAME",
                   help="the prompt column of a CSV/TSV file or key of a JSONL file (default: "
                        "prompt, prompts, text or caption, any case)")
    p.add_argument("--limit", type=int, metavar="N",  # load_prompts checks it (at least 1)
                   help="use the first N prompts only")
    p.add_argument("--seeds", metavar="LIST",
                   help=f"seeds, e.g. 0-3 or 0,5,9 (default {DEFAULT_SEEDS[0]}; with --report: all)")
    p.add_argument("--steps", metavar="LIST",
                   help=f"step counts, e.g. 10,20,30 (default {DEFAULT_STEPS[0]}; with --report: all)")
    p.add_argument("--negative", default="", help="negative prompt for every item (default: none)")
    p.add_argument("--guidance", type=float_arg(GUIDANCE), default=7.5,
                   help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--size", type=size_arg, default=None, metavar="native|PIXELS",
                   help=f"image side: {SIZE_CHOICES_HELP} (default native)")
    p.add_argument("--images", type=int_arg(IMAGES), default=1,
                   help="images per prompt (default 1)")
    p.add_argument("--repeats", type=int_arg(REPEATS), default=1,
                   help="timed steady-state calls per model and item (default 1)")
    p.add_argument("--warmup", type=int_arg(WARMUP), default=1,
                   help="untimed warm-up calls per model and item (default 1). 0 halves the work: "
                        "each process then warms every model once before its first item instead")
    p.add_argument("--scheduler", help="a diffusers scheduler class (default: each repo's own)")
    p.add_argument("--report", action="store_true",
                   help="only report: summarise what the store holds for this selection, "
                        "generate nothing")
    p.add_argument("--report-csv", metavar="FILE", help="also write the summary table as CSV")
    p.add_argument("--metric", default="clip", metavar="NAME",
                   help="with --report: the metric summarised (clip, hps, pickscore, imagereward, "
                        "lpips); rows are split by its checkpoint and scale (default clip)")
    p.add_argument("--distance", action="store_true",
                   help="with --report: FID and KID of each student's images against its "
                        "teacher's (same prompts and seeds), with sample sizes; needs the FID "
                        "Inception (`dsdcompare download --scorers fid`)")
    p.add_argument("--reference", metavar="DIR|STATS.npz",
                   help="with --distance: also measure every model against this folder of images "
                        "or precomputed Inception statistics")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_options(p)


def run(args) -> int:
    """Run (or with --report, only report) a sweep; project errors propagate to ``main``."""
    import warnings

    from ..engine import Request
    from ..prompts import load_prompts
    from ..record import parse_metrics

    # 1. Check inputs (nothing is created before every check has passed)
    metrics = parse_metrics(args.metrics)
    if args.metric not in parse_metrics("all"):
        raise BenchError(f"--metric {args.metric!r} is not a metric; choose one of "
                         f"{', '.join(parse_metrics('all'))}")
    if (args.distance or args.reference) and not args.report:
        raise BenchError("--distance and --reference go with --report (they read the store)")
    if args.reference and not args.distance:
        raise BenchError("--reference needs --distance")
    if args.no_store:
        raise BenchError("bench stores every result (that is how it resumes and reports); "
                         "drop --no-store, or give --store PATH for a separate database")
    models = setup_models(args)
    seeds = parse_int_list(args.seeds, SEED) if args.seeds else None
    steps = parse_int_list(args.steps, STEPS) if args.steps else None
    prompts = None
    if args.prompts:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prompts = load_prompts(args.prompts, column=args.prompt_column, limit=args.limit)
        for w in caught:
            warn(str(w.message))
    elif not args.report:
        raise BenchError("--prompts is required: a suite name or a prompt file")
    template = Request(prompt="-", negative_prompt=args.negative, guidance=args.guidance,
                       size=args.size, images_per_prompt=args.images, repeats=args.repeats,
                       warmup=args.warmup, scheduler=args.scheduler).validate()
    selection = dict(models=models, prompts=prompts, seeds=seeds, steps=steps, template=template)
    if args.report:
        return report(args, selection)
    return sweep(args, models=models, prompts=prompts, seeds=seeds or list(DEFAULT_SEEDS),
                 steps=steps or list(DEFAULT_STEPS), template=template, metrics=metrics)


def sweep(args, *, models, prompts, seeds, steps, template, metrics=("clip",)) -> int:
    """Generate the sweep (sharded under ``accelerate launch``), then report on the main process."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from ..bench import run_bench, use_cpu, work_items
    from ..errors import InputError
    from ..loading import resolve_device
    from ..record import open_scorers
    from .common import unchosen_clip, warn_unscored

    items = work_items(prompts, seeds, steps)  # refused here when too large, before any load
    # 2. Processes and devices: one device per process under accelerate
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise InputError(str(err)) from None
    state = PartialState(cpu=use_cpu(device))
    if args.device == "auto" or (device == "cuda" and state.num_processes > 1):
        device = "cpu" if state.device.type == "cpu" else str(state.device)  # cuda:<local rank>
    # 3. Store and scorer: the main process creates (or migrates) the database and builds a
    #    stand-in scorer first, the others then open what is there
    with state.main_process_first():
        store = open_store(args)
        scorers, why = open_scorers(metrics, models, args.source, device, clip_choice=args.scorer)
    if state.is_main_process:
        warn_unscored(why, args.scorer)
    state.print(f"bench: {len(prompts)} prompts x {len(seeds)} seeds x {len(steps)} step counts "
                f"= {len(items)} items x {len(models)} models; {state.num_processes} process(es); "
                f"store {store.path}")
    # 4. Run this process's share
    outcome = run_bench(items, models, template, store=store, source=args.source, device=device,
                        dtype=args.dtype, local_dirs=dict(args.local_dir),
                        scorers=scorers, no_score_reasons=why,
                        no_score_reason=unchosen_clip(args.metrics), state=state,
                        progress_bar=None if args.no_progress else _bar)
    outcomes = gather_object([outcome]) if state.num_processes > 1 else [outcome]
    failed = sum(o.failed for o in outcomes)
    # 5. Report on the main process
    if state.is_main_process:
        _print_outcome(outcomes, len(items) - outcome.pending_items, len(models))
        _print_report(store, args, models=models, prompts=prompts, seeds=seeds, steps=steps,
                      template=template)
    store.close()
    state.wait_for_everyone()
    state.destroy_process_group()
    return 1 if failed else 0


def _print_outcome(outcomes, done_items: int, n_models: int) -> None:
    """What the processes did: stored, failed, already stored, wall time."""
    stored = sum(o.stored for o in outcomes)
    failed = sum(o.failed for o in outcomes)
    skipped = done_items * n_models + sum(o.skipped for o in outcomes)
    print(f"\nbench: stored {stored} results ({failed} failed); {skipped} model runs were "
          f"already stored; " + ", ".join(f"{o.wall_s:.1f} s" for o in outcomes)
          + (" per process" if len(outcomes) > 1 else ""))
    for o in outcomes:
        for f in o.failures[:10]:
            print(f"  failed: {f}", file=sys.stderr)
        for note in o.notes[:10]:
            print(f"  not stored: {note}", file=sys.stderr)
    if failed:
        print("  failed results are stored with their errors; a rerun retries them",
              file=sys.stderr)


def report(args, selection: dict) -> int:
    """``bench --report``: summarise the stored results of this selection (exit 1: none)."""
    from ..store import Store

    store = Store(args.store, readonly=True) if args.store else Store(readonly=True)
    with store:
        empty = _print_report(store, args, **selection)
    return 1 if empty else 0


def _print_report(store, args, **selection) -> bool:
    """Print (and maybe write) the summary of ``--metric`` (and with ``--distance`` FID and KID);
    return True when nothing was selected."""
    from ..bench import format_report, report_table

    metric = getattr(args, "metric", "clip")
    df = store.results(source=args.source, metric=metric)
    table, rows = report_table(df, source=args.source, metric=metric, **selection)
    print()
    print(format_report(table, rows, metric=metric))
    if args.report_csv:
        table.to_csv(args.report_csv, index=False)
        print(f"wrote {args.report_csv}")
    if getattr(args, "distance", False) and not rows.empty:
        _print_distances(rows, args)
    return table.empty


def _print_distances(rows, args) -> None:
    """FID and KID of the selected rows (:func:`dsdcompare.distance.sweep_distances`)."""
    from ..distance import sweep_distances
    from ..errors import InputError
    from ..loading import resolve_device
    from ..scorers import load_inception

    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise InputError(str(err)) from None
    found = sweep_distances(rows, extractor=load_inception(device=device),
                            reference=args.reference)
    print()
    if not found:
        print("distance: no student with a paired teacher in this selection"
              + ("" if args.reference else "; give --reference DIR to measure every model"))
        return
    print(f"{'model':16} {'steps':>5}  {'against':24} {'n':>9}  {'FID':>9}  {'KID (± std)':>20}")
    notes: list[str] = []
    for d in found:
        n = f"{d.n_student}/{d.n_reference if d.n_reference is not None else '?'}"
        fid = "-" if d.fid is None else f"{d.fid:.3f}" + ("*" if d.fid_too_small else "")
        kid = "-" if d.kid is None else f"{d.kid:.5f} ± {d.kid_std:.5f}"
        cond = "".join(f" {c}={v}" for c, v in d.conditions)
        print(f"{d.model:16} {d.steps:>5}  {d.reference:24} {n:>9}  {fid:>9}  {kid:>20}{cond}")
        notes += [w for w in d.warnings if w not in notes]
    for note in notes:
        print(f"warning: {note}")
    print("note: n = images of the model / of the reference; * FID below 2048 images per set is "
          "biased upward and unstable: compare KID; lower is closer for both")


def _bar(total: int, tag: str, position: int | None):
    from .progress import StepProgress

    return StepProgress(total, tag, position=position, disable=not total)
