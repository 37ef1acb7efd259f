"""The Models page: the registry, each model's components (parameters, bytes, FLOPs), measured
latency and utilisation, and what each student drops.

Counting needs no weights for a model with a registered architecture (the meta device,
:mod:`dsdcompare.profiling.counting`); the toy pair and user models with local weights are
counted on their loaded pipeline (:func:`dsdcompare.profiling.profile_model` with no stage
timed), so every model gets the same tables. Latency comes from profiles measured here or read
from a profile file (``dsdcompare profile --json``), and from stored comparisons (the denoising
loop's iterations per second). Utilisation is achieved FLOP/s over the device's peak
(:mod:`dsdcompare.hardware`: a GPU's datasheet, a CPU's measured matmul rate).

Widget keys start with ``models_``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import streamlit as st

from dsdcompare import charts, hardware, limits
from dsdcompare.archs import unet_differences
from dsdcompare.registry import get_model

from .common import plain
from .results import dashes, numeric_config

#: Tries of a count that failed because of another thread (see :func:`counted`).
RETRIES = 4
#: Image side profiled by default on a CPU: full-size models take seconds per UNet call there.
CPU_PROFILE_SIZE = 128
#: Sizes offered for counting and profiling (None: each model's native size).
PROFILE_SIZES = (None, 64, 128, 256, 512, 768, 1024)
#: Component labels of the parameter table (pipeline module -> column).
PARAM_LABELS = {"unet": "UNet", "text_encoder": "text encoder", "text_encoder_2": "text encoder 2",
                "vae": "VAE", "vae_decoder": "of which decoder", "safety_checker": "safety checker"}
#: profile_table columns shown for counted (not measured) profiles.
COUNT_COLUMNS = ["model", "size", "component", "params (M)", "fp32 (GB)", "fp16 (GB)", "GFLOP"]
#: profile_table columns shown for measured profiles.
MEASURED_COLUMNS = ["model", "size", "device", "dtype", "component", "GFLOP", "time (ms)",
                    "min–max (ms)", "n", "TFLOP/s", "utilisation (%)"]


def registry_table(specs: Iterable) -> pd.DataFrame:
    """The registry: one row per model (repo or folder, pipeline, native size, teacher...)."""
    return pd.DataFrame([{
        "key": s.key, "name": s.name, "repo / folder": s.repo_id or _short_path(s.local_dir),
        "pipeline": s.pipeline, "native size": f"{s.native_size}²",
        "teacher": s.teacher or "—", "role": "student" if s.teacher else "teacher/base",
        "steps": s.steps, "guidance": s.guidance, "fp16 variant": s.fp16_variant,
        "safety checker": s.safety_checker, "toy": s.toy, "notes": s.notes,
    } for s in specs])


def _short_path(path) -> str:
    """A local folder by its last two parts ("weights/toy-teacher"): no machine paths on screen."""
    if not path:
        return "—"
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def local_weights_present(spec) -> bool:
    """``spec.local_dir`` holds a pipeline (``model_index.json``)."""
    return bool(spec.local_dir) and (Path(spec.local_dir) / "model_index.json").is_file()


def count_source(spec) -> str | None:
    """How ``spec`` is counted: ``arch`` (meta device, no weights), ``local`` (its folder's
    pipeline), or None when neither is possible here (a hub model without an architecture)."""
    if spec.arch:
        return "arch"
    return "local" if local_weights_present(spec) else None


def registry_ui(specs: list) -> None:
    """The registry table."""
    st.dataframe(registry_table(specs), hide_index=True, width="stretch",
                 column_config={"notes": st.column_config.TextColumn("notes", width="large")})


# --- counting ------------------------------------------------------------------------------------

def counted(key: str, size: int | None) -> dict:
    """``key``'s counts at ``size`` (None: native) as a ``ModelProfile.to_dict()`` without
    timings, or ``{"error": ...}`` (not cached: a failure is tried again on the next run)."""
    for attempt in range(RETRIES):
        try:
            return _counted(key, size)
        except Exception as err:  # one model's failure is its row's note, never the page's
            # Two failures come from other threads, not the model: diffusers' lazy imports
            # racing another import, and accelerate's init_empty_weights (a process-wide patch
            # of torch) active in another thread's meta build while this one loads. Both pass.
            racing = isinstance(err, ImportError) or "meta tensor" in str(err)
            if not racing or attempt == RETRIES - 1:
                return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
            time.sleep(1.0)
    return {"error": "not counted"}


@st.cache_data(show_spinner="Counting parameters and FLOPs…", max_entries=64)
def _counted(key: str, size: int | None) -> dict:
    """Counts on the meta device for an architecture, else on the loaded pipeline (raises)."""
    from dsdcompare.profiling import ProfileSpec, count_flops, count_params, profile_model

    spec = get_model(key)
    source = count_source(spec)
    if source is None:
        raise ValueError("no architecture registered and no local weights to count")
    if source == "local":
        return profile_model(spec, ProfileSpec(source="local", stages=(), size=size,
                                               device="cpu", dtype="fp32")).to_dict()
    counts = count_params(spec, source="arch")
    side = size or spec.native_size
    return _meta_profile(spec, side, counts, count_flops(spec, side, source="arch")).to_dict()


def _meta_profile(spec, size: int, counts: dict, flops: dict):
    """A ModelProfile of counts alone (nothing loaded, nothing timed)."""
    from dsdcompare.profiling import ModelProfile, SpeedOptions

    params = {k: v for k, v in counts.items() if k != "vae_decoder"}
    return ModelProfile(
        model=spec.key, name=spec.name, teacher=spec.teacher, source="arch", standin=True,
        size=size, latent_size=size // 8, steps=spec.steps, cfg=True, device="meta",
        device_name="meta device (counted, not run)", dtype="fp32",
        options=SpeedOptions().to_dict(), params=params, vae_decoder_params=counts["vae_decoder"],
        flops=flops, timings={}, load_s=(), vae_upcast=False, low_memory=False, warmup=0,
        repeats=0, rounds=0, peak_memory_bytes=None, memory_kind=None, notes=(), env={})


def _profiles(dicts: Iterable[dict]) -> list:
    from dsdcompare.profiling import ModelProfile

    return [ModelProfile.from_dict(d) for d in dicts if "error" not in d]


def params_table(profiles: list) -> pd.DataFrame:
    """Millions of parameters per component of each counted profile (one row per model)."""
    rows = []
    for p in profiles:
        counts = {**p.params, "vae_decoder": p.vae_decoder_params}
        row = {"model": p.name}
        for comp, label in PARAM_LABELS.items():
            row[f"{label} (M)"] = counts[comp] / 1e6 if comp in counts else None
        row["total (M)"] = p.total_params / 1e6
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all")  # no column of nothing (SD has no text encoder 2)


def size_ui() -> int | None:
    """The image side the tables count FLOPs at (None: each model's native size)."""
    return st.selectbox("Image size for FLOPs", PROFILE_SIZES, key="models_size",
                        format_func=lambda s: "native (each model its own)" if s is None
                        else f"{s} × {s}")


def params_ui(specs: list, size: int | None) -> list:
    """Parameters per component and the components' bytes and FLOPs; returns the counted
    profiles. The toy pair and models with local weights are counted like the seed models."""
    st.subheader("Parameters per component")
    results = {s.key: counted(s.key, None if s.toy else size) for s in specs}
    profiles = _profiles(results.values())
    table = dashes(params_table(profiles), {c: "{:.1f}" for c in params_table(profiles).columns})
    st.dataframe(table, hide_index=True, width="stretch", column_config=numeric_config(table, {
        c: st.column_config.NumberColumn(c, format="%.1f") for c in table.columns
        if c.endswith("(M)")}))
    missing = [f"{get_model(k).name}: {r['error']}" for k, r in results.items() if "error" in r]
    st.caption("Seed models are counted from their architecture on PyTorch's meta device (no "
               "weights); the toy pair and local models on their loaded pipeline. The VAE and "
               "CLIP ViT-L text encoder are shared by all four seed models."
               + ("  \nNot counted here: " + plain("; ".join(missing)) if missing else ""))
    from dsdcompare.profiling import profile_table

    st.subheader("Components: bytes and FLOPs per call")
    rows = pd.DataFrame(profile_table(profiles))
    if not rows.empty:
        rows["model"] = rows["model"].map(lambda k: get_model(k).name)
        st.dataframe(rows[COUNT_COLUMNS], hide_index=True, width="stretch", key="models_counts")
    st.caption("GFLOP per call, counted with torch's FlopCounterMode (a multiply-add is 2 "
               "FLOPs): the UNet row is one denoising step at batch 2 (classifier-free "
               "guidance); the image row is text + steps × UNet + VAE decode (+ safety checker). "
               "The toy pair is counted at its native 32 px.")
    return profiles


# --- peaks and utilisation -----------------------------------------------------------------------

@st.cache_resource(show_spinner="Measuring this CPU's matmul peak (about a second)…")
def cpu_peak(dtype: str, threads: int):
    """This CPU's measured matmul peak for ``dtype`` on ``threads`` threads (once per process)."""
    return hardware.measured_cpu_matmul_peak(dtype, threads=threads)


def peak_of(profile_or_row, *, here_cpu: str, threads: int):
    """The peak a measurement ran against: a GPU's datasheet figure, this CPU's measured rate
    (only for measurements made on this CPU model), else None."""
    device = str(getattr(profile_or_row, "device", None) or profile_or_row.get("device") or "")
    name = str(getattr(profile_or_row, "device_name", None) or profile_or_row.get("device_name") or "")
    dtype = str(getattr(profile_or_row, "dtype", None) or profile_or_row.get("dtype") or "fp32")
    try:
        if device.startswith("cuda"):
            return hardware.gpu_peak(name, dtype)
        if device == "cpu" and name == here_cpu:
            return cpu_peak(hardware.dtype_key(dtype), threads)
    except hardware.HardwareError:
        return None
    return None


def peaks_ui(device: str, dtype: str) -> None:
    """This device's peak (measured on a CPU, the datasheet's on a GPU) and the GPU table."""
    import torch

    from dsdcompare.loading import resolve_dtype

    key = hardware.dtype_key(str(resolve_dtype(dtype, device)))
    st.subheader("Peak compute and utilisation")
    try:
        if device.startswith("cuda"):
            peak = hardware.gpu_peak(torch.cuda.get_device_name(torch.device(device)), key)
        else:
            peak = cpu_peak(key if key != "tf32" else "fp32", torch.get_num_threads())
        st.metric(f"Peak of this {'GPU' if device.startswith('cuda') else 'CPU'}",
                  peak.label(), help=peak.source)
        st.caption(f"{plain(peak.device_name)}: {plain(peak.source)}. Utilisation = FLOPs "
                   "counted per call / measured seconds / this peak.")
    except hardware.HardwareError as err:
        st.warning(plain(err))
    with st.expander("Published GPU peaks (dense TFLOP/s, with sources)"):
        st.dataframe(pd.DataFrame([{
            "GPU": g.name, **{f"{d} TFLOP/s": g.dense.get(d) for d in ("fp16", "bf16", "tf32", "fp32")},
            "source": g.source, "note": g.note} for g in hardware.GPU_PEAKS]),
            hide_index=True, width="stretch", key="models_gpu_peaks")


def profile_file(store_path: str) -> Path | None:
    """Where profiles measured here are kept: ``profiles.json`` beside the results store (the
    format of ``dsdcompare profile --json``); None for a read-only bundle."""
    return None if store_path.lower().endswith(".zip") else Path(store_path).parent / "profiles.json"


def saved_profiles(path: Path | None) -> list:
    """The profiles in ``path`` (none when it does not exist or cannot be read)."""
    from dsdcompare.profiling import ProfileError, load_profiles

    if path is None or not path.is_file():
        return []
    try:
        return load_profiles(path)
    except ProfileError:
        return []


def save_profiles(path: Path, profiles: list) -> None:
    """Add ``profiles`` to the file at ``path`` (created with its folder when missing)."""
    kept = [p.to_dict() for p in saved_profiles(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"profiles": kept + [p.to_dict() for p in profiles]}, indent=1,
                              default=str), encoding="utf-8")
    tmp.replace(path)


def measure_ui(specs: list, device: str, dtype: str, path: Path | None) -> None:
    """The form that profiles models here (each component timed), kept in the profile file."""
    from dsdcompare.profiling import PROFILE_STAGES, ProfileSpec, profile_model

    choices = [s.key for s in specs if count_source(s)]
    default = [k for k in ("toy-teacher", "toy-student", "sd-v1-4") if k in choices]
    with st.form("models_measure"):
        st.markdown("**Measure here**: time each component on this machine")
        c1, c2, c3 = st.columns([3, 1.2, 1])
        keys = c1.multiselect("Models", choices, default=default, key="models_measure_models",
                              format_func=lambda k: get_model(k).name)
        size = c2.selectbox("Size (at most native)", PROFILE_SIZES[1:], key="models_measure_size",
                            index=PROFILE_SIZES[1:].index(CPU_PROFILE_SIZE),
                            help="Full-size models on a CPU: small sizes finish in seconds.")
        repeats = c3.number_input("Repeats", min_value=limits.REPEATS.lo, max_value=20, value=3,
                                  key="models_measure_repeats")
        go = st.form_submit_button("Measure", key="models_measure_go")
    if not go or not keys:
        return
    done = []
    with st.status(f"Profiling {len(keys)} model(s)…", expanded=True) as status:
        for key in keys:
            spec = get_model(key)
            source = count_source(spec)
            st.write(f"{plain(spec.name)}: {source}, {min(size, spec.native_size)} px")
            done.append(profile_model(spec, ProfileSpec(  # None: native (the toy pair's 32 px)
                size=None if size >= spec.native_size else size, device=device, dtype=dtype,
                source=source,
                stages=tuple(s for s in PROFILE_STAGES if s != "safety"), repeats=int(repeats),
                low_memory=source == "arch")))
        status.update(label=f"Profiled {len(done)} model(s)", state="complete", expanded=False)
    try:  # kept in the profile file, which the page reads; else in this session only
        if path is None:
            raise OSError("the results store is a read-only bundle")
        save_profiles(path, done)
    except OSError as err:
        st.warning(plain(f"Kept for this session only, not saved: {err}"))
        st.session_state.setdefault("models_profiles", []).extend(p.to_dict() for p in done)


def measured_ui(profiles: list, path: Path | None) -> None:
    """Measured profiles (here, or in the profile file) with achieved FLOP/s and utilisation."""
    import torch

    from dsdcompare.environment import cpu_name
    from dsdcompare.profiling import merge_profiles, profile_table

    if not profiles:
        st.caption("No measured profile yet: measure here, or keep `dsdcompare profile --json "
                   "profiles.json` beside the results store.")
        return
    here, threads = cpu_name(), torch.get_num_threads()
    merged = merge_profiles(profiles)
    rows = pd.DataFrame(profile_table(merged, lambda p: peak_of(p, here_cpu=here, threads=threads)))
    rows["model"] = rows["model"].map(lambda k: get_model(k).name)
    shown = dashes(rows[MEASURED_COLUMNS])
    st.dataframe(shown, hide_index=True, width="stretch", key="models_measured",
                 column_config=numeric_config(shown, {
                     "TFLOP/s": st.column_config.NumberColumn("TFLOP/s", format="%.4g")}))
    unet = rows[rows["component"].str.startswith("UNet")]
    cols = st.columns(max(1, min(4, len(unet))))
    for col, (_, r) in zip(cols, unet.iterrows()):
        value = r["utilisation (%)"]
        col.metric(f"{r['model']} UNet at {r['size']} px",
                   "peak unknown" if pd.isna(value) else f"{value:.1f}% of peak",
                   help=f"{r['TFLOP/s']} TFLOP/s achieved")
    st.caption(f"From {len(merged)} profile(s)"
               + (f", kept in {plain(path.name)} beside the results store" if path else "")
               + ". A CPU measurement counts against this CPU's measured peak only when it "
                 "was made on this CPU model.")


def stored_utilisation(df: pd.DataFrame, *, here_cpu: str, threads: int) -> pd.DataFrame:
    """UNet utilisation of stored comparisons: counted FLOPs per denoising step (at the run's
    size, batch 2 under guidance) x iterations per second, over the run's device peak.
    One row per model, source, size, device and dtype (medians over results)."""
    ok = df[df["success"].astype(bool) & df["its_per_s"].notna()]
    rows = []
    for (model, source, width, device, name, dtype), g in ok.groupby(
            ["model", "source", "width", "device", "device_name", "dtype"], dropna=False):
        flops = _unet_flops(model, source, int(width), cfg=bool((g["guidance"] > 1).any()))
        its = float(g["its_per_s"].median())
        peak = peak_of({"device": device, "device_name": name, "dtype": dtype},
                       here_cpu=here_cpu, threads=threads)
        rate = flops * its if flops else None
        rows.append({"model": get_model(model).name, "source": source, "size": int(width),
                     "device": name, "dtype": dtype, "results": len(g), "it/s": its,
                     "UNet GFLOP/step": flops / 1e9 if flops else None,
                     "TFLOP/s": rate / 1e12 if rate else None,
                     "utilisation (%)": 100 * hardware.utilisation(flops, 1 / its, peak)
                     if rate and peak else None})
    return pd.DataFrame(rows)


def _unet_flops(model: str, source: str, size: int, *, cfg: bool) -> float | None:
    """One UNet step's FLOPs as the stored run made it (the miniature for ``tiny``)."""
    from dsdcompare.profiling import count_flops

    spec = get_model(model)
    try:
        if source in ("tiny", "arch", "hub") and spec.arch:
            return float(count_flops(spec, size, source="tiny" if source == "tiny" else "arch",
                                     cfg=cfg)["unet"])
        data = counted(model, None if size == spec.native_size else size)
        unet = data.get("flops", {}).get("unet")
        return float(unet) / (1 if cfg else 2) if unet else None  # counted at batch 2
    except Exception:  # not countable here: no utilisation, the row still shows it/s
        return None


def stored_ui(df: pd.DataFrame | None) -> None:
    """Utilisation of the stored comparisons' denoising loops."""
    import torch

    from dsdcompare.environment import cpu_name

    st.markdown("**From stored comparisons** (the denoising loop: UNet steps per second)")
    if df is None or df.empty:
        st.caption("No stored comparison yet: run one on the Compare page.")
        return
    table = stored_utilisation(df, here_cpu=cpu_name(), threads=torch.get_num_threads())
    shown = dashes(table)
    st.dataframe(shown, hide_index=True, width="stretch", key="models_stored",
                 column_config=numeric_config(shown, {
                     "TFLOP/s": st.column_config.NumberColumn("TFLOP/s", format="%.4g"),
                     "UNet GFLOP/step": st.column_config.NumberColumn("UNet GFLOP/step",
                                                                      format="%.3g"),
                     "utilisation (%)": st.column_config.NumberColumn("utilisation (%)",
                                                                      format="%.2f")}))
    st.caption("The loop also runs the scheduler and guidance arithmetic, so this is a lower "
               "bound on the UNet's own utilisation. Stand-ins (tiny) are counted as the "
               "miniatures they are.")


# --- teacher and student ---------------------------------------------------------------------------

def differences_ui(specs: list) -> None:
    """Each teacher/student pair: the UNet settings distillation changed."""
    st.subheader("Teacher and student: what differs")
    for student in [s for s in specs if s.teacher]:
        teacher = get_model(student.teacher)
        with st.container(border=True):
            st.markdown(f"**{plain(teacher.name)}** → **{plain(student.name)}**")
            if student.notes:
                st.caption(plain(student.notes))
            rows = unet_differences(teacher, student)
            if rows is None:
                st.caption("UNet configs not available here (toy weights not built yet).")
                continue
            st.dataframe(pd.DataFrame(rows, columns=["setting", "teacher", "student"]),
                         hide_index=True, width="stretch", key=f"models_diff_{student.key}")


def published_ui(specs: list) -> None:
    """The published figures of every model (measured elsewhere)."""
    st.subheader("Published figures")
    st.dataframe(charts.facts_table(specs), hide_index=True, width="stretch")
