"""``dsdcompare download``: pre-fetch the hub files the chosen models and scorer load."""

from __future__ import annotations


def configure(p) -> None:
    """Options of ``download``."""
    p.description = ("Fetch exactly the files from_pretrained loads for the chosen precision (fp16 "
                     "variant where a folder has it, safetensors only), after checking free disk. "
                     "Resumable; HF_TOKEN is used for gated repos.")
    p.add_argument("--models", default="all",
                   help="comma-separated registry keys; 'all' = the four seed models (default all)")
    p.add_argument("--models-file", metavar="TOML", help="a TOML file of extra models")
    p.add_argument("--scorers", default="default",
                   help="scorers to fetch, comma-separated: CLIP as 'default' "
                        "(openai/clip-vit-large-patch14) or hub names; the quality metrics hps "
                        "(HPS v2.1), pickscore, imagereward, lpips, lpips-vgg, fid (also kid); "
                        "or 'none' (default: default)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="precision the models will load in; auto = fp16 on a GPU, fp32 on a CPU")
    p.add_argument("--device", default="auto",
                   help="the device the models will run on, for --dtype auto (default auto)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (files, sizes, what is cached) and fetch nothing")


def run(args) -> int:
    """Plan, check the disk, then fetch (or only print the plan with ``--dry-run``)."""
    from ..download import (
        DownloadError,
        check_disk,
        check_online,
        fetch,
        fetch_urls,
        gb,
        hub_cache_dir,
        human,
        missing_files,
        missing_urls,
        plan_downloads,
        plan_scorer_weights,
        scorer_checkpoints,
    )
    from ..errors import InputError
    from ..loading import dtype_name, resolve_device, resolve_dtype
    from .common import setup_models, warn

    # 1. Check inputs, then the network switch, before any request
    models = setup_models(args)
    try:
        dtype = dtype_name(resolve_dtype(args.dtype, resolve_device(args.device)))
    except ValueError as err:
        raise InputError(str(err)) from None
    scorers = scorer_checkpoints(args.scorers, models)
    check_online()
    # 2. The plan, from the hub's listings
    plans, skipped = plan_downloads(models, scorers, dtype)
    weight_plans, urls = plan_scorer_weights(args.scorers)
    plans += weight_plans
    for note in skipped:
        warn(note)
    missing = {id(p): missing_files(p) for p in plans}
    print(f"download plan for {dtype} (cache: {hub_cache_dir()})")
    print(f"{'model':30} {'variant':8} {'files':>5} {'size':>10} {'to fetch':>10}")
    for p in plans:
        unknown = f" (+{p.unknown_sizes} of unknown size)" if p.unknown_sizes else ""
        todo = sum(f.size or 0 for f in missing[id(p)])
        print(f"{p.name:30} {p.variant or '-':8} {len(p.files):>5} {gb(p.total_bytes):>10} "
              f"{gb(todo):>10}{unknown}")
        if args.dry_run:
            cached = {f.path for f in p.files} - {f.path for f in missing[id(p)]}
            for f in p.files:
                tags = ("cached" if f.path in cached else "") + (" not read" if f.path in p.unread else "")
                print(f"    {f.path:60} {human(f.size):>9}  {tags.strip()}")
    url_todo = missing_urls(urls)
    for u in urls:  # release files (torchvision, torch-fidelity): torch hub's folder
        print(f"{u.name:30} {'-':8} {1:>5} {'?':>10} {'?' if u in url_todo else gb(0):>10}  "
              f"{u.url.rsplit('/', 1)[-1]} -> {u.path.parent}"
              + ("" if u in url_todo else " (cached)"))
    # 3. Room on disk (a dry run only reports a shortfall), then the fetch with huggingface_hub's
    #    own progress bars
    need = sum(f.size or 0 for m in missing.values() for f in m)
    print(f"to fetch: {gb(need)} in {sum(len(m) for m in missing.values())} files"
          + (f", and {len(url_todo)} release file(s) of unknown size" if url_todo else ""))
    if args.dry_run:
        try:
            check_disk(plans)
        except DownloadError as err:
            warn(str(err))
        return 0
    check_disk(plans)
    fetched = fetch(plans) + fetch_urls(urls)
    print(f"done: {fetched} files fetched; every planned file is in the cache")
    return 0
