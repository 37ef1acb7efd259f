"""Engine overhead: dsdcompare's timed call vs a bare diffusers pipeline call, same settings.

    python benchmarks/overhead.py [--model sd-v1-4] [--source tiny] [--size 256] [--steps 20]
                                  [--rounds 5] [--threads 2]

Both sides run the same loaded pipeline with the same prompt, seed, latents, steps and guidance;
calls are interleaved (bare, engine, bare, engine, ...) so drift on a shared machine hits both.
Reported: median seconds per call of each, and the engine's overhead in percent, measured two
ways: the engine's own timed call (what it reports as latency) and the wall time of a whole
``compare()`` (which also creates the per-call pipeline and checks and converts images).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sd-v1-4")
    p.add_argument("--source", default="tiny")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from dsdcompare.engine import Request, compare, initial_latents
    from dsdcompare.loading import PipelineCache, load_pipeline
    from dsdcompare.registry import get_model

    torch.set_num_threads(args.threads)
    spec = get_model(args.model)
    request = Request("a red circle on a blue background", negative_prompt="blurry", seed=1,
                      steps=args.steps, size=args.size, repeats=1, warmup=0)
    cache = PipelineCache()
    key = (spec.key, args.source, "cpu", "auto", None)
    loaded = cache.get(key, lambda: load_pipeline(spec, args.source, device="cpu"))
    pipe = loaded.pipe
    latents = initial_latents(request, args.size, latent_channels=pipe.unet.config.in_channels,
                              vae_scale_factor=pipe.vae_scale_factor)

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt=request.prompt, negative_prompt=request.negative_prompt,
                 num_inference_steps=args.steps, guidance_scale=request.guidance,
                 height=args.size, width=args.size, latents=latents.clone(),
                 generator=torch.Generator("cpu").manual_seed(request.seed), output_type="np")
        return time.perf_counter() - start

    def engine() -> tuple[float, float]:
        start = time.perf_counter()
        [r] = compare(request, [spec], source=args.source, device="cpu", cache=cache)
        wall = time.perf_counter() - start
        assert r.success, r.error
        return r.timing.median_s, wall

    bare(), engine()  # warm both paths
    b, e, w = [], [], []
    for _ in range(args.rounds):
        b.append(bare())
        timed, wall = engine()
        e.append(timed)
        w.append(wall)
    mb, me, mw = (statistics.median(x) for x in (b, e, w))
    print(f"model {spec.key} ({args.source}), {args.size}px, {args.steps} steps, "
          f"{args.threads} threads, {args.rounds} interleaved rounds")
    print("| path | median s/call | overhead vs bare |\n|---|---|---|")
    print(f"| bare diffusers call | {mb:.4f} | — |")
    print(f"| engine timed call (reported latency) | {me:.4f} | {100 * (me / mb - 1):+.2f}% |")
    print(f"| engine compare() wall | {mw:.4f} | {100 * (mw / mb - 1):+.2f}% |")


if __name__ == "__main__":
    main()
