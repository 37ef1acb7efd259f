"""How one CLIP checkpoint tokenizes and scores: the torchmetrics ``CLIPScore`` backend (through
its callable form, which works with transformers 5 and local folders) and the open_clip raw-cosine
backend. :class:`dsdcompare.metrics.ClipScorer` drives them; nothing here loads weights.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .metrics import BACKEND_OPEN_CLIP, BACKEND_TORCHMETRICS, SCALE_CLIPSCORE, SCALE_RAW_COSINE


class _TensorFeatures(torch.nn.Module):
    """A transformers ``CLIPModel`` whose ``get_*_features`` return embedding tensors.

    torchmetrics 1.9.0 normalises what ``get_image_features`` / ``get_text_features`` return;
    transformers 5 returns a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the
    projected embedding.
    """

    def __init__(self, model):
        super().__init__()
        self.clip = model
        self.config = model.config  # torchmetrics reads config.text_config.max_position_embeddings

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_image_features(self, pixel_values):
        return self._tensor(self.clip.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids, attention_mask=None):
        return self._tensor(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


class _TruncatingProcessor:
    """A ``CLIPProcessor`` that truncates text to the model's context, keeping the EOS token.

    torchmetrics cuts over-long token sequences itself, which drops the EOS token CLIP pools at;
    letting the tokenizer truncate keeps BOS ... EOS intact.
    """

    def __init__(self, processor, max_length: int):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length

    def __call__(self, text=None, images=None, **kwargs):
        if text is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        return self.processor(text=text, images=images, **kwargs)


@functools.lru_cache(maxsize=1)
def _clip_score_class():
    """torchmetrics' ``CLIPScore`` declared with ``full_state_update=False``.

    ``CLIPScore`` keeps a sum and a count, so its update does not need the full state; declaring so
    lets ``forward`` return each image's score and accumulate the mean in one model pass (with the
    default ``True``, ``forward`` runs the model twice and ``merge_state`` is refused).
    """
    from torchmetrics.multimodal.clip_score import CLIPScore

    class _CLIPScoreSum(CLIPScore):
        full_state_update = False

    return _CLIPScoreSum


class TorchmetricsBackend:
    """transformers ``CLIPModel`` + ``CLIPProcessor`` scored by torchmetrics' ``CLIPScore``."""

    name = BACKEND_TORCHMETRICS
    scale = SCALE_CLIPSCORE

    def __init__(self, model, processor, device: str):
        model.eval().requires_grad_(False)  # CLIPScore.forward turns grad on; frozen weights build no graph
        context = model.config.text_config.max_position_embeddings
        self.tokenizer = processor.tokenizer
        self.max_prompt_tokens = context - 2  # BOS and EOS take two positions
        adapted = _TensorFeatures(model), _TruncatingProcessor(processor, context)
        self.metric = _clip_score_class()(model_name_or_path=lambda: adapted)
        self.device = torch.device(device)
        self.metric.to(self.device)

    def token_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def score(self, images: list[np.ndarray], prompt: str) -> tuple[list[float], float]:
        metric = self.metric
        metric.reset()
        per_image = []
        for image in images:
            chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(self.device)
            per_image.append(float(metric(chw, prompt)))  # forward: this image's score; accumulates
        return per_image, float(metric.compute())


class OpenClipBackend:
    """open_clip model scored as raw cosine of ``encode_image`` and ``encode_text`` embeddings."""

    name = BACKEND_OPEN_CLIP
    scale = SCALE_RAW_COSINE

    def __init__(self, model, preprocess, tokenizer, device: str):
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model.to(self.device)
        if hasattr(tokenizer, "encoder"):  # open_clip's SimpleTokenizer: BOS + tokens + EOS
            self.max_prompt_tokens = tokenizer.context_length - 2
        else:  # an HF tokenizer behind open_clip's HFTokenizer
            specials = tokenizer.tokenizer.num_special_tokens_to_add()
            self.max_prompt_tokens = tokenizer.context_length - specials

    def token_ids(self, prompt: str) -> list[int]:
        if hasattr(self.tokenizer, "encoder"):
            return self.tokenizer.encode(prompt)
        return self.tokenizer.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        if hasattr(self.tokenizer, "encoder"):
            return self.tokenizer.decode(ids).strip()
        return self.tokenizer.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def score(self, images: list[np.ndarray], prompt: str) -> tuple[list[float], float]:
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        tokens = self.tokenizer([prompt]).to(self.device)  # truncates to the context, EOS kept
        with torch.no_grad():
            image_emb = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
            text_emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
        per_image = (image_emb @ text_emb[0]).tolist()
        return per_image, float(np.mean(per_image))
