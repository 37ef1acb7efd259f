"""What a profile measures: the stages (components), the call that runs each, and the checks.

Each stage is called the way the pipeline calls it (see :func:`stage_calls`), both to count its
FLOPs on the meta device and to time it on a real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import InputError
from ..limits import SIZE

#: The components profiled, in pipeline order.
PROFILE_STAGES = ("text", "unet", "vae", "safety")
#: Display names of the stages.
STAGE_LABELS = {"text": "text encoding", "unet": "UNet step", "vae": "VAE decode",
                "safety": "safety checker"}
#: Pipeline modules each stage runs.
STAGE_MODULES = {"text": ("text_encoder", "text_encoder_2"), "unet": ("unet",), "vae": ("vae",),
                 "safety": ("safety_checker",)}
#: The prompt encoded while timing (its content does not change the cost: CLIP pads to 77).
PROMPT = "a photograph of an astronaut riding a horse on the moon"
#: Weight sources a profile can use.
PROFILE_SOURCES = ("arch", "tiny", "hub", "local")


class ProfileError(InputError):
    """A profiling setting is invalid; the message names the value and the remedy."""


# --- checks ---------------------------------------------------------------------------------------

def check_size(size: int) -> int:
    """Return ``size`` or raise naming it: an image side from the limits table (``SIZE``)."""
    if not SIZE.ok(size):
        hint = ""
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            hint = f"; try {max(SIZE.lo, min(SIZE.hi, round(size / SIZE.multiple) * SIZE.multiple))}"
        raise ProfileError(f"size must be {SIZE.describe()}, got {size!r}{hint} (the VAE works "
                           f"on 8x8 pixel blocks)")
    return size


def check_stages(stages: Iterable[str]) -> tuple[str, ...]:
    """Return ``stages`` as a tuple, or raise naming the unknown ones."""
    stages = tuple(stages)
    bad = [s for s in stages if s not in PROFILE_STAGES]
    if bad:
        raise ProfileError(f"unknown component(s) {bad}: choose from {list(PROFILE_STAGES)}")
    return stages


def check_dtype(device: str, dtype) -> list[str]:
    """Raise :class:`ProfileError` if ``device`` cannot compute in ``dtype``; return caveats.

    bf16 needs an Ampere or newer GPU on CUDA. On a CPU both half types run; without native
    support (AVX512-BF16/AMX, AVX512-FP16) they are emulated and slower than fp32: a caveat.
    """
    import torch

    from ..loading import dtype_name

    kind = device.split(":")[0]
    if kind == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        gpu = torch.cuda.get_device_name(device)
        raise ProfileError(f"dtype bf16 was asked for on {device} ({gpu}), "
                           f"which has no bf16 support (it needs compute capability 8.0+); "
                           f"use --dtype fp16 on this GPU")
    if kind == "mps" and dtype == torch.bfloat16 and not _mps_bf16_ok():
        raise ProfileError("dtype bf16 was asked for on mps, which needs macOS 14 or newer; "
                           "use --dtype fp16 or fp32")
    notes = []
    mkldnn = torch.ops.mkldnn
    if kind == "cpu" and dtype == torch.bfloat16 and not mkldnn._is_mkldnn_bf16_supported():
        notes.append("bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32")
    if kind == "cpu" and dtype == torch.float16 and not mkldnn._is_mkldnn_fp16_supported():
        notes.append(f"{dtype_name(dtype)} is emulated on this CPU (no native fp16): slower "
                     f"than fp32; bf16 is the CPU's half precision")
    return notes


def _mps_bf16_ok() -> bool:
    import torch

    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


# --- the stage calls ------------------------------------------------------------------------------

def stage_calls(pipe, size: int, *, device: str, dtype, cfg: bool, seed: int,
                for_flops: bool = False) -> dict[str, Callable[[], Any]]:
    """One callable per stage, each doing what the pipeline does for that stage.

    ``for_flops``: the pipeline's modules are on the meta device, where only the counted work
    can run (no fp32 round trip of the VAE, no numpy in the safety checker).
    """
    import torch

    gen = torch.Generator("cpu").manual_seed(seed)
    dev = torch.device(device)

    def rand(*shape):
        return torch.randn(shape, generator=gen).to(device=dev, dtype=dtype)

    # 1. text: exactly the pipeline's encode_prompt (tokenizing included)
    def text():
        return pipe.encode_prompt(prompt=PROMPT, device=dev, num_images_per_prompt=1,
                                  do_classifier_free_guidance=cfg)

    calls = {"text": text,
             "unet": _unet_call(pipe, size, dev, dtype, cfg, rand),
             "vae": _vae_call(pipe, size, for_flops, rand)}
    safety = _safety_call(pipe, size, dev, dtype, for_flops, gen, rand)
    if safety is not None:
        calls["safety"] = safety
    return calls


def _unet_call(pipe, size: int, dev, dtype, cfg: bool, rand) -> Callable[[], Any]:
    # 2. unet: one step; inputs shaped as the pipeline makes them
    import torch

    unet, cfg_u = pipe.unet, pipe.unet.config
    batch = 2 if cfg else 1
    latent = size // pipe.vae_scale_factor
    sample = rand(batch, cfg_u.in_channels, latent, latent)
    hidden = rand(batch, 77, cfg_u.cross_attention_dim)
    timestep = torch.tensor(999, device=dev)
    kwargs: dict[str, Any] = {}
    if cfg_u.addition_embed_type == "text_time":
        time_dim = cfg_u.addition_time_embed_dim
        n_ids = 6  # SDXL micro-conditioning: original size, crop corner, target size
        pooled = cfg_u.projection_class_embeddings_input_dim - n_ids * time_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": rand(batch, pooled),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, device=dev,
                                     dtype=dtype)}

    def unet_step():
        return unet(sample, timestep, encoder_hidden_states=hidden, return_dict=False, **kwargs)[0]

    return unet_step


def _vae_call(pipe, size: int, for_flops: bool, rand) -> Callable[[], Any]:
    # 3. vae: decode one image; SDXL pipelines decode in fp32 when the VAE is fp16 and its
    #    config says force_upcast (it overflows in fp16), casting the VAE there and back
    import torch

    vae = pipe.vae
    latent = size // pipe.vae_scale_factor
    upcast = vae_upcasts(pipe)
    latents = rand(1, vae.config.latent_channels, latent, latent) / vae.config.scaling_factor

    def decode():
        if upcast and not for_flops:
            torch.nn.Module.to(vae, dtype=torch.float32)
            try:
                return vae.decode(latents.float(), return_dict=False)[0]
            finally:
                torch.nn.Module.to(vae, dtype=torch.float16)
        return vae.decode(latents, return_dict=False)[0]

    return decode


def _safety_call(pipe, size: int, dev, dtype, for_flops: bool, gen,
                 rand) -> Callable[[], Any] | None:
    # 4. safety checker: what run_safety_checker does (post-processing, CLIP vision tower)
    import torch

    checker = getattr(pipe, "safety_checker", None)
    if checker is None:
        return None
    image = (torch.rand((1, 3, size, size), generator=gen) * 2 - 1).to(dev, dtype)
    crop = pipe.feature_extractor.crop_size
    clip_input = rand(1, 3, crop["height"], crop["width"])

    def safety():
        if for_flops:  # the checker itself moves scores to numpy: count its vision tower
            pooled_out = checker.vision_model(clip_input)[1]
            return checker.visual_projection(pooled_out)
        return pipe.run_safety_checker(image, dev, dtype)

    return safety


def vae_upcasts(pipe) -> bool:
    """Whether ``pipe`` decodes in fp32 although its VAE is fp16 (SDXL's ``force_upcast``)."""
    import torch

    # only pipelines that implement the upcast do it (StableDiffusionXLPipeline has upcast_vae)
    return (hasattr(type(pipe), "upcast_vae") and pipe.vae.dtype == torch.float16
            and bool(getattr(pipe.vae.config, "force_upcast", False)))


__all__ = ["PROFILE_SOURCES", "PROFILE_STAGES", "PROMPT", "STAGE_LABELS", "STAGE_MODULES",
           "ProfileError", "check_dtype", "check_size", "check_stages", "stage_calls",
           "vae_upcasts"]
