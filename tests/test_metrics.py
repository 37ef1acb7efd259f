"""Tests for dsdcompare.metrics: CLIP score against an independent reference, image checks,
long prompts, fidelity, and failing loudly when a scorer is unavailable.

Everything runs offline on tiny random CLIPs (32 px images), so scores are meaningless but the
arithmetic is exact: the reference below recomputes the score from the model's own embeddings
without going through torchmetrics or the scorer.
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from dsdcompare import metrics
from dsdcompare.fidelity import check_image, fidelity
from dsdcompare.metrics import (
    SCALE_CLIPSCORE,
    SCALE_RAW_COSINE,
    LongPromptWarning,
    ScorerUnavailable,
    load_scorer,
    score_unavailable,
)

# CLIP's image normalisation (transformers' CLIPImageProcessor and open_clip's OpenAI default).
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
SIZE = 32  # both tiny models take 32 px images, so preprocessing is only rescale + normalise
PROMPT = "a photo of a red cube"

TINY_OPEN_CLIP = "dsd-test-tiny-openclip"
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def random_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]


def pixel_values(images: list[np.ndarray]) -> torch.Tensor:
    """Reference preprocessing for 32 px images: uint8 → [0, 1] → CLIP-normalised Bx3xHxW."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - CLIP_MEAN) / CLIP_STD


@pytest.fixture(scope="module")
def tiny():
    return load_scorer("tiny")


@pytest.fixture(scope="module")
def tiny_hf_model():
    """The stand-in's saved weights and tokenizer, loaded directly with transformers."""
    from transformers import CLIPModel, CLIPTokenizer

    directory = metrics.standin_scorer_dir()
    return CLIPModel.from_pretrained(directory).eval(), CLIPTokenizer.from_pretrained(directory)


def reference_cosines_hf(model, tokenizer, images, prompt) -> torch.Tensor:
    """Cosine of each image with the prompt, straight from the CLIP towers and projections."""
    with torch.no_grad():
        image_emb = model.visual_projection(model.vision_model(pixel_values=pixel_values(images)).pooler_output)
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        text_emb = model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return torch.nn.functional.cosine_similarity(image_emb, text_emb).double()


# --------------------------------------------------------------------------------------------
# CLIP score against the reference
# --------------------------------------------------------------------------------------------


def test_torchmetrics_path_equals_reference(tiny, tiny_hf_model):
    images = random_images(6)
    cos = reference_cosines_hf(*tiny_hf_model, images, PROMPT)
    # The comparison must be able to fail: some cosines are clearly positive (not clamped to 0),
    # and the images differ from each other by much more than the tolerance.
    assert (100 * cos > 1.0).sum() >= 2
    assert float(100 * (cos.max() - cos.min())) > 1.0

    score = tiny.score(images, PROMPT)

    expected_per_image = (100 * cos).clamp(min=0)
    np.testing.assert_allclose(score.per_image, expected_per_image.numpy(), atol=1e-4, rtol=0)
    # torchmetrics' definition of the mean: max(0, mean of 100 x cosine), clamped after averaging.
    assert score.value == pytest.approx(max(0.0, float(100 * cos.mean())), abs=1e-4)
    assert score.value > 0.1  # the mean itself is not clamped to 0 for this seed
    assert (score.backend, score.checkpoint, score.scale) == ("torchmetrics", "tiny", SCALE_CLIPSCORE)
    assert score.standin is True and "meaningless" in score.note
    assert score.excluded == [None] * 6 and score.error is None


def test_open_clip_path_equals_reference(tmp_path):
    import open_clip

    (tmp_path / f"{TINY_OPEN_CLIP}.json").write_text(json.dumps(TINY_OPEN_CLIP_CFG))
    open_clip.add_model_config(tmp_path / f"{TINY_OPEN_CLIP}.json")
    torch.manual_seed(0)
    scorer = load_scorer(f"open_clip:{TINY_OPEN_CLIP}")
    torch.manual_seed(0)  # the same random init for the reference model
    model = open_clip.create_model(TINY_OPEN_CLIP).eval()

    images = random_images(6, seed=1)
    with torch.no_grad():
        image_emb = model.encode_image(pixel_values(images))
        text_emb = model.encode_text(open_clip.get_tokenizer(TINY_OPEN_CLIP)([PROMPT]))
    cos = torch.nn.functional.cosine_similarity(image_emb, text_emb).double()
    assert float(cos.max() - cos.min()) > 1e-3  # images tell apart far beyond the tolerance

    score = scorer.score(images, PROMPT)

    # Raw cosine (the BK-SDM paper's scale): no x100, no clamp. 1e-6 on this scale is 1e-4 on x100.
    np.testing.assert_allclose(score.per_image, cos.numpy(), atol=1e-6, rtol=0)
    assert score.value == pytest.approx(float(cos.mean()), abs=1e-6)
    assert (score.backend, score.scale) == ("open_clip", SCALE_RAW_COSINE)
    assert score.checkpoint == f"open_clip:{TINY_OPEN_CLIP}"
    assert score.standin is True  # an architecture without a pretrained tag has random weights


def test_uint8_float_pil_and_tensor_inputs_score_the_same(tiny):
    images = random_images(3)  # seed 0: all three score above 0 with PROMPT
    as_uint8 = tiny.score(images, PROMPT)
    as_float = tiny.score([im.astype(np.float32) / 255.0 for im in images], PROMPT)
    as_pil = tiny.score([Image.fromarray(im) for im in images], PROMPT)
    as_batch = tiny.score(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255.0, PROMPT)
    assert as_uint8.per_image == as_float.per_image == as_pil.per_image == as_batch.per_image
    assert min(as_uint8.per_image) > 0.1  # none clamped to 0, so equality means something


def test_float_outside_unit_range_is_refused(tiny):
    image = random_images(1)[0].astype(np.float32) / 127.5 - 1.0  # [-1, 1], a common mistake
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        tiny.score([image], PROMPT)


def test_ambiguous_or_wrong_shapes_are_refused(tiny):
    with pytest.raises(ValueError, match="`images` is empty"):
        tiny.score([], PROMPT)
    with pytest.raises(ValueError, match=r"ambiguous"):
        tiny.score([np.ones((3, 32, 3), np.uint8)], PROMPT)
    with pytest.raises(ValueError, match="3 colour channels"):
        tiny.score([np.zeros((32, 32, 4), np.uint8)], PROMPT)
    with pytest.raises(ValueError, match=r"got dtype int64"):
        tiny.score([np.ones((32, 32, 3), np.int64)], PROMPT)


# --------------------------------------------------------------------------------------------
# Long prompts
# --------------------------------------------------------------------------------------------


def test_100_token_prompt_warns_and_records_the_scored_part(tiny):
    prompt = " ".join(["red"] * 50 + ["cube"] * 50)  # 100 tokens, each word a single token
    images = random_images(2, seed=3)
    with pytest.warns(LongPromptWarning, match="100 tokens"):
        score = tiny.score(images, prompt)
    assert (score.prompt_tokens, score.max_prompt_tokens, score.truncated) == (100, 75, True)
    assert score.scored_prompt == " ".join(["red"] * 50 + ["cube"] * 25)
    # What was scored is exactly the recorded prefix (with its EOS token kept).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prefix = tiny.score(images, score.scored_prompt)
    assert prefix.truncated is False and prefix.prompt_tokens == 75
    assert min(score.per_image) > 1.0  # not clamped to 0, so the comparison below can fail
    np.testing.assert_allclose(score.per_image, prefix.per_image, atol=1e-5)


def test_short_prompt_does_not_warn(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongPromptWarning)
        score = tiny.score(random_images(1), PROMPT)
    assert (score.prompt_tokens, score.truncated, score.scored_prompt) == (6, False, PROMPT)


# --------------------------------------------------------------------------------------------
# Image checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((32, 32, 3), np.uint8), "all black"),
        (np.zeros((3, 32, 32), np.float32), "all black"),
        (np.full((32, 32, 3), 128, np.uint8), "constant image"),
        (np.full((32, 32, 3), 1.0, np.float32), "constant image"),
        (np.where(np.eye(32)[..., None] > 0, np.nan, 0.5).repeat(3, -1), "NaN/inf pixels"),
        (np.full((32, 32, 3), np.inf), "NaN/inf pixels"),
        (random_images(1)[0], None),
    ],
)
def test_check_image(image, reason):
    assert check_image(image) == reason


def test_excluded_images_are_shown_and_left_out_of_the_mean(tiny):
    good = random_images(2)
    nan = good[0].astype(np.float32) / 255.0
    nan[0, 0, 0] = np.nan
    batch = [np.zeros((32, 32, 3), np.uint8), good[0], nan, good[1], np.full((32, 32, 3), 7, np.uint8)]

    score = tiny.score(batch, PROMPT)
    alone = tiny.score(good, PROMPT)

    assert score.excluded == ["all black", None, "NaN/inf pixels", None, "constant image"]
    assert score.per_image[0] is None and score.per_image[2] is None and score.per_image[4] is None
    assert [score.per_image[1], score.per_image[3]] == alone.per_image
    assert min(alone.per_image) > 0.1
    assert score.value == alone.value


def test_all_images_excluded_gives_no_value_and_says_why(tiny):
    score = tiny.score([np.zeros((32, 32, 3), np.uint8)], PROMPT)
    assert score.value is None and score.per_image == [None]
    assert "all 1 excluded (all black)" in score.error


# --------------------------------------------------------------------------------------------
# Teacher/student fidelity
# --------------------------------------------------------------------------------------------


def test_fidelity_of_an_image_with_itself_is_perfect():
    image = random_images(1, seed=5)[0]
    result = fidelity(image, image.copy())
    assert result["psnr"] == math.inf
    assert result["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert result["excluded"] is None


def test_fidelity_psnr_matches_its_formula_and_uint8_equals_float():
    teacher = random_images(1, seed=6)[0]
    student = np.clip(teacher.astype(int) + np.random.default_rng(7).integers(-20, 21, teacher.shape), 0, 255)
    student = student.astype(np.uint8)
    mse = np.mean((student / 255.0 - teacher / 255.0) ** 2)
    result = fidelity(student, teacher)
    assert result["psnr"] == pytest.approx(10 * math.log10(1.0 / mse), abs=1e-4)
    assert 0.0 < result["ssim"] < 1.0
    as_float = fidelity(student / 255.0, teacher.astype(np.float32) / 255.0)
    assert as_float["psnr"] == pytest.approx(result["psnr"], abs=1e-4)
    assert as_float["ssim"] == pytest.approx(result["ssim"], abs=1e-5)


def test_fidelity_refuses_mismatched_sizes_and_excludes_bad_images():
    big = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"same size, but the student is 32x32 and the teacher 64x48"):
        fidelity(random_images(1)[0], big)
    result = fidelity(np.zeros((32, 32, 3), np.uint8), random_images(1)[0])
    assert result == {"psnr": None, "ssim": None, "excluded": "student image: all black"}


# --------------------------------------------------------------------------------------------
# Unavailable scorers, results without a score, serialisation, threads
# --------------------------------------------------------------------------------------------


@pytest.fixture
def hub_offline(monkeypatch):
    """Offline like HF_HUB_OFFLINE=1 (read at call time by huggingface_hub and transformers)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize(
    "checkpoint", ["zer0int/LongCLIP-GmP-ViT-L-14", "open_clip:ViT-B-32/laion2b_s34b_b79k"]
)
def test_uncached_checkpoint_offline_fails_with_name_and_remedies(hub_offline, checkpoint):
    with pytest.raises(ScorerUnavailable, match=r"(?s)" + checkpoint + r".*Remedies.*local directory.*'tiny'"):
        load_scorer(checkpoint)


def test_missing_directory_fails_with_name_and_remedies(tmp_path):
    missing = str(tmp_path / "no-such-clip")
    with pytest.raises(ScorerUnavailable, match=r"(?s)no-such-clip.*neither a local directory.*Remedies"):
        load_scorer(missing)


def test_directory_without_a_model_is_unavailable(tmp_path):
    with pytest.raises(ScorerUnavailable, match="Remedies"):
        load_scorer(str(tmp_path))


def test_unknown_open_clip_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown open_clip architecture 'ViT-Q-99'.*Known: .*ViT-g-14"):
        load_scorer("open_clip:ViT-Q-99/whatever")
    with pytest.raises(ValueError, match=r"Unknown pretrained tag 'nope' for 'ViT-g-14'.*laion2b_s34b_b88k"):
        load_scorer("open_clip:ViT-g-14/nope")


def test_local_directory_loads_through_the_same_path(tiny):
    directory = str(metrics.standin_scorer_dir())
    scorer = load_scorer(directory, standin=True)
    images = random_images(2)
    assert scorer.checkpoint == directory and scorer.backend == "torchmetrics"
    assert scorer.score(images, PROMPT).per_image == tiny.score(images, PROMPT).per_image
    assert load_scorer(directory).standin is False  # a local directory is a real model unless told


def test_score_unavailable_and_scores_serialise_to_json(tiny):
    missing = score_unavailable("openai/clip-vit-large-patch14", "not cached offline", n_images=2)
    assert missing.value is None and missing.error == "not cached offline"
    assert (missing.backend, missing.scale, missing.per_image) == ("torchmetrics", SCALE_CLIPSCORE, [None, None])
    assert score_unavailable("open_clip:ViT-g-14/laion2b_s34b_b88k", "x").scale == SCALE_RAW_COSINE
    for score in (missing, tiny.score(random_images(1) + [np.zeros((32, 32, 3), np.uint8)], PROMPT)):
        assert json.loads(json.dumps(asdict(score))) == asdict(score)


def test_scores_are_the_same_from_several_threads(tiny):
    images = random_images(3)
    expected = tiny.score(images, PROMPT)
    assert min(expected.per_image) > 0.1
    results = []

    def work():
        for _ in range(3):
            results.append(tiny.score(images, PROMPT))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r == expected for r in results)
