"""Wire one comparison: shared pipeline cache, shared scorer, live progress, store as it goes.

The only dsdcompare function called is :func:`dsdcompare.engine.compare`; everything else is
handing it the dashboard's shared resources and keeping what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsdcompare.engine import Request, compare
from dsdcompare.registry import get_model

from . import resources
from .settings import Settings


@dataclass
class Outcome:
    """One finished comparison, kept in session state (plain data and PIL images, no pipelines)."""

    request: Request
    results: list  # engine Results, teachers before their students
    mode: str  # weight mode key
    seconds: float  # wall time from Generate to the last result
    run_id: int | None = None  # id in the results store, when saved
    notes: list[str] = field(default_factory=list)  # scorer or store problems to show


def load_scorer(s: Settings):
    """``(scorer, None)`` or ``(None, why)``: a scorer that cannot load costs scores, not images."""
    if s.scorer is None:
        return None, "scoring is off (sidebar: CLIP scorer = None)"
    from dsdcompare.metrics import ScorerUnavailable

    try:
        return resources.scorer(s.scorer, s.device, s.scorer_standin), None
    except ScorerUnavailable as err:
        return None, str(err).splitlines()[0]
    except Exception as err:  # a broken scorer must not stop the comparison
        return None, f"scorer {s.scorer!r} failed to load: {type(err).__name__}: {err}"


def run_comparison(s: Settings, request: Request, models: list[str], panel) -> Outcome:
    """Run ``request`` through ``models`` with the shared resources; store each result at once."""
    import time

    from dsdcompare.metrics import score_unavailable

    started = time.perf_counter()
    notes: list[str] = []
    # 1. Shared scorer and store (either may be unavailable: say so, go on)
    scorer, why_no_score = load_scorer(s)
    if why_no_score and s.scorer is not None:
        notes.append(f"No CLIP score: {why_no_score}")
    store, run_id = None, None
    if s.save and not s.store_readonly:
        store, why = resources.open_store(s.store_path, readonly=False, create=True)
        if store is None:
            notes.append(f"Not saved: {why}")
        else:
            run_id = store.start_run(request, source=s.mode.source, note="dashboard")

    def finished(result) -> None:  # stored as soon as it is complete
        if result.success and scorer is None and s.scorer is not None:
            result.score = score_unavailable(s.scorer, why_no_score or "no scorer",
                                             n_images=len(result.images))
        panel.finished(result)
        if store is not None:
            try:
                store.add_result(run_id, result)
            except Exception as err:  # the images are still shown
                notes.append(f"{result.model_name} not saved: {err}")

    # 2. The comparison (one Result per model; a failing model never stops the others)
    results = compare(request, [get_model(k) for k in models], source=s.mode.source,
                      device=s.device, dtype=s.dtype, cache=resources.pipeline_cache(),
                      scorer=scorer, progress=panel, on_result=finished)
    if store is not None:
        store.finish_run(run_id)
    panel.close(results)
    return Outcome(request, results, s.mode.key, time.perf_counter() - started, run_id, notes)
