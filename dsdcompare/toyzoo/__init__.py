"""The toy zoo: a trained miniature teacher/student pair and CLIP scorer, small enough to commit.

Trained by this package's own script on synthetic shapes (``python -m dsdcompare.toyzoo train``),
so the offline demo shows real images (a red circle on a blue background) instead of the noise of
random-weight stand-ins, and tests can check quality relations instead of only plumbing.

* ``toy-teacher``: a miniature SD v1-style ``StableDiffusionPipeline`` (32x32 images).
* ``toy-student``: its BK-SDM-small-style student (blocks removed, distilled from the teacher).
* ``toy-clip``: a miniature ``CLIPModel`` + ``CLIPProcessor`` trained on the same captions.

All three are toy models: they know 90 captions and nothing else. This module imports nothing
heavy; the training and evaluation code lives in :mod:`.train` and :mod:`.evaluate`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: The committed weights (see weights/MANIFEST.json and weights/TRAINING.json).
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: Names of the three saved models, each a folder under :data:`WEIGHTS_DIR`.
NAMES = ("toy-teacher", "toy-student", "toy-clip")
#: Generation settings the toy pipelines were tuned for (native size, steps, guidance).
NATIVE_SIZE = 32
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 3.0


def model_dir(name: str, weights: str | Path = WEIGHTS_DIR) -> Path:
    """Folder of one toy model (``toy-teacher``, ``toy-student`` or ``toy-clip``)."""
    if name not in NAMES:
        raise ValueError(f"unknown toy model {name!r}; choose one of {', '.join(NAMES)}")
    return Path(weights) / name


def verify_manifest(weights: str | Path = WEIGHTS_DIR) -> list[str]:
    """Check every file against ``MANIFEST.json``; return the problems (empty when all match)."""
    weights = Path(weights)
    manifest = json.loads((weights / "MANIFEST.json").read_text())
    problems = []
    for rel, entry in manifest["files"].items():
        path = weights / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"checksum differs: {rel}")
    listed = set(manifest["files"])
    for path in weights.rglob("*"):
        rel = path.relative_to(weights).as_posix()
        if path.is_file() and rel != "MANIFEST.json" and rel not in listed:
            problems.append(f"not in manifest: {rel}")
    return problems
