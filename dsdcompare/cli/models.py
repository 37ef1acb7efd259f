"""``dsdcompare models``: the registry as a table."""

from __future__ import annotations


def configure(p) -> None:
    """Options of ``models``."""
    p.add_argument("--models-file", metavar="TOML", help="a TOML file of extra models")


def run(args) -> int:
    """Print every registered model (and those of ``--models-file``)."""
    from ..registry import get_model, list_models, load_models_file

    if args.models_file:
        load_models_file(args.models_file)
    print(f"{'key':14} {'pipeline':26} {'native':>6}  {'teacher':12} source")
    for key in list_models():
        s = get_model(key)
        print(f"{key:14} {s.pipeline:26} {s.native_size:>6}  {s.teacher or '-':12} "
              f"{s.repo_id or s.local_dir}" + ("  [toy]" if s.toy else ""))
    return 0
