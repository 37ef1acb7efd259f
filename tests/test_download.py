"""The download plan against the published repo listings (tests/fixtures), without a network."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from dsdcompare import download as dl
from dsdcompare.download import DownloadError, DownloadPlan, RepoFile
from dsdcompare.registry import SEED_MODELS, get_model

LAYOUTS = json.loads((Path(__file__).parent / "fixtures" / "hub_layouts.json").read_text())
REPOS = LAYOUTS["models"]
SHA = "a" * 40


def listing(key: str) -> list[RepoFile]:
    """A fixture listing; rounded hub-page sizes stand in where the exact size is unknown."""
    return [RepoFile(f["path"], f.get("size", f.get("size_approx"))) for f in REPOS[key]["files"]]


def components(key: str) -> list[str]:
    return list(REPOS[key]["model_index"]["components"])


def plan(key: str, dtype: str) -> DownloadPlan:
    return dl.plan_model(get_model(key), listing(key), REPOS[key]["model_index"]["components"],
                         dtype)


def paths(p: DownloadPlan) -> set[str]:
    return {f.path for f in p.files}


# --- the files chosen, per repo and precision ------------------------------------------------------

@pytest.mark.parametrize("key", SEED_MODELS)
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_plan_takes_safetensors_only_and_never_root_checkpoints(key, dtype):
    chosen = paths(plan(key, dtype))
    assert "model_index.json" in chosen
    assert all(not p.endswith((".bin", ".msgpack", ".onnx", ".onnx_data", ".pb", ".xml")) for p in chosen)
    assert all("/" in p or p.endswith(".json") for p in chosen), "no root single-file checkpoint"
    weights = [p for p in chosen if p.endswith(".safetensors")]
    assert all((".fp16." in p) == (dtype == "fp16") for p in weights
               if p.split("/")[0] in get_model(key).fp16_variant)
    # every weight folder of the pipeline contributes exactly one weight file
    for folder in dl.weight_folders(listing(key), components(key)):
        assert len([p for p in weights if p.startswith(folder + "/")]) == 1, folder


def test_sd14_fp16_takes_the_fp16_file_of_every_folder():
    p = plan("sd-v1-4", "fp16")
    assert p.variant == "fp16"
    assert {f for f in paths(p) if f.endswith(".safetensors")} == {
        "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.fp16.safetensors", "safety_checker/model.fp16.safetensors"}
    assert "unet/diffusion_pytorch_model.non_ema.safetensors" not in paths(p)
    # configs, tokenizer, scheduler and feature extractor come along; the README does not
    assert {"unet/config.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json",
            "feature_extractor/preprocessor_config.json"} <= paths(p)
    assert "README.md" not in paths(p) and "v1-variants-scores.jpg" not in paths(p)


def test_sd14_sizes_are_summed_exactly():
    fp16, fp32 = plan("sd-v1-4", "fp16"), plan("sd-v1-4", "fp32")
    assert fp16.unknown_sizes == 0 and fp32.unknown_sizes == 0
    weights16 = 1_719_125_304 + 167_335_342 + 246_144_864 + 608_018_440
    weights32 = 3_438_167_534 + 334_643_276 + 492_265_879 + 1_215_981_830
    small = fp16.total_bytes - weights16
    assert 1_500_000 < small < 1_700_000  # configs and tokenizer: the same in both plans
    assert fp32.total_bytes - weights32 == small


def test_bk_sdm_small_falls_back_per_folder():
    p = plan("bk-sdm-small", "fp16")
    chosen = paths(p)
    assert p.variant == "fp16"
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in chosen
    assert "unet/diffusion_pytorch_model.safetensors" not in chosen
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in chosen
    # a folder without fp16 files keeps its fp32 file (shown on a listing without the inferred ones)
    files = [f for f in listing("bk-sdm-small") if f.path != "text_encoder/model.fp16.safetensors"]
    chosen, _ = dl.pipeline_files(files, components("bk-sdm-small"), "fp16")
    assert "text_encoder/model.safetensors" in {f.path for f in chosen}
    assert "unet/diffusion_pytorch_model.fp16.bin" not in chosen


def test_sdxl_takes_what_diffusers_takes_including_the_unread_vae_1_0():
    p = plan("sdxl-base", "fp16")
    assert p.unread == ("vae_1_0/diffusion_pytorch_model.fp16.safetensors",)
    assert not any(f.startswith(("vae_decoder/", "vae_encoder/")) for f in paths(p))
    assert "text_encoder_2/model.fp16.safetensors" in paths(p)
    assert "text_encoder_2/model.onnx_data" not in paths(p)
    assert "sd_xl_base_1.0.safetensors" not in paths(p)
    assert p.total_bytes == sum(f.size for f in p.files)
    assert 7.10e9 < p.total_bytes < 7.12e9


def test_ssd1b_never_fetches_the_root_checkpoints():
    for dtype in ("fp16", "fp32"):
        chosen = paths(plan("ssd-1b", dtype))
        assert not any(p.startswith("SSD-1B") for p in chosen)
    p = plan("ssd-1b", "fp16")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in paths(p)
    assert 4.4e9 < p.total_bytes < 4.5e9


def test_variant_choice():
    comps = components("sdxl-base")
    files = listing("sdxl-base")
    assert dl.plan_variant(files, comps, "fp16") == "fp16"
    assert dl.plan_variant(files, comps, "fp32") is None
    assert dl.plan_variant(files, comps, "bf16") is None
    no_fp16 = [f for f in files if ".fp16." not in f.path]
    assert dl.plan_variant(no_fp16, comps, "fp16") is None
    # a folder with only fp16 safetensors: even fp32 asks for the variant (diffusers casts up)
    only16 = [f for f in files if f.path != "vae/diffusion_pytorch_model.safetensors"]
    assert dl.plan_variant(only16, comps, "fp32") == "fp16"
    assert dl.fp16_folders(listing("bk-sdm-small"), components("bk-sdm-small")) == [
        "safety_checker", "text_encoder", "unet", "vae"]


def test_a_folder_without_safetensors_is_refused():
    files = [f for f in listing("sd-v1-4") if not f.path.startswith("vae/diffusion_pytorch_model")]
    files.append(RepoFile("vae/diffusion_pytorch_model.bin", 1))
    with pytest.raises(DownloadError, match=r"folder 'vae' has no safetensors.*never loads pickled"):
        dl.pipeline_files(files, components("sd-v1-4"), None)


def test_sharded_weights_and_their_index_come_together():
    files = [RepoFile("model_index.json", 1), RepoFile("unet/config.json", 1),
             RepoFile("unet/diffusion_pytorch_model-00001-of-00002.safetensors", 5),
             RepoFile("unet/diffusion_pytorch_model-00002-of-00002.safetensors", 5),
             RepoFile("unet/diffusion_pytorch_model.safetensors.index.json", 1),
             RepoFile("unet/diffusion_pytorch_model.bin.index.json", 1)]
    chosen, _ = dl.pipeline_files(files, ["unet"], None)
    assert {f.path for f in chosen} == {f.path for f in files} - {"unet/diffusion_pytorch_model.bin.index.json"}


def _diffusers_download(key: str, variant: str | None) -> set[str]:
    """The files diffusers 0.42's own DiffusionPipeline.download would fetch for the fixture."""
    import diffusers
    from diffusers.pipelines import pipeline_utils
    from huggingface_hub.utils import filter_repo_objects

    entry = REPOS[key]
    names = [f["path"] for f in entry["files"]]
    folder = Path(tempfile.mkdtemp())
    index = dict(entry["model_index"]["components"], _class_name=get_model(key).pipeline,
                 _diffusers_version="0.42.0")
    (folder / "model_index.json").write_text(json.dumps(index))
    seen = {}

    def snapshot(repo_id, **kwargs):
        seen.update(kwargs)
        return str(folder)

    info = SimpleNamespace(siblings=[SimpleNamespace(rfilename=n) for n in names])
    with mock.patch.object(pipeline_utils, "model_info", lambda *a, **k: info), \
            mock.patch.object(pipeline_utils, "hf_hub_download",
                              lambda *a, **k: str(folder / "model_index.json")), \
            mock.patch.object(pipeline_utils, "snapshot_download", snapshot), \
            mock.patch.object(pipeline_utils, "_resolve_revision", lambda name, **k: k.get("revision")):
        diffusers.DiffusionPipeline.download(entry["repo_id"], variant=variant, use_safetensors=True)
    return set(filter_repo_objects(names, allow_patterns=seen["allow_patterns"],
                                   ignore_patterns=seen["ignore_patterns"]))


@pytest.mark.parametrize("key", SEED_MODELS)
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_plan_is_exactly_what_diffusers_fetches(key, dtype):
    p = plan(key, dtype)
    assert paths(p) == _diffusers_download(key, p.variant)


# --- scorers ---------------------------------------------------------------------------------------

def test_scorer_plan_takes_configs_tokenizer_and_safetensors():
    files = [RepoFile(n, 1) for n in ("config.json", "flax_model.msgpack", "merges.txt",
                                      "model.safetensors", "preprocessor_config.json",
                                      "pytorch_model.bin", "special_tokens_map.json", "tf_model.h5",
                                      "tokenizer.json", "tokenizer_config.json", "vocab.json",
                                      "README.md", ".gitattributes")]
    p = dl.plan_scorer("openai/clip-vit-large-patch14", files)
    assert paths(p) == {"config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
                        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"}
    with pytest.raises(DownloadError, match="no model.safetensors"):
        dl.plan_scorer("x/y", [f for f in files if f.path != "model.safetensors"])


def test_scorer_choices():
    from dsdcompare.errors import InputError
    from dsdcompare.registry import resolve_models

    seeds = resolve_models("all")
    assert dl.scorer_checkpoints("default", seeds) == ["openai/clip-vit-large-patch14"]
    assert dl.scorer_checkpoints("none", seeds) == []
    assert dl.scorer_checkpoints("default", resolve_models("toy")) == []  # the toy CLIP is committed
    assert dl.scorer_checkpoints("default,openai/clip-vit-base-patch32,tiny", seeds) == [
        "openai/clip-vit-large-patch14", "openai/clip-vit-base-patch32"]
    with pytest.raises(InputError, match="open_clip fetches its own weights"):
        dl.scorer_checkpoints("open_clip:ViT-g-14/laion2b_s34b_b88k", seeds)


# --- offline, disk, fetch --------------------------------------------------------------------------

def test_offline_is_refused_with_the_remedy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # also the test session's setting
    with pytest.raises(DownloadError) as err:
        dl.check_online()
    text = str(err.value)
    assert "\n" not in text and "HF_HUB_OFFLINE is set" in text and "unset it" in text
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        dl.hub_listing("CompVis/stable-diffusion-v1-4")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        dl.fetch([plan("sd-v1-4", "fp16")])


def _online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_disk_check_counts_only_missing_files(tmp_path):
    p = DownloadPlan("m", "org/m", SHA, None, (RepoFile("a.json", 10), RepoFile("b/w.safetensors", 1000)))
    assert dl.check_disk([p], tmp_path, free_bytes=2000) == 1010
    with pytest.raises(DownloadError, match=r"needs 0\.00 GB.*free some space or point HF_HUB_CACHE"):
        dl.check_disk([p], tmp_path, free_bytes=100)
    _cache_file(tmp_path, "org/m", "b/w.safetensors")
    assert dl.check_disk([p], tmp_path, free_bytes=100) == 10
    assert [f.path for f in dl.missing_files(p, tmp_path)] == ["a.json"]


def _cache_file(cache: Path, repo_id: str, path: str, size: int = 1) -> Path:
    target = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / SHA / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x" * size)
    return target


def test_fetch_resumes_reports_progress_and_names_gated_repos(tmp_path, monkeypatch):
    import huggingface_hub

    _online(monkeypatch)
    files = (RepoFile("model_index.json", 3), RepoFile("unet/w.safetensors", 10),
             RepoFile("vae/w.safetensors", 6))
    p = DownloadPlan("m", "org/m", SHA, "fp16", files)
    _cache_file(tmp_path, "org/m", "vae/w.safetensors")  # fetched by an earlier, interrupted run
    calls = []

    def fake_download(repo_id, filename, *, revision, cache_dir, tqdm_class):
        calls.append(filename)
        size = {f.path: f.size for f in files}[filename]
        bar = tqdm_class(total=size)
        for _ in range(size):
            bar.update(1)
        bar.close()
        return str(_cache_file(Path(cache_dir), repo_id, filename, size))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    events = []
    assert dl.fetch([p], cache_dir=tmp_path, on_progress=events.append) == 2
    assert calls == ["model_index.json", "unet/w.safetensors"]  # the cached file is not fetched again
    assert events[-1].done_bytes == events[-1].total_bytes == 13
    assert events[-1].files_done == events[-1].files_total == 2
    assert [e.done_bytes for e in events] == sorted(e.done_bytes for e in events)
    assert dl.fetch([p], cache_dir=tmp_path) == 0  # everything cached: nothing to do

    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        raise GatedRepoError("401 Client Error", response=mock.Mock(status_code=401, headers={}))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    q = DownloadPlan("g", "org/gated", SHA, None, (RepoFile("model_index.json", 1),))
    with pytest.raises(DownloadError, match=r"org/gated is gated: accept its terms .* HF_TOKEN"):
        dl.fetch([q], cache_dir=tmp_path)


# --- the command -----------------------------------------------------------------------------------

def _args(*argv: str):
    from dsdcompare.cli import download as cmd

    parser = argparse.ArgumentParser()
    cmd.configure(parser)
    return cmd, parser.parse_args(list(argv))


def test_cli_refuses_offline_before_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(dl, "hub_listing", lambda *a: pytest.fail("no listing when offline"))
    cmd, args = _args("--dry-run", "--dtype", "fp16")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set"):
        cmd.run(args)


def test_cli_dry_run_prints_the_plan_from_the_listings(monkeypatch, capsys):
    _online(monkeypatch)
    by_repo = {REPOS[k]["repo_id"]: k for k in REPOS}
    clip = [RepoFile("config.json", 4_519), RepoFile("model.safetensors", 1_710_540_580)]
    monkeypatch.setattr(dl, "hub_listing", lambda repo, rev=None: (
        SHA, listing(by_repo[repo]) if repo in by_repo else clip))
    monkeypatch.setattr(dl, "hub_model_index", lambda repo, rev=None: REPOS[by_repo[repo]][
        "model_index"]["components"])
    monkeypatch.setattr(dl, "fetch", lambda *a, **k: pytest.fail("a dry run fetches nothing"))
    cmd, args = _args("--dry-run", "--dtype", "fp16", "--models", "sd-v1-4,sdxl-base")
    assert cmd.run(args) == 0
    out = capsys.readouterr().out
    assert "download plan for fp16" in out
    assert "sd-v1-4" in out and "2.74 GB" in out and "sdxl-base" in out and "7.11 GB" in out
    assert "openai/clip-vit-large-patch14" in out and "1.71 GB" in out
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in out
    assert "not read" in out  # SDXL's vae_1_0 weights
    assert "to fetch:" in out
