"""Engine overhead: dsdcompare's timed call vs a bare diffusers pipeline call, same settings.

    python benchmarks/overhead.py [--model sd-v1-4] [--source tiny] [--size 256] [--steps 20]
                                  [--rounds 5] [--threads 2] [--device cpu] [--dtype auto]

Both sides run the same loaded pipeline with the same prompt, seed, latents, steps and guidance;
calls are interleaved (bare, engine, bare, engine, ...) so drift on a shared machine hits both.
Reported: median seconds per call of each, and the engine's overhead in percent, measured two
ways: the engine's own timed call (what it reports as latency) and the wall time of a whole
``compare()`` (which also creates the per-call pipeline and checks and converts images).
:func:`measure_overhead` and :func:`overhead_table` are reused by ``benchmarks/gpu_kit.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time


def measure_overhead(*, model: str = "sd-v1-4", source: str = "tiny", size: int = 256,
                     steps: int = 20, rounds: int = 5, device: str = "cpu",
                     dtype: str = "auto") -> dict:
    """Median seconds per call of a bare diffusers call and of the engine, interleaved.

    Returns plain data: the settings, ``bare_s``, ``engine_s`` (the engine's reported latency),
    ``compare_wall_s`` (a whole ``compare()``), and both overheads in percent.
    """
    import torch

    from dsdcompare.engine import Request, compare, initial_latents
    from dsdcompare.loading import PipelineCache, resolve_device
    from dsdcompare.registry import get_model
    from dsdcompare.timing import synchronize

    device = resolve_device(device)
    spec = get_model(model)
    request = Request("a red circle on a blue background", negative_prompt="blurry", seed=1,
                      steps=steps, size=size, repeats=1, warmup=0)
    cache = PipelineCache()

    def engine() -> tuple[float, float]:
        start = time.perf_counter()
        [r] = compare(request, [spec], source=source, device=device, dtype=dtype, cache=cache)
        wall = time.perf_counter() - start
        if not r.success:
            raise RuntimeError(f"engine call failed: {r.error}")
        return r.timing.median_s, wall

    engine()  # loads the pipeline into the cache (and warms the engine path)
    [key] = cache.keys()  # the bare path runs the very pipeline the engine cached
    pipe = cache.get(key, lambda: None).pipe
    latents = initial_latents(request, size, latent_channels=pipe.unet.config.in_channels,
                              vae_scale_factor=pipe.vae_scale_factor)
    latents = latents.to(device=device, dtype=pipe.unet.dtype)

    def bare() -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt=request.prompt, negative_prompt=request.negative_prompt,
                 num_inference_steps=steps, guidance_scale=request.guidance,
                 height=size, width=size, latents=latents.clone(),
                 generator=torch.Generator("cpu").manual_seed(request.seed), output_type="np")
        synchronize(device)
        return time.perf_counter() - start

    bare()  # warm the bare path
    b, e, w = [], [], []
    for _ in range(rounds):
        b.append(bare())
        timed, wall = engine()
        e.append(timed)
        w.append(wall)
    mb, me, mw = (statistics.median(x) for x in (b, e, w))
    cache.clear()
    return {"model": spec.key, "source": source, "size": size, "steps": steps,
            "rounds": rounds, "device": device, "dtype": str(pipe.unet.dtype),
            "threads": torch.get_num_threads(), "bare_s": mb, "engine_s": me,
            "compare_wall_s": mw, "engine_overhead_pct": 100 * (me / mb - 1),
            "compare_overhead_pct": 100 * (mw / mb - 1)}


def overhead_table(result: dict) -> str:
    """The printed result of :func:`measure_overhead`: a caption and a markdown table."""
    r = result
    return "\n".join([
        f"model {r['model']} ({r['source']}), {r['size']}px, {r['steps']} steps, {r['device']} "
        f"{r['dtype'].replace('torch.', '')}, {r['threads']} threads, {r['rounds']} interleaved "
        f"rounds",
        "| path | median s/call | overhead vs bare |", "|---|---|---|",
        f"| bare diffusers call | {r['bare_s']:.4f} | — |",
        f"| engine timed call (reported latency) | {r['engine_s']:.4f} | "
        f"{r['engine_overhead_pct']:+.2f}% |",
        f"| engine compare() wall | {r['compare_wall_s']:.4f} | "
        f"{r['compare_overhead_pct']:+.2f}% |"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sd-v1-4")
    p.add_argument("--source", default="tiny")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(overhead_table(measure_overhead(model=args.model, source=args.source, size=args.size,
                                          steps=args.steps, rounds=args.rounds,
                                          device=args.device, dtype=args.dtype)))


if __name__ == "__main__":
    main()
