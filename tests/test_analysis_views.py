"""The dashboard's analysis views, driven with AppTest over stores these tests build.

Speed vs quality (intervals from the stats path, the forest plot, the metric chooser), Pairs
(latent-matched pairs worst first, one opened), Models (counts for the toy pair and the seed
models, the CPU's measured peak, a profile measured here with its UNet utilisation), Compare
(a gallery per model, the stage chart beside the table, cost and energy) and the cost rate in
the link. No real model runs except the toy pair and tiny stand-ins.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402
from test_dashboard import app  # noqa: E402  (the one way the tests open the dashboard)

from dsdcompare import stats  # noqa: E402
from ui import sidebar  # noqa: E402

TIMEOUT = 600
#: Three prompts of the core suite (two categories) and one of no suite.
PROMPTS = ("a red fox curled up asleep in fresh snow", "an owl perched on a mossy branch at dusk",
           "a bowl of ramen with a soft boiled egg", "a prompt of no suite")


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """An isolated store, the tiny stand-ins, fresh per-process choices."""
    store = tmp_path / "store" / "results.sqlite"
    monkeypatch.setenv("DSDCOMPARE_STORE", str(store))
    monkeypatch.setenv(sidebar.MODE_ENV, "tiny")
    # no background warm start: its pipeline builds (accelerate's process-wide meta patch) must
    # not race the Models page's counting in these tests
    monkeypatch.setenv("DSDCOMPARE_WARM_START", "0")
    from ui import resources

    resources.detected_mode.clear()
    yield store
    resources.detected_mode.clear()


def stored_pairs(path: Path) -> Path:
    """A teacher and student on four prompts x two seeds, latent-matched, with fidelity and
    images that differ by a known amount per prompt (no model runs)."""
    from PIL import Image

    from dsdcompare.engine import Request, Result
    from dsdcompare.metrics import Score
    from dsdcompare.store import Store
    from dsdcompare.timing import StageTimes, Timing

    def result(key, name, teacher, prompt, seed, latency, score, shade, fid=None):
        stages = StageTimes(text=0.1 * latency, denoise=0.7 * latency, decode=0.15 * latency,
                            other=0.05 * latency, total=latency)
        timing = Timing(load_s=1.0, load_cached=False, first_call_s=latency * 1.5,
                        steady_s=[latency], median_s=latency, min_s=latency, max_s=latency,
                        stages=stages, steps=4, its_per_s=4 / stages.denoise, images_per_call=1,
                        peak_memory_bytes=2**30, memory_kind="process RSS (sampled)", warmup=1,
                        repeats=1, energy_note="not measured: cpu (NVML meters NVIDIA GPUs only)")
        sc = Score(value=score, per_image=[score], excluded=[None], backend="torchmetrics",
                   checkpoint="/somewhere/private/toy-clip", scale="100 x cosine, clamped at 0",
                   standin=True, prompt_tokens=5, max_prompt_tokens=75, truncated=False,
                   scored_prompt=prompt)
        r = Result(model=key, model_name=name, success=True, error=None, source="tiny",
                   standin=True, toy=False, repo=None, revision=None, teacher=teacher,
                   prompt=prompt, negative_prompt="", seed=seed, steps=4, guidance=7.5,
                   width=64, height=64, images_per_prompt=1, scheduler="PNDMScheduler",
                   dtype="fp32", device="cpu", device_name="test cpu", variant=None,
                   latents_sha=f"sha-{prompt[:5]}-{seed}", timing=timing, score=sc, fidelity=fid)
        r.images = [Image.new("RGB", (64, 64), (shade, 90, 160))]
        return r

    with Store(path) as store:
        for i, prompt in enumerate(PROMPTS):
            for seed in (0, 1):
                gap = 10 * (i + 1)  # later prompts: students further from their teacher
                ssim = 0.95 - 0.2 * i - 0.01 * seed
                store.save(Request(prompt, seed=seed, steps=4, size=64), [
                    result("sd-v1-4", "SD v1.4", None, prompt, seed, 1.0 + 0.05 * i + 0.02 * seed,
                           25.0 + i + seed, 100),
                    result("bk-sdm-small", "BK-SDM-Small", "sd-v1-4", prompt, seed,
                           0.6 + 0.03 * i + 0.01 * seed, 24.0 + 0.5 * i + seed, 100 + gap,
                           {"psnr": 30.0 - 5 * i, "ssim": ssim, "excluded": None,
                            "against": "sd-v1-4"})], source="tiny")
    return path


def specs(at: AppTest) -> str:
    """Every plotly chart's figure as readable JSON text (not escaped)."""
    return "".join(json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
                   for c in at.get("plotly_chart"))


#: A column that tells each table apart (AppTest does not give a dataframe's key).
TABLES = {"sq_summary": "latency CI low", "sq_effects": "latency_ratio", "pairs_list": "score diff",
          "models_counts": "fp16 (GB)", "models_measured": "time (ms)",
          "models_stored": "UNet GFLOP/step"}


def df_of(at: AppTest, key: str) -> pd.DataFrame:
    """The table drawn under ``key`` (found by its telling column, :data:`TABLES`)."""
    found = [d.value for d in at.dataframe if TABLES[key] in d.value.columns]
    assert len(found) == 1, f"{len(found)} tables like {key}"
    return found[0]


# --- Speed vs quality ------------------------------------------------------------------------------

def test_speed_vs_quality_shows_the_stats_paths_intervals(app_env):
    from dsdcompare.store import Store

    stored_pairs(app_env)
    at = app("pages/speed_quality_page.py")
    text = specs(at)
    assert "95% bootstrap intervals over prompts" in text and "4 prompts × 2 seeds" in text
    assert "/somewhere/private" not in text and "toy-clip" in text  # a short scorer name
    shown = df_of(at, "sq_summary").set_index("model")
    with Store(app_env, readonly=True) as store:
        df = store.results()
    expected = stats.summary(df[df["success"]]).set_index("model")
    for label, key in (("SD v1.4", "sd-v1-4"), ("BK-SDM-Small", "bk-sdm-small")):
        for col, ref in (("latency CI low", "latency_ci_low"), ("latency CI high", "latency_ci_high"),
                         ("score CI low", "clip_ci_low"), ("score CI high", "clip_ci_high"),
                         ("prompts", "n_prompts"), ("seeds", "n_seeds")):
            assert shown.loc[label, col] == pytest.approx(expected.loc[key, ref]), (label, col)
    assert shown.loc["BK-SDM-Small", "vs teacher CI low"] == pytest.approx(
        expected.loc["bk-sdm-small", "diff_ci_low"])
    # a fidelity metric is offered once the store holds one
    assert at.selectbox(key="sq_metric").options == ["CLIP score", "SSIM vs teacher",
                                                     "PSNR vs teacher (dB)"]
    at.selectbox(key="sq_metric").set_value("ssim").run()
    assert not at.exception
    assert "Latency vs SSIM vs teacher" in specs(at)


def test_the_forest_plot_is_pair_effects_overall_and_per_category(app_env):
    from dsdcompare.store import Store

    stored_pairs(app_env)
    at = app("pages/speed_quality_page.py")
    at.segmented_control(key="sq_view").set_value("paired").run()
    assert not at.exception
    [forest] = at.get("plotly_chart")
    assert "Paired differences" in forest.proto.spec
    shown = df_of(at, "sq_effects")
    with Store(app_env, readonly=True) as store:
        df = store.results()
    expected = stats.pair_effects(df[df["success"]])
    assert list(shown["category"]) == [stats.ALL, "animals", "objects", stats.UNCATEGORISED]
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False)
    assert shown.loc[0, "latency_ratio"] < 1 < shown.loc[0, "latency_ratio_ci_high"] * 2


# --- Pairs ------------------------------------------------------------------------------------------

def test_pairs_page_lists_latent_matched_pairs_worst_first_and_opens_one(app_env):
    stored_pairs(app_env)
    at = app("pages/pairs_page.py")
    table = df_of(at, "pairs_list")
    assert len(table) == 8 and list(table["SSIM"]) == sorted(table["SSIM"])
    assert table.loc[0, "prompt"] == "a prompt of no suite"  # the worst pair
    assert at.selectbox(key="pairs_open").value == 0
    assert len(at.image) == 3  # the wipe, the teacher, the student
    heat = specs(at)
    assert "per pixel" in heat and "mean 13.3" in heat  # |Δ| = 40 on one channel of three
    at.slider(key="pairs_wipe").set_value(100).run()
    at.selectbox(key="pairs_order").set_value("diff").run()
    assert not at.exception
    diffs = df_of(at, "pairs_list")["score diff"].tolist()
    assert diffs == sorted(diffs)
    at.selectbox(key="pairs_open").set_value(3).run()
    assert not at.exception and len(at.image) == 3


def test_pairs_page_without_pairs_says_what_to_do(app_env):
    at = app("pages/pairs_page.py")
    assert any("Compare page" in i.value for i in at.info)


# --- Models -----------------------------------------------------------------------------------------

@pytest.mark.skipif(not sidebar.toy_weights_ready(), reason="toy weights not trained yet")
def test_models_page_counts_every_model_and_measures_utilisation_here(app_env):
    at = app("pages/models_page.py")
    params = next(d.value for d in at.dataframe if "UNet (M)" in d.value.columns)
    unet = dict(zip(params["model"], params["UNet (M)"]))
    assert unet["SD v1.4"] == pytest.approx(859.52, abs=0.01)
    assert unet["Toy teacher (synthetic shapes)"] == pytest.approx(2.530308, abs=1e-6)
    assert not params.isna().all(axis=1).any() and "error" not in params.columns
    counts = df_of(at, "models_counts")
    assert set(counts["model"]) >= {"SD v1.4", "Toy student (synthetic shapes)"}
    [peak] = [m for m in at.metric if m.label.startswith("Peak of this CPU")]
    assert "measured matmul" in peak.value
    # measure the toy pair here: its UNet's achieved fraction of the measured peak
    at.multiselect(key="models_measure_models").set_value(["toy-teacher", "toy-student"])
    at.number_input(key="models_measure_repeats").set_value(2)
    at.button(key="models_measure_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    measured = df_of(at, "models_measured")
    unet_rows = measured[measured["component"].str.startswith("UNet")]
    assert len(unet_rows) == 2 and (unet_rows["utilisation (%)"] > 0).all()
    assert set(unet_rows["n"].astype(str)) == {"2"}  # each call counted once (not file + session)
    shown = [m for m in at.metric if "UNet at 32 px" in m.label]
    assert len(shown) == 2 and all("% of peak" in m.value for m in shown)
    saved = json.loads((app_env.parent / "profiles.json").read_text())
    assert [p["model"] for p in saved["profiles"]] == ["toy-teacher", "toy-student"]


def test_models_page_utilisation_of_stored_comparisons(app_env):
    stored_pairs(app_env)
    at = app("pages/models_page.py")
    table = df_of(at, "models_stored")
    assert set(table["model"]) == {"SD v1.4", "BK-SDM-Small"}
    assert (table["UNet GFLOP/step"] > 0).all() and (table["TFLOP/s"] > 0).all()


# --- Compare and the cost rate ----------------------------------------------------------------------

def test_compare_shows_a_gallery_per_model_the_stage_chart_cost_and_energy(app_env):
    at = app(params={"usd_h": "3.6"})
    assert at.sidebar.number_input(key="sb_usd_h").value == pytest.approx(3.6)
    at.text_area(key="compare_prompt").set_value("a red circle")
    at.number_input(key="compare_steps").set_value(2)
    at.selectbox(key="compare_size").set_value(64)
    at.multiselect(key="compare_models").set_value(["sd-v1-4"])
    at.number_input(key="compare_images").set_value(2)
    at.button(key="compare_generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [gallery] = at.image
    assert [c.split(" · ")[0] for c in gallery.captions] == ["#1", "#2"]
    assert all("CLIP" in c or "not scored" in c for c in gallery.captions)
    table = at.dataframe[0].value
    latency = table.loc[0, "steady s (median)"]
    assert table.loc[0, "$ / 1k images"] == pytest.approx(latency / 2 * 1000 * 3.6 / 3600)
    assert table.loc[0, "energy / image"] == "not measured"
    assert "Where the time goes" in specs(at)
    assert at.query_params.get("usd_h") in (None, "3.6")  # Generate rewrites the link


def test_a_bad_cost_rate_in_the_link_is_rejected_with_a_message(app_env):
    at = app(params={"usd_h": "-2"})
    assert any("usd_per_hour" in w.value for w in at.warning)
    default = at.sidebar.number_input(key="sb_usd_h").value
    assert default > 0
