"""``dsdcompare compare PROMPT``: one prompt and seed through several models, files out."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from ..errors import DsdCompareError, InputError, first_line
from ..limits import GUIDANCE, IMAGES, REPEATS, SEED, STEPS, WARMUP
from .common import (
    SIZE_CHOICES_HELP,
    add_model_options,
    float_arg,
    int_arg,
    open_store,
    setup_models,
    size_arg,
    unchosen_clip,
    warn,
    warn_unscored,
)


def configure(c) -> None:
    """Options of ``compare``."""
    c.description = ("Generate one prompt with one seed on every chosen model; write a PNG per "
                     "model, a contact sheet and results.json/csv.")
    c.add_argument("prompt", help="the text prompt")
    c.add_argument("--negative", default="", help="negative prompt (default: none)")
    c.add_argument("--seed", type=int_arg(SEED), default=42,
                   help="seed of the initial noise, the same for every model (default 42)")
    c.add_argument("--steps", type=int_arg(STEPS), default=30, help="denoising steps (default 30)")
    c.add_argument("--guidance", type=float_arg(GUIDANCE), default=7.5,
                   help="classifier-free guidance scale (default 7.5)")
    c.add_argument("--size", type=size_arg, default=None, metavar="native|PIXELS",
                   help=f"image side: {SIZE_CHOICES_HELP} (default native)")
    c.add_argument("--images", type=int_arg(IMAGES), default=1, help="images per prompt (default 1)")
    c.add_argument("--repeats", type=int_arg(REPEATS), default=1,
                   help="timed steady-state calls per model (default 1)")
    c.add_argument("--warmup", type=int_arg(WARMUP), default=1,
                   help="untimed warm-up calls per model, reported as 'first call' (default 1)")
    c.add_argument("--scheduler", help="a diffusers scheduler class, e.g. EulerDiscreteScheduler "
                                       "(default: each repo's own)")
    c.add_argument("--out", default="out", help="output folder (default ./out)")
    c.add_argument("--resume", action="store_true",
                   help="skip models whose result for this exact request is already in the store "
                        "(e.g. after an interrupted run) and complete the interrupted run")
    add_model_options(c)


class OutputError(DsdCompareError):
    """The output folder cannot be used or written; the message names it and the remedy."""


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is not (and cannot become) a writable folder, creating nothing."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputError(f"--out {out} is not a folder (it is a file or a device); give a "
                              f"folder name: it is created when missing")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"--out {out}: the folder is not writable; give a folder you can "
                              f"write")
        return
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"--out {out} cannot be created: {parent} is not a folder; give "
                          f"another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} cannot be created: {parent} is not writable; give a "
                          f"folder you can write")


def run(args) -> int:
    """Run the comparison, store each result as it finishes, write the files."""
    from ..engine import Request
    from ..loading import resolve_device
    from ..record import open_scorers, parse_metrics

    # 1. Check inputs (nothing is created before every check has passed)
    metrics = parse_metrics(args.metrics)
    models = setup_models(args)
    request = Request(prompt=args.prompt, negative_prompt=args.negative, seed=args.seed,
                      steps=args.steps, guidance=args.guidance, size=args.size,
                      images_per_prompt=args.images, repeats=args.repeats, warmup=args.warmup,
                      scheduler=args.scheduler).validate()
    if args.resume and args.no_store:
        raise InputError("--resume needs the results store; drop --no-store")
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise InputError(str(err)) from None
    out = Path(args.out)
    check_out_folder(out)
    store = open_store(args)  # a damaged or foreign store is refused here, untouched
    # 2. What is left to run when resuming
    todo = models
    if store and args.resume:
        todo = store.pending(request, models, args.source)
        skipped = [m.key for m in models if m not in todo]
        if skipped:
            print(f"resume: already stored, skipped: {', '.join(skipped)}")
        if not todo:
            print(f"resume: nothing left to run for this request in {store.path}")
    # 3. Scorers, when something runs (their absence costs scores, never images)
    scorers, why = {}, {}
    if todo:
        scorers, why = open_scorers(metrics, models, args.source, device, clip_choice=args.scorer)
        warn_unscored(why, args.scorer)
    # 4. Run, storing each result and writing its images as soon as its model finishes
    _make_folder(out)
    finished: list = []
    written: list[Path] = []
    try:
        if todo:
            _run(args, request, todo, store, scorers, why, device, out, finished)
    finally:  # also when interrupted or the store fails: what finished is written out
        results = finished
        if store and args.resume:  # the whole request: earlier results come from the store
            results = complete_results(store, request, models, finished, args.source)
        if results:
            written = write_outputs(results, out)
            from ..sheet import contact_sheet

            _write(out / "contact_sheet.png", lambda p: contact_sheet(results).save(p))
    if results:
        _print_summary(results, out, written, store)
    return 0 if any(r.success for r in results) else 1


def _run(args, request, models, store, scorers: dict, why: dict, device, out: Path,
         finished: list) -> None:
    """:func:`dsdcompare.record.run_request` with a progress bar; each Result is appended to
    ``finished`` and its images written the moment its model is done."""
    from ..record import run_request

    def done(result) -> None:
        finished.append(result)
        write_images(result, out)

    bar = _Bar(request, len(models))
    try:
        recording = run_request(request, models, store=store, resume=args.resume,
                                scorers=scorers, no_score_reasons=why, scorer_choice=args.scorer,
                                no_score_reason=unchosen_clip(args.metrics), on_result=done,
                                source=args.source, device=device, dtype=args.dtype,
                                local_dirs=dict(args.local_dir), progress=bar.progress)
    finally:
        bar.close()
    for note in recording.notes:
        warn(note)


def complete_results(store, request, models, finished: list, source: str | None) -> list:
    """One Result per requested model (teachers first): the store's newest complete one for
    this request (earlier runs, or another run that stored it first), else this call's."""
    from ..engine import teachers_first
    from ..store import StoreError

    mine = {r.model: r for r in finished}
    out = []
    for spec in teachers_first(list(models)):
        try:
            stored = store.completed_result(request, spec.key, source or spec.default_source)
        except (StoreError, OSError) as err:  # unreadable: this call's result, if any
            warn(f"{spec.key}: the stored result cannot be read ({first_line(err)})")
            stored = None
        result = stored or mine.get(spec.key)
        if result is not None:
            out.append(result)
    return out


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out {out} cannot be created ({err.strerror or err}); give "
                          f"another folder") from None


def _write(path: Path, save) -> None:
    """``save(path)``; an OS error (disk full, folder gone) becomes an :class:`OutputError`."""
    try:
        save(path)
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); every finished result "
                          f"is in the store (`dsdcompare store export`)") from None


def _image_names(result) -> list[str]:
    """File names of a Result's images: the registry key is checked safe for a file name."""
    from ..registry import check_key

    check_key(result.model)
    n = len(result.images)
    return [f"{result.model}.png" if n == 1 else f"{result.model}-{i}.png" for i in range(n)]


def write_images(result, out: Path) -> list[Path]:
    """One PNG per image of ``result`` in ``out``; their paths."""
    paths = [out / name for name in _image_names(result)]
    for img, path in zip(result.images, paths, strict=True):
        _write(path, img.save)
    return paths


class _Bar:
    """Progress over every denoising step of every model (live on a terminal, lines in logs)."""

    def __init__(self, request, n_models: int):
        from .progress import StepProgress

        self.steps = request.steps
        self.calls = request.warmup + request.repeats
        self.bar = StepProgress(n_models * self.calls * self.steps, "compare")

    def progress(self, ev) -> None:
        self.bar.event(ev, self.steps)
        if ev.phase == "failed":  # the failed model's remaining steps will never come
            done = (ev.index + 1) * self.calls * self.steps
            self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        self.bar.close()




def write_outputs(results, out: Path) -> list[Path]:
    """One PNG per model image, results.json (full records) and results.csv (flat rows)."""
    written = [path for r in results for path in write_images(r, out)]
    records = [r.to_dict() for r in results]
    text = json.dumps(records, indent=1, default=str)
    _write(out / "results.json", lambda p: p.write_text(text, encoding="utf-8"))
    rows = [flat_row(r) for r in results]

    def save_csv(path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    _write(out / "results.csv", save_csv)
    return written


def flat_row(result) -> dict:
    """One flat row of a Result: the same columns as the results store's table."""
    from ..store import flat_record, result_record_dict

    return flat_record(result_record_dict(result))


def _print_summary(results, out: Path, written, store) -> None:
    print()
    for r in results:
        row = flat_row(r)
        if not r.success:
            print(f"{r.model:14} FAILED  {r.error}")
            continue
        score = "-" if row["clip_score"] is None else f"{row['clip_score']:.3f}"
        others = "".join(f"  {m} {'-' if s.value is None else format(s.value, '.3f')}"
                         for m, s in r.scores.items() if m != "clip" and hasattr(s, "value"))
        print(f"{r.model:14} {row['median_s']:.3f} s  {row['its_per_s']:.2f} it/s  CLIP {score}"
              + others + ("  [stand-in: images are noise]" if r.standin else "")
              + (f"  flags: {'; '.join(r.flags)}" if r.flags else ""))
    print(f"\nwrote {len(written)} images, contact_sheet.png, results.json, results.csv to {out}"
          + (f"; stored in {store.path}" if store else ""), file=sys.stdout)
