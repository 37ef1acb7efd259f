"""The command line: ``dsdcompare COMMAND ...`` (or ``python -m dsdcompare``).

One module per subcommand, each with ``configure(parser)`` and ``run(args) -> int``; all
argparse and printing of the project live in this package. Any project error
(:class:`dsdcompare.errors.DsdCompareError`) that reaches :func:`main` becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import DsdCompareError, first_line

#: Subcommands: name -> (module in this package, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": ("compare", "one prompt and seed through several models"),
    "models": ("models", "list registered models"),
    "profile": ("profile", "architecture-true profile: parameters, FLOPs and measured latency "
                           "per component"),
    "bench": ("bench", "benchmark sweeps over prompt suites, seeds and step counts"),
    "store": ("store", "inspect, check, prune, export and merge the results store"),
    "toyzoo": ("toyzoo", "train and evaluate the toy teacher/student pair"),
    "review": ("review", "blind A/B reviews of stored images, and their decision record"),
    "download": ("download", "pre-fetch the hub files the chosen models and scorer load: plan, "
                             "disk check, progress"),
}

#: Subcommands that run models, under the thread policy (dsdcompare.threads).
THREADED = ("compare", "bench", "profile", "review")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="dsdcompare",
        description="Run the same seeded prompt through Stable Diffusion models side by side: "
                    "honest latency, CLIP score, what distillation buys.")
    parser.add_argument("--version", action="version", version=f"dsdcompare {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.configure(p)
        p.set_defaults(run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; return the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command in THREADED:  # before torch loads: OMP_WAIT_POLICY is read once
            from ..threads import apply, decide

            apply(decide(requested=getattr(args, "threads", None)))
        return args.run(args)
    except DsdCompareError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every result finished so far is in the store", file=sys.stderr)
        return 130
