"""Architecture-true profiling: meta-device counts, tiny-size timing, options, ratios, CLI."""

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dsdcompare import profiling
from dsdcompare.cli import profile as profile_cli
from dsdcompare.profiling import (
    ComponentTiming,
    ModelProfile,
    ProfileError,
    ProfileSpec,
    count_flops,
    count_params,
    profile_model,
    profile_models,
    profile_table,
    ratio_table,
    ratios,
    summary_table,
)
from dsdcompare.registry import RegistryError, get_model
from dsdcompare.speed import SpeedOptionError, SpeedOptions, uncompiled

ROOT = Path(__file__).resolve().parents[1]


# --- sizes on the meta device -------------------------------------------------------------------

@pytest.mark.parametrize("key, published_m, tolerance", [
    ("sd-v1-4", 859.5, 0.05),  # BK-SDM paper / CompVis config, to the published digit
    ("sdxl-base", 2567.5, 0.05),  # stabilityai unet config
    ("bk-sdm-small", 482.35, 0.05),  # Nota config (482.3 M; the 482.4)
])
def test_unet_params_match_published_values(key, published_m, tolerance):
    assert abs(count_params(key)["unet"] / 1e6 - published_m) <= tolerance


def test_ssd1b_unet_is_1_33_b_within_one_percent():
    # reconstructed config (dsdcompare/archs.py says from what): the card's "1.3B UNet",
    # 1331.33 M by count, 5.33 GB of fp32 weights on the hub (dsdcompare/published.py)
    n = count_params("ssd-1b")["unet"]
    assert abs(n / 1.33e9 - 1) < 0.01


def test_shared_parts_and_registry_facts():
    sd, xl = count_params("sd-v1-4"), count_params("sdxl-base")
    assert round(sd["vae"] / 1e6, 2) == 83.65 and round(sd["vae_decoder"] / 1e6, 2) == 49.49
    assert round(sd["text_encoder"] / 1e6, 2) == 123.06
    assert round(xl["text_encoder_2"] / 1e6, 2) == 694.66
    assert "safety_checker" in sd and "safety_checker" not in xl
    # the registry's published UNet figure, parsed, agrees with the count at its precision
    for key in ("sd-v1-4", "sdxl-base"):
        fact = next(f for f in get_model(key).facts if f.name == "UNet parameters")
        value, kind = profiling.parse_figure(fact.value)
        assert kind == "count" and abs(count_params(key)["unet"] - value) < 0.05e6


@pytest.mark.parametrize("key, gflop", [("sd-v1-4", 360), ("bk-sdm-small", 230),
                                        ("sdxl-base", 856), ("ssd-1b", 515)])
def test_unet_flops_on_meta_match_facts_at_latent_32(key, gflop):
    flops = count_flops(key, 256)
    assert abs(flops["unet"] / 1e9 / gflop - 1) < 0.01
    assert flops["text"] > 0 and flops["vae"] > flops["unet"] * 0.5  # the decoder is no light step


def test_flops_follow_the_pipeline():
    sd, xl = count_flops("sd-v1-4", 256), count_flops("sdxl-base", 256)
    # SD 1.x encodes prompt and empty negative prompt; SDXL uses zeros for the negative
    no_cfg = count_flops("sd-v1-4", 256, cfg=False)
    assert sd["text"] == 2 * no_cfg["text"] and sd["unet"] == 2 * no_cfg["unet"]
    assert "safety" in sd and "safety" not in xl
    # the tiny stand-ins are counted the same way, on their miniature architecture
    tiny = count_flops("sd-v1-4", 64, source="tiny")
    assert set(tiny) == set(sd) and 0 < tiny["unet"] < sd["unet"] / 100


# --- profiling tiny stand-ins -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_pair():
    # one thread: on a busy 2-core machine two OpenMP threads per process make tiny calls 10x
    # slower (spinning barriers); the thread count is recorded with the profile either way
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        options = SpeedOptions(channels_last=True, vae_slicing=True)
        return profile_models(["sd-v1-4", "bk-sdm-small"],
                              ProfileSpec(source="tiny", size=64, steps=10, device="cpu",
                                          repeats=1, options=options, rounds=2))
    finally:
        torch.set_num_threads(threads)


def test_profile_model_on_tiny_times_every_component(tiny_pair):
    for p in tiny_pair:
        assert p.source == "tiny" and p.standin and p.device == "cpu" and p.dtype == "fp32"
        assert set(p.timings) == {"text", "unet", "vae", "safety"}
        for t in p.timings.values():
            assert len(t.samples_s) == 2 and len(t.first_s) == 2  # 2 rounds x 1 repeat
            assert t.min_s <= t.median_s <= t.max_s and all(s > 0 for s in t.samples_s)
        est = p.seconds("text") + 10 * p.seconds("unet") + p.seconds("vae") + p.seconds("safety")
        assert math.isclose(p.est_image_s, est)
        assert p.rounds == 2 and len(p.load_s) == 2 and p.latent_size == 8
        assert p.flops == count_flops(p.model, 64, source="tiny")
        assert any("noise" in n for n in p.notes)
        assert p.env["torch"] == torch.__version__ and p.env["torch_threads"] == 1
        assert "load_average_after" in p.env


def test_profile_records_the_options_in_force(tiny_pair):
    for p in tiny_pair:
        assert p.options == SpeedOptions(channels_last=True, vae_slicing=True).to_dict()
    assert profile_table(tiny_pair)[0]["options"] == "sdpa+channels_last+vae_slicing"


def test_profile_is_plain_serialisable_data(tiny_pair):
    data = json.loads(json.dumps([p.to_dict() for p in tiny_pair]))
    assert data[0]["est_image_s"] == pytest.approx(tiny_pair[0].est_image_s)
    back = ModelProfile.from_dict(data[1])
    assert back == tiny_pair[1]


def test_ratios_for_the_profiled_pair(tiny_pair):
    rows = ratios(tiny_pair)
    by_metric = {r.metric: r for r in rows}
    assert {(r.student, r.teacher) for r in rows} == {("bk-sdm-small", "sd-v1-4")}
    assert set(by_metric) == set(profiling.METRICS)
    sd, bk = tiny_pair
    assert by_metric["unet_s"].measured == pytest.approx(bk.seconds("unet") / sd.seconds("unet"))
    # published: both UNet counts are in the registry's facts; the card's claim sits beside time
    assert by_metric["unet_params"].published == pytest.approx(482.3 / 859.5)
    assert "36%" in by_metric["image_s"].claim
    table = ratio_table(rows)
    assert table[0]["student / teacher"] == "bk-sdm-small / sd-v1-4"


def test_tables_for_cli_and_dashboard(tiny_pair):
    rows = profile_table(tiny_pair)
    assert len(rows) == 2 * 5  # four components and the image estimate per model
    image = [r for r in rows if r["component"].startswith("image")]
    assert image[0]["time (ms)"] == pytest.approx(tiny_pair[0].est_image_s * 1e3, rel=0.01)
    assert len(summary_table(tiny_pair)) == 2
    text = profiling.report(tiny_pair)
    assert "| sd-v1-4 | UNet step (batch 2) |" in text and "## Student / teacher" in text


def test_low_memory_mode_needs_the_arch_source():
    with pytest.raises(ProfileError, match="needs source 'arch', got 'tiny'"):
        profile_model("sd-v1-4", ProfileSpec(source="tiny", size=64, low_memory=True))


# --- ratios on synthetic profiles (no model run) ------------------------------------------------

def _fake(key: str, unet_s: float, **changes) -> ModelProfile:
    spec = get_model(key)
    timing = lambda s: ComponentTiming.from_samples([s * 2], [s, s * 1.1, s * 0.9])
    base = ModelProfile(
        model=key, name=spec.name, teacher=spec.teacher, source="arch", standin=True, size=256,
        latent_size=32, steps=30, cfg=True, device="cpu", device_name="test", dtype="fp32",
        options=SpeedOptions().to_dict(), params={"unet": 100, "vae": 10, "text_encoder": 5},
        vae_decoder_params=6, flops={"text": 1, "unet": 10, "vae": 20},
        timings={"text": timing(0.1), "unet": timing(unet_s), "vae": timing(1.0)}, load_s=(1.0,),
        vae_upcast=False, low_memory=True, warmup=1, repeats=3, rounds=1,
        peak_memory_bytes=None, memory_kind=None, notes=(), env={})
    return replace(base, **changes)


def test_ratios_pair_each_student_with_its_teacher_under_equal_conditions():
    profiles = [_fake("sd-v1-4", 4.8), _fake("bk-sdm-small", 3.0),
                _fake("sdxl-base", 12.0), _fake("ssd-1b", 6.9)]
    rows = {(r.student, r.metric): r for r in ratios(profiles)}
    assert rows[("bk-sdm-small", "unet_s")].measured == pytest.approx(3.0 / 4.8)
    assert rows[("ssd-1b", "unet_s")].measured == pytest.approx(6.9 / 12.0)
    assert rows[("ssd-1b", "image_s")].published == pytest.approx(2.09 / 3.23)  # KOALA, RTX 4090
    assert "60% speedup" in rows[("ssd-1b", "image_s")].claim
    # different conditions (size, options) are never compared
    other = [_fake("sd-v1-4", 4.8), _fake("bk-sdm-small", 3.0, size=512),
             _fake("sdxl-base", 12.0), _fake("ssd-1b", 6.9,
                                             options=SpeedOptions(channels_last=True).to_dict())]
    assert ratios(other) == []


def test_merging_rounds_keeps_every_sample_and_refuses_other_conditions():
    a, b = _fake("sd-v1-4", 4.0), _fake("sd-v1-4", 5.0)
    merged = a.merged(b)
    assert len(merged.timings["unet"].samples_s) == 6 and merged.rounds == 2
    with pytest.raises(ValueError, match="different conditions"):
        a.merged(_fake("sd-v1-4", 4.0, dtype="bf16"))


def test_parse_figure():
    assert profiling.parse_figure("859.5 M") == (859.5e6, "count")
    assert profiling.parse_figure("1.3 B") == (1.3e9, "count")
    assert profiling.parse_figure("3.23 s") == (3.23, "s")
    assert profiling.parse_figure("50% smaller") is None


# --- speed options --------------------------------------------------------------------------------

@pytest.fixture
def tiny_pipe():
    from dsdcompare.loading import load_pipeline

    return load_pipeline(get_model("sd-v1-4"), "tiny", device="cpu").pipe


def test_speed_options_are_applied_and_reversible(tiny_pipe):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = tiny_pipe
    unet = pipe.unet
    opts = SpeedOptions(sdpa=False, channels_last=True, compile_unet=True, vae_slicing=True,
                        vae_tiling=True)
    assert opts.apply(pipe) == opts.to_dict()
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor}
    assert {type(p) for p in pipe.vae.attn_processors.values()} == {AttnProcessor}
    assert pipe.text_encoder.config._attn_implementation == "eager"
    assert pipe.safety_checker.vision_model.config._attn_implementation == "eager"
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # compiled lazily (never called here): a wrapper on the pipeline, the UNet itself kept
    assert pipe.unet is not unet and uncompiled(pipe.unet) is unet
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    # back to the defaults: every option is set both ways
    SpeedOptions().apply(pipe)
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert pipe.text_encoder.config._attn_implementation == "sdpa"
    assert pipe.unet.conv_in.weight.is_contiguous()
    assert pipe.unet is unet
    assert not pipe.vae.use_slicing and not pipe.vae.use_tiling


def test_speed_option_labels_and_validation():
    assert SpeedOptions().label() == "sdpa"
    assert SpeedOptions(sdpa=False, compile_unet=True).label() == "eager-attn+compile"
    assert SpeedOptions(compile_unet=True, compile_mode="max-autotune").label() == \
        "sdpa+compile:max-autotune"
    with pytest.raises(SpeedOptionError, match="compile_mode 'fast'.*max-autotune"):
        SpeedOptions(compile_mode="fast")
    with pytest.raises(SpeedOptionError, match=r"unknown speed option\(s\) \['xformers'\]"):
        SpeedOptions.from_dict({"xformers": True})
    with pytest.raises(SpeedOptionError, match="channels_last must be True or False"):
        SpeedOptions(channels_last="yes")


# --- bad input ------------------------------------------------------------------------------------

def test_bad_inputs_name_the_value_and_the_remedy(monkeypatch):
    with pytest.raises(ProfileError, match="multiple of 8.*got 250; try 248"):
        profiling.check_size(250)
    with pytest.raises(ProfileError, match="from 64 to 2048, got 32"):
        count_flops("sd-v1-4", 32)
    with pytest.raises(RegistryError, match="Unknown model 'sd-v9'.*sd-v1-4"):
        count_params("sd-v9")
    with pytest.raises(ProfileError, match=r"unknown component\(s\) \['clip'\]"):
        profile_model("sd-v1-4", ProfileSpec(source="tiny", size=64, stages=["clip"]))
    # the one limits table (dsdcompare.limits.STEPS) bounds steps; it was 1000 here before
    with pytest.raises(ProfileError, match="steps must be an integer from 1 to 500, got 0"):
        profile_model("sd-v1-4", ProfileSpec(source="tiny", size=64, steps=0))
    # bf16 on a GPU without it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ProfileError, match="bf16 .*cuda.*Tesla T4.*use --dtype fp16"):
        profiling.check_dtype("cuda", torch.bfloat16)
    assert isinstance(profiling.check_dtype("cpu", torch.bfloat16), list)  # runs on any CPU


# --- the arch source's building blocks ------------------------------------------------------------

def test_arch_pipeline_builds_on_meta_and_materialises_one_component():
    from dsdcompare.zoo import build_arch_pipeline, component_seed, materialize_random

    pipe = build_arch_pipeline(get_model("sdxl-base"), materialize=())  # seconds, no memory
    assert pipe.unet.device.type == "meta" and pipe.text_encoder_2.device.type == "meta"
    assert pipe.scheduler.sigmas.device.type == "cpu"  # schedulers are built for real
    vae = materialize_random(pipe.vae, device="cpu", dtype=torch.float32,
                             seed=component_seed(0, "vae"))
    assert vae.decoder.conv_norm_out.weight.eq(1).all()  # norm scales 1
    w = vae.decoder.conv_in.weight
    assert w.std().item() == pytest.approx(1 / math.sqrt(w[0].numel()), rel=0.05)
    first = w[0, 0].clone()
    materialize_random(pipe.vae, device="cpu", dtype=torch.float32, seed=component_seed(0, "vae"))
    assert torch.equal(pipe.vae.decoder.conv_in.weight[0, 0], first)  # seeded
    with torch.inference_mode():
        image = pipe.vae.decode(torch.randn(1, 4, 4, 4)).sample
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


# --- command line and GPU script ------------------------------------------------------------------

def test_cli_options_all_have_help_and_run_prints_and_writes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    profile_cli.configure(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{action.dest} has no help text"
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    args = parser.parse_args(["--models", "sd-v1-4,bk-sdm-small", "--source", "tiny", "--size",
                              "64", "--components", "none", "--quiet", "--json", str(out_json),
                              "--csv", str(out_csv)])
    assert profile_cli.run(args) == 0
    text = capsys.readouterr().out
    assert "## Components" in text and "UNet parameters" in text
    data = json.loads(out_json.read_text())
    assert len(data["profiles"]) == 2 and data["ratios"]
    assert out_csv.read_text().splitlines()[0].startswith("model,")
    # a bad size is refused while parsing (limits table), exit status 2
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--size", "100", "--quiet"])
    assert exit_.value.code == 2
    assert "multiple of 8" in capsys.readouterr().err


def test_saved_profiles_reprint_and_merge_rounds(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"profiles": [_fake("sd-v1-4", 4.0).to_dict(),
                                             _fake("bk-sdm-small", 2.5).to_dict()]}))
    merged = profiling.merge_profiles(profiling.load_profiles(path) * 2)
    assert [p.model for p in merged] == ["sd-v1-4", "bk-sdm-small"] and merged[0].rounds == 2
    parser = argparse.ArgumentParser()
    profile_cli.configure(parser)
    assert profile_cli.run(parser.parse_args(["--from-json", str(path), str(path)])) == 0
    out = capsys.readouterr().out
    assert "| bk-sdm-small / sd-v1-4 | UNet time per step | 0.625 |" in out
    assert "2 round(s)" in out
    with pytest.raises(ProfileError, match="cannot read profiles from"):
        profiling.load_profiles(tmp_path / "missing.json")


# --- the spec, compile/uncompile, one environment, no I/O in the package ----------------------------

def test_profile_spec_checks_every_setting_against_the_limits():
    from dsdcompare.errors import InputError

    assert ProfileSpec().stages == ("text", "unet", "vae", "safety")
    assert ProfileSpec(stages=["unet"]).stages == ("unet",)  # stored as a tuple
    with pytest.raises(ProfileError, match="warmup must be at least 1.*got 0"):
        ProfileSpec(warmup=0)
    with pytest.raises(ProfileError, match="repeats must be an integer from 1 to 100, got 0"):
        ProfileSpec(repeats=0)
    with pytest.raises(ProfileError, match="rounds must be an integer from 1 to 20, got 21"):
        ProfileSpec(rounds=21)
    with pytest.raises(ProfileError, match="size must be a multiple of 8.*got 100; try 96"):
        ProfileSpec(size=100)
    assert issubclass(ProfileError, InputError) and issubclass(SpeedOptionError, InputError)
    with pytest.raises(AttributeError):  # frozen
        ProfileSpec().size = 64


def test_compile_mode_change_recompiles_from_the_kept_unet(tiny_pipe):
    unet = tiny_pipe.unet
    SpeedOptions(compile_unet=True).apply(tiny_pipe)
    first = tiny_pipe.unet
    SpeedOptions(compile_unet=True).apply(tiny_pipe)
    assert tiny_pipe.unet is first  # idempotent: not compiled twice
    SpeedOptions(compile_unet=True, compile_mode="max-autotune").apply(tiny_pipe)
    assert tiny_pipe.unet is not first and uncompiled(tiny_pipe.unet) is unet
    SpeedOptions().apply(tiny_pipe)
    assert tiny_pipe.unet is unet and uncompiled(unet) is unet


def test_one_environment_for_results_and_profiles():
    from dsdcompare import engine, environment

    assert engine.environment is environment.environment
    plain = environment.environment("cpu")
    loaded = environment.environment("cpu", machine_load=True)
    assert "load_average_before" not in plain and "cpu_count" in loaded
    assert {k: v for k, v in loaded.items() if k in plain} == plain


def test_saved_file_without_profiles_is_refused_naming_it(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"eager": [], "compiled": []}))
    with pytest.raises(ProfileError, match=r"gpu\.json.*no \"profiles\" list"):
        profiling.load_profiles(path)


def test_profiling_package_neither_parses_arguments_nor_prints():
    for module in (ROOT / "dsdcompare" / "profiling").glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "argparse" not in text and "print(" not in text, module.name
