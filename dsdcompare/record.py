"""The one recording path: a Request through the engine into the results store.

The CLI's ``compare``, ``bench`` and the dashboard all call :func:`run_request`: it starts a run
in the store, runs :func:`dsdcompare.engine.compare`, stores each Result the moment its model
finishes (so a crash loses no finished model), marks a result that could not be scored with the
reason, and finishes the run. :func:`open_scorer` is the one place that decides which CLIP
checkpoint scores a comparison, :func:`open_scorers` the one place that opens every chosen
metric's scorer (:func:`parse_metrics` reads the choice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import first_line

#: Scorer choices that are not checkpoint names.
AUTO_CHOICES = ("default", "auto")
#: The metric a comparison computes unless told otherwise (today's behaviour: CLIP alone).
DEFAULT_METRICS = ("clip",)


@dataclass
class Recording:
    """What :func:`run_request` did."""

    results: list  # engine Results, one per model run (teachers before their students)
    run_id: int | None  # the run in the store (None: not stored)
    notes: list[str] = field(default_factory=list)  # results that could not be stored, and why


def scorer_checkpoint(choice: str, models: Iterable, source: str | None) -> tuple[str | None, bool]:
    """The checkpoint a scorer ``choice`` means for these models and source, and whether its
    numbers are meaningful only for toy or stand-in images.

    ``none`` -> no scorer. ``default``/``auto`` follow the models: the toy CLIP when every model
    is a toy model (the tiny random CLIP if the toy CLIP is not built), the tiny random CLIP for
    random-weight stand-ins, else ``openai/clip-vit-large-patch14``. ``toy`` and ``tiny`` name
    those two; anything else is a checkpoint (hub name, local folder, ``open_clip:ARCH/TAG``).
    """
    from .metrics import DEFAULT_CHECKPOINT, SCORER_STANDIN
    from .registry import TOY_CLIP_DIR
    from .zoo import STANDIN_SOURCES

    models = list(models)
    if choice == "none":
        return None, False
    if choice in AUTO_CHOICES:
        if models and all(m.toy for m in models):
            choice = "toy"
        elif source in STANDIN_SOURCES:
            choice = "tiny"
        else:
            return DEFAULT_CHECKPOINT, False
    if choice == "toy":
        return (str(TOY_CLIP_DIR), True) if TOY_CLIP_DIR.is_dir() else (SCORER_STANDIN, True)
    if choice == SCORER_STANDIN:
        return SCORER_STANDIN, True
    toy = Path(choice).resolve() == TOY_CLIP_DIR.resolve()  # meaningful for toy images only
    return choice, toy


def open_scorer(choice: str, models: Iterable, source: str | None, device: str,
                loader: Callable | None = None):
    """The scorer for ``choice`` (see :func:`scorer_checkpoint`): ``(scorer, None)`` or
    ``(None, why)``. Never raises: a scorer that cannot load costs scores, never images.

    ``loader(checkpoint, device, standin)`` loads it (default :func:`dsdcompare.metrics.load_scorer`;
    the dashboard passes its shared, cached loader).
    """
    from .metrics import ScorerUnavailable, load_scorer
    from .store.scores import stable_checkpoint

    checkpoint, standin = scorer_checkpoint(choice, models, source)
    if checkpoint is None:
        return None, "scoring is off (scorer: none)"
    if loader is None:
        def loader(name, dev, toy):
            return load_scorer(name, device=dev, standin=True if toy else None)
    try:
        scorer = loader(checkpoint, device, standin)
        # recorded by content, never by this clone's folder: the same toy CLIP (or local
        # checkpoint) is one checkpoint on every machine, in merged stores and in bundles
        if isinstance(getattr(scorer, "checkpoint", None), str):
            scorer.checkpoint = stable_checkpoint(scorer.checkpoint)[0]
        return scorer, None
    except ScorerUnavailable as err:
        return None, first_line(err)
    except Exception as err:  # a broken scorer must not stop the comparison
        return None, f"scorer {checkpoint!r} failed to load: {type(err).__name__}: {first_line(err)}"


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """The per-image metrics a ``--metrics`` value names, in order, each once.

    ``text`` is comma-separated names from :data:`dsdcompare.scorers.METRICS` (``clip``,
    ``hps``, ``pickscore``, ``imagereward``, ``lpips``), ``all``, or ``none`` (no scores).
    None or empty: :data:`DEFAULT_METRICS`.

    Raises:
        InputError: an unknown name; the message lists the valid ones.
    """
    from .errors import InputError
    from .scorers import METRICS

    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    if not names:
        return DEFAULT_METRICS
    if names == ["none"]:
        return ()
    if names == ["all"]:
        return tuple(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r} in --metrics {text!r}; choose from "
                         f"{', '.join(METRICS)} (comma-separated), 'all' or 'none'")
    return tuple(dict.fromkeys(names))


def open_scorers(metrics: Iterable[str], models: Iterable, source: str | None, device: str,
                 loader: Callable | None = None, *, clip_choice: str = "default",
                 metric_loader: Callable | None = None) -> tuple[dict, dict]:
    """The scorers of ``metrics`` (see :func:`parse_metrics`): ``({metric: scorer},
    {metric: why it has none})``. Never raises: a scorer that cannot load costs its scores only.

    CLIP follows :func:`open_scorer` (``clip_choice`` is the ``--scorer`` value, ``loader`` its
    loader); every other metric is :func:`dsdcompare.scorers.load_metric_scorer` (or
    ``metric_loader(metric, device)``), which finds its weights in the local caches only.
    """
    from .metrics import ScorerUnavailable

    models = list(models)
    scorers: dict = {}
    why: dict[str, str] = {}
    for metric in metrics:
        if metric == "clip":
            scorer, reason = open_scorer(clip_choice, models, source, device, loader)
        else:
            try:
                if metric_loader is not None:
                    scorer = metric_loader(metric, device)
                else:
                    from .scorers import load_metric_scorer

                    scorer = load_metric_scorer(metric, device=device)
                reason = None
            except ScorerUnavailable as err:
                scorer, reason = None, first_line(err)
            except Exception as err:  # a broken scorer must not stop the comparison
                scorer, reason = None, (f"{metric} scorer failed to load: {type(err).__name__}: "
                                        f"{first_line(err)}")
        if scorer is None:
            why[metric] = reason or f"{metric}: no scorer"
        else:
            scorers[metric] = scorer
    return scorers, why


def run_request(request, models: list, *, store=None, note: str = "", resume: bool = False,
                store_keys: set[str] | None = None, scorer=None, scorer_choice: str = "default",
                no_score_reason: str | None = None, on_result: Callable | None = None,
                scorers: dict | None = None, no_score_reasons: dict | None = None,
                **compare_kwargs) -> Recording:
    """Run ``request`` through ``models`` and store each Result as soon as it is complete.

    ``store`` (a :class:`dsdcompare.store.Store` or None) receives one run; ``store_keys`` limits
    which models' results are stored (bench reruns a teacher for its student's fidelity without
    storing it twice). Without a CLIP scorer, each successful Result carries a score record
    saying why it was not scored (``no_score_reason``). ``scorers`` and ``no_score_reasons`` are
    :func:`open_scorers`' two dicts: each chosen metric without a scorer is recorded with its
    reason (LPIPS on students only: it compares a student with its teacher). ``on_result`` sees
    every Result after it is stored; ``compare_kwargs`` go to :func:`dsdcompare.engine.compare`
    (source, device, dtype, local_dirs, cache, speed_options, progress).
    """
    from .engine import compare
    from .metrics import score_unavailable
    from .store import DuplicateResultError, StoreError

    scorers = dict(scorers or {})
    scorer = scorer if scorer is not None else scorers.get("clip")
    missing = {m: r for m, r in (no_score_reasons or {}).items() if m not in scorers and m != "clip"}
    no_score_reason = no_score_reason or (no_score_reasons or {}).get("clip")

    # 1. A run in the store (resume completes an interrupted run of the same request)
    source = compare_kwargs.get("source")
    run_id = store.start_run(request, source=source, note=note, resume=resume) if store else None
    recording = Recording([], run_id)

    # 2. Each Result stored the moment its model finishes: a crash later loses nothing finished
    def finished(result) -> None:
        if result.success and scorer is None:
            result.put_score("clip", score_unavailable(scorer_choice, no_score_reason or "no scorer",
                                                       n_images=len(result.images)))
        if result.success and missing:
            from .scorers import metric_unavailable

            for metric, reason in missing.items():
                if metric != "lpips" or result.teacher:
                    result.put_score(metric, metric_unavailable(metric, reason,
                                                                n_images=len(result.images)))
        if store is not None and (store_keys is None or result.model in store_keys):
            try:
                store.add_result(run_id, result)
            except DuplicateResultError:
                recording.notes.append(f"{result.model}: already stored by another run")
            except StoreError as err:  # the images are still returned and shown
                recording.notes.append(f"{result.model} not stored: {first_line(err)}")
        if on_result is not None:
            on_result(result)

    # 3. The comparison (one Result per model; a failing model never stops the others)
    recording.results = compare(request, models, scorer=scorer, scorers=scorers, on_result=finished,
                                **compare_kwargs)
    if store is not None:
        store.finish_run(run_id)
    return recording
