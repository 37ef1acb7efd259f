"""``toyzoo eval``: how good the trained miniatures are, judged independently.

Generated images are graded by :mod:`.checker` (pixel statistics, no learned model), never by the
toy CLIP, so a blind spot shared by the generator and the scorer cannot hide. The scorer is
graded separately: does the true caption beat every caption with one attribute changed?
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checker, data, models

#: Where the committed weights live.
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: Evaluation uses its own seeds, never the training ones.
EVAL_SEED = 10_000


# --- scorer --------------------------------------------------------------------------------------


class ToyScorer:
    """The toy CLIP with its processor: cosine similarity of images and captions."""

    def __init__(self, model, processor):
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def load(cls, directory: str | Path = WEIGHTS_DIR / "toy-clip") -> ToyScorer:
        from transformers import CLIPModel, CLIPProcessor

        return cls(CLIPModel.from_pretrained(directory), CLIPProcessor.from_pretrained(directory))

    @torch.no_grad()
    def image_embeds(self, images: np.ndarray) -> torch.Tensor:
        """Unit-norm embeddings of uint8 images (N, H, W, 3)."""
        from .train import projected

        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        feats = projected(self.model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(feats, dim=-1)

    @torch.no_grad()
    def text_embeds(self, captions: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings of captions."""
        from .train import projected

        ids = self.processor.tokenizer(list(captions), padding="max_length", max_length=77,
                                       truncation=True, return_tensors="pt").input_ids
        feats = projected(self.model.get_text_features(input_ids=ids))
        return torch.nn.functional.normalize(feats, dim=-1)


def scorer_report(scorer: ToyScorer, images: np.ndarray, attrs: Sequence[data.Attributes]) -> dict[str, float]:
    """How often the true caption beats captions with one attribute changed (pairs and per attribute).

    ``pair_win``: over every (image, one-attribute-changed caption) pair, the fraction where the
    true caption scores higher. ``top1``: the true caption is the best of all 90.
    """
    img = scorer.image_embeds(images)
    txt = scorer.text_embeds(data.CAPTIONS)
    sims = img @ txt.T  # (N, 90)
    wins = {"shape": [], "fg": [], "bg": []}
    for row, a in zip(sims, attrs):
        true = row[data.CAPTION_INDEX[a.caption]]
        for alt in data.one_attribute_changed(a):
            kind = "shape" if alt.shape != a.shape else ("fg" if alt.fg != a.fg else "bg")
            wins[kind].append(float(true > row[data.CAPTION_INDEX[alt.caption]]))
    truth = torch.tensor([data.CAPTION_INDEX[a.caption] for a in attrs])
    every = [w for ws in wins.values() for w in ws]
    return {
        "pair_win": float(np.mean(every)),
        **{f"pair_win_{k}": float(np.mean(v)) for k, v in wins.items()},
        "top1": float((sims.argmax(1) == truth).float().mean()),
    }


# --- generations ---------------------------------------------------------------------------------


def checker_report(images: np.ndarray, attrs: Sequence[data.Attributes]) -> dict[str, float]:
    """Accuracy of shape, foreground, background and both colours, as read by the pixel checker."""
    readings = checker.read_images(images)
    shape = [r.shape == a.shape for r, a in zip(readings, attrs)]
    fg = [r.fg == a.fg for r, a in zip(readings, attrs)]
    bg = [r.bg == a.bg for r, a in zip(readings, attrs)]
    return {
        "shape": float(np.mean(shape)),
        "fg": float(np.mean(fg)),
        "bg": float(np.mean(bg)),
        "both_colours": float(np.mean([f and b for f, b in zip(fg, bg)])),
        "all": float(np.mean([s and f and b for s, f, b in zip(shape, fg, bg)])),
    }


def eval_prompts(n: int) -> tuple[list[data.Attributes], list[int]]:
    """``n`` (attributes, seed) pairs: every caption once per 90 (fixed shuffled order), own seeds."""
    order = np.random.default_rng(EVAL_SEED).permutation(len(data.ALL_ATTRIBUTES))
    attrs = [data.ALL_ATTRIBUTES[order[i % len(order)]] for i in range(n)]
    return attrs, [EVAL_SEED + i for i in range(n)]


@torch.no_grad()
def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], *, steps: int = models.DEFAULT_STEPS,
             guidance: float = models.DEFAULT_GUIDANCE, batch: int = 32) -> np.ndarray:
    """uint8 images (N, 32, 32, 3); one fresh CPU generator per image, so a teacher and its student
    (same latent shape) start from the same noise for the same seed."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(list(prompts[i : i + batch]), num_inference_steps=steps, guidance_scale=guidance,
                   generator=gens, height=data.IMAGE_SIZE, width=data.IMAGE_SIZE, output_type="np")
        out.append(np.clip(np.rint(res.images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(out)


@torch.no_grad()
def seconds_per_image(pipes: dict[str, Any], *, steps: int = models.DEFAULT_STEPS,
                      guidance: float = models.DEFAULT_GUIDANCE, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Steady-state seconds per single-image call (median and spread); one warm-up call excluded.

    Calls alternate between the pipelines, so a slow patch on a shared machine hits all of them.
    """
    prompt = data.CAPTIONS[0]
    times: dict[str, list[float]] = {k: [] for k in pipes}
    for pipe in pipes.values():  # warm-up
        generate(pipe, [prompt], [0], steps=steps, guidance=guidance)
    for r in range(repeats):
        for k, pipe in pipes.items():
            start = time.perf_counter()
            generate(pipe, [prompt], [r], steps=steps, guidance=guidance)
            times[k].append(time.perf_counter() - start)
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in times.items()}


def load_pipeline(directory: str | Path):
    """A toy ``StableDiffusionPipeline`` from a local folder (offline, safetensors only)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(directory, use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(weights: str | Path = WEIGHTS_DIR, *, n: int = 96, steps: int = models.DEFAULT_STEPS,
             guidance: float = models.DEFAULT_GUIDANCE, threads: int = 2, n_real: int = 450,
             repeats: int = 7) -> dict[str, Any]:
    """Generate ``n`` images per model, grade them, time them, grade the scorer; return the numbers."""
    torch.set_num_threads(threads)
    weights = Path(weights)
    # 1. Load.
    pipes = {name: load_pipeline(weights / f"toy-{name}") for name in ("teacher", "student")}
    scorer = ToyScorer.load(weights / "toy-clip")
    # 2. Generate from the same seeds (same initial latents for teacher and student).
    attrs, seeds = eval_prompts(n)
    prompts = [a.caption for a in attrs]
    images = {name: generate(pipe, prompts, seeds, steps=steps, guidance=guidance) for name, pipe in pipes.items()}
    # 3. Grade generations with the pixel checker; time single-image calls.
    result: dict[str, Any] = {"n": n, "steps": steps, "guidance": guidance, "threads": threads,
                              "scheduler": type(pipes["teacher"].scheduler).__name__}
    speed = seconds_per_image(pipes, steps=steps, guidance=guidance, repeats=repeats)
    for name in pipes:
        result[name] = {**checker_report(images[name], attrs), "s_per_image": speed[name]["median"],
                        "s_per_image_range": [speed[name]["min"], speed[name]["max"]]}
    t, s = (checker.read_images(images[k]) for k in ("teacher", "student"))
    result["student_agrees_with_teacher"] = float(np.mean([a.describe() == b.describe() for a, b in zip(t, s)]))
    result["speedup"] = result["teacher"]["s_per_image"] / result["student"]["s_per_image"]
    # 4. Grade the scorer on real images (fresh seed) and on the teacher's images.
    real, real_ids = data.make_dataset(n_real, EVAL_SEED + 1)
    real_attrs = [data.ALL_ATTRIBUTES[i] for i in real_ids]
    result["checker_on_real"] = checker_report(real, real_attrs)
    result["scorer_real"] = scorer_report(scorer, real, real_attrs)
    result["scorer_teacher"] = scorer_report(scorer, images["teacher"], attrs)
    result["scorer_student"] = scorer_report(scorer, images["student"], attrs)
    return result


def format_table(r: dict[str, Any]) -> str:
    """The ``toyzoo eval`` table (markdown) from :func:`evaluate`'s result."""
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    chance = f"chance: shape {pct(1 / 3)}, colour {pct(1 / 6)}, both colours {pct(1 / 30)}"
    lines = [
        f"Generations: {r['n']} per model, {r['steps']} steps, guidance {r['guidance']}, {r['scheduler']}, "
        f"{r['threads']} threads; graded by the pixel checker ({chance}).",
        "",
        "| model | shape | fg colour | bg colour | both colours | all three | s/image |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("teacher", "student"):
        m = r[name]
        lines.append(f"| toy-{name} | {pct(m['shape'])} | {pct(m['fg'])} | {pct(m['bg'])} | "
                     f"{pct(m['both_colours'])} | {pct(m['all'])} | {m['s_per_image']:.3f} |")
    lines += [
        "",
        f"Student speed-up: {r['speedup']:.2f}x; student image reads the same as the teacher's "
        f"(same seed, same initial latents): {pct(r['student_agrees_with_teacher'])}.",
        f"Pixel checker on real images: shape {pct(r['checker_on_real']['shape'])}, "
        f"both colours {pct(r['checker_on_real']['both_colours'])}.",
        "",
        "| toy-clip: true caption beats one-attribute-changed | all | shape | fg | bg | top-1 of 90 |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("scorer_real", "real images"), ("scorer_teacher", "teacher images"),
                       ("scorer_student", "student images")):
        s = r[key]
        lines.append(f"| {label} | {pct(s['pair_win'])} | {pct(s['pair_win_shape'])} | {pct(s['pair_win_fg'])} | "
                     f"{pct(s['pair_win_bg'])} | {pct(s['top1'])} |")
    return "\n".join(lines)
