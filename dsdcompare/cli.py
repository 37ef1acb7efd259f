"""Command line: ``python -m dsdcompare compare|profile|bench|toyzoo|models ...``.

Every subcommand calls the same package functions as the dashboard; the CLI only parses,
shows progress and writes files.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from . import __version__

SIZE_CHOICES_HELP = "'native' (each model at its own resolution) or a multiple of 8 from 64 to 2048"


# --- argument types: each names the bad value and the remedy ---------------------------------------

def int_in(name: str, lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be from {lo} to {hi}, got {value}")
        return value
    return parse


def guidance_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"guidance must be a number, got {text!r}") from None
    if not 0 <= value <= 50:
        raise argparse.ArgumentTypeError(f"guidance must be from 0 to 50, got {value}")
    return value


def size_arg(text: str) -> int | None:
    if text == "native":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be {SIZE_CHOICES_HELP}, got {text!r}") from None
    if not 64 <= value <= 2048 or value % 8:
        raise argparse.ArgumentTypeError(f"size must be {SIZE_CHOICES_HELP}, got {value}")
    return value


def _local_dir(text: str) -> tuple[str, str]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"--local-dir takes MODEL=DIR, got {text!r}")
    return key, path


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that load models (compare, bench)."""
    p.add_argument("--models", default="all",
                   help="comma-separated registry keys; 'all' = the four seed models, 'toy' = the "
                        "trained toy pair (default: all). See `python -m dsdcompare models`.")
    p.add_argument("--models-file", metavar="TOML",
                   help="a TOML file of extra models ([models.KEY] tables; see README)")
    p.add_argument("--source", choices=["hub", "local", "tiny", "arch"],
                   help="weight source for every model: hub (Hugging Face), local (a directory), "
                        "tiny (offline random miniatures: images are noise), arch (full-size "
                        "random weights: real speed, noise images). Default: each model's own")
    p.add_argument("--local-dir", action="append", type=_local_dir, default=[], metavar="MODEL=DIR",
                   help="directory in the hub layout for MODEL with --source local (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="weights precision; auto = fp16 on a GPU, fp32 on a CPU")
    p.add_argument("--scorer", default="default",
                   help="CLIP scorer checkpoint: 'default' (openai/clip-vit-large-patch14 for real "
                        "models, the stand-in for stand-ins, the toy CLIP for toy models), a hub "
                        "name, a local directory, 'open_clip:ARCH/TAG', 'tiny', or 'none'")
    p.add_argument("--threads", type=int_in("threads", 1, 256),
                   help="torch CPU threads (fix it for bit-identical images across runs)")
    p.add_argument("--store", metavar="PATH",
                   help="results database (default: $DSDCOMPARE_STORE or "
                        "./dsdcompare-results/results.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not write results to the store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dsdcompare",
        description="Run the same seeded prompt through Stable Diffusion models side by side: "
                    "honest latency, CLIP score, what distillation buys.")
    parser.add_argument("--version", action="version", version=f"dsdcompare {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compare", help="one prompt and seed through several models",
                       description="Generate one prompt with one seed on every chosen model; write "
                                   "a PNG per model, a contact sheet and results.json/csv.")
    c.add_argument("prompt", help="the text prompt")
    c.add_argument("--negative", default="", help="negative prompt (default: none)")
    c.add_argument("--seed", type=int_in("seed", 0, 2**63 - 1), default=42,
                   help="seed of the initial noise, the same for every model (default 42)")
    c.add_argument("--steps", type=int_in("steps", 1, 500), default=30,
                   help="denoising steps (default 30)")
    c.add_argument("--guidance", type=guidance_arg, default=7.5,
                   help="classifier-free guidance scale (default 7.5)")
    c.add_argument("--size", type=size_arg, default=None, metavar="native|PIXELS",
                   help=f"image side: {SIZE_CHOICES_HELP} (default native)")
    c.add_argument("--images", type=int_in("images", 1, 8), default=1,
                   help="images per prompt (default 1)")
    c.add_argument("--repeats", type=int_in("repeats", 1, 100), default=1,
                   help="timed steady-state calls per model (default 1)")
    c.add_argument("--warmup", type=int_in("warmup", 0, 10), default=1,
                   help="untimed warm-up calls per model, reported as 'first call' (default 1)")
    c.add_argument("--scheduler", help="a diffusers scheduler class, e.g. EulerDiscreteScheduler "
                                       "(default: each repo's own)")
    c.add_argument("--out", default="out", help="output folder (default ./out)")
    c.add_argument("--resume", action="store_true",
                   help="skip models whose result for this exact request is already in the store "
                        "(e.g. after an interrupted run) and complete the interrupted run")
    add_model_options(c)

    m = sub.add_parser("models", help="list registered models",
                       description="List the registry: keys, repos, pipelines, native sizes, pairs.")
    m.add_argument("--models-file", metavar="TOML", help="a TOML file of extra models")

    for name, module, help_text in _PLUGINS:
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=name != "toyzoo")
        configure = _plugin(module, "configure_parser")
        if configure is not None:
            configure(p)
    return parser


#: Subcommands implemented in their own modules: (name, module, help).
_PLUGINS = (
    ("profile", "dsdcompare.profiling",
     "architecture-true profile: parameters, FLOPs and measured latency per component"),
    ("bench", "dsdcompare.bench", "benchmark sweeps over prompt suites, seeds and step counts"),
    ("store", "dsdcompare.store", "export results (CSV, JSON) or a portable bundle"),
    ("toyzoo", "dsdcompare.toyzoo.cli", "train and evaluate the toy teacher/student pair"),
)


def _plugin(module: str, attr: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["toyzoo"]:  # the toy zoo has its own parser
        from .toyzoo.cli import main as toyzoo_main

        return toyzoo_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if args.command == "compare":
        return run_compare(args, parser)
    if args.command == "models":
        return run_models(args)
    run = _plugin(dict((n, m) for n, m, _ in _PLUGINS)[args.command], "run")
    return run(args)


def _quiet_libraries() -> None:
    # the libraries' own per-shard loading bars would drown the CLI's progress bar
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def run_models(args) -> int:
    from .registry import get_model, list_models, load_models_file

    if args.models_file:
        load_models_file(args.models_file)
    print(f"{'key':14} {'pipeline':26} {'native':>6}  {'teacher':12} source")
    for key in list_models():
        s = get_model(key)
        print(f"{key:14} {s.pipeline:26} {s.native_size:>6}  {s.teacher or '-':12} "
              f"{s.repo_id or s.local_dir}" + ("  [toy]" if s.toy else ""))
    return 0


def _setup_models(args, parser):
    from .registry import RegistryError, load_models_file, resolve_models

    try:
        if args.models_file:
            load_models_file(args.models_file)
        return resolve_models(args.models)
    except RegistryError as err:
        parser.error(str(err))


def open_scorer(choice: str, models, source: str | None, device: str):
    """The scorer for ``--scorer``: returns ``(scorer or None, why none)``; never raises."""
    from .metrics import DEFAULT_CHECKPOINT, SCORER_STANDIN, ScorerUnavailable, load_scorer
    from .registry import TOY_CLIP_DIR

    if choice == "none":
        return None, "scoring disabled (--scorer none)"
    if choice == "default":
        if all(m.toy for m in models) and TOY_CLIP_DIR.is_dir():
            choice = str(TOY_CLIP_DIR)
        elif source in ("tiny", "arch"):
            choice = SCORER_STANDIN
        else:
            choice = DEFAULT_CHECKPOINT
    toy = Path(choice).resolve() == TOY_CLIP_DIR.resolve()  # meaningful for toy images only
    try:
        return load_scorer(choice, device=device, standin=True if toy else None), None
    except ScorerUnavailable as err:
        return None, str(err)
    except Exception as err:  # a broken scorer costs scores, never images
        return None, f"scorer {choice!r} failed to load: {type(err).__name__}: {err}"


def run_compare(args, parser) -> int:
    import torch
    from tqdm.auto import tqdm

    from .engine import Request, RequestError, compare
    from .loading import resolve_device
    from .metrics import score_unavailable
    from .sheet import contact_sheet
    from .store import StoreError

    # 1. Check inputs
    models = _setup_models(args, parser)
    request = Request(prompt=args.prompt, negative_prompt=args.negative, seed=args.seed,
                      steps=args.steps, guidance=args.guidance, size=args.size,
                      images_per_prompt=args.images, repeats=args.repeats, warmup=args.warmup,
                      scheduler=args.scheduler)
    try:
        request.validate()
    except RequestError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # 2. Scorer (its absence costs scores, never images)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    scorer, no_score_reason = open_scorer(args.scorer, models, args.source, device)
    if no_score_reason and args.scorer != "none":
        print(f"warning: no CLIP score: {no_score_reason}", file=sys.stderr)
    # 3. Results store: each result is stored as soon as its model finishes
    if args.resume and args.no_store:
        parser.error("--resume needs the results store; drop --no-store")
    try:
        store = open_store(args)
    except StoreError as err:
        parser.error(str(err))
    run_id = None
    if store:
        if args.resume:
            todo = store.pending(request, models, args.source)
            skipped = [m.key for m in models if m not in todo]
            if skipped:
                print(f"resume: already stored, skipped: {', '.join(skipped)}")
            if not todo:
                print(f"resume: nothing left to run for this request in {store.path}")
                return 0
            models = todo
        run_id = store.start_run(request, source=args.source, resume=args.resume)
    # 4. Run, with a progress bar over every denoising step of every model
    calls = request.warmup + request.repeats
    bar = tqdm(total=len(models) * calls * request.steps, unit="step", desc="compare")

    def progress(ev) -> None:
        bar.set_postfix_str(f"{ev.model}: {ev.phase}")
        if ev.phase in ("warmup", "repeat") and 0 < ev.step <= request.steps:
            bar.update(1)
        elif ev.phase == "failed":
            done = (ev.index + 1) * calls * request.steps
            bar.update(max(0, done - bar.n))


    def finished(result) -> None:  # stored as soon as it is complete: a crash loses no model
        if result.success and scorer is None:
            result.score = score_unavailable(args.scorer, no_score_reason or "no scorer",
                                             n_images=len(result.images))
        if store:
            store.add_result(run_id, result)

    results = compare(request, models, source=args.source, device=device, dtype=args.dtype,
                      local_dirs=dict(args.local_dir), scorer=scorer, progress=progress,
                      on_result=finished)
    bar.close()
    if store:
        store.finish_run(run_id)
    # 5. Files out
    written = write_outputs(results, out)
    contact_sheet(results).save(out / "contact_sheet.png")
    _print_summary(results, out, written, store)
    return 0 if any(r.success for r in results) else 1


def open_store(args):
    if args.no_store:
        return None
    from .store import Store

    return Store(args.store) if args.store else Store()


def write_outputs(results, out: Path) -> list[Path]:
    """One PNG per model image, results.json (full records) and results.csv (flat rows)."""
    written = []
    for r in results:
        for i, img in enumerate(r.images):
            path = out / (f"{r.model}.png" if len(r.images) == 1 else f"{r.model}-{i}.png")
            img.save(path)
            written.append(path)
    records = [r.to_dict() for r in results]
    (out / "results.json").write_text(json.dumps(records, indent=1, default=str))
    rows = [flat_row(r) for r in results]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return written


def flat_row(result) -> dict:
    """One flat row of a Result: the same columns as the results store's table."""
    from .store import flat_record, result_record_dict

    return flat_record(result_record_dict(result))


def _print_summary(results, out: Path, written, store) -> None:
    print()
    for r in results:
        row = flat_row(r)
        if not r.success:
            print(f"{r.model:14} FAILED  {r.error}")
            continue
        score = "-" if row["clip_score"] is None else f"{row['clip_score']:.3f}"
        print(f"{r.model:14} {row['median_s']:.3f} s  {row['its_per_s']:.2f} it/s  CLIP {score}"
              + ("  [stand-in: images are noise]" if r.standin else "")
              + (f"  flags: {'; '.join(r.flags)}" if r.flags else ""))
    print(f"\nwrote {len(written)} images, contact_sheet.png, results.json, results.csv to {out}"
          + (f"; stored in {store.path}" if store else ""))
