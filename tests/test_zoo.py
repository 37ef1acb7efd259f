"""Weight sources and loading: tiny stand-ins through the hub loading code, errors, memory policy."""

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from dsdcompare import archs, zoo
from dsdcompare.loading import (LoadedPipeline, PipelineCache, choose_variant, load_pipeline,
                                resolve_dtype)
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


def test_no_fp16_variant_for_sd14():
    loc = zoo.locate(get_model("sd-v1-4"), "tiny")
    assert choose_variant(loc, torch.float16) is None
    assert not list(Path(loc.path).rglob("*.fp16.safetensors"))


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
