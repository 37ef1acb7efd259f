"""Benchmark sweeps: prompt suites and file loaders, work items, resume, kill, accelerate sharding."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsdcompare import bench
from dsdcompare.errors import InputError
from dsdcompare.prompts import DuplicatePromptWarning, Prompt, PromptFileError, list_suites, load_prompts

REPO = Path(__file__).resolve().parents[1]


# --- suites ---------------------------------------------------------------------------------------

def test_core_suite_has_60_plus_prompts_across_the_categories():
    prompts = load_prompts("core")
    counts = collections.Counter(p.category for p in prompts)
    assert len(prompts) >= 60
    assert set(counts) == {"animals", "people", "scenes", "objects", "counting", "composition",
                           "text", "styles"}
    assert min(counts.values()) >= 5
    assert len({p.text for p in prompts}) == len(prompts)
    assert prompts[0].origin == "core.csv line 2"


def test_shapes_suite_is_the_toy_captions():
    from dsdcompare.toyzoo.data import ALL_ATTRIBUTES

    assert [p.text for p in load_prompts("shapes")] == [a.caption for a in ALL_ATTRIBUTES]
    assert list_suites() == ["core", "shapes"]


# --- user files -----------------------------------------------------------------------------------

def write(tmp_path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_txt_one_prompt_a_line_skipping_blanks_and_comments(tmp_path):
    path = write(tmp_path, "p.txt", "# my prompts\na cat\n\n  a dog, running  \n")
    assert load_prompts(path) == [Prompt("a cat", None, "p.txt line 2"),
                                  Prompt("a dog, running", None, "p.txt line 4")]


def test_partiprompts_tsv_layout(tmp_path):
    path = write(tmp_path, "PartiPrompts.tsv",
                 "Prompt\tCategory\tChallenge\tNote\n"
                 "bond, james bond\tPeople\tBasic\t\n"
                 "a \"quoted\" word\tAbstract\tBasic\tnote\n")
    prompts = load_prompts(path)
    assert [(p.text, p.category) for p in prompts] == [("bond, james bond", "People"),
                                                       ('a "quoted" word', "Abstract")]


def test_drawbench_csv_layout_with_a_bom_and_quoted_commas(tmp_path):
    path = write(tmp_path, "drawbench.csv", "\ufeffPrompts,Category\n"
                                            "\"A red colored car, parked.\",Colors\n"
                                            "A black apple.,Colors\n")
    prompts = load_prompts(path, limit=1)
    assert prompts == [Prompt("A red colored car, parked.", "Colors", "drawbench.csv line 2")]


def test_csv_prompt_column_by_name(tmp_path):
    path = write(tmp_path, "c.csv", "id,caption,my_text\n1,ignored,a teapot\n")
    assert [p.text for p in load_prompts(path)] == ["ignored"]  # 'caption' is a known name
    assert [p.text for p in load_prompts(path, column="my_text")] == ["a teapot"]
    with pytest.raises(PromptFileError, match=r"c.csv line 1: no prompt column \('nope'\); the "
                                              r"header has \['id', 'caption', 'my_text'\]"):
        load_prompts(path, column="nope")


def test_jsonl_objects_and_strings(tmp_path):
    path = write(tmp_path, "p.jsonl", '{"prompt": "a cat", "category": "animals"}\n\n'
                                      '"a dog"\n{"Text": "a bird", "id": 3}\n')
    assert load_prompts(path) == [Prompt("a cat", "animals", "p.jsonl line 1"),
                                  Prompt("a dog", None, "p.jsonl line 3"),
                                  Prompt("a bird", None, "p.jsonl line 4")]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c",}\n',
     r"bad.jsonl line 3: not valid JSON"),
    ("bad.jsonl", '{"prompt": "a"}\n{"title": "b"}\n',
     r"bad.jsonl line 2: no prompt key \(one of \['prompt', 'prompts', 'text', 'caption'\]\); "
     r"the object has \['title'\]"),
    ("bad.jsonl", '42\n', r"bad.jsonl line 1: expected a JSON object with a prompt, or a string"),
    ("bad.jsonl", '{"prompt": "  "}\n', r"bad.jsonl line 1: the prompt must be a non-empty string"),
    ("bad.csv", "title,category\nx,y\n", r"bad.csv line 1: no prompt column .* --prompt-column"),
    ("bad.csv", "prompt,category\na cat,animals\n,animals\n", r"bad.csv line 3: empty prompt"),
    ("bad.csv", "prompt,category\na cat, a dog,animals\n",
     r"bad.csv line 2: 3 fields but the header has 2; quote fields that contain ','"),
    ("bad.tsv", "", r"bad.tsv: no prompts found"),
    ("bad.txt", "# only a comment\n\n", r"bad.txt: no prompts found"),
    ("bad.txt", b"a cat\nna\xefve\n", r"bad.txt line 2: not valid UTF-8"),
    ("bad.json", "[]", r"bad.json: unsupported prompt file type '.json'; use one of "
                       r".txt, .csv, .tsv, .jsonl"),
])
def test_bad_files_name_the_line(tmp_path, name, content, message):
    with pytest.raises(PromptFileError, match=message):
        load_prompts(write(tmp_path, name, content))


def test_unknown_suite_or_missing_file_lists_the_suites(tmp_path):
    with pytest.raises(PromptFileError, match=r"'corr' is neither a prompt file nor a suite. "
                                              r"Suites: \['core', 'shapes'\]"):
        load_prompts("corr")


def test_duplicates_are_dropped_with_a_warning_naming_the_lines(tmp_path):
    path = write(tmp_path, "d.txt", "a cat\na dog\na cat\n")
    with pytest.warns(DuplicatePromptWarning, match=r"d.txt: 1 duplicate prompt\(s\) dropped "
                                                    r"\(line 3 repeats line 1\)"):
        assert [p.text for p in load_prompts(path)] == ["a cat", "a dog"]


# --- work items -----------------------------------------------------------------------------------

def test_seed_and_step_lists_come_from_the_limits_table(tmp_path, capsys):
    """--seeds/--steps expand with dsdcompare.limits.parse_int_list: checked, capped, at once."""
    from dsdcompare.cli import main

    store = str(tmp_path / "r.sqlite")
    started = time.perf_counter()
    for option, text, message in [
            ("--seeds", "0-99999999999", r"seed: '0-99999999999' expands to more than 10000 values"),
            ("--seeds", "3-1", r"seed: range '3-1' runs backwards; write 1-3"),
            ("--seeds", "a", r"seed must be an integer, got 'a'"),
            ("--steps", "10,501", r"steps must be an integer from 1 to 500, got 501")]:
        assert main(["bench", "--prompts", "core", option, text, "--store", store]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and re.search(message, err), err
    assert time.perf_counter() - started < 10  # no range is expanded before it is checked
    assert not Path(store).exists()  # nothing was created


def test_the_library_half_has_no_command_line():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(bench))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "print" not in names and "argparse" not in modules
    assert not any(m == "cli" or m.startswith(("cli.", "dsdcompare.cli")) for m in modules)
    assert issubclass(bench.BenchError, InputError)


def test_work_items_are_prompt_major_and_groups_keep_pairs_together():
    from dsdcompare.registry import resolve_models

    items = bench.work_items([Prompt("a", "x"), Prompt("b")], [0, 1], [10, 20])
    assert [(i.prompt, i.seed, i.steps) for i in items[:4]] == [
        ("a", 0, 10), ("a", 0, 20), ("a", 1, 10), ("a", 1, 20)]
    assert len(items) == 8 and items[0].category == "x"
    groups = bench.model_groups(resolve_models("ssd-1b,sd-v1-4,bk-sdm-small"))
    assert [[m.key for m in g] for g in groups] == [["ssd-1b"], ["sd-v1-4", "bk-sdm-small"]]
    groups = bench.model_groups(resolve_models("all"))
    assert [[m.key for m in g] for g in groups] == [["sd-v1-4", "bk-sdm-small"],
                                                    ["sdxl-base", "ssd-1b"]]


# --- running sweeps (tiny stand-ins at 64 px) -------------------------------------------------------

MODELS = "sd-v1-4,bk-sdm-small"
SWEEP = ["--prompts", "core", "--limit", "4", "--seeds", "0-1", "--steps", "2",
         "--models", MODELS, "--source", "tiny", "--size", "64", "--no-progress"]


def bench_args(store, *extra) -> list[str]:
    return ["bench", *SWEEP, "--store", str(store), *extra]


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """In-process benches run with --threads 1 (on a shared 2-core machine two threads can be ten
    times slower); the session's fixed count (conftest) is put back afterwards."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def expected_keys(n_prompts=4, seeds=(0, 1), steps=(2,)) -> set:
    prompts = [p.text for p in load_prompts("core", limit=n_prompts)]
    return {(p, s, n, m) for p in prompts for s in seeds for n in steps for m in MODELS.split(",")}


def stored(store_path) -> list[tuple]:
    """(prompt, seed, steps, model) of every successful stored result, with repeats."""
    from dsdcompare.store import Store

    with Store(store_path, readonly=True) as store:
        df = store.results()
    ok = df[df["success"]]
    return list(zip(ok.prompt, ok.seed.astype(int), ok.steps.astype(int), ok.model, strict=True))


@pytest.fixture(scope="module")
def one_process_store(tmp_path_factory):
    """The small sweep run once, in this process (PartialState: one process)."""
    import torch

    from dsdcompare.cli import main

    path = tmp_path_factory.mktemp("bench-1proc") / "results.sqlite"
    threads = torch.get_num_threads()
    try:
        assert main(bench_args(path, "--threads", "1")) == 0
    finally:
        torch.set_num_threads(threads)
    return path


def test_bench_stores_every_result_once(one_process_store):
    keys = stored(one_process_store)
    assert sorted(keys) == sorted(expected_keys())  # each exactly once


def test_rerun_skips_what_the_store_holds_and_reports(one_process_store, tmp_path, capsys):
    from dsdcompare.cli import main

    assert main(bench_args(one_process_store, "--threads", "1",
                           "--report-csv", str(tmp_path / "s.csv"))) == 0
    out = capsys.readouterr().out
    assert "stored 0 results (0 failed); 16 model runs were already stored" in out
    assert sorted(stored(one_process_store)) == sorted(expected_keys())
    import pandas as pd

    table = pd.read_csv(tmp_path / "s.csv")
    assert list(table.model) == ["sd-v1-4", "bk-sdm-small"]
    assert list(table.n) == [8, 8] and list(table.n_paired) == [0, 8]
    # --report alone generates nothing and prints the same table
    assert main(["bench", "--report", "--models", MODELS, "--source", "tiny", "--size", "64",
                 "--store", str(one_process_store)]) == 0
    out = capsys.readouterr().out
    assert "bk-sdm-small" in out and "stand-in scorer" in out


def test_bench_without_a_store_or_prompts_says_why(tmp_path, capsys):
    from dsdcompare.cli import main

    assert main(["bench", "--prompts", "core", "--no-store"]) == 2
    assert "bench stores every result" in capsys.readouterr().err
    assert main(["bench", "--models", MODELS]) == 2
    assert "--prompts is required" in capsys.readouterr().err
    assert main(["bench", "--prompts", "nope.txt"]) == 2
    assert "'nope.txt' is neither a prompt file nor a suite" in capsys.readouterr().err


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_killed_run_resumes_to_the_complete_set_without_duplicates(tmp_path, one_process_store):
    from dsdcompare.cli import main

    # one_process_store built the tiny stand-ins, so the subprocess starts generating at once
    path = tmp_path / "results.sqlite"
    # --warmup 0: one call per model and item (and the per-process warm-up path is exercised)
    args = ["--prompts", "core", "--limit", "4", "--seeds", "0-2", "--steps", "4", "--warmup", "0",
            "--models", MODELS, "--source", "tiny", "--size", "64", "--no-progress",
            "--threads", "1", "--store", str(path)]
    log = tmp_path / "bench.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dsdcompare", "bench", *args], cwd=tmp_path,
                                env=_env(), stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            if path.exists() and _count(path) >= 2:
                break
        assert proc.poll() is None, f"the bench ended before it was killed: {log.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = stored(path)
    expected = expected_keys(n_prompts=4, seeds=range(3), steps=(4,))
    assert 2 <= len(before) < len(expected)
    assert main(["bench", *args]) == 0
    after = stored(path)
    assert sorted(after) == sorted(expected)  # complete, and every result exactly once
    assert set(before) <= set(after)


def _count(path) -> int:
    from dsdcompare.store import Store, StoreError

    try:
        with Store(path, readonly=True) as store:
            return int(store.results()["success"].sum())
    except StoreError:  # still being created
        return 0


def test_two_accelerate_processes_store_exactly_what_one_process_does(tmp_path, one_process_store):
    path = tmp_path / "results.sqlite"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0", "-m", "dsdcompare", *bench_args(path, "--device", "cpu")]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    assert "per process" in done.stdout
    two = stored(path)
    assert len(two) == len(set(two))  # none twice
    assert set(two) == set(stored(one_process_store))  # none lost


# --- one summary behind the report and the charts -------------------------------------------------

def _result(model: str, prompt: str, seed: int, median_s: float, score: float | None,
            *, success: bool = True):
    """A hand-made engine Result of a tiny stand-in (no model runs)."""
    from dsdcompare.engine import Result
    from dsdcompare.metrics import Score
    from dsdcompare.registry import get_model
    from dsdcompare.timing import StageTimes, Timing

    spec = get_model(model)
    timing = Timing(load_s=0.1, load_cached=False, first_call_s=2 * median_s, steady_s=[median_s],
                    median_s=median_s, min_s=0.9 * median_s, max_s=1.1 * median_s,
                    stages=StageTimes(text=0.1 * median_s, denoise=0.8 * median_s,
                                      decode=0.1 * median_s, total=median_s),
                    steps=2, its_per_s=2 / median_s, images_per_call=1, peak_memory_bytes=None,
                    memory_kind="process RSS (sampled)", warmup=1, repeats=1)
    clip = Score(value=score, per_image=[score], excluded=[None], backend="torchmetrics",
                 checkpoint="tiny", scale="100 x cosine, clamped at 0", standin=True,
                 prompt_tokens=3, max_prompt_tokens=75, truncated=False, scored_prompt=prompt)
    return Result(model=model, model_name=spec.name, success=success,
                  error=None if success else "boom", source="tiny", standin=True, toy=False,
                  repo=spec.repo_id, revision=None, teacher=spec.teacher, prompt=prompt,
                  negative_prompt="", seed=seed, steps=2, guidance=7.5, width=64, height=64,
                  images_per_prompt=1, scheduler="PNDMScheduler", dtype="fp32", device="cpu",
                  device_name="test cpu", variant=None, latents_sha="x",
                  timing=timing if success else None, score=clip if success else None)


def test_the_chart_table_and_bench_report_give_identical_numbers(tmp_path, capsys):
    import pandas as pd

    from dsdcompare import charts
    from dsdcompare.cli import main
    from dsdcompare.engine import Request
    from dsdcompare.stats import SUMMARY_COLUMNS
    from dsdcompare.store import Store

    path = tmp_path / "results.sqlite"
    prompts = ["a red circle", "a blue square", "a green star"]
    with Store(path) as store:
        def run(prompt, seed, results):
            run_id = store.start_run(Request(prompt=prompt, seed=seed, steps=2), source="tiny")
            for r in results:
                store.add_result(run_id, r)
            store.finish_run(run_id)

        for i, prompt in enumerate(prompts):
            for seed in (0, 1):
                run(prompt, seed, [_result("sd-v1-4", prompt, seed, 1.0 + 0.1 * i + 0.01 * seed,
                                           30.0 + i + seed),
                                   _result("bk-sdm-small", prompt, seed, 0.6 + 0.05 * i,
                                           28.0 + i - seed)])
        # reruns: a teacher remeasured (the later result counts), a student rerun that failed
        # (its earlier success counts), and an exact repeat of a student
        run(prompts[0], 0, [_result("sd-v1-4", prompts[0], 0, 5.0, 99.0)])
        run(prompts[1], 1, [_result("bk-sdm-small", prompts[1], 1, 1.0, None, success=False)])
        run(prompts[2], 0, [_result("bk-sdm-small", prompts[2], 0, 0.7, 30.0)])
        df = store.results()
    assert len(df) == 15

    # bench --report, its CSV
    csv = tmp_path / "report.csv"
    assert main(["bench", "--report", "--models", "sd-v1-4,bk-sdm-small", "--steps", "2",
                 "--store", str(path), "--report-csv", str(csv)]) == 0
    assert "bk-sdm-small" in capsys.readouterr().out
    report = pd.read_csv(csv)
    # the Speed-vs-quality page's table: successful rows, the chart columns (ui.resources.figures)
    shown = df[df["success"]]
    chart = charts.model_summary(shown[[c for c in shown.columns
                                        if c in charts.COLUMNS and c != "image_paths"]])
    assert list(chart["model"]) == list(report["model"]) == ["sd-v1-4", "bk-sdm-small"]
    numbers = ["steps", *(c for c in SUMMARY_COLUMNS if c != "teacher")]
    pd.testing.assert_frame_equal(chart[numbers].astype(float), report[numbers].astype(float),
                                  check_exact=False, rtol=1e-12)
    # reruns count once, and the latest successful result is the one counted
    assert list(report["n"]) == [6, 6] and list(report["n_failed"]) == [0, 0]
    assert list(chart["latency"]) == list(chart["latency_median_s"])
    assert list(chart["score"]) == list(chart["clip_mean"])
    teacher_first = (99.0 + 31.0) / 2  # prompt 0: seed 0 remeasured at 99, seed 1 scored 31
    assert chart.loc[0, "clip_mean"] == pytest.approx((teacher_first + 31.5 + 32.5) / 3)


def test_a_sweep_too_large_is_refused_before_it_is_built():
    from dsdcompare.limits import MAX_WORK_ITEMS

    with pytest.raises(bench.BenchError, match=r"72 prompts x 10000 seeds x 500 step counts = "
                                               r"360000000 items; at most 100000"):
        bench.work_items(["p"] * 72, list(range(10_000)), list(range(1, 501)))
    assert len(bench.work_items(["p"], [0, 1], [10])) == 2 and MAX_WORK_ITEMS == 100_000
