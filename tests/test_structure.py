"""The package's shape: imports run one way, tables work from a fresh interpreter, files stay small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "frugalml"


def test_no_module_imports_one_that_imports_it_back():
    graph = grimp.build_graph("frugalml", exclude_type_checking_imports=True)
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert cycles == []


# Each table is a literal in the module that imports its entries: a fresh interpreter that imports
# only that module finds every entry, whatever else was (not) imported before.
FRESH_USES = {
    "step kinds": "from frugalml.pipeline import STEP_KINDS; "
    "assert {'label_auto', 'tune', 'eval', 'compress'} <= set(STEP_KINDS)",
    "techniques": "from frugalml.compress import TECHNIQUES; "
    "assert set(TECHNIQUES) == {'onnx', 'int8', 'int8-static', 'emb4', 'int4', 'trim', 'prune', 'distill'}",
    "predictor formats": "from frugalml.runtime import FORMATS; "
    "assert {f for _, f in FORMATS} == {'torch', 'onnx'}; "
    "assert {t for t, _ in FORMATS} == {'text-classification', 'image-classification'}",
    "commands": "from frugalml.cli import app; app(['models', '--help'], standalone_mode=False)",
    "tuning methods": "from frugalml.tune import METHODS; assert {'head', 'lora', 'full'} <= set(METHODS)",
    "job backends": "from frugalml.jobs.backends import BACKENDS; assert set(BACKENDS) == {'local', 'ray'}",
}


@pytest.mark.parametrize("use", FRESH_USES.values(), ids=FRESH_USES.keys())
def test_each_table_is_whole_in_a_fresh_interpreter(use):
    done = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_compress_help_names_every_technique():
    from frugalml.cli.compress import TECHNIQUES_HELP
    from frugalml.compress import TECHNIQUES

    assert TECHNIQUES_HELP.split(": ", 1)[1].split(" (")[0].split(", ") == list(TECHNIQUES)


def test_no_source_file_is_above_400_lines():
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
