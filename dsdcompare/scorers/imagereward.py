"""ImageReward v1.0 on transformers' BLIP, mapped key for key from upstream's checkpoint.

Upstream (the ``image-reward`` package, 1.5) cannot run beside this project: it pins
``timm==0.6.13``, imports the OpenAI ``clip`` package (not on PyPI), and its vendored BLIP text
encoder imports helpers that transformers 5 no longer has in ``transformers.modeling_utils``.
ImageReward's score is BLIP's multimodal text encoder output at the first token (the text attends
to the ViT's patch embeddings through cross-attention) fed to a 5-layer linear MLP and standardised
with upstream's mean and std. transformers' ``BlipVisionModel`` and ``BlipTextModel`` are ports of
the same BLIP code (``vit.py`` and ``med.py``), so the checkpoint maps onto them by renaming keys
(:func:`convert_state_dict`); equivalence with upstream's code on identical weights is tested in
tests/test_preference.py against tests/reference/imagereward_reference.py.

Faithful details kept from upstream: the vision LayerNorms use eps 1e-6 (transformers' BLIP
default is 1e-5), the prompt is tokenized with BERT's uncased tokenizer plus BLIP's ``[DEC]`` and
``[ENC]`` tokens, padded to 35 tokens, with ``[CLS]`` first (upstream's ``score`` does not swap in
``[ENC]``), and images go through Resize(224, bicubic) on the PIL image, CenterCrop(224) and
OpenAI CLIP's normalisation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..metrics import SCALE_IMAGEREWARD, ScorerUnavailable
from .base import PreferenceScorer, pil_images
from .weights import SCORER_WEIGHTS, checkpoint_identity, hub_file, hub_snapshot

IMAGEREWARD_WEIGHTS, IMAGEREWARD_MED_CONFIG, IMAGEREWARD_TOKENIZER = SCORER_WEIGHTS["imagereward"]
#: Upstream's standardisation of the raw MLP output (ImageReward.py).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
_MAX_LENGTH = 35  # upstream's tokenizer max_length, [CLS] and [SEP] included
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)
#: Checkpoint keys upstream loads but never uses for the score (BLIP's contrastive projections).
_UNUSED_KEYS = ("blip.vision_proj.", "blip.text_proj.", "blip.text_encoder.embeddings.position_ids")


@dataclass(frozen=True)
class BlipVit:
    """BLIP's vision transformer shape (``create_vit``); ImageReward uses ``large`` at 224 px."""

    image_size: int = 224  # input side in pixels
    patch_size: int = 16  # patch side in pixels
    width: int = 1024  # embedding width
    layers: int = 24  # transformer blocks
    heads: int = 16  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden width / width


IMAGEREWARD_VIT = BlipVit()


class ImageRewardModel(nn.Module):
    """BLIP ViT + BLIP multimodal text encoder + ImageReward's reward MLP."""

    def __init__(self, vit: BlipVit, med_config: dict):
        super().__init__()
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

        self.vision = BlipVisionModel(BlipVisionConfig(
            hidden_size=vit.width, intermediate_size=int(vit.width * vit.mlp_ratio), num_hidden_layers=vit.layers,
            num_attention_heads=vit.heads, image_size=vit.image_size, patch_size=vit.patch_size,
            hidden_act="gelu", layer_norm_eps=1e-6,  # vit.py: partial(nn.LayerNorm, eps=1e-6), nn.GELU
        ))
        if not med_config.get("add_cross_attention", False):
            raise ValueError("med_config must have add_cross_attention: true (BLIP's multimodal encoder).")
        text_config = BlipTextConfig(
            vocab_size=med_config["vocab_size"], hidden_size=med_config["hidden_size"],
            encoder_hidden_size=vit.width, intermediate_size=med_config["intermediate_size"],
            num_hidden_layers=med_config["num_hidden_layers"], num_attention_heads=med_config["num_attention_heads"],
            max_position_embeddings=med_config["max_position_embeddings"], hidden_act=med_config["hidden_act"],
            layer_norm_eps=med_config["layer_norm_eps"], pad_token_id=med_config.get("pad_token_id", 0),
            is_decoder=True,  # builds the cross-attention layers; forward runs bidirectionally (is_decoder=False)
        )
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        hidden = med_config["hidden_size"]
        self.mlp = nn.Sequential(  # ImageReward.MLP: no activations, dropout off in eval
            nn.Linear(hidden, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, pixel_values, input_ids, attention_mask) -> torch.Tensor:
        """Standardised rewards, one per image (text rows repeat per image)."""
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text_output = self.text(input_ids=input_ids, attention_mask=attention_mask,
                                encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts,
                                is_decoder=False)
        features = text_output.last_hidden_state[:, 0, :].float()
        return ((self.mlp(features) - REWARD_MEAN) / REWARD_STD)[:, 0]


def convert_state_dict(upstream: dict, layers: int) -> dict:
    """Rename an ImageReward checkpoint's keys to :class:`ImageRewardModel`'s.

    Vision renames follow transformers' BLIP conversion (vit.py -> BlipVisionModel); the text
    encoder's and the MLP's keys are unchanged apart from their prefix.
    """
    out: dict = {}
    vision = {"blip.visual_encoder.cls_token": "vision.embeddings.class_embedding",
              "blip.visual_encoder.pos_embed": "vision.embeddings.position_embedding",
              "blip.visual_encoder.patch_embed.proj.weight": "vision.embeddings.patch_embedding.weight",
              "blip.visual_encoder.patch_embed.proj.bias": "vision.embeddings.patch_embedding.bias",
              "blip.visual_encoder.norm.weight": "vision.post_layernorm.weight",
              "blip.visual_encoder.norm.bias": "vision.post_layernorm.bias"}
    block = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
             "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(layers):
        for old, new in block.items():
            for kind in ("weight", "bias"):
                vision[f"blip.visual_encoder.blocks.{i}.{old}.{kind}"] = f"vision.encoder.layers.{i}.{new}.{kind}"
    for key, value in upstream.items():
        if key in vision:
            out[vision[key]] = value
        elif key.startswith("blip.text_encoder.") and not key.startswith(_UNUSED_KEYS):
            out["text." + key[len("blip.text_encoder."):]] = value
        elif key.startswith("mlp.layers."):
            out["mlp." + key[len("mlp.layers."):]] = value
    return out


class ImageRewardScorer(PreferenceScorer):
    """ImageReward v1.0: BLIP fine-tuned on expert text-to-image rankings; higher is preferred."""

    metric = "imagereward"
    backend = "imagereward"
    scale = SCALE_IMAGEREWARD

    def __init__(self, model: ImageRewardModel, tokenizer, *, checkpoint: str, standin: bool, device: str):
        from torchvision import transforms as T

        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        size = model.vision.config.image_size
        self.preprocess = T.Compose([  # ImageReward._transform, in upstream's order
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
            lambda image: image.convert("RGB"), T.ToTensor(), T.Normalize(_MEAN, _STD),
        ])
        super().__init__(checkpoint=checkpoint, standin=standin, max_prompt_tokens=_MAX_LENGTH - 2)

    def _token_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _score_images(self, images: list[np.ndarray], prompt: str) -> list[float]:
        pixels = torch.stack([self.preprocess(im) for im in pil_images(images)]).to(self.device)
        text = self.tokenizer(prompt, padding="max_length", truncation=True, max_length=_MAX_LENGTH,
                              return_tensors="pt").to(self.device)
        n = pixels.shape[0]
        with torch.no_grad():
            rewards = self.model(pixels, text.input_ids.expand(n, -1), text.attention_mask.expand(n, -1))
        return [float(r) for r in rewards.cpu()]


def load_tokenizer(folder: str | os.PathLike):
    """BERT's uncased tokenizer with BLIP's ``[DEC]`` and ``[ENC]`` tokens (BLIP ``init_tokenizer``)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(os.fspath(folder), local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _file(given, spec, cache_dir) -> str:
    if given is None:
        return str(hub_file(spec.repo, spec.filename, scorer="imagereward", revision=spec.revision, cache_dir=cache_dir))
    if not os.path.exists(given):
        raise ScorerUnavailable(f"imagereward scorer unavailable: no {os.fspath(given)!r}; "
                                f"fetch it with `dsdcompare download --scorers imagereward`.")
    return os.fspath(given)


def load_imagereward(weights: str | os.PathLike | None = None, *, med_config: str | os.PathLike | None = None,
                     tokenizer: str | os.PathLike | None = None, device: str = "cpu", vit: BlipVit = IMAGEREWARD_VIT,
                     cache_dir: str | os.PathLike | None = None, standin: bool = False) -> ImageRewardScorer:
    """Load the ImageReward v1.0 scorer; never downloads.

    Args:
        weights: a local ``ImageReward.pt``; default ``THUDM/ImageReward`` from the Hugging Face cache.
        med_config: a local ``med_config.json`` (BLIP's text encoder config); default from the same repo.
        tokenizer: a folder with BERT's uncased tokenizer; default ``google-bert/bert-base-uncased``.
        device: where the model runs.
        vit: the vision transformer's shape (ViT-L/16 at 224 for the real checkpoint; tests pass a tiny one).
        cache_dir: the Hugging Face cache to look in (default: the standard one).
        standin: label the scores meaningless (random or test-built weights).

    Raises:
        ScorerUnavailable: a file is not cached or unreadable, or the weights do not fit the model.
    """
    weights_path = _file(weights, IMAGEREWARD_WEIGHTS, cache_dir)
    with open(_file(med_config, IMAGEREWARD_MED_CONFIG, cache_dir)) as handle:
        config = json.load(handle)
    tokenizer_dir = tokenizer if tokenizer is not None else hub_snapshot(
        IMAGEREWARD_TOKENIZER.repo, ("vocab.txt", "tokenizer_config.json"), scorer="imagereward",
        revision=IMAGEREWARD_TOKENIZER.revision, cache_dir=cache_dir)
    try:
        upstream = torch.load(weights_path, map_location="cpu", weights_only=True)
        model = ImageRewardModel(vit, config)
        state = convert_state_dict(upstream, vit.layers)
        # Strict on what the score uses (upstream loads with strict=False, so a wrong file would
        # silently score with random layers); the one non-persistent buffer is not in the file.
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        bert = load_tokenizer(tokenizer_dir)
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        raise ScorerUnavailable(f"imagereward scorer unavailable: {type(err).__name__}: {str(err).splitlines()[0]}; "
                                f"fetch it with `dsdcompare download --scorers imagereward`.") from err
    identity = f"{checkpoint_identity(weights_path)} + tokenizer {checkpoint_identity(tokenizer_dir)}"
    return ImageRewardScorer(model, bert, checkpoint=identity, standin=standin, device=device)


__all__ = [
    "IMAGEREWARD_VIT",
    "REWARD_MEAN",
    "REWARD_STD",
    "BlipVit",
    "ImageRewardModel",
    "ImageRewardScorer",
    "convert_state_dict",
    "load_imagereward",
    "load_tokenizer",
]
