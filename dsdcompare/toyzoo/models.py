"""Architectures of the toy zoo, as data: every component in the exact Stable Diffusion format.

* VAE: ``AutoencoderKL``, 32x32 RGB <-> 16x16x4 latents (2x downsampling, SD's 4 latent channels).
* Toy CLIP: ``CLIPModel`` (ViT on 4x4 patches, text transformer on the real 49,408-token CLIP BPE
  vocabulary). Its trained, frozen text tower *is* the pipelines' ``text_encoder``, exactly as
  SD v1 uses OpenAI's CLIP ViT-L/14 text tower.
* Teacher UNet: ``UNet2DConditionModel`` with SD v1's block layout shrunk to three stages.
* Student UNet: the teacher with BK-SDM-small's block removal: ``layers_per_block=1`` (one block
  per down stage, two per up stage) and no mid block.
* Noise schedule and parameterisation: DDPM's *linear* betas (SNR at t=999 is 4e-5, nearly zero)
  with *v-prediction*, sampled with trailing timestep spacing (so sampling starts at t=999), as
  Lin et al. recommend in "Common Diffusion Noise Schedules and Sample Steps are Flawed".
  SD v1's ``scaled_linear`` betas leave 7% of the signal at the first 25-step timestep; on 16x16
  latents that leak carries the mean colour, so a model learns to read the background colour
  from the noise instead of the prompt. Near zero SNR, epsilon-prediction fails the other way:
  predicting the noise is trivial there, and the image is decided by errors amplified 150x
  (measured: a 1200-step epsilon teacher got shape 31% and both colours 11%, and the true
  caption did not lower its loss at t >= 900). v-prediction predicts the image there instead.
* Scheduler: PNDM, SD v1's default sampler (it accepts v-prediction), 25 steps.
"""

from __future__ import annotations

import copy
from typing import Any

from ..tokenizers import VOCAB_SIZE
from .data import IMAGE_SIZE

LATENT_CHANNELS = 4
LATENT_SIZE = IMAGE_SIZE // 2
#: Width of the text tower's hidden states = the UNets' cross-attention dimension.
TEXT_WIDTH = 64

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": LATENT_CHANNELS,
    "norm_num_groups": 8,
    "sample_size": IMAGE_SIZE,
    "scaling_factor": 1.0,  # replaced after training by 1 / std of the latents, as SD did (0.18215)
}

CLIP_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": TEXT_WIDTH,
    "intermediate_size": 4 * TEXT_WIDTH,
    "projection_dim": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}

CLIP_VISION_CONFIG: dict[str, Any] = {
    "image_size": IMAGE_SIZE,
    "patch_size": 4,
    "num_channels": 3,
    "hidden_size": 64,
    "intermediate_size": 256,
    "projection_dim": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "hidden_act": "quick_gelu",
}

TEACHER_UNET_CONFIG: dict[str, Any] = {
    "sample_size": LATENT_SIZE,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 2,
    "cross_attention_dim": TEXT_WIDTH,
    "attention_head_dim": 4,  # diffusers' legacy name: this is the number of heads, as in SD v1
    "norm_num_groups": 16,
}


def student_unet_config() -> dict[str, Any]:
    """The teacher's config with BK-SDM-small's removals (one block per down stage, no mid block)."""
    cfg = copy.deepcopy(TEACHER_UNET_CONFIG)
    cfg["layers_per_block"] = 1
    cfg["mid_block_type"] = None
    return cfg


#: The noise schedule the UNets are trained on (DDPM's linear betas) and sampled with.
NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "v_prediction",
}

#: The sampling scheduler saved with both pipelines (``scheduler/scheduler_config.json``).
SAMPLING_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    **NOISE_SCHEDULE,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,  # unused by trailing spacing; 1 silences diffusers' SD-v1 config check
    "timestep_spacing": "trailing",
}

#: Recommended generation settings live in the package root (importable without torch).
from . import DEFAULT_GUIDANCE, DEFAULT_STEPS  # noqa: E402,F401


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def build_clip():
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=CLIP_TEXT_CONFIG, vision_config=CLIP_VISION_CONFIG, projection_dim=64)
    return CLIPModel(cfg)


def build_unet(student: bool = False):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(student_unet_config() if student else TEACHER_UNET_CONFIG))


def build_noise_scheduler():
    """The DDPM scheduler used to add noise in training (same betas as the sampler)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**NOISE_SCHEDULE)


def build_sampling_scheduler():
    from diffusers import PNDMScheduler

    cfg = {k: v for k, v in SAMPLING_SCHEDULER.items() if not k.startswith("_")}
    return PNDMScheduler(**cfg)
