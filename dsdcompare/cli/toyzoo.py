"""``dsdcompare toyzoo train|eval|verify``: train, grade and verify the toy teacher/student pair.

``python -m dsdcompare.toyzoo ...`` calls :func:`main` here, which runs the same subcommands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..toyzoo import DEFAULT_GUIDANCE, DEFAULT_STEPS, WEIGHTS_DIR, verify_manifest


def configure(p: argparse.ArgumentParser) -> None:
    """Subcommands of ``toyzoo``: train, eval, verify."""
    sub = p.add_subparsers(dest="toyzoo_command", required=True, metavar="train|eval|verify")
    t = sub.add_parser("train", help="train the toy teacher, student and CLIP from scratch (~30 min on 2 cores)")
    t.add_argument("--out", type=Path, default=WEIGHTS_DIR, help=f"output folder (default: {WEIGHTS_DIR})")
    t.add_argument("--quick", action="store_true", help="a few steps per part: proves the script runs, weights useless")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: 2, which the committed weights used)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    e = sub.add_parser("eval", help="grade the toy models and print the quality table")
    e.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help=f"weights folder (default: {WEIGHTS_DIR})")
    e.add_argument("--n", type=int, default=96, help="generations per model (default: 96)")
    e.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    e.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    v = sub.add_parser("verify", help="check the weights against MANIFEST.json")
    v.add_argument("--weights", type=Path, default=WEIGHTS_DIR)


def _calm_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spin, if torch has not loaded OpenMP yet.

    On a shared machine (more busy threads than cores) spinning threads starve the others and
    every parallel region waits for a descheduled sibling: a 2-thread training step measured
    5-7x slower than with ``OMP_WAIT_POLICY=PASSIVE``. The runtime reads it once, at load time.
    Training only: for sampling, whose ops are tiny, sleeping threads cost more than they save
    (2 threads: 0.41 s per teacher image spinning, 1.15 s sleeping).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dsdcompare.toyzoo ...``: run one toy-zoo command; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m dsdcompare.toyzoo",
                                     description=__doc__.splitlines()[0])
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except InputError as err:
        raise SystemExit(str(err)) from None


def run(args) -> int:
    """Run one toy-zoo command; return the exit code."""
    if args.toyzoo_command == "train":
        _calm_openmp()
        import dataclasses

        from ..toyzoo.train import QUICK, TrainConfig, train_all

        cfg = QUICK if args.quick else TrainConfig()
        if args.threads is not None:
            if args.threads < 1:
                raise InputError(f"--threads must be at least 1 but is {args.threads}")
            cfg = dataclasses.replace(cfg, threads=args.threads)
        info = train_all(args.out, cfg, progress=not args.no_progress)
        print(f"saved to {args.out}; seconds per part: {json.dumps(info['seconds'])}; "
              f"total {info['total_seconds']:.0f} s")
        return 0
    if args.toyzoo_command == "eval":
        from ..toyzoo.evaluate import evaluate, format_table

        if args.n < 1:
            raise InputError(f"--n must be at least 1 but is {args.n}")
        result = evaluate(args.weights, n=args.n, steps=args.steps, guidance=args.guidance, threads=args.threads)
        print(format_table(result))
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.toyzoo_command == "verify":
        problems = verify_manifest(args.weights)
        for line in problems:
            print(line, file=sys.stderr)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    return 2  # pragma: no cover - argparse rejects unknown commands
