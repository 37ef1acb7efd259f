"""How long CLIP scoring takes per image, next to how long generating that image took.

Generation is timed by the project's own protocol (``dsdcompare.engine.compare``: warm-up
excluded, steady-state median over repeats); scoring is timed the same way (one warm-up call,
then the median of ``--repeats`` calls of ``ClipScorer.score`` on the images just generated).
Models: the tiny random stand-ins (``--source tiny``, 64 px) and, when their weights exist, the
trained toy teacher/student (32 px). Scorers: the offline stand-in ``tiny`` and, when it exists,
the trained toy CLIP (``dsdcompare/toyzoo/weights/toy-clip``); add others with ``--scorers``
(e.g. ``openai/clip-vit-large-patch14`` where it is cached).

    python benchmarks/score_time.py                      # defaults below
    python benchmarks/score_time.py --threads 1 --repeats 5 --images 2

Images from random stand-ins are noise and their scores are meaningless: only the times matter.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def time_scoring(scorer, images, prompt: str, repeats: int) -> float:
    """Median seconds per image of ``scorer.score(images, prompt)`` after one warm-up call."""
    scorer.score(images, prompt)  # warm-up: first-call allocations, lazy init
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(images, prompt)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sd-v1-4,bk-sdm-small",
                        help="registry keys run with --source tiny (default: sd-v1-4,bk-sdm-small)")
    parser.add_argument("--size", type=int, default=64, help="image side for the tiny stand-ins (default 64)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    parser.add_argument("--images", type=int, default=2, help="images per prompt (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--scorers", default="", help="extra scorer checkpoints, comma separated")
    parser.add_argument("--no-toys", action="store_true", help="skip the trained toy pair and toy CLIP")
    args = parser.parse_args(argv)

    import torch

    from dsdcompare.engine import Request, compare
    from dsdcompare.metrics import SCORER_STANDIN, ScorerUnavailable, load_scorer
    from dsdcompare.registry import TOY_CLIP_DIR, TOY_MODELS, get_model
    from dsdcompare.zoo import WeightsUnavailable, locate

    torch.set_num_threads(args.threads)
    prompt = "a red circle above a blue square"

    # 1. Scorers: the offline stand-in, the toy CLIP when it has been trained, any extra ones
    scorers = {SCORER_STANDIN: load_scorer(SCORER_STANDIN)}
    if not args.no_toys and (TOY_CLIP_DIR / "config.json").is_file():
        scorers["toy-clip"] = load_scorer(str(TOY_CLIP_DIR), standin=True)
    for name in filter(None, args.scorers.split(",")):
        try:
            scorers[name] = load_scorer(name)
        except ScorerUnavailable as err:
            print(f"skipping scorer {name}: {str(err).splitlines()[0]}")

    # 2. Generation with the timing protocol: tiny stand-ins, then the toy pair if trained
    runs = [([get_model(k) for k in args.models.split(",")], "tiny", args.size)]
    if not args.no_toys:
        toys = []
        for key in TOY_MODELS:
            try:
                locate(get_model(key), get_model(key).default_source)
                toys.append(get_model(key))
            except (WeightsUnavailable, OSError):
                print(f"skipping {key}: its weights are not trained yet")
        if toys:
            runs.append((toys, None, None))
    results = []
    for specs, source, size in runs:
        request = Request(prompt=prompt, seed=0, steps=args.steps, size=size,
                          images_per_prompt=args.images, repeats=args.repeats, warmup=1)
        results += compare(request, specs, source=source, device="cpu", dtype="fp32")

    # 3. Score each model's images with each scorer; print one row per (model, scorer)
    print(f"\nCPU, fp32, torch threads {args.threads}, {args.steps} steps, {args.images} images per call, "
          f"median of {args.repeats} after 1 warm-up")
    header = f"{'model':14} {'source':6} {'px':>4} {'generate s/img':>15}  {'scorer':10} {'score s/img':>12} {'score/gen':>10}"
    print(header)
    print("-" * len(header))
    for result in results:
        if not result.success:
            print(f"{result.model:14} failed: {result.error}")
            continue
        gen = result.timing.median_s / result.timing.images_per_call
        for name, scorer in scorers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per_image = time_scoring(scorer, result.images, prompt, args.repeats)
            print(f"{result.model:14} {result.source:6} {result.width:>4} {gen:>15.4f}  {name:10} "
                  f"{per_image:>12.4f} {per_image / gen:>10.3f}")


if __name__ == "__main__":
    main()
