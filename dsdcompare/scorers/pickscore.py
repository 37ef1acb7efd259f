"""PickScore v1 through transformers' CLIPModel, as its model card computes it.

PickScore has no package: its model card loads ``yuvalkirstain/PickScore_v1`` with ``AutoModel``
and the processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` with ``AutoProcessor``, and scores
``model.logit_scale.exp() * cosine(text embedding, image embedding)``. Two things differ on
transformers 5 and are handled here:

- ``get_image_features`` / ``get_text_features`` return an output object; the projected embedding
  is its ``pooler_output``;
- ``AutoProcessor`` now picks a torchvision image processor, which differs from the PIL one the
  card ran with (transformers 4) by up to 0.015 in normalised pixels; the PIL backend is asked for
  explicitly so scores match the published ones.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..metrics import SCALE_PICKSCORE, ScorerUnavailable
from .base import PreferenceScorer, pil_images
from .weights import SCORER_WEIGHTS, checkpoint_identity, hub_snapshot

PICKSCORE_MODEL, PICKSCORE_PROCESSOR = SCORER_WEIGHTS["pickscore"]
_CONTEXT = 77  # the card's max_length


def _embedding(out) -> torch.Tensor:
    """The projected embedding from ``get_*_features`` (a tensor before transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class PickScoreScorer(PreferenceScorer):
    """PickScore v1: a CLIP ViT-H-14 fine-tuned on Pick-a-Pic preferences; higher is preferred."""

    metric = "pickscore"
    backend = "pickscore"
    scale = SCALE_PICKSCORE

    def __init__(self, model, processor, *, checkpoint: str, standin: bool, device: str):
        self.model = model.eval().requires_grad_(False).to(device)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = torch.device(device)
        super().__init__(checkpoint=checkpoint, standin=standin, max_prompt_tokens=_CONTEXT - 2)

    def _token_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _score_images(self, images: list[np.ndarray], prompt: str) -> list[float]:
        image_inputs = self.processor(images=pil_images(images), return_tensors="pt").to(self.device)
        text_inputs = self.processor(text=prompt, padding=True, truncation=True, max_length=_CONTEXT,
                                     return_tensors="pt").to(self.device)
        with torch.no_grad():
            image_embs = _embedding(self.model.get_image_features(**image_inputs))
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = _embedding(self.model.get_text_features(**text_inputs))
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores = self.model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
        return [float(s) for s in scores.float().cpu()]


def _folder(given, spec, required: tuple[str, ...], cache_dir) -> str:
    """A local folder as given, or the cached hub snapshot of ``spec``."""
    if given is not None:
        path = os.fspath(given)
        if not os.path.isdir(path):
            raise ScorerUnavailable(f"pickscore scorer unavailable: no folder {path!r}; "
                                    f"fetch {spec.repo} with `dsdcompare download --scorers pickscore`.")
        return path
    return str(hub_snapshot(spec.repo, required, scorer="pickscore", revision=spec.revision, cache_dir=cache_dir))


def load_pickscore(model: str | os.PathLike | None = None, processor: str | os.PathLike | None = None, *,
                   device: str = "cpu", cache_dir: str | os.PathLike | None = None,
                   standin: bool = False) -> PickScoreScorer:
    """Load the PickScore v1 scorer; never downloads.

    Args:
        model: a local folder with a saved ``CLIPModel``; default ``yuvalkirstain/PickScore_v1`` from
            the Hugging Face cache.
        processor: a local folder with a saved CLIP processor; default
            ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` from the cache.
        device: where the model runs.
        cache_dir: the Hugging Face cache to look in (default: the standard one).
        standin: label the scores meaningless (random or test-built weights).

    Raises:
        ScorerUnavailable: a folder is missing or not cached, or holds no loadable model/processor.
    """
    from transformers import AutoProcessor, CLIPModel

    model_dir = _folder(model, PICKSCORE_MODEL, ("config.json", "model.safetensors"), cache_dir)
    processor_dir = _folder(processor, PICKSCORE_PROCESSOR, ("preprocessor_config.json", "tokenizer_config.json"), cache_dir)
    try:
        clip = CLIPModel.from_pretrained(model_dir, local_files_only=True)
        proc = AutoProcessor.from_pretrained(processor_dir, backend="pil", local_files_only=True)
    except (OSError, ValueError) as err:
        raise ScorerUnavailable(f"pickscore scorer unavailable: {type(err).__name__}: {str(err).splitlines()[0]}; "
                                f"fetch it with `dsdcompare download --scorers pickscore`.") from err
    identity = f"{checkpoint_identity(model_dir)} + processor {checkpoint_identity(processor_dir)}"
    return PickScoreScorer(clip, proc, checkpoint=identity, standin=standin, device=device)


__all__ = ["PICKSCORE_MODEL", "PICKSCORE_PROCESSOR", "PickScoreScorer", "load_pickscore"]
