"""Fault injection against what users give the command line, with real processes and real files
(issue 13, classes 3, 5, 6, 10 and 12): models files, output folders, store paths, prompt files,
expanding arguments and the public-mode setting. Each bad input gets one `error:` line naming the
value and the remedy, exit 2, with the input byte-identical and nothing created."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from faults_common import (
    TOY_ARGS,
    TOY_PROMPT,
    assert_refused,
    cli,
    damage_middle,
    read_only_mount,
    small_store,
    snapshot,
)

ROOT = Path(__file__).resolve().parent.parent
_SD = 'pipeline = "StableDiffusionPipeline"\nrepo = "a/b"\n'


def _py(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_class3_public_mode_setting_and_deploy_docs(tmp_path):
    code = "from dsdcompare.public import public_mode; print(public_mode())"
    for value, shown in (("1", "True"), ("0", "False"), ("", "False"), ("yes", "True")):
        proc = _py(code, tmp_path, {"DSDCOMPARE_PUBLIC": value})
        assert proc.returncode == 0 and proc.stdout.strip() == shown, proc.stderr
    proc = _py(code, tmp_path, {"DSDCOMPARE_PUBLIC": "ture"})  # a typo stops the app
    assert proc.returncode != 0 and "DSDCOMPARE_PUBLIC='ture' is not a valid setting" in proc.stderr
    ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=ROOT)
    assert ignored.returncode == 0  # secrets never reach the repository
    deploy = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert 'DSDCOMPARE_PUBLIC = "1"' in deploy and 'showErrorDetails = "none"' in deploy


# every way a models file can be wrong: (file content, what the one error line says)
_BAD_MODELS = [
    (b"[models.bad]\n" + _SD.encode() + b'name = "caf\xe9"\nnative_size = 512\n',
     "line 4: not valid UTF-8"),
    (b"models = 5\n", "'models' must be tables"),
    (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b"[models.bad\n", "is not valid TOML"),
    (b"[other]\nx = 1\n", "unknown top-level key(s) ['other']"),
    (b"[[models.bad]]\nx = 1\n", "must be a table [models.bad]"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 500\n",
     "field 'native_size': 500 must be a positive multiple of 8"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 100000\n",
     "field 'native_size': 100000 must be a positive multiple of 8, from 64 to 2048"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = "512"\n', "'512' is not a int"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = true\n", "True is not a int"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 512\nsteps = 0\n",
     "field 'steps': 0 must be an integer from 1 to 500"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 512\nguidance = nan\n",
     "field 'guidance': nan must be a number from 0 to 50"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 512\nguidance = true\n",
     "field 'guidance': True is not a number"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\nteacher = "nope"\n',
     "field 'teacher': 'nope' is not registered"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\nteacher = "bad"\n',
     "cannot be its own teacher"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\npath = "x"\n',
     "give 'repo' or 'path', not both"),
    (b'[models.bad]\npipeline = "FluxPipeline"\nrepo = "a/b"\nnative_size = 512\n',
     "field 'pipeline': 'FluxPipeline' is not one of"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\narch = "nope"\n', "field 'arch'"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\nfp16_variant = ["nope"]\n',
     "field 'fp16_variant'"),
    (b"[models.bad]\n" + _SD.encode() + b"native_size = 512\ncolour = 1\n",
     "unknown field 'colour'"),
    (b'[models.bad]\nrepo = "a/b"\nnative_size = 512\n', "lacks field 'pipeline'"),
    (b'[models.bad]\npipeline = "StableDiffusionPipeline"\nnative_size = 512\n',
     "field 'repo': give a hub repo id"),
    (b'[models.sd-v1-4]\n' + _SD.encode() + b"native_size = 512\n", "is already registered"),
    (b'[models.".."]\n' + _SD.encode() + b"native_size = 512\n", "model key '..' is not valid"),
    (b'[models."a/b"]\n' + _SD.encode() + b"native_size = 512\n", "model key 'a/b' is not valid"),
    (b"[models.all]\n" + _SD.encode() + b"native_size = 512\n", "model key 'all' is reserved"),
    (b"[models.bad]\n" + _SD.encode() + b'native_size = 512\nname = "x\\u001b[2J"\n',
     "field 'name': 'x\\x1b[2J' holds a control character"),
]


def test_class5_every_models_file_error_is_one_line(tmp_path):
    """`dsdcompare models --models-file F` for every kind of bad file, and the same file named
    by $DSDCOMPARE_MODELS: one error line, exit 2, the file untouched."""
    for i, (content, why) in enumerate(_BAD_MODELS):
        bad = tmp_path / f"bad{i}.toml"
        bad.write_bytes(content)
        assert_refused(cli("models", "--models-file", bad, cwd=tmp_path), why)
        assert bad.read_bytes() == content
    assert_refused(cli("models", "--models-file", tmp_path, cwd=tmp_path), "Cannot read models file")
    # a bad $DSDCOMPARE_MODELS raises on every use, never half-applies on the second
    bad = tmp_path / "bad0.toml"
    env = {"DSDCOMPARE_MODELS": str(bad)}
    assert_refused(cli("models", cwd=tmp_path, env=env), "not valid UTF-8")
    code = ("from dsdcompare import registry\n"
            "for _ in range(2):\n"
            "    try:\n        registry.list_models()\n        print('loaded')\n"
            "    except registry.RegistryError:\n        print('refused')\n")
    proc = _py(code, tmp_path, env)
    assert proc.stdout.split() == ["refused", "refused"], proc.stderr


def test_class5_out_and_store_paths_are_checked_before_anything_is_created(tmp_path):
    (tmp_path / "a-file").write_text("mine\n")
    store = ("--store", tmp_path / "new-store")
    args = (TOY_PROMPT, *TOY_ARGS)
    for out, why in ((tmp_path / "a-file", "--out"), ("/dev/null", "--out /dev/null is not a folder"),
                     (tmp_path / "a-file" / "sub", "is not a folder")):
        assert_refused(cli("compare", *args, "--out", out, *store, cwd=tmp_path), why)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert (tmp_path / "a-file").read_text() == "mine\n"
    assert not (tmp_path / "new-store").exists()  # no store created for a run that cannot write
    # a store path that cannot be created: named, and no out/ made
    assert_refused(cli("compare", *args, "--out", tmp_path / "out", "--store",
                       tmp_path / "a-file" / "results.sqlite", cwd=tmp_path),
                   "cannot create the store", "give --store a path in a folder you can write")
    assert not (tmp_path / "out").exists()
    # a read-only output folder (real read-only media)
    media = tmp_path / "media"
    media.mkdir()
    proc = cli("compare", *args, "--out", media / "out", *store, cwd=tmp_path,
               wrap=read_only_mount(media))
    assert_refused(proc, "cannot be created", "not writable")
    assert list(media.iterdir()) == [] and not (tmp_path / "new-store").exists()


def test_class5_compare_refuses_a_damaged_store_untouched_before_generating(tmp_path):
    db = small_store(tmp_path / "s", runs=30, models=("m0", "m1", "m2"))
    damage_middle(db)
    before = snapshot(tmp_path / "s")
    proc = cli("compare", TOY_PROMPT, *TOY_ARGS, "--store", "s", "--out", "out", cwd=tmp_path)
    assert_refused(proc, str(db), "is damaged", "store check")
    assert snapshot(tmp_path / "s") == before and not (tmp_path / "out").exists()


def test_class6_model_keys_and_sizes_that_reach_the_file_system(tmp_path):
    """A key becomes a file name (KEY.png): `..` used to run, be stored, then crash."""
    models = tmp_path / "m.toml"
    models.write_text(f'[models.".."]\n{_SD}native_size = 64\n')
    proc = cli("compare", TOY_PROMPT, "--models-file", models, "--models=..", "--source", "tiny",
               "--out", "out", "--store", "s", cwd=tmp_path)
    assert_refused(proc, "model key '..' is not valid", "starting with a letter or digit")
    for key in (".hidden", "-rf", "a b", "x" * 65):
        models.write_text(f'[models."{key}"]\n{_SD}native_size = 64\n')
        assert_refused(cli("models", "--models-file", models, cwd=tmp_path),
                       f"model key {key!r} is not valid")
    models.write_text(f'[models.huge]\n{_SD}native_size = 1048576\n')
    assert_refused(cli("models", "--models-file", models, cwd=tmp_path),
                   "native_size': 1048576", "from 64 to 2048")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml", "tmp"]


def test_class10_prompts_with_line_breaks_or_unbalanced_quotes_name_the_line(tmp_path):
    files = {
        "suite.csv": ('prompt,category\na dog,animals\n"a cat,animals\nmore,x\nthird,y\n',
                      "suite.csv line 3"),
        "closed.csv": ('prompt,category\n"a cat\nover two lines",animals\n', "closed.csv line 2"),
        "suite.tsv": ('prompt\tcategory\na dog\tanimals\na 12" record\tthings\n',
                      "suite.tsv line 3"),
        "suite.txt": ('a dog\n# a comment\na "quoted cat\n', "suite.txt line 3"),
        "suite.jsonl": ('{"prompt": "a dog"}\n{"prompt": "a cat\\nand more"}\n',
                        "suite.jsonl line 2"),
    }
    code = ("import sys\nfrom dsdcompare.prompts import PromptFileError, load_prompts\n"
            "for name in sys.argv[1:]:\n    try:\n        load_prompts(name)\n"
            "        print('loaded', name)\n    except PromptFileError as err:\n"
            "        print(err)\n")
    for name, (text, _) in files.items():
        (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code, *files], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60)
    assert "Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(files)
    for line, (_, where) in zip(lines, files.values(), strict=True):
        assert line.startswith(where) and ("quote" in line or "several lines" in line), line
    # end to end: bench names the line and runs nothing
    proc = cli("bench", "--prompts", "suite.csv", "--report", "--store", "s", cwd=tmp_path)
    assert_refused(proc, "suite.csv line 3", "quote")
    assert snapshot(tmp_path) == before and not (tmp_path / "s").exists()


def test_class12_expanding_arguments_are_capped_at_once(tmp_path):
    for seeds in ("0-99999999999", "0-9999,10000-19999"):
        start = time.monotonic()
        proc = cli("bench", "--prompts", "core", "--seeds", seeds, "--report", "--store", "s",
                   cwd=tmp_path, timeout=60)
        assert_refused(proc, repr(seeds), "expands to more than 10000 values")
        assert time.monotonic() - start < 30
    assert not (tmp_path / "s").exists()
