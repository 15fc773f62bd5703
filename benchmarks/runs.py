"""What the benchmarks share: ``scripts/`` commands run as subprocesses, and their data.

A time-budgeted fit is ``scripts/train.py fit`` with Lightning's ``--trainer.max_time`` (the
config's own ``max_epochs`` still ends a run earlier); every log and checkpoint goes under the
run's own directory. Quick runs train on ``tiny_shapes`` for a batch or two.
"""

import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from datasets.shapes_writer import write_shapes

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "data" / "shapes"  # the demo's dataset, generated on first use
SHAPES_SINGLE = REPO / "data" / "shapes_single_4000"  # the localization configs' dataset (their data.root)
SHAPES_SINGLE_SIZES = {"train": 4000, "val": 200, "test": 500}  # and their shapes_sizes
QUICK_TRAIN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
               "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0"]  # fmt: skip


def max_time(minutes: float) -> str:
    """``minutes`` as Lightning's ``DD:HH:MM:SS`` (at least one second)."""
    seconds = max(int(round(minutes * 60)), 1)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_script(script: str, args: list[str], *, capture: bool = False) -> tuple[float, str]:
    """``scripts/<script>`` with ``args`` from the repo root; ``(wall seconds, stdout if captured)``.

    Raises ``RuntimeError`` with the end of stderr when it fails."""
    command = [sys.executable, str(REPO / "scripts" / script), *args]
    print("$", " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=capture, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {result.returncode})" + (f":\n{result.stderr[-3000:]}" if capture else ""))
    return time.perf_counter() - start, result.stdout or ""


def shapes(root: Path = SHAPES, *, single_object: bool = False, sizes: dict[str, int] | None = None) -> Path:
    """The shapes dataset at ``root``, generated when missing (``write_shapes``' defaults)."""
    if not (root / "VOC").is_dir():
        write_shapes(root, sizes=sizes, single_object=single_object)
    return root


def single_object_shapes() -> Path:
    """``SHAPES_SINGLE``, the localization configs' dataset, generated when missing."""
    return shapes(SHAPES_SINGLE, single_object=True, sizes=SHAPES_SINGLE_SIZES)


def tiny_shapes(root: Path, *, single_object: bool = False, image_size: int = 128) -> Path:
    """4 train, 2 val and 2 test shapes images at ``root``, generated when missing: data for a quick run."""
    if not (root / "VOC").is_dir():
        write_shapes(root, sizes={"train": 4, "val": 2, "test": 2}, image_size=image_size, single_object=single_object)
    return root


def fit(config: Path, run_root: Path, extra: list[str], *, minutes: float | None = None) -> tuple[Path, float]:
    """``scripts/train.py fit --config config`` into ``run_root`` (within ``minutes`` when given);
    ``(its version_N directory, wall seconds)``. Logs go to a CSVLogger there."""
    logger = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_root), "name": "csv"}}]
    args = ["fit", "--config", str(config), "--trainer.enable_progress_bar", "false",
            f"--trainer.default_root_dir={run_root}", *extra, "--trainer.logger", json.dumps(logger)]  # fmt: skip
    if minutes is not None:
        args += ["--trainer.max_time", max_time(minutes)]
    seconds, _ = run_script("train.py", args)
    versions = sorted(run_root.glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise RuntimeError(f"no run directory under {run_root}")
    return versions[-1], seconds


def epochs_done(run: Path) -> int:
    """Epochs a run logged (``metrics.csv`` of its version directory)."""
    with open(run / "metrics.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]
    return max(epochs, default=-1) + 1


def evaluate_checkpoint(checkpoint: Path, data_args: list[str], out: Path) -> dict[str, float]:
    """``scripts/evaluate.py --checkpoint`` on a split (``data_args``: e.g. ``--shapes ROOT --split test``);
    its ``metrics.json`` (written under ``out``)."""
    run_script("evaluate.py", ["--checkpoint", str(checkpoint), *data_args, "--out", str(out), "--no-progress",
                               "--num-workers", "0"])  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def map50_figures(metrics: dict[str, float]) -> dict:
    """``metrics.json``'s mAP@0.5 and per-class AP@0.5 as a benchmark records them (4 decimals):
    ``{test_map_50, test_ap_50: {class: AP}}``."""
    per_class = {key.split("/", 1)[1]: round(value, 4) for key, value in metrics.items() if key.startswith("ap_50/")}
    return {"test_map_50": round(metrics["map_50"], 4), "test_ap_50": per_class}
