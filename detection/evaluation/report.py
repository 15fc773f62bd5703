"""Evaluation reports: ``metrics.json``, a readable ``report.md``, PR-curve and confusion PNGs.

A library function so that ``scripts/evaluate.py``, training and the demo all write the same
report::

    write_report(out_dir, metrics=evaluator.compute(), pr_curves=evaluator.pr_curves(),
                 protocol_text=evaluator.protocol_text())

The per-class table is built from the flat metric keys ``<metric>/<class>`` (``ap_50/dog``,
``segm/ap/dog``, ``iou/dog`` ...) whose suffix is a class name, one column per metric, plus
gt/detection counts from the curves; every other key (``map``, ``segm/map`` ...) is a summary row.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detection.evaluation.pr_curve import PRCurve  # noqa: E402

PR_DIR = "pr_curves"
CONFUSION_PNG = "confusion_matrix.png"


def safe_filename(name: str) -> str:
    """A class name as a file name: anything outside ``[A-Za-z0-9_.-]`` becomes ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".")
    return cleaned or "class"


def _json_value(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_metrics_json(path: Path, metrics: Mapping[str, float]) -> Path:
    """``metrics.json`` (non-finite values become null so the file stays standard JSON)."""
    path.write_text(json.dumps({k: _json_value(float(v)) for k, v in metrics.items()}, indent=2, sort_keys=True))
    return path


def plot_pr_curve(path: Path, name: str, curve: PRCurve) -> Path:
    """One class's precision-recall curve as a PNG."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if len(curve.recall):
        ax.plot(curve.recall, curve.precision, drawstyle="steps-post")
    ap = "n/a" if curve.ap < 0 else f"{curve.ap:.3f}"
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{name} (AP {ap})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_confusion(path: Path, matrix: np.ndarray, class_names: Sequence[str]) -> Path:
    """Row-normalized confusion matrix (rows: ground truth, columns: prediction) as a PNG."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 2 + 0.35 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="ground truth", title="confusion (row-normalized)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _format(value: float) -> str:
    if not math.isfinite(value) or value == -1.0:
        return "n/a"
    return f"{value:.4f}"


def split_metrics(metrics: Mapping[str, float], class_names: Sequence[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``(summary, per_class)``: a key ``<metric>/<class>`` with a known class name is per class
    (``per_class[class][metric]``; ``segm/ap/dog`` -> ``segm/ap``), every other key is a summary
    metric (``map``, ``segm/map``, ``iou/background`` when ``background`` is not a class name)."""
    summary: dict[str, float] = {}
    per_class: dict[str, dict[str, float]] = {name: {} for name in class_names}
    for key, value in metrics.items():
        matches = [name for name in class_names if key.endswith("/" + name)]
        if matches:
            name = max(matches, key=len)  # a class name may itself contain "/"
            per_class[name][key[: -len(name) - 1]] = float(value)
        else:
            summary[key] = float(value)
    return summary, {name: row for name, row in per_class.items() if row}


def per_class_table(per_class: Mapping[str, Mapping[str, float]], pr_curves: Mapping[str, PRCurve]) -> list[str]:
    """Markdown table rows: one row per class, one column per metric it has (plus gt/detection counts)."""
    names = list(dict.fromkeys([*per_class, *pr_curves]))
    if not names:
        return []
    columns = list(dict.fromkeys(metric for row in per_class.values() for metric in row))
    extra = ["gt", "detections"] if pr_curves else []
    lines = ["| class | " + " | ".join(columns + extra) + " |", "|---" * (1 + len(columns) + len(extra)) + "|"]
    for name in names:
        cells = [_format(per_class.get(name, {}).get(c, float("nan"))) for c in columns]
        if pr_curves:
            curve = pr_curves.get(name)
            cells += [str(curve.num_gt), str(curve.num_det)] if curve else ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(
    out_dir: str | Path,
    metrics: Mapping[str, float],
    pr_curves: Mapping[str, PRCurve],
    protocol_text: str,
    *,
    title: str = "Evaluation report",
    confusion: np.ndarray | None = None,
    confusion_names: Sequence[str] | None = None,
    details: Sequence[str] = (),
    class_names: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> Path:
    """Write ``metrics.json``, ``report.md``, ``pr_curves/<class>.png`` and (for segmentation)
    ``confusion_matrix.png`` into ``out_dir``. ``details``: extra lines (dataset, files, timing).
    ``class_names`` tells per-class keys from summary metrics (``split_metrics``); ``sections``:
    extra markdown lines appended at the end (e.g. the error analysis). Returns ``report.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics_json(out_dir / "metrics.json", metrics)
    lines = [f"# {title}", "", "## Protocol", "", protocol_text, ""]
    if details:
        lines += [*(f"- {d}" for d in details), ""]
    summary, per_class = split_metrics(metrics, list(dict.fromkeys([*class_names, *pr_curves, *(confusion_names or ())])))
    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_format(v)} |" for k, v in summary.items()]
    table = per_class_table(per_class, pr_curves)
    if table:
        lines += ["", "## Per class", "", *table]
    if pr_curves:
        (out_dir / PR_DIR).mkdir(exist_ok=True)
        lines += ["", "## Precision-recall curves", ""]
        for name, curve in pr_curves.items():
            relative = f"{PR_DIR}/{safe_filename(name)}.png"
            plot_pr_curve(out_dir / relative, name, curve)
            lines.append(f"![{name}]({relative})")
    if confusion is not None:
        names = list(confusion_names) if confusion_names is not None else [str(i) for i in range(len(confusion))]
        plot_confusion(out_dir / CONFUSION_PNG, confusion, names)
        lines += ["", "## Confusion matrix", "", f"![confusion matrix]({CONFUSION_PNG})"]
    if sections:
        lines += ["", *sections]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
