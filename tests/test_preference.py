"""Preference scorers (HPS v2.1, PickScore, ImageReward): equal to upstream's code on identical weights.

Each scorer's architecture is built tiny with random weights, saved the way upstream ships it, and
loaded through dsdcompare's real loader; the same weights go into upstream's scoring code (copied
under tests/reference/, see each file's header) and the scores must agree within 1e-4. Nothing
is downloaded: without weights every scorer raises ScorerUnavailable naming the fetch command.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsdcompare.metrics import SCALES, LongPromptWarning, ScorerUnavailable
from dsdcompare.scorers import (
    checkpoint_identity,
    load_hps,
    load_imagereward,
    load_metric_scorer,
    load_pickscore,
    metric_of,
    metric_unavailable,
)
from dsdcompare.scorers.imagereward import BlipVit

REFERENCE = Path(__file__).parent / "reference"
TOL = 1e-4
PROMPTS = ["a photo of a red cat", "painting of a house under the sky at sunset " * 12]  # short, truncated
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def reference(name: str):
    """Import tests/reference/<name>.py by path (site-packages may hold an unrelated `tests`)."""
    spec = importlib.util.spec_from_file_location(f"dsd_reference_{name}", REFERENCE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images(sizes=((40, 48), (32, 32), (64, 56)), seed: int = 1) -> list[np.ndarray]:
    """Random uint8 images of different shapes (square and not, so resize, crop and pad all run)."""
    rng = np.random.default_rng(seed)
    return [(rng.random((h, w, 3)) * 255).astype(np.uint8) for h, w in sizes]


def jitter(state: dict, scale: float = 0.05, seed: int = 0) -> dict:
    """Random weights with the layout of ``state`` (LayerNorms away from 1/0, so every weight matters)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + torch.randn(v.shape, generator=gen) * scale if v.is_floating_point() else v
            for k, v in state.items()}


def fake_hub(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay ``files`` out as a Hugging Face cache snapshot of ``repo`` at COMMIT (refs/main)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (snapshot / name).symlink_to(source)


def assert_close(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert np.max(np.abs(ours - theirs)) < TOL, (ours, theirs)
    assert np.ptp(theirs) > 10 * TOL, "scores must differ between images, else the check proves little"


# --------------------------------------------------------------------------------------------
# HPS v2.1
# --------------------------------------------------------------------------------------------

HPS_TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def hps(tmp_path_factory):
    """Upstream's model with random weights, its HPS-style checkpoint file, and ours loaded from it."""
    import open_clip

    ref = reference("hpsv2_reference")
    folder = tmp_path_factory.mktemp("hps")
    (folder / "dsd-test-hps-tiny.json").write_text(json.dumps(HPS_TINY))
    open_clip.add_model_config(folder / "dsd-test-hps-tiny.json")
    torch.manual_seed(0)
    model, preprocess_val = ref.build_model(HPS_TINY)
    model.load_state_dict(jitter(model.state_dict()))
    weights = folder / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, weights)
    ours = load_hps(weights, arch="dsd-test-hps-tiny")
    return ref, model, preprocess_val, ours, weights


@pytest.mark.parametrize("prompt", PROMPTS)
def test_hps_equals_upstream_on_identical_weights(hps, prompt):
    ref, model, preprocess_val, ours, _ = hps
    imgs = images()
    theirs = ref.score(model, preprocess_val, [Image.fromarray(im) for im in imgs], prompt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongPromptWarning)
        score = ours.score(imgs, prompt)
    assert_close(score.per_image, theirs)
    assert score.value == pytest.approx(np.mean(score.per_image))


def test_hps_records_v21_provenance_and_truncation(hps):
    *_, ours, weights = hps
    with pytest.warns(LongPromptWarning, match="reads at most 75"):
        score = ours.score(images(), PROMPTS[1])
    assert score.truncated and score.prompt_tokens > 75 and score.max_prompt_tokens == 75
    assert score.backend == "hpsv2" and metric_of(score) == "hps" and score.higher_is_better
    assert "v2.1" in score.note and "not v2.0" in score.note
    assert score.checkpoint == checkpoint_identity(weights) and score.checkpoint.startswith("HPS_v2.1_compressed.pt@sha256:")


def test_hps_loads_from_the_hub_cache_as_repo_at_commit(hps, tmp_path):
    *_, weights = hps
    fake_hub(tmp_path, "xswu/HPSv2", {"HPS_v2.1_compressed.pt": weights})
    scorer = load_hps(arch="dsd-test-hps-tiny", cache_dir=tmp_path)
    assert scorer.checkpoint == f"xswu/HPSv2@{COMMIT}:HPS_v2.1_compressed.pt"


def test_hps_weights_of_another_architecture_are_unavailable_not_random(hps):
    *_, weights = hps
    with pytest.raises(ScorerUnavailable, match="does not fit open_clip ViT-B-32"):
        load_hps(weights, arch="ViT-B-32")


# --------------------------------------------------------------------------------------------
# PickScore
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickscore(tmp_path_factory):
    """A tiny random CLIPModel folder and a CLIP processor folder, and ours loaded from them."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from dsdcompare.tokenizers import build_clip_tokenizer

    model_dir, processor_dir = tmp_path_factory.mktemp("pick-model"), tmp_path_factory.mktemp("pick-processor")
    tokenizer = build_clip_tokenizer(processor_dir)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(processor_dir)
    config = CLIPConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32, logit_scale_init_value=4.0,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    model.load_state_dict(jitter(model.state_dict()))
    model.save_pretrained(model_dir)
    return model_dir, processor_dir, load_pickscore(model_dir, processor_dir)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_pickscore_equals_the_model_card_code(pickscore, prompt):
    model_dir, processor_dir, ours = pickscore
    imgs = images()
    theirs = reference("pickscore_reference").calc_scores(processor_dir, model_dir, prompt, [Image.fromarray(im) for im in imgs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongPromptWarning)
        score = ours.score(imgs, prompt)
    assert_close(score.per_image, theirs)


def test_pickscore_provenance_names_model_and_processor(pickscore, tmp_path):
    model_dir, processor_dir, ours = pickscore
    score = ours.score(images(), PROMPTS[0])
    assert score.backend == "pickscore" and metric_of(score) == "pickscore"
    assert score.checkpoint.startswith(f"{model_dir.name}@sha256:") and " + processor " in score.checkpoint
    fake_hub(tmp_path, "yuvalkirstain/PickScore_v1", {p.name: p for p in model_dir.iterdir()})
    # the processor repo's layout: a transformers-4 style preprocessor_config.json, tokenizer files
    flat = tmp_path / "preprocessor_config.json"
    flat.write_text(json.dumps({"crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                                "feature_extractor_type": "CLIPFeatureExtractor", "resample": 3, "size": 32,
                                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                                "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    fake_hub(tmp_path, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
             {"preprocessor_config.json": flat,
              **{p.name: p for p in processor_dir.iterdir() if p.name.startswith(("tokenizer", "vocab", "merges"))}})
    hub = load_pickscore(cache_dir=tmp_path)
    assert hub.checkpoint == (f"yuvalkirstain/PickScore_v1@{COMMIT} + processor "
                              f"laion/CLIP-ViT-H-14-laion2B-s32B-b79K@{COMMIT}")
    assert hub.score(images(), PROMPTS[0]).per_image == pytest.approx(score.per_image, abs=1e-6)


# --------------------------------------------------------------------------------------------
# ImageReward
# --------------------------------------------------------------------------------------------

TINY_VIT = BlipVit(image_size=32, patch_size=8, width=32, layers=2, heads=2)
WORDS = "a photo of the red cat dog blue green sky over under house tree sunset painting portrait at".split()


@pytest.fixture(scope="module")
def imagereward(tmp_path_factory):
    """Upstream's ImageReward module with random weights saved as ImageReward.pt, and ours from it."""
    from transformers import BertTokenizer
    from transformers.models.bert.configuration_bert import BertConfig

    ref = reference("imagereward_reference")
    folder = tmp_path_factory.mktemp("imagereward")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz.,"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    tokenizer = BertTokenizer.from_pretrained(folder)  # BLIP's init_tokenizer, with this vocabulary
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 2,
           "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(tokenizer),
           "encoder_width": 32, "add_cross_attention": True}
    (folder / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(0)
    model = ref.ImageRewardReference(BertConfig(**med), tokenizer, dict(
        patch_size=TINY_VIT.patch_size, embed_dim=TINY_VIT.width, depth=TINY_VIT.layers, num_heads=TINY_VIT.heads),
        image_size=TINY_VIT.image_size)
    state = jitter(model.state_dict(), scale=0.1)
    for key, value in state.items():  # a variance-keeping MLP, so rewards differ between images
        if key.startswith("mlp.") and key.endswith("weight"):
            state[key] = torch.randn(value.shape, generator=torch.Generator().manual_seed(1)) / value.shape[1] ** 0.5
    model.load_state_dict(state)
    model.eval()
    torch.save(model.state_dict(), folder / "ImageReward.pt")
    ours = load_imagereward(folder / "ImageReward.pt", med_config=folder / "med_config.json", tokenizer=folder, vit=TINY_VIT)
    return model, ours, folder


@pytest.mark.parametrize("prompt", ["a photo of a red cat", "a painting of a house under the sky at sunset " * 5])
def test_imagereward_equals_upstream_on_identical_weights(imagereward, prompt):
    model, ours, _ = imagereward
    imgs = images()
    with torch.no_grad():
        _, theirs = model.inference_rank(prompt, [Image.fromarray(im) for im in imgs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongPromptWarning)
        score = ours.score(imgs, prompt)
    assert_close(score.per_image, theirs)
    assert score.max_prompt_tokens == 33 and score.truncated == (score.prompt_tokens > 33)


def test_imagereward_checkpoint_missing_a_layer_is_unavailable(imagereward, tmp_path):
    _, _, folder = imagereward
    state = torch.load(folder / "ImageReward.pt", weights_only=True)
    state.pop("mlp.layers.7.weight")
    torch.save(state, tmp_path / "ImageReward.pt")
    with pytest.raises(ScorerUnavailable, match="missing"):
        load_imagereward(tmp_path / "ImageReward.pt", med_config=folder / "med_config.json", tokenizer=folder, vit=TINY_VIT)


# --------------------------------------------------------------------------------------------
# Shared behaviour
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric, names", [
    ("hps", ["xswu/HPSv2", "HPS_v2.1_compressed.pt"]),
    ("pickscore", ["yuvalkirstain/PickScore_v1"]),
    ("imagereward", ["THUDM/ImageReward", "ImageReward.pt"]),
])
def test_without_weights_each_scorer_is_unavailable_naming_the_checkpoint_and_the_fetch(metric, names, tmp_path):
    with pytest.raises(ScorerUnavailable) as info:
        load_metric_scorer(metric, cache_dir=tmp_path)
    message = str(info.value)
    assert f"dsdcompare download --scorers {metric}" in message and "\n" not in message
    for name in names:
        assert name in message


def test_excluded_images_are_left_out_with_the_reason(hps):
    *_, ours, _ = hps
    imgs = images()
    imgs.insert(1, np.zeros((32, 32, 3), np.uint8))
    score = ours.score(imgs, PROMPTS[0])
    assert score.per_image[1] is None and score.excluded[1] == "all black"
    assert score.value == pytest.approx(np.mean([v for v in score.per_image if v is not None]))
    blank = ours.score([np.zeros((8, 8, 3), np.uint8)], PROMPTS[0])
    assert blank.value is None and "all 1 excluded" in blank.error


def test_unavailable_scores_keep_metric_scale_and_reason():
    score = metric_unavailable("imagereward", "not cached", n_images=2)
    assert score.value is None and score.per_image == [None, None] and score.error == "not cached"
    assert metric_of(score) == "imagereward" and score.checkpoint == "THUDM/ImageReward:ImageReward.pt"
    assert all(SCALES[s].higher_is_better for s in (score.scale, metric_unavailable("hps", "x").scale))
    assert not metric_unavailable("lpips", "x").higher_is_better


def test_checkpoint_identity_is_content_not_location(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "toy-clip").mkdir(parents=True)
        (tmp_path / name / "toy-clip" / "model.safetensors").write_bytes(b"weights")
        (tmp_path / name / "toy-clip" / "config.json").write_text(name)  # not a weight file
    first, second = (checkpoint_identity(tmp_path / n / "toy-clip") for n in ("a", "b"))
    assert first == second and first.startswith("toy-clip@sha256:") and str(tmp_path) not in first
    (tmp_path / "b" / "toy-clip" / "model.safetensors").write_bytes(b"other weights")
    assert checkpoint_identity(tmp_path / "b" / "toy-clip") != first
    assert checkpoint_identity("org/never-cached", cache_dir=tmp_path) == "org/never-cached@main"
