"""A results-store writer run as a real child process by tests/test_store.py (kill -9, two writers).

It stores small fake-but-real Results (real ``Result``/``Timing`` objects, tiny PIL images) one
by one, printing ``result N stored id=ID`` after each commit, so that the parent can SIGKILL it at
a known point. Importable too: :func:`fake_result` and :data:`REQUEST_FIELDS` are shared with the
tests. No model is loaded and torch is never imported (a child starts in well under a second).

    python tests/store_writer.py DB --models m0,m1,m2,m3 [--seed 7] [--delay 0.2] [--resume]
        [--hang-at files|insert --hang-result N] [--wait-for FILE] [--note TEXT]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsdcompare.engine import Request, Result  # noqa: E402
from dsdcompare.timing import StageTimes, Timing  # noqa: E402

SOURCE = "tiny"


def fake_request(seed: int = 7, prompt: str = "a red circle") -> Request:
    return Request(prompt, negative_prompt="blurry", seed=seed, steps=3, guidance=6.0, size=64,
                   images_per_prompt=2, repeats=2, warmup=1)


def fake_image(model: str, seed: int, index: int, size: int = 16):
    """A small deterministic image, different per model, seed and index."""
    from PIL import Image

    digest = hashlib.sha256(f"{model}/{seed}/{index}".encode()).digest()
    pixels = bytes(digest[(i * 3) % 30 + (i % 3)] for i in range(size * size * 3))
    return Image.frombytes("RGB", (size, size), pixels)


def fake_result(model: str, request: Request, *, success: bool = True, score=None,
                median_s: float = 0.5, teacher: str | None = None) -> Result:
    """A Result as the engine makes it, with real Timing and tiny images (no model involved)."""
    stages = StageTimes(text=0.01, denoise=median_s - 0.06, decode=0.04, safety=0.0, other=0.01,
                        total=median_s)
    timing = Timing(load_s=1.25, load_cached=False, first_call_s=median_s * 3,
                    steady_s=[median_s, median_s * 1.1], median_s=median_s * 1.05, min_s=median_s,
                    max_s=median_s * 1.1, stages=stages, steps=request.steps,
                    its_per_s=request.steps / stages.denoise, images_per_call=2,
                    peak_memory_bytes=123_456_789, memory_kind="process RSS (sampled)",
                    warmup=request.warmup, repeats=request.repeats)
    result = Result(
        model=model, model_name=model.upper(), success=success,
        error=None if success else "RuntimeError: boom", source=SOURCE, standin=True, toy=False,
        repo=f"/cache/tiny/{model}", revision=None, teacher=teacher, prompt=request.prompt,
        negative_prompt=request.negative_prompt, seed=request.seed, steps=request.steps,
        guidance=request.guidance, width=request.size, height=request.size,
        images_per_prompt=request.images_per_prompt, scheduler="PNDMScheduler", dtype="fp32",
        device="cpu", device_name="Test CPU", variant=None, latents_sha="abcd1234",
        timing=timing if success else None, score=score if success else None,
        flags=["image 1: all black"] if success and model.endswith("1") else [],
        nsfw=[False, False] if success else None,
        env={"dsdcompare": "0.1.0", "torch": "2.x", "diffusers": "0.42", "transformers": "5.x",
             "python": "3.11", "device_name": "Test CPU"},
        options={"attention_slicing": False},
        error_detail=None if success else "Traceback...\nRuntimeError: boom",
    )
    if success:
        result.images = [fake_image(model, request.seed, i)
                         for i in range(request.images_per_prompt)]
    return result


def main(argv=None) -> int:
    from dsdcompare.store import Store

    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("--models", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--delay", type=float, default=0.0, help="seconds 'generating' each result")
    p.add_argument("--resume", action="store_true", help="skip completed models, reuse the run")
    p.add_argument("--hang-at", choices=["files", "insert"],
                   help="stop (sleep) inside add_result: after the PNGs are written, or after the"
                        " row is inserted but before COMMIT")
    p.add_argument("--hang-result", type=int, default=0, help="which result (1-based) hangs")
    p.add_argument("--wait-for", help="start writing only once this file exists")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    request = fake_request(args.seed)
    models = args.models.split(",")
    counter = {"n": 0}
    if args.hang_at == "files":
        original_write = Store._write_image
        written = {"n": 0}

        def write_then_hang(self, image):
            row = original_write(self, image)
            written["n"] += 1
            if counter["n"] + 1 == args.hang_result and written["n"] == request.images_per_prompt \
                    * args.hang_result:
                print(f"result {args.hang_result} files written", flush=True)
                time.sleep(3600)
            return row

        Store._write_image = write_then_hang
    elif args.hang_at == "insert":
        original_insert = Store._insert_result

        def insert_then_hang(self, conn, run_id, record, stored):
            rid = original_insert(self, conn, run_id, record, stored)
            if counter["n"] + 1 == args.hang_result:
                print(f"result {args.hang_result} inserted, not committed id={rid}", flush=True)
                time.sleep(3600)
            return rid

        Store._insert_result = insert_then_hang

    if args.wait_for:
        print("waiting", flush=True)  # imports done: the parent may start both writers at once
        while not Path(args.wait_for).exists():
            time.sleep(0.01)
    with Store(args.db) as store:
        todo = store.pending(request, models, SOURCE) if args.resume else models
        run_id = store.start_run(request, source=SOURCE, note=args.note, resume=args.resume)
        print(f"run {run_id} todo={','.join(todo)}", flush=True)
        for model in todo:
            time.sleep(args.delay)
            rid = store.add_result(run_id, fake_result(model, request))
            counter["n"] += 1
            print(f"result {counter['n']} stored id={rid} model={model}", flush=True)
        store.finish_run(run_id)
        print(f"run {run_id} finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
