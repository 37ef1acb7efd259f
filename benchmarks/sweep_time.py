"""Wall time of one small benchmark sweep with 1 and with N accelerate processes.

    python benchmarks/sweep_time.py                      # 8 prompts x 2 seeds x 2 step counts, tiny
    python benchmarks/sweep_time.py --processes 1,2,4 --models toy --source local --size 32

Each configuration runs the same sweep into a fresh store, as a separate command (startup and
imports included: that is what a user waits for), after one untimed run that builds the tiny
stand-ins. N > 1 runs under ``accelerate launch --multi_gpu --num_processes N`` (torchrun; on a
machine without a GPU bench puts the processes on the CPU with the gloo backend). Every process
gets ``--threads`` torch threads (default 1): on a shared, busy machine more OpenMP threads than
free cores spin and can make a run ten times slower, which would swamp the effect measured here,
the number of processes. The stored (prompt, seed, steps, model) sets are checked to be equal
across configurations.

On a shared machine the numbers move with the other load: the load average is printed beside
each time. Tiny stand-ins generate noise; the times measure the sweep machinery and scheduling,
not model speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_cmd(processes: int, args, store: Path, threads: int) -> list[str]:
    sweep = ["bench", "--prompts", args.prompts, "--limit", str(args.limit), "--seeds", args.seeds,
             "--steps", args.steps, "--models", args.models, "--source", args.source,
             "--size", str(args.size), "--store", str(store), "--no-progress",
             "--threads", str(threads)]
    if processes == 1:
        return [sys.executable, "-m", "dsdcompare", *sweep]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
            "no", "--main_process_port", "0", "-m", "dsdcompare", *sweep, "--device", "cpu"]


def stored_keys(store: Path) -> set:
    from dsdcompare.store import Store

    with Store(store, readonly=True) as s:
        df = s.results()
    ok = df[df["success"]]
    return set(zip(ok.prompt, ok.seed, ok.steps, ok.model, strict=True)), len(df)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", default="1,2", help="process counts to time (default 1,2)")
    p.add_argument("--prompts", default="core")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--seeds", default="0-1")
    p.add_argument("--steps", default="4,8")
    p.add_argument("--models", default="all")
    p.add_argument("--source", default="tiny")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the timings as JSON")
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1")
    work = Path(tempfile.mkdtemp(prefix="dsdcompare-sweep-"))
    # 1. Untimed: build the stand-ins and the scorer once
    subprocess.run(bench_cmd(1, argparse.Namespace(**{**vars(args), "limit": 1, "seeds": "0",
                                                      "steps": "1"}), work / "warm.sqlite", 1),
                   env=env, check=True, capture_output=True)
    # 2. Timed runs, each into a fresh store
    rows, sets = [], {}
    for n in [int(x) for x in args.processes.split(",")]:
        threads = args.threads
        store = work / f"p{n}.sqlite"
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        done = subprocess.run(bench_cmd(n, args, store, threads), env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        keys, n_rows = stored_keys(store)
        sets[n] = keys
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("bench: stored")), "")
        rows.append({"processes": n, "threads_per_process": threads, "wall_s": round(wall, 1),
                     "results": n_rows, "unique": len(keys), "load_before": round(load_before, 1),
                     "load_after": round(os.getloadavg()[0], 1), "bench_line": line})
        print(f"{n} process(es) x {threads} thread(s): {wall:.1f} s wall, {n_rows} results "
              f"({len(keys)} unique), load {load_before:.1f} -> {os.getloadavg()[0]:.1f}; {line}")
    same = len({frozenset(s) for s in sets.values()}) == 1
    print(f"stored sets equal across configurations: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows,
                                               "sets_equal": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
