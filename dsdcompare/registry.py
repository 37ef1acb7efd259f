"""The model registry: one frozen :class:`ModelSpec` per model, and nowhere else.

Per-model quirks (native size, fp16 variant, safety checker, recommended guidance) are data on
the spec, never ``if model == ...`` branches. The four seed models (two teacher/student pairs of
distillation) and the project's toy pair are built in; users add models in a TOML file::

    [models.my-sd15]
    name = "SD v1.5"                          # display name (default: the key)
    repo = "runwayml/stable-diffusion-v1-5"   # a hub repo id ...
    # path = "/models/sd15"                   # ... or a local directory in the hub layout
    pipeline = "StableDiffusionPipeline"      # or "StableDiffusionXLPipeline"
    native_size = 512
    teacher = "sd-v1-4"                       # optional: a registered key
    fp16_variant = false                      # or true (every weight folder), or ["unet", "vae"]
    safety_checker = true

Verbs (as in open_clip): :func:`list_models`, :func:`get_model`, :func:`load_models_file`,
:func:`register`.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .limits import GUIDANCE, NATIVE_SIZE, STEPS
from .published import Fact, facts_for  # Fact: re-exported, the type of ModelSpec.facts

#: Pipeline class name -> model family.
PIPELINES = {"StableDiffusionPipeline": "sd1", "StableDiffusionXLPipeline": "sdxl"}
#: Model family -> the pipeline folders that hold weights (where fp16 variant files can be).
WEIGHT_FOLDERS = {"sd1": ("unet", "vae", "text_encoder", "safety_checker"),
                  "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2")}
#: Environment variable naming a TOML file of user models, loaded on first use.
MODELS_FILE_ENV = "DSDCOMPARE_MODELS"
#: Committed weights of the toy zoo (trained by ``python -m dsdcompare toyzoo train``).
TOY_WEIGHTS = Path(__file__).resolve().parent / "toyzoo" / "weights"
#: The toy CLIP scorer (a transformers CLIPModel directory), trained with the toy pair.
TOY_CLIP_DIR = TOY_WEIGHTS / "toy-clip"


class RegistryError(InputError):
    """A registry entry or lookup is invalid; the message names the entry, field and remedy."""


#: A model key: it names output files (``KEY.png``) and stored results, so only a safe file name
#: that starts with a letter or digit (never ``..``, a hidden file or an option).
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Words ``--models`` gives a meaning of their own (see :func:`resolve_models`).
RESERVED_KEYS = ("all", "toy")
#: Largest models file read (a real one is a few KB; this keeps a hostile one cheap).
MAX_MODELS_FILE_BYTES = 1 << 20


def check_key(key) -> str:
    """Return ``key`` if it is a valid model key, else raise :class:`RegistryError` saying why."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise RegistryError(f"model key {key!r} is not valid: use 1 to 64 letters, digits, '-', "
                            f"'_' or '.', starting with a letter or digit")
    if key in RESERVED_KEYS:
        raise RegistryError(f"model key {key!r} is reserved (--models {key} means a group of "
                            f"models); choose another key")
    return key


@dataclass(frozen=True)
class ModelSpec:
    """Everything dsdcompare knows about one model before loading it (a user's choice: frozen)."""

    key: str  # registry key, used on the command line and in stored results
    name: str  # display name
    pipeline: str  # diffusers pipeline class name (a key of PIPELINES)
    native_size: int  # the resolution it was trained at (square), in pixels
    repo_id: str | None = None  # Hugging Face repo id (source "hub")
    local_dir: str | None = None  # a directory in the hub layout (source "local")
    revision: str | None = None  # hub revision to pin (None: the repo's default branch)
    teacher: str | None = None  # registry key of the model this one was distilled from
    steps: int = 30  # recommended denoising steps (the tutorial this project grew from: 30)
    guidance: float = 7.5  # recommended classifier-free guidance scale
    # Weight folders that ship ``*.fp16.safetensors`` files; () = none. variant="fp16" loads those,
    # and diffusers falls back to the fp32 files of the other folders (cast on load).
    fp16_variant: tuple[str, ...] = ()
    safety_checker: bool = False  # the repo ships a safety checker (may return black images)
    arch: str | None = None  # architecture key for the "tiny" and "arch" sources (archs.py)
    toy: bool = False  # a toy model trained on synthetic shapes, not a real text-to-image model
    facts: tuple[Fact, ...] = field(default=())  # published figures, with sources (published.py)
    notes: str = ""  # usage advice from the model card, shown beside results

    @property
    def family(self) -> str:
        """``"sd1"`` or ``"sdxl"``: which pipeline family (and latent layout) it belongs to."""
        return PIPELINES[self.pipeline]

    @property
    def default_source(self) -> str:
        """``"hub"`` when a repo id is known, else ``"local"``."""
        return "hub" if self.repo_id else "local"


_SEED_MODELS = (
    ModelSpec(
        key="sd-v1-4", name="SD v1.4", pipeline="StableDiffusionPipeline", native_size=512,
        repo_id="CompVis/stable-diffusion-v1-4", safety_checker=True, arch="sd-v1-4",
        fp16_variant=WEIGHT_FOLDERS["sd1"],  # on main since hub commit b95be7d (#216)
        facts=facts_for("sd-v1-4"),
    ),
    ModelSpec(
        key="bk-sdm-small", name="BK-SDM-Small", pipeline="StableDiffusionPipeline",
        native_size=512, repo_id="nota-ai/bk-sdm-small", teacher="sd-v1-4", safety_checker=True,
        fp16_variant=("unet", "vae"),  # seen on the hub; text encoder and checker: not confirmed
        arch="bk-sdm-small", facts=facts_for("bk-sdm-small"),
        notes="Block-removed SD v1.4 (one block per down stage, no mid block), distilled from it.",
    ),
    ModelSpec(
        key="sdxl-base", name="SDXL base 1.0", pipeline="StableDiffusionXLPipeline",
        native_size=1024, repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        fp16_variant=WEIGHT_FOLDERS["sdxl"],
        arch="sdxl-base", facts=facts_for("sdxl-base"),
    ),
    ModelSpec(
        key="ssd-1b", name="Segmind SSD-1B", pipeline="StableDiffusionXLPipeline",
        native_size=1024, repo_id="segmind/SSD-1B", teacher="sdxl-base",
        fp16_variant=WEIGHT_FOLDERS["sdxl"],
        guidance=9.0, arch="ssd-1b", facts=facts_for("ssd-1b"),
        notes="The model card recommends a negative prompt and guidance around 9.",
    ),
    ModelSpec(
        key="toy-teacher", name="Toy teacher (synthetic shapes)", pipeline="StableDiffusionPipeline",
        native_size=32, local_dir=str(TOY_WEIGHTS / "toy-teacher"), steps=25, guidance=3.0,
        toy=True,
        notes="A miniature SD trained by dsdcompare's toyzoo on 32x32 coloured shapes; "
              "prompts like 'a red circle on a blue background'.",
    ),
    ModelSpec(
        key="toy-student", name="Toy student (synthetic shapes)", pipeline="StableDiffusionPipeline",
        native_size=32, local_dir=str(TOY_WEIGHTS / "toy-student"), steps=25, guidance=3.0,
        toy=True,
        teacher="toy-teacher",
        notes="The toy teacher with blocks removed (BK-SDM style), distilled from it.",
    ),
)
#: The four models of the two real teacher/student pairs.
SEED_MODELS = tuple(s.key for s in _SEED_MODELS if not s.toy)
#: The trained miniature pair (offline demo).
TOY_MODELS = tuple(s.key for s in _SEED_MODELS if s.toy)

_lock = threading.Lock()
_registry: dict[str, ModelSpec] = {}
_env_loaded: str | None = None
_env_loading = threading.local()  # the models file this thread is loading (its lookups skip it)


def _ensure_loaded() -> None:
    global _env_loaded
    with _lock:
        if not _registry:
            for spec in _SEED_MODELS:
                _registry[spec.key] = spec
    path = os.environ.get(MODELS_FILE_ENV)
    if path and path != _env_loaded and getattr(_env_loading, "path", None) != path:
        # marked loaded only once it loaded: a bad file raises on every use, never half-applies;
        # while it loads, its own validation looks models up without loading it again
        _env_loading.path = path
        try:
            load_models_file(path)
        finally:
            _env_loading.path = None
        _env_loaded = path


def list_models(*, include_toy: bool = True) -> list[str]:
    """Registered model keys: seed models first, then toy models, then user models."""
    _ensure_loaded()
    keys = list(_registry)
    return [k for k in keys if include_toy or not _registry[k].toy]


def get_model(key: str) -> ModelSpec:
    """The spec registered as ``key``; an unknown key fails listing the valid ones."""
    _ensure_loaded()
    try:
        return _registry[key]
    except KeyError:
        raise RegistryError(f"Unknown model {key!r}. Registered models: {list(_registry)}") from None


def resolve_models(names: str | list[str]) -> list[ModelSpec]:
    """Specs for a comma list or list of keys; ``"all"`` is the four seed models, ``"toy"`` the toy pair."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[ModelSpec] = []
    for name in names:
        keys = {"all": SEED_MODELS, "toy": TOY_MODELS}.get(name, (name,))
        out += [get_model(k) for k in keys if k not in [s.key for s in out]]
    if not out:
        raise RegistryError(f"No models chosen. Registered models: {list_models()}")
    return out


def register(spec: ModelSpec, *, replace_existing: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry after validating it; returns it."""
    _ensure_loaded()
    validate(spec)
    with _lock:
        if spec.key in _registry and not replace_existing:
            raise RegistryError(f"Model {spec.key!r} is already registered; choose another key")
        _registry[spec.key] = spec
    return spec


def validate(spec: ModelSpec, known: dict[str, ModelSpec] | None = None) -> None:
    """Raise :class:`RegistryError` naming the entry, the field and the valid values.

    ``known`` are the models a teacher link may point at (default: the registry).
    """
    if known is None:
        _ensure_loaded()
        with _lock:
            known = dict(_registry)
    def bad(field_name: str, why: str) -> RegistryError:
        return RegistryError(f"Model entry {spec.key!r}, field {field_name!r}: {why}")

    try:
        check_key(spec.key)
    except RegistryError as err:
        raise bad("key", str(err)) from None
    if spec.pipeline not in PIPELINES:
        raise bad("pipeline", f"{spec.pipeline!r} is not one of {list(PIPELINES)}")
    folders = WEIGHT_FOLDERS[spec.family]
    if not isinstance(spec.fp16_variant, tuple) or any(f not in folders for f in spec.fp16_variant):
        raise bad("fp16_variant", f"{spec.fp16_variant!r} must be true, false or a list of the "
                                  f"folders that ship fp16 files, from {list(folders)}")
    if not NATIVE_SIZE.ok(spec.native_size):
        raise bad("native_size", f"{spec.native_size!r} must be a positive multiple of "
                                 f"{NATIVE_SIZE.multiple}, from {NATIVE_SIZE.lo} to "
                                 f"{NATIVE_SIZE.hi} pixels")
    if not spec.repo_id and not spec.local_dir:
        raise bad("repo", "give a hub repo id ('repo') or a local directory ('path')")
    for name, limit, value in (("steps", STEPS, spec.steps), ("guidance", GUIDANCE, spec.guidance)):
        if not limit.ok(value):
            raise bad(name, f"{value!r} must be {limit.describe()}")
    if spec.teacher is not None:
        if spec.teacher == spec.key:
            raise bad("teacher", "a model cannot be its own teacher")
        if spec.teacher not in known:
            raise bad("teacher", f"{spec.teacher!r} is not registered; registered: {list(known)}")
        if known[spec.teacher].family != spec.family:
            raise bad("teacher", f"{spec.teacher!r} is a {known[spec.teacher].family} model "
                                 f"and {spec.key!r} a {spec.family} one: they cannot share latents")
    if spec.arch is not None:
        from .archs import list_architectures

        if spec.arch not in list_architectures():
            raise bad("arch", f"{spec.arch!r} is not one of {list_architectures()}")


#: TOML field -> ModelSpec field, for user entries.
_TOML_FIELDS = {"name": "name", "repo": "repo_id", "path": "local_dir", "revision": "revision",
                "pipeline": "pipeline", "native_size": "native_size", "teacher": "teacher",
                "steps": "steps", "guidance": "guidance", "fp16_variant": "fp16_variant",
                "safety_checker": "safety_checker", "arch": "arch", "notes": "notes"}
_TOML_TYPES = {"name": str, "repo": str, "path": str, "revision": str, "pipeline": str,
               "native_size": int, "teacher": str, "steps": int, "guidance": (int, float),
               "fp16_variant": (bool, list), "safety_checker": bool, "arch": str, "notes": str}
#: How a type error names the wanted type, where it is not one Python type.
_TOML_WANT = {"guidance": "number", "fp16_variant": "boolean or list of folder names"}


def parse_models_toml(text: str, *, origin: str = "<models file>") -> list[ModelSpec]:
    """Parse user model entries (``[models.KEY]`` tables) into specs, without registering them."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RegistryError(f"{origin} is not valid TOML: {err}") from None
    except RecursionError:
        raise RegistryError(f"{origin}: its values are nested too deeply to be a models file; "
                            f"give each model a flat [models.KEY] table") from None
    unknown_top = set(data) - {"models"}
    if unknown_top:
        raise RegistryError(f"{origin}: unknown top-level key(s) {sorted(unknown_top)[:10]}; "
                            f"put each model under [models.KEY]")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{origin}: 'models' must be tables [models.KEY], got "
                            f"{type(models).__name__} {str(models)[:40]!r}")
    specs = []
    for key, entry in models.items():
        if not isinstance(entry, dict):
            raise RegistryError(f"{origin}: model entry {key!r} must be a table [models.{key}]")
        for fname, value in entry.items():
            if fname not in _TOML_FIELDS:
                raise RegistryError(f"{origin}: model entry {key!r} has unknown field {fname!r}; "
                                    f"valid fields: {sorted(_TOML_FIELDS)}")
            allowed = "\n\t" if fname == "notes" else ""  # notes may span lines
            if isinstance(value, str) and any((ord(c) < 32 or ord(c) == 127) and c not in allowed
                                              for c in value):
                raise RegistryError(f"{origin}: model entry {key!r}, field {fname!r}: "
                                    f"{value[:40]!r} holds a control character; remove it")
            typ = _TOML_TYPES[fname]
            if not isinstance(value, typ) or (isinstance(value, bool) and fname in (
                    "native_size", "steps", "guidance")):
                want = typ.__name__ if isinstance(typ, type) else _TOML_WANT[fname]
                raise RegistryError(f"{origin}: model entry {key!r}, field {fname!r}: {value!r} "
                                    f"is not a {want}")
        if "repo" in entry and "path" in entry:
            raise RegistryError(f"{origin}: model entry {key!r}: give 'repo' or 'path', not both")
        for required in ("pipeline", "native_size"):
            if required not in entry:
                raise RegistryError(f"{origin}: model entry {key!r} lacks field {required!r} "
                                    f"(pipeline: one of {list(PIPELINES)}; native_size: pixels)")
        kwargs = {_TOML_FIELDS[k]: v for k, v in entry.items()}
        fp16 = kwargs.get("fp16_variant")
        if isinstance(fp16, bool):  # true: every weight folder of the family ships fp16 files
            family = PIPELINES.get(kwargs["pipeline"])
            kwargs["fp16_variant"] = WEIGHT_FOLDERS.get(family, ()) if fp16 else ()
        elif fp16 is not None:
            kwargs["fp16_variant"] = tuple(fp16)
        if kwargs.get("local_dir"):
            base = Path(origin).parent if origin != "<models file>" else Path.cwd()
            kwargs["local_dir"] = str((base / kwargs["local_dir"]).expanduser())
        kwargs.setdefault("name", key)
        specs.append(ModelSpec(key=key, **kwargs))
    return specs


def load_models_file(path: str | os.PathLike) -> list[ModelSpec]:
    """Validate and register every model in the TOML file ``path``; return their specs.

    All entries are checked before any is registered, so a bad file changes nothing.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_MODELS_FILE_BYTES + 1)
    except OSError as err:
        raise RegistryError(f"Cannot read models file {str(path)!r}: {err.strerror}") from None
    if len(data) > MAX_MODELS_FILE_BYTES:
        raise RegistryError(f"models file {str(path)!r} is larger than "
                            f"{MAX_MODELS_FILE_BYTES // 1024} KB; a models file holds a few "
                            f"[models.KEY] tables")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise RegistryError(f"models file {str(path)!r} line {line}: not valid UTF-8 "
                            f"({err.reason} at byte {err.start}); save it as UTF-8") from None
    specs = parse_models_toml(text, origin=str(path))
    _ensure_loaded()
    with _lock:
        staged = dict(_registry)
    for spec in specs:  # against the registry plus the file's earlier entries
        if spec.key in staged:
            raise RegistryError(f"{path}: model {spec.key!r} is already registered; "
                                f"choose another key")
        validate(spec, staged)
        staged[spec.key] = spec
    with _lock:
        _registry.update({s.key: s for s in specs})
    return specs
