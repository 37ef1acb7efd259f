"""Tables the pages show, as pure functions returning DataFrames (no Streamlit here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

#: Compact results table: column of the flat results frame -> shown label.
COMPACT = {
    "model_name": "model", "load_s": "load s", "first_call_s": "first call s",
    "median_s": "steady s (median)", "min_s": "min s", "max_s": "max s", "text_s": "text s",
    "denoise_s": "denoise s", "decode_s": "decode s", "safety_s": "safety s", "other_s": "other s",
    "its_per_s": "it/s", "peak_memory_mb": "peak memory MB", "clip_score": "CLIP score",
    "psnr": "PSNR vs teacher dB", "ssim": "SSIM vs teacher", "flags": "flags", "error": "error",
}


def compact_results(df: pd.DataFrame) -> pd.DataFrame:
    """The Compare/History results table: timings, stages, it/s, memory, score, flags."""
    out = df.copy()
    out["peak_memory_mb"] = pd.to_numeric(out["peak_memory_bytes"], errors="coerce") / 2**20
    if not (pd.to_numeric(out["safety_s"], errors="coerce").fillna(0) > 0).any():
        out = out.drop(columns=["safety_s"])
    if out["error"].isna().all() or (out["error"].fillna("") == "").all():
        out = out.drop(columns=["error"])
    cols = [c for c in COMPACT if c in out]
    return out[cols].rename(columns=COMPACT).reset_index(drop=True)


def registry_table(specs: Iterable) -> pd.DataFrame:
    """The registry: one row per model (repo or folder, pipeline, native size, teacher...)."""
    rows = []
    for s in specs:
        rows.append({
            "key": s.key, "name": s.name, "repo / folder": s.repo_id or s.local_dir,
            "pipeline": s.pipeline, "native size": f"{s.native_size}²",
            "teacher": s.teacher or "—", "role": "student" if s.teacher else "teacher/base",
            "steps": s.steps, "guidance": s.guidance, "fp16 variant": s.fp16_variant,
            "safety checker": s.safety_checker, "toy": s.toy, "notes": s.notes,
        })
    return pd.DataFrame(rows)


def local_weights_present(spec) -> bool:
    """``spec.local_dir`` holds a pipeline (``model_index.json``)."""
    return bool(spec.local_dir) and (Path(spec.local_dir) / "model_index.json").is_file()


def unet_config(spec) -> dict[str, Any] | None:
    """The UNet config of ``spec``: its ``arch`` (archs.py), else ``local_dir/unet/config.json``."""
    if spec.arch:
        from dsdcompare.archs import get_architecture

        return get_architecture(spec.arch).unet
    if spec.local_dir:
        path = Path(spec.local_dir) / "unet" / "config.json"
        if path.is_file():
            return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    return None


def unet_defaults() -> dict[str, Any]:
    """``UNet2DConditionModel``'s constructor defaults (what a config that omits a key gets)."""
    import inspect

    from diffusers import UNet2DConditionModel

    params = inspect.signature(UNet2DConditionModel.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def config_differences(teacher: dict[str, Any], student: dict[str, Any],
                       defaults: dict[str, Any] | None = None) -> pd.DataFrame:
    """Keys whose values differ between two component configs: setting, teacher, student.

    A key one config omits takes its value from ``defaults`` (shown with "(default)"), so an
    omitted key that equals the other's value is no difference.
    """
    defaults = defaults or {}
    rows = []
    for key in sorted(set(teacher) | set(student)):
        a, b = teacher.get(key, _MISSING), student.get(key, _MISSING)
        a_val = defaults.get(key, _MISSING) if a is _MISSING else a
        b_val = defaults.get(key, _MISSING) if b is _MISSING else b
        if _norm(a_val) == _norm(b_val):
            continue
        rows.append({"setting": key,
                     "teacher": _show(a_val, a is _MISSING and a_val is not _MISSING),
                     "student": _show(b_val, b is _MISSING and b_val is not _MISSING)})
    return pd.DataFrame(rows, columns=["setting", "teacher", "student"])


def _norm(value):
    return list(value) if isinstance(value, tuple) else value


def _show(value, from_defaults: bool = False) -> str:
    if value is _MISSING:
        return "—"
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else \
        "null" if value is None else str(value)
    return text + (" (default)" if from_defaults else "")


_MISSING = object()


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Stored runs, compact: id, when, prompt, seed, steps, size, source, models, results."""
    if runs.empty:
        return runs
    out = pd.DataFrame({
        "run": runs["run_id"], "when (UTC)": pd.to_datetime(runs["created_at"], utc=True,
                                                           format="ISO8601").dt.strftime("%Y-%m-%d %H:%M"),
        "prompt": runs["prompt"], "seed": runs["seed"], "steps": runs["steps"],
        "size": runs["size"].map(lambda v: "native" if pd.isna(v) else f"{int(v)}²"),
        "weights": runs["source"].fillna("own"),
        "models": runs["models"].map(lambda m: ", ".join(m)),
        "ok": runs["n_success"].astype(str) + "/" + runs["n_results"].astype(str),
        "finished": runs["finished"],
    })
    return out
