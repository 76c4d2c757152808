"""No dead constants: every module-level name assigned in src/ or tests/ is read somewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _assigned_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("__")]
    return names


def test_every_module_level_name_is_used():
    sources = {p: p.read_text() for d in ("src", "tests", "bench") for p in (ROOT / d).rglob("*.py")}
    unused = []
    for path, text in sources.items():
        if path.is_relative_to(ROOT / "bench"):
            continue  # scripts: read for uses only
        for name in _assigned_names(ast.parse(text)):
            word = re.compile(rf"(?<!\w){re.escape(name)}\b")
            if sum(len(word.findall(other)) for other in sources.values()) < 2:
                unused.append(f"{path.relative_to(ROOT)}: {name}")
    assert not unused
