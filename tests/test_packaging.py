"""The package installs as documented: one dependency list, a console script, plain pytest."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirement_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(re.sub(r"\s+", "", line))
    return out


def test_requirements_txt_and_pyproject_list_the_same_dependencies():
    # Streamlit Community Cloud installs requirements.txt; pip install installs pyproject's list
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = sorted(re.sub(r"\s+", "", d) for d in project["dependencies"])
    assert sorted(_requirement_lines(ROOT / "requirements.txt")) == declared


def test_scipy_floor_admits_the_rng_keyword_used_by_bootstrap():
    import inspect

    from scipy import stats as sps

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = next(d for d in project["dependencies"] if d.startswith("scipy"))
    major, minor = map(int, re.search(r">=(\d+)\.(\d+)", floor).groups())
    assert (major, minor) >= (1, 15)  # rng= arrived in scipy 1.15
    assert "rng" in inspect.signature(sps.bootstrap).parameters


def test_console_script_and_module_share_one_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["dsdcompare"] == "dsdcompare.cli:main"
    assert project["requires-python"] == ">=3.11"
    assert (ROOT / "dsdcompare" / "py.typed").is_file()
    done = subprocess.run([sys.executable, "-m", "dsdcompare", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("compare", "models", "profile", "bench", "store", "toyzoo"):
        assert command in done.stdout


def test_no_sys_path_workarounds_left():
    offenders = [str(p.relative_to(ROOT)) for folder in ("benchmarks", "dsdcompare", "ui", "pages")
                 for p in (ROOT / folder).rglob("*.py") if "sys.path" in p.read_text()]
    assert offenders == []


def test_readme_models_file_example_is_valid():
    from dsdcompare.registry import parse_models_toml

    readme = (ROOT / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    [spec] = parse_models_toml(block, origin="README.md")
    assert spec.key == "sd15" and spec.teacher == "sd-v1-4"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Run the tests", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
