"""Train the toy zoo from nothing: data, VAE, toy CLIP, teacher UNet, BK student, in that order.

Every part is seeded and runs a fixed number of steps, so a rerun with the same config, library
versions and thread count gives the same weights. The default config fits in about 30 minutes
on 2 CPU cores; :data:`QUICK` runs a couple of steps per part to prove the script works.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data, models

#: CLIP's image normalisation (OpenAI's constants), used by the toy CLIP's processor too.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (besides library versions and thread count)."""

    seed: int = 0  # base seed; each part derives its own
    n_images: int = 20_000  # synthetic training images (each caption ~n/90 times)
    threads: int = 2  # torch intra-op threads
    vae_steps: int = 800
    vae_batch: int = 32
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6  # SD's VAE used 1e-6: latents stay nearly deterministic
    clip_steps: int = 1000
    clip_batch: int = 96
    clip_lr: float = 2e-3
    teacher_steps: int = 1500
    teacher_batch: int = 64
    teacher_lr: float = 1e-3
    student_steps: int = 800
    student_batch: int = 64
    student_lr: float = 1e-3
    cfg_drop: float = 0.1  # fraction of captions replaced by "" (classifier-free guidance training)
    min_snr_gamma: float = 5.0  # Min-SNR loss weighting (Hang et al. 2023): faster convergence
    ema_decay: float = 0.995  # window ~200 steps: the runs are short and the lr anneals to 0
    kd_output_weight: float = 1.0  # BK-SDM's lambda_kd_output
    kd_feature_weight: float = 1.0  # BK-SDM's lambda_kd_feat


#: A few steps per part: proves the script runs end to end (the slow test); weights are useless.
QUICK = TrainConfig(
    n_images=270, vae_steps=2, vae_batch=8, clip_steps=2, clip_batch=8, teacher_steps=2,
    teacher_batch=8, student_steps=2, student_batch=8,
)


# --- helpers -------------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)


def _cosine_lr(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, min(warmup, total // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _EMA:
    """Exponential moving average of a model's parameters (with the usual warm-up of the decay)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]
        self.step = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.step += 1
        d = min(self.decay, (1 + self.step) / (10 + self.step))
        for s, p in zip(self.shadow, model.parameters()):
            s.lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)


def _optimizer_step(model, opt, sched, loss, ema=None) -> None:
    """One training step every trainer here takes: backward, clip gradients to norm 1, step the
    optimizer and the learning-rate schedule, then the EMA copy (if any)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    if ema is not None:
        ema.update(model)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the VAE's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def clip_normalize(images_01: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> CLIP-normalised pixels (what ``CLIPImageProcessor`` gives)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images_01 - mean) / std


def projected(output) -> torch.Tensor:
    """Projected CLIP features: transformers 5's ``get_*_features`` return a model output, 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to 77, exactly as ``StableDiffusionPipeline.encode_prompt`` makes them."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


# --- 1. VAE --------------------------------------------------------------------------------------


def train_vae(pixels: torch.Tensor, cfg: TrainConfig, progress: bool = True):
    """Train the ``AutoencoderKL`` on reconstruction (MSE) + a tiny KL term; return it in eval mode."""
    torch.manual_seed(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    vae = models.build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0, fused=True)
    sched = _cosine_lr(opt, cfg.vae_steps, warmup=50)
    bar = _progress(cfg.vae_steps, "vae", progress)
    for _ in range(cfg.vae_steps):
        x = pixels[torch.randint(len(pixels), (cfg.vae_batch,), generator=gen)]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + cfg.vae_kl_weight * post.kl().mean()
        _optimizer_step(vae, opt, sched, loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Encode images to latent means, set ``scaling_factor`` to 1/std (as SD did), return scaled latents."""
    latents = torch.cat([vae.encode(pixels[i : i + batch]).latent_dist.mean for i in range(0, len(pixels), batch)])
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    return latents * scale


# --- 2. toy CLIP ---------------------------------------------------------------------------------


def _used_token_ids(tokenizer) -> torch.Tensor:
    ids = tokenize(tokenizer, data.CAPTIONS + [""])
    return torch.unique(ids)


class _CompactEmbedding(torch.nn.Module):
    """Token embedding that holds rows only for the tokens the captions use (14 of 49,408).

    Training it instead of the full matrix saves the optimizer a 3.2M-row update per step; the
    rows are written back into a full-size embedding (zeros elsewhere) when training ends, so the
    saved model is a standard ``CLIPModel``, and its mostly-zero matrix compresses to nearly
    nothing in git. Unknown words therefore embed to zero: the toy knows only its captions.
    """

    def __init__(self, used_ids: torch.Tensor, full: torch.nn.Embedding):
        super().__init__()
        lookup = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        lookup[used_ids] = torch.arange(len(used_ids))
        self.register_buffer("lookup", lookup, persistent=False)
        self.used_ids = used_ids
        self.weight = torch.nn.Parameter(full.weight.detach()[used_ids].clone())

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        compact = self.lookup[input_ids]
        if (compact < 0).any():  # pragma: no cover - training only feeds caption tokens
            raise ValueError("a token outside the toy captions reached the compact embedding")
        return F.embedding(compact, self.weight)

    def to_full(self, num_embeddings: int) -> torch.nn.Embedding:
        full = torch.nn.Embedding(num_embeddings, self.weight.shape[1])
        with torch.no_grad():
            full.weight.zero_()
            full.weight[self.used_ids] = self.weight.detach()
        return full


def _augment_for_clip(x01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild blur, colour shift and noise, so the scorer also judges imperfect (generated) images."""
    n = x01.shape[0]
    kernel = torch.tensor([0.25, 0.5, 0.25])
    k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x01, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    use_blur = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    x = use_blur * blurred + (1 - use_blur) * x01
    x = x + (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 0.08
    x = x + torch.randn(x.shape, generator=gen) * 0.02
    return x.clamp(0, 1)


def train_clip(images: np.ndarray, caption_ids: np.ndarray, tokenizer, cfg: TrainConfig, progress: bool = True):
    """Train the toy ``CLIPModel``: each image against all 90 captions (no false negatives in a batch)."""
    torch.manual_seed(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    clip = models.build_clip().train()
    embeddings = clip.text_model.embeddings
    vocab = embeddings.token_embedding.num_embeddings
    embeddings.token_embedding = _CompactEmbedding(_used_token_ids(tokenizer), embeddings.token_embedding)
    clip.set_attn_implementation("eager")  # faster than SDPA's CPU kernels at these sizes
    ids = tokenize(tokenizer, data.CAPTIONS)
    # The text tower is causal and pools at the first end token, so padding after it changes
    # nothing the loss sees: train on the captions' own length (9 tokens), not 77.
    ids = ids[:, : int((ids != tokenizer.eos_token_id).sum(1).max()) + 1]
    pixels01 = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    labels_all = torch.from_numpy(caption_ids)
    opt = torch.optim.AdamW(clip.parameters(), lr=cfg.clip_lr, weight_decay=0.0, fused=True)
    sched = _cosine_lr(opt, cfg.clip_steps, warmup=50)
    bar = _progress(cfg.clip_steps, "clip", progress)
    for _ in range(cfg.clip_steps):
        idx = torch.randint(len(pixels01), (cfg.clip_batch,), generator=gen)
        x = clip_normalize(_augment_for_clip(pixels01[idx], gen))
        img = F.normalize(projected(clip.get_image_features(pixel_values=x)), dim=-1)
        txt = F.normalize(projected(clip.get_text_features(input_ids=ids)), dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100.0) * img @ txt.T
        loss = F.cross_entropy(logits, labels_all[idx])
        _optimizer_step(clip, opt, sched, loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    embeddings.token_embedding = embeddings.token_embedding.to_full(vocab)
    clip.set_attn_implementation("sdpa")
    return clip.eval().requires_grad_(False)


def text_encoder_from_clip(clip):
    """A ``CLIPTextModel`` holding the toy CLIP's text tower (what goes in ``text_encoder/``)."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(clip.config.text_config)
    # transformers 5 flattened CLIPTextModel (no inner ``text_model``); 4.x nests it.
    getattr(te, "text_model", te).load_state_dict(clip.text_model.state_dict())
    return te.eval().requires_grad_(False)


@torch.no_grad()
def prompt_states(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """Last hidden states (N, 77, width): what the pipeline feeds the UNet for each prompt."""
    return text_encoder(tokenize(tokenizer, prompts))[0]


# --- 3. teacher and student UNets ----------------------------------------------------------------


def _diffusion_batch(latents, caption_ids, states, cfg, batch, gen, noise_sched):
    """Sample a noised batch: (noisy latents, timesteps, text states, v target, min-SNR weights)."""
    idx = torch.randint(len(latents), (batch,), generator=gen)
    x0 = latents[idx]
    cid = caption_ids[idx].clone()
    cid[torch.rand(batch, generator=gen) < cfg.cfg_drop] = len(data.CAPTIONS)  # the "" prompt
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(noise_sched.config.num_train_timesteps, (batch,), generator=gen)
    xt = noise_sched.add_noise(x0, noise, t)
    target = noise_sched.get_velocity(x0, noise, t)  # v-prediction (see models.NOISE_SCHEDULE)
    ac = noise_sched.alphas_cumprod[t]
    snr = ac / (1 - ac)
    weight = snr.clamp(max=cfg.min_snr_gamma) / (snr + 1)  # Min-SNR-gamma, v-prediction form
    return xt, t, states[cid], target, weight


def _weighted_mse(pred, target, weight):
    return (weight * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()


def train_teacher(latents, caption_ids, states, cfg: TrainConfig, progress: bool = True):
    """Train the teacher UNet (v-prediction, Min-SNR weighting, caption dropout); EMA weights."""
    torch.manual_seed(cfg.seed + 3)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    noise_sched = models.build_noise_scheduler()
    unet = models.build_unet().train()
    ema = _EMA(unet, cfg.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.teacher_lr, weight_decay=0.01, fused=True)
    sched = _cosine_lr(opt, cfg.teacher_steps, warmup=100)
    bar = _progress(cfg.teacher_steps, "teacher unet", progress)
    for _ in range(cfg.teacher_steps):
        xt, t, cond, target, w = _diffusion_batch(latents, caption_ids, states, cfg, cfg.teacher_batch, gen, noise_sched)
        loss = _weighted_mse(unet(xt, t, cond).sample, target, w)
        _optimizer_step(unet, opt, sched, loss, ema)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    ema.copy_to(unet)
    return unet.eval().requires_grad_(False)


def init_student_from_teacher(student, teacher) -> list[str]:
    """Copy the teacher's weights into the kept blocks, as BK-SDM does; return the renamed keys.

    Down stages keep their first block (same names). Up stages keep the first and the *last* of
    three blocks: the student's ``up_blocks.i.{resnets,attentions}.1`` take the teacher's ``.2``
    (Nota-NetsPresso/BK-SDM, ``copy_weight_from_teacher``), whose skip input has the right width.
    """
    n_up = len(student.up_blocks)
    rename = {}
    for i in range(n_up):
        for part in ("resnets", "attentions"):
            rename[f"up_blocks.{i}.{part}.1."] = f"up_blocks.{i}.{part}.2."
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    renamed = []
    for key in s_state:
        src = key
        for new, old in rename.items():
            if key.startswith(new):
                src = old + key[len(new):]
                renamed.append(f"{src} -> {key}")
                break
        if t_state[src].shape != s_state[key].shape:  # pragma: no cover - guards a config change
            raise ValueError(f"teacher {src} {tuple(t_state[src].shape)} does not fit student {key} {tuple(s_state[key].shape)}")
        s_state[key].copy_(t_state[src])
    return renamed


def _stage_outputs(unet, store: dict[str, torch.Tensor]) -> list:
    """Hook every down and up stage; their outputs are BK-SDM's feature-distillation targets."""

    def hook(name):
        def fn(_module, _inputs, output):
            store[name] = output[0] if isinstance(output, tuple) else output

        return fn

    handles = [b.register_forward_hook(hook(f"down_blocks.{i}")) for i, b in enumerate(unet.down_blocks)]
    handles += [b.register_forward_hook(hook(f"up_blocks.{i}")) for i, b in enumerate(unet.up_blocks)]
    return handles


def train_student(teacher, latents, caption_ids, states, cfg: TrainConfig, progress: bool = True):
    """BK-SDM: block-removed student initialised from the teacher, trained with task + output KD + feature KD."""
    torch.manual_seed(cfg.seed + 4)
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    noise_sched = models.build_noise_scheduler()
    student = models.build_unet(student=True)
    init_student_from_teacher(student, teacher)
    student.train()
    teacher.eval()
    feats_t: dict[str, torch.Tensor] = {}
    feats_s: dict[str, torch.Tensor] = {}
    handles = _stage_outputs(teacher, feats_t) + _stage_outputs(student, feats_s)
    ema = _EMA(student, cfg.ema_decay)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.student_lr, weight_decay=0.01, fused=True)
    sched = _cosine_lr(opt, cfg.student_steps, warmup=50)
    bar = _progress(cfg.student_steps, "student unet (KD)", progress)
    try:
        for _ in range(cfg.student_steps):
            xt, t, cond, target, w = _diffusion_batch(latents, caption_ids, states, cfg, cfg.student_batch, gen, noise_sched)
            with torch.no_grad():
                out_t = teacher(xt, t, cond).sample
            out_s = student(xt, t, cond).sample
            loss_task = _weighted_mse(out_s, target, w)
            loss_out = F.mse_loss(out_s, out_t)
            loss_feat = sum(F.mse_loss(feats_s[k], feats_t[k]) for k in feats_t)
            loss = loss_task + cfg.kd_output_weight * loss_out + cfg.kd_feature_weight * loss_feat
            _optimizer_step(student, opt, sched, loss, ema)
            bar.update(1)
            bar.set_postfix(task=f"{loss_task.item():.4f}", out=f"{loss_out.item():.4f}",
                            feat=f"{loss_feat.item():.4f}", refresh=False)
    finally:
        for h in handles:
            h.remove()
        bar.close()
    ema.copy_to(student)
    return student.eval().requires_grad_(False)


# --- 4. save -------------------------------------------------------------------------------------

MODEL_CARD = """# {name}: a toy model trained on synthetic shapes

Not a real Stable Diffusion checkpoint. {what} Trained by `python -m dsdcompare.toyzoo train`
on 32x32 synthetic images of a circle, square or triangle in one of six colours on a background
of another colour ("a red circle on a blue background"); it knows nothing else. Native size 32x32,
{steps} steps, guidance {guidance}. Regenerate with the command above; see ../MANIFEST.json.
"""


def _pipeline(unet, vae, text_encoder, tokenizer):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=models.build_sampling_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def _half_copy(module):
    """fp16 copy for saving: halves the files; diffusers loads fp16 files back into fp32 models.

    (``torch.nn.Module.to`` directly: diffusers' own ``to`` warns about modules it would keep in
    fp32 for fp16 *compute*, which does not apply to storage.)
    """
    return torch.nn.Module.to(copy.deepcopy(module), dtype=torch.float16)


@torch.no_grad()
def fp16_rounding_error(unet, vae, states: torch.Tensor) -> dict[str, float]:
    """Largest change that storing the UNet and VAE in fp16 makes to their outputs (fp32 compute)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, models.LATENT_CHANNELS, models.LATENT_SIZE, models.LATENT_SIZE, generator=gen)
    t = torch.linspace(0, 999, 8).long()
    cond = states[:8]

    def rounded(module):
        return _half_copy(module).float()

    out, out16 = unet(x, t, cond).sample, rounded(unet)(x, t, cond).sample
    img, img16 = vae.decode(x).sample, rounded(vae).decode(x).sample
    return {"unet_output_max_abs": float((out - out16).abs().max()), "unet_output_rms": float(out.pow(2).mean().sqrt()),
            "vae_pixels_max_abs_0_255": float((img - img16).abs().max() * 127.5)}


def save_all(out: Path, *, vae, clip, teacher, student, tokenizer, info: dict) -> None:
    """Write toy-teacher/, toy-student/, toy-clip/ (save_pretrained, safetensors), TRAINING.json, MANIFEST.json."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    out.mkdir(parents=True, exist_ok=True)
    for name in ("toy-teacher", "toy-student", "toy-clip"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    text_encoder = text_encoder_from_clip(clip)
    vae_h = _half_copy(vae)
    for name, unet, what in (
        ("toy-teacher", teacher, "A miniature SD v1-style teacher (StableDiffusionPipeline)."),
        ("toy-student", student, "Its BK-SDM-small-style student: blocks removed, distilled from toy-teacher."),
    ):
        pipe = _pipeline(_half_copy(unet), vae_h, text_encoder, tokenizer)
        pipe.save_pretrained(out / name, safe_serialization=True)
        (out / name / "README.md").write_text(MODEL_CARD.format(
            name=name, what=what, steps=models.DEFAULT_STEPS, guidance=models.DEFAULT_GUIDANCE))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            do_resize=True, size={"shortest_edge": data.IMAGE_SIZE}, do_center_crop=True,
            crop_size={"height": data.IMAGE_SIZE, "width": data.IMAGE_SIZE}, image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
        ),
        tokenizer=tokenizer,
    )
    clip.save_pretrained(out / "toy-clip", safe_serialization=True)
    processor.save_pretrained(out / "toy-clip")
    (out / "toy-clip" / "README.md").write_text(MODEL_CARD.format(
        name="toy-clip", what="A miniature CLIP scorer (CLIPModel + CLIPProcessor), fp32.",
        steps=models.DEFAULT_STEPS, guidance=models.DEFAULT_GUIDANCE))
    (out / "TRAINING.json").write_text(json.dumps(info, indent=2) + "\n")
    write_manifest(out)


def write_manifest(out: Path) -> dict:
    """sha256 and size of every file under ``out`` (but the manifest itself) into MANIFEST.json."""
    import hashlib

    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json"):
        files[path.relative_to(out).as_posix()] = {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size,
        }
    manifest = {"files": files, "total_bytes": sum(f["bytes"] for f in files.values())}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- all of it -----------------------------------------------------------------------------------


def train_all(out: str | Path, cfg: TrainConfig = TrainConfig(), progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Build the data, train every part, save the zoo into ``out``; return the training record."""
    from ..tokenizers import build_clip_tokenizer

    out = Path(out)
    torch.set_num_threads(cfg.threads)
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    load_before = os.getloadavg()[0]

    def timed(name, fn, *args, **kwargs):
        # Wall and CPU time both: on a shared machine wall time measures the neighbours too.
        start, cpu = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 1)
        cpu_seconds[name] = round(time.process_time() - cpu, 1)
        log(f"{name}: {seconds[name]:.1f} s wall, {cpu_seconds[name]:.1f} s CPU")
        return result

    # 1. Data and tokenizer.
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_clip_tokenizer(tmp)
    images, caption_ids = timed("data", data.make_dataset, cfg.n_images, cfg.seed)
    pixels = to_pixels(images)
    # 2. VAE, then the latents every UNet trains on.
    vae = timed("vae", train_vae, pixels, cfg, progress)
    latents = timed("encode latents", encode_latents, vae, pixels)
    # 3. Toy CLIP; its text tower becomes the frozen text encoder.
    clip = timed("clip", train_clip, images, caption_ids, tokenizer, cfg, progress)
    text_encoder = text_encoder_from_clip(clip)
    states = prompt_states(text_encoder, tokenizer, data.CAPTIONS + [""])
    cids = torch.from_numpy(caption_ids)
    # 4. Teacher, then the student distilled from it.
    teacher = timed("teacher", train_teacher, latents, cids, states, cfg, progress)
    student = timed("student", train_student, teacher, latents, cids, states, cfg, progress)
    # 5. Save.
    import diffusers
    import transformers

    info = {
        "command": "python -m dsdcompare.toyzoo train",
        "config": dataclasses.asdict(cfg),
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "cpu_seconds": cpu_seconds,
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "machine": platform.machine(),
        "params": {
            "vae": sum(p.numel() for p in vae.parameters()),
            "clip": sum(p.numel() for p in clip.parameters()),
            "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
            "teacher_unet": sum(p.numel() for p in teacher.parameters()),
            "student_unet": sum(p.numel() for p in student.parameters()),
        },
        "vae_scaling_factor": vae.config.scaling_factor,
    }
    info["fp16_rounding"] = {name: fp16_rounding_error(unet, vae, states)
                             for name, unet in (("teacher", teacher), ("student", student))}
    timed("save", save_all, out, vae=vae, clip=clip, teacher=teacher, student=student, tokenizer=tokenizer, info=info)
    return info
