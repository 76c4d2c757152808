"""Runtime dependencies: each one is imported by frugalml or says on its line why it is needed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _modules_of(distribution: str) -> set[str]:
    """The top-level modules an installed distribution provides."""
    normal = re.sub(r"[-_.]+", "-", distribution).lower()
    return {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(re.sub(r"[-_.]+", "-", d).lower() == normal for d in dists)
    }


def test_every_runtime_dependency_is_imported_or_says_why():
    pyproject = (ROOT / "pyproject.toml").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    unexplained = []
    for requirement in tomllib.loads(pyproject)["project"]["dependencies"]:
        name = re.split(r"[=<>!~\[ ;]", requirement)[0]
        imported = any(
            re.search(rf"^\s*(import|from) {module}\b", source, re.MULTILINE) for module in _modules_of(name)
        )
        line = next(line for line in pyproject.splitlines() if f'"{requirement}"' in line)
        if not imported and "#" not in line:
            unexplained.append(name)
    assert not unexplained


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = Version(pin.version)
    return pins


def test_runtime_dependencies_are_ranges_that_the_tested_pins_satisfy():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _constraints()
    requirements = [Requirement(r) for r in project["dependencies"]]
    assert all(not any(s.operator == "==" for s in r.specifier) for r in requirements)
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    outside = {
        r.name: str(pins.get(canonicalize_name(r.name)))
        for r in requirements
        if not r.specifier.contains(pins.get(canonicalize_name(r.name), Version("0")), prereleases=True)
    }
    assert not outside, f"constraints.txt lacks or contradicts: {outside}"
