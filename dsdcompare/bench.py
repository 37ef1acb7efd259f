"""Benchmark sweeps: prompt suites x seeds x step counts through several models, at scale.

``python -m dsdcompare bench --prompts core --models all --seeds 0-3 --steps 10,20,30``

The work is a list of *items* (prompt, seed, steps); every item runs through every chosen model
with :func:`dsdcompare.engine.compare`, so a student always runs on its teacher's prompt, seed
and initial latents (paired). Each Result is written to the store as soon as it finishes, and a
rerun skips every model the store already holds for an item (:meth:`Store.completed`): a killed
sweep resumes where it stopped, without duplicates.

Scaling out uses accelerate, not a home-made pool: under ``accelerate launch`` (several processes,
GPUs or nodes) :class:`accelerate.PartialState` splits the pending items between the processes;
each process runs all models for its items on its own device and writes its own results (the
store is multi-process safe). Without ``accelerate launch`` the same code runs as one process::

    # one process per GPU (add --num_machines N --machine_rank R --main_process_ip HOST for nodes)
    accelerate launch --multi_gpu --num_processes 4 -m dsdcompare bench --prompts core ...
    # several processes on a machine without a GPU (torchrun under the hood, gloo backend)
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no -m dsdcompare bench --device cpu --prompts core ...

Every process writes to the one SQLite store, which must be a local file all processes can lock:
SQLite's WAL mode does not work on network file systems, so on several nodes give each node its
own ``--store`` on a local disk (the main process decides the split, so shares stay disjoint) and
combine them afterwards with :meth:`Store.merge <dsdcompare.store.Store.merge>`::

    python -m dsdcompare store --store all/ merge node0/ node1/ node2/   # idempotent

To resume a killed multi-node sweep, merge first, copy the merged store to every node as its
``--store`` (so each node skips what any node finished), rerun, and merge again: results already
there are recognised and not copied twice.

(``accelerate launch --cpu --num_processes N`` starts *one* process unless MPI is configured
with ``--mpirun_hostfile``: accelerate's own multi-CPU launcher is mpirun. ``torchrun
--nproc_per_node N -m dsdcompare bench ...`` works too.)

Models run in groups (a teacher with its students; other models alone), one group at a time over
the process's items, so a process holds one pair in memory at a time, not every model.

``--report`` prints the summary (:func:`report_table`, which is :func:`dsdcompare.stats.summary`
of :func:`select_results`) of what the store holds for the command's selection without
generating anything; ``--report-csv FILE`` writes it.

This module is the library half: no argument parsing, no printing. The command line
(``dsdcompare bench``) is :mod:`dsdcompare.cli.bench`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import Request
from .errors import InputError
from .limits import MAX_WORK_ITEMS

#: Seeds and step counts of a sweep when not given (those of ``compare``).
DEFAULT_SEEDS = (0,)
DEFAULT_STEPS = (30,)


class BenchError(InputError):
    """The sweep cannot run as asked; the message names the bad value and the remedy."""


# --- what to run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkItem:
    """One unit of work: a prompt with one seed and one step count, for every model."""

    prompt: str  # the prompt text
    seed: int  # seed of the initial noise (the same for every model)
    steps: int  # denoising steps
    category: str | None = None  # the prompt's category in its suite, if any


def work_items(prompts, seeds: list[int], steps: list[int]) -> list[WorkItem]:
    """Every (prompt, seed, steps), prompt-major: a process's contiguous share then holds whole
    prompts with all their seeds and step counts, so shares cost about the same.

    Raises :class:`BenchError` before building anything when the sweep would hold more than
    :data:`~dsdcompare.limits.MAX_WORK_ITEMS` items.
    """
    prompts = list(prompts)
    size = len(prompts) * len(seeds) * len(steps)
    if size > MAX_WORK_ITEMS:
        raise BenchError(f"the sweep has {len(prompts)} prompts x {len(seeds)} seeds x "
                         f"{len(steps)} step counts = {size} items; at most {MAX_WORK_ITEMS}: "
                         f"give fewer seeds, step counts or prompts (--limit)")
    return [WorkItem(getattr(p, "text", p), seed, n, getattr(p, "category", None))
            for p in prompts for seed in seeds for n in steps]


def request_for(item: WorkItem, template: Request) -> Request:
    """The Request of ``item``: the sweep's settings with the item's prompt, seed and steps."""
    return dataclasses.replace(template, prompt=item.prompt, seed=item.seed, steps=item.steps)


def model_groups(models) -> list[list]:
    """``models`` split into groups that must run together: a teacher with its chosen students
    (their images are paired on the same latents); every other model alone. Teachers first."""
    from .engine import teachers_first

    models = teachers_first(list(models))
    teacher = {m.key: m.teacher for m in models}

    def root(key: str) -> str:  # follow the teacher chain while the teacher is chosen too
        seen = {key}
        while teacher.get(key) in teacher and teacher[key] not in seen:
            key = teacher[key]
            seen.add(key)
        return key

    groups: dict[str, list] = {}
    for m in models:
        groups.setdefault(root(m.key), []).append(m)
    return list(groups.values())


# --- running -----------------------------------------------------------------------------------

@dataclass
class BenchOutcome:
    """What one process did."""

    process_index: int = 0  # this process's rank under accelerate (0 alone)
    num_processes: int = 1  # processes sharing the sweep
    items: int = 0  # items in the sweep
    pending_items: int = 0  # items with something left to run at the start (all processes)
    my_items: int = 0  # this process's share of the pending items
    stored: int = 0  # results this process stored
    failed: int = 0  # ... of which failed (stored with their error; a rerun retries them)
    skipped: int = 0  # model runs of this process's share already in the store
    wall_s: float = 0.0  # seconds this process spent in run_bench
    failures: list[str] = field(default_factory=list)  # "model / prompt / seed / steps: error"
    notes: list[str] = field(default_factory=list)  # results not stored, and why (run_request)


def _source_of(spec, source: str | None) -> str:
    return source or spec.default_source


def _missing(store, request: Request, group, source) -> list:
    return [m for m in group if not store.completed(request, m.key, _source_of(m, source))]


def _plan(items: list[WorkItem], groups, template: Request, store, source, state, out) -> list:
    """This process's share of the pending items, as (request, models to run, models to store).

    The main process reads the store and sends the pending list to the others, so every process
    splits the same list the same way (nothing lost, nothing run twice), and reads it before
    any process writes.
    """
    pending = None
    if state.is_main_process:
        pending = [it for it in items
                   if any(_missing(store, request_for(it, template), g, source) for g in groups)]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        pending = broadcast_object_list([pending], from_process=0)[0]
    out.pending_items = len(pending)
    with state.split_between_processes(pending) as mine:
        mine = list(mine)
    out.my_items = len(mine)
    plan = []
    for group in groups:
        for item in mine:
            request = request_for(item, template)
            missing = _missing(store, request, group, source)
            out.skipped += len(group) - len(missing)
            if missing:
                # a student's teacher reruns with it (not stored again): fidelity needs its image
                keys = {m.key for m in missing} | {m.teacher for m in missing}
                plan.append((request, [m for m in group if m.key in keys], missing))
    return plan


def run_bench(items: list[WorkItem], models, template: Request, *, store, source: str | None = None,
              device: str = "auto", dtype: str = "auto", local_dirs: dict | None = None,
              scorer=None, no_score_reason: str | None = None, state=None,
              progress_bar: Callable[[int, str, int | None], Any] | None = None,
              scorers: dict | None = None, no_score_reasons: dict | None = None) -> BenchOutcome:
    """Run every item through every model, skipping what ``store`` holds; store each Result.

    ``state`` is an :class:`accelerate.PartialState` (default: the current one): the pending
    items are split between its processes, and each process runs its share on ``device``.
    Each item goes through :func:`dsdcompare.record.run_request` (one run per item; each
    Result stored as it finishes). ``scorer`` adds CLIP scores (None: results carry
    ``no_score_reason``); ``scorers`` / ``no_score_reasons`` are
    :func:`dsdcompare.record.open_scorers`' two dicts (every chosen metric). With ``template.warmup == 0`` each process makes one untimed call per
    model before its first item (not stored), so no stored timing includes a cold first call.
    ``progress_bar(total_steps, tag, position)`` makes the progress display (the CLI's
    :class:`~dsdcompare.cli.progress.StepProgress`); None shows nothing. Returns this
    process's counts.
    """
    from accelerate import PartialState

    from .engine import compare
    from .record import run_request

    state = state or PartialState()
    started = time.perf_counter()
    out = BenchOutcome(process_index=state.process_index, num_processes=state.num_processes,
                       items=len(items))
    plan = _plan(items, model_groups(models), template, store, source, state, out)
    calls = template.warmup + template.repeats
    total = sum(len(run) * calls * req.steps for req, run, _ in plan)
    tag = f"bench {state.process_index + 1}/{state.num_processes}" if state.num_processes > 1 else "bench"
    bar = (progress_bar or _NoBar)(total, tag, state.local_process_index
                                   if state.num_processes > 1 else None)
    warmed: set[str] = set()
    common = dict(source=source, device=device, dtype=dtype, local_dirs=local_dirs)
    # Generate, storing each Result as soon as it is complete
    for request, run_models, to_store in plan:
        cold = [m for m in run_models if m.key not in warmed]
        if template.warmup == 0 and cold:
            compare(dataclasses.replace(request, repeats=1), cold, **common)  # untimed, not stored
        warmed.update(m.key for m in run_models)
        done_before = bar.n
        store_keys = {m.key for m in to_store}

        def progress(ev, _steps=request.steps) -> None:
            bar.event(ev, _steps)

        def finished(result, _request=request, _keys=store_keys) -> None:
            if result.model in _keys:
                _count(out, result, _request)
                bar.note(f"stored {out.stored}, failed {out.failed}")

        recording = run_request(request, run_models, store=store, note="bench",
                                store_keys=store_keys, scorer=scorer, scorer_choice="none",
                                no_score_reason=no_score_reason, on_result=finished,
                                scorers=scorers, no_score_reasons=no_score_reasons,
                                progress=progress, **common)
        out.stored -= len(recording.notes)  # results another process stored first
        out.notes += recording.notes
        # failed models and PNDM's extra step leave the bar off by a little: set it exactly
        bar.update(done_before + len(run_models) * calls * request.steps - bar.n)
    bar.close()
    out.wall_s = time.perf_counter() - started
    # Everyone finishes before anyone reports on the whole store
    state.wait_for_everyone()
    return out


class _NoBar:
    """The progress display when none is wanted."""

    def __init__(self, total: int, tag: str, position: int | None):
        self.n = 0

    def event(self, ev, steps: int) -> None:
        if ev.phase in ("warmup", "repeat") and 0 < ev.step <= steps:
            self.n += 1

    def update(self, k: int) -> None:
        self.n += k

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _count(out: BenchOutcome, result, request: Request) -> None:
    out.stored += 1
    if not result.success:
        out.failed += 1
        out.failures.append(f"{result.model} / {request.prompt!r} / seed {request.seed}"
                            f" / {request.steps} steps: {result.error}")


def use_cpu(device: str) -> bool:
    """Whether accelerate must run its processes on the CPU (``PartialState(cpu=True)``).

    Without it, processes started by ``accelerate launch --multi_gpu`` or ``torchrun`` on a
    machine without a GPU would each believe they are alone and all run every item.
    ``accelerate launch --cpu`` sets ``ACCELERATE_USE_CPU``.
    """
    flag = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return flag or device == "cpu"


# --- reporting ---------------------------------------------------------------------------------

def select_results(df, *, models=None, source=None, prompts=None, seeds=None, steps=None,
                   template: Request | None = None):
    """The rows of a results DataFrame that a bench command selects (None: no filter).

    ``template`` adds the settings that change the images: negative prompt, guidance, size
    (None: native), images per prompt and, when named, the scheduler.
    """
    keep = df["success"].notna()
    if models is not None:
        keep &= df["model"].isin([getattr(m, "key", m) for m in models])
    if source is not None:
        keep &= df["source"] == source
    if prompts is not None:
        keep &= df["prompt"].isin([getattr(p, "text", p) for p in prompts])
    if seeds is not None:
        keep &= df["seed"].isin(list(seeds))
    if steps is not None:
        keep &= df["steps"].isin(list(steps))
    if template is not None:
        keep &= df["negative_prompt"].fillna("") == (template.negative_prompt or "")
        keep &= (df["guidance"] - float(template.guidance)).abs() < 1e-9
        keep &= (df["size"].isna() if template.size is None else df["size"] == template.size)
        keep &= df["images_per_prompt"] == template.images_per_prompt
        if template.scheduler:
            keep &= df["scheduler"] == template.scheduler
    return df[keep.fillna(False).astype(bool)]


def report_table(df, *, metric: str = "clip", **selection):
    """``bench --report``'s table: :func:`dsdcompare.stats.summary` of ``metric`` over the rows
    of ``df`` (a store's results; for a metric other than CLIP, ``Store.results(metric=...)``)
    that :func:`select_results` keeps for ``selection``.

    Returns ``(table, rows)``: the summary and the selected rows (the report's notes read them).
    """
    from .stats import summary

    rows = select_results(df, **selection)
    return summary(rows, metric=metric), rows


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _ci(low, high) -> str:
    return "" if any(v is None or math.isnan(v) for v in (low, high)) else f" [{low:.2f}, {high:.2f}]"


def format_report(table, df=None, *, metric: str = "clip") -> str:
    """The summary table as text: one line per model and step count (and varying condition);
    the score columns are ``metric``'s."""
    if table.empty:
        return "no results in the store for this selection"
    from .stats import METRICS, SUMMARY_COLUMNS, column_of

    column = column_of(metric)
    label = "CLIP" if column == "clip_score" else (METRICS[column].label if column in METRICS
                                                   else metric)
    group_cols = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    head = [*group_cols, "n", f"{label} mean [95% CI]", "vs teacher [95% CI]",
            "latency s (p10-p90)", "img/s", "speedup"]
    lines = []
    for _, r in table.iterrows():
        lines.append([
            *(str(r[c]) for c in group_cols),
            f"{r['n']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else ""),
            _fmt(r["clip_mean"]) + _ci(r["clip_ci_low"], r["clip_ci_high"]),
            (_fmt(r["diff_mean"], "+.2f") + _ci(r["diff_ci_low"], r["diff_ci_high"])
             if r["n_paired"] else "-"),
            f"{_fmt(r['latency_median_s'], '.3f')} ({_fmt(r['latency_p10_s'], '.3f')}-"
            f"{_fmt(r['latency_p90_s'], '.3f')})",
            _fmt(r["images_per_s"]),
            _fmt(r["speedup_median"], ".2f") + ("x" if r["n_paired"] else ""),
        ])
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    text = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    text += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in lines]
    notes = []
    if df is not None and len(df):
        if df["standin"].fillna(False).astype(bool).any():
            notes.append("stand-in weights (tiny/arch): the images are noise; latencies are real")
        if df["score_standin"].fillna(False).astype(bool).any():
            notes.append(f"stand-in scorer: {label} scores are meaningless")
    if column != "clip_score":
        notes.append(f"{label}: one checkpoint and scale per row (the scorer's identity splits "
                     f"rows; scores of different checkpoints are never averaged)")
    notes.append("CIs: bootstrap (BCa) over prompts, seeds averaged within a prompt; "
                 "vs teacher = paired difference on the same prompt, seed and steps")
    return "\n".join(text + [f"note: {n}" for n in notes])


