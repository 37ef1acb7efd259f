"""``dsdcompare store ACTION``: look after a results store.

Actions: ``runs`` (list stored runs), ``check`` (database integrity, every image's sha256, and
image files no result refers to), ``prune`` (delete those unreferenced files), ``export`` (CSV,
JSON or a bundle .zip) and ``merge`` (copy other stores or bundles in, e.g. the per-node stores
of a multi-node bench).
"""

from __future__ import annotations

import sys

from .common import fail, warn


def configure(p) -> None:
    """Options of ``store``: ``--store`` and one action (runs, check, prune, export, merge)."""
    p.add_argument("--store", metavar="PATH",
                   help="results database, folder or bundle .zip (default: $DSDCOMPARE_STORE or "
                        "./dsdcompare-results/results.sqlite)")
    sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    r = sub.add_parser("runs", help="list stored runs, newest first")
    r.add_argument("--prompt", help="only runs of exactly this prompt")
    r.add_argument("--text", help="only runs whose prompt contains this text")
    r.add_argument("--model", help="only runs with a result of this model key")
    r.add_argument("--since", help="only runs from this date or time on (ISO, UTC)")
    r.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    sub.add_parser("check", help="verify the database and every image file's sha256, and "
                                 "count image files no result refers to")
    pr = sub.add_parser("prune", help="delete image files no result refers to (left by killed "
                                      "writers)")
    pr.add_argument("--older-than", type=float, default=1.0, metavar="HOURS",
                    help="only files untouched this long (default 1 hour)")
    e = sub.add_parser("export", help="export results to CSV, JSON or a bundle .zip")
    e.add_argument("--csv", metavar="FILE", help="flat rows, one per result")
    e.add_argument("--json", metavar="FILE", help="runs and results with full records")
    e.add_argument("--bundle", metavar="ZIP",
                   help="database + images in one file; open elsewhere with --store ZIP")
    # dest is not "run": cli.main keeps the subcommand's entry point in args.run
    e.add_argument("--run", type=int, action="append", metavar="ID", dest="run_ids",
                   help="only this run (repeatable; default all)")
    m = sub.add_parser("merge", help="copy the runs and results of other stores (e.g. one per "
                                     "node of a multi-node bench) into --store")
    m.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="store .sqlite, store folder or bundle .zip to copy from (kept as is)")


def run(args) -> int:
    """Run one ``store`` action; 0 done, 1 problems found (check, merge), 2 bad input."""
    from ..store import StoreError

    actions = {"runs": _runs, "check": _check, "prune": _prune, "export": _export,
               "merge": _merge}
    try:
        return actions[args.store_command](args)
    except StoreError as err:  # one line and exit 2 also when called without cli.main
        return fail(err)


def _runs(args) -> int:
    from ..store import Store

    with Store(args.store, readonly=True) as store:
        store.check_database()  # a listing reads only some pages: damage elsewhere must not hide
        for r in store.runs(prompt=args.prompt, text=args.text, model=args.model,
                            since=args.since, limit=args.limit):
            state = "" if r["finished"] else "  [unfinished]"
            print(f"{r['run_id']:>5}  {r['created_at'][:19]}  seed {r['seed']}  "
                  f"{r['steps']} steps  {r['n_success']}/{r['n_results']} ok  "
                  f"{','.join(r['models'])}  {r['prompt'][:60]!r}{state}")
    return 0


def _check(args) -> int:
    from ..store import Store, StoreError

    with Store(args.store, readonly=True) as store:
        problems = store.verify()
        for problem in problems:
            print(problem)
        try:
            extra = store.unreferenced()
        except StoreError:  # too damaged to list them; the damage is reported above
            extra = []
        if extra:  # not damage: what killed writers leave; `prune` reclaims the space
            size = sum(p.stat().st_size for p in extra if p.exists()) / 1e6
            print(f"note: {len(extra)} image file(s) ({size:.1f} MB) no result refers "
                  f"to (left by interrupted writes); `store prune` removes them")
        print(f"{store.bundle or store.path}: "
              + ("sound" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def _prune(args) -> int:
    from ..store import Store

    if not 0 <= args.older_than < float("inf"):
        return fail(f"store prune: --older-than must be 0 or more hours, got {args.older_than}")
    with Store(args.store) as store:
        files, size = store.prune(min_age_s=args.older_than * 3600)
        print(f"{store.path}: removed {files} unreferenced image file(s), {size / 1e6:.1f} MB")
    return 0


def _export(args) -> int:
    from ..store import Store
    from ..store.targets import STDOUT, check_target

    targets = [(flag, path) for flag, path in (("--csv", args.csv), ("--json", args.json),
                                               ("--bundle", args.bundle)) if path]
    if not targets:
        return fail("store export: give --csv, --json and/or --bundle (a file name, or - for "
                    "standard output)")
    paths = [path for _, path in targets]
    if len(set(paths)) != len(paths):
        return fail(f"store export: two exports name the same file ({', '.join(paths)}); give "
                    f"each its own")
    # every target checked before the store is read or anything is written
    for flag, path in targets:
        check_target(path, what=f"{flag} target")
    report = sys.stderr if STDOUT in paths else sys.stdout  # stdout carries the export itself
    with Store(args.store, readonly=True) as store:
        filters = {"run_id": args.run_ids} if args.run_ids else {}
        if args.csv:
            print(f"wrote {store.export_csv(args.csv, **filters)}", file=report)
        if args.json:
            print(f"wrote {store.export_json(args.json, **filters)}", file=report)
        if args.bundle:
            print(f"wrote {store.export_bundle(args.bundle, run_ids=args.run_ids)}", file=report)
    return 0


def _merge(args) -> int:
    from ..store import Store, StoreError

    # 1. Every source opened (checked) first: the destination is created only if one is sound
    sources, failed = [], False
    for source in args.sources:
        try:
            src = Store(source, readonly=True)
            try:
                src.check_database()  # a damaged source is not half merged
            except StoreError:
                src.close()
                raise
            sources.append((source, src))
        except StoreError as err:  # one bad source does not stop the others
            fail(err)
            failed = True
    if not sources:
        return fail("store merge: no source could be opened; nothing was merged or created")
    # 2. Merge them in, one by one
    try:
        with Store(args.store) as store:
            for source, src in sources:
                try:
                    report = store.merge(src)
                except StoreError as err:
                    fail(err)
                    failed = True
                    continue
                for problem in report["problems"]:
                    warn(problem)
                failed = failed or bool(report["problems"])
                print(f"{source}: {report['runs_added']} run(s) and {report['results_added']} "
                      f"result(s) added, {report['results_present']} already there, "
                      f"{report['images_copied']} image(s) copied"
                      + (f", {len(report['problems'])} result(s) skipped" if report["problems"]
                         else ""))
            print(f"into {store.path}")
    finally:
        for _, src in sources:
            src.close()
    return 1 if failed else 0
