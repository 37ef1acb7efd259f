"""Reporting: student/teacher ratios beside the published claims, tables, the printed report,
and profiles saved as JSON (read back and merged)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..hardware import Peak, utilisation
from ..published import parse_figure, published_ratio
from ..registry import get_model
from ..speed import SpeedOptions
from .results import ModelProfile
from .stages import PROFILE_STAGES, STAGE_LABELS, STAGE_MODULES, ProfileError

# --- ratios ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ratio:
    """A student/teacher ratio of one metric, measured, beside what is published."""

    student: str  # registry key
    teacher: str  # registry key
    metric: str  # what is compared (a key of METRICS)
    label: str  # display name of the metric
    measured: float | None  # student / teacher under equal conditions (None: not measured)
    published: float | None  # the same ratio from published figures of both (None: none)
    claim: str  # published claims about the pair that speak to this metric ("" if none)
    source: str  # where the published figures and claims come from
    conditions: str  # size, dtype, device, options, source of the measurement


#: Metrics compared between a student and its teacher: key -> (label, value of a profile).
METRICS: dict[str, tuple[str, Callable[[ModelProfile], float | None]]] = {
    "unet_params": ("UNet parameters", lambda p: p.params.get("unet")),
    "generation_params": ("parameters: text encoders + UNet + VAE decoder",
                          lambda p: p.generation_params),
    "unet_flops": ("UNet FLOPs per step", lambda p: p.flops.get("unet")),
    "unet_s": ("UNet time per step", lambda p: p.seconds("unet")),
    "image_s": ("estimated time per image", lambda p: p.est_image_s),
}
# What is published about each metric (figures, claims, their sources) is dsdcompare.published's
# (METRIC_FACTS, published_ratio): parsed there once, shared with the charts.


def ratios(profiles: Iterable[ModelProfile]) -> list[Ratio]:
    """Student/teacher ratios for every registry pair profiled under equal conditions."""
    profiles = list(profiles)
    out = []
    for student in profiles:
        if not student.teacher:
            continue
        for teacher in profiles:
            if teacher.model != student.teacher or teacher.conditions() != student.conditions():
                continue
            s_spec, t_spec = get_model(student.model), get_model(teacher.model)
            conditions = (f"{student.size} px, {student.dtype}, {student.device}, "
                          f"{SpeedOptions.from_dict(student.options).label()}, {student.source}")
            for metric, (label, value) in METRICS.items():
                s_val, t_val = value(student), value(teacher)
                measured = s_val / t_val if s_val is not None and t_val else None
                published, claim, source = published_ratio(s_spec, t_spec, metric)
                if measured is None and published is None and not claim:
                    continue
                out.append(Ratio(student.model, teacher.model, metric, label, measured,
                                 published, claim, source, conditions))
    return out


# --- tables ---------------------------------------------------------------------------------------

def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return round(seconds * 1e3, 1 if seconds < 10 else 0)


def _stage_params(profile: ModelProfile, stage: str) -> int:
    return sum(profile.params.get(m, 0) for m in STAGE_MODULES[stage])


def profile_table(profiles: Iterable[ModelProfile],
                  peak_of: Callable[[ModelProfile], Peak | None] | None = None) -> list[dict]:
    """One row per model and component, plus an ``image (est.)`` row per model.

    Columns: parameters (M), weight bytes in fp32 and fp16 (GB), GFLOP per call, median and
    range of the measured time (ms), the first call (ms), and the conditions. The image row
    holds the whole pipeline's parameters and ``text + steps x UNet + VAE (+ safety)``.
    With ``peak_of`` (a profile's device peak, e.g. from :func:`dsdcompare.hardware.device_peak`;
    None where unknown) two more columns: achieved ``TFLOP/s`` and ``utilisation (%)`` of that
    peak. Used by the command line and the dashboard's Models page.
    """
    rows = []
    for p in profiles:
        peak = peak_of(p) if peak_of is not None else None
        common = {"model": p.model, "size": p.size, "dtype": p.dtype, "device": p.device,
                  "options": SpeedOptions.from_dict(p.options).label(), "source": p.source}
        for stage in PROFILE_STAGES:
            if stage == "safety" and "safety_checker" not in p.params:
                continue
            n = _stage_params(p, stage)
            t = p.timings.get(stage)
            batch = " (batch 2)" if stage == "unet" and p.cfg else ""
            rows.append({
                **common, "component": STAGE_LABELS[stage] + batch,
                "params (M)": _r(n / 1e6), "fp32 (GB)": _r(n * 4 / 1e9, 2),
                "fp16 (GB)": _r(n * 2 / 1e9, 2),
                "GFLOP": _r(p.flops.get(stage, 0) / 1e9),
                "time (ms)": _ms(t.median_s) if t else None,
                "min–max (ms)": f"{_ms(t.min_s)}–{_ms(t.max_s)}" if t else None,
                "first call (ms)": _ms(statistics.median(t.first_s)) if t and t.first_s else None,
                "n": len(t.samples_s) if t else 0,
            })
            if peak_of is not None:
                rows[-1].update(_achieved(p.flops.get(stage), t.median_s if t else None, peak))
        est_flops = (p.flops.get("text", 0) + p.steps * p.flops.get("unet", 0)
                     + p.flops.get("vae", 0) + p.flops.get("safety", 0))
        rows.append({
            **common, "component": f"image (est., {p.steps} steps)",
            "params (M)": _r(p.total_params / 1e6), "fp32 (GB)": _r(p.total_params * 4 / 1e9, 2),
            "fp16 (GB)": _r(p.total_params * 2 / 1e9, 2), "GFLOP": _r(est_flops / 1e9),
            "time (ms)": _ms(p.est_image_s), "min–max (ms)": None,
            "first call (ms)": None, "n": None,
        })
        if peak_of is not None:
            rows[-1].update(_achieved(est_flops, p.est_image_s, peak))
    return rows


def _achieved(flops: float | None, seconds: float | None, peak: Peak | None) -> dict:
    """Achieved TFLOP/s and the percentage of ``peak`` (None where not measured or known)."""
    if not flops or not seconds:
        return {"TFLOP/s": None, "utilisation (%)": None}
    rate = flops / seconds
    return {"TFLOP/s": round(rate / 1e12, 4),
            "utilisation (%)": round(100 * utilisation(flops, seconds, peak), 2) if peak else None}


def summary_table(profiles: Iterable[ModelProfile]) -> list[dict]:
    """One row per model: sizes, per-component medians, estimated image time, peak memory."""
    rows = []
    for p in profiles:
        rows.append({
            "model": p.model, "size": p.size, "dtype": p.dtype, "device": p.device,
            "options": SpeedOptions.from_dict(p.options).label(),
            "UNet params (M)": _r(p.params.get("unet", 0) / 1e6),
            "UNet GFLOP/step": _r(p.flops.get("unet", 0) / 1e9),
            "text (ms)": _ms(p.seconds("text")), "UNet (ms/step)": _ms(p.seconds("unet")),
            "VAE (ms)": _ms(p.seconds("vae")), "safety (ms)": _ms(p.seconds("safety")),
            "est. s/image": _r(p.est_image_s, 2), "steps": p.steps,
            "peak memory (GB)": _r(p.peak_memory_bytes / 1e9, 2) if p.peak_memory_bytes else None,
            "notes": "; ".join(p.notes),
        })
    return rows


def ratio_table(rows: Iterable[Ratio]) -> list[dict]:
    """Rows for the student/teacher ratios, measured beside published."""
    return [{"student / teacher": f"{r.student} / {r.teacher}", "metric": r.label,
             "measured": _r(r.measured, 3), "published": _r(r.published, 3),
             "claim": r.claim, "conditions": r.conditions, "published source": r.source}
            for r in rows]


def format_markdown(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (None shows as an em dash)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def cell(value) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, float):
            if 0 < abs(value) < 0.001:  # e.g. a CPU's TFLOP/s: significant digits, not "0"
                return f"{value:.3g}"
            if abs(value) < 10:
                return f"{value:,.3f}".rstrip("0").rstrip(".")
            return f"{value:,.1f}".removesuffix(".0")
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --- saved profiles -------------------------------------------------------------------------------

def load_profiles(path: str | os.PathLike) -> list[ModelProfile]:
    """The profiles in a file written by ``dsdcompare profile --json FILE`` (its "profiles").

    ``dsdcompare profile --from-json`` reprints them (merging rounds with
    :func:`merge_profiles`). Raises :class:`ProfileError` naming the file when it cannot be
    read or holds no "profiles" list (``benchmarks/gpu_kit.py`` writes "eager" and
    "compiled" lists instead).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ProfileError(f"cannot read profiles from {str(path)!r}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), list):
        raise ProfileError(f"cannot read profiles from {str(path)!r}: it has no \"profiles\" "
                           f"list; give a file written by dsdcompare profile --json")
    return [ModelProfile.from_dict(d) for d in data["profiles"]]


def merge_profiles(profiles: Iterable[ModelProfile]) -> list[ModelProfile]:
    """Merge the rounds of each model measured under the same conditions, in first-seen order."""
    merged: dict[tuple, ModelProfile] = {}
    for p in profiles:
        key = (p.model, p.conditions())
        merged[key] = merged[key].merged(p) if key in merged else p
    return list(merged.values())


def report(profiles: list[ModelProfile],
           peak_of: Callable[[ModelProfile], Peak | None] | None = None) -> str:
    """The printed report: components table, ratios, and the conditions.

    With ``peak_of`` (see :func:`profile_table`) the components table adds achieved TFLOP/s and
    the utilisation of each profile's device peak, and the conditions name the peaks.
    """
    columns = ["model", "component", "params (M)", "fp32 (GB)", "fp16 (GB)", "GFLOP",
               "time (ms)", "min–max (ms)", "first call (ms)", "n"]
    if peak_of is not None:
        columns += ["TFLOP/s", "utilisation (%)"]
    parts = ["## Components", "", format_markdown(profile_table(profiles, peak_of), columns)]
    ratio_rows = ratio_table(ratios(profiles))
    if ratio_rows:
        parts += ["", "## Student / teacher", "", format_markdown(
            ratio_rows, ["student / teacher", "metric", "measured", "published", "claim"])]
    if profiles:
        p = profiles[0]
        notes = sorted({n for q in profiles for n in q.notes})
        parts += ["", "## Conditions", "",
                  f"- {p.device} ({p.device_name}), {p.dtype}, options "
                  f"{SpeedOptions.from_dict(p.options).label()}, source {p.source}, "
                  f"CFG {'on' if p.cfg else 'off'}, torch {p.env.get('torch')}, diffusers "
                  f"{p.env.get('diffusers')}, {p.env.get('torch_threads')} threads",
                  "- sizes: " + ", ".join(f"{q.model} {q.size} px" for q in profiles),
                  f"- {p.rounds} round(s) x {p.repeats} repeat(s) after {p.warmup} warm-up "
                  f"call(s){', one component at a time' if p.low_memory else ''}; load average "
                  f"before {p.env.get('load_average_before')}, after "
                  f"{p.env.get('load_average_after')}"]
        busy = [t.cpu_per_wall for q in profiles for t in q.timings.values() if t.cpu_per_wall]
        if busy:
            parts.append(f"- process CPU seconds per wall second while timing: "
                         f"{min(busy):.2f}–{max(busy):.2f} with {p.env.get('torch_threads')} "
                         f"torch thread(s) (well below the thread count means the process "
                         f"waited for a shared CPU)")
        parts += [f"- {n}" for n in notes]
        if peak_of is not None:
            peaks = {(q.device_name, q.dtype): peak_of(q) for q in profiles}
            parts += [f"- peak of {name} ({dtype}): "
                      + (f"{peak.label()}: {peak.source}" if peak else "not known")
                      for (name, dtype), peak in peaks.items()]
    return "\n".join(parts)


__all__ = ["METRICS", "Ratio", "format_markdown", "load_profiles",
           "merge_profiles", "parse_figure", "profile_table", "ratio_table", "ratios", "report",
           "summary_table"]
