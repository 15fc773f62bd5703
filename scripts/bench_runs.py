"""What the time-budgeted benchmark scripts share: one ``scripts/train.py fit`` run in a subprocess.

The budget is Lightning's ``--trainer.max_time``; the config's own ``max_epochs`` still ends a run
earlier. Every log and checkpoint goes under the run's own directory.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def max_time(minutes: float) -> str:
    """``minutes`` as Lightning's ``DD:HH:MM:SS`` (at least one second)."""
    seconds = max(int(round(minutes * 60)), 1)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def fit(config: Path, run_root: Path, minutes: float, extra: list[str]) -> Path:
    """``scripts/train.py fit --config config`` within ``minutes`` into ``run_root``; returns its ``version_N`` directory."""
    logger = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run_root), "name": "csv"}}]
    args = [
        sys.executable, str(REPO / "scripts" / "train.py"), "fit", "--config", str(config),
        "--trainer.max_time", max_time(minutes), "--trainer.enable_progress_bar", "false",
        f"--trainer.default_root_dir={run_root}", *extra, "--trainer.logger", json.dumps(logger),
    ]  # fmt: skip
    subprocess.run(args, cwd=REPO, check=True)
    versions = sorted(run_root.glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise RuntimeError(f"no run directory under {run_root}")
    return versions[-1]


def epochs_done(run: Path) -> int:
    """Epochs a run logged (``metrics.csv`` of its version directory)."""
    with open(run / "metrics.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]
    return max(epochs, default=-1) + 1
