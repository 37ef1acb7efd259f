"""The toy zoo: committed miniatures that are good at what they were trained for.

Fast tests load the committed weights (no training) and check quality *relations* with margins
well inside what ``python -m dsdcompare.toyzoo eval`` measured; colours and shapes are judged
by the pixel checker, never by the toy CLIP. One slow test retrains a few steps per part.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from dsdcompare import toyzoo
from dsdcompare.toyzoo import checker, data, evaluate

CHANCE = {"shape": 1 / 3, "fg": 1 / 6, "bg": 1 / 6, "both_colours": 1 / 30}


@pytest.fixture(scope="module")
def pipes():
    return {name: evaluate.load_pipeline(toyzoo.model_dir(f"toy-{name}")) for name in ("teacher", "student")}


@pytest.fixture(scope="module")
def generations(pipes):
    """30 prompts (a third of the captions), same seeds for teacher and student, recommended settings."""
    attrs, seeds = evaluate.eval_prompts(30)
    prompts = [a.caption for a in attrs]
    images = {name: evaluate.generate(pipe, prompts, seeds) for name, pipe in pipes.items()}
    return attrs, images


@pytest.fixture(scope="module")
def real_images():
    images, ids = data.make_dataset(180, seed=4242)
    return images, [data.ALL_ATTRIBUTES[i] for i in ids]


# --- data and checker ----------------------------------------------------------------------------


def test_captions_cover_every_combination_once():
    assert len(data.CAPTIONS) == len(set(data.CAPTIONS)) == 3 * 6 * 5
    assert data.CAPTIONS[0] == "a red circle on a green background"
    a = data.Attributes(shape=0, fg=0, bg=2)
    alts = data.one_attribute_changed(a)
    assert len(alts) == 2 + 4 + 4  # other shapes; other fg colours; other bg colours (never fg == bg)
    assert all(x.fg != x.bg for x in alts)


def test_checker_reads_the_synthetic_data_perfectly(real_images):
    images, attrs = real_images
    report = evaluate.checker_report(images, attrs)
    assert report["all"] == 1.0, report


def test_checker_rejects_an_image_that_is_not_rgb():
    with pytest.raises(ValueError, match=r"H x W x 3 image but got shape \(32, 32\)"):
        checker.read_image(np.zeros((32, 32), np.uint8))


def test_checker_finds_no_shape_in_a_flat_image():
    reading = checker.read_image(np.full((32, 32, 3), data.PALETTE[2], np.uint8))
    assert reading.bg == data.COLOURS.index("blue") and reading.shape is None and reading.fg is None


# --- the committed weights -----------------------------------------------------------------------


def test_manifest_matches_the_committed_files():
    assert toyzoo.verify_manifest() == []


def test_manifest_notices_a_changed_file(tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(toyzoo.WEIGHTS_DIR, copy)
    (copy / "toy-teacher" / "README.md").write_text("changed")
    (copy / "stray.txt").write_text("x")
    assert toyzoo.verify_manifest(copy) == ["checksum differs: toy-teacher/README.md", "not in manifest: stray.txt"]


def test_unknown_toy_model_names_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of toy-teacher, toy-student, toy-clip"):
        toyzoo.model_dir("toy-giant")


def test_toy_pipelines_are_plain_stable_diffusion_pipelines(pipes):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    teacher, student = pipes["teacher"], pipes["student"]
    for pipe in (teacher, student):
        assert isinstance(pipe, StableDiffusionPipeline)
        assert isinstance(pipe.scheduler, PNDMScheduler)
        assert pipe.unet.dtype == torch.float32  # fp16 files, loaded as fp32 by default
        assert pipe.vae_scale_factor * pipe.unet.config.sample_size == toyzoo.NATIVE_SIZE
    # BK-SDM-small's removals: one block per down stage (two per up stage), no mid block.
    assert teacher.unet.config.layers_per_block == 2 and teacher.unet.mid_block is not None
    assert student.unet.config.layers_per_block == 1 and student.unet.mid_block is None
    n = {k: sum(p.numel() for p in pipes[k].unet.parameters()) for k in pipes}
    assert n["student"] < 0.6 * n["teacher"]
    # Both share the VAE and the text encoder, which is the toy CLIP's text tower.
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(toyzoo.model_dir("toy-clip"))
    emb = clip.text_model.embeddings.token_embedding.weight
    assert torch.equal(teacher.text_encoder.get_input_embeddings().weight, emb)
    assert torch.equal(student.text_encoder.get_input_embeddings().weight, emb)


def test_student_starts_from_the_teachers_noise(pipes):
    shape = (1, 4, 16, 16)
    latents = [
        pipes[k].prepare_latents(1, 4, 32, 32, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(7))
        for k in ("teacher", "student")
    ]
    assert latents[0].shape == shape and torch.equal(latents[0], latents[1])


# --- quality relations ---------------------------------------------------------------------------


def test_teacher_is_well_above_chance_on_every_attribute(generations):
    attrs, images = generations
    report = evaluate.checker_report(images["teacher"], attrs)
    assert report["shape"] >= 0.75, report
    assert report["fg"] >= 0.6 and report["bg"] >= 0.6, report
    assert report["both_colours"] >= 0.5, report


def test_student_stays_close_to_its_teacher(generations):
    attrs, images = generations
    t = evaluate.checker_report(images["teacher"], attrs)
    s = evaluate.checker_report(images["student"], attrs)
    for key in ("shape", "both_colours"):
        assert s[key] >= t[key] - 0.2, (key, s, t)
        assert s[key] >= CHANCE[key] + 0.3, (key, s)


def test_student_is_faster_than_its_teacher(pipes):
    from torch.utils.flop_counter import FlopCounterMode

    def unet_flops(unet):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(torch.randn(2, 4, 16, 16), torch.tensor([500, 500]), torch.randn(2, 77, 64))
        return counter.get_total_flops()

    assert unet_flops(pipes["teacher"].unet) > 1.5 * unet_flops(pipes["student"].unet)
    # Wall time: the best of several interleaved calls, which a busy shared machine disturbs least.
    best = {k: float("inf") for k in pipes}
    prompt = [data.CAPTIONS[0]]
    for _ in range(4):
        for k, pipe in pipes.items():
            start = time.perf_counter()
            evaluate.generate(pipe, prompt, [0], steps=10)
            best[k] = min(best[k], time.perf_counter() - start)
    assert best["student"] < best["teacher"], best


def test_toy_clip_prefers_the_true_caption_on_real_images(real_images):
    images, attrs = real_images
    report = evaluate.scorer_report(evaluate.ToyScorer.load(), images, attrs)
    assert report["pair_win"] >= 0.85, report
    assert min(report["pair_win_shape"], report["pair_win_fg"], report["pair_win_bg"]) >= 0.75, report


def test_toy_clip_loads_as_a_plain_clipmodel(real_images):
    from transformers import CLIPModel, CLIPProcessor

    directory = toyzoo.model_dir("toy-clip")
    model, processor = CLIPModel.from_pretrained(directory), CLIPProcessor.from_pretrained(directory)
    images, attrs = real_images
    a = attrs[0]
    captions = [a.caption] + [alt.caption for alt in data.one_attribute_changed(a)]
    inputs = processor(text=captions, images=[images[0]], return_tensors="pt", padding="max_length")
    with torch.no_grad():
        logits = model(**inputs).logits_per_image[0]
    assert int(logits.argmax()) == 0


# --- command line and training -------------------------------------------------------------------


def test_cli_verify_passes_and_bad_arguments_are_named(capsys):
    from dsdcompare.cli.toyzoo import main

    assert main(["verify"]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    with pytest.raises(SystemExit, match="--n must be at least 1 but is 0"):
        main(["eval", "--n", "0"])
    with pytest.raises(SystemExit, match="--threads must be at least 1 but is 0"):
        main(["train", "--threads", "0"])


def test_training_record_is_committed():
    record = json.loads((toyzoo.WEIGHTS_DIR / "TRAINING.json").read_text())
    assert set(record["seconds"]) >= {"data", "vae", "clip", "teacher", "student"}
    assert record["config"]["threads"] == 2


@pytest.mark.slow
def test_training_script_runs_end_to_end(tmp_path):
    from dsdcompare.cli.toyzoo import main

    out = tmp_path / "zoo"
    assert main(["train", "--quick", "--no-progress", "--out", str(out)]) == 0
    assert toyzoo.verify_manifest(out) == []
    record = json.loads((out / "TRAINING.json").read_text())
    assert record["config"]["teacher_steps"] == 2
    for name in ("teacher", "student"):
        pipe = evaluate.load_pipeline(out / f"toy-{name}")
        image = evaluate.generate(pipe, [data.CAPTIONS[0]], [0], steps=2)
        assert image.shape == (1, 32, 32, 3) and image.dtype == np.uint8
    assert evaluate.ToyScorer.load(out / "toy-clip").text_embeds(["a red circle"]).shape == (1, 64)
