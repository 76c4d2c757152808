"""Runtime dependencies: each one is imported by frugalml or says on its line why it is needed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

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
