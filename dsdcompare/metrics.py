"""Quality metrics: CLIP score with provenance, image checks, teacher/student fidelity.

CLIP score is torchmetrics' ``CLIPScore`` (100 x cosine, clamped at 0), fed uint8 images. The
released torchmetrics 1.9.0 breaks with transformers 5 (its ``get_*_features`` return a
``BaseModelOutputWithPooling``, torchmetrics issue #3407) and accepts only the hub names it lists;
its callable ``model_name_or_path`` form fixes both, so every ``transformers`` checkpoint (hub
name, local directory, offline stand-in) goes through ``CLIPScore(model_name_or_path=lambda:
(model, processor))`` with a small adapter around the model.

Checkpoint names accepted by :func:`load_scorer`:

- a hub name torchmetrics lists (:data:`TORCHMETRICS_CHECKPOINTS`), default
  ``openai/clip-vit-large-patch14``; loaded with ``CLIPModel.from_pretrained`` from the Hugging
  Face cache (``HF_HUB_OFFLINE`` / ``HF_HOME`` are honoured);
- a local directory holding a saved ``CLIPModel`` and ``CLIPProcessor``;
- ``"tiny"`` (:data:`SCORER_STANDIN`): a tiny random CLIP built locally, for tests and the offline
  demo. Its scores are meaningless;
- ``"open_clip:<arch>/<pretrained tag>"``, e.g. ``"open_clip:ViT-g-14/laion2b_s34b_b88k"`` (the
  BK-SDM paper's scorer), ``"open_clip:hf-hub:<org>/<repo>"``, ``"open_clip:local-dir:<path>"``, or
  ``"open_clip:<arch>"`` (random weights, a stand-in). open_clip scores are **raw cosine**, the
  scale the BK-SDM paper reports; they are not comparable with the 100 x cosine scale.

Scores from different checkpoints or scales are never comparable; every :class:`Score` says which
it is.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .errors import DsdCompareError

#: Checkpoint name of the offline stand-in scorer (a tiny random CLIP built locally).
SCORER_STANDIN = "tiny"
#: torchmetrics' own default, and ours.
DEFAULT_CHECKPOINT = "openai/clip-vit-large-patch14"
#: Prefix that selects the open_clip backend: ``open_clip:<arch>[/<pretrained tag>]``.
OPEN_CLIP_PREFIX = "open_clip:"

BACKEND_TORCHMETRICS = "torchmetrics"
BACKEND_OPEN_CLIP = "open_clip"

SCALE_CLIPSCORE = "100 x cosine, clamped at 0"
SCALE_RAW_COSINE = "raw cosine"
# Scales of the other quality metrics (dsdcompare.scorers); each names its metric, so a stored
# score says which metric it is even without its checkpoint.
SCALE_HPS = "HPS v2.1 cosine"  # cosine of HPS v2.1's image and text embeddings (not x100)
SCALE_PICKSCORE = "PickScore: logit scale x cosine"  # the model's exp(logit_scale) times cosine
SCALE_IMAGEREWARD = "ImageReward: standardised reward"  # (reward - 0.1672) / 1.0333, upstream's
SCALE_LPIPS = "LPIPS distance to the teacher"  # 0 for identical images; lower is closer

#: Hub names torchmetrics 1.9.0 lists for ``CLIPScore``, with the config overrides it applies.
#: ``jinaai/jina-clip-v2`` is left out on purpose: it needs ``trust_remote_code=True`` (code from the
#: hub runs here) and has a different tokenizer and feature API that cannot be checked offline.
TORCHMETRICS_CHECKPOINTS: dict[str, dict[str, Any]] = {
    "openai/clip-vit-base-patch16": {},
    "openai/clip-vit-base-patch32": {},
    "openai/clip-vit-large-patch14-336": {},
    "openai/clip-vit-large-patch14": {},
    # LongCLIP: 248 text positions (torchmetrics sets the same override).
    "zer0int/LongCLIP-L-Diffusers": {"max_position_embeddings": 248},
    "zer0int/LongCLIP-GmP-ViT-L-14": {"max_position_embeddings": 248},
}

STANDIN_NOTE = ("offline stand-in scorer (random weights, or the toy CLIP trained on synthetic "
                "shapes): scores are meaningless for real models")

#: Version of the stand-in's recipe; a new recipe gets a new folder so old caches never mix in.
_STANDIN_DIR_NAME = "tiny-clip-v1"
_STANDIN_SEED = 0
#: open_clip model names that carry their own weights (no pretrained tag after them).
_OPEN_CLIP_SCHEMAS = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class ScaleInfo:
    """Facts about a score scale (torchmetrics style: attributes, not prose)."""

    name: str  # the scale's label, as stored in Score.scale
    higher_is_better: bool  # a better prompt match gives a higher number
    lower_bound: float  # smallest possible value
    upper_bound: float  # largest possible value


SCALES: dict[str, ScaleInfo] = {
    SCALE_CLIPSCORE: ScaleInfo(SCALE_CLIPSCORE, True, 0.0, 100.0),
    SCALE_RAW_COSINE: ScaleInfo(SCALE_RAW_COSINE, True, -1.0, 1.0),
    SCALE_HPS: ScaleInfo(SCALE_HPS, True, -1.0, 1.0),
    SCALE_PICKSCORE: ScaleInfo(SCALE_PICKSCORE, True, -100.0, 100.0),  # CLIP caps exp(logit_scale) at 100
    SCALE_IMAGEREWARD: ScaleInfo(SCALE_IMAGEREWARD, True, float("-inf"), float("inf")),
    SCALE_LPIPS: ScaleInfo(SCALE_LPIPS, False, 0.0, float("inf")),
}
#: True for every CLIP score scale here (see :data:`SCALES`).
HIGHER_IS_BETTER = True

class LongPromptWarning(UserWarning):
    """The prompt has more tokens than the scorer's text encoder reads; only a prefix was scored."""


class ScorerUnavailable(DsdCompareError, RuntimeError):
    """A CLIP scorer could not be loaded (not cached offline, missing directory, missing package)."""


@dataclass
class Score:
    """CLIP score of one prompt's images, with everything needed to judge the number."""

    value: float | None  # mean over included images on `scale` (torchmetrics: max(0, mean of 100 x cos)); None if none scored
    per_image: list[float | None]  # score of each image on `scale`, in input order; None where the image was excluded
    excluded: list[str | None]  # reason each image was excluded ("NaN/inf pixels", "all black", "constant image") or None
    backend: str  # "torchmetrics" | "open_clip"
    checkpoint: str  # e.g. "openai/clip-vit-large-patch14", "open_clip:ViT-g-14/laion2b_s34b_b88k", a local path, "tiny"
    scale: str  # "100 x cosine, clamped at 0" | "raw cosine"; scores on different scales are not comparable
    standin: bool  # True: random/toy weights; scores are meaningless for real models
    prompt_tokens: int | None  # tokens in the prompt by the scorer's tokenizer, without BOS/EOS; None if not tokenized
    max_prompt_tokens: int | None  # most prompt tokens the scorer reads (context minus BOS/EOS, 75 for CLIP)
    truncated: bool  # True: the prompt was longer than max_prompt_tokens and only a prefix was scored
    scored_prompt: str | None  # the text actually scored: the prompt, or the decoded prefix when truncated
    error: str | None = None  # why there is no score (scorer unavailable, every image excluded)
    note: str | None = None  # a caveat to show next to the number (e.g. stand-in scorer)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value means a better prompt match (always, for CLIP scores)."""
        return SCALES[self.scale].higher_is_better

    @classmethod
    def from_dict(cls, data: dict) -> Score:
        """A Score from its ``asdict`` form (e.g. a stored record); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# images as scorers see them, and fidelity to a teacher, live in dsdcompare.fidelity
from .fidelity import in_input_order, none_scored, screen  # noqa: E402

# --------------------------------------------------------------------------------------------
# The scorer (controller)
# --------------------------------------------------------------------------------------------


class ClipScorer:
    """Holds one CLIP checkpoint and scores images against a prompt.

    Thread-safe enough for Streamlit's shared ``cache_resource``: one lock serialises scoring
    (the torchmetrics metric keeps state between ``update`` and ``compute``). Build it with
    :func:`load_scorer`.
    """

    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, backend, *, checkpoint: str, standin: bool):
        self._backend = backend
        self._lock = threading.Lock()
        self.checkpoint = checkpoint  # as the user named it; recorded in every Score
        self.backend = backend.name  # "torchmetrics" | "open_clip"
        self.scale = backend.scale  # see SCALES
        self.standin = standin  # True: scores are meaningless for real models
        self.max_prompt_tokens = backend.max_prompt_tokens

    def __repr__(self) -> str:
        return f"ClipScorer({self.checkpoint!r}, backend={self.backend!r}, scale={self.scale!r}, standin={self.standin})"

    def score(self, images, prompt: str) -> Score:
        """Score ``images`` against ``prompt``.

        Args:
            images: a list of PIL images or HxWx3 / 3xHxW uint8 or [0, 1] float arrays/tensors, or
                one BxHxWx3 / Bx3xHxW array/tensor, or a single image.
            prompt: the text the images were generated from.

        Returns:
            A :class:`Score`. Images that fail :func:`check_image` are excluded (``per_image`` None,
            reason in ``excluded``); if none is left, ``value`` is None and ``error`` says why.
            Prompts longer than the scorer reads give a :class:`LongPromptWarning` and
            ``truncated=True``.
        """
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a string, got {type(prompt).__name__}.")
        # 1. Check inputs: exclude unusable images, convert the rest to uint8
        excluded, included = screen(images)

        with self._lock:
            # 2. Count tokens with the scorer's own tokenizer; over-long prompts are truncated
            ids = self._backend.token_ids(prompt)
            limit = self._backend.max_prompt_tokens
            truncated = len(ids) > limit
            scored_prompt = self._backend.decode(ids[:limit]) if truncated else prompt
            if truncated:
                warnings.warn(
                    LongPromptWarning(
                        f"The prompt has {len(ids)} tokens but {self.checkpoint!r} reads at most {limit}; "
                        f"only the first {limit} were scored: {scored_prompt!r}"
                    ),
                    stacklevel=2,
                )
            # 3. Score the included images
            scores, value = self._backend.score(included, prompt) if included else ([], None)

        # 4. Put the per-image scores back in input order
        per_image = in_input_order(scores, excluded)
        error = none_scored(excluded) if value is None else None
        return Score(
            value=value,
            per_image=per_image,
            excluded=excluded,
            backend=self.backend,
            checkpoint=self.checkpoint,
            scale=self.scale,
            standin=self.standin,
            prompt_tokens=len(ids),
            max_prompt_tokens=limit,
            truncated=truncated,
            scored_prompt=scored_prompt,
            error=error,
            note=STANDIN_NOTE if self.standin else None,
        )


def backend_of(checkpoint: str) -> str:
    """Name of the backend that scores ``checkpoint``: ``"open_clip"`` or ``"torchmetrics"``."""
    return BACKEND_OPEN_CLIP if checkpoint.startswith(OPEN_CLIP_PREFIX) else BACKEND_TORCHMETRICS


def score_unavailable(checkpoint: str, reason: str, *, n_images: int = 0) -> Score:
    """A :class:`Score` with no value, for Results whose scorer could not be loaded or run."""
    backend = backend_of(checkpoint)
    return Score(
        value=None,
        per_image=[None] * n_images,
        excluded=[None] * n_images,
        backend=backend,
        checkpoint=checkpoint,
        scale=SCALE_RAW_COSINE if backend == BACKEND_OPEN_CLIP else SCALE_CLIPSCORE,
        standin=checkpoint == SCORER_STANDIN,
        prompt_tokens=None,
        max_prompt_tokens=None,
        truncated=False,
        scored_prompt=None,
        error=reason,
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _unavailable(checkpoint: str, reason: str) -> ScorerUnavailable:
    return ScorerUnavailable(
        f"CLIP scorer {checkpoint!r} is not available: {reason}\n"
        f"Remedies: run once with internet access so it is cached (Hugging Face cache, HF_HOME), "
        f"or pass a local directory holding a saved CLIPModel and CLIPProcessor, "
        f"or use the offline stand-in {SCORER_STANDIN!r} (its scores are meaningless)."
    )


def standin_scorer_dir() -> Path:
    """Build (once, deterministically) and return the folder of the offline stand-in CLIP.

    A tiny random ``CLIPModel`` (hidden 32, 2 layers, 32 px images, patch 8) with the real CLIP BPE
    tokenizer, saved with ``save_pretrained`` under the dsdcompare cache and then loaded like any
    local directory. Building writes to a temporary folder and renames it, so concurrent builders
    never see half a model.
    """
    import shutil
    import tempfile

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from dsdcompare.paths import cache_dir
    from dsdcompare.tokenizers import build_clip_tokenizer

    parent = cache_dir("scorers")
    target = parent / _STANDIN_DIR_NAME
    if (target / "config.json").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{_STANDIN_DIR_NAME}-", dir=parent))
    try:
        tokenizer = build_clip_tokenizer(tmp)
        size = 32
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
        config = CLIPConfig(
            text_config=dict(
                vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=size, patch_size=8,
            ),
            projection_dim=32,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_STANDIN_SEED)
            model = CLIPModel(config)
        model.save_pretrained(tmp)
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; its copy is identical
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_transformers(checkpoint: str, source: str, overrides: dict, device: str):
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    from .loading import quiet_loading_bars

    try:
        config = CLIPConfig.from_pretrained(source)
        for key, value in overrides.items():
            setattr(config.text_config, key, value)
        # safetensors only, like pipelines: a pickled pytorch_model.bin can run code on load
        with quiet_loading_bars():  # its per-weight bar would interleave with the CLI's progress
            model = CLIPModel.from_pretrained(source, config=config, use_safetensors=True)
        processor = CLIPProcessor.from_pretrained(source)
    except (OSError, ValueError) as err:  # offline and not cached, no such repo, files missing
        raise _unavailable(checkpoint, f"{type(err).__name__}: {err}") from err
    from .clip_backends import TorchmetricsBackend

    return TorchmetricsBackend(model, processor, device)


def _require_safetensors(checkpoint: str, folder: Path) -> None:
    """Refuse a local scorer folder without ``.safetensors`` weights: dsdcompare never loads
    pickled ones (``pytorch_model.bin``, ``*.pt``), which can run code when loaded."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        raise _unavailable(checkpoint, f"{folder} holds no .safetensors weights"
                           + (f" (only pickled {', '.join(pickled[:3])})" if pickled else "")
                           + "; dsdcompare loads safetensors only: save the model with "
                             "save_pretrained(folder, safe_serialization=True)")


def _parse_open_clip(checkpoint: str) -> tuple[str, str | None]:
    """``open_clip:<arch>[/<tag>]`` → (arch, tag); ``hf-hub:`` and ``local-dir:`` names keep their slashes."""
    name = checkpoint[len(OPEN_CLIP_PREFIX):]
    if not name:
        raise ValueError(f"Empty open_clip model in {checkpoint!r}; expected 'open_clip:<arch>[/<pretrained tag>]'.")
    if name.startswith(_OPEN_CLIP_SCHEMAS):
        return name, None
    arch, _, tag = name.partition("/")
    return arch, tag or None


def _open_clip_random_weights(checkpoint: str) -> bool:
    """True for ``open_clip:<arch>`` without a pretrained tag: the model keeps its random init."""
    name, tag = _parse_open_clip(checkpoint)
    return tag is None and not name.startswith(_OPEN_CLIP_SCHEMAS)


def _load_open_clip(checkpoint: str, device: str):
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - open-clip-torch is a dependency
        raise _unavailable(checkpoint, "open_clip is not installed: pip install open-clip-torch") from err
    arch, tag = _parse_open_clip(checkpoint)
    if arch.startswith("local-dir:"):
        _require_safetensors(checkpoint, Path(arch[len("local-dir:"):]).expanduser())
    known = not arch.startswith(_OPEN_CLIP_SCHEMAS)
    if known and arch not in open_clip.list_models():
        raise ValueError(
            f"Unknown open_clip architecture {arch!r} in {checkpoint!r}. "
            f"Known: {', '.join(open_clip.list_models())}."
        )
    if known and tag is not None and tag not in open_clip.list_pretrained_tags_by_model(arch):
        raise ValueError(
            f"Unknown pretrained tag {tag!r} for {arch!r}. "
            f"Known: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or '(none)'}."
        )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag, device=device)
    except (OSError, RuntimeError, ValueError) as err:  # weights not cached offline, download failed
        raise _unavailable(checkpoint, f"{type(err).__name__}: {err}") from err
    from .clip_backends import OpenClipBackend

    return OpenClipBackend(model, preprocess, open_clip.get_tokenizer(arch), device)


def load_scorer(
    checkpoint: str = DEFAULT_CHECKPOINT,
    *,
    device: str = "cpu",
    standin: bool | None = None,
) -> ClipScorer:
    """Load a CLIP scorer.

    Hub weights come from the Hugging Face cache and are downloaded when missing; set
    ``HF_HUB_OFFLINE=1`` where there is no network, so a missing checkpoint fails at once instead
    of after the hub client's retries.

    Args:
        checkpoint: a hub name from :data:`TORCHMETRICS_CHECKPOINTS`, a local directory with a saved
            ``CLIPModel`` and ``CLIPProcessor``, ``"tiny"`` (offline stand-in), or
            ``"open_clip:<arch>[/<pretrained tag>]"`` (also ``open_clip:hf-hub:<org>/<repo>`` and
            ``open_clip:local-dir:<path>``). See the module docstring.
        device: where the model runs (``"cpu"``, ``"cuda"``...).
        standin: label the scores as meaningless for real models. Default: True for ``"tiny"`` and
            for open_clip architectures without a pretrained tag (random weights), else False. Pass
            True for a toy CLIP trained on synthetic data.

    Raises:
        ScorerUnavailable: the checkpoint cannot be loaded here (not cached offline, a missing
            directory); the message names it and the remedies.
        ValueError: a malformed or unknown ``open_clip:`` name (the message lists the known ones).
    """
    # 1. Offline stand-in: built locally, then loaded like any local directory
    if checkpoint == SCORER_STANDIN:
        backend = _load_transformers(checkpoint, str(standin_scorer_dir()), {}, device)
        return ClipScorer(backend, checkpoint=checkpoint, standin=True if standin is None else standin)
    # 2. open_clip
    if checkpoint.startswith(OPEN_CLIP_PREFIX):
        backend = _load_open_clip(checkpoint, device)
        if standin is None:
            standin = _open_clip_random_weights(checkpoint)
        return ClipScorer(backend, checkpoint=checkpoint, standin=standin)
    # 3. A hub name torchmetrics lists, else a local directory
    if checkpoint in TORCHMETRICS_CHECKPOINTS:
        overrides, source = TORCHMETRICS_CHECKPOINTS[checkpoint], checkpoint
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_dir():
            raise _unavailable(
                checkpoint,
                f"it is neither a local directory nor a known name ({', '.join(TORCHMETRICS_CHECKPOINTS)}, "
                f"{SCORER_STANDIN!r}, 'open_clip:<arch>/<pretrained tag>').",
            )
        _require_safetensors(checkpoint, path)
        overrides, source = {}, str(path)
    backend = _load_transformers(checkpoint, source, overrides, device)
    return ClipScorer(backend, checkpoint=checkpoint, standin=bool(standin))


__all__ = [
    "DEFAULT_CHECKPOINT",
    "HIGHER_IS_BETTER",
    "SCALES",
    "SCORER_STANDIN",
    "TORCHMETRICS_CHECKPOINTS",
    "ClipScorer",
    "LongPromptWarning",
    "Score",
    "ScorerUnavailable",
    "load_scorer",
    "score_unavailable",
    "standin_scorer_dir",
]
