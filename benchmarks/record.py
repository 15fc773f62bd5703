"""One benchmark run as a JSON record: its figures, the commit, the date, the machine, the wall time."""

import datetime
import json
import os
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """``HEAD``'s hash, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine() -> dict:
    """Cores, torch threads, device and load: what a figure depends on besides the code."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def record(name: str, figures: dict, *, quick: bool, wall_s: float, started: datetime.datetime) -> dict:
    """The JSON record of one run (``figures`` is what the benchmark's ``run`` returned)."""
    return {
        "benchmark": name,
        "quick": quick,
        "commit": git_commit(),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "wall_s": round(wall_s, 1),
        "figures": figures,
    }


def write_record(out_dir: Path, result: dict) -> Path:
    """``<out_dir>/<benchmark>.json`` (written whole, then renamed: an interrupted write leaves the old file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['benchmark']}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    partial.replace(path)
    return path
