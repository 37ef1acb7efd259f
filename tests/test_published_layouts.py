"""The published repos, as data (tests/fixtures), checked against the registry and archs.py.

Every component archs.py builds is compared field by field with the published config it stands
for (both built by the same library class, so defaults count too) and by parameter count; the
weight files' published sizes are compared with the parameter counts of the full-size
architectures on the meta device. A changed fixture value or a wrong archs field fails here.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from dsdcompare import archs
from dsdcompare.registry import SEED_MODELS, WEIGHT_FOLDERS, get_model

FIXTURES = Path(__file__).parent / "fixtures"
LAYOUTS = json.loads((FIXTURES / "hub_layouts.json").read_text())
CONFIGS = json.loads((FIXTURES / "published_configs.json").read_text())
#: Bookkeeping keys of saved configs: which library version wrote them, not the model.
META_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values",
             "architectures", "torch_dtype", "dtype", "transformers_version", "_commit_hash",
             "_attn_implementation_autoset", "output_attentions", "return_dict",
             "output_hidden_states", "id2label", "label2id", "problem_type", "tie_word_embeddings"}
#: Published fields archs.py differs on, each harmless for the reason given.
_NO_PROJECTION = "CLIPTextModel has no projection layer: the field is unused (archs shares SDXL's dict)"
_UPCAST = "null and false both mean no upcast (diffusers' Attention tests its truth value)"
KNOWN_DIFFERENCES = {
    ("sd-v1-4", "text_encoder", "projection_dim"): _NO_PROJECTION,
    ("bk-sdm-small", "text_encoder", "projection_dim"): _NO_PROJECTION,
    ("sdxl-base", "unet", "upcast_attention"): _UPCAST,
    ("ssd-1b", "unet", "upcast_attention"): _UPCAST,
}


# --- the fixtures themselves ---------------------------------------------------------------------

def test_every_value_has_a_source():
    for data in (LAYOUTS, CONFIGS):
        for key, model in data["models"].items():
            entries = model["files"] + [model["model_index"]] if "files" in model else model.values()
            for entry in entries:
                assert entry["source"] in data["sources"], (key, entry)
    statuses = {f["status"] for m in LAYOUTS["models"].values() for f in m["files"]}
    assert statuses == {"confirmed", "inferred", "assumed"}
    for model in LAYOUTS["models"].values():
        for f in model["files"]:
            assert not ("size" in f and "size_approx" in f), f
            assert all(isinstance(f.get(k, 0), int) and f.get(k, 0) >= 0 for k in ("size", "size_approx"))


@pytest.mark.parametrize("key", SEED_MODELS)
def test_registry_matches_the_published_layout(key):
    spec, layout = get_model(key), LAYOUTS["models"][key]
    assert spec.repo_id == layout["repo_id"]
    components = layout["model_index"]["components"]
    assert ("safety_checker" in components) == spec.safety_checker
    # the registry's fp16 folders are exactly those whose fp16 safetensors were seen
    seen = {f["path"].split("/")[0] for f in layout["files"] if f["status"] == "confirmed"
            and f["path"].endswith(".fp16.safetensors") and "/" in f["path"]}
    assert set(spec.fp16_variant) == seen & set(WEIGHT_FOLDERS[spec.family])


def test_the_listings_hold_what_issue_16_says():
    files = {k: {f["path"]: f for f in m["files"]} for k, m in LAYOUTS["models"].items()}
    bk = files["bk-sdm-small"]
    assert bk["unet/diffusion_pytorch_model.fp16.safetensors"]["size"] == 964_741_320  # 965 MB
    assert bk["unet/diffusion_pytorch_model.safetensors"]["size_approx"] == 1_930_000_000
    ssd = files["ssd-1b"]
    assert ssd["unet/diffusion_pytorch_model.safetensors"]["size_approx"] == 5_330_000_000
    assert ssd["unet/diffusion_pytorch_model.fp16.safetensors"]["size_approx"] == 2_660_000_000
    assert {p for p in ssd if "/" not in p and p.endswith(".safetensors")} == {
        "SSD-1B.safetensors", "SSD-1B-A1111.safetensors", "SSD-1B-modelspec.safetensors"}
    # SD v1.4 ships fp16 files on main, in every weight folder (issue 16 assumed none)
    sd = files["sd-v1-4"]
    assert {p.split("/")[0] for p in sd if p.endswith(".fp16.safetensors")} == set(WEIGHT_FOLDERS["sd1"])
    assert LAYOUTS["models"]["sd-v1-4"]["revision"] == "133a221b8aa7292a167afc5127cb63fb5005638b"


# --- published configs against what archs.py builds ----------------------------------------------

def _published(key: str, component: str) -> dict:
    entry = CONFIGS["models"][key][component]
    if "same_as" in entry:
        entry = CONFIGS["models"][entry["same_as"]][component]
    return entry["config"]


def _arch_config(key: str, component: str) -> dict:
    arch = archs.get_architecture(key)
    if component.startswith("text_encoder"):
        return arch.text_encoders[0 if component == "text_encoder" else 1]
    return {"unet": arch.unet, "vae": arch.vae, "scheduler": arch.scheduler,
            "safety_checker": arch.safety_checker}[component]


def _build(component: str, config: dict):
    """The library model for a component config, on the meta device (nothing is allocated)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = {k: v for k, v in config.items() if k not in META_KEYS}
    with torch.device("meta"):
        if component == "unet":
            return UNet2DConditionModel.from_config(config)
        if component == "vae":
            return AutoencoderKL.from_config(config)
        if component == "safety_checker":
            return StableDiffusionSafetyChecker(CLIPConfig(**config))
        cls = CLIPTextModel if component == "text_encoder" else CLIPTextModelWithProjection
        return cls(CLIPTextConfig(**config))


def _hf_fields(cfg) -> dict:
    # the fields the config class defines (legacy generation keys some old configs carry are not)
    known = set(type(cfg)().to_dict())
    return {k: v for k, v in cfg.to_dict().items() if k in known and k not in META_KEYS}


def _fields(component: str, config: dict) -> dict:
    """Every field the library keeps for ``config``, defaults filled in."""
    import diffusers

    if component == "scheduler":
        # the scheduler's own parameters: SDXL's file also carries PNDM/DDIM-only keys
        # (skip_prk_steps, set_alpha_to_one...) that EulerDiscreteScheduler keeps but never reads
        cls = getattr(diffusers, config["_class_name"])
        built = cls.from_config({k: v for k, v in config.items() if k != "_class_name"})
        params = inspect.signature(cls.__init__).parameters
        return {k: v for k, v in dict(built.config).items() if k in params}
    cfg = _build(component, config).config
    if component == "safety_checker":
        return {f"{part}.{k}": v for part in ("text_config", "vision_config")
                for k, v in _hf_fields(getattr(cfg, part)).items()} | {
            "projection_dim": cfg.projection_dim}
    if component.startswith("text_encoder"):
        return _hf_fields(cfg)
    return {k: v for k, v in dict(cfg).items() if k not in META_KEYS}


def _norm(value):
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else value


COMPONENTS = [(key, comp) for key in SEED_MODELS for comp in CONFIGS["models"][key]]


@pytest.mark.parametrize("key,component", COMPONENTS)
def test_archs_builds_every_published_field(key, component):
    published = _published(key, component)
    ours, theirs = _fields(component, _arch_config(key, component)), _fields(component, published)
    wrong = {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs)
             if _norm(ours.get(k)) != _norm(theirs.get(k))
             and (key, component, k.split(".")[-1]) not in KNOWN_DIFFERENCES}
    assert not wrong, f"{key} {component}: archs.py vs published (ours, published): {wrong}"
    if component != "scheduler":
        count = lambda m: sum(p.numel() for p in m.parameters())
        assert count(_build(component, _arch_config(key, component))) == count(
            _build(component, published))


def test_known_differences_are_real():
    """Each entry of KNOWN_DIFFERENCES still differs (else it should be deleted)."""
    for key, component, field in KNOWN_DIFFERENCES:
        ours = _fields(component, _arch_config(key, component))
        theirs = _fields(component, _published(key, component))
        assert ours[field] != theirs[field]


def test_a_wrong_field_would_fail():
    good = _arch_config("ssd-1b", "unet")
    bad = {**good, "reverse_transformer_layers_per_block": [[10, 4, 4], [2, 1, 1], 1]}
    assert _fields("unet", bad) != _fields("unet", _published("ssd-1b", "unet"))


# --- published file sizes against the full-size architectures --------------------------------------

def _component_bytes(key: str, dtype) -> dict[str, int]:
    from dsdcompare.zoo import build_arch_pipeline

    pipe = build_arch_pipeline(get_model(key), device="meta", dtype=dtype)
    return {name: sum(t.numel() * t.element_size() for t in list(c.parameters()) + list(c.buffers()))
            for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


@pytest.mark.parametrize("key", SEED_MODELS)
def test_weight_file_sizes_match_the_parameter_counts(key):
    """A safetensors file is its tensors plus a small header: its size pins the architecture
    (e.g. SSD-1B's reconstructed UNet: 5.33 GB fp32, 2.66 GB fp16 on the hub)."""
    checked = 0
    for dtype, suffix in ((torch.float16, ".fp16.safetensors"), (torch.float32, ".safetensors")):
        nbytes = _component_bytes(key, dtype)
        for f in LAYOUTS["models"][key]["files"]:
            folder, _, name = f["path"].partition("/")
            if folder not in nbytes or not name.endswith(suffix) or name.count(".") != suffix.count("."):
                continue
            if "size" in f:  # exact: tensors + a header under 0.1 MB + 0.01%
                assert 0 <= f["size"] - nbytes[folder] < 100_000 + nbytes[folder] // 10_000, f
            elif "size_approx" in f:  # rounded to 3 digits on the hub page
                assert abs(f["size_approx"] - nbytes[folder]) <= 0.005 * f["size_approx"], f
            else:
                continue
            checked += 1
    assert checked >= 2, f"{key}: no weight file of known size was checked"
