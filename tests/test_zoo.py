"""Weight sources and loading: tiny stand-ins through the hub loading code, errors, memory policy."""

import gc
import json
import shutil
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dsdcompare import archs, zoo
from dsdcompare.loading import LoadedPipeline, PipelineCache, choose_variant, load_pipeline, resolve_dtype
from dsdcompare.registry import SEED_MODELS, get_model
from dsdcompare.zoo import WeightsUnavailable


@pytest.fixture(scope="module")
def tiny_pipes():
    return {key: load_pipeline(get_model(key), "tiny", device="cpu") for key in SEED_MODELS}


@pytest.mark.parametrize("key", SEED_MODELS)
def test_tiny_standin_builds_saves_reloads_and_generates(tiny_pipes, key):
    spec = get_model(key)
    lp = tiny_pipes[key]
    folder = Path(lp.location.path)
    # saved in the hub layout and loaded back through from_pretrained
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == spec.pipeline
    assert type(lp.pipe).__name__ == spec.pipeline
    assert lp.standin and lp.location.source == "tiny"
    assert json.loads((folder / "STANDIN.json").read_text())["architecture"] == key
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(folder.rglob("*.bin")), "only safetensors are written and loaded"
    assert lp.nbytes > 0 and lp.load_seconds > 0
    # the real repo's default scheduler
    want = "PNDMScheduler" if spec.family == "sd1" else "EulerDiscreteScheduler"
    assert type(lp.pipe.scheduler).__name__ == want
    out = lp.pipe("a red circle", num_inference_steps=2, height=64, width=64,
                  generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 64, 64, 3)
    assert np.isfinite(out.images).all() and out.images.std() > 0


def test_tiny_keeps_the_structural_differences(tiny_pipes):
    sd, bk = tiny_pipes["sd-v1-4"].pipe, tiny_pipes["bk-sdm-small"].pipe
    xl, ssd = tiny_pipes["sdxl-base"].pipe, tiny_pipes["ssd-1b"].pipe
    # BK-SDM-small: one block per down stage (two per up stage) and no mid block
    assert sd.unet.config.layers_per_block == 2 and bk.unet.config.layers_per_block == 1
    assert sd.unet.mid_block is not None and bk.unet.mid_block is None
    assert all(len(b.resnets) == 1 for b in bk.unet.down_blocks)
    assert all(len(b.resnets) == 2 for b in bk.unet.up_blocks)
    # SDXL: two text encoders and tokenizers, text_time embedding
    for p in (xl, ssd):
        assert type(p.text_encoder).__name__ == "CLIPTextModel"
        assert type(p.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
        assert p.tokenizer_2.pad_token == "!" and p.tokenizer.pad_token == "<|endoftext|>"
        assert p.unet.config.addition_embed_type == "text_time"
        assert p.unet.config.cross_attention_dim == (p.text_encoder.config.hidden_size
                                                     + p.text_encoder_2.config.hidden_size)
    # SSD-1B: fewer transformer layers, a mid block without attention
    assert list(xl.unet.config.transformer_layers_per_block) == [1, 2, 10]
    assert list(ssd.unet.config.transformer_layers_per_block) == [1, 2, 4]
    assert type(xl.unet.mid_block).__name__ == "UNetMidBlock2DCrossAttn"
    assert type(ssd.unet.mid_block).__name__ == "UNetMidBlock2D"
    depth = lambda unet: sum(len(a.transformer_blocks) for b in unet.up_blocks
                             for a in getattr(b, "attentions", []))
    assert depth(ssd.unet) < depth(xl.unet)
    # SD 1.x repos ship a safety checker; the stand-in keeps it
    assert sd.safety_checker is not None and bk.safety_checker is not None


def test_tokenizer_is_the_real_clip_bpe(tiny_pipes):
    open_clip = pytest.importorskip("open_clip")
    tok = tiny_pipes["sd-v1-4"].pipe.tokenizer
    assert len(tok) == 49408
    text = "A photo of an astronaut riding a horse on Mars, 4k, trending!"
    ids = tok(text).input_ids
    assert ids == open_clip.get_tokenizer("ViT-L-14")([text])[0].tolist()[: len(ids)]


@pytest.mark.parametrize("key", ["sdxl-base", "ssd-1b"])
def test_fp16_variant_files_load_where_the_repo_has_them(key):
    lp = load_pipeline(get_model(key), "tiny", device="cpu", dtype="fp16")
    assert lp.variant == "fp16" and lp.dtype == "fp16"
    assert lp.pipe.unet.dtype == torch.float16
    assert (Path(lp.location.path) / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()


def test_no_fp16_variant_where_the_repo_has_none():
    # SD v1.4 ships fp16 files on main (tests/fixtures/hub_layouts.json); a repo without any
    # loads its fp32 files and casts them (diffusers refuses variant="fp16" when no folder has it)
    spec = replace(get_model("sd-v1-4"), key="no-fp16", fp16_variant=())
    assert choose_variant(zoo.locate(spec, "hub"), torch.float16) is None
    assert choose_variant(zoo.locate(get_model("sd-v1-4"), "hub"), torch.float16) == "fp16"
    assert choose_variant(zoo.locate(get_model("sd-v1-4"), "hub"), torch.float32) is None


def test_dtype_policy():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match=r"Unknown dtype 'half'.*\['auto', 'fp32', 'fp16', 'bf16'\]"):
        resolve_dtype("half", "cpu")


def test_local_source_loads_a_hub_layout_directory():
    folder = zoo.build_tiny(get_model("bk-sdm-small"))
    lp = load_pipeline(get_model("bk-sdm-small"), "local", local_dir=str(folder), device="cpu")
    assert lp.location.source == "local" and not lp.standin
    assert lp.pipe.unet.mid_block is None


def test_missing_local_weights_name_model_and_remedies(tmp_path):
    with pytest.raises(WeightsUnavailable) as err:
        load_pipeline(get_model("sd-v1-4"), "local", local_dir=str(tmp_path / "nowhere"))
    text = str(err.value)
    assert "SD v1.4 (sd-v1-4)" in text and "nowhere" in text
    assert "CompVis/stable-diffusion-v1-4" in text and "--source tiny" in text


def test_missing_hub_weights_offline_name_repo_and_remedies(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(WeightsUnavailable) as err:
        load_pipeline(get_model("ssd-1b"), "hub", device="cpu")
    text = str(err.value)
    assert "segmind/SSD-1B" in text and "Remedies" in text and "--source local" in text
    assert "--source tiny" in text


def test_unknown_source_and_no_arch():
    with pytest.raises(ValueError, match=r"Unknown weight source 'web'.*\['hub', 'local', 'tiny', 'arch'\]"):
        zoo.locate(get_model("sd-v1-4"), "web")
    with pytest.raises(WeightsUnavailable, match="needs a known architecture"):
        zoo.locate(get_model("toy-teacher"), "tiny")


def test_full_size_architectures_match_published_counts():
    from diffusers import UNet2DConditionModel

    want = {"sd-v1-4": 859_520_964, "bk-sdm-small": 482_346_884, "sdxl-base": 2_567_463_684}
    for key, n in want.items():
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(archs.get_architecture(key).unet)
        assert sum(p.numel() for p in unet.parameters()) == n


def test_cache_evicts_and_really_releases(tiny_pipes):
    cache = PipelineCache(max_items=1)
    spec = get_model("bk-sdm-small")
    first = cache.get("a", lambda: load_pipeline(spec, "tiny", device="cpu"))
    ref = weakref.ref(first.pipe.unet)
    assert cache.get("a", lambda: pytest.fail("a cache hit must not load")) is first
    del first
    cache.get("b", lambda: load_pipeline(spec, "tiny", device="cpu"))
    gc.collect()
    assert cache.keys() == ["b"]
    assert ref() is None, "the evicted pipeline's UNet is still alive"


def test_cache_byte_budget_keeps_newest():
    class Fake(LoadedPipeline):
        pass

    def fake(n):
        return Fake(None, get_model("sd-v1-4"), None, "cpu", "fp32", None, 0.0, n)

    cache = PipelineCache(max_bytes=100)
    cache.get("a", lambda: fake(60))
    cache.get("b", lambda: fake(30))
    assert cache.keys() == ["a", "b"] and cache.nbytes == 90
    cache.get("c", lambda: fake(50))  # 140 > 100: the least recently used goes
    assert cache.keys() == ["b", "c"]
    cache.get("d", lambda: fake(500))  # alone over budget: still kept (one at a time)
    assert cache.keys() == ["d"]
    zero = PipelineCache(max_bytes=0)
    zero.get("a", lambda: fake(1))
    zero.get("b", lambda: fake(1))
    assert zero.keys() == ["b"]


# --- issue 16: the stand-ins' layout, the per-folder fp16 fallback, memory with real sizes ------

LAYOUTS = json.loads((Path(__file__).parent / "fixtures" / "hub_layouts.json").read_text())["models"]


@pytest.mark.parametrize("key", SEED_MODELS)
def test_tiny_standin_has_the_real_repos_folders_and_fp16_files(key):
    folder = zoo.build_tiny(get_model(key))
    layout = LAYOUTS[key]
    assert {p.name for p in folder.iterdir() if p.is_dir()} == set(layout["model_index"]["components"])
    index = json.loads((folder / "model_index.json").read_text())
    # (diffusers also writes its optional components as [null, null], e.g. image_encoder)
    assert {k for k, v in index.items() if isinstance(v, list) and v[0]} == set(
        layout["model_index"]["components"])
    # fp16 files exactly in the folders where the published repo was seen to have them
    real = {f["path"].split("/")[0] for f in layout["files"] if f["status"] == "confirmed"
            and "/" in f["path"] and f["path"].endswith(".fp16.safetensors")}
    real &= set(layout["model_index"]["components"])  # not SDXL's vae_1_0/: no component
    assert {p.parent.name for p in folder.rglob("*.fp16.safetensors")} == real
    assert not list(folder.rglob("*.bin"))


def _copy_tiny(key: str, dest: Path, drop: list[str]) -> Path:
    shutil.copytree(zoo.build_tiny(get_model(key)), dest)
    for rel in drop:
        (dest / rel).unlink()
    return dest


def test_fp16_variant_falls_back_per_folder(tmp_path):
    """diffusers 0.42 with variant="fp16" loads each folder's fp16 file where there is one and
    the fp32 file elsewhere: shown on a BK-SDM-small stand-in with fp16 files in unet/ only."""
    spec = get_model("bk-sdm-small")
    unet16 = "unet/diffusion_pytorch_model.fp16.safetensors"
    only_unet = ["vae/diffusion_pytorch_model.fp16.safetensors"]
    folder = _copy_tiny("bk-sdm-small", tmp_path / "a", only_unet)
    assert [p.relative_to(folder).as_posix() for p in folder.rglob("*.fp16.safetensors")] == [unet16]
    lp = load_pipeline(spec, "local", local_dir=str(folder), device="cpu", dtype="fp16")
    assert lp.variant == "fp16"
    assert all(m.dtype == torch.float16 for m in (lp.pipe.unet, lp.pipe.vae, lp.pipe.text_encoder))
    # the unet came from its fp16 file: without the fp32 file it still loads ...
    folder = _copy_tiny("bk-sdm-small", tmp_path / "b",
                        only_unet + ["unet/diffusion_pytorch_model.safetensors"])
    assert load_pipeline(spec, "local", local_dir=str(folder), device="cpu",
                         dtype="fp16").pipe.unet.dtype == torch.float16
    # ... and the vae from its fp32 file: without it, nothing else stands in
    folder = _copy_tiny("bk-sdm-small", tmp_path / "c",
                        only_unet + ["vae/diffusion_pytorch_model.safetensors"])
    with pytest.raises(WeightsUnavailable, match=r"bk-sdm-small.*diffusion_pytorch_model\.safetensors.*vae"):
        load_pipeline(spec, "local", local_dir=str(folder), device="cpu", dtype="fp16")


def test_loading_leaves_hub_download_bars_on(monkeypatch):
    import diffusers
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    enable_progress_bars()
    diffusers.utils.logging.enable_progress_bar()
    load_pipeline(get_model("bk-sdm-small"), "tiny", device="cpu")
    assert not are_progress_bars_disabled(), "a first real download would show no progress"
    assert diffusers.utils.logging.is_progress_bar_enabled(), "the per-call silence is undone"


def test_cache_evicts_before_loading_when_the_new_model_would_not_fit():
    spec = get_model("sd-v1-4")
    order = []

    def fake(name, n):
        def load():
            order.append((name, cache.keys()))
            return LoadedPipeline(None, spec, None, "cpu", "fp16", None, 0.0, n)
        return load

    cache = PipelineCache(max_bytes=100)
    cache.get("a", fake("a", 60), nbytes=60)
    cache.get("b", fake("b", 30), nbytes=30)
    cache.get("c", fake("c", 50), nbytes=50)  # 60 + 30 + 50 > 100: "a" goes before "c" loads
    assert order[-1] == ("c", ["b"]) and cache.keys() == ["b", "c"]
    cache.get("d", fake("d", 500), nbytes=500)  # alone over budget: the cache empties first
    assert order[-1] == ("d", []) and cache.keys() == ["d"]


def _seed_sizes_fp16() -> dict[str, int]:
    from dsdcompare.loading import expected_nbytes

    return {k: expected_nbytes(get_model(k), "hub", "fp16", "cpu") for k in SEED_MODELS}


def _clip_l_bytes() -> int:
    """The default scorer, openai/clip-vit-large-patch14, in fp32 (as metrics loads it)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config={"hidden_size": 768, "intermediate_size": 3072,
                                     "num_attention_heads": 12, "num_hidden_layers": 12},
                        vision_config={"hidden_size": 1024, "intermediate_size": 4096,
                                       "num_attention_heads": 16, "num_hidden_layers": 24,
                                       "patch_size": 14, "image_size": 224}, projection_dim=768)
    with torch.device("meta"):
        model = CLIPModel(config)
    return sum(p.numel() for p in model.parameters()) * 4


def _run_request(budget: int, sizes: dict[str, int]) -> tuple[int, list[list[str]]]:
    """Two requests of the four seed models through the cache: the peak of resident + incoming
    bytes at each load, and what stayed cached after each load."""
    from dsdcompare.engine import teachers_first
    from dsdcompare.registry import resolve_models

    cache, peak, kept = PipelineCache(max_bytes=budget), 0, []
    for _ in range(2):
        for spec in teachers_first(resolve_models("all")):
            def load(spec=spec):
                nonlocal peak
                peak = max(peak, cache.nbytes + sizes[spec.key])
                return LoadedPipeline(None, spec, None, "cuda", "fp16", "fp16", 0.0, sizes[spec.key])
            cache.get(spec.key, load, nbytes=sizes[spec.key])
            kept.append(cache.keys())
    return peak, kept


@pytest.mark.parametrize("gib", [16, 24, 80])
def test_four_seed_models_fit_a_gpu_with_real_sizes(monkeypatch, gib):
    """Sizes from the full-size architectures on the meta device (real parameter counts, fp16)
    and the cache's accounting: peak = max(budget, largest model) + scorer, so the largest model
    + scorer on a 16 GB GPU, room to spare on 24 GB, and all four cached on 80 GB."""
    from types import SimpleNamespace

    from dsdcompare.loading import default_budget_bytes

    total = gib * 2**30
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=total))
    sizes, scorer = _seed_sizes_fp16(), _clip_l_bytes()
    # the published fp16 weight files: 2.74, 1.99, 6.94, 4.47 GB (tests/fixtures)
    assert [round(sizes[k] / 1e9, 2) for k in SEED_MODELS] == [2.74, 1.99, 6.94, 4.47]
    assert round(scorer / 1e9, 2) == 1.71
    budget = default_budget_bytes("cuda")
    largest = max(sizes.values())
    peak, kept = _run_request(budget, sizes)
    assert peak <= max(budget, largest)
    if gib == 16:
        assert budget < largest and peak == largest == sizes["sdxl-base"]
    if gib == 24:  # weights never exceed a third of the GPU + the scorer: over 12 GiB stays free
        assert largest < peak <= budget and total - (budget + scorer) > 12 * 2**30
    if gib == 80:
        assert kept[-1] == list(SEED_MODELS) and peak == sum(sizes.values())


def fake_spec(**fields):
    """A stand-in registry spec: only the fields the functions under test read."""
    from types import SimpleNamespace

    base = dict(key="fake", repo_id=None, local_dir=None, arch=None)
    return SimpleNamespace(**{**base, **fields})


def test_can_load_says_which_source_has_a_place_for_a_model_without_touching_disk():
    toy, sd = get_model("toy-teacher"), get_model("sd-v1-4")
    assert [zoo.can_load(sd, s) for s in zoo.SOURCES] == [True, False, True, True]
    assert [zoo.can_load(toy, s) for s in zoo.SOURCES] == [False, True, False, False]
    missing = fake_spec(local_dir="/nonexistent/dir")  # offered; locate says what is missing
    assert zoo.can_load(missing, "local")
    with pytest.raises(ValueError, match="Unknown weight source"):
        zoo.can_load(sd, "cloud")


def test_prompt_truncation_names_what_the_text_encoders_ignore():
    from dsdcompare.tokenizers import MAX_PROMPT_TOKENS, prompt_truncation

    assert prompt_truncation("a red circle on a blue background") is None
    cut = prompt_truncation("a red circle on a blue background " * 12 + "THE END")
    assert (cut.tokens, cut.limit) == (7 * 12 + 2, MAX_PROMPT_TOKENS)  # 7 tokens a phrase
    assert cut.dropped.lower().endswith("the end") and cut.kept.startswith("a red circle")
    assert "read only the first 75" in cut.message("negative prompt")
    assert cut.message("negative prompt").startswith("The negative prompt has 86 tokens")


def test_unet_differences_show_what_distillation_removed():
    rows = {r[0]: r[1:] for r in archs.unet_differences(get_model("sd-v1-4"),
                                                          get_model("bk-sdm-small"))}
    assert rows["layers_per_block"] == ("2", "1")
    assert rows["mid_block_type"] == ("UNetMidBlock2DCrossAttn (default)", "null")
    ssd = {r[0] for r in archs.unet_differences(get_model("sdxl-base"), get_model("ssd-1b"))}
    assert "transformer_layers_per_block" in ssd


def test_unet_differences_read_local_configs_and_fill_omitted_keys_with_defaults(tmp_path):
    for name, config in (("a", {"layers_per_block": 2}),
                         ("b", {"layers_per_block": 2, "mid_block_type": "UNetMidBlock2DCrossAttn",
                                "_class_name": "UNet2DConditionModel"})):
        (tmp_path / name / "unet").mkdir(parents=True)
        (tmp_path / name / "unet" / "config.json").write_text(json.dumps(config))
    a, b = (fake_spec(local_dir=str(tmp_path / n)) for n in "ab")
    assert archs.unet_differences(a, b) == []  # an omitted key equal to its default is no change
    assert archs.unet_differences(a, fake_spec(local_dir=str(tmp_path / "none"))) is None
