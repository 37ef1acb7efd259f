"""Architectures of the seed models as data: full-size component configs and their miniatures.

Each architecture is a dict of component configs in the exact form the hub repos store them
(``unet/config.json`` and friends). Two weight sources are built from them:

* ``arch``: the full-size configs with random weights (real latency, memory and FLOPs).
* ``tiny``: :func:`miniature` of the same configs: widths shrunk, but every structural
  difference kept (block types, depths, missing mid block, text_time embedding, two text
  encoders), so a stand-in fails where the real model would.

SSD-1B's UNet is reconstructed, not read from its hub config: from the public loaders that
load it (stable-diffusion.cpp's SSD-1B loader, ComfyUI's ``model_detection`` SSD-1B table and
diffusers PR #5400), checked against the hub's UNet weight sizes (5.33 GB fp32, 2.66 GB fp16,
i.e. about 1.33 B parameters) and the card's "1.3B" (see :mod:`dsdcompare.published`).
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- shared parts ------------------------------------------------------------------------------

_PNDM_SD1 = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}

_EULER_SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

#: CLIP ViT-L/14 text tower (SD 1.x ``text_encoder``; SDXL ``text_encoder``).
_CLIP_L_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

#: OpenCLIP ViT-bigG/14 text tower with projection (SDXL ``text_encoder_2``).
_CLIP_BIGG_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

#: The safety checker SD v1.x repos ship: a CLIP ViT-L/14 vision tower and concept embeddings.
_SAFETY_CHECKER = {
    "projection_dim": 768,
    "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                    "num_attention_heads": 12},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "patch_size": 14, "image_size": 224},
}

# --- UNets -------------------------------------------------------------------------------------

_UNET_SD1 = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
}

# BK-SDM-small: one block per down stage (two per up stage) and no mid block.
_UNET_BK_SMALL = {**_UNET_SD1, "layers_per_block": 1, "mid_block_type": None}

_UNET_SDXL = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_eps": 1e-05,
}

# SSD-1B: SDXL with fewer transformer layers and a mid block without attention (reconstructed).
_UNET_SSD1B = {
    **_UNET_SDXL,
    "transformer_layers_per_block": [1, 2, 4],
    "reverse_transformer_layers_per_block": [[4, 4, 10], [2, 1, 1], 1],
    "mid_block_type": "UNetMidBlock2D",
}


@dataclass(frozen=True)
class Architecture:
    """Component configs of one model family member, in hub-repo form."""

    key: str  # the architecture's name (same as the seed model's registry key)
    pipeline: str  # diffusers pipeline class name
    unet: dict[str, Any]  # unet/config.json
    vae: dict[str, Any]  # vae/config.json
    text_encoders: tuple[dict[str, Any], ...]  # text_encoder[, text_encoder_2] configs
    scheduler: dict[str, Any]  # scheduler/scheduler_config.json (with _class_name)
    safety_checker: dict[str, Any] | None = None  # CLIPConfig of the safety checker, if shipped
    pad_tokens: tuple[str, ...] = field(default=("<|endoftext|>",))  # pad token per tokenizer
    #: Published reconstruction caveat, shown wherever the architecture is used.
    note: str = ""

    def copy(self) -> Architecture:
        """A deep copy: callers may edit the dicts freely."""
        return copy.deepcopy(self)


_ARCHS = {
    "sd-v1-4": Architecture(
        "sd-v1-4", "StableDiffusionPipeline", _UNET_SD1, _VAE, (_CLIP_L_TEXT,), _PNDM_SD1,
        safety_checker=_SAFETY_CHECKER,
    ),
    "bk-sdm-small": Architecture(
        "bk-sdm-small", "StableDiffusionPipeline", _UNET_BK_SMALL, _VAE, (_CLIP_L_TEXT,),
        _PNDM_SD1, safety_checker=_SAFETY_CHECKER,
    ),
    "sdxl-base": Architecture(
        "sdxl-base", "StableDiffusionXLPipeline", _UNET_SDXL,
        {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        ({**_CLIP_L_TEXT}, {**_CLIP_BIGG_TEXT}), _EULER_SDXL,
        pad_tokens=("<|endoftext|>", "!"),
    ),
    "ssd-1b": Architecture(
        "ssd-1b", "StableDiffusionXLPipeline", _UNET_SSD1B,
        {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        ({**_CLIP_L_TEXT}, {**_CLIP_BIGG_TEXT}), _EULER_SDXL,
        pad_tokens=("<|endoftext|>", "!"),
        note="SSD-1B's UNet config is reconstructed from public loaders, not read from the hub.",
    ),
}


def list_architectures() -> list[str]:
    """Names of the architectures that the ``tiny`` and ``arch`` sources can build."""
    return sorted(_ARCHS)


def get_architecture(key: str) -> Architecture:
    """Return a copy of the full-size architecture ``key``."""
    try:
        return _ARCHS[key].copy()
    except KeyError:
        raise KeyError(
            f"No architecture {key!r}: the tiny and arch sources know {list_architectures()}"
        ) from None


# --- miniatures --------------------------------------------------------------------------------

#: Tiny widths: UNet stages, VAE stages, text encoder hidden size per encoder.
_TINY_UNET_WIDTH = {320: 32, 640: 64, 1280: 64}
_TINY_VAE_WIDTHS = [16, 16, 32, 32]
_TINY_TEXT_HIDDEN = (32, 64)


def _tiny_text(cfg: dict[str, Any], hidden: int) -> dict[str, Any]:
    return {**cfg, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
            "num_attention_heads": 2, "projection_dim": hidden}


def miniature(arch: Architecture) -> Architecture:
    """Shrink every width of ``arch`` but keep its structure.

    Kept: block types, ``layers_per_block``, transformer depths (forward and reverse), the mid
    block type (or its absence), linear projection, the text_time embedding, the number of text
    encoders, the 4-stage VAE (so the latent is 1/8 of the image, as in the real models), the
    scheduler and the safety checker. Shrunk: channel widths, head counts, text encoder depth.
    """
    arch = arch.copy()
    texts = tuple(_tiny_text(cfg, h) for cfg, h in zip(arch.text_encoders, _TINY_TEXT_HIDDEN))
    unet = dict(arch.unet)
    unet["block_out_channels"] = [_TINY_UNET_WIDTH[c] for c in unet["block_out_channels"]]
    unet["norm_num_groups"] = 8
    unet["cross_attention_dim"] = sum(t["hidden_size"] for t in texts)
    heads = unet["attention_head_dim"]
    # diffusers reads SD's ``attention_head_dim`` as the number of heads; keep 2-8 per stage.
    unet["attention_head_dim"] = 2 if isinstance(heads, int) else [1, 2, 4][: len(heads)]
    if unet.get("addition_embed_type") == "text_time":
        unet["addition_time_embed_dim"] = 8
        unet["addition_embed_type_num_heads"] = 8
        # six micro-conditioning ids (sizes and crop) plus the pooled text embedding
        unet["projection_class_embeddings_input_dim"] = 6 * 8 + texts[-1]["projection_dim"]
    unet["sample_size"] = 8
    vae = {**arch.vae, "block_out_channels": list(_TINY_VAE_WIDTHS), "norm_num_groups": 8,
           "sample_size": 64}
    safety = None
    if arch.safety_checker is not None:
        safety = {
            "projection_dim": 32,
            "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                            "num_attention_heads": 2},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "patch_size": 8, "image_size": 32},
        }
    return Architecture(arch.key, arch.pipeline, unet, vae, texts, arch.scheduler, safety,
                        arch.pad_tokens, arch.note)


# --- how two UNets differ ----------------------------------------------------------------------

_MISSING = object()  # a key a config does not set and the constructor has no default for


def unet_differences(teacher, student) -> list[tuple[str, str, str]] | None:
    """How two models' UNet configs differ: ``(setting, teacher value, student value)`` rows.

    ``teacher`` and ``student`` are registry specs; each UNet config is its ``arch`` (the full
    size one), else ``local_dir/unet/config.json``. None when either config is not available
    (toy weights not built yet). A key one config omits takes ``UNet2DConditionModel``'s default
    (shown with "(default)"), so an omitted key equal to the other's value is no difference.
    """
    a, b = _unet_config(teacher), _unet_config(student)
    if a is None or b is None:
        return None
    defaults = _unet_defaults()
    rows = []
    for key in sorted(set(a) | set(b)):
        a_val = a.get(key, defaults.get(key, _MISSING))
        b_val = b.get(key, defaults.get(key, _MISSING))
        if _plain(a_val) == _plain(b_val):
            continue
        rows.append((key, _shown(a_val, key not in a), _shown(b_val, key not in b)))
    return rows


def _unet_config(spec) -> dict[str, Any] | None:
    if spec.arch:
        return get_architecture(spec.arch).unet
    if spec.local_dir:
        path = Path(spec.local_dir) / "unet" / "config.json"
        if path.is_file():
            return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    return None


@functools.lru_cache(maxsize=1)
def _unet_defaults() -> dict[str, Any]:
    # what a config that omits a key gets: the constructor's defaults (read-only, shared)
    import inspect

    from diffusers import UNet2DConditionModel

    params = inspect.signature(UNet2DConditionModel.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value  # JSON lists vs Python tuples


def _shown(value, from_defaults: bool) -> str:
    if value is _MISSING:
        return "—"
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else \
        "null" if value is None else str(value)
    return text + (" (default)" if from_defaults else "")
