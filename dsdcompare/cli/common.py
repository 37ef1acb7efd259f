"""What the subcommands share: argument types read from the limits table, model options, the
store opener, and one way to warn and fail."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError, first_line
from ..limits import SIZE, THREADS, Limit, parse_size
from ..zoo import SOURCES

SIZE_CHOICES_HELP = f"'native' (each model at its own resolution) or {SIZE.describe()}"


def _typed(parse, what: str):
    def convert(text: str):
        try:
            return parse(text)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = what  # argparse names the type in its messages
    return convert


def int_arg(limit: Limit):
    """An argparse type: an integer checked against ``limit``."""
    return _typed(limit.parse, limit.name)


def float_arg(limit: Limit):
    """An argparse type: a number checked against ``limit``."""
    return _typed(limit.parse, limit.name)


size_arg = _typed(parse_size, "size")


def _local_dir(text: str) -> tuple[str, str]:
    key, sep, path = text.partition("=")
    if not sep or not key or not path:
        raise argparse.ArgumentTypeError(f"--local-dir takes MODEL=DIR, got {text!r}")
    return key, path


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that load models (compare, bench)."""
    p.add_argument("--models", default="all",
                   help="comma-separated registry keys; 'all' = the four seed models, 'toy' = the "
                        "trained toy pair (default: all). See `dsdcompare models`.")
    p.add_argument("--models-file", metavar="TOML",
                   help="a TOML file of extra models ([models.KEY] tables; see README)")
    p.add_argument("--source", choices=list(SOURCES),
                   help="weight source for every model: hub (Hugging Face), local (a directory), "
                        "tiny (offline random miniatures: images are noise), arch (full-size "
                        "random weights: real speed, noise images). Default: each model's own")
    p.add_argument("--local-dir", action="append", type=_local_dir, default=[], metavar="MODEL=DIR",
                   help="directory in the hub layout for MODEL with --source local (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="weights precision; auto = fp16 on a GPU, fp32 on a CPU")
    p.add_argument("--scorer", default="default",
                   help="CLIP scorer checkpoint: 'default' (openai/clip-vit-large-patch14 for real "
                        "models, the stand-in for stand-ins, the toy CLIP for toy models), a hub "
                        "name, a local directory, 'open_clip:ARCH/TAG', 'tiny', or 'none'")
    p.add_argument("--metrics", default="clip", metavar="LIST",
                   help="per-image quality metrics, comma-separated: clip, hps (HPS v2.1), "
                        "pickscore, imagereward, lpips (a student vs its teacher, beside "
                        "PSNR/SSIM); 'all' or 'none'. Weights come from the local caches: "
                        "`dsdcompare download --scorers hps,...` fetches them (default: clip)")
    p.add_argument("--threads", type=int_arg(THREADS),
                   help="torch CPU threads (fix it for bit-identical images across runs)")
    p.add_argument("--store", metavar="PATH",
                   help="results database (default: $DSDCOMPARE_STORE or "
                        "./dsdcompare-results/results.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not write results to the store")


def setup_models(args) -> list:
    """The ModelSpecs named by ``--models`` (after loading ``--models-file``)."""
    from ..registry import load_models_file, resolve_models

    if getattr(args, "models_file", None):
        load_models_file(args.models_file)
    return resolve_models(args.models)


def open_store(args):
    """The results store of ``--store`` (or the default), or None with ``--no-store``."""
    if getattr(args, "no_store", False):
        return None
    from ..store import Store

    return Store(args.store) if args.store else Store()


def warn(message: str) -> None:
    """One line on stderr, prefixed ``warning:``."""
    print(f"warning: {message}", file=sys.stderr)


def unchosen_clip(metrics_text: str) -> str | None:
    """Why results carry no CLIP score when ``--metrics`` leaves it out (None: it is chosen)."""
    from ..record import parse_metrics

    return None if "clip" in parse_metrics(metrics_text) else \
        f"CLIP is not among --metrics {metrics_text!r}"


def warn_unscored(why: dict, scorer_choice: str) -> None:
    """One warning per chosen metric that has no scorer (none for CLIP with ``--scorer none``)."""
    for metric, reason in why.items():
        if metric != "clip" or scorer_choice != "none":
            warn(f"no {'CLIP' if metric == 'clip' else metric} score: {reason}")


def fail(message: str, code: int = 2) -> int:
    """One line on stderr, prefixed ``error:``; returns ``code`` for ``run`` to return."""
    print(f"error: {first_line(message) if isinstance(message, BaseException) else message}",
          file=sys.stderr)
    return code
