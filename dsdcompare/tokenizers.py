"""The real CLIP BPE tokenizer, built offline from the vocabulary file open_clip ships.

Stable Diffusion's tokenizers (``CLIPTokenizer`` for SD 1.x and both SDXL tokenizers) all use the
49,408-token CLIP BPE vocabulary. open-clip-torch ships its merges as
``bpe_simple_vocab_16e6.txt.gz``: the byte alphabet, the same with ``</w>``, the first 48,894
merges and the two special tokens rebuild the exact vocabulary, so stand-in models tokenize
prompts exactly like the real ones without touching the hub. The same vocabulary says, before
anything runs, where a long prompt is cut (:func:`prompt_truncation`).
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

#: Size of the CLIP BPE vocabulary (openai/clip-vit-large-patch14 and friends).
VOCAB_SIZE = 49408
#: Number of merges the vocabulary uses; the file holds more (open_clip's own cut-off).
N_MERGES = VOCAB_SIZE - 256 * 2 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _open_clip_bpe_path() -> Path:
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - open-clip-torch is a hard dependency
        raise ImportError(
            "The offline CLIP tokenizer needs open-clip-torch: pip install open-clip-torch"
        ) from err
    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """Return the CLIP BPE ``(vocab, merges)`` exactly as ``CLIPTokenizer`` files hold them."""
    with gzip.open(_open_clip_bpe_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : N_MERGES + 1]  # line 0 is a "#version" header
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [a + "</w>" for a in alphabet]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE:  # pragma: no cover - guards a changed open_clip file
        raise RuntimeError(f"CLIP vocabulary has {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer_files(directory: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` for the CLIP BPE tokenizer into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    return directory


def build_clip_tokenizer(directory: str | Path, *, pad_token: str = "<|endoftext|>"):
    """Build and save a ``transformers.CLIPTokenizer`` in ``directory``; return it.

    ``pad_token`` follows the real repos: SD 1.x and SDXL's first tokenizer pad with
    ``<|endoftext|>``, SDXL's second tokenizer (``tokenizer_2``) pads with ``!``.
    """
    from transformers import CLIPTokenizer

    directory = write_clip_tokenizer_files(directory)
    vocab, merges = clip_vocab_and_merges()
    tok = CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], pad_token=pad_token,
                        model_max_length=77)
    tok.save_pretrained(directory)
    return tok


# --- what the text encoders read of a prompt -----------------------------------------------------

#: Prompt tokens a CLIP text encoder reads: 77 positions minus the start and end tokens. Every
#: model here (SD 1.x, SDXL's two encoders) and every CLIP scorer reads this many.
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
def _counting_tokenizer():
    # built in memory, never saved; no length limit, since it counts rather than encodes
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges],
                         pad_token="<|endoftext|>", model_max_length=10**9)


def prompt_truncation(text: str, limit: int = MAX_PROMPT_TOKENS) -> Truncation | None:
    """Where a 77-position CLIP text encoder cuts ``text``, or None if it fits (offline)."""
    tok = _counting_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= limit:
        return None
    return Truncation(len(ids), limit, tok.decode(ids[:limit]).strip(),
                      tok.decode(ids[limit:]).strip())
