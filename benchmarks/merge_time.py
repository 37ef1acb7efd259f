"""How long ``Store.merge`` takes to combine per-node stores, and what a second merge costs.

Builds ``--nodes`` stores, each holding ``--runs`` runs of ``--models`` results with two small
PNGs per result (the fake-but-real Results of ``tests/store_writer.py``: real ``Result`` and
``Timing`` objects, no model involved), then merges them into a new store and merges them again
(nothing to add: the cost of being idempotent). Prints seconds and results per second.

    python benchmarks/merge_time.py                        # 2 nodes x 100 runs x 4 models
    python benchmarks/merge_time.py --nodes 4 --runs 250
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--runs", type=int, default=100, help="runs per node store")
    p.add_argument("--models", type=int, default=4, help="results per run")
    args = p.parse_args(argv)

    import importlib.util

    # the test suite's writer helpers build the fake requests and results (one definition)
    spec = importlib.util.spec_from_file_location("store_writer", ROOT / "tests" / "store_writer.py")
    store_writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(store_writer)
    fake_request, fake_result = store_writer.fake_request, store_writer.fake_result

    from dsdcompare.store import Store

    models = [f"m{i}" for i in range(args.models)]
    with tempfile.TemporaryDirectory(prefix="dsdcompare-merge-") as td:
        nodes = []
        start = time.perf_counter()
        for n in range(args.nodes):
            with Store(Path(td) / f"node{n}") as store:
                for r in range(args.runs):
                    request = fake_request(seed=n * args.runs + r)
                    store.save(request, [fake_result(m, request) for m in models],
                               source="tiny", note=f"node {n}")
            nodes.append(Path(td) / f"node{n}")
        built = time.perf_counter() - start
        total = args.nodes * args.runs * args.models
        print(f"built {args.nodes} node stores, {total} results, {2 * total} images "
              f"in {built:.1f} s ({total / built:.0f} results/s through add_result)")
        with Store(Path(td) / "all") as dest:
            for label in ("first merge", "second merge"):
                start = time.perf_counter()
                reports = [dest.merge(node) for node in nodes]
                took = time.perf_counter() - start
                added = sum(r["results_added"] for r in reports)
                present = sum(r["results_present"] for r in reports)
                print(f"{label}: {took:.2f} s, {added} added, {present} already there "
                      f"({total / took:.0f} results/s)")
            assert len(dest.results()) == total and dest.verify() == []
            print(f"merged store holds {total} results; verify(): sound")


if __name__ == "__main__":
    main()
