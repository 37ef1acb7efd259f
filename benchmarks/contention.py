"""Thread policy under contention: the toy compare with 1 and N torch threads, quiet and beside
a CPU-bound competitor that this script starts and stops itself.

    python benchmarks/contention.py                 # 1 and 2 threads, quiet and contended
    python benchmarks/contention.py --threads 1,2,4 --competitors 2 --repeats 5

Each configuration runs ``dsdcompare compare "a red circle on a blue background" --models toy
--steps 25 --guidance 3 --repeats R`` in a fresh process (``OMP_WAIT_POLICY`` is read when torch
loads, so it cannot change inside one process) and reports the process's wall time and, per
model, the median and the worst steady-state call. Configurations are interleaved round by round,
so slow drifts of a shared machine hit all of them alike.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle on a blue background"


def _burn(stop_at: float) -> None:  # a competitor: pure CPU, stops by itself
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


class Competitor:
    """``n`` busy processes, bounded in time, started and stopped by this script."""

    def __init__(self, n: int, max_s: float):
        self.n, self.max_s, self.procs = n, max_s, []

    def __enter__(self):
        stop_at = time.time() + self.max_s
        self.procs = [mp.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(5)


def run_once(threads: int, wait: str | None, repeats: int, timeout_s: float) -> dict:
    """One toy compare in a fresh process; wall time and per-model call times."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("OMP_WAIT_POLICY", None)
        if wait:
            env["OMP_WAIT_POLICY"] = wait
        cmd = [sys.executable, "-m", "dsdcompare", "compare", PROMPT, "--models", "toy",
               "--steps", "25", "--guidance", "3", "--repeats", str(repeats), "--no-store",
               "--threads", str(threads), "--out", out, "--scorer", "none"]
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-800:]}")
        records = json.loads(Path(out, "results.json").read_text())
    calls = {r["model"]: r["timing"]["steady_s"] for r in records}
    return {"wall_s": wall, "calls": calls}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default=f"1,{max(2, os.cpu_count() or 2)}",
                    help="thread counts to compare (default: 1 and the core count)")
    ap.add_argument("--competitors", type=int, default=os.cpu_count() or 2,
                    help="busy processes in the contended runs (default: one per core)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per model (default 5)")
    ap.add_argument("--timeout", type=float, default=400, help="seconds per run before giving up")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    configs = [(t, w) for t in threads for w in ((None,) if t == 1 else ("PASSIVE", "ACTIVE"))]
    raw: dict = {}
    for rnd in range(args.rounds):
        for load in ("quiet", "contended"):
            for t, w in configs:
                key = (load, t, w or "default")
                print(f"round {rnd + 1}: {load}, {t} thread(s), OMP_WAIT_POLICY={w or 'default'}",
                      file=sys.stderr, flush=True)
                if load == "contended":
                    with Competitor(args.competitors, args.timeout):
                        res = run_once(t, w, args.repeats, args.timeout)
                else:
                    res = run_once(t, w, args.repeats, args.timeout)
                raw.setdefault(key, []).append(res)
    print(f"\ntoy compare, 25 steps, {args.repeats} timed calls per model, {args.rounds} rounds; "
          f"contended = beside {args.competitors} busy process(es); cores: {os.cpu_count()}\n")
    print("| load | threads | OMP_WAIT_POLICY | wall s (median of rounds) | teacher median / worst call s "
          "| student median / worst call s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for (load, t, w), runs in raw.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        cells = []
        for model in ("toy-teacher", "toy-student"):
            calls = [c for r in runs for c in r["calls"][model]]
            cells.append(f"{statistics.median(calls):.3f} / {max(calls):.3f}")
        rows.append({"load": load, "threads": t, "wait": w, "wall_s": wall, "cells": cells})
        print(f"| {load} | {t} | {w} | {wall:.1f} | {cells[0]} | {cells[1]} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "raw": {"|".join(map(str, k)): v
                                                               for k, v in raw.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
