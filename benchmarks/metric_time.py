"""Scoring cost per image of each quality metric, next to the cost of generating that image (CPU).

Generation: the tiny random stand-ins (``--source tiny``) through ``dsdcompare.engine.compare``
(warm-up excluded, median of repeats). Metrics: CLIP (the offline stand-in ``tiny``), HPS v2.1,
PickScore, ImageReward, LPIPS (AlexNet) and the FID/KID Inception features, each through
dsdcompare's own scoring code. No weights can be downloaded here, so every scorer is built at its
real architecture size (ViT-H-14 for HPS and PickScore, BLIP ViT-L + BERT-base for ImageReward,
torchvision AlexNet, torch-fidelity's Inception) with random weights: scores are meaningless,
times are those of the real models. ``--small`` builds the tiny test architectures instead.

    python benchmarks/metric_time.py                  # real-size scorers, 2 threads
    python benchmarks/metric_time.py --small --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def median_per_image(fn, n_images: int, repeats: int) -> float:
    """Median seconds per image of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n_images


def _hps(small: bool):
    import open_clip

    from dsdcompare.scorers.hps import HpsScorer

    arch = "ViT-H-14"
    if small:
        arch = "bench-hps-tiny"
        cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
        path = Path(tempfile.mkdtemp()) / f"{arch}.json"
        path.write_text(json.dumps(cfg))
        open_clip.add_model_config(path)
    model = open_clip.create_model(arch, pretrained=None)
    return HpsScorer(model, open_clip.get_tokenizer(arch), checkpoint=f"random {arch}", standin=True, device="cpu")


def _pickscore(small: bool):
    from transformers import AutoProcessor, CLIPConfig, CLIPModel

    from dsdcompare.metrics import standin_scorer_dir
    from dsdcompare.scorers.pickscore import PickScoreScorer

    if small:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        projection = 32
    else:  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K, which PickScore_v1 fine-tunes
        vision = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                      image_size=224, patch_size=14, hidden_act="gelu")
        text = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, hidden_act="gelu")
        projection = 1024
    processor = AutoProcessor.from_pretrained(standin_scorer_dir(), backend="pil",
                                              size={"shortest_edge": vision["image_size"]},
                                              crop_size={"height": vision["image_size"], "width": vision["image_size"]})
    tokenizer = processor.tokenizer
    config = CLIPConfig(text_config=dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=77,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id, **text),
                        vision_config=vision, projection_dim=projection)
    return PickScoreScorer(CLIPModel(config), processor, checkpoint="random CLIP", standin=True, device="cpu")


def _imagereward(small: bool):
    from transformers import BertTokenizer

    from dsdcompare.scorers.imagereward import IMAGEREWARD_VIT, BlipVit, ImageRewardModel, ImageRewardScorer

    folder = Path(tempfile.mkdtemp())
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"a red circle above blue square".split(), *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(30522 - len(words))]) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    vit = BlipVit(image_size=32, patch_size=8, width=32, layers=2, heads=2) if small else IMAGEREWARD_VIT
    width = 32 if small else 768
    med = {"vocab_size": len(tokenizer), "hidden_size": width, "intermediate_size": width * 4,
           "num_hidden_layers": 2 if small else 12, "num_attention_heads": 2 if small else 12,
           "max_position_embeddings": 512, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "add_cross_attention": True}
    return ImageRewardScorer(ImageRewardModel(vit, med), tokenizer, checkpoint="random BLIP", standin=True, device="cpu")


def _random_hub(folder: Path) -> None:
    """Random AlexNet and Inception weights under their release names in a temporary torch hub."""
    import torch
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from dsdcompare.scorers.weights import SCORER_WEIGHTS

    checkpoints = folder / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoints / os.path.basename(SCORER_WEIGHTS["lpips"][0].url))

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    torch.save({}, folder / "empty.pth")
    net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth"))
    torch.save(net.state_dict(), checkpoints / os.path.basename(SCORER_WEIGHTS["fid"][0].url))
    torch.hub.set_dir(str(folder))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sd-v1-4,bk-sdm-small", help="registry keys run with --source tiny")
    parser.add_argument("--size", type=int, default=64, help="image side of the tiny stand-ins (default 64)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    parser.add_argument("--images", type=int, default=2, help="images per call (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--small", action="store_true", help="tiny test architectures instead of real-size ones")
    args = parser.parse_args(argv)

    import torch

    from dsdcompare.engine import Request, compare
    from dsdcompare.metrics import SCORER_STANDIN, load_scorer
    from dsdcompare.registry import get_model
    from dsdcompare.scorers import load_inception, load_lpips

    torch.set_num_threads(args.threads)
    prompt = "a red circle above a blue square"
    request = Request(prompt=prompt, seed=0, steps=args.steps, size=args.size, images_per_prompt=args.images,
                      repeats=args.repeats, warmup=1)
    results = [r for r in compare(request, [get_model(k) for k in args.models.split(",")], source="tiny",
                                  device="cpu", dtype="fp32") if r.success]
    gen = {r.model: r.timing.median_s / r.timing.images_per_call for r in results}
    student, teacher = results[-1].images, results[0].images
    _random_hub(Path(tempfile.mkdtemp()))

    rows = []  # (metric, what it runs, s/img)
    builders = [("clip", "tiny stand-in CLIP", lambda: load_scorer(SCORER_STANDIN)),
                ("hps", "ViT-H-14 (HPS v2.1 layout)", lambda: _hps(args.small)),
                ("pickscore", "CLIP ViT-H-14 (transformers)", lambda: _pickscore(args.small)),
                ("imagereward", "BLIP ViT-L/16 + BERT-base", lambda: _imagereward(args.small))]
    for metric, what, build in builders:
        scorer = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append((metric, f"tiny test model ({what} code path)" if args.small else what, median_per_image(lambda s=scorer: s.score(student, prompt), len(student), args.repeats)))
        del scorer
        gc.collect()
    lpips = load_lpips()
    rows.append(("lpips", "AlexNet LPIPS, per student/teacher pair",
                 median_per_image(lambda: lpips.score(student, teacher), len(student), args.repeats)))
    inception = load_inception()
    rows.append(("fid/kid", "Inception features per image (set math extra)",
                 median_per_image(lambda: inception.features(student), len(student), args.repeats)))

    print(f"\nCPU, fp32, torch threads {args.threads}; generation: tiny stand-ins at {args.size} px, {args.steps} steps; "
          f"scorers {'tiny' if args.small else 'real-size, random weights'}; median of {args.repeats} after 1 warm-up")
    names = list(gen)
    header = "| metric | model scored with | s/image | " + " | ".join(f"x gen {n} ({gen[n]:.3f} s)" for n in names) + " |"
    print(header)
    print("|" + "---|" * (3 + len(names)))
    for metric, what, seconds in rows:
        print(f"| {metric} | {what} | {seconds:.4f} | " + " | ".join(f"{seconds / gen[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
