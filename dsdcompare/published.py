"""Published figures about the registry's models, each with its source: the one place they live.

The project measures its models itself; these are the numbers other people published (papers,
model cards, config files), kept to check the measurements against. Each is a :class:`Fact`:
the value as published, where it comes from, and the number parsed once, here, so that the
registry (``ModelSpec.facts``), the charts' published claims and the profiler's ratio table all
read the same parsed value. Claims in words ("60% speedup") carry their ratios as data.

Sources, in words (nothing outside the project is cited by file):

- SD v1.4: its UNet (859.52 M parameters counted from ``CompVis/stable-diffusion-v1-4``
  ``unet/config.json``; 859.5 M in the BK-SDM paper).
- BK-SDM-Small: its UNet (482.35 M counted from Nota-NetsPresso/BK-SDM
  ``src/unet_config/bk_small/config.json``; the model card rounds to 0.49 B); the
  ``nota-ai/bk-sdm-small`` model card: whole model 1.04 B -> 0.66 B parameters, "36% reduced
  parameters and latency", and its MS-COCO 30K evaluation (256², PNDM 25 steps, CLIP score by
  open_clip ViT-g-14 as a raw cosine).
- SDXL base 1.0: its UNet (2567.46 M counted from ``unet/config.json``).
- SSD-1B: the ``segmind/SSD-1B`` model card ("1.3B" UNet; "50% smaller, 60% speedup" over
  SDXL; a negative prompt and guidance around 9 recommended); its hub UNet weights (5.33 GB fp32,
  2.66 GB fp16).
- The KOALA paper's latency chart (RTX 4090, 1024²): SDXL 3.23 s, SSD-1B 2.09 s per image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Metrics a published figure can speak to (the profiler's ratio metrics and the CLIP score),
#: with the fact names (case-insensitive prefixes) that speak to each. Facts both members of a
#: pair publish under one name give a published ratio; a student's others are claims.
METRIC_FACTS: dict[str, tuple[str, ...]] = {
    "unet_params": ("UNet parameters",),
    "generation_params": ("whole-model parameters", "whole-model reduction", "claim"),
    "image_s": ("latency", "whole-model reduction", "claim"),
    "clip_score": ("CLIP score",),
}

_FIGURE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kMBG]|s|ms)?\s*")
_SCALE = {"k": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}


def parse_figure(value: str) -> tuple[float, str] | None:
    """``"859.5 M"`` -> ``(859.5e6, "count")``, ``"3.23 s"`` -> ``(3.23, "s")``,
    ``"0.2958"`` -> ``(0.2958, "number")``; anything else (words, several figures) -> None."""
    match = _FIGURE.fullmatch(value)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2) or ""
    if unit in _SCALE:
        return number * _SCALE[unit], "count"
    if unit == "ms":
        return number / 1e3, "s"
    return number, unit or "number"


@dataclass(frozen=True)
class Fact:
    """A published figure about a model, with where it comes from, parsed once."""

    name: str  # what is measured, e.g. "UNet parameters"; a pair's facts of one name compare
    value: str  # the figure as published, verbatim, e.g. "859.5 M"
    source: str  # where it is published (paper, model card, config file)
    # a claim relative to the model's teacher, as data: (metric of METRIC_FACTS, student / teacher)
    ratios: tuple[tuple[str, float], ...] = ()
    number: float | None = field(init=False)  # ``value`` parsed (None: not a single figure)
    unit: str | None = field(init=False)  # unit of ``number``: "count", "s" or "number"

    def __post_init__(self) -> None:
        parsed = parse_figure(self.value)
        # frozen: the parsed fields are derived from ``value`` once, at construction
        object.__setattr__(self, "number", parsed[0] if parsed else None)
        object.__setattr__(self, "unit", parsed[1] if parsed else None)

    def speaks_to(self, metric: str) -> bool:
        """Whether this fact bears on ``metric`` (a key of :data:`METRIC_FACTS`)."""
        return self.name.lower().startswith(tuple(p.lower() for p in METRIC_FACTS.get(metric, ())))

    def ratio(self, metric: str) -> float | None:
        """The student/teacher ratio this claim states for ``metric``, or None."""
        return next((r for m, r in self.ratios if m == metric), None)


_BK_CARD = "nota-ai/bk-sdm-small model card"
_BK_EVAL = f"{_BK_CARD} (MS-COCO 30K, 256², 25 PNDM steps, open_clip ViT-g-14 raw cosine)"
_SSD_CARD = "segmind/SSD-1B model card"
_KOALA = "KOALA paper chart"

#: Published facts per registry key (the registry's ``ModelSpec.facts`` are these).
FACTS: dict[str, tuple[Fact, ...]] = {
    "sd-v1-4": (
        Fact("UNet parameters", "859.5 M",
             "BK-SDM paper; CompVis/stable-diffusion-v1-4 unet/config.json (859.52 M by count)"),
        Fact("whole-model parameters", "1.04 B", _BK_CARD),
        Fact("FID (COCO 30K)", "13.05", _BK_EVAL),
        Fact("IS (COCO 30K)", "36.76", _BK_EVAL),
        Fact("CLIP score", "0.2958", _BK_EVAL),
    ),
    "bk-sdm-small": (
        Fact("UNet parameters", "482.3 M",
             "Nota-NetsPresso/BK-SDM src/unet_config/bk_small/config.json (482.35 M by count; "
             "the card rounds to 0.49 B)"),
        Fact("whole-model parameters", "0.66 B", _BK_CARD),
        Fact("FID (COCO 30K)", "16.98", _BK_EVAL),
        Fact("IS (COCO 30K)", "31.68", _BK_EVAL),
        Fact("CLIP score", "0.2677", _BK_EVAL),
        Fact("whole-model reduction", "36% reduced parameters and latency", _BK_CARD,
             ratios=(("generation_params", 0.64), ("image_s", 0.64))),
    ),
    "sdxl-base": (
        Fact("UNet parameters", "2567.5 M",
             "stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (2567.46 M by count)"),
        Fact("latency, 1024², RTX 4090", "3.23 s", _KOALA),
    ),
    "ssd-1b": (
        Fact("UNet parameters", "1.3 B", _SSD_CARD),
        Fact("UNet weights", "5.33 GB fp32, 2.66 GB fp16", "segmind/SSD-1B unet weight files"),
        Fact("claim", "50% smaller, 60% speedup over SDXL", _SSD_CARD,
             ratios=(("image_s", 1 / 1.6),)),
        Fact("latency, 1024², RTX 4090", "2.09 s", _KOALA),
        Fact("recommended settings", "a negative prompt; guidance ≈ 9", _SSD_CARD),
    ),
}


def facts_for(key: str) -> tuple[Fact, ...]:
    """The published facts of registry key ``key`` (none for models nobody published about)."""
    return FACTS.get(key, ())


def pairs(student, teacher, metric: str) -> list[tuple[Fact, Fact | None]]:
    """The student's facts that speak to ``metric``, each with the teacher's fact of the same
    name (None: the student's own claim). ``student``/``teacher`` have ``facts``."""
    theirs = {f.name: f for f in teacher.facts}
    return [(f, theirs.get(f.name)) for f in student.facts if f.speaks_to(metric)]


def figure_ratio(fact: Fact, other: Fact | None) -> float | None:
    """``fact / other`` when both are figures of one unit and ``other`` is positive, else None."""
    if other is None or fact.number is None or other.number is None:
        return None
    if fact.unit != other.unit or other.number <= 0:
        return None
    return fact.number / other.number


def published_ratio(student, teacher, metric: str) -> tuple[float | None, str, str]:
    """What is published about ``student / teacher`` on ``metric``: the ratio of the first
    figure both publish under one name (None: none), the student's claims that speak to it
    ("; " between them), and the sources."""
    ratio, claims, sources = None, [], []
    for fact, other in pairs(student, teacher, metric):
        value = figure_ratio(fact, other)
        if value is not None and ratio is None:
            ratio = value
            sources.append(f"{fact.name}: {fact.value} vs {other.value} ({fact.source}; "
                           f"{other.source})")
        elif other is None:
            claims.append(fact.value if fact.name == "claim" else f"{fact.name}: {fact.value}")
            sources.append(fact.source)
    return ratio, "; ".join(claims), "; ".join(dict.fromkeys(sources))


# --- claims drawn on the charts ---------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A published student-vs-teacher figure, as a ratio (student / teacher)."""

    student: str  # registry key of the student
    teacher: str  # registry key of its teacher
    latency_ratio: float | None  # student latency / teacher latency (None: not claimed)
    score_ratio: float | None  # student CLIP score / teacher CLIP score (None: not claimed)
    label: str  # what is claimed, e.g. "BK-SDM-Small, its model card: 36% less latency"
    source: str  # where it is published, in full
    document: str = ""  # the source's short name, drawn beside the mark


def published_claims(specs: Iterable) -> list[Claim]:
    """Student/teacher ratios from the published facts of registry specs.

    A latency in seconds ("3.23 s") or a "CLIP score" that both members of a pair publish under
    one fact name gives their ratio; a student's claim that states a latency ratio ("60%
    speedup", parsed once here) gives that ratio. Claims from one
    document (same source up to its first parenthesis) are merged into one point.
    """
    specs = {s.key: s for s in specs}
    claims: dict[tuple[str, str], dict] = {}

    def add(student, teacher, source, *, latency=None, score=None, text=""):
        doc = source.split(" (")[0].strip()
        c = claims.setdefault((student, doc), {"teacher": teacher, "latency": None,
                                               "score": None, "texts": [], "source": source})
        c["latency"] = latency if latency is not None else c["latency"]
        c["score"] = score if score is not None else c["score"]
        c["texts"].append(text)

    for spec in specs.values():
        teacher = specs.get(spec.teacher or "")
        if teacher is None:
            continue
        for fact, other in pairs(spec, teacher, "image_s"):
            ratio = figure_ratio(fact, other)
            if ratio is not None and fact.unit == "s":
                add(spec.key, teacher.key, fact.source, latency=ratio,
                    text=f"{fact.value} vs {other.value} ({fact.name.split(',', 1)[-1].strip()})")
            elif other is None and fact.ratio("image_s") is not None:
                add(spec.key, teacher.key, fact.source, latency=fact.ratio("image_s"),
                    text=fact.value)
        for fact, other in pairs(spec, teacher, "clip_score"):
            ratio = figure_ratio(fact, other)
            if ratio is not None:
                add(spec.key, teacher.key, fact.source, score=ratio,
                    text=f"CLIP {fact.value} vs {other.value}")
    return [Claim(student, c["teacher"], c["latency"], c["score"],
                  f"{specs[student].name}, {doc}: " + "; ".join(t for t in c["texts"] if t),
                  c["source"], f"{specs[student].name} · {doc}")
            for (student, doc), c in claims.items()]
