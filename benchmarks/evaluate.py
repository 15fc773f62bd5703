"""Evaluation from a checkpoint for every head: seconds per run, and 1 vs 2 processes.

For each shapes config (``configs/<head>/shapes.yaml``): a checkpoint trained here for 2 epochs
(``scripts/train.py fit``, ``last.ckpt``) on the generated shapes (``data/shapes``, or the
4,000-image single-object set the localization configs train on,
``benchmarks.runs.SHAPES_SINGLE``), then

1. ``scripts/evaluate.py --checkpoint`` on the test split (wall seconds of the whole command,
   interpreter start included, and the inference seconds it reports);
2. ``scripts/train.py validate`` of the same checkpoint on 1 process and on 2 (DDP, gloo), and
   the largest difference between their logged metrics.

    OMP_NUM_THREADS=1 python -m benchmarks run evaluate [--quick]

The metrics of briefly trained checkpoints say nothing about the heads; the times and the 1-vs-2
differences are the figures: ``{head: {evaluate_s, inference_s, images, metric, test_value,
val_1_process, val_2_processes, val_max_abs_diff}}`` (``metric`` is the one the head's config
monitors, ``val_*`` its validation value). The quick run takes one head and skips the validation
runs (``validate``: two more processes).
"""

import csv
import json
import re
import tempfile
from pathlib import Path

import yaml

from benchmarks.runs import QUICK_TRAIN, REPO, fit, run_script, shapes, single_object_shapes, tiny_shapes

CONFIGS = {p.parent.name: p for p in sorted((REPO / "configs").glob("*/shapes.yaml"))}
EPOCHS = 2
QUICK_HEAD = "faster_rcnn"


def single_object(config: Path) -> bool:
    """Whether the config trains on the single-object shapes (the localization heads)."""
    return bool(yaml.safe_load(config.read_text())["data"]["init_args"].get("shapes_single_object"))


def headline(config: Path) -> str:
    """The head's headline metric: the one its config monitors (``map_50``, ``map_r_50``, ``mean_iou``, ...)."""
    return yaml.safe_load(config.read_text())["model"]["monitor"]


def validate(config: Path, data_args: list[str], checkpoint: Path, devices: int, out: Path) -> dict[str, float]:
    """``scripts/train.py validate`` of ``checkpoint`` on ``devices`` CPU processes -> its logged ``val/*``."""
    name = f"validate_{devices}"
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(out), "name": name}}
    run_script("train.py", ["validate", "--config", str(config), *data_args, "--ckpt_path", str(checkpoint),
                            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
                            "--trainer.strategy", "ddp" if devices > 1 else "auto",
                            "--trainer.logger", json.dumps(logger), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    (path,) = (out / name).glob("version_*/metrics.csv")
    with open(path) as f:
        return {k: float(v) for row in csv.DictReader(f) for k, v in row.items() if k.startswith("val/") and v}


def head_figures(head: str, root: Path, work: Path, *, devices: tuple[int, int] | tuple[()], quick: bool) -> dict:
    """Train ``head`` briefly, then time ``evaluate.py --checkpoint`` and validate on ``devices`` processes."""
    config, out = CONFIGS[head], work / head
    data_args = ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0"]
    train = ["--trainer.max_epochs", str(EPOCHS), "--trainer.check_val_every_n_epoch", "1"]
    run_dir, _ = fit(config, out, [*data_args, *train, *(QUICK_TRAIN if quick else [])])
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    report = out / "report"
    seconds, _ = run_script("evaluate.py", ["--checkpoint", str(checkpoint), "--shapes", str(root), "--split", "test",
                                            "--out", str(report), "--no-progress", "--num-workers", "0"])  # fmt: skip
    inference = re.search(r"inference ([0-9.]+) s for (\d+) images", (report / "report.md").read_text())
    metrics = json.loads((report / "metrics.json").read_text())
    metric = headline(config)
    figures = {
        "evaluate_s": round(seconds, 1),
        "inference_s": float(inference.group(1)),
        "images": int(inference.group(2)),
        "metric": metric,
        "test_value": round(metrics[metric], 4),
    }
    if devices:
        one, two = (validate(config, data_args, checkpoint, n, out) for n in devices)
        figures["val_1_process"] = round(one[f"val/{metric}"], 4)
        figures["val_2_processes"] = round(two[f"val/{metric}"], 4)
        figures["val_max_abs_diff"] = float(f"{max((abs(one[k] - two[k]) for k in one), default=float('nan')):.2g}")
    return figures


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        work = Path(tmp)
        figures = {}
        for head in [QUICK_HEAD] if quick else sorted(CONFIGS):
            single = single_object(CONFIGS[head])
            if quick:
                root = tiny_shapes(work / ("shapes_single" if single else "shapes"), single_object=single)
            else:
                root = single_object_shapes() if single else shapes()
            figures[head] = head_figures(head, root, work, devices=() if quick else (1, 2), quick=quick)
    return figures
