"""Architecture-true profiling: parameters, bytes, FLOPs and measured latency per component.

Distillation's claims are speed and size. Both depend on the architecture, not on the weight
values, so they are measured here on the ``arch`` weight source (each model's exact full-size
architecture with random weights) on any machine, without downloading weights:

* :mod:`.counting`: :func:`count_params` and :func:`count_flops` build the pipeline on the meta
  device (no memory, well under a second of compute) and count parameters, and FLOPs with
  ``torch.utils.flop_counter.FlopCounterMode``.
* :mod:`.measuring`: :func:`profile_model` loads the pipeline through the normal loading path
  and times each component the way the pipeline calls it (:mod:`.stages`): text encoding
  (``encode_prompt``, with the negative prompt of classifier-free guidance), one UNet step at
  batch 2 (CFG), the VAE decode of one image (in fp32 where the pipeline upcasts it) and the
  safety checker where the repo ships one. The estimated time per image is
  ``text + steps * unet + vae + safety``; scheduler arithmetic and post-processing (well under
  1% at full size) are left out. How to profile is one :class:`ProfileSpec`.
* :mod:`.reporting`: :func:`ratios` sets each student beside its registry teacher, and beside
  the published claims; tables and the printed report.

Speed options (:class:`dsdcompare.speed.SpeedOptions`) and the dtype are explicit settings,
recorded with every profile. Nothing here prints; ``dsdcompare profile`` is the command line
(:mod:`dsdcompare.cli.profile`).
"""

from ..speed import COMPILE_MODES, SpeedOptions
from .counting import count_flops, count_params, meta_pipeline, meta_twin, pipeline_flops, pipeline_params
from .measuring import MessageFn, ProfileSpec, profile_model, profile_models
from .reporting import (
    METRICS,
    Ratio,
    format_markdown,
    load_profiles,
    merge_profiles,
    parse_figure,
    profile_table,
    ratio_table,
    ratios,
    report,
    summary_table,
)
from .results import ComponentTiming, ModelProfile
from .stages import (
    PROFILE_SOURCES,
    PROFILE_STAGES,
    STAGE_LABELS,
    ProfileError,
    check_dtype,
    check_size,
    check_stages,
)

__all__ = ["COMPILE_MODES", "METRICS", "PROFILE_SOURCES", "PROFILE_STAGES", "STAGE_LABELS",
           "ComponentTiming", "MessageFn", "ModelProfile", "ProfileError", "ProfileSpec", "Ratio",
           "SpeedOptions", "check_dtype", "check_size", "check_stages", "count_flops",
           "count_params", "format_markdown", "load_profiles", "merge_profiles", "meta_pipeline",
           "meta_twin", "parse_figure", "pipeline_flops", "pipeline_params", "profile_model",
           "profile_models", "profile_table", "ratio_table", "ratios", "report",
           "summary_table"]
