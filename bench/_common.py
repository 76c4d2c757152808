"""What the benchmark scripts share: where things are, and results files free of machine paths."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the repository
# The shared folder beside the repository; FRUGALML_SHARED names another (a git worktree elsewhere).
SHARED = Path(os.environ.get("FRUGALML_SHARED") or ROOT.parent / "shared")
DATA = SHARED / "data" / "banking77"
HOME = ROOT / "bench" / ".home"  # FRUGALML_HOME of every benchmark: bundles, lineage store, caches
RESULTS = ROOT / "bench" / "results"


def portable(value: Any) -> Any:
    """`value` with every absolute path under the workspace made relative to the repository."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith(str(ROOT.parent) + os.sep):
        return os.path.relpath(value, ROOT)
    return value


def in_repo(path: str) -> Path:
    """A path from a results file, back to one this process can open."""
    return ROOT / path if not os.path.isabs(path) else Path(path)


def write_results(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(document), indent=2, default=str) + "\n")


def machine(threads: int) -> dict[str, Any]:
    """The machine a benchmark measured on: what its speed figures depend on (CPU model, the
    vector instructions ONNX Runtime's int8 and 4-bit kernels use, library versions)."""
    import platform

    import onnxruntime

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    pairs = (line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in pairs}
    flags = set(fields.get("flags", "").split())
    return {
        "cpus": os.cpu_count(),
        "threads": threads,
        "cpu": fields.get("model name", platform.processor()),
        "vector": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def use_banking77() -> bool:
    """Whether BANKING77 is there (saying so when not); if it is, frugalml runs offline with the
    benchmarks' home."""
    if not (DATA / "train.csv").exists():
        print(f"skipped: BANKING77 not found at {DATA}")
        return False
    os.environ["FRUGALML_HOME"] = str(HOME)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return True
