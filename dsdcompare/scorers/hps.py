"""HPS v2.1 (Human Preference Score v2.1) on open_clip, pinned to v2.1.

Upstream (the ``hpsv2`` package, 1.2.0) cannot be installed beside this project: it pins
``pytest==7.2.0`` and ``protobuf<4``, and its wheel lacks the tokenizer's vocabulary file. Its
scorer is a vendored fork of open_clip; for ViT-H-14 the fork's model has the same state-dict keys
and forward pass as open_clip 3 (checked with identical weights: see tests/test_preference.py and
tests/reference/hpsv2_reference.py), so this module builds ``ViT-H-14`` with open_clip, loads
``HPS_v2.1_compressed.pt``'s ``state_dict`` strictly, and reproduces upstream's scoring:

- preprocessing: upstream's evaluation transform (``light_augmentation=True``): RGB, ``ToTensor``,
  resize the longest side to 224 (bicubic, on the tensor) and zero-pad to a square, then
  normalise with OpenAI CLIP's mean and std;
- score: cosine of the normalised image and text embeddings (``image_features @
  text_features.T``, no logit scale), in fp32 on a CPU and under fp16 autocast on CUDA, as
  upstream's ``score()`` does.

Pinned to **v2.1**: upstream's ``hpsv2.score()`` defaults to ``hps_version="v2.0"``
(``HPS_v2_compressed.pt``) while most published tables cite v2.1; scores of the two are not
comparable, and every Score here says v2.1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import SCALE_HPS, ScorerUnavailable
from .base import PreferenceScorer, pil_images
from .weights import SCORER_WEIGHTS, checkpoint_identity, hub_file

HPS_VERSION = "v2.1"
HPS_ARCH = "ViT-H-14"  # the open_clip architecture HPS v2 was trained from
HPS_WEIGHTS = SCORER_WEIGHTS["hps"][0]  # xswu/HPSv2, HPS_v2.1_compressed.pt
HPS_NOTE = "HPS v2.1 (HPS_v2.1_compressed.pt), not v2.0: the two are not comparable"
# OpenAI CLIP's normalisation: upstream passes no mean/std for ViT-H-14, so its transform uses these.
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class _HpsPreprocess:
    """Upstream's evaluation transform (hpsv2 ``image_transform(..., resize_longest_max=True)``)."""

    size: int  # the model's input side (224 for ViT-H-14)

    def __call__(self, image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        tensor = F.to_tensor(image.convert("RGB"))
        height, width = tensor.shape[1:]
        scale = self.size / float(max(height, width))
        if scale != 1.0:  # ResizeMaxSize: longest side to `size`, then pad right/bottom-biased
            new_size = tuple(round(dim * scale) for dim in (height, width))
            tensor = F.resize(tensor, new_size, InterpolationMode.BICUBIC)
            pad_h, pad_w = self.size - new_size[0], self.size - new_size[1]
            tensor = F.pad(tensor, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        return F.normalize(tensor, mean=_MEAN, std=_STD)


class HpsScorer(PreferenceScorer):
    """HPS v2.1: a CLIP ViT-H-14 fine-tuned on human preferences; higher is preferred."""

    metric = "hps"
    backend = "hpsv2"
    scale = SCALE_HPS

    def __init__(self, model, tokenizer, *, checkpoint: str, standin: bool, device: str):
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        size = model.visual.image_size
        self.preprocess = _HpsPreprocess(size[0] if isinstance(size, (tuple, list)) else int(size))
        super().__init__(checkpoint=checkpoint, standin=standin,
                         max_prompt_tokens=tokenizer.context_length - 2, note=HPS_NOTE)

    def _token_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids).strip()

    def _score_images(self, images: list[np.ndarray], prompt: str) -> list[float]:
        pixels = torch.stack([self.preprocess(im) for im in pil_images(images)]).to(self.device)
        text = self.tokenizer([prompt]).to(self.device)  # truncates to 77 tokens, EOS kept
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")
        with torch.no_grad(), autocast:
            image_features = self.model.encode_image(pixels, normalize=True)
            text_features = self.model.encode_text(text, normalize=True)
            scores = (image_features @ text_features.T)[:, 0]
        return [float(s) for s in scores.float().cpu()]


def _read_state_dict(path) -> dict:
    """The model weights of an HPS checkpoint file (``{"state_dict": ...}`` or a bare state dict)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise ScorerUnavailable(f"hps scorer unavailable: {os.fspath(path)!r} is not a readable checkpoint "
                                f"({type(err).__name__}: {err}); fetch it again with `dsdcompare download --scorers hps`.") from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    return checkpoint


def load_hps(weights: str | os.PathLike | None = None, *, device: str = "cpu", arch: str = HPS_ARCH,
             cache_dir: str | os.PathLike | None = None, standin: bool = False) -> HpsScorer:
    """Load the HPS v2.1 scorer; never downloads.

    Args:
        weights: a local ``HPS_v2.1_compressed.pt``; default: ``xswu/HPSv2`` from the Hugging Face
            cache (``dsdcompare download --scorers hps`` puts it there).
        device: where the model runs.
        arch: the open_clip architecture; ``ViT-H-14`` for the real checkpoint (tests pass a tiny
            registered config with weights of the same layout).
        cache_dir: the Hugging Face cache to look in (default: the standard one).
        standin: label the scores meaningless (random or test-built weights).

    Raises:
        ScorerUnavailable: the weights are not cached or not readable, or do not fit ``arch``.
    """
    import open_clip

    if weights is None:
        path = hub_file(HPS_WEIGHTS.repo, HPS_WEIGHTS.filename, scorer="hps",
                        revision=HPS_WEIGHTS.revision, cache_dir=cache_dir)
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ScorerUnavailable(f"hps scorer unavailable: no file {path!r}; "
                                    f"fetch the weights with `dsdcompare download --scorers hps`.")
    state_dict = _read_state_dict(path)
    model = open_clip.create_model(arch, pretrained=None, device="cpu")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ScorerUnavailable(f"hps scorer unavailable: {os.fspath(path)!r} does not fit open_clip {arch} "
                                f"({first}); fetch HPS_v2.1_compressed.pt with `dsdcompare download --scorers hps`.") from err
    return HpsScorer(model, open_clip.get_tokenizer(arch), checkpoint=checkpoint_identity(path),
                     standin=standin, device=device)


__all__ = ["HPS_ARCH", "HPS_NOTE", "HPS_VERSION", "HPS_WEIGHTS", "HpsScorer", "load_hps"]
