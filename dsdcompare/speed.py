"""Speed options: attention kernel, memory format, torch.compile, VAE slicing and tiling.

:class:`SpeedOptions` is a plain setting recorded with every result measured under it; its
:meth:`SpeedOptions.apply` puts a pipeline in exactly that state. The comparison engine applies
it before every call of a (cached) pipeline, and profiling before it times the components.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import InputError

#: The modes of ``torch.compile``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class SpeedOptionError(InputError):
    """A speed option is invalid; the message names the option, the value and the choices."""


# compiled UNet -> (the UNet module it compiles, its compile mode). ``torch.compile`` returns a
# wrapper and leaves the module itself untouched, so keeping the module is how a pipeline is
# "uncompiled": the wrapper is swapped back for it. Weak keys: a dropped pipeline frees both.
_compiled: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SpeedOptions:
    """Speed settings applied to a pipeline, recorded with every result measured under them.

    The dtype (fp32, fp16, bf16: "bf16 on CPU") is a separate setting of its own, recorded next
    to these. :meth:`apply` sets every option both ways, so a cached pipeline reused under other
    options ends up exactly as asked.
    """

    sdpa: bool = True  # PyTorch scaled-dot-product attention; False: classic (AttnProcessor, eager)
    channels_last: bool = False  # UNet and VAE weights in channels_last memory format
    compile_unet: bool = False  # torch.compile the UNet (its first call compiles; reported apart)
    compile_mode: str = "default"  # torch.compile mode, one of COMPILE_MODES
    vae_slicing: bool = False  # decode a batch one image at a time (saves memory at batch > 1)
    vae_tiling: bool = False  # decode in overlapping tiles (saves memory at large sizes)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in (bool, "bool") and not isinstance(value, bool):
                raise SpeedOptionError(f"speed option {f.name} must be True or False, "
                                       f"got {value!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise SpeedOptionError(f"compile_mode {self.compile_mode!r} is not a torch.compile "
                                   f"mode: choose one of {list(COMPILE_MODES)}")

    def to_dict(self) -> dict:
        """The options as plain data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpeedOptions:
        """Options from :meth:`to_dict` output; unknown keys fail, naming the valid ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SpeedOptionError(f"unknown speed option(s) {unknown}: valid options are {names}")
        return cls(**data)

    def label(self) -> str:
        """A short name for tables: ``"sdpa"``, ``"eager-attn+channels_last+compile"``..."""
        parts = ["sdpa" if self.sdpa else "eager-attn"]
        parts += [name for name, on in (("channels_last", self.channels_last),
                                        ("vae_slicing", self.vae_slicing),
                                        ("vae_tiling", self.vae_tiling)) if on]
        if self.compile_unet:
            mode = self.compile_mode
            parts.append("compile" if mode == "default" else f"compile:{mode}")
        return "+".join(parts)

    def apply(self, pipe) -> dict:
        """Put ``pipe`` in exactly this state (idempotent); return the record of what is in force.

        Attention: diffusers modules (UNet, VAE) get ``AttnProcessor2_0`` (SDPA) or
        ``AttnProcessor``; transformers modules (text encoders, safety checker) the ``"sdpa"``
        or ``"eager"`` implementation. channels_last applies to the UNet and the VAE. The UNet
        is compiled lazily (``torch.compile``: its next call compiles) and replaced on the
        pipeline by the compiled wrapper; without ``compile_unet`` the UNet itself is put back.
        """
        # Change only what differs: a compiled UNet recompiles when its modules change, and
        # the engine applies the options before every call of a cached pipeline.
        mode = _compiled_mode(pipe.unet)
        if mode is not None and (not self.compile_unet or mode != self.compile_mode):
            pipe.unet = uncompiled(pipe.unet)  # the UNet itself, uncompiled
        self._set_attention(pipe)
        self._set_memory_format(pipe)
        if self.compile_unet and _compiled_mode(pipe.unet) is None:
            _compile_unet(pipe, self.compile_mode)
        (pipe.vae.enable_slicing if self.vae_slicing else pipe.vae.disable_slicing)()
        (pipe.vae.enable_tiling if self.vae_tiling else pipe.vae.disable_tiling)()
        return self.to_dict()

    def _set_attention(self, pipe) -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        processor = AttnProcessor2_0 if self.sdpa else AttnProcessor
        for module in pipeline_modules(pipe).values():
            if hasattr(module, "set_attn_processor") and getattr(module, "attn_processors", None):
                if {type(p) for p in module.attn_processors.values()} != {processor}:
                    module.set_attn_processor(processor())
            else:
                _set_transformers_attention(module, "sdpa" if self.sdpa else "eager")

    def _set_memory_format(self, pipe) -> None:
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for module in (pipe.unet, pipe.vae):
            if not all(p.is_contiguous(memory_format=fmt) for p in module.parameters()
                       if p.dim() == 4):
                torch.nn.Module.to(module, memory_format=fmt)


def _set_transformers_attention(module, implementation: str) -> None:
    if not hasattr(module, "set_attn_implementation"):  # not a transformers model
        return
    if getattr(module, "_supports_sdpa", False):
        if module.config._attn_implementation != implementation:
            module.set_attn_implementation(implementation)
    else:  # a wrapper without attention of its own (the safety checker) around models with it
        for child in module.children():
            _set_transformers_attention(child, implementation)


def _compile_unet(pipe, mode: str) -> None:
    import torch

    original = pipe.unet
    compiled = torch.compile(original, mode=None if mode == "default" else mode)
    _compiled[compiled] = (original, mode)
    pipe.unet = compiled


def _compiled_mode(module) -> str | None:
    entry = _compiled.get(module)
    return entry[1] if entry is not None else None


def uncompiled(module):
    """The module a UNet compiled by :meth:`SpeedOptions.apply` wraps; else ``module`` itself."""
    entry = _compiled.get(module)
    return entry[0] if entry is not None else module


def pipeline_modules(pipe) -> dict[str, Any]:
    """The torch modules among ``pipe``'s components, by component name."""
    import torch

    return {name: comp for name, comp in pipe.components.items()
            if isinstance(comp, torch.nn.Module)}


__all__ = ["COMPILE_MODES", "SpeedOptionError", "SpeedOptions", "pipeline_modules", "uncompiled"]
