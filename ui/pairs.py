"""The Pairs page: each student image beside its teacher's for the same latents, worst first.

A *latent-matched pair* is a student's stored result and its teacher's on the same prompt,
seed, steps and conditions whose initial latents were equal (same ``latents_sha``): the
images differ only by what distillation changed. The pairs come from
:func:`dsdcompare.stats.paired_differences` (the one pairing path), sorted worst first by
fidelity (SSIM, PSNR, LPIPS when the LPIPS scorer is available here) or by the score
difference; choosing one opens it: both images, a slider that wipes from one to the other
(Streamlit's own slider: no component needs the network), and the per-pixel difference.
Widget keys start with ``pairs_``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from dsdcompare import charts, pair_charts, stats

from .common import plain
from .results import display_image

#: Sort orders: key -> (label, column, ascending = worst first).
ORDERS = {
    "ssim": ("SSIM (lowest first)", "ssim", True),
    "psnr": ("PSNR (lowest first)", "psnr", True),
    "lpips": ("LPIPS (highest first)", "lpips", False),
    "diff": ("score difference (most negative first)", "diff", True),
}
#: Columns carried for both members of a pair.
KEEP = ("result_id", "image_paths", "latents_sha", "psnr", "ssim", "model_name")


def matched_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """The latent-matched pairs of the successful stored results ``df``, one row per pair
    (student and teacher columns as :func:`dsdcompare.stats.paired_differences` gives them)."""
    ok = df[df["success"].astype(bool)]
    if ok.empty:
        return pd.DataFrame()
    pairs = stats.paired_differences(ok, keep=KEEP)
    if pairs.empty:
        return pairs
    same = pairs["latents_sha"].notna() & (pairs["latents_sha"] == pairs["teacher_latents_sha"])
    has_images = pairs["image_paths"].map(len).gt(0) & pairs["teacher_image_paths"].map(len).gt(0)
    return pairs[same & has_images].reset_index(drop=True)


@st.cache_resource(show_spinner="Loading the LPIPS scorer…")
def lpips_scorer():
    """The LPIPS scorer on the CPU as ``(scorer, None)``, or ``(None, why)`` where it is not
    available (``dsdcompare.scorers`` missing, or its backbone weights not on this machine)."""
    try:
        from dsdcompare.scorers import load_lpips
    except ImportError as err:
        return None, f"the LPIPS scorer is not part of this installation ({err})"
    try:
        return load_lpips(device="cpu"), None
    except Exception as err:  # ScorerUnavailable names the missing file and the command
        return None, str(err).splitlines()[0]


@st.cache_data(show_spinner="Computing LPIPS for each pair…", max_entries=8)
def lpips_column(paths: tuple[tuple[str, str], ...]) -> list[float]:
    """LPIPS of each (student image, teacher image) file pair; NaN where it fails."""
    scorer, _ = lpips_scorer()
    out = []
    for student, teacher in paths:
        try:
            out.append(scorer.distance(_open(student), _open(teacher)))
        except Exception:  # an unreadable file or a size mismatch: no value, not a crash
            out.append(math.nan)
    return out


def _open(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def pair_label(pair: str, names: dict) -> str:
    """``"student|teacher"`` keys as "Student vs Teacher"."""
    student, teacher = pair.split("|", 1)
    return f"{names.get(student, student)} vs {names.get(teacher, teacher)}"


def filters_ui(pairs: pd.DataFrame, lpips_ok: bool) -> tuple[pd.DataFrame, str]:
    """Which student and teacher, and the sort order; returns the chosen pairs and order key."""
    keys = (pairs["model"] + "|" + pairs["teacher"]).tolist()
    names = {**dict(zip(pairs["model"], pairs["model_name"])),
             **dict(zip(pairs["teacher"], pairs["teacher_model_name"]))}
    choices = list(dict.fromkeys(keys))
    orders = [k for k in ORDERS if k != "lpips" or lpips_ok]
    c1, c2 = st.columns([2, 2])
    pair = c1.selectbox("Student and teacher", choices, key="pairs_pair",
                        format_func=lambda k: pair_label(k, names))
    order = c2.selectbox("Worst first by", orders, key="pairs_order",
                         format_func=lambda k: ORDERS[k][0])
    return pairs[[k == pair for k in keys]].reset_index(drop=True), order


def sorted_pairs(pairs: pd.DataFrame, order: str) -> pd.DataFrame:
    """``pairs`` worst first by ``order`` (:data:`ORDERS`); pairs without a value go last."""
    _, column, ascending = ORDERS[order]
    return pairs.sort_values(column, ascending=ascending, na_position="last",
                             kind="stable").reset_index(drop=True)


def list_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """The sorted list as shown: rank, prompt, seed, steps, fidelity and score difference."""
    out = pd.DataFrame({"#": range(1, len(pairs) + 1), "prompt": pairs["prompt"],
                        "seed": pairs["seed"], "steps": pairs["steps"],
                        "SSIM": pairs["ssim"], "PSNR dB": pairs["psnr"],
                        "score diff": pairs["diff"]})
    if "lpips" in pairs:
        out.insert(6, "LPIPS", pairs["lpips"])
    return out


def option_label(pairs: pd.DataFrame, i: int) -> str:
    """One line per pair for the chooser: rank, fidelity and the prompt's start."""
    r = pairs.iloc[i]
    ssim = f"SSIM {r['ssim']:.3f}" if pd.notna(r["ssim"]) else "no SSIM"
    prompt = str(r["prompt"])
    return f"#{i + 1} · {ssim} · seed {r['seed']} · {prompt[:70]}{'…' if len(prompt) > 70 else ''}"


def wipe(teacher: Image.Image, student: Image.Image, fraction: float) -> Image.Image:
    """The teacher's image left of ``fraction`` of the width, the student's right of it, with a
    one-pixel seam: the slider view (both images the same size)."""
    a, b = np.asarray(teacher.convert("RGB")).copy(), np.asarray(student.convert("RGB"))
    if a.shape != b.shape:
        raise ValueError(f"the images differ in size: {a.shape[1]}x{a.shape[0]} and "
                         f"{b.shape[1]}x{b.shape[0]}")
    cut = int(round(fraction * a.shape[1]))
    a[:, cut:] = b[:, cut:]
    if 0 < cut < a.shape[1]:
        a[:, cut - 1] = 255 - a[:, cut - 1]  # a seam that shows on any content
    return Image.fromarray(a)


def pair_ui(r: pd.Series) -> None:
    """One pair opened: metrics, the wipe slider, both images and the difference heatmap."""
    n = min(len(r["image_paths"]), len(r["teacher_image_paths"]))
    index = 0
    if n > 1:
        index = st.selectbox("Image", list(range(n)), key="pairs_image",
                             format_func=lambda i: f"#{i + 1} of {n}")
    student, teacher = _open(r["image_paths"][index]), _open(r["teacher_image_paths"][index])
    st.text(f"Prompt: {r['prompt']}")  # user text, shown as text
    m = st.columns(4)
    m[0].metric("SSIM vs teacher", "—" if pd.isna(r["ssim"]) else f"{r['ssim']:.3f}")
    m[1].metric("PSNR vs teacher", "—" if pd.isna(r["psnr"]) else f"{r['psnr']:.1f} dB")
    m[2].metric("Score difference", "—" if pd.isna(r["diff"]) else f"{r['diff']:+.3f}",
                help="student minus teacher, the stored CLIP score")
    m[3].metric("LPIPS", "—" if pd.isna(r.get("lpips", math.nan)) else f"{r['lpips']:.3f}")
    left, right = st.columns([1, 1.15], gap="large")
    with left:
        fraction = st.slider("Teacher ← → student", 0, 100, 50, key="pairs_wipe",
                             help="Left of the seam: the teacher's image; right: the student's.")
        st.image(display_image(wipe(teacher, student, fraction / 100)), width="stretch",
                 caption="teacher | student")
        c1, c2 = st.columns(2)
        c1.image(display_image(teacher), caption=f"teacher: {plain(r['teacher_model_name'])}",
                 width="stretch")
        c2.image(display_image(student), caption=f"student: {plain(r['model_name'])}",
                 width="stretch")
    with right:
        try:
            st.plotly_chart(pair_charts.difference_heatmap(student, teacher), key="pairs_heatmap",
                            width="stretch")
        except charts.ChartError as err:
            st.warning(plain(err))
