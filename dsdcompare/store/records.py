"""Row builders: a Result as the record the store keeps, the flat row of the ``results`` table
(:func:`flat_record`, the one flat result row: the CLI's CSV and the charts use it too), a stored
row as a row of :meth:`Store.results <dsdcompare.store.Store.results>`, and the request key.

Columns of :meth:`Store.results` (the dashboard's charts and history pages read these; the names
are stable, new columns are only ever appended) — :data:`RESULT_COLUMNS`:

==================== ================================================================================
run_id, result_id    ids of the run and of this result
created_at           when the result was stored (pandas datetime, UTC)
model, model_name    registry key and display name
success, error       False: see error (no images, no timing)
source               weight source: hub | local | tiny | arch
standin, toy         random stand-in weights (images are noise) / toy model on synthetic shapes
teacher              registry key of the model's teacher (None for teachers)
repo, revision       hub repo id or local directory; hub revision (None: default branch)
prompt ... scheduler prompt, negative_prompt, seed, steps, guidance, size (the request's policy:
                     NaN = native), width, height, images_per_prompt, repeats, warmup, scheduler
dtype, device        fp32 | fp16 | bf16; cpu | cuda | mps
device_name          e.g. "NVIDIA H100 80GB HBM3" or the CPU model
variant, latents_sha weight variant loaded; fingerprint of the initial latents (equal in a pair)
load_s, load_cached  pipeline load seconds (NaN when it came from the cache); cached flag
first_call_s         the warm-up call (seconds)
median_s, min_s,     steady-state latency of one call (seconds): median, fastest, slowest
max_s
text_s, denoise_s,   median seconds per stage; they add up to median_s
decode_s, safety_s,
other_s
its_per_s            denoising iterations per second
peak_memory_bytes,   peak memory during the timed calls and what was measured
memory_kind
clip_score           Score.value (NaN: not scored)
score_backend,       provenance: scores are comparable only with equal checkpoint and scale
score_checkpoint,
score_scale,
score_standin
score_error          why there is no score
psnr, ssim,          fidelity to the teacher's image (latent-matched pairs), and which teacher
fidelity_against
flags                per-image problems joined with "; " ("" when none)
n_images             images stored
image_paths          list of absolute paths of the PNG files, in order
image_sha256         list of the PNGs' sha256, in order
dsdcompare_version,  versions that produced the result
torch_version,
diffusers_version,
transformers_version
run_note             the run's note
==================== ================================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

from .. import __version__
from .common import StoreError, dumps, loads

RESULT_COLUMNS = (
    "run_id", "result_id", "created_at", "model", "model_name", "success", "error", "source",
    "standin", "toy", "teacher", "repo", "revision", "prompt", "negative_prompt", "seed", "steps",
    "guidance", "size", "width", "height", "images_per_prompt", "repeats", "warmup", "scheduler",
    "dtype", "device", "device_name", "variant", "latents_sha", "load_s", "load_cached",
    "first_call_s", "median_s", "min_s", "max_s", "text_s", "denoise_s", "decode_s", "safety_s",
    "other_s", "its_per_s", "peak_memory_bytes", "memory_kind", "clip_score", "score_backend",
    "score_checkpoint", "score_scale", "score_standin", "score_error", "psnr", "ssim",
    "fidelity_against", "flags", "n_images", "image_paths", "image_sha256", "dsdcompare_version",
    "torch_version", "diffusers_version", "transformers_version", "run_note",
)

#: Flat columns of the ``results`` table, derived from the Result record (see :func:`flat_record`).
FLAT_COLUMNS = (
    "model", "model_name", "success", "error", "source", "standin", "toy", "teacher", "repo",
    "revision", "prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height",
    "images_per_prompt", "scheduler", "dtype", "device", "device_name", "variant", "latents_sha",
    "load_s", "load_cached", "first_call_s", "median_s", "min_s", "max_s", "text_s", "denoise_s",
    "decode_s", "safety_s", "other_s", "its_per_s", "peak_memory_bytes", "memory_kind", "repeats",
    "warmup", "clip_score", "score_backend", "score_checkpoint", "score_scale", "score_standin",
    "score_error", "psnr", "ssim", "fidelity_against", "flags", "dsdcompare_version",
    "torch_version", "diffusers_version", "transformers_version",
)

#: The Request fields that make two requests "the same" (see :func:`request_key`).
REQUEST_KEY_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "size",
                      "images_per_prompt", "scheduler")

# dtypes of the results() frame, so an empty or hand-made store gives the same columns
_BOOL = ("success", "standin", "toy")
_NULLABLE_BOOL = ("load_cached", "score_standin")
_INT = ("run_id", "result_id", "n_images")
_NULLABLE_INT = ("seed", "steps", "width", "height", "size", "images_per_prompt", "repeats",
                 "warmup", "peak_memory_bytes")  # nullable: a damaged or hand-made row
_FLOAT = ("guidance", "load_s", "first_call_s", "median_s", "min_s", "max_s", "text_s",
          "denoise_s", "decode_s", "safety_s", "other_s", "its_per_s", "clip_score", "psnr",
          "ssim")


def request_dict(request) -> dict:
    """A Request (dataclass) or a dict of its fields, as a plain dict."""
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return dataclasses.asdict(request)
    if isinstance(request, dict):
        return dict(request)
    raise StoreError(f"expected a dsdcompare Request (or a dict of its fields), got "
                     f"{type(request).__name__}")


def request_key(request) -> str:
    """sha256 of the fields that make two requests "the same" for resuming and skipping.

    ``prompt, negative_prompt, seed, steps, guidance, size, images_per_prompt, scheduler``;
    repeats and warm-up change how a model is measured, not what it generates, so they are left out.
    """
    fields = request_dict(request)
    ident = [fields.get(name) for name in REQUEST_KEY_FIELDS]
    ident[4] = float(ident[4]) if ident[4] is not None else None  # 7 and 7.0 are one guidance
    return hashlib.sha256(json.dumps(ident).encode("utf-8")).hexdigest()


def result_record_dict(result) -> dict:
    """A Result (or its dict) as the plain JSON-round-tripped record the store keeps."""
    if hasattr(result, "to_dict"):
        record = result.to_dict()
    elif isinstance(result, dict):
        record = {k: v for k, v in result.items() if k != "images"}
    else:
        raise StoreError(f"expected a dsdcompare Result, got {type(result).__name__}")
    if not record.get("model"):
        raise StoreError("the Result has no model key; nothing was stored")
    # a plain JSON round trip: what is stored is what result_record() gives back
    return loads(dumps(record))


def flat_record(record: dict) -> dict:
    """The flat columns of a Result record (``Result.to_dict()``): the results table's row."""
    timing = record.get("timing") or {}
    stages = timing.get("stages") or {}
    score = record.get("score") or {}
    fidelity = record.get("fidelity") or {}
    env = record.get("env") or {}
    flat = {c: record.get(c) for c in FLAT_COLUMNS}
    flat.update(
        success=bool(record.get("success")),
        load_s=timing.get("load_s"), load_cached=timing.get("load_cached"),
        first_call_s=timing.get("first_call_s"), median_s=timing.get("median_s"),
        min_s=timing.get("min_s"), max_s=timing.get("max_s"),
        text_s=stages.get("text"), denoise_s=stages.get("denoise"),
        decode_s=stages.get("decode"), safety_s=stages.get("safety"),
        other_s=stages.get("other"), its_per_s=timing.get("its_per_s"),
        peak_memory_bytes=timing.get("peak_memory_bytes"), memory_kind=timing.get("memory_kind"),
        repeats=timing.get("repeats"), warmup=timing.get("warmup"),
        clip_score=score.get("value"), score_backend=score.get("backend"),
        score_checkpoint=score.get("checkpoint"), score_scale=score.get("scale"),
        score_standin=score.get("standin"), score_error=score.get("error"),
        psnr=fidelity.get("psnr"), ssim=fidelity.get("ssim"),
        fidelity_against=fidelity.get("against"),
        flags=json.dumps(list(record.get("flags") or [])),
        dsdcompare_version=env.get("dsdcompare") or __version__,
        torch_version=env.get("torch"), diffusers_version=env.get("diffusers"),
        transformers_version=env.get("transformers"),
    )
    for c in ("clip_score", "its_per_s", "psnr", "ssim"):  # SQLite has no NaN; NULL it is
        if isinstance(flat[c], float) and not math.isfinite(flat[c]):
            flat[c] = None
    return flat


def result_row(stored: dict, images: list[tuple[str, str]], image_path) -> dict:
    """One row of :data:`RESULT_COLUMNS` from a stored ``results`` row joined with its run
    (``run_size``, ``run_note``) and its ``(relative path, sha256)`` image rows;
    ``image_path`` turns a relative path into a checked absolute one."""
    row = {c: stored.get(c) for c in RESULT_COLUMNS}
    row.update(result_id=stored["id"], size=stored["run_size"], run_note=stored["run_note"])
    for c in (*_BOOL, *_NULLABLE_BOOL):
        row[c] = None if stored[c] is None else bool(stored[c])
    row["flags"] = "; ".join(loads(stored["flags"]) or [])
    row["n_images"] = len(images)
    row["image_paths"] = [str(image_path(rel)) for rel, _ in images]
    row["image_sha256"] = [sha for _, sha in images]
    return row


def result_frame(rows: list[dict]):
    """The :data:`RESULT_COLUMNS` DataFrame of :func:`result_row` rows, with fixed dtypes (the
    same columns and types when there are no rows)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    for columns, dtype in ((_BOOL, bool), (_NULLABLE_BOOL, "boolean"), (_INT, "int64"),
                           (_NULLABLE_INT, "Int64"), (_FLOAT, "float64")):
        for c in columns:
            df[c] = df[c].astype(dtype)
    return df
