"""The one table of limits, and the one error family, as every front end sees them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from dsdcompare import limits
from dsdcompare.engine import Request, RequestError
from dsdcompare.errors import DsdCompareError, InputError


@pytest.mark.parametrize("limit", list(limits.LIMITS.values()), ids=lambda lim: lim.name)
def test_every_limit_accepts_its_ends_and_refuses_beyond(limit):
    assert limit.check(limit.lo) == limit.lo and limit.check(limit.hi) == limit.hi
    step = limit.multiple if limit.integer else 0.5
    for bad in (limit.lo - step, limit.hi + step):
        with pytest.raises(InputError, match=rf"{limit.name} must be .* got {bad!r}"):
            limit.check(bad)


def test_parse_names_the_text_and_refuses_nan_bools_and_fractions():
    with pytest.raises(InputError, match=r"steps must be an integer, got 'ten'"):
        limits.STEPS.parse("ten")
    with pytest.raises(InputError, match=r"guidance must be a number from 0 to 50, got nan"):
        limits.GUIDANCE.parse("nan")
    with pytest.raises(InputError, match="seed must be"):
        limits.SEED.check(True)
    with pytest.raises(InputError, match="seed must be an integer"):
        limits.SEED.parse("1.5")
    assert limits.parse_size("native") is None and limits.parse_size("256") == 256
    with pytest.raises(InputError, match=r"size must be 'native' or a multiple of 8 from 64 to 2048, got '100'"):
        limits.parse_size("100")


def test_request_validate_reads_the_same_table():
    for name, field in (("seed", "seed"), ("steps", "steps"), ("guidance", "guidance"),
                        ("repeats", "repeats"), ("warmup", "warmup"),
                        ("images_per_prompt", "images_per_prompt")):
        limit = limits.LIMITS[name]
        Request(prompt="a", **{field: limit.hi}).validate()  # the top of the range is valid
        with pytest.raises(RequestError, match=f"{name} must be"):
            Request(prompt="a", **{field: limit.hi + (1 if limit.integer else 0.5)}).validate()
    with pytest.raises(RequestError, match="prompt has 2001 characters; at most 2000"):
        Request(prompt="x" * 2001).validate()


def test_cli_argument_types_read_the_same_table():
    from dsdcompare.cli.common import float_arg, int_arg, size_arg

    assert int_arg(limits.SEED)(str(2**40)) == 2**40
    assert int_arg(limits.SEED)(str(limits.MAX_SEED)) == limits.MAX_SEED
    with pytest.raises(argparse.ArgumentTypeError, match=f"seed must be an integer from 0 to {limits.MAX_SEED}"):
        int_arg(limits.SEED)(str(limits.MAX_SEED + 1))
    assert float_arg(limits.GUIDANCE)("50") == 50.0
    with pytest.raises(argparse.ArgumentTypeError, match="guidance must be a number from 0 to 50, got 50.5"):
        float_arg(limits.GUIDANCE)("50.5")
    assert size_arg("native") is None
    with pytest.raises(argparse.ArgumentTypeError, match="size must be 'native' or"):
        size_arg("2056")


def test_list_expansion_is_capped_before_it_expands():
    assert limits.parse_int_list("0-3,7,2", limits.SEED) == [0, 1, 2, 3, 7]
    with pytest.raises(InputError, match=r"expands to more than 10000 values"):
        limits.parse_int_list("0-99999999999", limits.SEED)  # refused at once, never expanded
    with pytest.raises(InputError, match=r"range '5-2' runs backwards; write 2-5"):
        limits.parse_int_list("5-2", limits.SEED)
    with pytest.raises(InputError, match=r"steps must be an integer from 1 to 500, got 501"):
        limits.parse_int_list("10,501", limits.STEPS)
    with pytest.raises(InputError, match=r"seed: empty item"):
        limits.parse_int_list("1,,2", limits.SEED)


def test_every_project_error_is_one_family():
    import dsdcompare.bench
    import dsdcompare.charts
    import dsdcompare.metrics
    import dsdcompare.profiling
    import dsdcompare.prompts
    import dsdcompare.registry
    import dsdcompare.store
    import dsdcompare.zoo

    classes = [dsdcompare.bench.BenchError, dsdcompare.charts.ChartError,
               dsdcompare.metrics.ScorerUnavailable, dsdcompare.profiling.ProfileError,
               dsdcompare.prompts.PromptFileError, dsdcompare.registry.RegistryError,
               dsdcompare.store.StoreError, dsdcompare.store.DuplicateResultError,
               dsdcompare.zoo.WeightsUnavailable, RequestError]
    assert all(issubclass(c, DsdCompareError) for c in classes)


def test_cli_turns_a_project_error_into_one_line_and_exit_2(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text('[models.bad]\npipeline = "NoSuchPipeline"\nnative_size = 512\nrepo = "a/b"\n')
    done = subprocess.run([sys.executable, "-m", "dsdcompare", "models", "--models-file", str(models)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NoSuchPipeline" in lines[0]
    assert "Traceback" not in done.stderr
