"""LPIPS, FID and KID agree with torchmetrics and torch-fidelity on the same inputs.

No network: torch hub's cache is pointed at a temporary folder holding random weights under the
release files' names (torch-fidelity's FID Inception, torchvision's AlexNet), so dsdcompare,
torchmetrics and torch-fidelity all read the same file through their normal, download-free path.
The Inception's BatchNorm statistics are calibrated on random images so features are not ~0.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dsdcompare.errors import InputError
from dsdcompare.metrics import ScorerUnavailable
from dsdcompare.scorers import (
    FID_MIN_SAMPLES,
    FeatureStats,
    distribution_distance,
    fid_from_stats,
    kid_from_features,
    load_inception,
    load_lpips,
    metric_of,
    save_statistics,
)
from dsdcompare.scorers.weights import SCORER_WEIGHTS

N = 6  # images per set: Inception at 299 px costs ~0.3 s an image on one CPU thread


def _random_inception(path) -> None:
    """Save torch-fidelity's FID Inception with random weights and calibrated BatchNorm statistics."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random init
            return None

    empty = path.parent / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative: one batch sets the running statistics
            module.reset_running_stats()
    with torch.no_grad():
        net((torch.rand(8, 3, 64, 64) * 255).to(torch.uint8))
    torch.save(net.state_dict(), path)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """torch hub's cache in a temporary folder with random Inception and AlexNet weights."""
    import torchvision

    folder = tmp_path_factory.mktemp("torch-hub")
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir()
    _random_inception(checkpoints / os.path.basename(SCORER_WEIGHTS["fid"][0].url))
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               checkpoints / os.path.basename(SCORER_WEIGHTS["lpips"][0].url))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(folder))
    yield checkpoints
    torch.hub.set_dir(previous)


@pytest.fixture(scope="module")
def extractor(hub):
    return load_inception()


def image_set(n: int, seed: int, shift: int = 0, size: int = 48) -> list[np.ndarray]:
    """Smooth-ish random images (a low-frequency pattern plus noise), brightened by ``shift``."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, 6, 6, 3)) * 200
    big = np.kron(base, np.ones((1, size // 6, size // 6, 1))) + rng.random((n, size, size, 3)) * 40
    return [np.clip(im + shift, 0, 255).astype(np.uint8) for im in big]


def to_batch(images) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def sets():
    return image_set(N, seed=1), image_set(N, seed=2, shift=30)  # teacher, student


@pytest.fixture(scope="module")
def ours(extractor, sets):
    teacher, student = sets
    return distribution_distance(student, teacher, extractor=extractor, kid_subsets=5, kid_subset_size=4)


def test_fid_agrees_with_torchmetrics(ours, sets):
    from torchmetrics.image.fid import FrechetInceptionDistance

    teacher, student = sets
    metric = FrechetInceptionDistance(feature=2048, antialias=False)  # reads the same cached weights file
    metric.update(to_batch(teacher), real=True)
    metric.update(to_batch(student), real=False)
    assert ours.fid > 0
    assert ours.fid == pytest.approx(float(metric.compute()), rel=1e-4)


def test_fid_and_kid_agree_with_torch_fidelity(ours, sets, hub):
    import torch_fidelity

    class _Images(torch.utils.data.Dataset):
        def __init__(self, images):
            self.images = to_batch(images)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    teacher, student = sets
    theirs = torch_fidelity.calculate_metrics(
        input1=_Images(student), input2=_Images(teacher), fid=True, kid=True, kid_subsets=5, kid_subset_size=4,
        feature_extractor_weights_path=str(hub / os.path.basename(SCORER_WEIGHTS["fid"][0].url)),
        cuda=False, verbose=False, save_cpu_ram=True)
    assert ours.fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours.kid == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4, abs=1e-9)
    assert ours.kid_std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3, abs=1e-9)


def test_kid_equals_torchmetrics_mmd_on_whole_sets():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 16)), rng.normal(0.3, 1.0, size=(7, 16))
    mean, std, size = kid_from_features(a, b, subsets=3, subset_size=7)  # every subset is the whole set
    assert size == 7 and std == pytest.approx(0.0, abs=1e-12)
    assert mean == pytest.approx(float(poly_mmd(torch.from_numpy(a), torch.from_numpy(b))), rel=1e-9)


@pytest.fixture(scope="module")
def stats(extractor, sets):
    teacher, student = sets
    return (FeatureStats.from_features(extractor.features(teacher), source="teacher"),
            FeatureStats.from_features(extractor.features(student), source="student"))


def test_identical_sets_give_zero_fid_and_shifts_grow_it(extractor, stats):
    teacher, _ = stats
    same = distribution_distance(teacher, teacher, extractor=extractor, kid_subsets=2)
    assert same.fid == pytest.approx(0.0, abs=1e-9)
    shifted = [distribution_distance(image_set(N, seed=1, shift=s), teacher, extractor=extractor, kid_subsets=2).fid
               for s in (20, 60)]
    assert 0 < shifted[0] < shifted[1]


@pytest.mark.parametrize("n", [6, 80])  # fewer and more samples than the 64 dimensions
def test_fid_formula_equals_torch_fidelity_and_torchmetrics_with_and_without_features(n):
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(n)
    a = FeatureStats.from_features(rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)))
    b = FeatureStats.from_features(rng.normal(0.2, 1.0, size=(n, 64)) @ rng.normal(size=(64, 64)))
    bare_a, bare_b = (FeatureStats(s.mu, s.sigma, s.n) for s in (a, b))  # the eigendecomposition path
    theirs = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, False)
    tm = float(_compute_fid(*(torch.from_numpy(x) for x in (a.mu, a.sigma, b.mu, b.sigma))))
    for value in (fid_from_stats(a, b), fid_from_stats(bare_a, bare_b)):
        assert value == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
        assert value == pytest.approx(tm, rel=1e-6)
    assert fid_from_stats(a, a) == pytest.approx(0.0, abs=1e-9 * np.trace(a.sigma))
    assert abs(fid_from_stats(bare_a, bare_a)) < 1e-5 * np.trace(a.sigma)


def test_results_carry_sample_size_and_warn_when_too_small_for_fid(ours):
    assert ours.n_student == N and ours.n_reference == N and ours.reference == "teacher"
    assert ours.fid_too_small and N < FID_MIN_SAMPLES
    assert any("compare KID" in w for w in ours.warnings)
    assert ours.kid_subsets == 5 and ours.kid_subset_size == 4
    assert "inception-v3-compat" in ours.extractor and "weights-inception-2015-12-05-6726825d.pth@sha256:" in ours.extractor


def test_reference_folder_and_statistics_file_give_the_same_numbers(ours, extractor, sets, stats, tmp_path):
    from PIL import Image

    teacher, _ = sets
    teacher_stats, student = stats
    folder = tmp_path / "reference"
    folder.mkdir()
    for i, im in enumerate(teacher):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    by_folder = distribution_distance(student, folder, extractor=extractor, kid_subsets=5, kid_subset_size=4)
    assert by_folder.reference == "folder:reference"
    assert (by_folder.fid, by_folder.kid) == pytest.approx((ours.fid, ours.kid), rel=1e-9)

    save_statistics(teacher_stats, tmp_path / "teacher.npz", extractor=extractor.identity)
    by_file = distribution_distance(student, tmp_path / "teacher.npz", extractor=extractor, kid_subsets=5, kid_subset_size=4)
    assert (by_file.fid, by_file.kid) == pytest.approx((ours.fid, ours.kid), rel=1e-9)
    assert by_file.reference == "statistics:teacher.npz" and not any("extractor" in w for w in by_file.warnings)

    np.savez(tmp_path / "third-party.npz", mu=teacher_stats.mu, sigma=teacher_stats.sigma)  # pytorch-fid layout
    bare = distribution_distance(student, tmp_path / "third-party.npz", extractor=extractor)
    assert bare.fid == pytest.approx(ours.fid, rel=1e-6) and bare.kid is None and bare.n_reference is None
    assert any("does not name its feature extractor" in w for w in bare.warnings)
    assert any("KID needs" in w for w in bare.warnings)


def test_bad_references_are_refused_in_one_line(extractor, tmp_path):
    with pytest.raises(InputError, match="has no images"):
        distribution_distance(image_set(2, 0), tmp_path, extractor=extractor)
    (tmp_path / "x.npz").write_bytes(b"not npz")
    with pytest.raises(InputError, match="not a statistics file"):
        distribution_distance(image_set(2, 0), tmp_path / "x.npz", extractor=extractor)


# --------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------


def test_lpips_agrees_with_torchmetrics_and_is_zero_for_identical_pairs(hub, sets):
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    teacher, student = sets
    scorer = load_lpips()
    score = scorer.score(student, teacher)
    metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="none", normalize=True)
    theirs = metric(to_batch(student).float() / 255, to_batch(teacher).float() / 255).reshape(-1).tolist()
    assert score.per_image == pytest.approx(theirs, abs=1e-5)
    assert score.value == pytest.approx(np.mean(theirs), abs=1e-5) and np.ptp(theirs) > 1e-4
    assert metric_of(score) == "lpips" and not score.higher_is_better
    assert score.checkpoint.startswith("lpips-alex: alexnet-owt-7be5be79.pth@sha256:")
    assert scorer.score(teacher[:2], teacher[:2]).per_image == pytest.approx([0.0, 0.0], abs=1e-6)


def test_lpips_excludes_bad_pairs_and_refuses_mismatches(hub, sets):
    teacher, student = sets
    scorer = load_lpips()
    score = scorer.score([student[0], np.zeros_like(student[1])], teacher[:2])
    assert score.per_image[1] is None and score.excluded[1] == "student image: all black"
    with pytest.raises(ValueError, match="same size"):
        scorer.distance(student[0], teacher[0][:24])
    with pytest.raises(ValueError, match="one teacher image per student"):
        scorer.score(student[:2], teacher[:1])


def test_without_weights_fid_and_lpips_are_unavailable_naming_the_file(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        with pytest.raises(ScorerUnavailable, match="weights-inception-2015-12-05-6726825d.pth.*dsdcompare download --scorers fid"):
            load_inception()
        with pytest.raises(ScorerUnavailable, match="alexnet-owt-7be5be79.pth.*dsdcompare download --scorers lpips"):
            load_lpips()
    finally:
        torch.hub.set_dir(previous)
