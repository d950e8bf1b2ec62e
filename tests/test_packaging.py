"""What pyproject.toml declares matches the tree: package data names files that exist, a built
wheel carries every file legaldoc reads at run time, and constraints-min.txt (the floors CI
installs) is the one pyproject's floors generate."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

sys.path.insert(0, str(ROOT / "scripts"))
import min_constraints  # noqa: E402


def _package_files() -> set[str]:
    """Every file of the legaldoc package in the tree (no caches)."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "legaldoc").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}  # fmt: skip


@pytest.mark.parametrize("package,pattern", [(package, pattern) for package, patterns
                         in PYPROJECT["tool"]["setuptools"]["package-data"].items() for pattern in patterns])  # fmt: skip
def test_every_package_data_pattern_names_a_file(package, pattern):
    folder = ROOT / Path(*package.split("."))
    assert list(folder.glob(pattern)), f"package data {package}: {pattern} matches no file"


def test_the_wheel_carries_every_file_of_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=240)  # fmt: skip
    (wheel,) = tmp_path.glob("legaldoc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith("legaldoc/")}
    missing = _package_files() - packed
    assert not missing, f"files of the tree missing from the wheel: {sorted(missing)}"
    assert {"legaldoc/state/lua/transition.lua", "legaldoc/tui/monitor.tcss",
            "legaldoc/storage/migrations/script.py.mako"} <= packed  # fmt: skip


def test_constraints_min_is_up_to_date_with_pyproject():
    expected = min_constraints.render(PYPROJECT)
    current = (ROOT / "constraints-min.txt").read_text(encoding="utf-8")
    assert current == expected, "constraints-min.txt is out of date: run  python scripts/min_constraints.py"


def test_constraints_min_pins_every_runtime_dependency_and_tested_extra():
    pins = dict(line.split("==") for line in min_constraints.render(PYPROJECT).splitlines()
                if line and not line.startswith("#"))  # fmt: skip
    assert {"celery", "kombu", "typer", "limits", "pypdfium2", "psycopg", "boto3", "pyarrow",
            "openai", "extract-msg", "moto", "prometheus-client"} <= pins.keys()  # fmt: skip
    assert "tomli" not in pins  # marker: Python < 3.11 only
    assert "pytest" not in pins  # dev tools float


def test_a_requirement_without_floor_is_refused():
    broken = {"project": {"dependencies": ["celery"], "optional-dependencies": {e: [] for e in min_constraints.TESTED_EXTRAS}}}
    with pytest.raises(min_constraints.FloorError, match="celery"):
        min_constraints.render(broken)


def test_every_floors_test_named_in_the_makefile_exists():
    """A renamed test would leave the floors job collecting nothing (pytest exits 5, CI red)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = makefile.split("FLOORS_TESTS :=", 1)[1].split("\n\n", 1)[0]
    nodes = [word for word in block.split() if word.startswith("tests/")]
    assert len(nodes) >= 10
    for node in nodes:
        path, _, name = node.partition("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        if name:
            assert f"def {name}(" in source, f"{node} names no test"
