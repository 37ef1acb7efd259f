"""The registry: seed models, lookups, user TOML entries and their validation errors."""

import dataclasses

import pytest

from dsdcompare import registry
from dsdcompare.registry import (
    ModelSpec,
    RegistryError,
    get_model,
    list_models,
    parse_models_toml,
    resolve_models,
)


@pytest.fixture(autouse=True)
def _restore_registry():
    """User entries registered here must not leak into other test modules."""
    list_models()
    saved = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(saved)


def test_seed_models_and_pairs():
    assert registry.SEED_MODELS == ("sd-v1-4", "bk-sdm-small", "sdxl-base", "ssd-1b")
    assert get_model("bk-sdm-small").teacher == "sd-v1-4"
    assert get_model("ssd-1b").teacher == "sdxl-base"
    assert get_model("sdxl-base").family == "sdxl" and get_model("sd-v1-4").family == "sd1"
    # real-repo facts that loading depends on
    assert get_model("sdxl-base").fp16_variant and get_model("ssd-1b").fp16_variant
    assert get_model("bk-sdm-small").fp16_variant == ("unet", "vae")  # per folder (see fixtures)
    assert get_model("sd-v1-4").safety_checker and not get_model("sdxl-base").safety_checker
    assert get_model("sd-v1-4").repo_id == "CompVis/stable-diffusion-v1-4"
    assert get_model("ssd-1b").native_size == 1024 and get_model("bk-sdm-small").native_size == 512
    assert any(f.name == "UNet parameters" and f.source for f in get_model("sd-v1-4").facts)
    assert get_model("toy-student").teacher == "toy-teacher" and get_model("toy-student").toy


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model("sd-v1-4").steps = 3  # type: ignore[misc]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(RegistryError, match=r"Unknown model 'sdxl'.*'sdxl-base'"):
        get_model("sdxl")


def test_resolve_models_all_and_list():
    assert [s.key for s in resolve_models("all")] == list(registry.SEED_MODELS)
    assert [s.key for s in resolve_models("toy")] == ["toy-teacher", "toy-student"]
    assert [s.key for s in resolve_models("ssd-1b, sd-v1-4")] == ["ssd-1b", "sd-v1-4"]
    assert "toy-teacher" not in list_models(include_toy=False)


GOOD = """
[models.sd15]
name = "SD v1.5"
repo = "runwayml/stable-diffusion-v1-5"
pipeline = "StableDiffusionPipeline"
native_size = 512
teacher = "sd-v1-4"
safety_checker = true

[models.sd15-small]
path = "weights/small"
pipeline = "StableDiffusionPipeline"
native_size = 512
teacher = "sd15"
"""


def test_user_models_file_registers_entries(tmp_path):
    f = tmp_path / "models.toml"
    f.write_text(GOOD)
    specs = registry.load_models_file(f)
    assert [s.key for s in specs] == ["sd15", "sd15-small"]
    assert get_model("sd15").repo_id == "runwayml/stable-diffusion-v1-5"
    # relative paths resolve against the file's folder; a teacher may be defined in the same file
    assert get_model("sd15-small").local_dir == str(tmp_path / "weights" / "small")
    assert get_model("sd15-small").default_source == "local"


@pytest.mark.parametrize("entry, match", [
    ('pipeline = "FluxPipeline"\nnative_size = 512\nrepo = "a/b"',
     r"entry 'bad', field 'pipeline': 'FluxPipeline' is not one of \['StableDiffusionPipeline', "
     r"'StableDiffusionXLPipeline'\]"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 500\nrepo = "a/b"',
     r"entry 'bad', field 'native_size': 500 must be a positive multiple of 8"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = "512"\nrepo = "a/b"',
     r"entry 'bad', field 'native_size': '512' is not a int"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 512\nrepo = "a/b"\nteacher = "nope"',
     r"entry 'bad', field 'teacher': 'nope' is not registered"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 512\nrepo = "a/b"\nteacher = "sdxl-base"',
     r"field 'teacher': 'sdxl-base' is a sdxl model and 'bad' a sd1 one"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 512\nrepo = "a/b"\ncolour = 1',
     r"entry 'bad' has unknown field 'colour'; valid fields: \["),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 512',
     r"entry 'bad', field 'repo': give a hub repo id \('repo'\) or a local directory \('path'\)"),
    ('native_size = 512\nrepo = "a/b"', r"entry 'bad' lacks field 'pipeline'"),
    ('pipeline = "StableDiffusionPipeline"\nnative_size = 512\nrepo = "a/b"\nguidance = 99',
     r"field 'guidance': 99 must be a number from 0 to 50"),
])
def test_invalid_entries_name_entry_field_and_valid_values(tmp_path, entry, match):
    f = tmp_path / "bad.toml"
    f.write_text("[models.bad]\n" + entry + "\n")
    before = list_models()
    with pytest.raises(RegistryError, match=match):
        registry.load_models_file(f)
    assert list_models() == before  # a bad file changes nothing


def test_bad_file_changes_nothing_even_after_good_entries(tmp_path):
    f = tmp_path / "half.toml"
    f.write_text('[models.fine]\nrepo = "a/b"\npipeline = "StableDiffusionPipeline"\n'
                 'native_size = 512\n[models.broken]\nrepo = "a/b"\npipeline = "X"\nnative_size = 512\n')
    with pytest.raises(RegistryError, match="'broken'"):
        registry.load_models_file(f)
    with pytest.raises(RegistryError):
        get_model("fine")


def test_not_toml_and_duplicate_keys(tmp_path):
    with pytest.raises(RegistryError, match="is not valid TOML"):
        parse_models_toml("[models.x\n", origin="m.toml")
    f = tmp_path / "dup.toml"
    f.write_text('[models.sd-v1-4]\nrepo = "a/b"\npipeline = "StableDiffusionPipeline"\nnative_size = 512\n')
    with pytest.raises(RegistryError, match="'sd-v1-4' is already registered"):
        registry.load_models_file(f)


def test_register_validates():
    with pytest.raises(RegistryError, match="field 'arch'"):
        registry.register(ModelSpec("x1", "x", "StableDiffusionPipeline", 512, repo_id="a/b",
                                    arch="sd-v2"))


def test_a_valid_models_file_in_the_environment_loads_once(tmp_path):
    # its own validation looks models up; that must not load the same file again (it recursed)
    import os
    import subprocess
    import sys

    path = tmp_path / "models.toml"
    path.write_text('[models.sd15]\nname = "SD v1.5"\nrepo = "a/b"\n'
                    'pipeline = "StableDiffusionPipeline"\nnative_size = 512\nteacher = "sd-v1-4"\n')
    done = subprocess.run([sys.executable, "-m", "dsdcompare", "models"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DSDCOMPARE_MODELS": str(path)})
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()][-1] == "sd15"
