"""The comparison engine: determinism, fair noise, thread safety, failure isolation, timing."""

import hashlib
import io
import json
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
import torch

from dsdcompare import engine
from dsdcompare.engine import Request, RequestError, compare, fresh_pipeline, initial_latents
from dsdcompare.loading import PipelineCache, load_pipeline
from dsdcompare.registry import get_model, resolve_models

REQ = Request("a red circle on a blue background", negative_prompt="blurry", seed=7, steps=3,
              size=64, repeats=2)


@pytest.fixture(scope="module")
def cache():
    return PipelineCache()


def png_hashes(results):
    out = []
    for r in results:
        buf = io.BytesIO()
        r.images[0].save(buf, format="PNG")
        out.append(hashlib.sha256(buf.getvalue()).hexdigest())
    return out


def test_same_request_twice_gives_byte_identical_pngs(cache):
    models = resolve_models("all")
    a = compare(REQ, models, source="tiny", device="cpu", cache=cache)
    b = compare(REQ, models, source="tiny", device="cpu", cache=cache)
    assert all(r.success for r in a + b), [r.error for r in a + b]
    assert png_hashes(a) == png_hashes(b)
    c = compare(replace(REQ, seed=8), models, source="tiny", device="cpu", cache=cache)
    assert all(x != y for x, y in zip(png_hashes(a), png_hashes(c)))


def test_teacher_student_pairs_get_identical_initial_latents(cache, monkeypatch):
    seen = {}
    real_call = {}

    def spy(pipe_cls):
        original = pipe_cls.__call__

        def call(self, *args, **kwargs):
            seen.setdefault(self.unet.config.layers_per_block, []).append(kwargs["latents"].clone())
            return original(self, *args, **kwargs)
        real_call[pipe_cls] = original
        monkeypatch.setattr(pipe_cls, "__call__", call)

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    spy(StableDiffusionPipeline)
    spy(StableDiffusionXLPipeline)
    results = compare(replace(REQ, repeats=1), resolve_models("all"), source="tiny", device="cpu",
                      cache=cache)
    by = {r.model: r for r in results}
    # what the pipelines received: teacher (2 layers per block) and student (1) alike
    teacher_latents, student_latents = seen[2][0], seen[1][0]
    assert torch.equal(teacher_latents, student_latents)
    assert by["sd-v1-4"].latents_sha == by["bk-sdm-small"].latents_sha
    assert by["sdxl-base"].latents_sha == by["ssd-1b"].latents_sha
    # and the noise is the seed's: a fresh CPU generator per model
    expected = initial_latents(REQ, 64)
    assert torch.equal(teacher_latents, expected)
    # fidelity is computed for latent-matched pairs
    assert by["bk-sdm-small"].fidelity["against"] == "sd-v1-4"
    assert by["ssd-1b"].fidelity["against"] == "sdxl-base"
    assert by["sd-v1-4"].fidelity is None


@pytest.mark.parametrize("key, scheduler", [("sd-v1-4", None),  # PNDM, the repo default
                                            ("sdxl-base", None),  # Euler
                                            ("sd-v1-4", "EulerDiscreteScheduler")])
def test_two_threads_on_one_cached_pipeline_match_serial(cache, key, scheduler):
    req = replace(REQ, repeats=1, warmup=0, steps=4, scheduler=scheduler)
    models = [get_model(key)]
    serial = [png_hashes(compare(replace(req, seed=s), models, source="tiny", device="cpu",
                                 cache=cache)) for s in (1, 2)]
    got = {}

    def run(seed):
        got[seed] = png_hashes(compare(replace(req, seed=seed), models, source="tiny",
                                       device="cpu", cache=cache))

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[1], got[2]] == serial


def test_fresh_pipeline_shares_weights_but_not_the_scheduler(cache):
    lp = cache.get("x", lambda: load_pipeline(get_model("sd-v1-4"), "tiny", device="cpu"))
    p = fresh_pipeline(lp.pipe)
    assert p.unet is lp.pipe.unet and p.scheduler is not lp.pipe.scheduler


def test_a_call_keeps_the_shared_pipeline_in_its_precision():
    # Pipeline.from_pipe would cast the shared modules to fp32 in place on every call
    lp = load_pipeline(get_model("sd-v1-4"), "tiny", device="cpu", dtype="bf16")
    cache = PipelineCache()
    cache.get(("sd-v1-4", "tiny", "cpu", "bf16", None), lambda: lp)
    result = compare(replace(REQ, steps=2, repeats=1, warmup=0), [get_model("sd-v1-4")],
                     source="tiny", device="cpu", dtype="bf16", cache=cache)[0]
    assert result.success and result.dtype == "bf16"
    assert lp.pipe.unet.dtype == torch.bfloat16 and lp.pipe.vae.dtype == torch.bfloat16
    assert lp.pipe.text_encoder.dtype == torch.bfloat16
    assert fresh_pipeline(lp.pipe).scheduler.config == lp.pipe.scheduler.config


def test_one_failing_model_does_not_stop_the_others(cache, tmp_path):
    models = [get_model("sd-v1-4"), get_model("toy-teacher"), get_model("bk-sdm-small")]
    results = compare(replace(REQ, repeats=1), models, source="tiny", device="cpu", cache=cache)
    assert [r.model for r in results] == ["sd-v1-4", "toy-teacher", "bk-sdm-small"]
    ok, bad, ok2 = results
    assert ok.success and ok2.success and ok.images and ok2.images
    assert not bad.success and not bad.images and "architecture" in bad.error


def test_missing_local_weights_become_an_error_result(cache, tmp_path):
    results = compare(replace(REQ, repeats=1), [get_model("sd-v1-4"), get_model("bk-sdm-small")],
                      source="local", local_dirs={"sd-v1-4": str(tmp_path)}, device="cpu",
                      cache=cache)
    assert not results[0].success and "Remedies" in results[0].error
    assert not results[1].success  # no local dir given: its own error, reported
    assert results[1].error_detail


def test_stage_times_add_up_and_first_call_is_apart(cache):
    # 128 px, 8 steps: enough work that the pipeline's fixed ~10 ms of bookkeeping (input checks,
    # post-processing) is a fair share of a call, as it is for real models
    req = replace(REQ, repeats=3, size=128, steps=8)
    [r] = compare(req, [get_model("sd-v1-4")], source="tiny", device="cpu", cache=cache)
    t = r.timing
    s = t.stages
    assert t.repeats == 3 and len(t.steady_s) == 3 and t.warmup == 1
    assert t.first_call_s is not None and t.min_s <= t.median_s <= t.max_s
    named = s.text + s.denoise + s.decode + s.safety
    assert abs(named + s.other - s.total) < 1e-9
    assert named >= 0.95 * s.total, f"unattributed time {s.other:.4f}s of {s.total:.4f}s"
    assert s.text > 0 and s.denoise > 0 and s.decode > 0 and s.safety > 0
    # PNDM runs one more iteration than asked; it/s counts what ran
    assert t.steps == req.steps + 1
    assert t.its_per_s == pytest.approx(t.steps / s.denoise)
    assert t.peak_memory_bytes > 0 and "RSS" in t.memory_kind
    env = r.env
    assert env["torch"] == torch.__version__ and env["diffusers"] and env["device_name"]
    assert r.scheduler == "PNDMScheduler" and r.dtype == "fp32" and r.device == "cpu"
    json.dumps(r.to_dict())  # everything but images serialises


def test_nsfw_flag_is_reported(cache):
    lp = cache.get(("sd-v1-4", "tiny", "cpu", "auto", None),
                   lambda: load_pipeline(get_model("sd-v1-4"), "tiny", device="cpu"))
    checker = lp.pipe.safety_checker
    saved = checker.concept_embeds_weights.detach().clone()
    try:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-10.0)  # everything looks NSFW now
        [r] = compare(replace(REQ, repeats=1), [get_model("sd-v1-4")], source="tiny",
                      device="cpu", cache=cache)
    finally:
        with torch.no_grad():
            checker.concept_embeds_weights.copy_(saved)
    assert r.success and r.nsfw == [True]
    assert any("all black" in f and "NSFW" in f for f in r.flags)


@pytest.mark.parametrize("field, value, match", [
    ("prompt", "  ", "prompt is empty"),
    ("steps", 0, r"steps must be an integer from 1 to 500, got 0"),
    ("guidance", -1, r"guidance must be a number from 0 to 50, got -1"),
    ("size", 100, r"size must be a multiple of 8 from 64 to 2048 \(or native\), got 100"),
    ("seed", -5, r"seed must be an integer"),
    ("scheduler", "FastScheduler", r"scheduler 'FastScheduler' is not a diffusers scheduler"),
])
def test_request_validation_names_the_value(field, value, match):
    with pytest.raises(RequestError, match=match):
        replace(REQ, **{field: value}).validate()


def test_teachers_run_before_students():
    order = engine.teachers_first([get_model("bk-sdm-small"), get_model("ssd-1b"),
                                   get_model("sd-v1-4")])
    assert [m.key for m in order] == ["sd-v1-4", "bk-sdm-small", "ssd-1b"]


def test_cli_compare_writes_files_and_exit_codes(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dsdcompare", "compare", "a blue square", "--models",
           "sd-v1-4,bk-sdm-small", "--source", "tiny", "--size", "64", "--steps", "2",
           "--out", str(out), "--no-store", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= {"sd-v1-4.png", "bk-sdm-small.png",
                                               "contact_sheet.png", "results.json", "results.csv"}
    records = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in records] == ["sd-v1-4", "bk-sdm-small"]
    assert records[1]["fidelity"]["against"] == "sd-v1-4"
    # one model failing: exit 0, failure reported
    proc = subprocess.run(cmd[:6] + ["sd-v1-4,toy-teacher"] + cmd[7:], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "toy-teacher" in proc.stdout and "FAILED" in proc.stdout
    # every model failing: non-zero
    proc = subprocess.run(cmd[:6] + ["toy-teacher"] + cmd[7:], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    # bad argument: a message naming the value
    proc = subprocess.run(cmd + ["--guidance", "abc"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "guidance must be a number, got 'abc'" in proc.stderr


def test_scores_come_with_provenance_and_nan_images_are_excluded_as_nan(cache):
    from dsdcompare.metrics import SCORER_STANDIN, load_scorer

    scorer = load_scorer(SCORER_STANDIN)
    [ok] = compare(replace(REQ, repeats=1), [get_model("bk-sdm-small")], source="tiny",
                   device="cpu", cache=cache, scorer=scorer)
    assert ok.score.checkpoint == SCORER_STANDIN and ok.score.standin
    assert len(ok.score.per_image) == 1 and ok.score.excluded == [None]
    lp = cache.get(("sd-v1-4", "tiny", "cpu", "auto", None),
                   lambda: load_pipeline(get_model("sd-v1-4"), "tiny", device="cpu"))
    weight = lp.pipe.vae.post_quant_conv.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.fill_(float("nan"))  # what an fp16 VAE overflow looks like
        [bad] = compare(replace(REQ, repeats=1), [get_model("sd-v1-4")], source="tiny",
                        device="cpu", cache=cache, scorer=scorer)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert bad.success and any("NaN/inf" in f for f in bad.flags)
    assert bad.score.value is None and bad.score.excluded == ["NaN/inf pixels"]
