"""What every prompt-conditioned preference scorer shares: input checks, prompt length, the Score.

A scorer subclass supplies three things: how its tokenizer counts a prompt (``_token_ids``), how it
decodes a prefix (``_decode``) and the per-image numbers for included uint8 images
(``_score_images``). Everything else (image exclusion, the long-prompt warning, putting scores back
in input order, provenance) is here, so HPS, PickScore and ImageReward report alike and like CLIP.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from ..fidelity import in_input_order, none_scored, screen
from ..metrics import SCALES, LongPromptWarning, Score

#: Images scored per forward pass: bounds memory for the ViT-H/L scorers on a CPU or a small GPU.
BATCH_SIZE = 8

STANDIN_NOTE = "stand-in weights (random or test-built): scores are meaningless for real models"


class PreferenceScorer:
    """Base of the prompt-conditioned scorers; build one with its module's ``load_*`` function."""

    metric = ""  # short metric name: "hps" | "pickscore" | "imagereward"
    backend = ""  # Score.backend: the code that computes the number
    scale = ""  # Score.scale, a key of metrics.SCALES

    def __init__(self, *, checkpoint: str, standin: bool, max_prompt_tokens: int, note: str | None = None):
        self._lock = threading.Lock()  # one scoring at a time: Streamlit shares one scorer object
        self.checkpoint = checkpoint  # stable identity (weights.checkpoint_identity), recorded in every Score
        self.standin = standin  # True: random/test weights, scores are meaningless
        self.max_prompt_tokens = max_prompt_tokens  # prompt tokens the text encoder reads
        self.note = note  # a caveat recorded with every Score (e.g. which HPS version)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value is better on this scorer's scale (True for every preference score)."""
        return SCALES[self.scale].higher_is_better

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.checkpoint!r}, scale={self.scale!r}, standin={self.standin})"

    # -- hooks --------------------------------------------------------------------------------
    def _token_ids(self, prompt: str) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _score_images(self, images: list[np.ndarray], prompt: str) -> list[float]:
        raise NotImplementedError

    # -- the one scoring path -----------------------------------------------------------------
    def score(self, images, prompt: str) -> Score:
        """Score ``images`` against ``prompt`` on this scorer's scale.

        Args:
            images: PIL images or HxWx3 / 3xHxW uint8 or [0, 1] float arrays/tensors, one batch
                array/tensor, or a single image (as :meth:`dsdcompare.metrics.ClipScorer.score`).
            prompt: the text the images were generated from.

        Returns:
            A :class:`~dsdcompare.metrics.Score`: ``value`` is the mean of the included images'
            scores; images failing :func:`~dsdcompare.fidelity.check_image` are excluded with the
            reason; a prompt longer than the scorer reads warns (:class:`LongPromptWarning`) and
            records ``truncated=True`` with the prefix actually scored.
        """
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a string, got {type(prompt).__name__}.")
        excluded, included = screen(images)
        with self._lock:
            ids = self._token_ids(prompt)
            limit = self.max_prompt_tokens
            truncated = len(ids) > limit
            scored_prompt = self._decode(ids[:limit]) if truncated else prompt
            if truncated:
                warnings.warn(LongPromptWarning(
                    f"The prompt has {len(ids)} tokens but {self.metric} ({self.checkpoint!r}) reads at most "
                    f"{limit}; only the first {limit} were scored: {scored_prompt!r}"), stacklevel=2)
            scores: list[float] = []
            for start in range(0, len(included), BATCH_SIZE):
                scores.extend(self._score_images(included[start:start + BATCH_SIZE], prompt))
        per_image = in_input_order(scores, excluded)
        value = float(np.mean(scores)) if scores else None
        error = none_scored(excluded) if value is None else None
        notes = [n for n in (self.note, STANDIN_NOTE if self.standin else None) if n]
        return Score(
            value=value, per_image=per_image, excluded=excluded, backend=self.backend,
            checkpoint=self.checkpoint, scale=self.scale, standin=self.standin,
            prompt_tokens=len(ids), max_prompt_tokens=limit, truncated=truncated,
            scored_prompt=scored_prompt, error=error, note="; ".join(notes) or None,
        )


def pil_images(images: list[np.ndarray]):
    """uint8 HxWx3 arrays as RGB PIL images (what every upstream preprocessing starts from)."""
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(im)) for im in images]


__all__ = ["BATCH_SIZE", "STANDIN_NOTE", "PreferenceScorer", "pil_images"]
