"""Evaluation from a checkpoint for every head: seconds per run, and 1 vs 2 processes.

For each shapes config: a checkpoint (``--checkpoints DIR`` holding ``<head>.ckpt``, else one
trained here for ``--epochs`` epochs), then

1. ``scripts/evaluate.py --checkpoint`` on the test split (wall seconds of the whole command,
   interpreter start included, and the inference seconds it reports);
2. ``scripts/train.py validate`` of the same checkpoint on 1 process and on 2 (DDP, gloo), and
   the largest difference between their logged metrics.

    OMP_NUM_THREADS=1 python scripts/bench_evaluate.py [--data data/shapes] [--epochs 2] [--heads faster_rcnn yolo]

Prints one row per head. The metrics of briefly trained checkpoints say nothing about the heads;
the times and the 1-vs-2 differences are the figures.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {p.parent.name: p for p in sorted((REPO / "configs").glob("*/shapes.yaml"))}


def _run(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout


def _data_args(config: Path, data: Path, single: Path) -> list[str]:
    init = yaml.safe_load(config.read_text())["data"]["init_args"]
    root = single if init.get("shapes_single_object") else data
    return ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0"]


def _train(head: str, config: Path, data_args: list[str], epochs: int, out: Path) -> Path:
    checkpoints = out / head / "checkpoints"
    _run([str(REPO / "scripts" / "train.py"), "fit", "--config", str(config), *data_args, "--trainer.max_epochs", str(epochs),
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.check_val_every_n_epoch", "1",
          "--checkpoint.dirpath", str(checkpoints), "--last_checkpoint.dirpath", str(checkpoints)], out)  # fmt: skip
    return checkpoints / "last.ckpt"


def _validate(config: Path, data_args: list[str], checkpoint: Path, devices: int, out: Path) -> dict[str, float]:
    name = f"validate_{devices}"
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": name}}
    _run([str(REPO / "scripts" / "train.py"), "validate", "--config", str(config), *data_args, "--ckpt_path", str(checkpoint),
          "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
          "--trainer.logger", json.dumps(logger), "--trainer.enable_progress_bar", "false"], out)  # fmt: skip
    (path,) = (out / name).glob("version_*/metrics.csv")
    with open(path) as f:
        return {k: float(v) for row in csv.DictReader(f) for k, v in row.items() if k.startswith("val/") and v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "shapes", help="multi-object shapes root")
    parser.add_argument("--single", type=Path, default=REPO / "data" / "shapes_single", help="single-object shapes root")
    parser.add_argument("--checkpoints", type=Path, help="a folder of <head>.ckpt to use instead of training")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the checkpoints trained here")
    parser.add_argument("--heads", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_evaluate")
    args = parser.parse_args()
    rows = []
    for head in args.heads:
        config, out = CONFIGS[head], (args.out / head).resolve()
        out.mkdir(parents=True, exist_ok=True)
        data_args = _data_args(config, args.data.resolve(), args.single.resolve())
        given = args.checkpoints / f"{head}.ckpt" if args.checkpoints else None
        checkpoint = given if given is not None and given.is_file() else _train(head, config, data_args, args.epochs, out)
        root = data_args[1]
        seconds, _ = _run([str(REPO / "scripts" / "evaluate.py"), "--checkpoint", str(checkpoint), "--shapes", root,
                                "--split", "test", "--out", str(out / "report"), "--no-progress", "--num-workers", "0"], out)  # fmt: skip
        inference = re.search(r"inference ([0-9.]+) s for (\d+) images", (out / "report" / "report.md").read_text())
        metrics = json.loads((out / "report" / "metrics.json").read_text())
        headline = next(k for k in ("map_50", "cls_loc_accuracy", "mean_iou") if k in metrics)
        one, two = (_validate(config, data_args, checkpoint, devices, out) for devices in (1, 2))
        difference = max((abs(one[k] - two[k]) for k in one), default=float("nan"))
        rows.append((head, seconds, float(inference.group(1)), int(inference.group(2)), headline, metrics[headline], one, two, difference))
        print(f"{head}: evaluate.py {seconds:.1f} s, val 1 process {one}, 2 processes {two}", flush=True)
    print(f"\n{'head':13} {'evaluate s':>10} {'inference s':>11} {'images':>6}  {'test metric':<24} {'val (1 proc)':>12} {'val (2 proc)':>12} {'max |diff|':>10}")
    for head, seconds, inference_s, images, key, value, one, two, difference in rows:
        val_key = f"val/{key}" if f"val/{key}" in one else next(iter(one))
        print(f"{head:13} {seconds:10.1f} {inference_s:11.1f} {images:6d}  {key + f' {value:.4f}':<24} {one[val_key]:12.4f} {two[val_key]:12.4f} {difference:10.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
