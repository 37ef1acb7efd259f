"""Stores holding a review, built without loading any model (real Result records with tiny PIL
images), for tests/test_review*.py; and a voter run as a real child process by the concurrency
test::

    python tests/review_fixtures.py DB REVIEW --reviewer NAME [--offset K] [--wait-for FILE]

The voter votes on every pair of REVIEW (choice ``CHOICES[(idx + K) % 4]``) and prints
``voted N``. Torch is never imported, so a child starts in about a second.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsdcompare.engine import Request, Result  # noqa: E402
from dsdcompare.review.model import TOY_PROMPTS, Selection  # noqa: E402
from dsdcompare.timing import StageTimes, Timing  # noqa: E402

TEACHER, STUDENT = "toy-teacher", "toy-student"
#: Model keys and display names that must never show before unblinding.
MODEL_LABELS = ("toy-teacher", "toy-student", "Toy teacher (synthetic shapes)",
                "Toy student (synthetic shapes)")
CHOICES = ("a", "b", "tie", "both_bad")
STEPS, GUIDANCE = 25, 3.0


def image(model: str, prompt: str, seed: int, size: int = 32):
    """A small deterministic image, different per model, prompt and seed."""
    from PIL import Image

    digest = hashlib.sha256(f"{model}/{prompt}/{seed}".encode()).digest()
    pixels = bytes(digest[(i * 7) % 32] for i in range(size * size * 3))
    return Image.frombytes("RGB", (size, size), pixels)


def fake_result(model: str, request: Request, *, median_s: float, clip: float | None,
                teacher: str | None = None, flagged: bool = False, latents: str = "feedface",
                fidelity: tuple[float, float] | None = None) -> Result:
    """A successful Result as the engine records it (timing, score record, optional fidelity)."""
    stages = StageTimes(text=0.01, denoise=median_s - 0.03, decode=0.02, total=median_s)
    timing = Timing(load_s=0.5, load_cached=False, first_call_s=median_s * 2, steady_s=[median_s],
                    median_s=median_s, min_s=median_s, max_s=median_s, stages=stages,
                    steps=request.steps, its_per_s=request.steps / stages.denoise,
                    images_per_call=1, peak_memory_bytes=1 << 20,
                    memory_kind="process RSS (sampled)", warmup=1, repeats=1)
    score = None if clip is None else {
        "value": clip, "per_image": [clip], "excluded": [None], "backend": "torchmetrics",
        "checkpoint": "test-clip", "scale": "100 x cosine, clamped at 0", "standin": True}
    result = Result(
        model=model, model_name=model, success=True, error=None, source="local", standin=False,
        toy=True, repo=f"/weights/{model}", revision=None, teacher=teacher,
        prompt=request.prompt, negative_prompt="", seed=request.seed, steps=request.steps,
        guidance=request.guidance, width=32, height=32, images_per_prompt=1,
        scheduler="PNDMScheduler", dtype="fp32", device="cpu", device_name="Test CPU",
        variant=None, latents_sha=latents, timing=timing, score=score,
        flags=["image 0: all black"] if flagged else [],
        env={"dsdcompare": "0.test", "torch": "2.test", "diffusers": "0.42.test",
             "transformers": "5.test", "device_name": "Test CPU"})
    if fidelity is not None:
        result.fidelity = {"against": teacher, "psnr": fidelity[0], "ssim": fidelity[1]}
    result.images = [image(model, request.prompt, request.seed)]
    return result


def toy_prompts(limit: int | None = None) -> list[tuple[str, str]]:
    """(prompt, category) of the committed toy prompt file."""
    import csv

    with open(TOY_PROMPTS, newline="", encoding="utf-8") as fh:
        rows = [(r["prompt"], r["category"]) for r in csv.DictReader(fh)]
    return rows[:limit] if limit else rows


def fill_store(store, *, models=(TEACHER, STUDENT), seeds=(0, 1), limit: int | None = None,
               latency=None, clip=None, flagged=()) -> None:
    """Store one run per toy prompt and seed with a result of each model.

    ``latency``: model -> seconds (default teacher 1.0, others 0.5); ``clip(model, i, seed)``
    gives a score (default 30 + i); ``flagged``: (model, prompt index, seed) that get a flag.
    """
    latency = latency or {}
    clip = clip or (lambda model, i, seed: 30.0 + i)
    for i, (prompt, _) in enumerate(toy_prompts(limit)):
        for seed in seeds:
            request = Request(prompt, seed=seed, steps=STEPS, guidance=GUIDANCE)
            run_id = store.start_run(request, source=None)
            for m in models:
                teacher = TEACHER if m != TEACHER else None
                store.add_result(run_id, fake_result(
                    m, request, median_s=latency.get(m, 1.0 if m == TEACHER else 0.5),
                    clip=clip(m, i, seed), teacher=teacher, flagged=(m, i, seed) in flagged,
                    fidelity=(30.0 + i, 0.9) if teacher else None))
            store.finish_run(run_id)


def toy_selection(limit: int | None = None, seeds=(0, 1)) -> Selection:
    """The selection of :func:`fill_store`'s results."""
    return Selection(prompts=str(TOY_PROMPTS), seeds=tuple(seeds), steps=STEPS, guidance=GUIDANCE,
                     limit=limit)


def make_review(store, name: str = "blind-test", owner: str = "olga", *, limit: int | None = None,
                seeds=(0, 1), models=(TEACHER, STUDENT), criteria=None, fill: bool = True, **fill_kw):
    """A store filled with :func:`fill_store` and a review of it; returns the Review."""
    from dsdcompare.review import create_review, plan_review

    if fill:
        fill_store(store, models=models, seeds=seeds, limit=limit, **fill_kw)
    plan = plan_review(store, list(models), toy_selection(limit, seeds))
    return create_review(store, name, owner, plan, criteria=criteria)


def main(argv=None) -> int:
    from dsdcompare.review import load_review, vote
    from dsdcompare.store import Store

    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("review")
    p.add_argument("--reviewer", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--wait-for")
    args = p.parse_args(argv)
    with Store(args.db) as store:
        review = load_review(store, args.review)
        if args.wait_for:
            print("waiting", flush=True)  # imports done: the parent may start every voter at once
            while not Path(args.wait_for).exists():
                time.sleep(0.01)
        for pair in review.pairs:
            vote(store, review, args.reviewer, pair.idx, CHOICES[(pair.idx + args.offset) % 4],
                 comment=f"{args.reviewer} {args.offset}")
    print(f"voted {len(review.pairs)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
