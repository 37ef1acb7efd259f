"""The Streamlit dashboard, driven with ``streamlit.testing.v1.AppTest`` and offline stand-ins.

Every page runs through the router (``dashboard.py``, ``AppTest.switch_page``), so the frame's
session defaults and sidebar are those a user gets. Generation stays tiny (64 px, 2 steps, the
seed models' tiny stand-ins: weight mode ``tiny``).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repository root, beside dashboard.py
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from dsdcompare import limits  # noqa: E402
from ui import compare, sidebar  # noqa: E402

TIMEOUT = 600  # first tiny builds + torch import on a shared 2-core machine are slow
SEED_MODELS = ["sd-v1-4", "bk-sdm-small", "sdxl-base", "ssd-1b"]


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """An isolated results store, the tiny stand-ins as weights, fresh per-process choices."""
    store = tmp_path / "store" / "results.sqlite"
    monkeypatch.setenv("DSDCOMPARE_STORE", str(store))
    monkeypatch.setenv(sidebar.MODE_ENV, "tiny")
    from ui import resources

    resources.detected_mode.clear()
    yield store
    resources.detected_mode.clear()


def app(page: str | None = None, params: dict | None = None) -> AppTest:
    """The dashboard, run once (and switched to ``page``, e.g. "pages/history_page.py")."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def generate(at: AppTest, prompt: str, *, models=None, steps=2, size=64) -> AppTest:
    at.text_area(key="compare_prompt").set_value(prompt)
    at.number_input(key="compare_steps").set_value(steps)
    at.selectbox(key="compare_size").set_value(size)
    if models is not None:
        at.multiselect(key="compare_models").set_value(models)
    at.button(key="compare_generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- the frame ------------------------------------------------------------------------------------

def test_router_draws_sidebar_pages_and_the_standin_banner(app_env):
    at = app()
    assert at.title[0].value == "Compare"
    keys = {w.key for w in at.sidebar.selectbox} | {w.key for w in at.sidebar.text_input}
    assert {"sb_mode", "sb_device", "sb_dtype", "sb_scorer", "sb_store"} <= keys
    assert at.sidebar.text_input(key="sb_store").value == str(app_env)
    assert any("set by DSDCOMPARE_DASHBOARD_MODE" in c.value for c in at.sidebar.caption)
    assert any(w.value.startswith("Stand-in models") for w in at.warning)
    for page, title in [("pages/speed_quality_page.py", "Speed vs quality"),
                        ("pages/history_page.py", "History"), ("pages/models_page.py", "Models")]:
        at = app(page)
        assert at.title[0].value == title
        assert any(w.value.startswith("Stand-in models") for w in at.warning)


# --- Compare ------------------------------------------------------------------------------------

def test_compare_form_gives_four_images_a_table_downloads_and_a_link(app_env):
    at = app()
    assert at.multiselect(key="compare_models").value == SEED_MODELS
    started = time.perf_counter()
    generate(at, "a red circle on a blue background")
    print(f"\nGenerate -> four images (AppTest, tiny stand-ins): "
          f"{time.perf_counter() - started:.1f} s")
    assert not at.error
    assert len(at.image) == 4
    assert all("steady-state median" in c for img in at.image for c in img.captions)
    table = at.dataframe[0].value
    assert table["model"].tolist() == ["SD v1.4", "BK-SDM-Small", "SDXL base 1.0", "Segmind SSD-1B"]
    for column in ("load s", "first call s", "steady s (median)", "denoise s", "decode s", "it/s",
                   "peak memory MB", "CLIP score", "flags"):
        assert column in table.columns
    labels = [b.label for b in at.download_button]
    assert labels.count("PNG") == 4
    assert {"Contact sheet (PNG)", "Results table (CSV)", "Full records (JSON)"} <= set(labels)
    assert at.get("status")[0].state == "complete"
    # the form is in the URL: a shareable link
    params = at.query_params
    assert params["prompt"] == "a red circle on a blue background"
    assert params["models"] == ",".join(SEED_MODELS) and params["size"] == "64"
    # each result was stored as it finished
    from dsdcompare.store import Store

    with Store(app_env, readonly=True) as store:
        assert sorted(store.results()["model"]) == sorted(SEED_MODELS)


def test_a_failing_model_shows_its_error_while_the_others_render(app_env, monkeypatch):
    from dsdcompare import engine

    real = engine.generate

    def broken(loaded, *args, **kwargs):  # the pipeline may already be cached: fail generating
        if loaded.spec.key == "ssd-1b":
            raise RuntimeError("simulated: SSD-1B weights are corrupt")
        return real(loaded, *args, **kwargs)

    monkeypatch.setattr(engine, "generate", broken)
    at = generate(app(), "a red circle")
    assert len(at.image) == 3
    assert any("simulated: SSD-1B weights are corrupt" in e.value for e in at.error)
    table = at.dataframe[0].value
    assert "error" in table.columns
    assert table.set_index("model").loc["Segmind SSD-1B", "error"].startswith("RuntimeError")


def test_an_empty_prompt_is_an_inline_message_and_nothing_runs(app_env, monkeypatch):
    from dsdcompare import engine

    monkeypatch.setattr(engine, "compare", lambda *a, **k: pytest.fail("compare() ran"))
    at = generate(app(), "   ")
    assert any("Enter a prompt" in e.value for e in at.error)
    assert not at.image and not at.get("status")


@pytest.mark.filterwarnings("ignore::dsdcompare.metrics.LongPromptWarning")  # the scorer's own
def test_a_prompt_over_77_tokens_warns_what_is_truncated(app_env):
    long_prompt = "a red circle on a blue background " * 12 + "THE END"  # 91 tokens
    at = generate(app(), long_prompt, models=["sd-v1-4"], steps=1)
    (warning,) = [w.value for w in at.warning if "tokens" in w.value]
    assert "read only the first 75" in warning and "the end" in warning.lower()
    assert len(at.image) == 1  # it still runs, on the prefix


def test_random_seed_button_sets_a_new_seed_without_running(app_env):
    at = app()
    before = at.number_input(key="compare_seed").value
    at.button(key="compare_random").click().run()
    after = at.number_input(key="compare_seed").value
    assert after != before and 0 <= after <= limits.MAX_SEED
    assert not at.image


def test_changing_the_weights_resets_models_and_defaults_with_a_message(app_env):
    at = app()
    at.sidebar.selectbox(key="sb_mode").set_value("toy").run()
    assert not at.exception
    assert at.multiselect(key="compare_models").value == ["toy-teacher", "toy-student"]
    assert at.selectbox(key="compare_size").value is None  # the toy pair's native 32 px
    assert any("Weights changed to" in w.value for w in at.warning)
    if not sidebar.toy_weights_ready():
        assert any("toy weights are not built here" in w.value for w in at.warning)


def test_the_form_survives_a_visit_to_another_page_and_a_weights_change(app_env):
    at = app()
    at.text_area(key="compare_prompt").set_value("a yellow star")
    at.button(key="compare_random").click().run()  # commits the form without generating
    seed = at.number_input(key="compare_seed").value
    at.switch_page("pages/models_page.py").run()
    at.sidebar.selectbox(key="sb_mode").set_value("arch").run()
    at.switch_page("pages/compare_page.py").run()
    assert not at.exception
    assert at.text_area(key="compare_prompt").value == "a yellow star"
    assert at.number_input(key="compare_seed").value == seed
    assert any("Weights changed to" in w.value for w in at.warning)


def test_url_parameters_prefill_the_form(app_env):
    at = app(params={"prompt": "a green square", "neg": "blurry", "seed": "1234", "steps": "3",
                     "cfg": "9", "size": "128", "models": "sdxl-base,ssd-1b", "weights": "tiny"})
    assert at.text_area(key="compare_prompt").value == "a green square"
    assert at.text_input(key="compare_negative").value == "blurry"
    assert at.number_input(key="compare_seed").value == 1234
    assert at.number_input(key="compare_steps").value == 3
    assert at.number_input(key="compare_guidance").value == 9.0
    assert at.selectbox(key="compare_size").value == 128
    assert at.multiselect(key="compare_models").value == ["sdxl-base", "ssd-1b"]
    assert at.sidebar.selectbox(key="sb_mode").value == "tiny"
    assert not at.warning or all(not w.value.startswith("Link") for w in at.warning)
    assert not at.image  # a link fills the form; it does not run


def test_out_of_range_url_values_are_rejected_with_a_message(app_env):
    at = app(params={"prompt": "ok", "steps": "501", "seed": "-3", "cfg": "nan",
                     "size": "333", "models": "sd-v1-4,not-a-model", "weights": "gpu-farm"})
    text = "\n".join(w.value for w in at.warning)
    for expected in ("steps=501 is out of range", "seed=-3 is out of range",
                     "cfg=nan is out of range", "size=333 is not one of",
                     "'not-a-model' cannot be compared", "weights='gpu-farm' is not one of"):
        assert expected in text
    assert at.number_input(key="compare_steps").value == 4  # the host default, kept
    assert at.multiselect(key="compare_models").value == SEED_MODELS
    assert at.text_area(key="compare_prompt").value == "ok"  # valid values still apply


def cli_form(*argv: str) -> compare.FormState:
    """The Compare form of a comparison made on the command line (``dsdcompare compare ...``)."""
    import argparse

    from dsdcompare.cli import compare as compare_cli

    parser = argparse.ArgumentParser()
    compare_cli.configure(parser)
    args = parser.parse_args(list(argv))
    return compare.FormState(prompt=args.prompt, negative_prompt=args.negative, seed=args.seed,
                             steps=args.steps, guidance=args.guidance, size=args.size,
                             models=("sd-v1-4", "bk-sdm-small"), images=args.images,
                             repeats=args.repeats, warmup=args.warmup)


CLI_ARGS = ("a blue square", "--seed", str(2**40), "--steps", "200", "--guidance", "30",
            "--size", "320", "--images", "2", "--repeats", "3", "--warmup", "0")


def test_a_command_line_comparison_reopens_from_its_link():
    form = cli_form(*CLI_ARGS)
    params = compare.to_params(form, "tiny")
    assert params["seed"] == str(2**40) and params["cfg"] == "30" and params["size"] == "320"
    back, errors = compare.from_params(params, compare.FormState(), SEED_MODELS)
    assert (back, errors) == (form, [])
    back.request().validate()  # and the engine runs it as the CLI did


def test_a_command_line_comparison_link_opens_the_page_with_its_values(app_env):
    form = cli_form(*CLI_ARGS)
    at = app(params=compare.to_params(form, "tiny"))
    assert not at.error
    assert all(not w.value.startswith("Link") for w in at.warning)
    assert at.number_input(key="compare_seed").value == 2**40
    assert at.number_input(key="compare_steps").value == 200
    assert at.number_input(key="compare_guidance").value == 30.0
    assert at.selectbox(key="compare_size").value == 320
    assert at.number_input(key="compare_images").value == 2
    assert at.number_input(key="compare_repeats").value == 3
    assert at.number_input(key="compare_warmup").value == 0
    assert at.multiselect(key="compare_models").value == ["sd-v1-4", "bk-sdm-small"]
    assert not at.image


def test_offline_default_is_the_toy_pair_else_tiny_standins_with_a_banner(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDCOMPARE_STORE", str(tmp_path / "results.sqlite"))
    monkeypatch.delenv(sidebar.MODE_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from ui import resources

    resources.detected_mode.clear()
    try:
        at = app()
    finally:
        resources.detected_mode.clear()
    caption = next(c.value for c in at.sidebar.caption if c.value.startswith("Auto"))
    assert "HF_HUB_OFFLINE is set" in caption
    if sidebar.toy_weights_ready():
        assert at.multiselect(key="compare_models").value == ["toy-teacher", "toy-student"]
        assert any(i.value.startswith("Toy models") for i in at.info)
    else:
        assert "toy weights are not built yet" in caption
        assert at.multiselect(key="compare_models").value == SEED_MODELS
        assert any(w.value.startswith("Stand-in models") for w in at.warning)


@pytest.mark.skipif(not sidebar.toy_weights_ready(), reason="toy weights not trained yet "
                    "(python -m dsdcompare toyzoo train)")
def test_toy_pair_compares_side_by_side_scored_by_the_toy_clip(app_env, monkeypatch):
    monkeypatch.setenv(sidebar.MODE_ENV, "toy")
    at = app()
    at.text_area(key="compare_prompt").set_value("a red circle on a blue background")
    at.button(key="compare_generate").click().run()
    assert not at.exception and not at.error
    assert len(at.image) == 2
    table = at.dataframe[0].value
    assert table["CLIP score"].notna().all()


# --- Speed vs quality, History, Models ----------------------------------------------------------

def stored(store_path: Path) -> Path:
    """A store holding two prompts x two seeds of a teacher/student pair (no model runs)."""
    from PIL import Image

    from dsdcompare.engine import Request, Result
    from dsdcompare.metrics import Score
    from dsdcompare.store import Store
    from dsdcompare.timing import StageTimes, Timing

    def result(key, name, teacher, prompt, seed, latency, score):
        stages = StageTimes(text=0.1 * latency, denoise=0.7 * latency, decode=0.15 * latency,
                            safety=0.0, other=0.05 * latency, total=latency)
        timing = Timing(load_s=1.0, load_cached=False, first_call_s=latency * 1.5,
                        steady_s=[latency], median_s=latency, min_s=latency * 0.95,
                        max_s=latency * 1.05, stages=stages, steps=4, its_per_s=4 / stages.denoise,
                        images_per_call=1, peak_memory_bytes=2**30,
                        memory_kind="process RSS (sampled)", warmup=1, repeats=1)
        sc = Score(value=score, per_image=[score], excluded=[None], backend="torchmetrics",
                   checkpoint="tiny", scale="100 x cosine, clamped at 0", standin=True,
                   prompt_tokens=5, max_prompt_tokens=75, truncated=False, scored_prompt=prompt)
        r = Result(model=key, model_name=name, success=True, error=None, source="tiny",
                   standin=True, toy=False, repo=None, revision=None, teacher=teacher,
                   prompt=prompt, negative_prompt="", seed=seed, steps=4, guidance=7.5,
                   width=64, height=64, images_per_prompt=1, scheduler="PNDMScheduler",
                   dtype="fp32", device="cpu", device_name="test cpu", variant=None,
                   latents_sha="abc", timing=timing, score=sc)
        r.images = [Image.new("RGB", (64, 64), (40 * seed, 90, 160))]
        return r

    with Store(store_path) as store:
        for prompt in ("a red circle", "a blue square"):
            for seed in (0, 1):
                request = Request(prompt, seed=seed, steps=4, size=64)
                store.save(request, [
                    result("sd-v1-4", "SD v1.4", None, prompt, seed, 1.0 + seed * 0.1, 25 + seed),
                    result("bk-sdm-small", "BK-SDM-Small", "sd-v1-4", prompt, seed,
                           0.6 + seed * 0.1, 23 + seed)], source="tiny")
    return store_path


def test_speed_vs_quality_page_draws_charts_from_the_store(app_env):
    stored(app_env)
    at = app("pages/speed_quality_page.py")
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # latency vs score, student vs teacher, stages (one step count)
    specs = "".join(c.proto.spec for c in charts)
    for title in ("Latency vs CLIP score", "Student relative to its teacher", "Where the time goes",
                  "Pareto frontier", "published"):
        assert title in specs
    assert any("4 prompts" in c.value or "2 prompts" in c.value for c in at.caption)
    at.toggle(key="sq_per_mp").set_value(True).run()
    assert not at.exception
    assert "per megapixel" in "".join(c.proto.spec for c in at.get("plotly_chart"))


def test_speed_vs_quality_page_without_results_says_what_to_do(app_env):
    at = app("pages/speed_quality_page.py")
    assert any("Compare page" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_history_page_lists_runs_and_reopens_one_side_by_side(app_env):
    stored(app_env)
    at = app("pages/history_page.py")
    runs = at.dataframe[0].value
    assert len(runs) == 4 and set(runs["prompt"]) == {"a red circle", "a blue square"}
    assert len(at.image) == 2  # the newest prompt + seed, teacher beside student
    assert {"CSV (4 runs)", "JSON (4 runs)", "Bundle .zip (4 runs)"} <= {
        b.label for b in at.download_button}
    at.text_input(key="history_text").set_value("circle").run()
    assert len(at.dataframe[0].value) == 2
    at.selectbox(key="history_pair").set_value(1).run()
    assert not at.exception and len(at.image) == 2


def test_history_page_opens_a_bundle_read_only(app_env, tmp_path):
    from dsdcompare.store import Store

    with Store(stored(app_env)) as store:
        bundle = store.export_bundle(tmp_path / "demo.zip")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    at.run()
    at.sidebar.text_input(key="sb_store").set_value(str(bundle)).run()
    at.switch_page("pages/history_page.py").run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 4
    assert any("Read-only bundle, 4 runs" in c.value for c in at.sidebar.caption)
    assert at.sidebar.toggle(key="sb_save").disabled


def test_models_page_shows_the_registry_and_what_each_student_drops(app_env):
    at = app("pages/models_page.py")
    registry = at.dataframe[0].value
    assert {"sd-v1-4", "bk-sdm-small", "sdxl-base", "ssd-1b"} <= set(registry["key"])
    for column in ("repo / folder", "pipeline", "native size", "teacher"):
        assert column in registry.columns
    params = next(d.value for d in at.dataframe if "UNet (M)" in d.value.columns)
    unet = dict(zip(params["model"], params["UNet (M)"]))
    assert unet["SD v1.4"] == pytest.approx(859.52, abs=0.01)  # CompVis unet/config.json, counted
    assert unet["BK-SDM-Small"] == pytest.approx(482.35, abs=0.01)
    diffs = [d.value.set_index("setting") for d in at.dataframe if "setting" in d.value.columns]
    bk, ssd = diffs[0], diffs[1]  # registry order: BK-SDM-Small, then SSD-1B
    assert bk.loc["layers_per_block"].tolist() == ["2", "1"]
    assert bk.loc["mid_block_type", "student"] == "null"
    assert "transformer_layers_per_block" in ssd.index
    assert any("Published figures" in h.value for h in at.subheader)


# --- shared resources -------------------------------------------------------------------------

def test_two_sessions_generating_at_once_get_correct_images(app_env):
    """Two sessions share one cached pipeline (cache_resource): concurrent calls must give the
    images each would get alone (PNDM gives wrong images *without an error* when shared)."""
    from dsdcompare.engine import Request, compare
    from dsdcompare.registry import get_model
    from ui import resources

    cache = resources.pipeline_cache()
    spec = [get_model("sd-v1-4")]
    requests = [Request("a red circle", seed=1, steps=3, size=64),
                Request("a blue square", seed=2, steps=3, size=64)]
    alone = [np.asarray(compare(r, spec, source="tiny", cache=cache)[0].images[0])
             for r in requests]
    together: dict[int, np.ndarray] = {}

    def session(i: int) -> None:
        together[i] = np.asarray(compare(requests[i], spec, source="tiny", cache=cache)[0].images[0])

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert resources.pipeline_cache() is cache  # one shared cache, not one per session
    for i in range(2):
        np.testing.assert_array_equal(together[i], alone[i])
    assert not np.array_equal(alone[0], alone[1])


# --- pure helpers -------------------------------------------------------------------------------

def test_detect_mode_is_cheap_and_says_why():
    never = lambda: pytest.fail("must not be asked")  # noqa: E731
    yes, no = (lambda: True), (lambda: False)
    assert sidebar.detect_mode({sidebar.MODE_ENV: "toy"}, cached=never).mode == "toy"
    assert sidebar.detect_mode({}, cached=yes).mode == "hub"
    offline = sidebar.detect_mode({"HF_HUB_OFFLINE": "1"}, gpu=True, cached=no, online=never,
                                   toy_ready=yes)
    assert (offline.mode, "HF_HUB_OFFLINE" in offline.reason) == ("toy", True)
    no_toy = sidebar.detect_mode({"HF_HUB_OFFLINE": "1"}, cached=no, toy_ready=no)
    assert no_toy.mode == "tiny" and "toy weights are not built" in no_toy.reason
    assert sidebar.detect_mode({}, gpu=True, cached=no, online=yes).mode == "hub"
    assert sidebar.detect_mode({}, gpu=False, cached=no, online=never, toy_ready=yes).mode == "toy"
    with pytest.raises(ValueError, match="not one of"):
        sidebar.detect_mode({sidebar.MODE_ENV: "cloud"})


@pytest.mark.parametrize("choice, mode, expected", [
    ("auto", "hub", ("openai/clip-vit-large-patch14", False)),
    ("auto", "tiny", ("tiny", True)),
    ("auto", "arch", ("tiny", True)),
    ("default", "tiny", ("openai/clip-vit-large-patch14", False)),
    ("tiny", "hub", ("tiny", True)),
    ("none", "hub", (None, False)),
])
def test_sidebar_scorer_choices_resolve_through_the_recording_path(choice, mode, expected):
    record_choice, checkpoint, standin = sidebar.scorer_for(choice, sidebar.MODES[mode])
    assert (checkpoint, standin) == expected
    from dsdcompare.record import scorer_checkpoint
    from dsdcompare.registry import get_model

    models = [get_model(k) for k in sidebar.MODES[mode].default_models]
    assert scorer_checkpoint(record_choice, models, sidebar.MODES[mode].source) == expected


def test_sidebar_toy_scorer_is_the_toy_clip_or_the_tiny_standin():
    from dsdcompare.registry import TOY_CLIP_DIR

    for choice in ("auto", "toy"):
        _, checkpoint, standin = sidebar.scorer_for(choice, sidebar.MODES["toy"])
        assert standin and checkpoint == (str(TOY_CLIP_DIR) if TOY_CLIP_DIR.is_dir() else "tiny")
    with pytest.raises(ValueError, match="not one of"):
        sidebar.scorer_for("best", sidebar.MODES["hub"])


def test_weight_modes_offer_what_their_source_can_load():
    assert sidebar.model_choices(sidebar.MODES["toy"]) == ["toy-teacher", "toy-student"]
    for mode in ("tiny", "arch", "hub"):
        assert sidebar.model_choices(sidebar.MODES[mode])[:4] == SEED_MODELS


def test_dns_check_never_hangs():
    started = time.perf_counter()
    assert sidebar.resolves("dsdcompare-test.invalid", timeout_s=0.5) is False
    assert time.perf_counter() - started < 2.0


def test_form_round_trips_through_the_url():
    form = compare.FormState(prompt="a cat, 4k", negative_prompt="blurry", seed=42, steps=7,
                               guidance=8.5, size=None, models=("ssd-1b", "sdxl-base"),
                               repeats=3, warmup=0)
    params = compare.to_params(form, "tiny")
    assert params["size"] == "native" and params["weights"] == "tiny"
    back, errors = compare.from_params(params, compare.FormState(), SEED_MODELS)
    assert (back, errors) == (form, [])
    _, errors = compare.from_params({"steps": "abc", "zoom": "2"}, form, SEED_MODELS)
    assert errors[0].startswith("Link parameter rejected: steps='abc' is not an integer")
    assert "Kept 7" in errors[0] and "zoom" in errors[1]


# --- issues 13 and 15: user text as text, the models file, threads, warm pipelines --------------

@pytest.fixture(autouse=True)
def _no_warm_start(monkeypatch):
    """The frame's warm start (a background thread loading the default models) stays off in
    these tests, but for the one that tests it: each test sees only the loads it asks for."""
    from ui import resources

    monkeypatch.setenv(resources.WARM_START_ENV, "0")


HOSTILE = "[click](http://evil.example/x) ![img](http://evil.example/i.png) <b>x</b> :red[r] **b**"


def test_plain_shows_markdown_and_html_as_text():
    from ui.common import WORD_JOINER, plain

    out = plain(HOSTILE + "\n# heading\n- item\n1. one")
    for live in ("[click](", "![img](", "<b>", ":red[", "**b**", "(http", "\n#", "\n-", "\n1."):
        assert live not in out, live
    assert "(" + WORD_JOINER + "http\\://evil.example/x)" in out  # a bare URL: never autolinked
    assert plain("steps=501 is out of range; 'not-a-model' SD v1.4 (x), DSDCOMPARE_STORE") == \
        "steps=501 is out of range; 'not-a-model' SD v1.4 (x), DSDCOMPARE_STORE"  # readable


def test_link_values_and_prompts_are_shown_as_text(app_env):
    at = app(params={"prompt": HOSTILE, "steps": "[s](http://evil.example/s)", "weights": "tiny",
                     "models": "![m](http://evil.example/m.png)"})
    warnings = "\n".join(w.value for w in at.warning)
    assert "steps='\\[s\\](\u2060http\\://evil.example/s)'" in warnings
    assert "](http://" not in warnings
    at = generate(at, HOSTILE, models=["bk-sdm-small"], steps=1)
    (caption,) = [c.value for c in at.caption if "seed 0" in c.value]
    assert "\\[click\\](\u2060http\\://evil.example/x)" in caption and "](http://" not in caption


def test_an_invalid_models_file_is_one_error_on_every_load_and_builtins_stay(app_env, monkeypatch,
                                                                                tmp_path):
    from dsdcompare import registry
    from ui import resources

    bad = tmp_path / "my models.toml"
    bad.write_text('[models.mine]\npipeline = "StableDiffusionPipeline"\nnative_size = "big"\n')
    monkeypatch.setenv(registry.MODELS_FILE_ENV, str(bad))
    resources.models_file.clear()
    try:
        for _ in range(2):  # the first load and the next: the same error, never a traceback
            at = app()
            (error,) = [e.value for e in at.error]
            assert str(bad) in error and "native_size" in error and "Fix the file" in error
            assert at.multiselect(key="compare_models").value == SEED_MODELS  # built-ins work
            assert "mine" not in registry.list_models()
        # the file fixed: picked up on the next load, without a restart
        bad.write_text('[models.mine]\npipeline = "StableDiffusionPipeline"\nnative_size = 512\n'
                       'repo = "someone/mine"\nname = "**Mine**"\n')
        at = app()
        assert not at.error and "mine" in registry.list_models()
    finally:
        resources.models_file.clear()
        registry._registry.pop("mine", None)  # the registry is process-wide: leave it as found


def test_a_bad_thread_setting_is_one_message_and_a_host_process_keeps_its_threads(app_env,
                                                                                  monkeypatch):
    """(A real server applies and records the policy: tests/test_browser_hostile.py reads it back
    from the store.) In-process, torch came first, so the dashboard leaves its threads alone."""
    import torch

    from ui import resources

    before = torch.get_num_threads()
    resources.thread_policy.clear()
    monkeypatch.setenv("DSDCOMPARE_THREADS", "lots")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "DSDCOMPARE_THREADS" in error and "lots" in error and "cannot start" in error
    monkeypatch.delenv("DSDCOMPARE_THREADS")
    resources.thread_policy.clear()
    app()
    assert resources.thread_policy() is None and torch.get_num_threads() == before


def test_a_rerun_on_warm_pipelines_skips_the_warm_up_call(app_env):
    from ui import resources

    resources.warmth.clear()
    at = generate(app(), "a red circle", models=["bk-sdm-small"], steps=1)
    first = at.session_state["compare_outcome"]
    assert first.request.warmup == 1 and not first.warm_skipped
    at.button(key="compare_generate").click().run()
    again = at.session_state["compare_outcome"]
    assert again.request.warmup == 0 and again.warm_skipped
    assert again.results[0].timing.warmup == 0 and again.results[0].success
    assert any("no warm-up call" in c.value for c in at.caption)
    # another shape (two images per call) is cold again
    at.number_input(key="compare_images").set_value(2)
    at.button(key="compare_generate").click().run()
    assert at.session_state["compare_outcome"].request.warmup == 1


def test_warmth_forgets_a_reloaded_pipeline():
    from types import SimpleNamespace

    from dsdcompare.engine import Request
    from ui.resources import Warmth

    class Cache:
        keys = {("m", "tiny", "cpu", "auto", None)}

        def __contains__(self, key):
            return key in self.keys

    warmth, cache, key = Warmth(), Cache(), ("m", "tiny", "cpu", "auto")
    small, large = Request("p", size=64), Request("p", size=128)

    def ran(request, cached):
        timing = SimpleNamespace(load_cached=cached)
        warmth.record(key, request, SimpleNamespace(success=True, timing=timing))

    ran(small, False)
    ran(large, True)
    assert warmth.warm(key, small, cache) and warmth.warm(key, large, cache)
    ran(large, False)  # reloaded (evicted by another session meanwhile): only `large` is warm
    assert not warmth.warm(key, small, cache) and warmth.warm(key, large, cache)
    Cache.keys = set()  # evicted now
    assert not warmth.warm(key, large, cache)


def test_progress_is_throttled_but_keeps_phases_and_last_steps():
    from dsdcompare.engine import Progress

    shown = []
    throttled = compare.Throttled(shown.append, interval=60.0)
    for step in range(1, 26):
        throttled(Progress("m", 0, 1, "repeat", step=step, total_steps=25, call=1))
    throttled(Progress("m", 0, 1, "score"))
    assert [(e.phase, e.step) for e in shown] == [("repeat", 1), ("repeat", 25), ("score", 0)]


def test_the_warm_start_loads_in_the_background_and_says_what_is_left(app_env, monkeypatch):
    from ui import resources

    gate = threading.Event()
    warm = resources.WarmStart(("the toy teacher", gate.wait),
                               [("a [link](http://evil.example)", lambda: 1 / 0)])
    monkeypatch.setattr(sidebar, "warm_start", lambda: warm)
    at = app()
    (status,) = [c.value for c in at.caption if "Getting ready in the background" in c.value]
    assert "loading the toy teacher" in status and "](http://" not in status
    gate.set()
    assert warm.wait(10) and warm.pending == []
    assert warm.errors == ["a [link](http://evil.example): ZeroDivisionError: division by zero"]
    at = app()
    assert not any("Getting ready" in c.value for c in at.caption)


def test_the_warm_start_is_off_when_asked_and_otherwise_warms_the_default_models(app_env,
                                                                                  monkeypatch):
    from dsdcompare.engine import Request
    from ui import resources

    assert sidebar.warm_start() is None  # DSDCOMPARE_WARM_START=0 (this module's default)
    monkeypatch.setenv(resources.WARM_START_ENV, "1")
    host = resources.host()
    monkeypatch.setattr(resources, "host", lambda: {**host, "budget_bytes": 0})
    resources.warm_start.clear()
    try:
        warm = sidebar.warm_start()
        assert warm.wait(TIMEOUT) and not warm.errors, warm.errors
        assert warm.pending == [] and warm.labels[0] == "PyTorch, diffusers and transformers"
        assert "SD v1.4" in warm.labels and any("CLIP scorer" in x for x in warm.labels)
        # budget 0 (one pipeline at a time): only the model a comparison runs first is loaded
        assert not {"BK-SDM-Small", "SDXL base 1.0", "Segmind SSD-1B"} & set(warm.labels)
        # ... and it ran once at the default form's shape (64 px, guidance 7.5): warm
        assert resources.warmth().warm(("sd-v1-4", "tiny", "auto", "auto"),
                                       Request("any prompt", size=64), resources.pipeline_cache())
    finally:
        resources.warm_start.clear()


def test_a_contended_latency_is_shown_as_contended_not_as_the_models_speed():
    from types import SimpleNamespace

    from ui import results

    timing = SimpleNamespace(median_s=1.234, contended=True, images_per_call=1)
    text = results.caption(SimpleNamespace(timing=timing, score=None))
    assert "contended" in text and "not the model's speed" in text
    quiet = results.caption(SimpleNamespace(timing=SimpleNamespace(
        median_s=1.234, contended=False, images_per_call=1), score=None))
    assert "contended" not in quiet and "1.234 s steady-state median" in quiet


def test_more_scores_are_stored_beside_clip_or_say_why_not(app_env):
    # offline, HPS's weights are absent: the comparison still runs, the note names the download
    at = app()
    at.multiselect(key="sb_metrics").set_value(["hps"])
    at.run()
    generate(at, "a red circle on a blue background", models=["sd-v1-4"])
    shown = " ".join(str(w.value) for w in at.warning) + " ".join(str(m.value) for m in at.markdown)
    assert "No hps score" in shown and "dsdcompare download --scorers hps" in shown
    from dsdcompare.store import Store

    with Store(app_env, readonly=True) as store:
        rows = store.scores()
    assert set(rows["metric"]) >= {"clip", "hps"}
    hps = rows[rows["metric"] == "hps"].iloc[0]
    assert hps["value"] is None or hps["value"] != hps["value"]  # no value, and why
    assert "dsdcompare download --scorers hps" in hps["error"]
