"""What the text encoders will read of a prompt (no Streamlit here).

Every model here (SD 1.x, SDXL's two encoders, the CLIP scorers) tokenizes with the same CLIP BPE
vocabulary and reads 77 positions: a start token, 75 prompt tokens and an end token. Longer
prompts are cut; :func:`truncation` says where, before anything runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

#: Prompt tokens a CLIP text encoder reads (77 positions minus start and end tokens).
MAX_PROMPT_TOKENS = 75


@dataclass(frozen=True)
class Truncation:
    """A prompt longer than the text encoders read."""

    tokens: int  # prompt tokens, without start/end
    limit: int  # tokens read
    kept: str  # the text that is read
    dropped: str  # the text that is cut off

    def message(self, what: str = "prompt") -> str:
        """One sentence for the user, naming what is cut."""
        return (f"The {what} has {self.tokens} tokens; the text encoders (and the CLIP scorer) "
                f"read only the first {self.limit}, so this is ignored: “{self.dropped}”")


@functools.lru_cache(maxsize=1)
def _tokenizer():
    # The real CLIP BPE tokenizer, built in memory from open_clip's vocabulary file (offline).
    from transformers import CLIPTokenizer

    from dsdcompare.tokenizers import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges],
                         pad_token="<|endoftext|>", model_max_length=10**9)  # counting only


def token_ids(text: str) -> list[int]:
    """CLIP BPE ids of ``text`` without the start/end tokens."""
    return _tokenizer()(text, add_special_tokens=False)["input_ids"]


def truncation(text: str, limit: int = MAX_PROMPT_TOKENS) -> Truncation | None:
    """Where ``text`` is cut by a 77-position CLIP text encoder, or None if it fits."""
    ids = token_ids(text)
    if len(ids) <= limit:
        return None
    tok = _tokenizer()
    return Truncation(len(ids), limit, tok.decode(ids[:limit]).strip(),
                      tok.decode(ids[limit:]).strip())
