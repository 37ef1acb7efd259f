"""Generating what a review lacks, and the offline toy review.

:func:`generate_missing` runs exactly what :func:`~dsdcompare.review.model.bench_command` prints
(bench's :func:`~dsdcompare.bench.run_bench` with bench's defaults, in this process), so the
dashboard's "generate here" and the printed command fill a review the same way.
"""

from __future__ import annotations

from .model import TOY_PROMPTS, TOY_REVIEW_NAME, Plan, Review, Selection, create_review, plan_review

#: Seeds of the toy review: 12 prompts x 2 seeds = 24 pairs.
TOY_SEEDS = (0, 1)


def generate_missing(store, plan: Plan, *, device: str = "auto", dtype: str = "auto",
                     scorer: str = "default", progress_bar=None):
    """Generate the missing results of ``plan`` into ``store`` (one process); return bench's
    :class:`~dsdcompare.bench.BenchOutcome`. ``scorer`` is a choice of
    :func:`dsdcompare.record.open_scorer` (``default``: the toy CLIP for toy models);
    ``progress_bar`` is :func:`~dsdcompare.bench.run_bench`'s (None: no display)."""
    from ..bench import WorkItem, run_bench
    from ..engine import Request
    from ..loading import resolve_device
    from ..record import open_scorer
    from ..registry import get_model

    s = plan.selection
    category = {p.text: p.category for p in plan.prompts}
    items = [WorkItem(prompt, seed, s.steps, category.get(prompt))
             for prompt, seed in dict.fromkeys((m.prompt, m.seed) for m in plan.missing)]
    specs = [get_model(m) for m in plan.models]
    template = Request(prompt="-", guidance=s.guidance, size=s.size).validate()
    device = resolve_device(device)
    scorer_obj, why = open_scorer(scorer, specs, s.source, device)
    return run_bench(items, specs, template, store=store, source=s.source, device=device,
                     dtype=dtype, scorer=scorer_obj, no_score_reason=why,
                     progress_bar=progress_bar)


def toy_selection() -> Selection:
    """The toy review's selection: the 12 committed toy prompts, seeds 0-1, the toy defaults."""
    from .model import default_settings

    steps, guidance = default_settings(["toy-teacher", "toy-student"])
    return Selection(prompts=str(TOY_PROMPTS), seeds=TOY_SEEDS, steps=steps, guidance=guidance)


def create_toy_review(store, owner: str, *, name: str = TOY_REVIEW_NAME, criteria=None,
                      device: str = "cpu") -> Review:
    """Generate (when missing) and create the offline demo review: toy teacher vs toy student,
    24 latent-matched pairs, with the default criteria unless ``criteria`` are given."""
    from .decision import DEFAULT_CRITERIA

    plan = plan_review(store, ["toy-teacher", "toy-student"], toy_selection())
    if plan.missing:
        generate_missing(store, plan, device=device)
        plan = plan_review(store, plan.models, plan.selection)
    return create_review(store, name, owner, plan,
                         criteria=DEFAULT_CRITERIA if criteria is None else criteria)
