"""ModelSpec + weight source -> a ready pipeline (device, dtype, variant), and the memory policy.

One loading path: ``hub``, ``local`` and ``tiny`` weights all go through
``Pipeline.from_pretrained(location, use_safetensors=True, torch_dtype=..., variant=...)``; only
the full-size random ``arch`` source is materialised in memory (saving it would take gigabytes).
Pickled ``.bin`` weights are never loaded and remote code never runs.

Variants: on fp16, ``variant="fp16"`` whenever the repo ships fp16 files in any weight folder
(``ModelSpec.fp16_variant``); diffusers 0.42 then loads the fp16 file of each folder that has one
and the fp32 file of the others, cast on load (it fails only when no folder has one).

Memory policy (what a request of several models needs on one device):

* **peak = largest model + scorer** (plus the running model's activations) when the budget is
  below the largest model, and in general max(budget, largest model) + scorer. The pipeline cache
  evicts *before* loading: a model is loaded only after the cached ones that would push the total
  over the budget are dropped (:meth:`PipelineCache.get` with ``nbytes``, from
  :func:`expected_nbytes`), so two models never sit side by side beyond the budget.
* the budget is a third of a GPU's memory: the rest is headroom for the CLIP scorer and the
  running model's activations (SDXL-class models decode 1024 px in fp32). At fp16 the seed
  pipelines hold 2.7 GB (SD v1.4), 2.0 GB (BK-SDM-small), 6.9 GB (SDXL) and 4.5 GB (SSD-1B), the
  default scorer 1.7 GB (fp32). So a 16 GB GPU peaks at SDXL + scorer (8.6 GB), a 24 GB GPU
  runs the four seed models in one request with at most 8.6 GB of pipelines + the scorer resident
  (over 12 GiB left for activations), and an 80 GB GPU keeps all four cached (tests/test_zoo.py
  checks this with the full-size architectures on the meta device).
* a CPU keeps 40% of RAM for pipelines, and a small host (under 8 GB) one pipeline at a time.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from .errors import InputError
from .registry import ModelSpec
from .zoo import (
    MODEL_BUILD_LOCK,
    STANDIN_SOURCES,
    Location,
    WeightsUnavailable,
    build_arch_pipeline,
    locate,
    missing_weights_message,
    pipeline_class,
)

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
        raise InputError(f"Unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"Device {device!r} was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for ``dtype`` on ``device``: ``auto`` is fp16 on a GPU, fp32 on a CPU."""
    import torch

    if dtype not in DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}: choose one of {list(DTYPES)}")
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
            with MODEL_BUILD_LOCK, quiet_loading_bars():
                pipe = cls.from_pretrained(
                    location.path, revision=location.revision, dtype=torch_dtype,
                    variant=variant, use_safetensors=True, trust_remote_code=False,
                )
        except (OSError, ValueError) as err:
            raise WeightsUnavailable(missing_weights_message(
                spec, location.source, location.path, cause=_first_line(err))) from err
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return LoadedPipeline(pipe, spec, location, device, dtype_name(torch_dtype), variant,
                          seconds, pipeline_nbytes(pipe))


@contextmanager
def quiet_loading_bars():
    """Silence diffusers' and transformers' per-component loading bars for one call.

    They drown the CLI's progress and fill the dashboard's server log. huggingface_hub's download
    bars stay on: transformers' ``disable_progress_bar()`` would turn those off for the whole
    process (a first 20 GB download would show nothing), so its bars are muted with its tqdm hook.
    """
    import diffusers
    import transformers

    dlog, tlog = diffusers.utils.logging, transformers.utils.logging
    was_on = dlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    previous = tlog.set_tqdm_hook(lambda factory, args, kwargs: tlog.EmptyTqdm(*args, **kwargs))
    try:
        yield
    finally:
        tlog.set_tqdm_hook(previous)
        if was_on:
            dlog.enable_progress_bar()


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

#: Share of a GPU's memory kept for cached pipelines (see the module docstring).
GPU_BUDGET_FRACTION = 1 / 3


def default_budget_bytes(device: str) -> int:
    """Bytes of pipelines worth keeping loaded on ``device``.

    A GPU keeps a third of its memory for cached pipelines and leaves the rest for the incoming
    model, the scorer and activations (module docstring). A CPU keeps 40% of the machine's memory,
    and on a small host (under 8 GB, e.g. Streamlit Community Cloud with about 2.7 GB) budget 0,
    i.e. one pipeline at a time.
    """
    import psutil
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return int(GPU_BUDGET_FRACTION * torch.cuda.get_device_properties(index).total_memory)
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

    def get(self, key, load: Callable[[], LoadedPipeline], *,
            nbytes: int | None = None) -> LoadedPipeline:
        """The cached pipeline for ``key``, loading it with ``load()`` on a miss.

        Other entries are evicted *before* loading when the cache is full, and, given the
        expected size ``nbytes`` of the new pipeline (:func:`expected_nbytes`), until it fits
        beside the rest within ``max_bytes``: peak memory is the budget or the largest model,
        never two models over it. A given key is loaded by one thread at a time.
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
                elif self.max_bytes is not None and nbytes is not None:
                    self._evict_until(lambda: self.nbytes + nbytes <= self.max_bytes)
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
        release_memory()
        return True

    def clear(self) -> None:
        """Drop every cached pipeline."""
        with self._lock:
            self._items.clear()
        release_memory()

    def _evict_until(self, done: Callable[[], bool]) -> None:
        evicted = False
        while self._items and not done():
            self._items.popitem(last=False)
            evicted = True
        if evicted:
            release_memory()


def expected_nbytes(spec: ModelSpec, source: str | None = None, dtype: str = "auto",
                   device: str = "auto") -> int | None:
    """Bytes the pipeline of ``spec`` will hold once loaded (parameters and buffers), from its
    full-size architecture on the meta device: nothing is allocated. None for the tiny source
    (a miniature) and for models without a registered architecture."""
    if (source or spec.default_source) == "tiny" or not spec.arch:
        return None
    name = dtype_name(resolve_dtype(dtype, resolve_device(device)))
    return _arch_nbytes(spec, name)


@cache
def _arch_nbytes(spec: ModelSpec, dtype: str) -> int:
    import torch

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return pipeline_nbytes(build_arch_pipeline(spec, device="meta", dtype=torch_dtype))


def release_memory() -> None:
    """Return freed memory now: collect garbage and empty the CUDA cache (after dropping a
    pipeline, so the next model does not start beside the last one's leftovers)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["DTYPES", "LoadedPipeline", "PipelineCache", "WeightsUnavailable", "choose_variant",
           "default_budget_bytes", "expected_nbytes", "load_pipeline", "pipeline_nbytes",
           "release_memory",
           "resolve_device", "resolve_dtype", "STANDIN_SOURCES"]
