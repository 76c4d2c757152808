"""The compression report: one table (terminal and Markdown), a JSON document and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "id",
    "recipe",
    "accuracy",
    "macro-F1",
    "Δ acc (pts)",
    "size MB",
    "× smaller",
    "p50 ms (b=1)",
    "× faster (b=1)",
    "texts/s (b=32)",
    "× throughput",
    "peak RSS MB",
    "agreement",
    "front",
)


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    """One row per measured bundle, the baseline first; the selected one is starred."""
    selected = (result.get("selected") or {}).get("bundle_id")
    rows = []
    for entry in [result["baseline"], *result["candidates"]]:
        if "accuracy" not in entry:
            continue  # failed to build or measure: listed under `failed`
        mark = " *" if entry["bundle_id"] == selected else ""
        rows.append(
            [
                entry["bundle_id"] + mark,
                entry["recipe"],
                round(entry["accuracy"], 4),
                round(entry["macro_f1"], 4),
                round(-entry["accuracy_drop"], 2) + 0.0,  # a change: negative is a loss (+0.0: no -0.0)
                round(entry["size_bytes"] / 1e6, 2),
                round(entry["size_ratio"], 2),
                round(entry["p50_ms"], 2),
                round(entry["latency_ratio"], 2),
                round(entry["batch32_per_s"], 1),
                round(entry["throughput_ratio"], 2),
                round(entry["peak_rss_mb"]),
                round(entry["agreement"], 4),
                "yes" if entry["pareto"] else "",
            ]
        )
    return rows


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    """Accuracy against batch-1 latency; marker area proportional to bytes on disk.

    Points are numbered (0 is the baseline); the key beside the plot names each one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    entries = [e for e in [result["baseline"], *result["candidates"]] if "accuracy" in e]
    largest = max(e["size_bytes"] for e in entries)
    selected = (result.get("selected") or {}).get("bundle_id")
    fig, ax = plt.subplots(figsize=(10, 6))
    key = []
    for number, entry in enumerate(entries):
        if number == 0:
            colour, role = "black", "baseline"
        elif entry["bundle_id"] == selected:
            colour, role = "tab:red", "selected"
        else:
            colour, role = ("tab:blue", "front") if entry["pareto"] else ("tab:gray", "")
        x, y = entry["p50_ms"], entry["accuracy"] * 100
        ax.scatter(
            x, y, s=40 + 2000 * entry["size_bytes"] / largest, alpha=0.5, color=colour, edgecolors="black"
        )
        ax.annotate(str(number), (x, y), fontsize=9, ha="center", va="center", weight="bold")
        label = f"{number}: {entry['recipe']}, {entry['size_bytes'] / 1e6:.1f} MB" + (
            f" ({role})" if role else ""
        )
        key.append(Line2D([], [], linestyle="", label=label))
    floor = result["baseline"]["accuracy"] * 100 - result["max_drop"]
    budget = ax.axhline(
        floor, color="tab:red", linestyle="--", linewidth=1, label=f"budget: -{result['max_drop']} points"
    )
    ax.legend(
        handles=[budget, *key], loc="upper left", bbox_to_anchor=(0, -0.1), ncol=2, fontsize=8, frameon=False
    )
    ax.set_xlabel("p50 latency, one text (ms)")
    ax.set_ylabel("accuracy on the selection split (%)")
    ax.set_title("accuracy vs latency (marker area = bytes on disk; red: selected, blue: Pareto front)")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], folder: Path, stem: str = "compress") -> dict[str, str]:
    """Write `stem`.json, `stem`.md (the table) and `stem`.png into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{stem}.{kind}" for kind in ("json", "md", "png")}
    plot(result, paths["png"])
    paths["md"].write_text(markdown_table(COLUMNS, table_rows(result)))
    written = {kind: str(path) for kind, path in paths.items()}
    paths["json"].write_text(json.dumps({**result, "report": written}, indent=2, default=str) + "\n")
    return written
