"""ModelSpec + weight source -> a ready pipeline (device, dtype, variant), and the memory policy.

One loading path: ``hub``, ``local`` and ``tiny`` weights all go through
``Pipeline.from_pretrained(location, use_safetensors=True, torch_dtype=..., variant=...)``; only
the full-size random ``arch`` source is materialised in memory (saving it would take gigabytes).
Pickled ``.bin`` weights are never loaded and remote code never runs.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from .registry import ModelSpec
from .zoo import (STANDIN_SOURCES, Location, WeightsUnavailable, build_arch_pipeline, locate,
                  missing_weights_message, pipeline_class)

DTYPES = ("auto", "fp32", "fp16", "bf16")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"mps"`` or ``"cpu"``; checks others."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for ``dtype`` on ``device``: ``auto`` is fp16 on a GPU, fp32 on a CPU."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}: choose one of {list(DTYPES)}")
    if dtype == "auto":
        dtype = "fp32" if device == "cpu" else "fp16"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def dtype_name(dtype) -> str:
    """``torch.float16`` -> ``"fp16"``."""
    return str(dtype).replace("torch.", "").replace("float", "fp").replace("bfp16", "bf16")


def choose_variant(location: Location, dtype) -> str | None:
    """``"fp16"`` when half-precision weights are wanted and the location has that variant.

    Repos without a variant (e.g. SD v1.4 here) load their fp32 files, cast on load.
    """
    import torch

    return "fp16" if dtype == torch.float16 and location.has_fp16_variant else None


@dataclass
class LoadedPipeline:
    """A ready pipeline and how it was obtained (a controller: never serialised)."""

    pipe: Any  # the diffusers pipeline
    spec: ModelSpec  # what was asked for
    location: Location  # where the weights came from
    device: str  # where it runs, e.g. "cuda", "cpu"
    dtype: str  # "fp32" | "fp16" | "bf16"
    variant: str | None  # the weight variant files loaded ("fp16") or None
    load_seconds: float  # wall time of loading and moving to the device
    nbytes: int  # bytes of parameters and buffers (what eviction frees)

    @property
    def standin(self) -> bool:
        """Random weights (tiny or arch): images are noise."""
        return self.location.standin


def load_pipeline(spec: ModelSpec, source: str | None = None, *, device: str = "auto",
                  dtype: str = "auto", local_dir: str | None = None) -> LoadedPipeline:
    """Load ``spec`` from ``source`` (default: its own default source) onto ``device``.

    Raises :class:`~dsdcompare.zoo.WeightsUnavailable` naming the model, the repo and the
    remedies when the weights cannot be had (offline and not cached, bad path).
    """
    import torch

    source = source or spec.default_source
    _quiet_library_bars()
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    start = time.perf_counter()
    location = locate(spec, source, local_dir=local_dir)
    variant = choose_variant(location, torch_dtype)
    if location.source == "arch":
        pipe = build_arch_pipeline(spec, device=device, dtype=torch_dtype)
    else:
        cls = pipeline_class(spec.pipeline)
        try:
            pipe = cls.from_pretrained(
                location.path, revision=location.revision, dtype=torch_dtype,
                variant=variant, use_safetensors=True, trust_remote_code=False,
            )
        except (OSError, ValueError, EnvironmentError) as err:
            raise WeightsUnavailable(missing_weights_message(
                spec, location.source, location.path, cause=_first_line(err))) from err
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return LoadedPipeline(pipe, spec, location, device, dtype_name(torch_dtype), variant,
                          seconds, pipeline_nbytes(pipe))


def _quiet_library_bars() -> None:
    # per-component loading bars drown the CLI's progress and fill the dashboard's server log
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def pipeline_nbytes(pipe) -> int:
    """Bytes held by every torch module of ``pipe`` (parameters and buffers)."""
    import torch

    total = 0
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in comp.parameters())
            total += sum(t.numel() * t.element_size() for t in comp.buffers())
    return total


# --- memory policy ---------------------------------------------------------------------------

def default_budget_bytes(device: str) -> int:
    """Bytes of pipelines worth keeping loaded on ``device``.

    A GPU keeps 85% of its memory for weights and leaves the rest for activations. A CPU keeps
    40% of the machine's memory, and on a small host (under 8 GB, e.g. Streamlit Community Cloud
    with about 2.7 GB) budget 0, i.e. one pipeline at a time.
    """
    import psutil
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return int(0.85 * torch.cuda.get_device_properties(index).total_memory)
    total = psutil.virtual_memory().total
    return 0 if total < 8 * 2**30 else int(0.4 * total)


class PipelineCache:
    """A bounded, thread-safe LRU cache of loaded pipelines.

    Bounded by ``max_items`` and ``max_bytes``; the newest entry is always kept, even when it is
    alone over budget (so "budget 0" means one pipeline at a time). Evicting an entry drops the
    cache's reference, collects garbage and empties the CUDA cache, so its memory is returned
    as soon as no caller still holds the pipeline.
    """

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, LoadedPipeline] = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[Any, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def keys(self) -> list:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held by cached pipelines."""
        with self._lock:
            return sum(lp.nbytes for lp in self._items.values())

    def get(self, key, load: Callable[[], LoadedPipeline]) -> LoadedPipeline:
        """The cached pipeline for ``key``, loading it with ``load()`` on a miss.

        Other entries are evicted *before* loading when the cache is full, so peak memory stays
        near the budget; a given key is loaded by one thread at a time.
        """
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
                if self.max_items is not None:
                    self._evict_until(lambda: len(self._items) < max(self.max_items, 1))
                if self.max_bytes == 0:
                    self._evict_until(lambda: not self._items)
            loaded = load()
            with self._lock:
                self._items[key] = loaded
                if self.max_bytes is not None:
                    self._evict_until(lambda: self.nbytes <= self.max_bytes or len(self._items) <= 1)
            return loaded

    def evict(self, key) -> bool:
        """Drop ``key`` from the cache; True if it was there."""
        with self._lock:
            item = self._items.pop(key, None)
        if item is None:
            return False
        del item
        _release_memory()
        return True

    def clear(self) -> None:
        """Drop every cached pipeline."""
        with self._lock:
            self._items.clear()
        _release_memory()

    def _evict_until(self, done: Callable[[], bool]) -> None:
        evicted = False
        while self._items and not done():
            self._items.popitem(last=False)
            evicted = True
        if evicted:
            _release_memory()


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["DTYPES", "LoadedPipeline", "PipelineCache", "WeightsUnavailable", "choose_variant",
           "default_budget_bytes", "load_pipeline", "pipeline_nbytes", "resolve_device",
           "resolve_dtype", "STANDIN_SOURCES"]
