"""LPIPS: perceptual distance of a student's image to its teacher's, beside PSNR and SSIM.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` computes it: its LPIPS v0.1 linear layers
ship inside torchmetrics; the backbone (AlexNet by default, as the LPIPS authors recommend for a
forward metric) is torchvision's ImageNet model, which torchvision reads from torch hub's
``checkpoints`` folder. The loader checks that file is there first, so a machine without it gets
:class:`~dsdcompare.metrics.ScorerUnavailable` naming it instead of a download attempt.

Like PSNR and SSIM (:func:`dsdcompare.fidelity.fidelity`), LPIPS is meaningful only for
latent-matched pairs (same prompt, seed, scheduler and steps). Lower is closer; 0 is identical.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from ..fidelity import _image_list, _to_unit_float, check_image
from ..metrics import SCALE_LPIPS, Score, ScorerUnavailable
from .weights import SCORER_WEIGHTS, checkpoint_identity, torch_hub_file

#: Backbones torchmetrics offers, with the download list (weights.SCORER_WEIGHTS) naming each file.
LPIPS_NETS = {"alex": "lpips", "vgg": "lpips-vgg"}
DEFAULT_NET = "alex"


class LpipsScorer:
    """LPIPS between paired student and teacher images; build it with :func:`load_lpips`."""

    metric = "lpips"
    backend = "torchmetrics"
    scale = SCALE_LPIPS
    higher_is_better = False

    def __init__(self, metric, *, net: str, checkpoint: str, device: str):
        self._metric = metric.to(device)
        self._lock = threading.Lock()  # the torchmetrics object keeps state between update and compute
        self.net = net  # "alex" | "vgg"
        self.checkpoint = checkpoint  # backbone and linear-layer identities
        self.device = torch.device(device)

    def __repr__(self) -> str:
        return f"LpipsScorer(net={self.net!r}, checkpoint={self.checkpoint!r})"

    def distance(self, student_image, teacher_image) -> float:
        """LPIPS of one pair (both images the same size; uint8 or [0, 1] floats)."""
        student, teacher = _to_unit_float(student_image), _to_unit_float(teacher_image)
        if student.shape != teacher.shape:
            raise ValueError(
                f"Student and teacher images must have the same size, but the student is "
                f"{student.shape[2]}x{student.shape[3]} and the teacher {teacher.shape[2]}x{teacher.shape[3]} (HxW).")
        with self._lock, torch.no_grad():
            self._metric.reset()
            self._metric.update(student.float().to(self.device), teacher.float().to(self.device))
            return float(self._metric.compute())

    def score(self, student_images, teacher_images) -> Score:
        """LPIPS of each student image to the teacher image at the same position, as a Score.

        Pairs where either image fails :func:`~dsdcompare.fidelity.check_image` are excluded with
        the reason; ``value`` is the mean over the rest (None if none is left). The prompt fields
        of the Score are empty: LPIPS does not read the prompt.
        """
        students, teachers = _image_list(student_images), _image_list(teacher_images)
        if len(students) != len(teachers) or not students:
            raise ValueError(f"Need one teacher image per student image, got {len(students)} and {len(teachers)}.")
        excluded: list[str | None] = []
        per_image: list[float | None] = []
        for student, teacher in zip(students, teachers, strict=True):
            reason = next((f"{who} image: {r}" for who, r in (("student", check_image(student)),
                                                               ("teacher", check_image(teacher))) if r), None)
            excluded.append(reason)
            per_image.append(None if reason else self.distance(student, teacher))
        values = [v for v in per_image if v is not None]
        error = None if values else f"no pair could be scored: all {len(students)} excluded"
        return Score(
            value=float(np.mean(values)) if values else None, per_image=per_image, excluded=excluded,
            backend=self.backend, checkpoint=self.checkpoint, scale=self.scale, standin=False,
            prompt_tokens=None, max_prompt_tokens=None, truncated=False, scored_prompt=None, error=error,
            note="teacher-referenced: meaningful only for latent-matched pairs",
        )


def load_lpips(net: str = DEFAULT_NET, *, device: str = "cpu") -> LpipsScorer:
    """Load torchmetrics' LPIPS with the ``net`` backbone; never downloads.

    Raises:
        ScorerUnavailable: the backbone's torchvision weights are not in torch hub's cache.
        ValueError: an unknown ``net``.
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"Unknown LPIPS backbone {net!r}; choose one of {', '.join(LPIPS_NETS)}.")
    import inspect
    from pathlib import Path

    from torchmetrics.functional.image import lpips as lpips_module
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    name = LPIPS_NETS[net]
    backbone = torch_hub_file(SCORER_WEIGHTS[name][0].url, scorer=name)
    linear = Path(inspect.getfile(lpips_module)).parent / "lpips_models" / f"{net}.pth"
    try:  # torchvision finds the backbone file in torch hub's cache and reads it, no download
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, reduction="mean", normalize=True)
    except (OSError, RuntimeError) as err:
        raise ScorerUnavailable(f"{name} scorer unavailable: {backbone.name} could not be read "
                                f"({type(err).__name__}); fetch it again with `dsdcompare download --scorers {name}`.") from err
    identity = f"lpips-{net}: {checkpoint_identity(backbone)} + {checkpoint_identity(linear)}"
    return LpipsScorer(metric, net=net, checkpoint=identity, device=device)


__all__ = ["DEFAULT_NET", "LPIPS_NETS", "LpipsScorer", "load_lpips"]
